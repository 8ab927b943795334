package bench

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Sections are the measurements Run knows, in the order it runs them.
var Sections = []string{"join", "chromium-join", "late", "glass", "chromium", "fanout", "peers", "agent", "audio", "size"}

// Options choose what Run measures and how long it takes.
type Options struct {
	Repo  string // repository root (builds run there)
	Quick bool   // about a minute: few samples, small fan-out
	// Smallest is the harness self-test: a few samples of each in-process measurement and no
	// builds (fan-out runs against the in-process hub).
	Smallest bool
	Only     []string // sections to run (empty: all)
	Verbose  bool     // the parts' debug logs on stderr
	Progress io.Writer
}

type sizes struct {
	joins, lates, glassFrames int
	chromiumFrames            int // 0: the section is not run (the harness self-test)
	chromiumJoins             int // 0: not run either
	lateWait                  time.Duration
	levels                    []int
	settle, window, agentWin  time.Duration
	audioWin                  time.Duration
	arches                    [][3]string // name, GOARCH, GOARM
	peers                     peerOptions // section 8, side by side
}

func (o Options) sizes() sizes {
	all := [][3]string{{"amd64", "amd64", ""}, {"arm64", "arm64", ""}, {"armv7", "arm", "7"}, {"armv6", "arm", "6"}}
	switch {
	case o.Smallest:
		return sizes{joins: 2, lates: 2, glassFrames: 30, lateWait: 200 * time.Millisecond, levels: []int{1},
			settle: 500 * time.Millisecond, window: time.Second, agentWin: time.Second}
	case o.Quick:
		return sizes{joins: 5, lates: 5, glassFrames: 150, chromiumFrames: 300, chromiumJoins: 20, lateWait: 500 * time.Millisecond, levels: []int{1, 10},
			settle: time.Second, window: 2 * time.Second, agentWin: 2 * time.Second, audioWin: 5 * time.Second, arches: all[:1],
			peers: peerOptions{Levels: []int{20}, Settle: time.Second, Window: 2 * time.Second, After: 5 * time.Second}}
	}
	return sizes{joins: 20, lates: 30, glassFrames: 1000, chromiumFrames: 1000, chromiumJoins: 30, lateWait: 2 * time.Second, levels: []int{1, 10, 50, 100, 200},
		settle: 2 * time.Second, window: 5 * time.Second, agentWin: 10 * time.Second, audioWin: 20 * time.Second, arches: all,
		peers: peerOptions{Levels: []int{100, 200}, Settle: 2 * time.Second, Window: 5 * time.Second, After: 60 * time.Second}}
}

// Run measures, and returns the results even when a section failed (its error is noted in
// the results and returned joined).
func Run(ctx context.Context, o Options) (*Results, error) {
	start := time.Now()
	if o.Progress == nil {
		o.Progress = io.Discard
	}
	sz := o.sizes()
	want := func(s string) bool {
		if len(o.Only) == 0 {
			return true
		}
		for _, x := range o.Only {
			if x == s {
				return true
			}
		}
		return false
	}
	say := func(format string, args ...any) {
		fmt.Fprintf(o.Progress, "[%5.1fs] %s\n", time.Since(start).Seconds(), fmt.Sprintf(format, args...))
	}
	r := NewResults(o.Repo, o.Quick || o.Smallest)
	var errs []string
	dir, err := os.MkdirTemp("", "cambench-")
	if err != nil {
		return r, err
	}
	defer func() {
		if len(errs) == 0 {
			os.RemoveAll(dir)
		} else {
			fmt.Fprintf(o.Progress, "kept the logs of the failed run in %s\n", dir)
		}
	}()
	log := quietLogger(os.Stderr, o.Verbose)
	fail := func(section string, err error) {
		say("%s FAILED: %v", section, err)
		r.Note("%s: FAILED: %v", section, err)
		errs = append(errs, section+": "+err.Error())
	}

	chromium := want("chromium") && sz.chromiumFrames > 0
	chromiumJoin := (want("chromium") || want("chromium-join")) && sz.chromiumJoins > 0
	if want("join") || want("late") || want("glass") || chromium || chromiumJoin || (o.Smallest && want("fanout")) {
		say("starting hub and agent in this process")
		s, err := startInProcess(ctx, filepath.Join(dir, "inproc"), log)
		if err != nil {
			fail("in-process system", err)
		} else {
			if want("join") {
				say("1 join: %d MQTT joins", sz.joins)
				if err := measureJoins(ctx, s, sz.joins, r); err != nil {
					fail("join", err)
				}
			}
			if chromiumJoin {
				say("1 join in headless Chromium: %d MQTT joins", sz.chromiumJoins)
				if err := measureChromiumJoin(ctx, o.Repo, s, sz.chromiumJoins, r); err != nil {
					fail("join in Chromium", err)
					r.Add(Figure{ID: "join.chromium.p95", Section: chromiumJoinSection, Name: "join → first frame presented p95",
						Unit: "ms", Skipped: "failed (see the notes)"})
				}
			}
			if want("late") {
				say("2 late joiner: %d viewers", sz.lates)
				if err := measureLateJoins(ctx, s, sz.lates, sz.lateWait, r); err != nil {
					fail("late joiner", err)
				}
			}
			if want("glass") {
				say("4 glass-to-glass: %d frames", sz.glassFrames)
				if err := measureGlass(ctx, s, sz.glassFrames, r); err != nil {
					fail("glass-to-glass", err)
				}
			}
			for _, path := range []chromiumPath{chromiumWebRTC, chromiumDC, firefoxDC, chromiumMSE, firefoxMSE} {
				if !chromium {
					break
				}
				say("4 glass-to-glass to headless %s: %d frames", path.via, sz.chromiumFrames)
				if err := measureChromium(ctx, o.Repo, s, sz.chromiumFrames, chromiumWarmup, path, r); err != nil {
					fail("glass-to-glass to "+path.via, err)
					r.Add(Figure{ID: path.id + ".p95", Section: path.section, Name: "capture → presented in " + path.via + " p95",
						Unit: "ms", Skipped: "failed (see the notes)"})
				}
			}
			if o.Smallest && want("fanout") {
				say("3/5 fan-out against the in-process hub")
				if err := measureFanout(ctx, &s.env, fanoutOptions{Levels: sz.levels, Settle: sz.settle, Window: sz.window}, r,
					func(m string) { say("%s", m) }); err != nil {
					fail("fan-out", err)
				}
			}
			s.stop()
		}
	}
	if o.Smallest {
		r.Seconds = time.Since(start).Seconds()
		return r, joinErrs(errs)
	}

	var hubBin, agentBin string
	if want("fanout") || want("peers") || want("agent") || want("audio") || want("size") {
		say("building camhub and camagent (CGO_ENABLED=0, -trimpath, -s -w)")
		hubBin, agentBin = filepath.Join(dir, "camhub"), filepath.Join(dir, "camagent")
		if err := build(ctx, o.Repo, "./cmd/camhub", hubBin); err != nil {
			fail("build", err)
			hubBin = ""
		}
		if err := build(ctx, o.Repo, "./cmd/camagent", agentBin); err != nil {
			fail("build", err)
			agentBin = ""
		}
	}
	api := func() env {
		e := env{appID: "demo", log: log}
		e.api, _ = newAPI()
		return e
	}
	if want("fanout") && hubBin != "" {
		say("3/5 fan-out: camhub process, 1 publisher → %v viewers", sz.levels)
		h, err := startHubProcess(ctx, hubBin, filepath.Join(dir, "fanout"), api())
		if err != nil {
			fail("fan-out", err)
		} else {
			if err := measureFanout(ctx, &h.env, fanoutOptions{Levels: sz.levels, Settle: sz.settle, Window: sz.window, HubPID: h.pid()}, r,
				func(m string) { say("%s", m) }); err != nil {
				fail("fan-out", err)
			}
			h.stop()
		}
	}
	if want("peers") && hubBin != "" {
		if err := measurePeers(ctx, o.Repo, hubBin, filepath.Join(dir, "peers"), api(), sz.peers, r, say); err != nil {
			fail("side by side", err)
		}
	}
	if want("agent") && hubBin != "" && agentBin != "" {
		say("6 agent cost: camagent process idle, 640x480 and 1280x720 calls (%s windows)", sz.agentWin)
		h, err := startHubProcess(ctx, hubBin, filepath.Join(dir, "agent"), api())
		if err != nil {
			fail("agent", err)
		} else {
			if err := measureAgent(ctx, agentBin, h, filepath.Join(dir, "agent"), sz.agentWin, r); err != nil {
				fail("agent", err)
			}
			h.stop()
		}
	}
	if want("audio") && hubBin != "" && agentBin != "" {
		say("7 audio path: camagent with ALSA file-plugin devices over FIFOs, tone bursts each way")
		h, err := startHubProcess(ctx, hubBin, filepath.Join(dir, "audio"), api())
		if err != nil {
			fail("audio", err)
		} else {
			if err := measureAudio(ctx, agentBin, h, filepath.Join(dir, "audio"), sz.audioWin, r); err != nil {
				fail("audio", err)
			}
			h.stop()
		}
	}
	if want("size") {
		say("6 binary sizes: %d architectures", len(sz.arches))
		if err := measureSizes(ctx, o.Repo, dir, sz.arches, r); err != nil {
			fail("size", err)
		}
	}
	r.Seconds = time.Since(start).Seconds()
	r.Machine.LoadAvgEnd = loadAvg()
	r.SortFigures()
	say("done")
	return r, joinErrs(errs)
}

func joinErrs(errs []string) error {
	if len(errs) == 0 {
		return nil
	}
	return fmt.Errorf("%s", strings.Join(errs, "; "))
}

// measureSizes builds the device binary as shipped for each architecture.
func measureSizes(ctx context.Context, repo, dir string, arches [][3]string, r *Results) error {
	for _, a := range arches {
		out := filepath.Join(dir, "camagent-"+a[0])
		env := []string{"GOOS=linux", "GOARCH=" + a[1]}
		if a[2] != "" {
			env = append(env, "GOARM="+a[2])
		}
		if err := build(ctx, repo, "./cmd/camagent", out, env...); err != nil {
			return err
		}
		st, err := os.Stat(out)
		if err != nil {
			return err
		}
		r.Add(Figure{ID: "size.camagent." + a[0], Section: "6 binary size (camagent, CGO_ENABLED=0 -trimpath -s -w)",
			Name: "linux/" + a[0], Unit: "MB", Value: float64(st.Size()) / (1 << 20)})
	}
	return nil
}

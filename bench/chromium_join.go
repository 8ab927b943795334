package bench

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// chromiumJoinSection sorts after section 1's Go figures.
const chromiumJoinSection = "1 join in headless Chromium (MQTT → first frame presented by an SDK page)"

// browserJoin is one join as bench/chromium_join.mjs reports it: wall-clock Unix ms.
type browserJoin struct {
	I          int      `json:"i"`
	UID        uint32   `json:"uid"`
	Joined     float64  `json:"joined"`
	Published  float64  `json:"published"`
	Subscribed float64  `json:"subscribed"`
	Received   *float64 `json:"received"`
	Presented  float64  `json:"presented"`
	Callback   float64  `json:"callback"`
	Width      int      `json:"width"`
	Height     int      `json:"height"`
	MLines     int      `json:"mlines"` // transceivers on the page's subscribe connection (the SDK's)
}

type browserJoinDone struct {
	SkewStart  float64  `json:"skewStart"`
	SkewEnd    float64  `json:"skewEnd"`
	Browser    string   `json:"browser"`
	PageErrors []string `json:"pageErrors"`
	Error      string   `json:"error"`
}

// browserJoinLine is one line of the script's stdout: exactly one field is set.
type browserJoinLine struct {
	Ready *int             `json:"ready"`
	Join  *browserJoin     `json:"join"`
	Done  *browserJoinDone `json:"done"`
}

// unixMs is t as the page's clocks give it: Unix milliseconds, fractional.
func unixMs(t time.Time) float64 { return float64(t.UnixNano()) / 1e6 }

// measureChromiumJoin runs n MQTT joins of the in-process agent while an SDK page in headless
// Chromium waits in the channel, and times each from the command to the first frame the page
// presents. A missing browser, node or playwright-core is reported in the table.
func measureChromiumJoin(ctx context.Context, repo string, s *inProcess, n int, r *Results) error {
	const channel = "bench-join-chromium"
	node, browser, playwright, missing := chromiumDeps(repo)
	if missing != "" {
		r.Add(Figure{ID: "join.chromium.p95", Section: chromiumJoinSection, Name: "join → first frame presented p95", Unit: "ms",
			Skipped: missing})
		return nil
	}
	cm, err := newCommander(s.broker, s.agentID)
	if err != nil {
		return err
	}
	defer cm.close()
	perJoin := 20 * time.Second
	cctx, cancel := context.WithTimeout(ctx, time.Duration(n)*perJoin/4+60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(cctx, node, filepath.Join(repo, "bench", "chromium_join.mjs"))
	cmd.Env = append(os.Environ(),
		"CAMBENCH_HUB_URL="+s.hubURL,
		"CAMBENCH_CHANNEL="+channel,
		fmt.Sprintf("CAMBENCH_JOINS=%d", n),
		fmt.Sprintf("CAMBENCH_TIMEOUT_MS=%d", perJoin.Milliseconds()),
		"CAMBENCH_PLAYWRIGHT="+playwright,
		"CAMBENCH_CHROMIUM="+browser,
	)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if os.Getenv("CAMBENCH_JOIN_DEBUG") != "" {
		cmd.Stderr = io.MultiWriter(&stderr, os.Stderr)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start node chromium_join.mjs: %w", err)
	}
	joins, done, err := driveBrowserJoins(ctx, cm, channel, stdout)
	if err != nil {
		cancel()
	}
	waitErr := cmd.Wait()
	if err != nil {
		return fmt.Errorf("%w (node: %v)\n%s", err, waitErr, tail(stderr.String(), 2000))
	}
	if done.Error != "" {
		return fmt.Errorf("chromium: %s\n%s", done.Error, tail(stderr.String(), 2000))
	}
	if len(joins) != n {
		return fmt.Errorf("chromium: %d of %d joins reported", len(joins), n)
	}
	r.Machine.Chromium = done.Browser
	addBrowserJoinFigures(joins, done, r)
	if len(done.PageErrors) > 0 {
		r.Note("join in Chromium: page errors: %s", strings.Join(done.PageErrors, "; "))
	}
	return nil
}

// timedJoin is one browser join with the command's send and reply times (Unix ms).
type timedJoin struct {
	browserJoin
	sent, reply float64
}

// driveBrowserJoins reads the script's lines: on each ready it publishes the join command and
// notes when; on each join report it waits for the device's reply and sends leave.
func driveBrowserJoins(ctx context.Context, cm *commander, channel string, stdout io.Reader) ([]timedJoin, browserJoinDone, error) {
	var joins []timedJoin
	var sent time.Time
	var replies <-chan reply
	sc := bufio.NewScanner(stdout)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		var l browserJoinLine
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			return joins, browserJoinDone{}, fmt.Errorf("chromium_join.mjs printed %q: %w", tail(sc.Text(), 200), err)
		}
		switch {
		case l.Ready != nil:
			var err error
			if sent, replies, err = cm.send(map[string]any{"action": "join", "channel": channel}); err != nil {
				return joins, browserJoinDone{}, fmt.Errorf("join %d: %w", *l.Ready+1, err)
			}
		case l.Join != nil:
			var rep reply
			select {
			case rep = <-replies:
			case <-time.After(20 * time.Second):
				return joins, browserJoinDone{}, fmt.Errorf("join %d: no MQTT reply in 20 s", l.Join.I+1)
			case <-ctx.Done():
				return joins, browserJoinDone{}, ctx.Err()
			}
			if !rep.OK {
				return joins, browserJoinDone{}, fmt.Errorf("join %d: device refused: %s", l.Join.I+1, rep.Error)
			}
			joins = append(joins, timedJoin{browserJoin: *l.Join, sent: unixMs(sent), reply: unixMs(rep.at)})
			if _, err := cm.do(ctx, map[string]any{"action": "leave"}); err != nil {
				return joins, browserJoinDone{}, fmt.Errorf("join %d: %w", l.Join.I+1, err)
			}
		case l.Done != nil:
			return joins, *l.Done, nil
		}
	}
	if err := sc.Err(); err != nil {
		return joins, browserJoinDone{}, fmt.Errorf("reading chromium_join.mjs: %w", err)
	}
	return joins, browserJoinDone{}, fmt.Errorf("chromium_join.mjs ended after %d joins without a result", len(joins))
}

func addBrowserJoinFigures(joins []timedJoin, done browserJoinDone, r *Results) {
	pick := func(f func(j timedJoin) float64) Durations {
		var d Durations
		for _, j := range joins {
			d = append(d, msDur(f(j)))
		}
		return d
	}
	sec := chromiumJoinSection
	if os.Getenv("CAMBENCH_JOIN_DEBUG") != "" {
		for _, j := range joins {
			fmt.Fprintf(os.Stderr, "join %2d: joined %6.1f published %6.1f subscribed %6.1f received %6.1f presented %6.1f reply %6.1f\n",
				j.I+1, j.Joined-j.sent, j.Published-j.sent, j.Subscribed-j.sent, j.received()-j.sent, j.Presented-j.sent, j.reply-j.sent)
		}
	}
	total := pick(func(j timedJoin) float64 { return j.Presented - j.sent })
	var size string
	var last timedJoin
	if len(joins) > 0 {
		size = fmt.Sprintf("%dx%d", joins[0].Width, joins[0].Height)
		last = joins[len(joins)-1]
	}
	r.Add(Figure{ID: "join.chromium.p50", Section: sec, Name: "join → first frame presented p50", Unit: "ms", Value: total.P(50), N: len(total),
		Note: fmt.Sprintf("expectedDisplayTime; timeOrigin clock − Date.now(): %+.1f ms at start, %+.1f at end", -done.SkewStart, -done.SkewEnd)})
	r.Add(Figure{ID: "join.chromium.p95", Section: sec, Name: "join → first frame presented p95", Unit: "ms", Value: total.P(95), Target: 250, N: len(total),
		Note: fmt.Sprintf("chromium %s, %s; %d m-lines on the subscribe connection at the last join; every join: %s", done.Browser, size, last.MLines, msList(total))})
	stages := []struct {
		id, name string
		f        func(j timedJoin) float64
	}{
		{"cmd_to_userjoined", "  command → user-joined in the page (MQTT, token, signalling join)", func(j timedJoin) float64 { return j.Joined - j.sent }},
		{"userjoined_to_published", "  user-joined → user-published video (publish, ICE, DTLS, first RTP)", func(j timedJoin) float64 { return j.Published - j.Joined }},
		{"published_to_subscribed", "  user-published → subscribe() resolved (request, hub offer, answer)", func(j timedJoin) float64 { return j.Subscribed - j.Published }},
		{"subscribed_to_received", "  subscribe() → first frame's last packet (receiveTime)", func(j timedJoin) float64 { return j.received() - j.Subscribed }},
		{"received_to_presented", "  received → presented (jitter buffer, decode, render)", func(j timedJoin) float64 { return j.Presented - j.received() }},
		{"cmd_to_reply", "  command → MQTT reply (device says joined)", func(j timedJoin) float64 { return j.reply - j.sent }},
	}
	for _, sg := range stages {
		d := pick(sg.f)
		r.Add(Figure{ID: "join.chromium." + sg.id + ".p50", Section: sec, Name: sg.name + " p50", Unit: "ms", Value: d.P(50), N: len(d),
			Note: fmt.Sprintf("p95 %.1f ms", d.P(95))})
	}
}

// received is the first frame's receiveTime, or its presentation when Chromium gave none.
func (j timedJoin) received() float64 {
	if j.Received == nil {
		return j.Presented
	}
	return *j.Received
}

// msList is every duration in whole ms, in order: where a run's slow joins fall.
func msList(d Durations) string {
	var b strings.Builder
	for i, x := range d {
		if i > 0 {
			b.WriteByte(' ')
		}
		fmt.Fprintf(&b, "%.0f", ms(x))
	}
	return b.String()
}

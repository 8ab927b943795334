package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/camagent/camagent/agent"
	"github.com/camagent/camagent/config"
	"github.com/camagent/camagent/device"
	"github.com/camagent/camagent/device/audio"
	"github.com/camagent/camagent/device/wav"
	"github.com/camagent/camagent/hub"
	"github.com/camagent/camagent/hub/tlsconf"
	"github.com/camagent/camagent/hub/token"
)

// guestToneHz is the guest browser's fake microphone (the admin's is browserTalkToneHz): the
// device's speaker must never play it.
const guestToneHz = 700.0

// TestSecureBrowser is issue 11's end-to-end check in Chromium over HTTPS, against a hub in
// secure mode (no demo trust): the first admin is made on the hub's identity store (as
// `camhub user add admin --admin` does), and e2e/browser/secure.mjs does the rest in the pages:
// it enrols two devices on the admin page (this test starts their agents with the credentials
// it shows), creates a view-only guest and an API key scoped to one device; the guest watches
// but cannot talk or command, the admin can, the key commands its device only. Afterwards this
// test reads the privileges of the tokens the browsers were given and the device's speaker.
func TestSecureBrowser(t *testing.T) {
	if testing.Short() {
		t.Skip("headless browsers: not in -short")
	}
	node, err := exec.LookPath("node")
	if err != nil {
		t.Fatal("node is needed for the browser tests")
	}
	if _, err := os.Stat("/usr/bin/chromium"); err != nil {
		t.Fatal("Debian's chromium is needed for the browser tests: run `make test-deps`")
	}
	if _, err := os.Stat("browser/node_modules/playwright-core"); err != nil {
		t.Fatal("playwright-core is not installed in e2e/browser: run `make test-deps`")
	}
	dir := t.TempDir()
	log := testLogger(t)

	hcfg := hub.Defaults()
	hcfg.Demo = false
	hcfg.Listen = "127.0.0.1:0"
	hcfg.MQTTListen = "127.0.0.1:0"
	hcfg.StateDir = filepath.Join(dir, "hub")
	hcfg.Network.TLS = "on"
	h, err := hub.New(hcfg, log)
	must(t, err, "hub")
	hubCtx, stopHub := context.WithCancel(context.Background())
	hubDone := make(chan error, 1)
	go func() { hubDone <- h.Run(hubCtx) }()
	select {
	case <-h.Ready():
	case err := <-hubDone:
		t.Fatalf("hub: %v", err)
	case <-time.After(20 * time.Second):
		t.Fatal("hub did not start")
	}
	stopped := func(name string, stop context.CancelFunc, done chan error) {
		stop()
		select {
		case err := <-done:
			if err != nil && !errors.Is(err, context.Canceled) {
				t.Errorf("%s stopped with %v", name, err)
			}
		case <-time.After(10 * time.Second):
			t.Errorf("%s did not stop within 10 s", name)
		}
	}
	t.Cleanup(func() { stopped("hub", stopHub, hubDone) })
	hubCert := filepath.Join(hcfg.StateDir, tlsconf.CertFile)
	if _, err := os.Stat(hubCert); err != nil {
		t.Fatalf("the hub in TLS mode left no self-signed certificate: %v", err)
	}

	const adminUser, adminPassword = "admin", "admin-password-e2e"
	must(t, h.Store().AddUser(adminUser, adminPassword, true, nil), "add the first admin")

	const deviceID, otherID = "porch", "shed"
	speaker := filepath.Join(dir, "porch-speaker.wav")
	// The agents start once secure.mjs has enrolled them and written their credentials.
	metrics := map[string]string{deviceID: freeAddr(t), otherID: freeAddr(t)}
	agentsUp := make(chan error, 1)
	go func() {
		for _, id := range []string{deviceID, otherID} {
			cred := filepath.Join(dir, id+".credential")
			if err := waitForFile(hubCtx, cred, 3*time.Minute); err != nil {
				agentsUp <- fmt.Errorf("%s's credential: %w", id, err)
				return
			}
			spk := "null"
			if id == deviceID {
				spk = "wav:" + speaker
			}
			if err := startEnrolledAgent(t, h, id, cred, hubCert, spk, filepath.Join(dir, "agent-"+id), metrics[id], stopped); err != nil {
				agentsUp <- fmt.Errorf("agent %s: %w", id, err)
				return
			}
		}
		agentsUp <- nil
	}()

	cmd := exec.Command(node, "--test", "--test-concurrency=1", "--test-reporter=spec", "secure.mjs")
	cmd.Dir = "browser"
	cmd.Env = append(os.Environ(),
		"CAMAGENT_HUB_URL="+h.URL(),
		"NODE_EXTRA_CA_CERTS="+hubCert,
		"CAMAGENT_ADMIN_USER="+adminUser,
		"CAMAGENT_ADMIN_PASSWORD="+adminPassword,
		"CAMAGENT_DEVICE_ID="+deviceID,
		"CAMAGENT_OTHER_DEVICE_ID="+otherID,
		"CAMAGENT_SECURE_DIR="+dir,
		fmt.Sprintf("CAMAGENT_GUEST_TONE_HZ=%g", guestToneHz),
	)
	out, err := cmd.StdoutPipe()
	must(t, err, "pipe")
	cmd.Stderr = cmd.Stdout
	must(t, cmd.Start(), "start node")
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		t.Log(sc.Text())
	}
	nodeErr := cmd.Wait()
	select {
	case err := <-agentsUp:
		if err != nil {
			t.Error(err)
		}
	default:
		t.Error("the script ended before both devices were enrolled")
	}
	if nodeErr != nil {
		t.Fatalf("secure browser tests failed: %v", nodeErr)
	}

	// The tokens the browsers were given: the guest's never carry publishAudio, the admin's does.
	var res struct {
		GuestWatchToken, GuestForgedTalkToken, AdminWatchToken string
	}
	b, err := os.ReadFile(filepath.Join(dir, "results.json"))
	must(t, err, "read the script's results")
	must(t, json.Unmarshal(b, &res), "parse the script's results")
	certs := func(app, kid string) (string, bool) { return h.Certificate(app) }
	for _, c := range []struct {
		name, tok string
		talk      bool
	}{{"guest's /watch", res.GuestWatchToken, false}, {"guest's forged /watch {talk:true}", res.GuestForgedTalkToken, false},
		{"admin's /watch", res.AdminWatchToken, true}} {
		claims, err := token.Parse(c.tok, certs)
		if err != nil {
			t.Errorf("%s token: %v", c.name, err)
			continue
		}
		t.Logf("%s token: channel %s, uid %d, privileges %v, expires in %s", c.name, claims.Channel, claims.UID, claims.Privileges,
			time.Until(claims.Expiry()).Round(time.Second))
		if got := claims.Has(token.PrivPublishAudio); got != c.talk {
			t.Errorf("%s token: publishAudio %v, want %v", c.name, got, c.talk)
		}
		if claims.Has(token.PrivPublishVideo) {
			t.Errorf("%s token grants publishVideo", c.name)
		}
		if claims.Channel != hub.ViewChannel(deviceID) || claims.UID == 0 {
			t.Errorf("%s token: channel %q uid %d, want %q and a fixed uid", c.name, claims.Channel, claims.UID, hub.ViewChannel(deviceID))
		}
	}

	// The device's speaker: the admin's tone, never the guest's.
	samples, _, _, err := wav.ReadFile(speaker)
	must(t, err, "read the device's speaker WAV")
	adminWin, guestWin := toneWindows(samples, browserTalkToneHz), toneWindows(samples, guestToneHz)
	t.Logf("device speaker: %.1f s of the admin's %.0f Hz, %.1f s of the guest's %.0f Hz", float64(adminWin)/10, browserTalkToneHz,
		float64(guestWin)/10, guestToneHz)
	if adminWin < 10 {
		t.Errorf("the admin's voice reached the speaker for only %.1f s (want ≥ 1 s)", float64(adminWin)/10)
	}
	if guestWin > 0 {
		t.Errorf("the guest, who may not talk, was heard on the device's speaker for %.1f s", float64(guestWin)/10)
	}
}

// toneWindows counts the 100 ms windows of samples that are loud and dominated by hz.
func toneWindows(samples []int16, hz float64) int {
	const win = device.SampleRate / 10
	n := 0
	for i := 0; i+win <= len(samples); i += win {
		w := samples[i : i+win]
		if audio.RMS(w) < 300 {
			continue
		}
		if f := audio.DominantFrequency(w, device.SampleRate); f > hz-20 && f < hz+20 {
			n++
		}
	}
	return n
}

func waitForFile(ctx context.Context, path string, within time.Duration) error {
	deadline := time.Now().Add(within)
	for {
		if fi, err := os.Stat(path); err == nil && fi.Size() > 0 {
			time.Sleep(100 * time.Millisecond) // written in one call; let it land whole
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s did not appear within %s", path, within)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// startEnrolledAgent runs an agent that knows only what an enrolled device's camagent.yaml
// says: its id, the hub over HTTPS (trusting its certificate), the embedded broker, and
// credentialFile. It stops when the test ends.
func startEnrolledAgent(t *testing.T, h *hub.Hub, id, credFile, hubCA, speaker, stateDir, metricsAddr string,
	stopped func(string, context.CancelFunc, chan error)) error {
	acfg := agent.Defaults()
	yaml := fmt.Sprintf("id: %s\nhub: %s\nhubCA: %s\nmqtt: %s\ncredentialFile: %s\ncamera: test\nspeaker: %q\nstateDir: %s\niceLoopbackOnly: true\n",
		id, h.URL(), hubCA, h.BrokerURL(), credFile, speaker, stateDir)
	if err := config.Decode([]byte(yaml), &acfg); err != nil {
		return fmt.Errorf("camagent.yaml: %w", err)
	}
	acfg.MetricsListen = metricsAddr
	acfg.Derive()
	if err := acfg.ResolveSecrets(""); err != nil {
		return err
	}
	a, err := agent.New(acfg, testLogger(t))
	if err != nil {
		return err
	}
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	// The agent stops before the hub (cleanups run last-registered first).
	t.Cleanup(func() { stopped("agent "+id, stop, done) })
	select {
	case <-a.Ready():
		return nil
	case err := <-done:
		return fmt.Errorf("stopped: %v", err)
	case <-time.After(20 * time.Second):
		return errors.New("did not connect to the broker")
	}
}

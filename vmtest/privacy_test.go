//go:build vmtest

package vmtest

import (
	"strings"
	"testing"
)

// privacyResult is the probe's "privacy" part (probe/privacy.go).
type privacyResult struct {
	OpenInCall        []string `json:"openInCall"`
	OpenInPrivacy     []string `json:"openInPrivacy"`
	OpenAfterOff      []string `json:"openAfterOff"`
	SnapshotBytes     int      `json:"snapshotBytes"`
	SnapshotWidth     int      `json:"snapshotWidth"`
	SnapshotHeight    int      `json:"snapshotHeight"`
	HubBytes          int      `json:"hubBytes"`
	HubLumaSD         float64  `json:"hubLumaSD"`
	JoinRefused       string   `json:"joinRefused"`
	SnapshotStatus    int      `json:"snapshotStatus"`
	FreshStatus       int      `json:"freshStatus"`
	StatePrivacy      bool     `json:"statePrivacy"`
	FramesAfterOff    int      `json:"framesAfterOff"`
	KeyframesAfterOff int      `json:"keyframesAfterOff"`
	IdleWidth         int      `json:"idleWidth"`
	IdleHeight        int      `json:"idleHeight"`
	OpenAfterIdle     []string `json:"openAfterIdleSnapshot"`
}

func holds(list []string, node string) bool {
	for _, h := range list {
		if strings.Contains(h, ":"+node) {
			return true
		}
	}
	return false
}

// checkPrivacy is issue 14's done-when 2 and 3 on real drivers: a snapshot of vivid's
// picture (in a call and idle) decodes as a JPEG of the camera's size; privacy mode closes
// the camera and the sound card (no process holds /dev/video* or /dev/snd/pcm*) and refuses
// a join and snapshots; off, the device joins and sends its picture again.
func checkPrivacy(t *testing.T, p *privacyResult) {
	t.Helper()
	if p == nil {
		t.Fatal("the probe did not run the privacy part")
	}
	// The check can see what is held: in a call the camera and the PCMs are (aplay and
	// arecord restart now and then on the emulated CPU, so either call may show them).
	if !holds(p.OpenInCall, "/dev/video0") || !holds(p.OpenInCall, "/dev/snd/pcm") && !holds(p.OpenAfterOff, "/dev/snd/pcm") {
		t.Errorf("in the calls the probe saw %v and %v held: want /dev/video0 and the PCMs", p.OpenInCall, p.OpenAfterOff)
	}
	if p.SnapshotWidth != 320 || p.SnapshotHeight != 180 || p.HubBytes != p.SnapshotBytes || p.HubLumaSD < 10 {
		t.Errorf("snapshot in the call: %dx%d, %d bytes (the hub served %d), luma deviation %.1f",
			p.SnapshotWidth, p.SnapshotHeight, p.SnapshotBytes, p.HubBytes, p.HubLumaSD)
	}
	if len(p.OpenInPrivacy) != 0 || !p.StatePrivacy {
		t.Errorf("privacy on: still held %v (state privacy %v)", p.OpenInPrivacy, p.StatePrivacy)
	}
	if !strings.Contains(p.JoinRefused, "privacy mode is on") || p.SnapshotStatus != 404 || p.FreshStatus != 409 {
		t.Errorf("privacy on: join refused with %q, snapshot.jpg %d (want 404), fresh %d (want 409)", p.JoinRefused, p.SnapshotStatus, p.FreshStatus)
	}
	if p.FramesAfterOff < 10 || p.KeyframesAfterOff < 1 || !holds(p.OpenAfterOff, "/dev/video0") {
		t.Errorf("privacy off: %d frames (%d keyframes), held %v", p.FramesAfterOff, p.KeyframesAfterOff, p.OpenAfterOff)
	}
	if p.IdleWidth != 320 || p.IdleHeight != 180 || len(p.OpenAfterIdle) != 0 {
		t.Errorf("idle fresh snapshot: %dx%d, then held %v", p.IdleWidth, p.IdleHeight, p.OpenAfterIdle)
	}
	t.Logf("snapshots of vivid: %d bytes in the call, idle %dx%d; held in the call %v, in privacy mode %v, after it %v",
		p.SnapshotBytes, p.IdleWidth, p.IdleHeight, p.OpenInCall, p.OpenInPrivacy, p.OpenAfterOff)
}

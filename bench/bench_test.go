package bench

import (
	"bytes"
	"context"
	"image/png"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestSmallest runs the harness's smallest configuration end to end (in-process hub and agent,
// a few joins, a few frames, one fan-out viewer) so that it cannot rot. It checks that every
// figure is produced and that the files round-trip; it never checks a timing.
func TestSmallest(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a hub, an agent and WebRTC connections")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var progress bytes.Buffer
	r, err := Run(ctx, Options{Repo: "..", Smallest: true, Only: []string{"join", "late", "glass", "fanout"}, Progress: &progress})
	if err != nil {
		t.Fatalf("run: %v\n%s", err, progress.String())
	}
	for _, id := range []string{"join.total.p95", "late.total.p95", "glass.p95", "forward.n1.p95", "hub.n1.delivered"} {
		found := false
		for _, f := range r.Figures {
			found = found || f.ID == id
		}
		if !found {
			t.Errorf("figure %s missing", id)
		}
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "results.json")
	if err := r.WriteFile(path); err != nil {
		t.Fatal(err)
	}
	back, err := ReadResults(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(back.Figures) != len(r.Figures) || back.Machine.Cores == 0 || back.Machine.GoVersion == "" {
		t.Errorf("results did not round-trip: %+v", back)
	}
	var table, cmp bytes.Buffer
	r.PrintTable(&table)
	Compare(&cmp, back, r)
	if !strings.Contains(table.String(), "join → first decodable frame p95") || !strings.Contains(cmp.String(), "join.total.p95") {
		t.Errorf("table or comparison incomplete:\n%s\n%s", table.String(), cmp.String())
	}
	chart := filepath.Join(dir, "results.png")
	if err := r.WriteChart(chart); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(chart)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := png.Decode(f); err != nil {
		t.Errorf("chart: %v", err)
	}
}

func TestAUReader(t *testing.T) {
	// two access units: a STAP-A and a FU-A split in two, then one where the first packet is lost
	var r auReader
	now := time.Now()
	pkts := []struct {
		seq     uint16
		ts      uint32
		marker  bool
		payload []byte
	}{
		{1, 100, false, []byte{24, 0, 2, 0x67, 0x42, 0, 2, 0x68, 0xce}}, // STAP-A: SPS, PPS
		{2, 100, false, []byte{28, 0x85, 0xaa}},                         // FU-A start, IDR
		{3, 100, true, []byte{28, 0x45, 0xbb}},                          // FU-A end
		{5, 200, true, []byte{28, 0x41, 0xcc}},                          // FU-A end only: start lost
	}
	var frames []*frame
	for _, p := range pkts {
		if f := r.push(rtpPacket(p.seq, p.ts, p.marker, p.payload), now); f != nil {
			frames = append(frames, f)
		}
	}
	if len(frames) != 2 {
		t.Fatalf("got %d frames, want 2", len(frames))
	}
	if !frames[0].decodable() {
		t.Errorf("first frame (SPS, PPS, whole IDR) should be decodable: %+v", frames[0])
	}
	if frames[1].clean {
		t.Errorf("second frame lost its first packet but is marked clean")
	}
}

// TestSkippedFigure: a figure that could not be measured (no browser) shows as such in the
// table and the comparison and survives the file, without starting anything.
func TestSkippedFigure(t *testing.T) {
	r := NewResults("..", true)
	r.Add(Figure{ID: "glass.chromium.p95", Section: chromiumSection, Name: "capture → presented in Chromium p95", Unit: "ms",
		Skipped: "no Chromium at /nowhere"})
	path := filepath.Join(t.TempDir(), "results.json")
	if err := r.WriteFile(path); err != nil {
		t.Fatal(err)
	}
	back, err := ReadResults(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(back.Figures) != 1 || back.Figures[0].Skipped == "" || !back.Figures[0].Met() {
		t.Fatalf("skipped figure did not round-trip: %+v", back.Figures)
	}
	var table, cmp bytes.Buffer
	back.PrintTable(&table)
	Compare(&cmp, back, r)
	for _, out := range []string{table.String(), cmp.String()} {
		if !strings.Contains(out, "not measured") {
			t.Errorf("no \"not measured\" in:\n%s", out)
		}
	}
	if !strings.Contains(table.String(), "no Chromium at /nowhere") {
		t.Errorf("the reason is missing from the table:\n%s", table.String())
	}
	if err := r.WriteChart(filepath.Join(t.TempDir(), "results.png")); err != nil {
		t.Fatal(err)
	}
}

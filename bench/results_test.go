package bench

import (
	"path/filepath"
	"testing"
)

// TestWriteScaleKeepsBench: make scale's run replaces only the file's scale run, and a file
// that does not exist yet is created.
func TestWriteScaleKeepsBench(t *testing.T) {
	path := filepath.Join(t.TempDir(), "results.json")
	if err := WriteScale(path, &ScaleRun{Revision: "first", Figures: []Figure{{ID: "scale.a", Value: 1}}}); err != nil {
		t.Fatal(err)
	}
	r, err := ReadResults(path)
	if err != nil || r.Scale == nil || r.Scale.Revision != "first" || len(r.Figures) != 0 {
		t.Fatalf("new file: %+v, %v", r, err)
	}
	r.Revision = "bench"
	r.Add(Figure{ID: "join.total.p95", Value: 40})
	if err := r.WriteFile(path); err != nil {
		t.Fatal(err)
	}
	if err := WriteScale(path, &ScaleRun{Revision: "second", Figures: []Figure{{ID: "scale.b", Value: 2}}}); err != nil {
		t.Fatal(err)
	}
	r, err = ReadResults(path)
	if err != nil {
		t.Fatal(err)
	}
	if r.Revision != "bench" || len(r.Figures) != 1 || r.Figures[0].ID != "join.total.p95" {
		t.Fatalf("the bench figures changed: %+v", r)
	}
	if r.Scale == nil || r.Scale.Revision != "second" || len(r.Scale.Figures) != 1 || r.Scale.Figures[0].ID != "scale.b" {
		t.Fatalf("scale run %+v, want the second", r.Scale)
	}
}

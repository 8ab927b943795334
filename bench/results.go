// Package bench measures camagent against the targets of issue 8 and the open-source peers'
// published figures: join time, late-joiner time, forwarding latency through the hub,
// glass-to-glass latency, hub cost per subscriber and agent cost. Everything runs on
// loopback; the figures go into one table, a versioned results file and a PNG chart.
//
// Benchmarks print figures; they never assert timings. Run owns every process, peer
// connection and goroutine it starts and ends them before it returns.
package bench

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"sort"
	"strings"
	"time"
)

// Schema names the results file format; bump the number on an incompatible change.
const Schema = "camagent-bench/1"

// Results is the content of bench/results.json.
type Results struct {
	Schema   string    `json:"schema"`
	Revision string    `json:"revision"` // git describe --always --dirty
	Date     time.Time `json:"date"`
	Machine  Machine   `json:"machine"`
	Quick    bool      `json:"quick"`
	Seconds  float64   `json:"seconds"` // wall time of the whole run
	Figures  []Figure  `json:"figures"`
	Notes    []string  `json:"notes,omitempty"`
	// Scale is the last `make scale` run (bench/scale), kept in this file beside make bench's
	// figures: make scale replaces only it, make bench keeps it when it rewrites the file.
	// Added within schema 1: older files have none.
	Scale *ScaleRun `json:"scale,omitempty"`
}

// ScaleRun is one `make scale` run: several hubs, brokers and fleets (docs/scaling.md).
type ScaleRun struct {
	Revision string    `json:"revision"`
	Date     time.Time `json:"date"`
	Machine  Machine   `json:"machine"`
	Seconds  float64   `json:"seconds"`
	Figures  []Figure  `json:"figures"`
	Notes    []string  `json:"notes,omitempty"`
}

// NewScaleRun fills in the revision, date and machine.
func NewScaleRun(repo string) *ScaleRun {
	r := NewResults(repo, false)
	return &ScaleRun{Revision: r.Revision, Date: r.Date, Machine: r.Machine}
}

// WriteScale puts s into the results file at path in place of its last scale run, keeping
// everything else; a missing file is created with no bench figures.
func WriteScale(path string, s *ScaleRun) error {
	r, err := ReadResults(path)
	if errors.Is(err, os.ErrNotExist) {
		r, err = &Results{Schema: Schema}, nil
	}
	if err != nil {
		return err
	}
	s.Machine.LoadAvgEnd = loadAvg()
	r.Scale = s
	return r.WriteFile(path)
}

// Machine describes where the figures were measured.
type Machine struct {
	Cores      int    `json:"cores"`
	CPU        string `json:"cpu"`
	GoVersion  string `json:"goVersion"`
	OS         string `json:"os"`
	Arch       string `json:"arch"`
	LoadAvg    string `json:"loadAvg"`    // /proc/loadavg at the start: the machine is shared
	LoadAvgEnd string `json:"loadAvgEnd"` // and at the end
	// Chromium is the headless browser's version when section 4 measured one (added within
	// schema 1: older files have none).
	Chromium string `json:"chromium,omitempty"`
}

// Figure is one measured number.
type Figure struct {
	ID      string  `json:"id"`      // stable key for compare, e.g. "join.total.p95"
	Section string  `json:"section"` // the measurement number and name
	Name    string  `json:"name"`
	Unit    string  `json:"unit"` // ms, %core, MB, pkt/s, …
	Value   float64 `json:"value"`
	// Target is the bound (0: none); Better says which direction is good.
	Target float64 `json:"target,omitempty"`
	Better string  `json:"better"` // "lower" or "higher"
	Peers  string  `json:"peers,omitempty"`
	N      int     `json:"n,omitempty"` // samples behind the figure
	Note   string  `json:"note,omitempty"`
	// Skipped says why the figure was not measured (e.g. no browser installed); Value is then
	// meaningless. Added within schema 1: readers that do not know it see a 0.
	Skipped string `json:"skipped,omitempty"`
}

// Met reports whether the figure meets its target (true when it has none).
func (f Figure) Met() bool {
	if f.Target == 0 || f.Skipped != "" {
		return true
	}
	if f.Better == "higher" {
		return f.Value >= f.Target
	}
	return f.Value <= f.Target
}

// Add appends a figure.
func (r *Results) Add(f Figure) {
	if f.Better == "" {
		f.Better = "lower"
	}
	r.Figures = append(r.Figures, f)
}

// Note records a remark printed under the table and kept in the file.
func (r *Results) Note(format string, args ...any) {
	r.Notes = append(r.Notes, fmt.Sprintf(format, args...))
}

// SortFigures orders the figures by section (the numbering), keeping their order
// within a section.
func (r *Results) SortFigures() {
	sort.SliceStable(r.Figures, func(i, j int) bool { return r.Figures[i].Section < r.Figures[j].Section })
}

// NewResults fills in the revision, date and machine.
func NewResults(repo string, quick bool) *Results {
	return &Results{Schema: Schema, Revision: gitRevision(repo), Date: time.Now().UTC().Truncate(time.Second),
		Machine: Machine{Cores: runtime.NumCPU(), CPU: cpuModel(), GoVersion: runtime.Version(),
			OS: runtime.GOOS, Arch: runtime.GOARCH, LoadAvg: loadAvg()}, Quick: quick}
}

func gitRevision(repo string) string {
	cmd := exec.Command("git", "describe", "--tags", "--always", "--dirty")
	cmd.Dir = repo
	out, err := cmd.Output()
	if err != nil {
		return "unknown"
	}
	return strings.TrimSpace(string(out))
}

func cpuModel() string {
	b, _ := os.ReadFile("/proc/cpuinfo")
	for _, line := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return "unknown"
}

func loadAvg() string {
	b, _ := os.ReadFile("/proc/loadavg")
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return ""
	}
	return strings.Join(f[:3], " ")
}

// WriteFile writes the results as indented JSON.
func (r *Results) WriteFile(path string) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}

// ReadResults reads a results file, refusing another schema.
func ReadResults(path string) (*Results, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var r Results
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if r.Schema != Schema {
		return nil, fmt.Errorf("%s: schema %q, this tool reads %q", path, r.Schema, Schema)
	}
	return &r, nil
}

package agent

import (
	"fmt"
	"io"
	"os"
	"runtime"
	"strconv"
	"strings"
)

// writeProcessMetrics writes the process's own figures under their usual Prometheus names:
// goroutines, open file descriptors, resident memory and Go heap in use. They are what a
// leak shows in first (docs/reliability.md: the fault matrix compares them before the first
// and after the last repetition).
func writeProcessMetrics(w io.Writer) {
	gauge := func(name, help string, v float64) {
		fmt.Fprintf(w, "# HELP %s %s\n# TYPE %s gauge\n%s %g\n", name, help, name, name, v)
	}
	gauge("go_goroutines", "Goroutines that currently exist.", float64(runtime.NumGoroutine()))
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	gauge("go_memstats_heap_inuse_bytes", "Bytes in in-use heap spans.", float64(ms.HeapInuse))
	if n, err := openFDs(); err == nil {
		gauge("process_open_fds", "Open file descriptors.", float64(n))
	}
	if rss, err := residentBytes(); err == nil {
		gauge("process_resident_memory_bytes", "Resident memory size in bytes.", float64(rss))
	}
}

// openFDs counts the process's open file descriptors (Linux: /proc/self/fd).
func openFDs() (int, error) {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return 0, err
	}
	return len(ents) - 1, nil // the directory being read is one of them
}

// residentBytes is the process's resident set size (Linux: VmRSS in /proc/self/status).
func residentBytes() (int64, error) {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			if err != nil {
				return 0, fmt.Errorf("parse VmRSS %q: %w", rest, err)
			}
			return kb << 10, nil
		}
	}
	return 0, fmt.Errorf("no VmRSS in /proc/self/status")
}

package hub

import (
	"log/slog"
	"net/http"
	"sort"
	"sync"
	"time"
)

// noiseLog counts refused requests by kind (for /metrics) and logs them at a bounded rate: at
// most noiseBurst lines a second per kind, the rest summed into the next line written.
type noiseLog struct {
	log *slog.Logger

	mu     sync.Mutex
	counts map[string]uint64
	window map[string]time.Time
	lines  map[string]int
	muted  map[string]int
}

const noiseBurst = 5

func newNoiseLog(log *slog.Logger) *noiseLog {
	return &noiseLog{log: log, counts: map[string]uint64{}, window: map[string]time.Time{},
		lines: map[string]int{}, muted: map[string]int{}}
}

// add counts one refusal of kind and logs it unless kind has been logged noiseBurst times in
// the last second.
func (n *noiseLog) add(kind, msg string, attrs ...any) {
	now := time.Now()
	n.mu.Lock()
	n.counts[kind]++
	if now.Sub(n.window[kind]) >= time.Second {
		n.window[kind], n.lines[kind] = now, 0
	}
	if n.lines[kind] >= noiseBurst {
		n.muted[kind]++
		n.mu.Unlock()
		return
	}
	n.lines[kind]++
	muted := n.muted[kind]
	n.muted[kind] = 0
	n.mu.Unlock()
	if muted > 0 {
		attrs = append(attrs, "suppressed", muted)
	}
	n.log.Warn(msg, append([]any{"refused", kind}, attrs...)...)
}

// snapshot returns the counts sorted by kind.
func (n *noiseLog) snapshot() (kinds []string, counts []uint64) {
	n.mu.Lock()
	defer n.mu.Unlock()
	for k := range n.counts {
		kinds = append(kinds, k)
	}
	sort.Strings(kinds)
	for _, k := range kinds {
		counts = append(counts, n.counts[k])
	}
	return kinds, counts
}

// noise records a refused request.
func (h *Hub) noise(kind string, r *http.Request, attrs ...any) {
	h.refusals.add(kind, "request refused", append([]any{"remote", h.clientAddr(r), "method", r.Method, "path", r.URL.Path}, attrs...)...)
}

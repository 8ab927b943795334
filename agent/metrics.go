package agent

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/camagent/camagent/control"
)

// metrics are the agent's counters for its optional Prometheus endpoint (metricsListen).
type metrics struct {
	mu       sync.Mutex
	commands map[[2]string]uint64 // {action, ok|error} → count
	rejoins  atomic.Uint64
}

func (m *metrics) command(action string, err error) {
	result := "ok"
	if err != nil {
		result = "error"
	}
	m.mu.Lock()
	if m.commands == nil {
		m.commands = map[[2]string]uint64{}
	}
	m.commands[[2]string{action, result}]++
	m.mu.Unlock()
}

// serveMetrics serves /metrics on addr until ctx ends.
func (a *Agent) serveMetrics(ctx context.Context, addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("agent: metrics: listen on %s: %w", addr, err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /metrics", a.writeMetrics)
	if a.cfg.MetricsPprof {
		mux.HandleFunc("GET /debug/pprof/", pprof.Index) // heap, goroutine, allocs… by name
		mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
		a.log.Warn("Go profiles served on the metrics endpoint (metricsPprof)", "url", "http://"+ln.Addr().String()+"/debug/pprof/")
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		<-ctx.Done()
		srv.Close()
	}()
	a.log.Info("metrics listening", "url", "http://"+ln.Addr().String()+"/metrics")
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("agent: metrics: %w", err)
	}
	return nil
}

func (a *Agent) writeMetrics(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; version=0.0.4")
	st := a.State()
	gauge := func(name, help string, v float64) {
		fmt.Fprintf(w, "# HELP %s %s\n# TYPE %s gauge\n%s %g\n", name, help, name, name, v)
	}
	connected := 0.0
	if a.ctrl.Connected() {
		connected = 1
	}
	gauge("camagent_mqtt_connected", "1 while the MQTT connection is up.", connected)
	gauge("camagent_commands_queued", "MQTT commands received and waiting for the one running.", float64(a.ctrl.Queued()))
	fmt.Fprintf(w, "# HELP camagent_state The call state: 1 for the current one.\n# TYPE camagent_state gauge\n")
	for _, s := range []string{control.StateIdle, control.StateJoining, control.StateJoined, control.StateLeaving, control.StateError} {
		v := 0
		if st.State == s {
			v = 1
		}
		fmt.Fprintf(w, "camagent_state{state=%q} %d\n", s, v)
	}
	gauge("camagent_channel_users", "Other users in the channel.", float64(len(st.Users)))

	fmt.Fprintf(w, "# HELP camagent_commands_total MQTT commands run, by action and result.\n# TYPE camagent_commands_total counter\n")
	a.metrics.mu.Lock()
	keys := make([][2]string, 0, len(a.metrics.commands))
	for k := range a.metrics.commands {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return keys[i][0]+keys[i][1] < keys[j][0]+keys[j][1] })
	for _, k := range keys {
		fmt.Fprintf(w, "camagent_commands_total{action=%q,result=%q} %d\n", k[0], k[1], a.metrics.commands[k])
	}
	a.metrics.mu.Unlock()
	fmt.Fprintf(w, "# HELP camagent_rejoins_total Connections to the hub re-established after a failure.\n# TYPE camagent_rejoins_total counter\ncamagent_rejoins_total %d\n", a.metrics.rejoins.Load())

	// The current connection's media counters (they start again after a rejoin).
	var t streamTotals
	var restarts uint64
	a.mu.Lock()
	c := a.call
	a.mu.Unlock()
	if c != nil {
		c.mu.Lock()
		client := c.client
		c.mu.Unlock()
		if client != nil {
			if pc := client.PublishConnection(); pc != nil {
				t = a.totals(pc)
			}
			restarts = client.ICERestarts()
		}
	}
	fmt.Fprintf(w, "# HELP camagent_ice_restarts_total ICE restarts on the current connection (a media path died, the session lived on).\n# TYPE camagent_ice_restarts_total counter\ncamagent_ice_restarts_total %d\n", restarts)
	fmt.Fprintf(w, "# HELP camagent_sent_bytes_total RTP payload and header bytes sent on the current connection.\n# TYPE camagent_sent_bytes_total counter\n")
	fmt.Fprintf(w, "camagent_sent_bytes_total{kind=\"video\"} %d\ncamagent_sent_bytes_total{kind=\"audio\"} %d\n", t.videoBytes, t.audioBytes)
	fmt.Fprintf(w, "# HELP camagent_sent_frames_total Video frames sent on the current connection.\n# TYPE camagent_sent_frames_total counter\ncamagent_sent_frames_total %d\n", t.frames)
	gauge("camagent_packets_lost", "Packets the hub reported lost on the current connection.", float64(t.lost))
	gauge("camagent_rtt_seconds", "Round-trip time to the hub.", t.rttMillis/1000)
	writeProcessMetrics(w) // procstats.go
}

package hub

import (
	"fmt"
	"net/http"
	"runtime"
)

// handleMetrics writes the hub's Prometheus text: channels, users, joins, forwarding and NACK
// counters, online devices, then the cluster's gauges and the refusals.
func (h *Hub) handleMetrics(w http.ResponseWriter, _ *http.Request) {
	defer h.writeRefusalMetrics(w)
	defer h.writeClusterMetrics(w)
	st := h.sfu.Stats()
	online := 0
	for _, d := range h.dir.Devices() {
		if d.Status == "online" {
			online++
		}
	}
	w.Header().Set("Content-Type", "text/plain; version=0.0.4")
	fmt.Fprintf(w, "# HELP camhub_channels Channels with at least one user.\n# TYPE camhub_channels gauge\ncamhub_channels %d\n", st.Channels)
	fmt.Fprintf(w, "# HELP camhub_users Users in all channels.\n# TYPE camhub_users gauge\ncamhub_users %d\n", st.Users)
	fmt.Fprintf(w, "# HELP camhub_joins_total Successful joins.\n# TYPE camhub_joins_total counter\ncamhub_joins_total %d\n", st.Joins)
	fmt.Fprintf(w, "# HELP camhub_joins_refused_total Joins refused (token or parameters).\n# TYPE camhub_joins_refused_total counter\ncamhub_joins_refused_total %d\n", st.Refused)
	fmt.Fprintf(w, "# HELP camhub_ice_restarts_total ICE restarts, asked for by clients or started by the hub (a media path died, the session lived on).\n# TYPE camhub_ice_restarts_total counter\ncamhub_ice_restarts_total %d\n", st.ICERestarts)
	fmt.Fprintf(w, "# HELP camhub_signalling_resumes_total Sessions a client moved to a fresh signalling socket (a lost or stuck socket; the call went on).\n# TYPE camhub_signalling_resumes_total counter\ncamhub_signalling_resumes_total %d\n", st.Resumes)
	fmt.Fprintf(w, "# HELP camhub_forwarded_packets_total RTP packets received from publishers and forwarded.\n# TYPE camhub_forwarded_packets_total counter\ncamhub_forwarded_packets_total %d\n", st.ForwardedPackets)
	fmt.Fprintf(w, "# HELP camhub_forwarded_bytes_total RTP bytes received from publishers and forwarded.\n# TYPE camhub_forwarded_bytes_total counter\ncamhub_forwarded_bytes_total %d\n", st.ForwardedBytes)
	fmt.Fprintf(w, "# HELP camhub_nack_resent_packets_total Video packets sent again on subscribers' NACKs, from the hub's per-track cache.\n# TYPE camhub_nack_resent_packets_total counter\ncamhub_nack_resent_packets_total %d\n", st.NACKResent)
	fmt.Fprintf(w, "# HELP camhub_nack_missed_packets_total Video packets NACKed that were no longer in the cache (256 per track).\n# TYPE camhub_nack_missed_packets_total counter\ncamhub_nack_missed_packets_total %d\n", st.NACKMissed)
	fmt.Fprintf(w, "# HELP camhub_warm_starts_total Video subscribers started at once from the publisher's last keyframe, which the hub still had, instead of waiting for a new one.\n# TYPE camhub_warm_starts_total counter\ncamhub_warm_starts_total %d\n", st.WarmStarts)
	fmt.Fprintf(w, "# HELP camhub_devices_online Devices whose MQTT status is online.\n# TYPE camhub_devices_online gauge\ncamhub_devices_online %d\n", online)
	fmt.Fprintf(w, "# HELP camhub_goroutines Goroutines of the hub process (a leak shows as growth under steady load: make soak).\n# TYPE camhub_goroutines gauge\ncamhub_goroutines %d\n", runtime.NumGoroutine())
}

// writeRefusalMetrics adds the counts of refused requests and logins by kind.
func (h *Hub) writeRefusalMetrics(w http.ResponseWriter) {
	kinds, counts := h.refusals.snapshot()
	fmt.Fprintf(w, "# HELP camhub_refused_total Requests, logins and MQTT connections refused, by kind (unauthenticated noise and attacks).\n# TYPE camhub_refused_total counter\n")
	for i, k := range kinds {
		fmt.Fprintf(w, "camhub_refused_total{kind=%q} %d\n", k, counts[i])
	}
	fmt.Fprintf(w, "# HELP camhub_web_sessions Logged-in web sessions.\n# TYPE camhub_web_sessions gauge\ncamhub_web_sessions %d\n", h.sessions.Len())
}

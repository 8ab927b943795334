// Package hub wires the channel service together: the embedded MQTT broker (optional), the
// device directory, the token service, the signalling/forwarding service and the web pages.
// Its parts know nothing of configuration files; Run is the one place that connects them.
package hub

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/camagent/camagent/hub/broker"
	"github.com/camagent/camagent/hub/directory"
	"github.com/camagent/camagent/hub/sfu"
	"github.com/camagent/camagent/hub/token"
	"github.com/camagent/camagent/rtc"
	"github.com/camagent/camagent/web"
)

// Hub is a running hub.
type Hub struct {
	cfg    Config
	log    *slog.Logger
	certs  map[string]string
	sfu    *sfu.Service
	dir    *directory.Directory
	ready  chan struct{}
	addr   string
	scheme string
	broker string
}

// New prepares a hub from a validated configuration.
func New(cfg Config, log *slog.Logger) (*Hub, error) {
	if err := errors.Join(cfg.Validate(), cfg.Network.Validate()); err != nil {
		return nil, fmt.Errorf("hub: invalid configuration:\n%w", err)
	}
	certs, err := cfg.Certificates()
	if err != nil {
		return nil, fmt.Errorf("hub: %w", err)
	}
	if log == nil {
		log = slog.Default()
	}
	return &Hub{cfg: cfg, log: log, certs: certs, ready: make(chan struct{})}, nil
}

// Ready is closed once the hub listens (Addr and BrokerURL are then set).
func (h *Hub) Ready() <-chan struct{} { return h.ready }

// Addr is the web listen address (after Ready).
func (h *Hub) Addr() string { return h.addr }

// URL is the hub's base URL, http:// or https:// (after Ready).
func (h *Hub) URL() string { return h.scheme + "://" + h.addr }

// BrokerURL is the MQTT broker the hub uses (after Ready).
func (h *Hub) BrokerURL() string { return h.broker }

// Certificate returns an App's certificate.
func (h *Hub) Certificate(app string) (string, bool) {
	c, ok := h.certs[app]
	return c, ok
}

// SFU exposes the channel service (stats, tests).
func (h *Hub) SFU() *sfu.Service { return h.sfu }

// Run serves until ctx ends, then shuts down every part and returns.
func (h *Hub) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	defer wg.Wait()
	errc := make(chan error, 4)

	h.broker = h.cfg.MQTT
	if h.cfg.MQTT == "embedded" {
		users := map[string]string{}
		if h.cfg.MQTTUsername != "" {
			users[h.cfg.MQTTUsername] = h.cfg.MQTTPassword
		}
		b, err := broker.New(broker.Options{TCPAddr: h.cfg.MQTTListen, WSAddr: h.cfg.MQTTWSListen, Users: users, Logger: h.log})
		if err != nil {
			return fmt.Errorf("hub: embedded broker: %w", err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := b.Run(ctx); err != nil {
				errc <- fmt.Errorf("hub: embedded broker: %w", err)
			}
		}()
		select {
		case <-b.Ready():
		case err := <-errc:
			return err
		case <-ctx.Done():
			return nil
		}
		h.broker = "tcp://" + b.Addr()
		h.log.Info("embedded MQTT broker listening", "component", "hub", "addr", b.Addr())
	}

	h.dir = directory.New(directory.Options{Broker: h.broker, Prefix: h.cfg.MQTTPrefix,
		Username: h.cfg.MQTTUsername, Password: h.cfg.MQTTPassword, Logger: h.log})
	wg.Add(1)
	go func() {
		defer wg.Done()
		h.dir.Run(ctx)
	}()

	apiOpts := rtc.APIOptions{LoopbackOnly: h.cfg.loopbackOnlyICE()}
	netw, err := h.startNetwork(&apiOpts)
	if err != nil {
		return err
	}
	defer netw.Close()
	api, err := rtc.NewAPI(apiOpts)
	if err != nil {
		return fmt.Errorf("hub: %w", err)
	}
	h.sfu = sfu.New(sfu.Options{API: api, Certificate: h.Certificate, Logger: h.log, ICEServers: h.iceServers(netw)})
	defer h.sfu.Close()

	ln, err := net.Listen("tcp", h.cfg.Listen)
	if err != nil {
		return fmt.Errorf("hub: listen on %s: %w", h.cfg.Listen, err)
	}
	h.addr = ln.Addr().String()
	scheme := "http"
	if netw.tls != nil && h.cfg.Network.UseTLS(h.cfg.Listen) {
		ln, scheme = tls.NewListener(ln, netw.tls), "https"
		if a := h.cfg.Network.HTTPRedirectListen; a != "" {
			rln, err := net.Listen("tcp", a)
			if err != nil {
				ln.Close()
				return fmt.Errorf("hub: listen on %s (HTTP redirect): %w", a, err)
			}
			_, port, _ := net.SplitHostPort(h.addr)
			handler := redirectHandler(port)
			if netw.acme != nil {
				handler = netw.acme.HTTPHandler(handler) // and HTTP-01 challenges
			}
			rsrv := &http.Server{Handler: handler, ReadHeaderTimeout: 10 * time.Second}
			wg.Add(1)
			go func() {
				defer wg.Done()
				rsrv.Serve(rln)
			}()
			defer rsrv.Close()
		}
	}
	h.scheme = scheme
	srv := &http.Server{Handler: h.routes(), ReadHeaderTimeout: 10 * time.Second,
		// TLS handshake errors (a browser that has not accepted the self-signed certificate yet)
		// are routine: debug level, not stderr.
		ErrorLog: slog.NewLogLogger(h.log.With("component", "http").Handler(), slog.LevelDebug)}
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			errc <- fmt.Errorf("hub: serve: %w", err)
		}
	}()
	h.log.Info("hub listening", "component", "hub", "url", scheme+"://"+h.addr+"/", "mqtt", h.broker,
		"apps", len(h.certs), "iceLoopbackOnly", h.cfg.loopbackOnlyICE())
	close(h.ready)

	select {
	case <-ctx.Done():
	case err = <-errc:
	}
	shutdownCtx, stop := context.WithTimeout(context.Background(), 3*time.Second)
	defer stop()
	srv.Shutdown(shutdownCtx)
	h.sfu.Close()
	cancel()
	return err
}

func (h *Hub) routes() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /rtc", h.sfu)
	mux.HandleFunc("POST /api/token", h.handleToken)
	mux.HandleFunc("GET /api/config", h.handleConfig)
	mux.HandleFunc("GET /api/devices", h.handleDevices)
	mux.HandleFunc("POST /api/devices/{id}/cmd", h.handleCommand)
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /metrics", h.handleMetrics)
	mux.Handle("/", web.Handler())
	return mux
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, status int, code, msg string) {
	writeJSON(w, status, map[string]any{"error": map[string]string{"code": code, "message": msg}})
}

func isLoopback(remoteAddr string) bool {
	host, _, err := net.SplitHostPort(remoteAddr)
	if err != nil {
		return false
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// authorized reports whether a request may use the token service and device commands.
func (h *Hub) authorized(r *http.Request) bool {
	if h.cfg.TokenAPIOpenOnLoopback && isLoopback(r.RemoteAddr) {
		return true
	}
	key, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok || key == "" {
		return false
	}
	for _, k := range h.cfg.TokenAPIKeys {
		if k == key {
			return true
		}
	}
	return false
}

type tokenRequest struct {
	AppID         string `json:"appId"`
	Channel       string `json:"channel"`
	UID           uint32 `json:"uid"`
	Role          string `json:"role"`
	ExpireSeconds int64  `json:"expireSeconds"`
}

// MaxTokenLifetime bounds what the token service mints.
const MaxTokenLifetime = 24 * time.Hour

func (h *Hub) handleToken(w http.ResponseWriter, r *http.Request) {
	if !h.authorized(r) {
		writeError(w, http.StatusUnauthorized, "UNAUTHORIZED", "the token service needs a bearer key (tokenAPIKeys) from this address")
		return
	}
	var req tokenRequest
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 4096))
	if err := dec.Decode(&req); err != nil {
		writeError(w, http.StatusBadRequest, rtc.CodeInvalidParams, "body must be JSON {appId, channel, uid, role, expireSeconds}: "+err.Error())
		return
	}
	if req.AppID == "" {
		req.AppID = h.cfg.Apps[0].ID
	}
	cert, ok := h.certs[req.AppID]
	if !ok {
		writeError(w, http.StatusNotFound, rtc.CodeAppUnknown, fmt.Sprintf("unknown App ID %q", req.AppID))
		return
	}
	if !rtc.ValidChannel(req.Channel) {
		writeError(w, http.StatusBadRequest, rtc.CodeInvalidParams, "channel must be 1-64 printable ASCII characters")
		return
	}
	ttl := time.Duration(req.ExpireSeconds) * time.Second
	if req.ExpireSeconds == 0 {
		ttl = time.Hour
	}
	if ttl <= 0 || ttl > MaxTokenLifetime {
		writeError(w, http.StatusBadRequest, rtc.CodeInvalidParams, fmt.Sprintf("expireSeconds must be between 1 and %d", int(MaxTokenLifetime.Seconds())))
		return
	}
	tok, claims, err := token.Mint(req.AppID, cert, req.Channel, req.UID, req.Role, ttl, time.Now())
	if err != nil {
		writeError(w, http.StatusBadRequest, rtc.CodeInvalidParams, err.Error())
		return
	}
	h.log.Info("token minted", "component", "token", "app", req.AppID, "channel", req.Channel, "uid", req.UID,
		"role", req.Role, "expires", claims.Expiry().UTC().Format(time.RFC3339), "remote", r.RemoteAddr)
	writeJSON(w, http.StatusOK, map[string]any{"token": tok, "expiresAt": claims.ExpiresAt})
}

func (h *Hub) handleConfig(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, map[string]any{"appId": h.cfg.Apps[0].ID})
}

func (h *Hub) handleDevices(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, h.dir.Devices())
}

func (h *Hub) handleCommand(w http.ResponseWriter, r *http.Request) {
	if !h.authorized(r) {
		writeError(w, http.StatusUnauthorized, "UNAUTHORIZED", "device commands need a bearer key (tokenAPIKeys) from this address")
		return
	}
	id := r.PathValue("id")
	if id == "" || strings.ContainsAny(id, "+#/") {
		writeError(w, http.StatusBadRequest, rtc.CodeInvalidParams, "bad device id")
		return
	}
	var cmd map[string]any
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 16<<10)).Decode(&cmd); err != nil || cmd == nil {
		writeError(w, http.StatusBadRequest, rtc.CodeInvalidParams, "body must be a JSON command object")
		return
	}
	reply, err := h.dir.Command(r.Context(), id, cmd, 15*time.Second)
	if errors.Is(err, directory.ErrNoReply) {
		writeError(w, http.StatusGatewayTimeout, "NO_REPLY", "device "+id+" did not reply in 15 s")
		return
	}
	if err != nil {
		writeError(w, http.StatusBadGateway, "MQTT", err.Error())
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Write(reply)
}

func (h *Hub) handleMetrics(w http.ResponseWriter, _ *http.Request) {
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
	fmt.Fprintf(w, "# HELP camhub_forwarded_packets_total RTP packets received from publishers and forwarded.\n# TYPE camhub_forwarded_packets_total counter\ncamhub_forwarded_packets_total %d\n", st.ForwardedPackets)
	fmt.Fprintf(w, "# HELP camhub_forwarded_bytes_total RTP bytes received from publishers and forwarded.\n# TYPE camhub_forwarded_bytes_total counter\ncamhub_forwarded_bytes_total %d\n", st.ForwardedBytes)
	fmt.Fprintf(w, "# HELP camhub_devices_online Devices whose MQTT status is online.\n# TYPE camhub_devices_online gauge\ncamhub_devices_online %d\n", online)
}

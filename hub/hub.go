// Package hub wires the channel service together: the embedded MQTT broker (optional), the
// device directory, the token service, the signalling/forwarding service and the web pages.
// Its parts know nothing of configuration files; Run is the one place that connects them.
package hub

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/camagent/camagent/hub/auth"
	"github.com/camagent/camagent/hub/broker"
	"github.com/camagent/camagent/hub/cluster"
	"github.com/camagent/camagent/hub/directory"
	"github.com/camagent/camagent/hub/relay"
	"github.com/camagent/camagent/hub/sfu"
	"github.com/camagent/camagent/hub/token"
	"github.com/camagent/camagent/rtc"
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

	// Identities and the browser edge (identity.go, edge.go).
	store     *auth.Store
	sessions  *auth.Sessions
	logins    loginLimiter
	proxies   []*net.IPNet
	hostNames []string
	refusals  *noiseLog
	mqttAuth  *mqttAuth
	embedded  *broker.Broker
	metricsAt string
	revokeMu  sync.Mutex
	known     map[string]bool // devices and keys at the last dropRevoked
	viewers   *viewerUIDs     // the uids /watch gave out (viewers.go)
	snaps     *snapshots      // every device's latest snapshot (snapshot.go)
	// cluster: several hubs as one service (clustered.go); nil: a single hub.
	cluster *cluster.Directory
	relays  *relay.Relays // the channels of other hubs relayed here (with cluster)
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
	store, err := auth.Open(cfg.StateDir)
	if err != nil {
		return nil, fmt.Errorf("hub: %w", err)
	}
	proxies, _ := parseCIDRs(cfg.TrustedProxies) // checked by Validate
	h := &Hub{cfg: cfg, log: log, certs: certs, ready: make(chan struct{}), store: store,
		sessions: auth.NewSessions(store), proxies: proxies, hostNames: allowedHostNames(cfg),
		refusals: newNoiseLog(log.With("component", "edge")), viewers: newViewerUIDs()}
	h.logins.fails = map[string][]time.Time{}
	if !cfg.Demo && !store.HasUsers() {
		log.Warn("no users yet: nobody can log in to the pages; create the first admin with `camhub user add admin --admin`",
			"component", "hub", "identities", store.Path())
	}
	return h, nil
}

// Store is the hub's identities (people, devices, keys).
func (h *Hub) Store() *auth.Store { return h.store }

// MetricsAddr is the address of the metrics listener (metricsListen), after Ready.
func (h *Hub) MetricsAddr() string { return h.metricsAt }

// Ready is closed once the hub listens (Addr and BrokerURL are then set).
func (h *Hub) Ready() <-chan struct{} { return h.ready }

// Addr is the web listen address (after Ready).
func (h *Hub) Addr() string { return h.addr }

// URL is the hub's base URL, http:// or https:// (after Ready).
func (h *Hub) URL() string { return h.scheme + "://" + h.addr }

// BrokerTLSAddr is the embedded broker's MQTT-over-TLS address (after Ready), or "".
func (h *Hub) BrokerTLSAddr() string {
	if h.embedded == nil {
		return ""
	}
	return h.embedded.TLSAddr()
}

// BrokerURL is the MQTT broker the hub uses (after Ready).
func (h *Hub) BrokerURL() string { return h.broker }

// Certificate returns an App's certificate.
func (h *Hub) Certificate(app string) (string, bool) {
	c, ok := h.certs[app]
	return c, ok
}

// verifyCertificate returns the certificate of App app with key id kid: the current one, or
// one of its previousCertificates while a rotation overlaps.
func (h *Hub) verifyCertificate(app, kid string) (string, bool) {
	cur, ok := h.certs[app]
	if !ok {
		return "", false
	}
	if kid == "" {
		return cur, true
	}
	for _, a := range h.cfg.Apps {
		if a.ID == app {
			return token.Match(kid, append([]string{cur}, a.PreviousCertificates...)...)
		}
	}
	return "", false
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

	// The network first: the embedded broker's TLS listener uses the hub's certificate.
	// NoNACKResponder: the channel service answers NACKs from one cache per published track.
	apiOpts := rtc.APIOptions{LoopbackOnly: h.cfg.loopbackOnlyICE(), Logger: h.log, NoNACKResponder: true}
	netw, err := h.startNetwork(&apiOpts)
	if err != nil {
		return err
	}
	defer netw.Close()

	h.broker = h.cfg.MQTT
	mqttUser, mqttPass := h.cfg.MQTTUsername, h.cfg.MQTTPassword
	if h.cfg.MQTT == "embedded" {
		h.mqttAuth = &mqttAuth{store: h.store, hubUser: hubMQTTUser, hubPass: randomSecret(), demo: h.cfg.Demo,
			extraUser: h.cfg.MQTTUsername, extraPass: h.cfg.MQTTPassword, refusals: h.refusals}
		mqttUser, mqttPass = h.mqttAuth.hubUser, h.mqttAuth.hubPass
		bopts := broker.Options{TCPAddr: h.cfg.MQTTListen, WSAddr: h.cfg.MQTTWSListen, Logger: h.log,
			Auth: h.mqttAuth, AllowAnonymous: h.cfg.Demo, Prefix: h.cfg.MQTTPrefix, AllowedOrigins: h.cfg.AllowedOrigins}
		if h.cfg.MQTTTLSListen != "" {
			bopts.TLSAddr, bopts.TLSConfig = h.cfg.MQTTTLSListen, netw.tls
		}
		b, err := broker.New(bopts)
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
		h.embedded = b
		// A revoked device or key loses its MQTT session at once, not at its next reconnect.
		h.dropRevoked()
		h.store.OnChange(h.dropRevoked)
		h.log.Info("embedded MQTT broker listening", "component", "hub", "addr", b.Addr(), "tls", b.TLSAddr(), "demo", h.cfg.Demo)
	}

	// Changes made by the camhub CLI (a revoked device) take effect within a second.
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				if err := h.store.Refresh(); err != nil {
					h.log.Warn("identities", "component", "auth", "err", err)
				}
			}
		}
	}()

	h.dir = directory.New(directory.Options{Broker: h.broker, Prefix: h.cfg.MQTTPrefix,
		Username: mqttUser, Password: mqttPass, Logger: h.log})
	wg.Add(1)
	go func() {
		defer wg.Done()
		h.dir.Run(ctx)
	}()
	h.snaps = newSnapshots(snapshotOptions{Broker: h.broker, Prefix: h.cfg.MQTTPrefix, Username: mqttUser, Password: mqttPass,
		Logger: h.log, Ask: h.askSnapshot})
	wg.Add(1)
	go func() {
		defer wg.Done()
		h.snaps.Run(ctx)
	}()

	api, err := rtc.NewAPI(apiOpts)
	if err != nil {
		return fmt.Errorf("hub: %w", err)
	}
	if h.cluster, err = h.newCluster(); err != nil {
		return err
	}
	var placer sfu.Placer
	var relayer sfu.Relayer
	if h.cluster != nil {
		placer, relayer = clusterPlacer{h.cluster}, hubRelayer{h}
		h.sessions.Share(h.cluster, h.log.With("component", "auth")) // logins valid on every hub
	}
	h.sfu = sfu.New(sfu.Options{API: api, Certificate: h.Certificate, Verify: h.verifyCertificate, ClientAddr: h.clientAddr,
		Logger: h.log, ICEServers: h.iceServers(netw), MaxPerAddress: h.cfg.MaxConnectionsPerAddress, Placer: placer, Relayer: relayer})
	defer h.sfu.Close()
	if h.cluster != nil {
		relayCtx, stopRelays := context.WithCancel(ctx)
		h.relays = h.newRelays(relayCtx, api)
		defer func() { stopRelays(); h.relays.Wait() }()
		h.runCluster(ctx, h.cluster, &wg, errc)
	}

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
	if h.cfg.MetricsListen != "" {
		mln, err := net.Listen("tcp", h.cfg.MetricsListen)
		if err != nil {
			ln.Close()
			return fmt.Errorf("hub: listen on %s (metrics): %w", h.cfg.MetricsListen, err)
		}
		h.metricsAt = mln.Addr().String()
		mux := http.NewServeMux()
		mux.HandleFunc("GET /metrics", h.handleMetrics)
		msrv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second, IdleTimeout: time.Minute}
		wg.Add(1)
		go func() {
			defer wg.Done()
			msrv.Serve(mln)
		}()
		defer msrv.Close()
	}
	// Timeouts: a client gets 10 s for its headers and a minute for a body; idle keep-alives
	// end after two minutes. No WriteTimeout: the signalling WebSocket is long-lived (it
	// has its own deadlines).
	srv := &http.Server{Handler: h.edge(h.routes()), ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout: time.Minute, IdleTimeout: 2 * time.Minute, MaxHeaderBytes: 64 << 10,
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
	h.log.Info("hub listening", "component", "hub", "url", scheme+"://"+h.addr+"/", "mqtt", redactURL(h.broker),
		"apps", len(h.certs), "iceLoopbackOnly", h.cfg.loopbackOnlyICE(), "demo", h.cfg.Demo, "identities", h.store.Path())
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

// dropRevoked disconnects the MQTT clients of devices and keys deleted since the last call.
func (h *Hub) dropRevoked() {
	if h.embedded == nil {
		return
	}
	now := map[string]bool{}
	for _, d := range h.store.Devices() {
		now["d:"+d.ID] = true
	}
	for _, k := range h.store.Keys() {
		now["k:"+k.ID] = true
	}
	h.revokeMu.Lock()
	before := h.known
	h.known = now
	h.revokeMu.Unlock()
	for n := range before {
		if !now[n] {
			h.log.Info("credential revoked: dropping its MQTT sessions", "component", "auth", "identity", n)
			h.embedded.Disconnect(n[2:])
		}
	}
}

// randomSecret is a fresh 256-bit secret, base64url.
func randomSecret() string {
	b := make([]byte, 32)
	rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// redactURL hides the password in a URL's userinfo, for logs.
func redactURL(s string) string {
	if strings.Contains(s, ",") { // several brokers
		parts := strings.Split(s, ",")
		for i, p := range parts {
			parts[i] = redactURL(strings.TrimSpace(p))
		}
		return strings.Join(parts, ",")
	}
	u, err := url.Parse(s)
	if err != nil || u.User == nil {
		return s
	}
	return u.Redacted()
}

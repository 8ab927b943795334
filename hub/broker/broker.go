// Package broker is the hub's embedded MQTT broker: a wrapper around
// mochi-mqtt that listens on TCP (and optionally WebSocket), authenticates
// every client (the hub's accounts, an Authenticator for devices and
// integrations, or anonymous clients in demo mode on loopback), enforces
// per-topic rules for each identity, bounds packets, connection times and
// connection counts, and lives exactly as long as the context given to Run.
//
// What each identity may do (docs/mosquitto.md gives Mosquitto's equivalent):
//   - hub and anonymous: everything;
//   - device X: read <prefix>/X/cmd; write <prefix>/X/{status,state,reply,events,snapshot}
//     and its own Home Assistant discovery topics, whose payloads may name only
//     its own topics;
//   - integration on devices D: write <prefix>/d/cmd and read <prefix>/d/# and
//     d's discovery topics for d in D ("*": every device), read and write
//     <haPrefix>/status.
//
// A subscription is granted only if every topic its filter can match is
// readable; each delivery is checked again. A refused subscription gets a
// failure code in its SUBACK; a refused publish is acknowledged and dropped
// (MQTT 5 with QoS > 0: a PUBACK with "not authorized"), as Mosquitto does.
//
// The broker keeps everything in memory: retained messages (device status and
// state) and sessions are lost when it stops, and devices re-publish them when
// they reconnect (see package control).
package broker

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
)

// DefaultTCPAddr is where the broker listens when Options.TCPAddr is empty.
const DefaultTCPAddr = "127.0.0.1:1883"

// Options configure a Broker.
type Options struct {
	// TCPAddr is the MQTT listen address; "" means DefaultTCPAddr. Port 0
	// picks a free port, reported by Addr once Ready.
	TCPAddr string
	// WSAddr is the MQTT-over-WebSocket listen address (any path is
	// accepted); "" disables it.
	WSAddr string
	// TLSAddr is an MQTT-over-TLS listen address (e.g. ":8883"), served
	// with TLSConfig; "" disables it.
	TLSAddr   string
	TLSConfig *tls.Config
	// Users maps user names to passwords of the hub's own accounts
	// (KindHub: every topic).
	Users map[string]string
	// Auth authenticates every other account (devices, integrations).
	Auth Authenticator
	// AllowAnonymous lets clients in without a user name, with full access
	// (demo mode). With neither Users nor Auth, anyone gets in. It is refused
	// on an address beyond loopback.
	AllowAnonymous bool
	// Prefix is the first level of the devices' topics; default "camagent".
	Prefix string
	// HomeAssistantPrefix is Home Assistant's discovery prefix; default
	// "homeassistant".
	HomeAssistantPrefix string
	// AllowedOrigins are the Origins (scheme://host[:port]) browsers may open
	// MQTT over WebSocket from; requests without an Origin (non-browser
	// clients) are allowed, any other Origin gets 403.
	AllowedOrigins []string

	// MaxPacketSize bounds every packet a client sends; default
	// DefaultMaxPacketSize. (A CONNECT is bounded to 16 KiB before that.)
	MaxPacketSize int
	// ConnectTimeout closes a socket that has not completed CONNECT in
	// time; default 10 s.
	ConnectTimeout time.Duration
	// MaxClients bounds open sockets, authenticated or not; default 1000.
	MaxClients int
	// MaxPerAddress bounds open sockets from one remote IP; default 50.
	MaxPerAddress int

	// Logger receives the broker's logs (component=broker); mochi's own
	// chatter is demoted to Debug. Nil discards them.
	Logger *slog.Logger
}

// DefaultMaxPacketSize is the default Options.MaxPacketSize: a device's
// snapshot JPEG is the largest legitimate message.
const DefaultMaxPacketSize = 256 << 10

// Broker is an embedded MQTT broker. Create it with New and start it with Run.
type Broker struct {
	opts   Options
	log    *slog.Logger
	ready  chan struct{}
	limits *limiter
	stats  stats
	noise  logLimiter // pre-authentication log lines

	mu      sync.Mutex
	running bool
	srv     *mqtt.Server
	addr    string
	wsAddr  string
	tlsAddr string
}

// New checks opts and returns a Broker that is not yet listening.
func New(opts Options) (*Broker, error) {
	if opts.TCPAddr == "" {
		opts.TCPAddr = DefaultTCPAddr
	}
	for user, pass := range opts.Users {
		if user == "" || pass == "" {
			return nil, errors.New("broker: users need a non-empty name and password")
		}
	}
	if opts.Auth == nil && len(opts.Users) == 0 && !opts.AllowAnonymous {
		return nil, errors.New("broker: no authentication configured: give the broker accounts " +
			"(the hub's user name and password, per-device credentials from `camhub device add`), " +
			"or allow anonymous clients in demo mode on loopback")
	}
	if opts.TLSAddr != "" && opts.TLSConfig == nil {
		return nil, errors.New("broker: a TLS listener needs a certificate")
	}
	if opts.AllowAnonymous {
		for _, a := range []string{opts.TCPAddr, opts.WSAddr, opts.TLSAddr} {
			if a != "" && !loopback(a) {
				return nil, fmt.Errorf("broker: refuses to listen on %s beyond loopback without authentication: "+
					"listen on 127.0.0.1, or turn demo mode off and give every client an account "+
					"(per-device credentials from `camhub device add`, API keys with an MQTT login)", a)
			}
		}
	}
	if opts.Prefix == "" {
		opts.Prefix = "camagent"
	}
	if opts.HomeAssistantPrefix == "" {
		opts.HomeAssistantPrefix = "homeassistant"
	}
	for what, p := range map[string]string{"topic prefix": opts.Prefix, "Home Assistant prefix": opts.HomeAssistantPrefix} {
		if strings.ContainsAny(p, "+#\x00") || strings.HasPrefix(p, "/") || strings.HasSuffix(p, "/") {
			return nil, fmt.Errorf("broker: %s %q must not contain +, # or NUL, nor start or end with /", what, p)
		}
	}
	if opts.MaxPacketSize <= 0 {
		opts.MaxPacketSize = DefaultMaxPacketSize
	}
	if opts.ConnectTimeout <= 0 {
		opts.ConnectTimeout = 10 * time.Second
	}
	if opts.MaxClients <= 0 {
		opts.MaxClients = 1000
	}
	if opts.MaxPerAddress <= 0 {
		opts.MaxPerAddress = 50
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Broker{
		opts:   opts,
		log:    log.With("component", "broker"),
		ready:  make(chan struct{}),
		limits: newLimiter(opts.MaxClients, opts.MaxPerAddress),
	}, nil
}

// loopback reports whether addr ("host:port") listens on loopback only.
func loopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// server is the running mochi server, or nil before Run.
func (b *Broker) server() *mqtt.Server {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.srv
}

// Run listens and serves until ctx ends, then disconnects every client,
// closes the listeners and returns nil. It returns an error if a listener
// cannot be opened or the broker cannot start; Ready is then never closed.
// Run may be called once.
func (b *Broker) Run(ctx context.Context) error {
	b.mu.Lock()
	if b.running {
		b.mu.Unlock()
		return errors.New("broker: Run called twice")
	}
	b.running = true
	b.mu.Unlock()

	caps := mqtt.NewDefaultServerCapabilities()
	caps.MaximumPacketSize = uint32(b.opts.MaxPacketSize) // checked on the fixed header, before the body is allocated
	caps.MaximumClients = int64(b.opts.MaxClients)
	caps.MaximumClientWritesPending = 1024 // per subscriber; mochi's default holds 8192 messages
	server := mqtt.New(&mqtt.Options{Capabilities: caps, Logger: slog.New(quietHandler{b.log.Handler()})})
	if err := server.AddHook(&hook{b: b}, nil); err != nil {
		return fmt.Errorf("broker: add auth hook: %w", err)
	}
	b.mu.Lock()
	b.srv = server
	b.mu.Unlock()

	tcp, err := net.Listen("tcp", b.opts.TCPAddr)
	if err != nil {
		return fmt.Errorf("broker: listen tcp %s: %w", b.opts.TCPAddr, err)
	}
	if err := server.AddListener(newTCPListener("tcp", tcp, b)); err != nil {
		tcp.Close()
		return fmt.Errorf("broker: add tcp listener: %w", err)
	}
	tlsAddr := ""
	if b.opts.TLSAddr != "" {
		raw, err := net.Listen("tcp", b.opts.TLSAddr)
		if err != nil {
			server.Close()
			return fmt.Errorf("broker: listen tls %s: %w", b.opts.TLSAddr, err)
		}
		// The handshake runs on the client's first read, inside the CONNECT deadline.
		cfg := b.opts.TLSConfig.Clone()
		cfg.NextProtos = nil // no ALPN: MQTT clients that offer one ("mqtt") are not refused
		if cfg.MinVersion < tls.VersionTLS12 {
			cfg.MinVersion = tls.VersionTLS12
		}
		if err := server.AddListener(newTCPListener("tls", tls.NewListener(raw, cfg), b)); err != nil {
			raw.Close()
			server.Close()
			return fmt.Errorf("broker: add tls listener: %w", err)
		}
		tlsAddr = raw.Addr().String()
	}
	wsAddr := ""
	if b.opts.WSAddr != "" {
		ws, err := net.Listen("tcp", b.opts.WSAddr)
		if err != nil {
			server.Close()
			return fmt.Errorf("broker: listen websocket %s: %w", b.opts.WSAddr, err)
		}
		if err := server.AddListener(newWSListener("ws", ws, b)); err != nil {
			ws.Close()
			server.Close()
			return fmt.Errorf("broker: add websocket listener: %w", err)
		}
		wsAddr = ws.Addr().String()
	}
	if err := server.Serve(); err != nil {
		server.Close()
		return fmt.Errorf("broker: serve: %w", err)
	}

	b.mu.Lock()
	b.addr = tcp.Addr().String()
	b.wsAddr = wsAddr
	b.tlsAddr = tlsAddr
	b.mu.Unlock()
	b.log.Info("broker listening", "tcp", b.addr, "ws", wsAddr, "tls", tlsAddr, "anonymous", b.opts.AllowAnonymous,
		"maxPacketSize", b.opts.MaxPacketSize, "maxClients", b.opts.MaxClients)
	close(b.ready)

	<-ctx.Done()
	// Close disconnects the clients and waits for their goroutines.
	if err := server.Close(); err != nil {
		return fmt.Errorf("broker: close: %w", err)
	}
	b.log.Info("broker stopped", "tcp", b.addr)
	return nil
}

// Ready is closed once the broker accepts connections.
func (b *Broker) Ready() <-chan struct{} { return b.ready }

// Addr is the TCP address the broker listens on ("host:port"), or "" before
// it is Ready.
func (b *Broker) Addr() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.addr
}

// TLSAddr is the MQTT-over-TLS address the broker listens on, or "" when it
// is disabled or not Ready.
func (b *Broker) TLSAddr() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.tlsAddr
}

// WSAddr is the WebSocket address the broker listens on, or "" when it is
// disabled or not Ready.
func (b *Broker) WSAddr() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.wsAddr
}

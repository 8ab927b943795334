// Package broker is the hub's embedded MQTT broker: a thin wrapper around
// mochi-mqtt that listens on TCP (and optionally WebSocket), authenticates
// with a fixed user list or allows anonymous clients, and lives exactly as long
// as the context given to Run.
//
// The broker keeps everything in memory: retained messages (device status and
// state) and sessions are lost when it stops, and devices re-publish them when
// they reconnect (see package control).
package broker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/hooks/auth"
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
	// Users maps user names to passwords. When empty, anonymous clients are
	// allowed; otherwise only these users may connect.
	Users map[string]string
	// Logger receives the broker's logs (component=broker); mochi's own
	// chatter is demoted to Debug. Nil discards them.
	Logger *slog.Logger
}

// Broker is an embedded MQTT broker. Create it with New and start it with Run.
type Broker struct {
	opts  Options
	log   *slog.Logger
	ready chan struct{}

	mu      sync.Mutex
	running bool
	addr    string
	wsAddr  string
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
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Broker{
		opts:  opts,
		log:   log.With("component", "broker"),
		ready: make(chan struct{}),
	}, nil
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

	server := mqtt.New(&mqtt.Options{Logger: slog.New(quietHandler{b.log.Handler()})})
	if err := b.addAuth(server); err != nil {
		return err
	}

	tcp, err := net.Listen("tcp", b.opts.TCPAddr)
	if err != nil {
		return fmt.Errorf("broker: listen tcp %s: %w", b.opts.TCPAddr, err)
	}
	if err := server.AddListener(newTCPListener("tcp", tcp)); err != nil {
		tcp.Close()
		return fmt.Errorf("broker: add tcp listener: %w", err)
	}
	wsAddr := ""
	if b.opts.WSAddr != "" {
		ws, err := net.Listen("tcp", b.opts.WSAddr)
		if err != nil {
			server.Close()
			return fmt.Errorf("broker: listen websocket %s: %w", b.opts.WSAddr, err)
		}
		if err := server.AddListener(newWSListener("ws", ws)); err != nil {
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
	b.mu.Unlock()
	b.log.Info("broker listening", "tcp", b.addr, "ws", wsAddr, "anonymous", len(b.opts.Users) == 0)
	close(b.ready)

	<-ctx.Done()
	// Close disconnects the clients and waits for their goroutines.
	if err := server.Close(); err != nil {
		return fmt.Errorf("broker: close: %w", err)
	}
	b.log.Info("broker stopped", "tcp", b.addr)
	return nil
}

// addAuth installs the authentication hook: a fixed user list, or anyone.
func (b *Broker) addAuth(server *mqtt.Server) error {
	if len(b.opts.Users) == 0 {
		if err := server.AddHook(new(auth.AllowHook), nil); err != nil {
			return fmt.Errorf("broker: add auth hook: %w", err)
		}
		return nil
	}
	users := auth.Users{}
	for name, pass := range b.opts.Users {
		users[name] = auth.UserRule{Username: auth.RString(name), Password: auth.RString(pass)}
	}
	ledger := &auth.Ledger{Users: users}
	if err := server.AddHook(new(auth.Hook), &auth.Options{Ledger: ledger}); err != nil {
		return fmt.Errorf("broker: add auth hook: %w", err)
	}
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

// WSAddr is the WebSocket address the broker listens on, or "" when it is
// disabled or not Ready.
func (b *Broker) WSAddr() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.wsAddr
}

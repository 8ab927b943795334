package turn

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"time"

	"github.com/pion/logging"
	pturn "github.com/pion/turn/v5"
)

// Options configure an embedded TURN server. At least one of UDPAddr, TCPAddr, TLSAddr is set.
type Options struct {
	// Secret is the shared secret credentials are minted and checked with.
	Secret string
	// Realm is announced to clients (any string; "camagent").
	Realm string
	// UDPAddr, TCPAddr and TLSAddr are the client-facing listen addresses (empty: off).
	UDPAddr, TCPAddr, TLSAddr string
	// TLS is the certificate configuration of TLSAddr.
	TLS *tls.Config
	// RelayIP is the address clients are told their relay is at: the hub's public address.
	RelayIP net.IP
	// RelayPortMin/Max bound the relay ports (0: any ephemeral port).
	RelayPortMin, RelayPortMax uint16
	// MediaIPs returns the hub's media addresses, the only peers relays may reach (required;
	// called again at most every few seconds, so interface addresses may change).
	MediaIPs func() []net.IP
	// MediaPort is the hub's one media UDP port: relays reach only it. 0 (the hub uses an
	// ephemeral port per connection): any port of MediaIPs.
	MediaPort int
	// UserQuota and TotalQuota bound the live allocations per credential (username) and in
	// all (0: DefaultUserQuota, DefaultTotalQuota).
	UserQuota, TotalQuota int
	// Now is the clock credentials are checked against (time.Now when nil).
	Now    func() time.Time
	Logger *slog.Logger
}

// Server is a running embedded TURN server.
type Server struct {
	srv      *pturn.Server
	udp      net.PacketConn
	tcp, tls net.Listener
	log      *slog.Logger

	peers *peerFilter
	quota *quota
	users users
	count counters
	limit *limiter
}

// Listen opens the configured listeners and starts serving; Close stops.
func Listen(o Options) (*Server, error) {
	if o.Secret == "" {
		return nil, errors.New("turn: no secret")
	}
	if o.RelayIP == nil {
		return nil, errors.New("turn: no relay address")
	}
	if o.MediaIPs == nil {
		return nil, errors.New("turn: no media addresses to relay to")
	}
	if o.Realm == "" {
		o.Realm = "camagent"
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.UserQuota <= 0 {
		o.UserQuota = DefaultUserQuota
	}
	if o.TotalQuota <= 0 {
		o.TotalQuota = DefaultTotalQuota
	}
	s := &Server{log: o.Logger.With("component", "turn"),
		peers: &peerFilter{ips: o.MediaIPs, port: o.MediaPort, now: o.Now},
		quota: &quota{perUser: o.UserQuota, total: o.TotalQuota, users: map[string]int{}},
		users: users{m: map[string]string{}},
		limit: &limiter{every: time.Second, now: o.Now},
	}
	var inner pturn.RelayAddressGenerator = &pturn.RelayAddressGeneratorStatic{RelayAddress: o.RelayIP, Address: "0.0.0.0"}
	if o.RelayPortMin != 0 || o.RelayPortMax != 0 {
		inner = &pturn.RelayAddressGeneratorPortRange{RelayAddress: o.RelayIP, Address: "0.0.0.0",
			MinPort: o.RelayPortMin, MaxPort: o.RelayPortMax}
	}
	gen := relayGenerator{RelayAddressGenerator: inner, s: s}
	cfg := pturn.ServerConfig{
		Realm:         o.Realm,
		LoggerFactory: loggerFactory{s.log},
		AuthHandler: func(ra *pturn.RequestAttributes) (string, []byte, bool) {
			exp, err := Expiry(ra.Username)
			if err == nil && !o.Now().Before(exp) {
				err = fmt.Errorf("%w at %s", ErrExpired, exp.UTC().Format(time.RFC3339))
			}
			if err != nil {
				s.count.auth.Add(1)
				s.warn("TURN request refused", "user", ra.Username, "remote", ra.SrcAddr.String(), "err", err)
				return "", nil, false
			}
			// The message integrity check (done by pion with this key) proves the password.
			return ra.Username, pturn.GenerateAuthKey(ra.Username, ra.Realm, Password(o.Secret, ra.Username)), true
		},
		QuotaHandler: func(user, _ string, _ net.Addr) bool {
			if s.quota.ok(user) {
				return true
			}
			s.refuseQuota(user)
			return false
		},
		EventHandler: pturn.EventHandler{
			OnAuth: func(src, _ net.Addr, _, user, _, method string, ok bool) {
				if !ok { // the password did not match
					s.count.auth.Add(1)
					s.warn("TURN request refused: wrong password", "user", user, "remote", src.String(), "method", method)
				}
			},
			OnAllocationCreated: func(src, _ net.Addr, _, user, _ string, _ net.Addr, _ int) { s.users.set(src, user) },
			OnAllocationDeleted: func(src, _ net.Addr, _, _, _ string) { s.users.del(src) },
		},
	}
	perm := s.permit
	var err error
	fail := func(e error) (*Server, error) {
		s.closeListeners()
		return nil, e
	}
	if o.UDPAddr != "" {
		if s.udp, err = net.ListenPacket("udp4", o.UDPAddr); err != nil {
			return fail(fmt.Errorf("turn: listen udp %s: %w", o.UDPAddr, err))
		}
		cfg.PacketConnConfigs = append(cfg.PacketConnConfigs, pturn.PacketConnConfig{
			PacketConn: s.udp, RelayAddressGenerator: gen, PermissionHandler: perm})
	}
	if o.TCPAddr != "" {
		if s.tcp, err = net.Listen("tcp4", o.TCPAddr); err != nil {
			return fail(fmt.Errorf("turn: listen tcp %s: %w", o.TCPAddr, err))
		}
		cfg.ListenerConfigs = append(cfg.ListenerConfigs, pturn.ListenerConfig{
			Listener: s.tcp, RelayAddressGenerator: gen, PermissionHandler: perm})
	}
	if o.TLSAddr != "" {
		if o.TLS == nil {
			return fail(errors.New("turn: TLS listener without a certificate"))
		}
		if s.tls, err = tls.Listen("tcp4", o.TLSAddr, o.TLS); err != nil {
			return fail(fmt.Errorf("turn: listen tls %s: %w", o.TLSAddr, err))
		}
		cfg.ListenerConfigs = append(cfg.ListenerConfigs, pturn.ListenerConfig{
			Listener: s.tls, RelayAddressGenerator: gen, PermissionHandler: perm})
	}
	if s.srv, err = pturn.NewServer(cfg); err != nil {
		return fail(fmt.Errorf("turn: %w", err))
	}
	return s, nil
}

// UDPAddr, TCPAddr and TLSAddr are the bound listen addresses ("" when off).
func (s *Server) UDPAddr() string {
	if s.udp == nil {
		return ""
	}
	return s.udp.LocalAddr().String()
}

func (s *Server) TCPAddr() string {
	if s.tcp == nil {
		return ""
	}
	return s.tcp.Addr().String()
}

func (s *Server) TLSAddr() string {
	if s.tls == nil {
		return ""
	}
	return s.tls.Addr().String()
}

// Allocations is the number of live relay allocations.
func (s *Server) Allocations() int { return s.srv.AllocationCount() }

// Close stops the server and releases every allocation.
func (s *Server) Close() error {
	return s.srv.Close()
}

// Run serves until ctx ends, then closes.
func (s *Server) Run(ctx context.Context) error {
	<-ctx.Done()
	return s.Close()
}

func (s *Server) closeListeners() {
	if s.udp != nil {
		s.udp.Close()
	}
	if s.tcp != nil {
		s.tcp.Close()
	}
	if s.tls != nil {
		s.tls.Close()
	}
}

// NewLoggerFactory bridges pion's loggers (for TURN and ICE muxes) into log.
func NewLoggerFactory(log *slog.Logger) logging.LoggerFactory { return loggerFactory{log} }

// loggerFactory bridges pion's loggers into slog (errors and warnings only: pion's info
// level is chatty, its debug and trace levels are per packet).
type loggerFactory struct{ log *slog.Logger }

func (f loggerFactory) NewLogger(scope string) logging.LeveledLogger {
	return pionLogger{f.log.With("scope", scope)}
}

type pionLogger struct{ log *slog.Logger }

func (l pionLogger) Trace(string)          {}
func (l pionLogger) Tracef(string, ...any) {}
func (l pionLogger) Debug(m string)        { l.log.Debug(m) }
func (l pionLogger) Debugf(f string, a ...any) {
	l.log.Debug(fmt.Sprintf(f, a...))
}
func (l pionLogger) Info(m string)             { l.log.Debug(m) }
func (l pionLogger) Infof(f string, a ...any)  { l.log.Debug(fmt.Sprintf(f, a...)) }
func (l pionLogger) Warn(m string)             { l.log.Warn(m) }
func (l pionLogger) Warnf(f string, a ...any)  { l.log.Warn(fmt.Sprintf(f, a...)) }
func (l pionLogger) Error(m string)            { l.log.Error(m) }
func (l pionLogger) Errorf(f string, a ...any) { l.log.Error(fmt.Sprintf(f, a...)) }

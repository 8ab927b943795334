package broker

import (
	"bytes"
	"crypto/sha256"
	"crypto/subtle"
	"net"
	"strings"
	"sync"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

// Authenticator decides who may connect. ok=false refuses the CONNECT (bad
// user name or password).
type Authenticator interface {
	AuthenticateMQTT(username, password string, remote net.Addr) (id Identity, ok bool)
}

// Identity is who a connected client is, and so what it may read and write.
type Identity struct {
	Kind    string   // KindHub, KindDevice, KindIntegration or KindAnonymous
	Name    string   // device id, key id, "camhub"; used in logs and by Disconnect
	Devices []string // for KindIntegration: the device ids it may command and read ("*" = all)
}

// session is what the broker knows about one authenticated connection; it
// lives on the connection (mqttConn), so it ends with it.
type session struct {
	id    Identity
	rules rules
	logs  logLimiter
}

// authenticate checks a CONNECT's credentials: Options.Users first (the
// hub's accounts), then Options.Auth, then anonymous when allowed.
func (b *Broker) authenticate(user, pass string, remote net.Addr) (Identity, bool) {
	if want, ok := b.opts.Users[user]; ok && user != "" {
		if equal(pass, want) {
			return Identity{Kind: KindHub, Name: user}, true
		}
		return Identity{}, false
	}
	if b.opts.Auth != nil && user != "" {
		id, ok := b.opts.Auth.AuthenticateMQTT(user, pass, remote)
		if !ok {
			return Identity{}, false
		}
		switch id.Kind {
		case KindHub, KindIntegration:
		case KindDevice:
			if !ValidLevel(id.Name) {
				return Identity{}, false // a device id that is not one topic level
			}
		default:
			return Identity{}, false // anonymous is for AllowAnonymous alone
		}
		return id, true
	}
	// Without any account configured (demo), anyone is anonymous; with
	// accounts, only a client that presents no user name.
	if b.opts.AllowAnonymous && (user == "" || (b.opts.Auth == nil && len(b.opts.Users) == 0)) {
		return Identity{Kind: KindAnonymous, Name: "anonymous"}, true
	}
	return Identity{}, false
}

// equal compares two secrets in constant time (of the hashes: the lengths
// stay private too).
func equal(a, b string) bool {
	ha, hb := sha256.Sum256([]byte(a)), sha256.Sum256([]byte(b))
	return subtle.ConstantTimeCompare(ha[:], hb[:]) == 1
}

// hook is the mochi hook that authenticates CONNECTs and enforces the
// per-topic rules on subscriptions, deliveries, publishes and wills.
type hook struct {
	mqtt.HookBase
	b *Broker
}

func (h *hook) ID() string { return "camagent-auth" }

func (h *hook) Provides(b byte) bool {
	return bytes.Contains([]byte{mqtt.OnConnectAuthenticate, mqtt.OnACLCheck, mqtt.OnPublish}, []byte{b})
}

// sessionOf returns cl's session; inline (in-process) clients have none and
// are trusted.
func sessionOf(cl *mqtt.Client) (s *session, trusted bool) {
	if cl.Net.Inline {
		return nil, true
	}
	if c, ok := cl.Net.Conn.(*mqttConn); ok {
		return c.sess.Load(), false
	}
	return nil, false
}

func (h *hook) OnConnectAuthenticate(cl *mqtt.Client, pk packets.Packet) bool {
	b := h.b
	c, ok := cl.Net.Conn.(*mqttConn)
	if !ok {
		return false
	}
	user := string(pk.Connect.Username)
	id, ok := b.authenticate(user, string(pk.Connect.Password), c.RemoteAddr())
	if !ok {
		b.stats.refusedAuth.Add(1)
		b.preAuthLog("refused MQTT login: bad user name or password", "user", printable(user), "remote", cl.Net.Remote)
		return false
	}
	s := &session{id: id, rules: rulesFor(id, b.opts.Prefix, b.opts.HomeAssistantPrefix)}
	if pk.Connect.WillFlag && !s.mayPublish(pk.Connect.WillTopic, pk.Connect.WillPayload) {
		b.stats.refusedACL.Add(1)
		b.preAuthLog("refused MQTT login: last will on a topic this identity may not write",
			"kind", id.Kind, "identity", id.Name, "topic", printable(pk.Connect.WillTopic), "remote", cl.Net.Remote)
		return false
	}
	// A client id names a session (its subscriptions, its queued messages):
	// only the identity that holds it may take it over.
	if old, ok := b.server().Clients.Get(cl.ID); ok && old != cl {
		if os, trusted := sessionOf(old); !trusted && (os == nil || os.id.Kind != id.Kind || os.id.Name != id.Name) {
			b.stats.refusedACL.Add(1)
			b.preAuthLog("refused MQTT login: client id in use by another identity",
				"kind", id.Kind, "identity", id.Name, "client", printable(cl.ID), "remote", cl.Net.Remote)
			return false
		}
	}
	c.sess.Store(s)
	b.log.Debug("client authenticated", "kind", id.Kind, "identity", id.Name, "client", printable(cl.ID), "remote", cl.Net.Remote)
	return true
}

// OnACLCheck is mochi's check of subscription filters (write=false, at
// SUBSCRIBE: a refused filter gets a failure code in the SUBACK) and of each
// delivery to a subscriber (write=false). Publishes (write=true) are allowed
// here and checked in OnPublish, which can drop them the way Mosquitto does
// (acknowledged, not delivered) instead of closing a 3.1.1 client's
// connection; OnPublish also sees the topic after topic-alias resolution.
func (h *hook) OnACLCheck(cl *mqtt.Client, topic string, write bool) bool {
	s, trusted := sessionOf(cl)
	if trusted {
		return true
	}
	if s == nil {
		return false
	}
	if write {
		return true
	}
	if s.rules.canRead(topic) {
		return true
	}
	h.b.stats.refusedACL.Add(1)
	h.b.aclLog(s, "refused MQTT subscription", topic, cl)
	return false
}

func (h *hook) OnPublish(cl *mqtt.Client, pk packets.Packet) (packets.Packet, error) {
	s, trusted := sessionOf(cl)
	if trusted {
		return pk, nil
	}
	if s != nil && s.mayPublish(pk.TopicName, pk.Payload) {
		return pk, nil
	}
	h.b.stats.refusedACL.Add(1)
	if s != nil {
		h.b.aclLog(s, "refused MQTT publish", pk.TopicName, cl)
	}
	if cl.Properties.ProtocolVersion == 5 && pk.FixedHeader.Qos > 0 {
		return pk, packets.ErrNotAuthorized // a PUBACK/PUBREC with 0x87
	}
	return pk, packets.CodeSuccessIgnore // acknowledged as usual, neither retained nor delivered
}

// mayPublish checks a publish (or a will): the topic, and for a device's
// Home Assistant discovery message the topics its payload names.
func (s *session) mayPublish(topic string, payload []byte) bool {
	if !s.rules.canWrite(topic) {
		return false
	}
	for _, t := range s.rules.haConfig {
		if t == topic {
			return haPayloadOK(payload, s.rules.own)
		}
	}
	return true
}

// Disconnect drops every client authenticated as the identity name (a
// device id or key id), live or holding a persistent session: used when its
// credential is revoked. The Authenticator must already refuse it, or it
// simply connects again.
func (b *Broker) Disconnect(name string) {
	srv := b.server()
	if srv == nil {
		return
	}
	n := 0
	for _, cl := range srv.Clients.GetAll() {
		s, trusted := sessionOf(cl)
		if trusted || s == nil || s.id.Name != name {
			continue
		}
		n++
		if !cl.Closed() {
			cl.Stop(packets.ErrNotAuthorized) // its will is published as the connection ends
		}
		// Forget its session too (a persistent one outlives the connection),
		// with whatever it had queued.
		srv.UnsubscribeClient(cl)
		srv.Clients.Delete(cl.ID)
	}
	if n > 0 {
		b.log.Info("dropped a revoked identity's MQTT clients", "identity", name, "clients", n)
	}
}

// aclLog logs a refused subscription or publish, a few lines a second per
// connection at most.
func (b *Broker) aclLog(s *session, msg, topic string, cl *mqtt.Client) {
	ok, suppressed := s.logs.allow(time.Now())
	if !ok {
		return
	}
	args := []any{"kind", s.id.Kind, "identity", s.id.Name, "topic", printable(topic), "client", printable(cl.ID)}
	if suppressed > 0 {
		args = append(args, "suppressed", suppressed)
	}
	b.log.Warn(msg, args...)
}

// preAuthLog logs an event of a connection not (or not yet) authenticated:
// a few lines a second for the whole broker at most, since any socket can
// cause them.
func (b *Broker) preAuthLog(msg string, args ...any) {
	ok, suppressed := b.noise.allow(time.Now())
	if !ok {
		return
	}
	if suppressed > 0 {
		args = append(args, "suppressed", suppressed)
	}
	b.log.Warn(msg, args...)
}

// logLimiter lets logLines lines through per second and counts the rest.
type logLimiter struct {
	mu         sync.Mutex
	window     time.Time
	n          int
	suppressed int
}

const logLines = 3

func (l *logLimiter) allow(now time.Time) (ok bool, suppressed int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if now.Sub(l.window) >= time.Second {
		l.window, l.n = now, 0
	}
	if l.n >= logLines {
		l.suppressed++
		return false, 0
	}
	l.n++
	suppressed, l.suppressed = l.suppressed, 0
	return true, suppressed
}

// printable bounds a client-chosen string for a log line.
func printable(s string) string {
	const max = 80
	if len(s) > max {
		s = s[:max] + "…"
	}
	return strings.ToValidUTF8(s, "?")
}

package hub

import (
	"crypto/subtle"
	"net"
	"strings"

	"github.com/camagent/camagent/hub/auth"
	"github.com/camagent/camagent/hub/broker"
)

// mqttAuth decides who may connect to the embedded broker: the hub itself (a password made
// at each start), the configured mqttUsername (full access, e.g. a bridge), enrolled devices
// (user name: the device id, password: its credential), API keys with the mqtt flag (user
// name: the key id), and in demo mode anonymous clients on loopback.
type mqttAuth struct {
	store     *auth.Store
	hubUser   string
	hubPass   string
	extraUser string
	extraPass string
	demo      bool
	refusals  *noiseLog
}

// hubMQTTUser is the embedded broker account of the hub's own directory client.
const hubMQTTUser = "camhub"

func eq(a, b string) bool { return subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1 }

func (m *mqttAuth) AuthenticateMQTT(username, password string, remote net.Addr) (broker.Identity, bool) {
	switch {
	case username == m.hubUser && eq(password, m.hubPass):
		return broker.Identity{Kind: broker.KindHub, Name: hubMQTTUser}, true
	case m.extraUser != "" && username == m.extraUser && eq(password, m.extraPass):
		return broker.Identity{Kind: broker.KindHub, Name: username}, true
	case strings.HasPrefix(password, "cam_d_"):
		if p, ok := m.store.DeviceLogin(username, password); ok {
			return broker.Identity{Kind: broker.KindDevice, Name: p.Name}, true
		}
	case strings.HasPrefix(password, "cam_k_"):
		if p, ok := m.store.KeyLogin(username, password); ok {
			return broker.Identity{Kind: broker.KindIntegration, Name: p.CredID, Devices: p.Key().Devices}, true
		}
	case username == "" && password == "" && m.demo:
		if a, ok := remote.(*net.TCPAddr); ok && a.IP.IsLoopback() {
			return broker.Identity{Kind: broker.KindAnonymous, Name: "anonymous"}, true
		}
	}
	m.refusals.add("mqtt-auth", "MQTT login refused", "user", quoteTrunc(username), "keyId", auth.KeyIDOf(password), "remote", remote.String())
	return broker.Identity{}, false
}

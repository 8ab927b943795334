package hub

import (
	"net"
	"testing"
	"time"

	"github.com/camagent/camagent/hub/netconf"
	"github.com/camagent/camagent/hub/turn"
)

// TestICEServersCredentialEndsWithToken: the TURN credential in a join reply expires no later
// than the user's token, and after credentialTTL when the token lives longer.
func TestICEServersCredentialEndsWithToken(t *testing.T) {
	const secret = "network-test-secret-0123456789"
	h := &Hub{cfg: Config{Network: netconf.Config{TURN: netconf.TURN{
		URLs: []string{"turn:turn.example.org:3478?transport=udp"}, CredentialTTL: time.Hour}}}}
	servers := h.iceServers(&network{secret: secret})
	for name, tc := range map[string]struct {
		token time.Duration
		want  time.Duration // the credential's lifetime, to the second
	}{
		"token expires in 60 s":  {60 * time.Second, 60 * time.Second},
		"token outlives the ttl": {3 * time.Hour, time.Hour},
	} {
		now := time.Now()
		ice := servers("hub.example.org:8443", "app", 7, now.Add(tc.token))
		if len(ice) != 1 || len(ice[0].URLs) == 0 {
			t.Fatalf("%s: servers %+v", name, ice)
		}
		exp, err := turn.Expiry(ice[0].Username)
		if err != nil {
			t.Fatal(err)
		}
		if exp.After(now.Add(tc.want)) || exp.Before(now.Add(tc.want-2*time.Second)) {
			t.Errorf("%s: credential expires in %s, want %s", name, exp.Sub(now), tc.want)
		}
		if err := turn.Check(secret, ice[0].Username, ice[0].Credential, now); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
}

// TestMediaIPs: the addresses relays may reach are publicIPs and the interface addresses, the
// loopback ones only for loopback-only media.
func TestMediaIPs(t *testing.T) {
	has := func(ips []net.IP, want string) bool {
		for _, ip := range ips {
			if ip.Equal(net.ParseIP(want)) {
				return true
			}
		}
		return false
	}
	ips := mediaIPs([]string{"198.51.100.7"}, false)()
	if !has(ips, "198.51.100.7") || has(ips, "127.0.0.1") {
		t.Errorf("media addresses %v", ips)
	}
	if ips := mediaIPs(nil, true)(); !has(ips, "127.0.0.1") {
		t.Errorf("loopback-only media addresses %v", ips)
	}
}

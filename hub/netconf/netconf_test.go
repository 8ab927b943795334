package netconf

import (
	"strings"
	"testing"
	"time"
)

func TestZeroValueIsTheEmbeddedDefault(t *testing.T) {
	var c Config
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if c.UseTLS("127.0.0.1:8080") || c.UseTLS("localhost:8080") || c.UseTLS("[::1]:8080") {
		t.Error("plain HTTP on loopback must stay the default")
	}
	if !c.UseTLS("0.0.0.0:8443") || !c.UseTLS("192.168.1.20:8443") {
		t.Error("a hub listening beyond loopback must default to HTTPS")
	}
	if c.TURN.Enabled() {
		t.Error("TURN on by default")
	}
	if (Config{TLS: "off"}).UseTLS("0.0.0.0:80") || !(Config{TLS: "on"}).UseTLS("127.0.0.1:1") {
		t.Error("tls on/off ignored")
	}
}

func TestTURNDefaults(t *testing.T) {
	u, tc, tl := TURN{}.Ports()
	if u != 3478 || tc != 3478 || tl != 0 {
		t.Errorf("ports %d %d %d", u, tc, tl)
	}
	if u, tc, _ := (TURN{UDPPort: -1, TCPPort: 3479}).Ports(); u != 0 || tc != 3479 {
		t.Errorf("ports %d %d", u, tc)
	}
	if (TURN{}).TTL() != DefaultTTL {
		t.Error("ttl default")
	}
}

func TestValidate(t *testing.T) {
	for name, tc := range map[string]struct {
		c    Config
		want string // substring of the error; "" for valid
	}{
		"vps": {Config{TLSCert: "c.pem", TLSKey: "k.pem", PublicIPs: []string{"198.51.100.7"}, UDPPort: 50000,
			TCPPort: 50001, HTTPRedirectListen: ":80", TURN: TURN{Embedded: true, TLSPort: 5349,
				URLs: []string{"turn:turn.example.org:3478?transport=udp", "turns:turn.example.org:5349"}}}, ""},
		"tls value":      {Config{TLS: "yes"}, "network.tls"},
		"cert alone":     {Config{TLSCert: "c.pem"}, "tlsKey go together"},
		"public ip":      {Config{PublicIPs: []string{"my.host"}}, "network.publicIPs"},
		"udp port":       {Config{UDPPort: 70000}, "network.udpPort"},
		"redirect":       {Config{HTTPRedirectListen: "80"}, "httpRedirectListen"},
		"turn on media":  {Config{UDPPort: 3478, TURN: TURN{Embedded: true}}, "also network.udpPort"},
		"turn all off":   {Config{TURN: TURN{Embedded: true, UDPPort: -1, TCPPort: -1}}, "every listener is off"},
		"url scheme":     {Config{TURN: TURN{URLs: []string{"http://turn.example.org"}}}, "turn.urls"},
		"url slashes":    {Config{TURN: TURN{URLs: []string{"turn://turn.example.org"}}}, "without //"},
		"url transport":  {Config{TURN: TURN{URLs: []string{"turn:h:3478?transport=sctp"}}}, "udp or tcp"},
		"relay range":    {Config{TURN: TURN{RelayPortMin: 50000}}, "go together"},
		"relay ip":       {Config{TURN: TURN{RelayIP: "x"}}, "turn.relayIP"},
		"short ttl":      {Config{TURN: TURN{CredentialTTL: time.Second}}, "credentialTTL"},
		"short secret":   {Config{TURN: TURN{Secret: "abc"}}, "16 characters"},
		"negative ports": {Config{TCPPort: -1}, "network.tcpPort"},
		"user quota":     {Config{TURN: TURN{UserQuota: -1}}, "turn.userQuota"},
		"total quota":    {Config{TURN: TURN{TotalQuota: -5}}, "turn.totalQuota"},
		"quotas":         {Config{TURN: TURN{Embedded: true, UserQuota: 2, TotalQuota: 100}}, ""},
		"acme":           {Config{ACME: ACME{Domains: []string{"cam.example.org"}, Email: "me@example.org"}}, ""},
		"acme and cert":  {Config{TLSCert: "c.pem", TLSKey: "k.pem", ACME: ACME{Domains: []string{"cam.example.org"}}}, "keep one"},
		"acme tls off":   {Config{TLS: "off", ACME: ACME{Domains: []string{"cam.example.org"}}}, "tls: auto or on"},
		"acme address":   {Config{ACME: ACME{Domains: []string{"198.51.100.7"}}}, "not a DNS name"},
		"acme wildcard":  {Config{ACME: ACME{Domains: []string{"*.example.org"}}}, "not a DNS name"},
		"acme directory": {Config{ACME: ACME{Domains: []string{"cam.example.org"}, Directory: "http://ca"}}, "https://"},
	} {
		err := tc.c.Validate()
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%s: %v", name, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%s: error %v, want %q", name, err, tc.want)
		}
	}
}

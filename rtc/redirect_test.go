package rtc

import "testing"

func TestCheckRedirect(t *testing.T) {
	for _, c := range []struct {
		from, to string
		ok       bool
	}{
		{"https://hub1.example", "https://hub2.example:8443", true},
		{"wss://hub1.example/rtc", "wss://hub2.example/rtc", true},
		{"http://127.0.0.1:8080", "http://127.0.0.1:8081", true},
		{"ws://127.0.0.1:8080/rtc", "https://hub2.example", true},
		{"https://hub1.example", "http://hub2.example", false}, // leaves TLS
		{"wss://hub1.example/rtc", "ws://127.0.0.1:8081/rtc", false},
		{"https://hub1.example", "https://user:pw@hub2.example", false},
		{"https://hub1.example", "file:///etc/passwd", false},
		{"https://hub1.example", "javascript:alert(1)", false},
		{"https://hub1.example", "//hub2.example", false},
		{"https://hub1.example", "", false},
	} {
		_, err := CheckRedirect(c.from, c.to)
		if (err == nil) != c.ok {
			t.Errorf("CheckRedirect(%q, %q): %v, want ok=%v", c.from, c.to, err, c.ok)
		}
	}
}

package rtc

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

func TestParseMessage(t *testing.T) {
	cases := []struct {
		in   string
		code string
	}{
		{`{"type":"join","id":1,"appId":"demo","channel":"porch","uid":7,"token":"x"}`, ""},
		{`{"type":"join","id":1,"appId":"demo","channel":"porch"}`, ""},
		{`{"type":"join","id":1,"channel":"porch"}`, CodeInvalidParams},
		{`{"type":"join","id":1,"appId":"demo","channel":""}`, CodeInvalidParams},
		{`{"type":"join","id":1,"appId":"demo","channel":"a\u0001b"}`, CodeInvalidParams},
		{`{"type":"join","id":1,"appId":"demo","channel":"` + strings.Repeat("x", 65) + `"}`, CodeInvalidParams},
		{`{"type":"join","appId":"demo","channel":"c","uid":-1}`, CodeBadMessage},
		{`{"type":"join","appId":"demo","channel":"c","uid":4294967296}`, CodeBadMessage},
		{`{"type":"publish","id":2,"sdp":"v=0"}`, ""},
		{`{"type":"publish","id":2}`, CodeInvalidParams},
		{`{"type":"subscribe","id":3,"uid":7,"kind":"video"}`, ""},
		{`{"type":"subscribe","id":3,"uid":7,"kind":"smell"}`, CodeInvalidParams},
		{`{"type":"subscribe","id":3,"kind":"audio"}`, CodeInvalidParams},
		{`{"type":"renew","id":4}`, CodeInvalidParams},
		{`{"type":"leave"}`, ""},
		{`{"type":"restart","id":6,"connection":"subscribe"}`, ""},
		{`{"type":"restart","id":6,"connection":"publish"}`, ""},
		{`{"type":"restart","id":6}`, CodeInvalidParams},
		{`{"type":"restart","id":6,"connection":"both"}`, CodeInvalidParams},
		{`{"type":"dance"}`, CodeBadMessage},
		{`{"id":5}`, CodeBadMessage},
		{`not json`, CodeBadMessage},
		{`[]`, CodeBadMessage},
		{`{"type":"join","id":"one"}`, CodeBadMessage},
		{strings.Repeat(" ", MaxMessageBytes+1), CodeBadMessage},
	}
	for _, tc := range cases {
		_, err := ParseMessage([]byte(tc.in))
		var pe *Error
		switch {
		case tc.code == "" && err != nil:
			t.Errorf("%.60s: refused: %v", tc.in, err)
		case tc.code != "" && (!errors.As(err, &pe) || pe.Code != tc.code):
			t.Errorf("%.60s: got %v, want %s", tc.in, err, tc.code)
		}
	}
}

func FuzzParseMessage(f *testing.F) {
	for _, s := range []string{
		`{"type":"join","id":1,"appId":"demo","channel":"porch","uid":7,"token":"x"}`,
		`{"type":"subscribe","id":3,"uid":7,"kind":"video"}`,
		`{"type":"publish","id":2,"sdp":"v=0\r\n"}`,
		`{"type":"answer","sdp":"v=0"}`,
		`{"type":"restart","id":4,"connection":"subscribe"}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := ParseMessage(b)
		if err != nil {
			var pe *Error
			if !errors.As(err, &pe) || pe.Code == "" {
				t.Fatalf("untyped error %v", err)
			}
			return
		}
		// An accepted message survives a round trip.
		out, err := json.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := ParseMessage(out); err != nil {
			t.Fatalf("re-parse of %s: %v", out, err)
		}
	})
}

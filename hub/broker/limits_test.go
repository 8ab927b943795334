package broker

import (
	"bytes"
	"io"
	"net"
	"net/url"
	"runtime"
	"strings"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
)

// allocated returns the bytes allocated (cumulatively) while f runs.
func allocated(f func()) uint64 {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	f()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

// rawSend dials the broker, writes p, then up to extra bytes more while the
// broker keeps reading, and reports whether the broker closed the socket.
func rawSend(t *testing.T, addr string, p []byte, extra int) (closed bool) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write(p); err != nil {
		return true
	}
	chunk := make([]byte, 64<<10)
	for sent := 0; sent < extra; sent += len(chunk) {
		if _, err := c.Write(chunk); err != nil {
			return true
		}
	}
	_, err = io.ReadAll(c) // EOF or a reset once the broker closes it
	return err == nil || !isTimeout(err)
}

func isTimeout(err error) bool {
	ne, ok := err.(net.Error)
	return ok && ne.Timeout()
}

// connectPacket is an MQTT 3.1.1 CONNECT for user and password.
func connectPacket(clientID, user, pass string) []byte {
	var body bytes.Buffer
	str := func(s string) { body.WriteByte(byte(len(s) >> 8)); body.WriteByte(byte(len(s))); body.WriteString(s) }
	str("MQTT")
	body.WriteByte(4)    // 3.1.1
	body.WriteByte(0xc2) // user name, password, clean session
	body.Write([]byte{0, 30})
	str(clientID)
	str(user)
	str(pass)
	return append(append([]byte{0x10}, varint(body.Len())...), body.Bytes()...)
}

func varint(n int) []byte {
	var out []byte
	for {
		b := byte(n & 0x7f)
		n >>= 7
		if n > 0 {
			b |= 0x80
		}
		out = append(out, b)
		if n == 0 {
			return out
		}
	}
}

func TestOversizedPackets(t *testing.T) {
	b, _ := fleet(t, Options{MaxPacketSize: 64 << 10})
	hub, hubMsgs := login(t, b, "camhub", nil)
	subscribe(t, hub, "camagent/#")

	// A CONNECT announcing 256 MiB (the largest length MQTT can say), then
	// 1 MiB of it; and the same after an authenticated CONNECT, as a PUBLISH.
	huge := []byte{0x10, 0xff, 0xff, 0xff, 0x7f}
	hugePublish := append(connectPacket("porch-big", "porch", "cam_d_porch"), 0x30, 0xff, 0xff, 0xff, 0x7f)
	// Just over the pre-authentication CONNECT limit, and just over MaxPacketSize.
	bigConnect := append([]byte{0x10}, varint(maxConnectSize+1)...)
	bigPublish := append(connectPacket("porch-big2", "porch", "cam_d_porch"), append([]byte{0x30}, varint(64<<10)...)...)

	var closed [4]bool
	n := allocated(func() {
		for range 5 {
			closed[0] = rawSend(t, b.Addr(), huge, 1<<20)
			closed[1] = rawSend(t, b.Addr(), hugePublish, 1<<20)
		}
		closed[2] = rawSend(t, b.Addr(), bigConnect, 64<<10)
		closed[3] = rawSend(t, b.Addr(), bigPublish, 128<<10)
	})
	for i, c := range closed {
		if !c {
			t.Errorf("attack %d: the broker kept the socket open", i)
		}
	}
	t.Logf("allocated %.1f MB in the process during 12 oversized packets (each announced up to 256 MiB)", float64(n)/1e6)
	if n > 8<<20 {
		t.Errorf("the process allocated %d bytes during the attacks, want a few MB at most", n)
	}
	if s := statsWhen(b, func(s Stats) bool { return !(s.Oversize != 12) }); s.Oversize != 12 {
		t.Errorf("stats %+v, want 12 oversize", s)
	}

	// Legitimate traffic: a message just under the limit passes.
	porch, _ := login(t, b, "porch", nil)
	big := strings.Repeat("j", 60<<10)
	publish(t, porch, "camagent/porch/snapshot", false, big)
	if m := next(t, hubMsgs); m.topic != "camagent/porch/snapshot" || m.payload != big {
		t.Fatalf("got %.40s on %s", m.payload, m.topic)
	}
}

func TestConnectTimeout(t *testing.T) {
	b, _ := fleet(t, Options{ConnectTimeout: 300 * time.Millisecond})
	// A silent socket, and one that sends its CONNECT a byte at a time, too slowly.
	silent, err := net.Dial("tcp", b.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	drip, err := net.Dial("tcp", b.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer drip.Close()
	go func() {
		for _, x := range connectPacket("drip", "porch", "cam_d_porch") {
			if _, err := drip.Write([]byte{x}); err != nil {
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
	}()
	for name, c := range map[string]net.Conn{"silent": silent, "drip": drip} {
		_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
		_, err := io.ReadAll(c)
		if err != nil && isTimeout(err) {
			t.Errorf("%s socket still open after 10 s", name)
		}
	}
	if s := statsWhen(b, func(s Stats) bool { return !(s.Timeouts != 2) }); s.Timeouts != 2 {
		t.Errorf("stats %+v, want 2 timeouts", s)
	}
	// A real client connects, and an idle authenticated client outlives the
	// CONNECT timeout (its keep-alive governs it now).
	porch, porchMsgs := login(t, b, "porch", nil)
	subscribe(t, porch, "camagent/porch/cmd")
	time.Sleep(600 * time.Millisecond)
	hub, _ := login(t, b, "camhub", nil)
	publish(t, hub, "camagent/porch/cmd", false, "still here")
	only(t, porchMsgs, message{"camagent/porch/cmd", "still here", false})
}

func TestConnectionLimits(t *testing.T) {
	b, _ := fleet(t, Options{MaxPerAddress: 3, MaxClients: 5})
	// Three idle sockets from 127.0.0.1 fill its share.
	for range 3 {
		c, err := net.Dial("tcp", b.Addr())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
	}
	if !rawSend(t, b.Addr(), connectPacket("fourth", "porch", "cam_d_porch"), 0) {
		t.Fatal("a fourth socket from the same address stayed open")
	}
	// Another address still gets in, until the total is reached.
	from := func(ip string) func(*paho.ClientOptions) {
		return func(o *paho.ClientOptions) {
			o.SetCustomOpenConnectionFn(func(u *url.URL, _ paho.ClientOptions) (net.Conn, error) {
				d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}}
				return d.Dial("tcp", u.Host)
			})
		}
	}
	hub, _ := login(t, b, "camhub", from("127.0.0.2"))
	porch, porchMsgs := login(t, b, "porch", from("127.0.0.2"))
	subscribe(t, porch, "camagent/porch/cmd")
	o := paho.NewClientOptions().AddBroker("tcp://" + b.Addr()).SetClientID("sixth").SetUsername("garage").
		SetPassword("cam_d_garage").SetAutoReconnect(false).SetConnectTimeout(5 * time.Second).SetProtocolVersion(4)
	from("127.0.0.3")(o)
	sixth := paho.NewClient(o)
	if err := wait(sixth.Connect()); err == nil {
		sixth.Disconnect(0)
		t.Fatal("a sixth socket got in over MaxClients 5")
	}
	publish(t, hub, "camagent/porch/cmd", false, "ok")
	only(t, porchMsgs, message{"camagent/porch/cmd", "ok", false})
	if s := statsWhen(b, func(s Stats) bool { return !(s.RefusedLimit != 2) }); s.RefusedLimit != 2 {
		t.Errorf("stats %+v, want 2 refused at the limit", s)
	}
}

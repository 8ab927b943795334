package hub

import (
	"fmt"
	"path/filepath"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
)

// TestEmbeddedBrokerHubLogin: another hub of a cluster reads this hub's embedded broker with
// the configured mqttUsername and mqttPassword: it gets the hub's rights (every device's
// replies; commands to any device), and the same name with another password is refused.
func TestEmbeddedBrokerHubLogin(t *testing.T) {
	cfg := Defaults()
	cfg.Listen, cfg.MQTTListen, cfg.StateDir = freeTCP(t), freeTCP(t), filepath.Join(t.TempDir(), "hub")
	cfg.MQTTUsername, cfg.MQTTPassword = "bridge", "bridge-secret-0123456789abcdef"
	runTestHub(t, cfg, 15*time.Second)
	login := func(pass string) (paho.Client, error) {
		c := paho.NewClient(paho.NewClientOptions().AddBroker("tcp://" + cfg.MQTTListen).SetClientID(fmt.Sprintf("bridge-%d", time.Now().UnixNano())).
			SetUsername("bridge").SetPassword(pass).SetAutoReconnect(false).SetConnectTimeout(5 * time.Second))
		tok := c.Connect()
		tok.WaitTimeout(10 * time.Second)
		return c, tok.Error()
	}
	if c, err := login("not-the-password"); err == nil {
		c.Disconnect(0)
		t.Fatal("the hub's login with a wrong password was accepted")
	}
	c, err := login(cfg.MQTTPassword)
	if err != nil {
		t.Fatalf("the configured hub login: %v", err)
	}
	defer c.Disconnect(0)
	got := make(chan string, 1)
	tok := c.Subscribe("camagent/+/cmd", 1, func(_ paho.Client, m paho.Message) { got <- m.Topic() })
	if !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("subscribe: %v", tok.Error())
	}
	if code := tok.(*paho.SubscribeToken).Result()["camagent/+/cmd"]; code == 0x80 {
		t.Fatal("the hub login may not read every device's topics")
	}
	if p := c.Publish("camagent/porch/cmd", 1, false, `{"id":"1","action":"status"}`); !p.WaitTimeout(5*time.Second) || p.Error() != nil {
		t.Fatalf("publish: %v", p.Error())
	}
	select {
	case topic := <-got:
		if topic != "camagent/porch/cmd" {
			t.Fatalf("got %s", topic)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a command the hub login sent never came back to its own subscription: not allowed through")
	}
}

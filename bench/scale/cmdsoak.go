package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/camagent/camagent/control"
)

// commander is the hub side of the broker runs: one MQTT client that sends status commands
// to devices and times their replies.
type commander struct {
	c    paho.Client
	mu   sync.Mutex
	sent map[string]time.Time // command id → when it was sent, until its reply
	rtts []time.Duration      // replies since the last take
}

func newCommander(f fleet) (*commander, error) {
	cm := &commander{sent: map[string]time.Time{}}
	o := paho.NewClientOptions().SetClientID("scale-hub").SetUsername(f.hubLogin[0]).SetPassword(f.hubLogin[1]).SetAutoReconnect(false)
	for _, u := range control.BrokerURLs(f.hubURL) {
		o.AddBroker(u)
	}
	cm.c = paho.NewClient(o)
	if tok := cm.c.Connect(); !tok.WaitTimeout(30*time.Second) || tok.Error() != nil {
		return nil, fmt.Errorf("hub connect: %v", tok.Error())
	}
	if tok := cm.c.Subscribe(control.Topics{ID: "+"}.Reply(), 1, cm.onReply); !tok.WaitTimeout(30*time.Second) || tok.Error() != nil {
		cm.c.Disconnect(0)
		return nil, fmt.Errorf("hub subscribe: %v", tok.Error())
	}
	return cm, nil
}

func (cm *commander) close() { cm.c.Disconnect(0) }

func (cm *commander) onReply(_ paho.Client, m paho.Message) {
	var rep control.Reply
	if json.Unmarshal(m.Payload(), &rep) != nil {
		return
	}
	cm.mu.Lock()
	defer cm.mu.Unlock()
	if t0, ok := cm.sent[rep.ID]; ok && rep.OK {
		cm.rtts = append(cm.rtts, time.Since(t0))
		delete(cm.sent, rep.ID)
	}
}

// send publishes a status command with id cid to device id.
func (cm *commander) send(id, cid string) {
	cm.mu.Lock()
	cm.sent[cid] = time.Now()
	cm.mu.Unlock()
	cm.c.Publish(control.Topics{ID: id}.Cmd(), 1, false, fmt.Sprintf(`{"id":%q,"action":"status"}`, cid))
}

// waiting is how many commands have no reply yet.
func (cm *commander) waiting() int {
	cm.mu.Lock()
	defer cm.mu.Unlock()
	return len(cm.sent)
}

// take returns the round trips since the last take.
func (cm *commander) take() []time.Duration {
	cm.mu.Lock()
	defer cm.mu.Unlock()
	out := cm.rtts
	cm.rtts = nil
	return out
}

// soakResult is a broker's command soak: every device sent a status command every interval
// for the duration.
type soakResult struct {
	Minutes    int     `json:"minutes"`
	EveryS     float64 `json:"everySeconds"`
	Sent       int     `json:"sent"`
	Answered   int     `json:"answered"`
	Unanswered int     `json:"unanswered"` // no reply 30 s after the last round
	P50ms      float64 `json:"p50ms"`
	P99ms      float64 `json:"p99ms"`
	WorstP99ms float64 `json:"worstMinuteP99ms"`
	RSSFirst   float64 `json:"brokerRSSFirstMB,omitempty"`
	RSSLast    float64 `json:"brokerRSSLastMB,omitempty"`
	SelfFirst  float64 `json:"selfRSSFirstMB"`
	SelfLast   float64 `json:"selfRSSLastMB"`
	Load       string  `json:"load"`
}

// commandSoak sends a status command to every device every every, for d, and prints each
// minute's round trips and memory.
func commandSoak(ctx context.Context, kind string, cm *commander, f fleet, ids []string, d, every time.Duration) (soakResult, error) {
	s := soakResult{EveryS: every.Seconds()}
	var all []time.Duration
	end := time.Now().Add(d)
	round := time.NewTicker(every)
	defer round.Stop()
	minute := time.NewTicker(time.Minute)
	defer minute.Stop()
	sentMin, n := 0, 0
	report := func() {
		rtts := cm.take()
		all = append(all, rtts...)
		s.Minutes++
		p50, p99 := percentile(rtts, 0.50), percentile(rtts, 0.99)
		s.WorstP99ms = max(s.WorstP99ms, p99)
		brokerRSS := ""
		if f.rss != nil {
			v := f.rss()
			if s.RSSFirst == 0 {
				s.RSSFirst = v
			}
			s.RSSLast = v
			brokerRSS = fmt.Sprintf("%s %.1f MB, ", f.rssName, v)
		}
		self := rssMB([]int{os.Getpid()})
		if s.SelfFirst == 0 {
			s.SelfFirst = self
		}
		s.SelfLast, s.Load = self, loadavg()
		fmt.Printf("%-9s soak minute %2d: %d commands sent, %d replies; round trip p50 %.1f ms, p99 %.1f ms, max %.1f ms; %sthis process %.0f MB; waiting %d; load %s\n",
			kind, s.Minutes, sentMin, len(rtts), p50, p99, percentile(rtts, 1), brokerRSS, self, cm.waiting(), s.Load)
		sentMin = 0
	}
	for time.Now().Before(end) {
		select {
		case <-ctx.Done():
			return s, ctx.Err()
		case <-minute.C:
			report()
		case <-round.C:
			n++
			for _, id := range ids {
				cm.send(id, fmt.Sprintf("soak-%d-%s", n, id))
			}
			sentMin += len(ids)
			s.Sent += len(ids)
		}
	}
	for deadline := time.Now().Add(30 * time.Second); cm.waiting() > 0 && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	report()
	s.Answered = len(all)
	s.Unanswered = cm.waiting()
	s.P50ms, s.P99ms = percentile(all, 0.50), percentile(all, 0.99)
	return s, nil
}

func (s *soakResult) print(kind string) {
	fmt.Printf("%-9s soak: %d minutes, a status command to each device every %.0f s: %d sent, %d answered, %d unanswered; round trip p50 %.1f ms, p99 %.1f ms (worst minute's p99 %.1f ms)",
		kind, s.Minutes, s.EveryS, s.Sent, s.Answered, s.Unanswered, s.P50ms, s.P99ms, s.WorstP99ms)
	if s.RSSFirst > 0 {
		fmt.Printf("; broker RSS %.1f → %.1f MB", s.RSSFirst, s.RSSLast)
	}
	fmt.Printf("; this process %.0f → %.0f MB; load %s\n", s.SelfFirst, s.SelfLast, s.Load)
}

// percentile of d in ms (p in 0–1; 1: the largest); 0 for none.
func percentile(d []time.Duration, p float64) float64 {
	if len(d) == 0 {
		return 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	return float64(s[min(len(s)-1, int(p*float64(len(s))))].Microseconds()) / 1000
}

func loadavg() string {
	b, _ := os.ReadFile("/proc/loadavg")
	if f := strings.Fields(string(b)); len(f) >= 3 {
		return strings.Join(f[:3], " ")
	}
	return "?"
}

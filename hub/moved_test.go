package hub

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/camagent/camagent/hub/cluster/clustertest"
	"github.com/camagent/camagent/hub/token"
	"github.com/camagent/camagent/rtc"
)

// startClustered runs hub id of a cluster (demo mode, its own embedded broker) on a fixed
// loopback address, with the state directory state (the same App certificate on every hub).
func startClustered(t *testing.T, id, redis, state string, lease time.Duration) (*Hub, string) {
	t.Helper()
	addr := freeTCP(t)
	cfg := Defaults()
	cfg.Demo = true
	cfg.Listen = addr
	cfg.MQTTListen = freeTCP(t)
	cfg.StateDir = state
	cfg.Cluster = Cluster{Redis: redis, HubID: id, PublicURL: "http://" + addr, Lease: lease}
	h := runTestHub(t, cfg, 15*time.Second)
	return h, "http://" + addr
}

// rejoiner is a user that enters through one hub, follows redirects, and joins again by
// itself whenever its session ends, as the agent and the SDK do.
type rejoiner struct {
	entry string
	uid   uint32
	tok   string

	mu       sync.Mutex
	sessions []string // the signalling URL of each session, in order
	ends     []error  // why each ended session ended
	users    [][]uint32
	joined   chan struct{}
}

func (r *rejoiner) run(ctx context.Context, t *testing.T, api rtc.ClientOptions) {
	for ctx.Err() == nil {
		o := api
		o.URL = r.entry
		c, res, err := rtc.DialJoin(ctx, o, "demo", "porch", r.uid, r.tok)
		if err != nil {
			select {
			case <-ctx.Done():
			case <-time.After(100 * time.Millisecond):
			}
			continue
		}
		var uids []uint32
		for _, u := range res.Users {
			uids = append(uids, u.UID)
		}
		r.mu.Lock()
		r.sessions = append(r.sessions, c.URL())
		r.users = append(r.users, uids)
		r.mu.Unlock()
		select {
		case r.joined <- struct{}{}:
		default:
		}
		go func() {
			for range c.Events() { // read them, as a real client does
			}
		}()
		select {
		case <-ctx.Done():
			c.Close()
			return
		case <-c.Done():
		}
		r.mu.Lock()
		r.ends = append(r.ends, c.Err())
		r.mu.Unlock()
		c.Close()
	}
}

func (r *rejoiner) last() (string, []uint32, []error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.sessions) == 0 {
		return "", nil, nil
	}
	return r.sessions[len(r.sessions)-1], r.users[len(r.users)-1], slices.Clone(r.ends)
}

// TestLostChannelUsersRejoinHolder: hub a runs a channel and is cut off from Redis; its lease
// runs out and another user, entering through hub b, makes b take the channel (two copies
// now). Once a reaches Redis again it learns the channel is b's: it closes its users with
// channel-moved, and they rejoin through their entry hub (a), which sends them to b, where
// the channel's users are together again.
func TestLostChannelUsersRejoinHolder(t *testing.T) {
	redis := clustertest.StartRedis(t, "")
	proxy := clustertest.NewCutProxy(t, strings.TrimPrefix(redis, "redis://"))
	state := filepath.Join(t.TempDir(), "hubs")
	lease := 900 * time.Millisecond
	ha, urlA := startClustered(t, "a", "redis://"+proxy.Addr(), state, lease)
	_, urlB := startClustered(t, "b", redis, state, lease)
	cert, _ := ha.Certificate("demo")
	mint := func(uid uint32) string {
		tok, _, err := token.Mint("demo", cert, "porch", uid, token.RolePublisher, time.Hour, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	api, err := rtc.NewAPI(rtc.APIOptions{LoopbackOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	opts := rtc.ClientOptions{API: api, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() { cancel(); wg.Wait() })
	start := func(entry string, uid uint32) *rejoiner {
		r := &rejoiner{entry: entry, uid: uid, tok: mint(uid), joined: make(chan struct{}, 8)}
		wg.Add(1)
		go func() { defer wg.Done(); r.run(ctx, t, opts) }()
		select {
		case <-r.joined:
		case <-time.After(15 * time.Second):
			t.Fatalf("user %d never joined through %s", uid, entry)
		}
		return r
	}
	wsA, wsB := rtc.HubWebSocketURL(urlA), rtc.HubWebSocketURL(urlB)

	x := start(urlA, 11)
	if at, _, _ := x.last(); at != wsA {
		t.Fatalf("user 11 on %s, want a (both idle: the entry hub keeps it)", at)
	}
	proxy.Cut(true)
	// a renews nothing now; once its registration and the channel's lease ran out, a user
	// entering through b makes b take the channel.
	time.Sleep(lease + lease/2)
	y := start(urlB, 22)
	if at, users, _ := y.last(); at != wsB || len(users) != 0 {
		t.Fatalf("user 22 on %s with %v, want b alone (a's lease ran out)", at, users)
	}
	proxy.Cut(false)
	healed := time.Now()
	var users []uint32
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		var at string
		var ends []error
		at, users, ends = x.last()
		if at == wsB {
			if len(ends) != 1 || !errors.Is(ends[0], rtc.ErrChannelMoved) {
				t.Fatalf("user 11's session on a ended with %v, want once with rtc.ErrChannelMoved", ends)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("user 11 still on %s (sessions ended: %v) 10 s after a reached Redis again", at, ends)
		}
	}
	if !slices.Contains(users, 22) {
		t.Fatalf("user 11 rejoined b with users %v, want 22 there", users)
	}
	t.Logf("a back on Redis → user 11 closed with channel-moved and joined at b beside 22 after %v (lease %v)",
		time.Since(healed).Round(time.Millisecond), lease)
	if at, _, ends := y.last(); at != wsB || len(ends) != 0 {
		t.Fatalf("user 22 (on the holder) moved: on %s, ended %v", at, ends)
	}
}

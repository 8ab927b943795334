// Package natstest starts a real 3-node NATS cluster (Debian's nats-server) for tests of a
// NATS cluster as the broker (docs/nats.md): on 127.0.0.1, free ports, each node with
// JetStream, an MQTT listener and a monitoring port, all including one authorization block
// (hub/natsconf writes it). NATSTEST_LOG=1 in the environment logs every line the nodes
// write (leader elections, JetStream API timeouts), not only their errors.
package natstest

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/camagent/camagent/internal/freeport"
)

// Binary is Debian's nats-server (tools/test-deps.sh installs it).
const Binary = "/usr/sbin/nats-server"

// Node is one nats-server of the cluster.
type Node struct {
	Name    string
	MQTT    string // host:port of its MQTT listener
	Client  string // host:port of its NATS-protocol listener
	Monitor string // host:port of its HTTP monitoring (/connz, /varz)
	conf    string // its configuration file
	t       testing.TB
	verbose bool
	cmd     *exec.Cmd
	done    chan struct{}
	exited  chan<- string

	mu        sync.Mutex
	elections []Election
}

// Election is a JetStream leader elected on the cluster, as a node's log announced it.
type Election struct {
	At    time.Time // when the line was read
	Group string    // "meta", or the stream's name ($MQTT_sess, …)
}

// Elections returns the leader elections the node has logged since it started: the
// metadata leader and stream leaders, wherever they were elected (each node logs them all).
func (n *Node) Elections() []Election {
	n.mu.Lock()
	defer n.mu.Unlock()
	return append([]Election(nil), n.elections...)
}

// election reads a log line announcing a JetStream leader.
func election(line string) (string, bool) {
	switch {
	case strings.Contains(line, "new metadata leader") || strings.Contains(line, "Self is new JetStream cluster metadata leader"):
		return "meta", true
	case strings.Contains(line, "new stream leader for '"):
		_, rest, _ := strings.Cut(line, "new stream leader for '")
		name, _, _ := strings.Cut(rest, "'")
		if _, stream, ok := strings.Cut(name, " > "); ok {
			return stream, true
		}
		return name, true
	}
	return "", false
}

// MQTTURL is the node's MQTT listener as a broker URL (tcp://host:port).
func (n *Node) MQTTURL() string { return "tcp://" + n.MQTT }

func freePort(t testing.TB) int {
	t.Helper()
	p, err := freeport.Port()
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// StartCluster runs three nats-servers on loopback, routed to each other, until the test
// ends, all including the authorization block authConf. It returns once every MQTT listener
// accepts and JetStream has a metadata leader. The test fails when nats-server is missing.
//
// The ports are picked free just before the servers start, so another process on the
// machine (a parallel test package dialling out) can take one in between; a node that then
// exits, or a cluster that does not come up, is torn down and started again on new ports, up
// to three times, each failure logged with the node's fatal line.
func StartCluster(t testing.TB, authConf string) []*Node {
	t.Helper()
	if _, err := os.Stat(Binary); err != nil {
		t.Fatalf("%s missing (tools/test-deps.sh installs Debian's nats-server): %v", Binary, err)
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "camagent-users.conf"), []byte(authConf), 0o600); err != nil {
		t.Fatal(err)
	}
	var err error
	for attempt := 1; attempt <= 3; attempt++ {
		var nodes []*Node
		nodes, err = startOnce(t, dir, attempt)
		if err == nil {
			return nodes
		}
		t.Logf("NATS cluster, attempt %d: %v", attempt, err)
		for _, n := range nodes {
			n.Kill()
		}
	}
	t.Fatalf("NATS cluster did not come up: %v", err)
	return nil
}

// startOnce starts the three nodes on new free ports, each with its own store directory under
// dir, and waits for them to be ready. On an error the nodes started so far are returned so
// the caller can kill them.
func startOnce(t testing.TB, dir string, attempt int) ([]*Node, error) {
	var routes []string
	var nodes []*Node
	for i := range 3 {
		routes = append(routes, fmt.Sprintf("nats-route://127.0.0.1:%d", freePort(t)))
		nodes = append(nodes, &Node{Name: fmt.Sprintf("n%d", i+1), MQTT: fmt.Sprintf("127.0.0.1:%d", freePort(t)),
			Client: fmt.Sprintf("127.0.0.1:%d", freePort(t)), Monitor: fmt.Sprintf("127.0.0.1:%d", freePort(t)),
			done: make(chan struct{})})
	}
	start := time.Now()
	var leader sync.Once
	elected := make(chan struct{})
	exited := make(chan string, len(nodes))
	var started []*Node
	verbose := os.Getenv("NATSTEST_LOG") != ""
	for i, n := range nodes {
		conf := fmt.Sprintf(`server_name: %s
listen: %s
http: %s
jetstream { store_dir: %q, max_memory_store: 64MB, max_file_store: 256MB }
cluster { name: camagent-test, listen: %s, routes: [%s] }
mqtt { listen: %s }
include ./camagent-users.conf
`, n.Name, n.Client, n.Monitor, filepath.Join(dir, fmt.Sprintf("%s-%d", n.Name, attempt)),
			strings.TrimPrefix(routes[i], "nats-route://"), strings.Join(routes, ", "), n.MQTT)
		path := filepath.Join(dir, n.Name+".conf")
		if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
			return started, err
		}
		n.conf, n.t, n.verbose, n.exited = path, t, verbose, exited
		if err := n.start(func() { leader.Do(func() { close(elected) }) }); err != nil {
			return started, err
		}
		started = append(started, n)
		t.Cleanup(n.Kill)
	}
	select {
	case <-elected:
	case why := <-exited:
		return started, fmt.Errorf("before a JetStream leader: %s", why)
	case <-time.After(20 * time.Second):
		return started, fmt.Errorf("no JetStream metadata leader after 20 s")
	}
	for _, n := range nodes {
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
			c, err := net.DialTimeout("tcp", n.MQTT, time.Second)
			if err == nil {
				c.Close()
				break
			}
			select {
			case why := <-exited:
				return started, fmt.Errorf("%s: MQTT listener %s: %s", n.Name, n.MQTT, why)
			default:
			}
			if time.Now().After(deadline) {
				return started, fmt.Errorf("%s: MQTT listener %s: %w", n.Name, n.MQTT, err)
			}
		}
	}
	t.Logf("3-node NATS cluster up (JetStream leader, MQTT listening) in %v", time.Since(start).Round(time.Millisecond))
	return nodes, nil
}

// start runs the node's nats-server and reads its log: onLeader is called when a JetStream
// metadata leader is announced, fatal and error lines are logged, and done is closed when
// the process exits.
func (n *Node) start(onLeader func()) error {
	n.cmd = exec.Command(Binary, "-c", n.conf)
	out, err := n.cmd.StderrPipe()
	if err != nil {
		return err
	}
	if err := n.cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", n.Name, err)
	}
	cmd, done := n.cmd, n.done
	go func() {
		var fatal string
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			line := sc.Text()
			if strings.Contains(line, "metadata leader") && onLeader != nil {
				onLeader()
			}
			if g, ok := election(line); ok {
				n.mu.Lock()
				n.elections = append(n.elections, Election{At: time.Now(), Group: g})
				n.mu.Unlock()
			}
			if strings.Contains(line, "[FTL]") {
				fatal = line
			}
			if n.verbose || strings.Contains(line, "[ERR]") && !strings.Contains(line, "connect to route") {
				n.t.Logf("%s: %s", n.Name, line)
			}
		}
		cmd.Wait()
		select {
		case n.exited <- fmt.Sprintf("%s exited (%v): %s", n.Name, cmd.ProcessState, fatal):
		default:
		}
		close(done)
	}()
	return nil
}

// Restart starts a killed node again with its configuration and store: it rejoins the
// cluster. It returns once its MQTT listener accepts.
func (n *Node) Restart() error {
	select {
	case <-n.done:
	default:
		return fmt.Errorf("natstest: %s is running", n.Name)
	}
	n.done = make(chan struct{})
	if err := n.start(nil); err != nil {
		return err
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		c, err := net.DialTimeout("tcp", n.MQTT, time.Second)
		if err == nil {
			c.Close()
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("natstest: %s restarted, MQTT listener %s: %w", n.Name, n.MQTT, err)
		}
	}
}

// Kill ends the node with SIGKILL (no goodbye to its clients or routes) and waits for it.
func (n *Node) Kill() {
	select {
	case <-n.done:
		return
	default:
	}
	if n.cmd.Process != nil {
		n.cmd.Process.Kill()
		<-n.done
	}
}

// Users returns the authorized user of each client connection the node has now (from its
// monitoring port's /connz?auth=true): MQTT and NATS-protocol clients alike.
func (n *Node) Users() ([]string, error) {
	c := http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get("http://" + n.Monitor + "/connz?auth=true&limit=1024")
	if err != nil {
		return nil, fmt.Errorf("natstest: %s connz: %w", n.Name, err)
	}
	defer resp.Body.Close()
	var cz struct {
		Connections []struct {
			User string `json:"authorized_user"`
		} `json:"connections"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&cz); err != nil {
		return nil, fmt.Errorf("natstest: %s connz: %w", n.Name, err)
	}
	out := make([]string, 0, len(cz.Connections))
	for _, c := range cz.Connections {
		out = append(out, c.User)
	}
	return out, nil
}

// HasUser reports whether user has a client connection to the node now.
func (n *Node) HasUser(user string) bool {
	users, err := n.Users()
	if err != nil {
		return false
	}
	for _, u := range users {
		if u == user {
			return true
		}
	}
	return false
}

// Leads lists what the node leads in JetStream now (its /jsz?leader_only=true): "meta" for
// the metadata group, then the streams by name ($MQTT_sess, $MQTT_msgs, $MQTT_rmsgs).
func (n *Node) Leads() ([]string, error) {
	c := http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get("http://" + n.Monitor + "/jsz?accounts=true&streams=true&leader_only=true")
	if err != nil {
		return nil, fmt.Errorf("natstest: %s jsz: %w", n.Name, err)
	}
	defer resp.Body.Close()
	var jz struct {
		Meta struct {
			Leader string `json:"leader"`
		} `json:"meta_cluster"`
		Accounts []struct {
			Streams []struct {
				Name    string `json:"name"`
				Cluster struct {
					Leader string `json:"leader"`
				} `json:"cluster"`
			} `json:"stream_detail"`
		} `json:"account_details"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&jz); err != nil {
		return nil, fmt.Errorf("natstest: %s jsz: %w", n.Name, err)
	}
	var out []string
	if jz.Meta.Leader == n.Name {
		out = append(out, "meta")
	}
	for _, a := range jz.Accounts {
		for _, st := range a.Streams {
			if st.Cluster.Leader == n.Name {
				out = append(out, st.Name)
			}
		}
	}
	return out, nil
}

// Reelected says, for each group the dead node led, how long after killed another node
// announced its new leader (from the living nodes' logs), as "meta 5.8s, $MQTT_sess 6.9s";
// "not yet" for a group without one.
func Reelected(groups []string, killed time.Time, living []*Node) string {
	var parts []string
	for _, g := range groups {
		var first time.Time
		for _, n := range living {
			for _, e := range n.Elections() {
				if e.Group == g && e.At.After(killed) && (first.IsZero() || e.At.Before(first)) {
					first = e.At
				}
			}
		}
		if first.IsZero() {
			parts = append(parts, g+" not yet")
		} else {
			parts = append(parts, fmt.Sprintf("%s %v", g, first.Sub(killed).Round(10*time.Millisecond)))
		}
	}
	if len(parts) == 0 {
		return "nothing to re-elect"
	}
	return strings.Join(parts, ", ")
}

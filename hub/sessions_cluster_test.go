package hub

import (
	"bytes"
	"encoding/json"
	"net/http"
	"path/filepath"
	"testing"
	"time"

	"github.com/camagent/camagent/hub/auth"
	"github.com/camagent/camagent/hub/cluster/clustertest"
)

// TestLoginOnEveryHub: two hubs of a cluster (real redis-server, one state directory): a person
// who logs in through hub a is logged in on hub b with the same cookie and CSRF token, and a
// logout through hub b ends the session on hub a too. Redis holds a hash of the cookie only.
func TestLoginOnEveryHub(t *testing.T) {
	if testing.Short() {
		t.Skip("two hubs and redis-server: not in -short")
	}
	redis := clustertest.StartRedis(t, "hub-redis-password")
	state := filepath.Join(t.TempDir(), "state")
	st, err := auth.Open(state)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.AddUser("ann", "correct horse battery", false, nil); err != nil {
		t.Fatal(err)
	}
	_, a := startClustered(t, "a", redis, state, time.Second)
	_, b := startClustered(t, "b", redis, state, time.Second)

	body, _ := json.Marshal(map[string]string{"user": "ann", "password": "correct horse battery"})
	resp, err := http.Post(a+"/api/login", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	var cookie *http.Cookie
	for _, c := range resp.Cookies() {
		if c.Name == sessionCookie {
			cookie = c
		}
	}
	if resp.StatusCode != http.StatusOK || cookie == nil {
		t.Fatalf("login at hub a: %s, cookie %v", resp.Status, cookie)
	}
	session := func(hub string) (user, csrf string) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, hub+"/api/session", nil)
		req.AddCookie(cookie)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var out struct{ User, CSRF string }
		json.NewDecoder(resp.Body).Decode(&out)
		return out.User, out.CSRF
	}
	userA, csrfA := session(a)
	userB, csrfB := session(b)
	if userA != "ann" || userB != "ann" || csrfA == "" || csrfB != csrfA {
		t.Fatalf("session at a: %q (csrf %q), at b: %q (csrf %q); want ann on both with one CSRF token", userA, csrfA, userB, csrfB)
	}
	// Logout through hub b (a state-changing request: the session's CSRF token).
	req, _ := http.NewRequest(http.MethodPost, b+"/api/logout", bytes.NewReader([]byte("{}")))
	req.Header.Set("Content-Type", "application/json")
	req.AddCookie(cookie)
	req.Header.Set("X-CSRF-Token", csrfB)
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		t.Fatalf("logout at hub b: %s", resp.Status)
	}
	if user, _ := session(a); user == "ann" {
		t.Fatal("hub a still logs ann in after her logout through hub b")
	}
}

package hub

import (
	"testing"
	"time"
)

func TestViewerUIDs(t *testing.T) {
	v := newViewerUIDs()
	now := time.Unix(1_800_000_000, 0)
	a, err := v.issue("user:alice", "porch", 0, time.Hour, now)
	if err != nil || a < minViewerUID {
		t.Fatalf("first uid %d, %v", a, err)
	}
	if again, _ := v.issue("user:alice", "porch", a, time.Hour, now.Add(time.Minute)); again != a {
		t.Errorf("alice asked for her uid %d again and got %d", a, again)
	}
	if stolen, _ := v.issue("user:mallory", "porch", a, time.Hour, now); stolen == a {
		t.Errorf("mallory was given alice's uid %d", a)
	}
	if other, _ := v.issue("user:alice", "garage", a, time.Hour, now); other == a {
		t.Errorf("alice's porch uid %d was accepted for garage", a)
	}
	if small, _ := v.issue("user:alice", "porch", 42, time.Hour, now); small < minViewerUID {
		t.Errorf("a device-range uid %d was given", small)
	}
	if !v.owns("user:alice", "porch", a, now) || v.owns("user:mallory", "porch", a, now) {
		t.Error("owns is wrong")
	}
	// The renewal above extended alice's uid to now+61 min.
	if v.owns("user:alice", "porch", a, now.Add(62*time.Minute)) {
		t.Error("an expired uid is still owned")
	}
	if late, _ := v.issue("user:alice", "porch", a, time.Hour, now.Add(2*time.Hour)); late == a {
		t.Error("an expired uid was given back")
	}
	// One principal cannot fill the table.
	var refused bool
	for i := 0; i < maxViewerUIDsEach+1; i++ {
		if _, err := v.issue("key:flood", "porch", 0, time.Hour, now); err != nil {
			refused = true
		}
	}
	if !refused {
		t.Errorf("key:flood got more than %d live uids", maxViewerUIDsEach)
	}
	if _, err := v.issue("key:flood", "porch", 0, time.Hour, now.Add(2*time.Hour)); err != nil {
		t.Errorf("after its uids expired, flood is still refused: %v", err)
	}
}

package hub

import (
	"crypto/rand"
	"encoding/binary"
	"errors"
	"sync"
	"time"
)

// Viewer uids are chosen by the hub. A caller may ask for a uid again (to renew its token
// or rejoin under the same identity) only if the hub gave that uid to the same principal
// for the same device earlier: a guest who sees another viewer's uid in user-joined cannot
// claim it and push that viewer out of the channel.

const (
	minViewerUID      = 100000
	maxViewerUIDs     = 100000 // entries in all
	maxViewerUIDsEach = 64     // live uids per principal
)

var errTooManyViewers = errors.New("too many viewer identities in use; try again later")

type viewerKey struct {
	device string
	uid    uint32
}

type viewerEntry struct {
	owner   string
	expires time.Time
}

type viewerUIDs struct {
	mu      sync.Mutex
	m       map[viewerKey]viewerEntry
	byOwner map[string]int
}

func newViewerUIDs() *viewerUIDs {
	return &viewerUIDs{m: map[viewerKey]viewerEntry{}, byOwner: map[string]int{}}
}

// issue returns the uid owner may use to watch device until now+ttl: want when the hub gave
// it to owner for that device before (and it has not expired), else a fresh one.
func (v *viewerUIDs) issue(owner, device string, want uint32, ttl time.Duration, now time.Time) (uint32, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if e, ok := v.m[viewerKey{device, want}]; ok && e.owner == owner && now.Before(e.expires) {
		if exp := now.Add(ttl); exp.After(e.expires) {
			e.expires = exp
			v.m[viewerKey{device, want}] = e
		}
		return want, nil
	}
	if len(v.m) >= maxViewerUIDs || v.byOwner[owner] >= maxViewerUIDsEach {
		v.prune(now)
	}
	if len(v.m) >= maxViewerUIDs || v.byOwner[owner] >= maxViewerUIDsEach {
		return 0, errTooManyViewers
	}
	for {
		uid := randomViewerUID()
		k := viewerKey{device, uid}
		if _, taken := v.m[k]; taken {
			continue
		}
		v.m[k] = viewerEntry{owner: owner, expires: now.Add(ttl)}
		v.byOwner[owner]++
		return uid, nil
	}
}

// owns reports whether the hub gave uid to owner for device and it has not expired.
func (v *viewerUIDs) owns(owner, device string, uid uint32, now time.Time) bool {
	v.mu.Lock()
	defer v.mu.Unlock()
	e, ok := v.m[viewerKey{device, uid}]
	return ok && e.owner == owner && now.Before(e.expires)
}

func (v *viewerUIDs) prune(now time.Time) {
	for k, e := range v.m {
		if !now.Before(e.expires) {
			delete(v.m, k)
			if v.byOwner[e.owner]--; v.byOwner[e.owner] <= 0 {
				delete(v.byOwner, e.owner)
			}
		}
	}
}

// randomViewerUID picks a uid away from the small ones devices get.
func randomViewerUID() uint32 {
	var b [4]byte
	rand.Read(b[:])
	return minViewerUID + binary.BigEndian.Uint32(b[:])%2000000000
}

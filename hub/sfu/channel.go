// Package sfu is the hub's channel service: WebSocket signalling (docs/protocol.md), token
// checks, channels of users, and selective forwarding of RTP from each publisher to its
// subscribers without transcoding.
//
// Ownership: a Service owns its channels; a channel owns the set of its sessions; a session
// owns its WebSocket, its two peer connections and the tracks it publishes. A published
// track's forwarding goroutine ends when its publisher's peer connection closes.
package sfu

import (
	"sort"
	"sync"

	"github.com/camagent/camagent/rtc"
)

type channelKey struct{ app, name string }

// channel is a named room inside an App ID; it exists while someone is in it.
type channel struct {
	key   channelKey
	mu    sync.Mutex
	users map[uint32]*session
}

// snapshot returns the users of the channel other than uid, with what they publish.
func (c *channel) snapshot(except uint32) []rtc.User {
	c.mu.Lock()
	sessions := make([]*session, 0, len(c.users))
	for uid, s := range c.users {
		if uid != except {
			sessions = append(sessions, s)
		}
	}
	c.mu.Unlock()
	users := make([]rtc.User, 0, len(sessions))
	for _, s := range sessions {
		u := rtc.User{UID: s.uid}
		u.Audio, u.Video = s.publishes()
		u.AudioCodec, u.VideoCodec = s.publishedCodecs()
		users = append(users, u)
	}
	sort.Slice(users, func(i, j int) bool { return users[i].UID < users[j].UID })
	return users
}

// broadcast sends an event to every user of the channel except the one with uid from.
func (c *channel) broadcast(from uint32, m *rtc.Message) {
	c.mu.Lock()
	targets := make([]*session, 0, len(c.users))
	for uid, s := range c.users {
		if uid != from {
			targets = append(targets, s)
		}
	}
	c.mu.Unlock()
	for _, s := range targets {
		s.send(m)
	}
}

// lookup returns the session with uid, or nil.
func (c *channel) lookup(uid uint32) *session {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.users[uid]
}

// others returns every session in the channel except s.
func (c *channel) others(s *session) []*session {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]*session, 0, len(c.users))
	for _, o := range c.users {
		if o != s {
			out = append(out, o)
		}
	}
	return out
}

package agent

import (
	"errors"
	"net"
	"syscall"

	"github.com/camagent/camagent/rtc"
)

// Entry points. A call reaches the channel service through one hub: the join's (its
// "server", else hub). With hubFailover the device's other configured hubs (hub, hubs) are
// the other entry points of the same service, a cluster of hubs (docs/scaling.md): when the
// one in use cannot be reached at all — its address refuses or never answers, the hub is
// dead — the next attempt goes through the next of them, after the short step, and the call
// stays on the one that worked. A hub that answers, even with a refusal, is not passed over,
// and the credential still goes only to configured hubs.

// hubEntries is the order in which a call tries its entry points: first, then with
// HubFailover the other configured hubs, each once.
func (c *Config) hubEntries(first string) []string {
	entries := []string{first}
	if !c.HubFailover {
		return entries
	}
	seen := map[string]bool{}
	if n, err := normalizeHubURL(first); err == nil {
		seen[n] = true
	}
	for _, h := range c.hubURLs() {
		n, err := normalizeHubURL(h)
		if err != nil || seen[n] {
			continue
		}
		seen[n] = true
		entries = append(entries, h)
	}
	return entries
}

// entryDown reports whether err says the entry hub itself could not be reached: its token
// service or its signalling refused the connection or never answered the dial. A hub that
// redirected the join to an unreachable holder (rtc.ErrHolderUnreachable) was reached.
func entryDown(err error) bool {
	if err == nil || errors.Is(err, rtc.ErrHolderUnreachable) {
		return false
	}
	if rtc.Unanswered(err) || errors.Is(err, syscall.ECONNREFUSED) {
		return true
	}
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "dial"
}

// hub is the entry point the call uses now.
func (c *call) hub() string { return c.entries[c.entry] }

// nextEntry moves the call to its next entry point after err, if err says the one in use is
// down and there is another; it reports whether it moved.
func (c *call) nextEntry(err error) bool {
	if len(c.entries) < 2 || !entryDown(err) {
		return false
	}
	from := c.hub()
	c.entry = (c.entry + 1) % len(c.entries)
	c.log.Warn("hub out of reach; next attempt through another configured hub", "from", from, "to", c.hub(), "err", err)
	return true
}

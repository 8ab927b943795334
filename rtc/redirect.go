package rtc

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"time"
)

// ErrHolderUnreachable: a hub redirected the join to the hub that holds the channel, and that
// hub could not be dialled. It is likely dead: the directory places the channel elsewhere once
// the holder's lease runs out (cluster.lease, 3 s), so the caller may retry through its entry
// hub soon rather than after a grown back-off. Unanswered still reports how the dial failed.
var ErrHolderUnreachable = errors.New("rtc: the hub holding the channel is out of reach")

// DialJoin dials the hub at o.URL and joins appID's channel, following the REDIRECT replies
// of a cluster of hubs to the one that holds the channel (at most MaxRedirects, each checked
// by CheckRedirect). The client returned is joined, on the hub URL says.
func DialJoin(ctx context.Context, o ClientOptions, appID, channel string, uid uint32, tok string) (*Client, *JoinResult, error) {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	// Derived once, so that config.Logger names this component in place of the caller's
	// (a record attribute would print a second component= beside the agent's).
	log := o.Logger.With("component", "rtc")
	at := o.URL
	for hop := 0; ; hop++ {
		o.URL = at
		start := time.Now()
		c, err := Dial(ctx, o)
		if err != nil && hop > 0 {
			return nil, nil, fmt.Errorf("%w (redirected there): %w", ErrHolderUnreachable, err)
		}
		if err != nil {
			return nil, nil, err
		}
		dialled := time.Now()
		res, err := c.Join(ctx, appID, channel, uid, tok)
		log.Debug("join step timings", "hub", at, "connect took", dialled.Sub(start).Round(time.Millisecond),
			"join reply took", time.Since(dialled).Round(time.Millisecond), "err", err)
		if err == nil {
			return c, res, nil
		}
		c.Close()
		var pe *Error
		if !errors.As(err, &pe) || pe.Code != CodeRedirect {
			return nil, nil, err
		}
		if hop >= MaxRedirects {
			return nil, nil, fmt.Errorf("rtc: join %s: more than %d redirects (the last to %s)", channel, MaxRedirects, pe.URL)
		}
		next, err := CheckRedirect(at, pe.URL)
		if err != nil {
			return nil, nil, fmt.Errorf("rtc: join %s: %w", channel, err)
		}
		log.Debug("join redirected", "channel", channel, "from", at, "to", next)
		at = next
	}
}

// CheckRedirect returns the hub URL a REDIRECT from hub from to target leads to, or why it
// is refused: target must be an http(s):// or ws(s):// URL without credentials, and a
// redirect never leaves TLS (from https:// or wss:// only to https:// or wss://), since the
// client sends its token there.
func CheckRedirect(from, target string) (string, error) {
	u, err := url.Parse(target)
	if err != nil || u.Host == "" || u.User != nil {
		return "", fmt.Errorf("redirect to %q: not a hub URL", target)
	}
	secure := map[string]bool{"https": true, "wss": true, "http": false, "ws": false}
	to, ok := secure[u.Scheme]
	if !ok {
		return "", fmt.Errorf("redirect to %q: scheme %q (want https, wss, http or ws)", target, u.Scheme)
	}
	f, err := url.Parse(HubWebSocketURL(from))
	if err != nil {
		return "", fmt.Errorf("redirect from %q: %w", from, err)
	}
	if secure[f.Scheme] && !to {
		return "", fmt.Errorf("redirect from %s to %s refused: it would leave TLS", f.Host, target)
	}
	return target, nil
}

// URL is the hub the client is connected to (its signalling URL).
func (c *Client) URL() string { return HubWebSocketURL(c.opts.URL) }

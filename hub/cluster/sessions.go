package cluster

import (
	"context"
	"fmt"
	"time"
)

// Web sessions shared by the hubs (auth.SessionShare): a person logged in through one hub is
// logged in on all, and a logout on one ends the session everywhere. The key is the hash of
// the session cookie (never the cookie); the value is what hub/auth keeps of the session.

func (d *Directory) sessionKey(key string) string { return d.opts.Prefix + ":session:" + key }

// PutSession stores a session for ttl (renewed by each Put).
func (d *Directory) PutSession(ctx context.Context, key string, value []byte, ttl time.Duration) error {
	if _, err := d.redis.do(ctx, "SET", d.sessionKey(key), string(value), "PX", fmt.Sprint(ttl.Milliseconds())); err != nil {
		return fmt.Errorf("cluster: store session: %w", err)
	}
	return nil
}

// GetSession returns a stored session, nil when there is none.
func (d *Directory) GetSession(ctx context.Context, key string) ([]byte, error) {
	r, err := d.redis.do(ctx, "GET", d.sessionKey(key))
	if err != nil {
		return nil, fmt.Errorf("cluster: read session: %w", err)
	}
	s, _ := r.(string)
	if r == nil || s == "" {
		return nil, nil
	}
	return []byte(s), nil
}

// DelSession deletes a stored session.
func (d *Directory) DelSession(ctx context.Context, key string) error {
	if _, err := d.redis.do(ctx, "DEL", d.sessionKey(key)); err != nil {
		return fmt.Errorf("cluster: delete session: %w", err)
	}
	return nil
}

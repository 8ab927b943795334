package cluster

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"
)

// redisError is an error reply from Redis (-ERR …, -NOSCRIPT …).
type redisError string

func (e redisError) Error() string { return "redis: " + string(e) }

// conn is a minimal RESP2 client: one connection, one command at a time (the directory
// sends a few commands a second), dialled again after any failure. Replies are string,
// int64, nil, []any or redisError.
type conn struct {
	addr, user, pass string
	db               int
	tls              *tls.Config
	timeout          time.Duration

	mu sync.Mutex
	c  net.Conn
	r  *bufio.Reader
}

// parseRedisURL reads redis://[user:password@]host:port[/db] (rediss:// for TLS).
func parseRedisURL(s string, timeout time.Duration) (*conn, error) {
	u, err := url.Parse(s)
	if err != nil {
		return nil, fmt.Errorf("redis URL: %w", err)
	}
	c := &conn{addr: u.Host, timeout: timeout}
	switch u.Scheme {
	case "redis":
	case "rediss":
		c.tls = &tls.Config{ServerName: u.Hostname(), MinVersion: tls.VersionTLS12}
	default:
		return nil, fmt.Errorf("redis URL: scheme %q (want redis:// or rediss://)", u.Scheme)
	}
	if u.Port() == "" {
		c.addr = net.JoinHostPort(u.Hostname(), "6379")
	}
	if u.User != nil {
		c.user = u.User.Username()
		c.pass, _ = u.User.Password()
		if c.pass == "" { // redis://:password@ and redis://password@ both mean a password
			c.user, c.pass = "", c.user
		}
	}
	if db := strings.Trim(u.Path, "/"); db != "" {
		if c.db, err = strconv.Atoi(db); err != nil || c.db < 0 {
			return nil, fmt.Errorf("redis URL: database %q is not a number", db)
		}
	}
	return c, nil
}

// do sends one command and reads its reply. A network failure closes the connection (the
// next command dials again); an error reply leaves it open.
func (c *conn) do(ctx context.Context, args ...string) (any, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.c == nil {
		if err := c.dial(ctx); err != nil {
			return nil, err
		}
	}
	v, err := c.roundTrip(ctx, args)
	var re redisError
	if err != nil && !errors.As(err, &re) {
		c.c.Close()
		c.c = nil
	}
	return v, err
}

func (c *conn) dial(ctx context.Context) error {
	d := net.Dialer{Timeout: c.timeout}
	nc, err := d.DialContext(ctx, "tcp", c.addr)
	if err != nil {
		return fmt.Errorf("redis: connect to %s: %w", c.addr, err)
	}
	if c.tls != nil {
		tc := tls.Client(nc, c.tls)
		if err := tc.HandshakeContext(ctx); err != nil {
			nc.Close()
			return fmt.Errorf("redis: TLS with %s: %w", c.addr, err)
		}
		nc = tc
	}
	c.c, c.r = nc, bufio.NewReader(nc)
	var hello [][]string
	if c.pass != "" {
		if c.user != "" {
			hello = append(hello, []string{"AUTH", c.user, c.pass})
		} else {
			hello = append(hello, []string{"AUTH", c.pass})
		}
	}
	if c.db != 0 {
		hello = append(hello, []string{"SELECT", strconv.Itoa(c.db)})
	}
	for _, cmd := range hello {
		if _, err := c.roundTrip(ctx, cmd); err != nil {
			nc.Close()
			c.c = nil
			return fmt.Errorf("redis: %s: %w", cmd[0], err)
		}
	}
	return nil
}

func (c *conn) roundTrip(ctx context.Context, args []string) (any, error) {
	deadline := time.Now().Add(c.timeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	c.c.SetDeadline(deadline)
	var b strings.Builder
	fmt.Fprintf(&b, "*%d\r\n", len(args))
	for _, a := range args {
		fmt.Fprintf(&b, "$%d\r\n%s\r\n", len(a), a)
	}
	if _, err := io.WriteString(c.c, b.String()); err != nil {
		return nil, fmt.Errorf("redis: send %s: %w", args[0], err)
	}
	v, err := readReply(c.r, 0)
	if err != nil {
		var re redisError
		if errors.As(err, &re) {
			return nil, err
		}
		return nil, fmt.Errorf("redis: read reply to %s: %w", args[0], err)
	}
	return v, nil
}

// maxBulk bounds one bulk string read from Redis (the directory's values are small).
const maxBulk = 1 << 20

func readReply(r *bufio.Reader, depth int) (any, error) {
	if depth > 4 {
		return nil, errors.New("reply nested too deep")
	}
	line, err := r.ReadString('\n')
	if err != nil {
		return nil, err
	}
	line = strings.TrimSuffix(line, "\r\n")
	if line == "" {
		return nil, errors.New("empty reply line")
	}
	body := line[1:]
	switch line[0] {
	case '+':
		return body, nil
	case '-':
		return nil, redisError(body)
	case ':':
		return strconv.ParseInt(body, 10, 64)
	case '$':
		n, err := strconv.Atoi(body)
		if err != nil || n > maxBulk {
			return nil, fmt.Errorf("bad bulk length %q", body)
		}
		if n < 0 {
			return nil, nil
		}
		buf := make([]byte, n+2)
		if _, err := io.ReadFull(r, buf); err != nil {
			return nil, err
		}
		return string(buf[:n]), nil
	case '*':
		n, err := strconv.Atoi(body)
		if err != nil || n > 100000 {
			return nil, fmt.Errorf("bad array length %q", body)
		}
		if n < 0 {
			return nil, nil
		}
		out := make([]any, n)
		for i := range out {
			if out[i], err = readReply(r, depth+1); err != nil {
				return nil, err
			}
		}
		return out, nil
	}
	return nil, fmt.Errorf("unknown reply type %q", line[0])
}

func (c *conn) close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.c != nil {
		c.c.Close()
		c.c = nil
	}
}

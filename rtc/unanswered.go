package rtc

import (
	"errors"
	"net"
	"syscall"
)

// Unanswered reports whether err is a failure to reach the hub at all: the TCP connect timed
// out (its SYNs went unanswered, as on a cut path) or the network said there is no route or
// the host is unreachable. Such an attempt cost the hub nothing, so a caller may retry it
// soon. Any other failure is the hub (or its host) answering: a refused connection (nothing
// listens: the hub is down or restarting), a handshake or request that timed out after the
// connect, an HTTP error, a refused join. Those deserve the long back-off, so that a fleet
// never hammers a hub that is alive or coming back.
func Unanswered(err error) bool {
	if errors.Is(err, syscall.EHOSTUNREACH) || errors.Is(err, syscall.ENETUNREACH) {
		return true
	}
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "dial" && op.Timeout()
}

// Package systemd holds the unit files and sample configurations the packages install
// (camagent.service, camhub.service, camagent.yaml, camhub.yaml) and the small part of the
// systemd service protocol the programs speak, in pure Go: readiness, watchdog and stopping
// notifications (sd_notify(3)) and detection of the journal (systemd.exec(5), $JOURNAL_STREAM).
//
// Every function is a no-op outside systemd, where $NOTIFY_SOCKET and $WATCHDOG_USEC are unset.
package systemd

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strconv"
	"time"
)

// Notify sends one notification ("READY=1", "WATCHDOG=1", "STOPPING=1", "STATUS=…") to the
// service manager. It reports false, nil when $NOTIFY_SOCKET is unset. A name starting with
// '@' is an abstract socket.
func Notify(state string) (bool, error) {
	path := os.Getenv("NOTIFY_SOCKET")
	if path == "" {
		return false, nil
	}
	addr := &net.UnixAddr{Name: path, Net: "unixgram"}
	if path[0] == '@' {
		addr.Name = "\x00" + path[1:]
	}
	conn, err := net.DialUnix("unixgram", nil, addr)
	if err != nil {
		return false, fmt.Errorf("systemd: notify: %w", err)
	}
	defer conn.Close()
	if _, err := conn.Write([]byte(state)); err != nil {
		return false, fmt.Errorf("systemd: notify: %w", err)
	}
	return true, nil
}

// WatchdogInterval is the watchdog timeout the service manager expects pings within
// ($WATCHDOG_USEC, when $WATCHDOG_PID is unset or this process), or 0 when there is none.
func WatchdogInterval() time.Duration {
	usec, err := strconv.ParseInt(os.Getenv("WATCHDOG_USEC"), 10, 64)
	if err != nil || usec <= 0 {
		return 0
	}
	if pid := os.Getenv("WATCHDOG_PID"); pid != "" && pid != strconv.Itoa(os.Getpid()) {
		return 0
	}
	return time.Duration(usec) * time.Microsecond
}

// UnderJournal reports whether standard error goes to the journal, which time-stamps lines
// itself.
func UnderJournal() bool { return os.Getenv("JOURNAL_STREAM") != "" }

// Supervise speaks the notify protocol for a program until ctx ends: READY=1 once ready is
// closed, then WATCHDOG=1 at half the watchdog interval but only while alive returns a time
// newer than that interval (the program's own proof that its main loop runs; a hung loop
// stops the pings and the service manager restarts the program), and STOPPING=1 when ctx
// ends. It returns when ctx ends.
func Supervise(ctx context.Context, ready <-chan struct{}, alive func() time.Time, log *slog.Logger) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("component", "systemd")
	if os.Getenv("NOTIFY_SOCKET") == "" {
		return
	}
	notify := func(s string) {
		if _, err := Notify(s); err != nil {
			log.Warn("notify failed", "state", s, "err", err)
		}
	}
	defer notify("STOPPING=1")
	select {
	case <-ctx.Done():
		return
	case <-ready:
	}
	notify("READY=1")
	log.Debug("ready")
	wd := WatchdogInterval()
	if wd == 0 || alive == nil {
		<-ctx.Done()
		return
	}
	t := time.NewTicker(wd / 2)
	defer t.Stop()
	stale := false
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if age := time.Since(alive()); age < wd {
			notify("WATCHDOG=1")
			stale = false
		} else if !stale {
			stale = true
			log.Error("main loop unresponsive: watchdog pings stopped", "last_heartbeat_age", age.Round(time.Millisecond))
		}
	}
}

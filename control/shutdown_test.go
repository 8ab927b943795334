package control_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/camagent/camagent/control"
)

// TestShutdownAnswersQueued: commands waiting in the queue when Run's context ends are not
// dropped: each gets exactly one reply, ErrShuttingDown, before the device says "offline",
// and none of them runs. The command running at that moment finishes with its own reply.
func TestShutdownAnswersQueued(t *testing.T) {
	eachBroker(t, func(t *testing.T, b testBroker) {
		id := "shutdown-queue"
		o := observe(t, b.Addr(), id)
		started := make(chan struct{}, 1)
		var mu sync.Mutex
		ran := map[string]int{}
		handler := func(ctx context.Context, cmd control.Command) (control.State, error) {
			mu.Lock()
			ran[cmd.ID]++
			mu.Unlock()
			select {
			case started <- struct{}{}:
			default:
			}
			<-ctx.Done() // the first command runs until shutdown
			return control.State{State: control.StateIdle}, nil
		}
		d := startDevice(t, control.Options{URL: "tcp://" + b.Addr(), ID: id, Handler: handler})
		tp := d.Topics()
		o.send(t, tp, `{"id":"running","action":"status"}`)
		<-started
		const queued = 5
		for i := range queued {
			o.send(t, tp, fmt.Sprintf(`{"id":"q%d","action":"status"}`, i))
		}
		waitQueued(t, d, queued)
		from := o.mark()
		d.stop(t)
		o.waitFor(t, from, 5*time.Second, "offline", is(tp.Status(), "offline"))

		if r := o.reply(t, tp, "running"); !r.OK {
			t.Errorf("the running command's reply: %+v", r)
		}
		for i := range queued {
			qid := fmt.Sprintf("q%d", i)
			r := o.reply(t, tp, qid)
			if r.OK || r.Error != control.ErrShuttingDown {
				t.Errorf("%s: reply %+v, want ok:false %q", qid, r, control.ErrShuttingDown)
			}
			if n := o.repliesTo(tp, qid); n != 1 {
				t.Errorf("%s: %d replies, want exactly 1", qid, n)
			}
		}
		if n := o.repliesTo(tp, "running"); n != 1 {
			t.Errorf("running: %d replies, want exactly 1", n)
		}
		mu.Lock()
		defer mu.Unlock()
		if len(ran) != 1 || ran["running"] != 1 {
			t.Errorf("handler ran %v, want only the first command, once", ran)
		}
	})
}

// waitQueued waits until the client holds n commands in its queue.
func waitQueued(t *testing.T, d *device, n int) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); d.Queued() < n; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d commands queued after 5 s, want %d", d.Queued(), n)
		}
	}
}

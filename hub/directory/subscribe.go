package directory

import (
	"context"
	"log/slog"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/camagent/camagent/internal/backoff"
)

// Subscribe subscribes c to filters (filter → QoS) with handler, and tries again while the
// broker refuses any of them (SUBACK 0x80) or does not answer, until it accepts all, the
// connection drops (the next connect subscribes anew) or ctx ends. A NATS node whose
// JetStream is still electing leaders after another node died refuses QoS 1 subscriptions
// for a while ("Unable to add JetStream consumer … timeout"); without a retry the hub would
// stay connected but deaf to every device. Call it from an OnConnect handler (paho runs
// those in their own goroutine).
func Subscribe(ctx context.Context, c mqtt.Client, filters map[string]byte, handler mqtt.MessageHandler, log *slog.Logger) {
	bo := backoff.New(500*time.Millisecond, 5*time.Second)
	for attempt := 1; ctx.Err() == nil && c.IsConnectionOpen(); attempt++ {
		tok := c.SubscribeMultiple(filters, handler)
		var refused []string
		switch {
		case !tok.WaitTimeout(10 * time.Second):
			refused = append(refused, "(no answer)")
		case tok.Error() != nil:
			log.Warn("subscribing failed", "err", tok.Error())
			return // the connection is going; the next connect subscribes again
		default:
			if st, ok := tok.(*mqtt.SubscribeToken); ok {
				for f, code := range st.Result() {
					if code == 0x80 {
						refused = append(refused, f)
					}
				}
			}
		}
		if len(refused) == 0 {
			if attempt > 1 {
				log.Info("subscribed after the broker refused", "attempts", attempt)
			}
			return
		}
		delay := bo.Next()
		log.Warn("the broker refused subscriptions; subscribing again", "filters", refused, "attempt", attempt, "in", delay.Round(time.Millisecond))
		if backoff.Sleep(ctx, delay, nil) != nil {
			return
		}
	}
}

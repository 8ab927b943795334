package control

import (
	"context"
	"fmt"
)

// MaxSnapshotSize bounds a snapshot's JPEG: the embedded broker's largest packet
// (256 KiB) less room for the topic and headers. Devices make their JPEG fit it.
const MaxSnapshotSize = 256<<10 - 4<<10

// PublishSnapshot publishes jpeg, retained (QoS 1), on the snapshot topic; an empty jpeg
// clears the retained snapshot. It returns ErrNotConnected while the broker is unreachable:
// a snapshot is of a moment, not kept for later.
func (c *Client) PublishSnapshot(jpeg []byte) error {
	if len(jpeg) > MaxSnapshotSize {
		return fmt.Errorf("control: snapshot of %d bytes is over the %d allowed", len(jpeg), MaxSnapshotSize)
	}
	if !c.conn.Load() {
		return ErrNotConnected
	}
	if err := wait(context.Background(), c.pc.Publish(c.topics.Snapshot(), c.qos, true, jpeg)); err != nil {
		return fmt.Errorf("control: publish snapshot: %w", err)
	}
	return nil
}

// replyExtra collects what a Handler adds to its command's reply beyond the state.
type replyExtra struct {
	snapshot *SnapshotInfo
}

type replyExtraKey struct{}

// withReplyExtra gives a Handler's context a place for its reply's extras.
func withReplyExtra(ctx context.Context) (context.Context, *replyExtra) {
	x := &replyExtra{}
	return context.WithValue(ctx, replyExtraKey{}, x), x
}

// ReplySnapshot puts info in the reply of the command whose Handler received ctx. It is a
// no-op for a context that did not come from the Client.
func ReplySnapshot(ctx context.Context, info SnapshotInfo) {
	if x, ok := ctx.Value(replyExtraKey{}).(*replyExtra); ok {
		x.snapshot = &info
	}
}

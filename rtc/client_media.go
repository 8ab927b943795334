// client_media.go: the client's media: the publish connection's offers, the subscribe
// connection's answers to the hub's offers, ICE gathering, ICE servers, received tracks.

package rtc

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/camagent/camagent/rtc/peer"
	"github.com/pion/webrtc/v4"
)

// offerLoop answers the hub's offers for the subscribe connection, one at a time.
func (c *Client) offerLoop() {
	defer c.wg.Done()
	for {
		select {
		case <-c.ctx.Done():
			return
		case m := <-c.offers:
			if err := c.answerOffer(m); err != nil {
				c.log.Error("answer hub offer", "err", err)
			}
		}
	}
}

func (c *Client) answerOffer(m *Message) error {
	c.mu.Lock()
	pc := c.sub
	for mid, ti := range m.Tracks {
		c.tracks[mid] = ti
	}
	c.mu.Unlock()
	if len(m.ICEServers) > 0 { // an ICE restart: gather with the fresh credentials
		c.hubRestart.Store(time.Now().UnixNano())
		c.setICEServers(m.ICEServers)
		if pc != nil {
			if err := c.refreshConfiguration(pc); err != nil {
				return err
			}
		}
	}
	if pc == nil {
		var err error
		if pc, err = c.opts.API.NewPeerConnection(c.configuration()); err != nil {
			return fmt.Errorf("rtc: subscribe connection: %w", err)
		}
		pc.OnTrack(c.onTrack)
		c.mu.Lock()
		c.sub = pc
		c.mu.Unlock()
		c.watchPath(ConnSubscribe, pc)
	}
	if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: m.SDP}); err != nil {
		return fmt.Errorf("rtc: apply hub offer: %w", err)
	}
	sdp, err := c.gathered(peer.Answer(c.ctx, pc, c.gathering()))
	if err != nil {
		return fmt.Errorf("rtc: answer: %w", err)
	}
	return c.write(&Message{Type: TypeAnswer, SDP: sdp}, nil)
}

// relayGrace is how long gathering may go on once a relay candidate is there.
const relayGrace = 500 * time.Millisecond

// gathering is how the client waits for its candidates: not for long. A TURN transport that
// a firewall silently drops (UDP to 3478) takes pion about 25 s to give up on, while the
// others are there in milliseconds. So the wait also ends relayGrace after the first relay
// candidate (the path of last resort is in hand), or at GatherTimeout with what there is.
func (c *Client) gathering() peer.Gathering {
	return peer.Gathering{Timeout: c.opts.GatherTimeout, RelayGrace: relayGrace, Log: c.log}
}

// gathered passes on an offer's or answer's SDP; a gathering cut short by GatherTimeout is
// not an error to the client, which goes on with the candidates it has.
func (c *Client) gathered(sdp string, err error) (string, error) {
	if errors.Is(err, peer.ErrGatherIncomplete) {
		c.log.Warn("ICE gathering incomplete; going on with the candidates gathered so far", "after", c.opts.GatherTimeout)
		return sdp, nil
	}
	return sdp, err
}

func (c *Client) onTrack(t *webrtc.TrackRemote, r *webrtc.RTPReceiver) {
	var mid string
	c.mu.Lock()
	if c.sub != nil {
		for _, tr := range c.sub.GetTransceivers() {
			if tr.Receiver() == r {
				mid = tr.Mid()
			}
		}
	}
	ti, ok := c.tracks[mid]
	if !ok {
		c.mu.Unlock()
		c.log.Warn("track on unknown transceiver", "mid", mid)
		return
	}
	c.arrived[ti] = t
	waiters := c.waiters[ti]
	delete(c.waiters, ti)
	c.mu.Unlock()
	for _, w := range waiters {
		w <- t
	}
}

// setICEServers keeps the ICE servers the hub handed out for the peer connections.
func (c *Client) setICEServers(servers []ICEServer) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.ice = c.ice[:0]
	for _, s := range servers {
		c.ice = append(c.ice, webrtc.ICEServer{URLs: s.URLs, Username: s.Username, Credential: s.Credential})
	}
}

// refreshConfiguration gives an existing peer connection the latest ICE servers (their
// credentials are short-lived), for its next gathering.
func (c *Client) refreshConfiguration(pc *webrtc.PeerConnection) error {
	cfg := pc.GetConfiguration()
	cfg.ICEServers = c.configuration().ICEServers
	if err := pc.SetConfiguration(cfg); err != nil {
		return fmt.Errorf("rtc: update ICE servers: %w", err)
	}
	return nil
}

// configuration is the peer connections' configuration: the ICE servers the hub gave.
func (c *Client) configuration() webrtc.Configuration {
	c.mu.Lock()
	defer c.mu.Unlock()
	return webrtc.Configuration{ICEServers: append([]webrtc.ICEServer(nil), c.ice...)}
}

// Publish sends tracks on the publish connection and returns their senders, whose RTCP the
// caller must read (keyframe requests arrive there). It returns once the hub has announced
// every track to the channel, which happens when its media arrives: write samples to the
// tracks before or while calling Publish.
func (c *Client) Publish(ctx context.Context, tracks ...webrtc.TrackLocal) ([]*webrtc.RTPSender, error) {
	c.pubMu.Lock()
	defer c.pubMu.Unlock()
	c.mu.Lock()
	pc := c.pub
	c.mu.Unlock()
	if pc == nil {
		var err error
		if pc, err = c.opts.API.NewPeerConnection(c.configuration()); err != nil {
			return nil, fmt.Errorf("rtc: publish connection: %w", err)
		}
		c.mu.Lock()
		c.pub = pc
		c.mu.Unlock()
		c.watchPath(ConnPublish, pc)
	}
	var senders []*webrtc.RTPSender
	var live []chan struct{}
	for _, t := range tracks {
		ch := make(chan struct{})
		c.mu.Lock()
		c.live[t.Kind().String()] = ch
		c.mu.Unlock()
		live = append(live, ch)
	}
	for _, t := range tracks {
		tr, err := pc.AddTransceiverFromTrack(t, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendonly})
		if err != nil {
			return nil, fmt.Errorf("rtc: add %s track: %w", t.Kind(), err)
		}
		senders = append(senders, tr.Sender())
	}
	if err := c.negotiatePublish(ctx, pc, nil); err != nil {
		return nil, err
	}
	// Return once the others can subscribe: the hub announces a track when its media arrives,
	// so the caller must already be writing samples to the tracks.
	timer := time.NewTimer(c.opts.RequestTimeout)
	defer timer.Stop()
	for i, ch := range live {
		select {
		case <-ch:
		case <-timer.C:
			return senders, fmt.Errorf("rtc: publish: the hub received no %s media in %s", tracks[i].Kind(), c.opts.RequestTimeout)
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-c.ctx.Done():
			return nil, context.Cause(c.ctx)
		}
	}
	return senders, nil
}

// negotiatePublish offers the publish connection's current tracks to the hub and applies its
// answer. The caller holds pubMu.
func (c *Client) negotiatePublish(ctx context.Context, pc *webrtc.PeerConnection, opts *webrtc.OfferOptions) error {
	sdp, err := c.gathered(peer.Offer(ctx, pc, opts, c.gathering()))
	if err != nil {
		return fmt.Errorf("rtc: publish offer: %w", err)
	}
	r, err := c.request(ctx, &Message{Type: TypePublish, SDP: sdp})
	if err != nil {
		return err
	}
	if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: r.SDP}); err != nil {
		return fmt.Errorf("rtc: apply hub answer: %w", err)
	}
	return nil
}

// Subscribe asks for uid's track of kind and returns it once its media arrives.
func (c *Client) Subscribe(ctx context.Context, uid uint32, kind string) (*webrtc.TrackRemote, error) {
	ti := TrackInfo{UID: uid, Kind: kind}
	w := make(chan *webrtc.TrackRemote, 1)
	c.mu.Lock()
	delete(c.arrived, ti)
	c.waiters[ti] = append(c.waiters[ti], w)
	c.mu.Unlock()
	if _, err := c.request(ctx, &Message{Type: TypeSubscribe, UID: &uid, Kind: kind}); err != nil {
		return nil, err
	}
	timer := time.NewTimer(c.opts.RequestTimeout)
	defer timer.Stop()
	select {
	case t := <-w:
		return t, nil
	case <-timer.C:
		return nil, fmt.Errorf("rtc: subscribe %d/%s: no media in %s", uid, kind, c.opts.RequestTimeout)
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-c.ctx.Done():
		return nil, context.Cause(c.ctx)
	}
}

// Unsubscribe stops receiving uid's track of kind.
func (c *Client) Unsubscribe(ctx context.Context, uid uint32, kind string) error {
	_, err := c.request(ctx, &Message{Type: TypeUnsubscribe, UID: &uid, Kind: kind})
	return err
}

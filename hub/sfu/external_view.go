// external_view.go: a WHEP viewer's one connection: reading its offer (what it may send), and
// giving its slots the channel's published tracks as they come and go.

package sfu

import (
	"log/slog"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/camagent/camagent/rtc"
	"github.com/camagent/camagent/rtc/peer"
	"github.com/pion/sdp/v3"
	"github.com/pion/webrtc/v4"
)

// maxSlotsPerKind bounds the tracks one WHEP viewer receives of each kind.
const maxSlotsPerKind = 8

// viewer is a WHEP viewer's one connection: the channel's tracks go out on its slots (one per
// m-line the offer receives on), and what it may send (talk) comes in as the user's tracks.
type viewer struct {
	pc        *webrtc.PeerConnection
	slots     []*slot
	prefer    uint32
	kick      chan struct{}
	connected atomic.Bool
	wg        sync.WaitGroup
}

// View applies a WHEP offer and returns the answer. Each audio or video m-line the offer
// receives on carries one published track of the channel, prefer's first (the device being
// watched), then the others by uid; a slot whose publisher goes is given another. An m-line
// the offer sends on is accepted only if the token allows publishing its kind: otherwise the
// hub answers it as not receiving (the client's offer is read as recvonly for it), and
// pion's transceivers are checked again once applied.
func (e *External) View(offer string, prefer uint32) (string, error) {
	s := e.s
	s.mu.Lock()
	claims, busy := s.claims, s.view != nil
	s.mu.Unlock()
	if busy {
		return "", rtc.Errorf(rtc.CodeInvalidParams, "this viewer already has its connection")
	}
	offer, wants, refused, err := viewerOffer(offer, func(kind string) bool { return claims.Grants(publishPrivilege[kind]) })
	if err != nil {
		return "", err
	}
	if refused {
		s.svc.refusedMedia.Add(1)
		s.svc.noisy(slog.LevelInfo, s.addr, "viewer offers to send media its token does not allow; answered as receive-only", "uid", s.uidNow())
	}
	pc, err := s.svc.opts.API.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		return "", rtc.Errorf(rtc.CodeInternal, "create peer connection: %v", err)
	}
	v := &viewer{pc: pc, prefer: prefer, kick: make(chan struct{}, 1)}
	fail := func(e *rtc.Error) (string, error) {
		pc.Close()
		return "", e
	}
	pc.OnTrack(func(remote *webrtc.TrackRemote, r *webrtc.RTPReceiver) { s.onTrack(pc, remote, r) })
	// No ICE restart in WHEP: a connection that fails or closes ends the viewer.
	end := func() {
		if s.ctx.Err() != nil {
			return // ending already (a DELETE closes the connection): keep its reason
		}
		s.setLeaveReason("timeout")
		s.cancel()
	}
	peer.Watch(pc, peer.PathOptions{Log: s.log}, peer.PathEvents{
		Up: func(bool) {
			v.connected.Store(true)
			v.poke()
		},
		Lost:   func(int, time.Time) { end() },
		Closed: end,
	})
	if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: offer}); err != nil {
		return fail(rtc.Errorf(rtc.CodeNegotiation, "apply offer: %v", err))
	}
	// What pion will receive, as it stands: the same check as a publish connection's.
	if err := allowPublish(claims, receivingKinds(pc)); err != nil {
		s.svc.refusedMedia.Add(1)
		return fail(asProtoErr(err))
	}
	for _, kind := range []string{rtc.KindVideo, rtc.KindAudio} {
		for i := 0; i < wants[kind]; i++ {
			sl := newSlot(kind, len(v.slots))
			sender, err := pc.AddTrack(sl)
			if err != nil {
				return fail(rtc.Errorf(rtc.CodeNegotiation, "add %s track: %v", kind, err))
			}
			if err := preferOurCodecs(pc, sender); err != nil {
				return fail(rtc.Errorf(rtc.CodeNegotiation, "order %s codecs: %v", kind, err))
			}
			sl.sender = sender
			v.slots = append(v.slots, sl)
		}
	}
	sdp, err := peer.Answer(s.ctx, pc, s.gathering())
	if err != nil {
		return fail(negotiationError("answer", err))
	}
	s.mu.Lock()
	if s.ctx.Err() != nil {
		s.mu.Unlock()
		return fail(rtc.Errorf(rtc.CodeInternal, "session closed"))
	}
	s.view = v
	s.events = func(*rtc.Message) { v.poke() } // any change in the channel: refill the slots
	s.mu.Unlock()
	for _, sl := range v.slots {
		v.wg.Add(1)
		go func() {
			defer v.wg.Done()
			sl.readRTCP()
		}()
	}
	v.wg.Add(1)
	go func() {
		defer v.wg.Done()
		for {
			select {
			case <-s.ctx.Done():
				return
			case <-v.kick:
				s.fillSlots(v)
			}
		}
	}()
	return sdp, nil
}

// viewerOffer reads a WHEP offer: how many m-lines of each kind it receives on, and the
// offer to apply, in which every m-line sending a kind that may not be sent is made not to
// send (sendrecv → recvonly, sendonly → inactive; refused says whether any was).
func viewerOffer(offer string, may func(kind string) bool) (string, map[string]int, bool, error) {
	var d sdp.SessionDescription
	if err := d.UnmarshalString(offer); err != nil {
		return "", nil, false, rtc.Errorf(rtc.CodeInvalidParams, "offer is not a session description: %v", err)
	}
	wants := map[string]int{}
	refused := false
	for _, md := range d.MediaDescriptions {
		kind := md.MediaName.Media
		if kind != rtc.KindAudio && kind != rtc.KindVideo {
			continue
		}
		dir := mediaDirection(&d, md)
		if (dir == "sendrecv" || dir == "sendonly") && !may(kind) {
			refused = true
			dir = map[string]string{"sendrecv": "recvonly", "sendonly": "inactive"}[dir]
			setDirection(md, dir)
		}
		if (dir == "sendrecv" || dir == "recvonly") && md.MediaName.Port.Value != 0 {
			wants[kind]++
		}
	}
	if wants[rtc.KindAudio]+wants[rtc.KindVideo] == 0 {
		return "", nil, false, rtc.Errorf(rtc.CodeInvalidParams, "offer receives no audio or video")
	}
	for k, n := range wants {
		if n > maxSlotsPerKind {
			return "", nil, false, rtc.Errorf(rtc.CodeInvalidParams, "offer receives %d %s m-lines; at most %d", n, k, maxSlotsPerKind)
		}
	}
	if !refused {
		return offer, wants, false, nil
	}
	b, err := d.Marshal()
	if err != nil {
		return "", nil, false, rtc.Errorf(rtc.CodeInvalidParams, "offer: %v", err)
	}
	// Reading and writing an offer is not always the identity (stray CRs and control bytes
	// in attributes move line breaks): read what will be applied and check it again.
	sends, _, err := OfferMedia(string(b))
	if err != nil {
		return "", nil, false, rtc.Errorf(rtc.CodeInvalidParams, "offer cannot be rewritten to receive only: %v", err)
	}
	for kind := range sends {
		if !may(kind) {
			return "", nil, false, rtc.Errorf(rtc.CodeInvalidParams, "offer cannot be rewritten to receive only: its %s m-line still sends", kind)
		}
	}
	return string(b), wants, true, nil
}

func setDirection(md *sdp.MediaDescription, dir string) {
	attrs := md.Attributes[:0]
	for _, a := range md.Attributes {
		switch a.Key {
		case "sendonly", "recvonly", "inactive", "sendrecv":
			continue
		}
		attrs = append(attrs, a)
	}
	md.Attributes = append(attrs, sdp.Attribute{Key: dir})
}

func (v *viewer) poke() {
	select {
	case v.kick <- struct{}{}:
	default:
	}
}

// fillSlots gives each slot a published track of the channel: a slot keeps its track while it
// is published; free slots take the tracks nobody shows yet, prefer's first, then by uid.
func (s *session) fillSlots(v *viewer) {
	if !v.connected.Load() || s.ctx.Err() != nil {
		return
	}
	ch := s.channel()
	if ch == nil {
		return
	}
	others := ch.others(s)
	sort.Slice(others, func(i, j int) bool {
		a, b := others[i].uidNow(), others[j].uidNow()
		if (a == v.prefer) != (b == v.prefer) {
			return a == v.prefer
		}
		return a < b
	})
	live := map[*track]bool{}
	var order []*track
	for _, o := range others {
		for _, kind := range []string{rtc.KindVideo, rtc.KindAudio} {
			if t := o.publishedTrack(kind); t != nil {
				live[t] = true
				order = append(order, t)
			}
		}
	}
	shown := map[*track]bool{}
	for _, sl := range v.slots {
		if t := sl.source(); t != nil {
			if live[t] {
				shown[t] = true
			} else {
				t.removeSubscriber(s)
				sl.setSource(nil, nil)
			}
		}
	}
	for _, sl := range v.slots {
		if sl.source() != nil {
			continue
		}
		for _, t := range order {
			if shown[t] || t.kind != sl.kind {
				continue
			}
			f := sl.feedFor(t)
			if f == nil {
				continue // the viewer did not negotiate this track's codec
			}
			shown[t] = true
			out := &outlet{feed: f}
			out.waiting.Store(t.gate != nil)
			sl.setSource(t, f)
			t.addSubscriber(s, out)
			t.startOutlet(out)
			s.log.Debug("viewer slot filled", "kind", sl.kind, "from", t.uid)
			break
		}
	}
}

// closeView ends a viewer's connection and takes its slots off their tracks.
func (s *session) closeView() {
	s.mu.Lock()
	v := s.view
	s.mu.Unlock()
	if v == nil {
		return
	}
	for _, sl := range v.slots {
		if t := sl.source(); t != nil {
			t.removeSubscriber(s)
		}
	}
	v.pc.Close()
	v.wg.Wait()
}

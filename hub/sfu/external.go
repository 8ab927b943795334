package sfu

import (
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/camagent/camagent/hub/token"
	"github.com/camagent/camagent/rtc"
	"github.com/pion/rtp"
	"github.com/pion/sdp/v3"
	"github.com/pion/webrtc/v4"
)

// External users have no signalling socket: a WHIP publisher or a WHEP viewer (hub/whip) makes
// one offer and gets one answer over HTTP. In the channel they are ordinary users: they join
// with a token (checked as any join's), the others see user-joined, user-published and
// user-left for them, what they send is checked against their token's privileges, and a
// viewer's first video frame is a keyframe requested the moment its connection is up.

// maxSlotsPerKind bounds the tracks one WHEP viewer receives of each kind.
const maxSlotsPerKind = 8

// ExternalJoin is a user without signalling entering a channel.
type ExternalJoin struct {
	AppID, Channel, Token string
	// UID 0: the token's uid, or a free one for a wildcard token.
	UID uint32
	// NoTakeover refuses a uid already in the channel (UID_IN_USE) even when the token names
	// it: the hub minted the token for a uid it picked, not one the client chose to reclaim.
	NoTakeover bool
	// Addr is the client address (logs, noise limits); Host the Host it reached the hub at.
	Addr, Host string
	// Publishes lists the kinds a publisher's offer sends: a token that may not publish them
	// is refused before the user enters the channel (nobody sees it come and go).
	Publishes map[string]bool
}

// External is a user in a channel without signalling, until Close or its connection fails
// or its token expires.
type External struct {
	s    *session
	done chan struct{}
}

// JoinExternal puts a user without signalling into a channel; the error is an *rtc.Error.
func (svc *Service) JoinExternal(j ExternalJoin) (*External, error) {
	if svc.ctx.Err() != nil {
		return nil, rtc.Errorf(rtc.CodeInternal, "the channel service is shutting down")
	}
	s := newSession(svc, nil, j.Addr)
	s.host = j.Host
	s.noTakeover = j.NoTakeover
	m := &rtc.Message{AppID: j.AppID, Channel: j.Channel, Token: j.Token}
	if j.UID != 0 {
		uid := j.UID
		m.UID = &uid
	}
	switch {
	case j.AppID == "" || len(j.AppID) > 64:
		s.cancel()
		return nil, rtc.Errorf(rtc.CodeInvalidParams, "appId must be 1-64 bytes")
	case !rtc.ValidChannel(j.Channel):
		s.cancel()
		return nil, rtc.Errorf(rtc.CodeInvalidParams, "channel must be 1-64 printable ASCII characters")
	case len(j.Token) > 4096:
		s.cancel()
		return nil, rtc.Errorf(rtc.CodeInvalidParams, "token too long")
	}
	if len(j.Publishes) > 0 {
		if c, err := token.Parse(j.Token, svc.opts.Verify); err == nil {
			if err := allowPublish(c, j.Publishes); err != nil {
				s.cancel()
				svc.refused.Add(1)
				svc.refusedMedia.Add(1)
				return nil, err
			}
		} // else the join below refuses the token, with its reason
	}
	if _, err := s.join(m); err != nil {
		s.cancel()
		return nil, asProtoErr(err)
	}
	e := &External{s: s, done: make(chan struct{})}
	svc.wg.Add(1)
	go func() {
		defer svc.wg.Done()
		defer close(e.done)
		<-s.ctx.Done()
		s.closeView()
		s.teardown()
	}()
	return e, nil
}

// OfferMedia reads an SDP offer as pion will: the media kinds it sends and those it receives
// on. The error (an *rtc.Error) says the text is not a session description.
func OfferMedia(offer string) (sends, receives map[string]bool, err error) {
	var d sdp.SessionDescription
	if err := d.UnmarshalString(offer); err != nil {
		return nil, nil, rtc.Errorf(rtc.CodeInvalidParams, "not a session description: %v", err)
	}
	sends, receives = map[string]bool{}, map[string]bool{}
	for _, md := range d.MediaDescriptions {
		kind := md.MediaName.Media
		if kind != rtc.KindAudio && kind != rtc.KindVideo {
			continue
		}
		switch mediaDirection(&d, md) {
		case "sendrecv":
			sends[kind], receives[kind] = true, true
		case "sendonly":
			sends[kind] = true
		case "recvonly":
			receives[kind] = true
		}
	}
	return sends, receives, nil
}

// FreeUID picks a uid nobody holds in the channel now (for a token the hub mints).
func (svc *Service) FreeUID(app, channel string) uint32 {
	return svc.freeUID(channelKey{app, channel})
}

// UID is the user's uid in the channel.
func (e *External) UID() uint32 { return e.s.uidNow() }

// Done is closed once the user has left the channel.
func (e *External) Done() <-chan struct{} { return e.done }

// Close takes the user out of the channel (the others get user-left "quit") and waits.
func (e *External) Close() {
	e.s.setLeaveReason("quit")
	e.s.cancel()
	<-e.done
}

// LeaveReason is why the user left ("quit", "timeout", "expired", "replaced"), once Done.
func (e *External) LeaveReason() string {
	e.s.mu.Lock()
	defer e.s.mu.Unlock()
	return e.s.leaveWhy
}

// Publish applies a WHIP offer to the user's publish connection and returns the answer, as a
// signalling user's publish (the same privilege checks, before and after pion reads it).
func (e *External) Publish(offer string) (string, error) {
	reply, err := e.s.publish(&rtc.Message{SDP: offer})
	if err != nil {
		return "", asProtoErr(err)
	}
	return reply.SDP, nil
}

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
	pc.OnConnectionStateChange(func(st webrtc.PeerConnectionState) {
		s.log.Debug("viewer connection state", "state", st.String())
		switch st {
		case webrtc.PeerConnectionStateConnected:
			v.connected.Store(true)
			v.poke()
		case webrtc.PeerConnectionStateFailed, webrtc.PeerConnectionStateClosed:
			if s.ctx.Err() != nil {
				return // ending already (a DELETE closes the connection): keep its reason
			}
			s.setLeaveReason("timeout")
			s.cancel()
		}
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
			sl.sender = sender
			v.slots = append(v.slots, sl)
		}
	}
	answer, err := pc.CreateAnswer(nil)
	if err != nil {
		return fail(rtc.Errorf(rtc.CodeNegotiation, "create answer: %v", err))
	}
	gathered := webrtc.GatheringCompletePromise(pc)
	if err := pc.SetLocalDescription(answer); err != nil {
		return fail(rtc.Errorf(rtc.CodeNegotiation, "set answer: %v", err))
	}
	if err := s.wait(gathered); err != nil {
		return fail(asProtoErr(err))
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
	return pc.LocalDescription().SDP, nil
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

// slot is one m-line of a WHEP viewer's connection: a local track fed by one published track
// at a time. Sequence numbers and timestamps continue across a change of source, so the
// viewer sees one stream; the payload type follows the source's codec among those negotiated.
type slot struct {
	kind   string
	id     string
	sender *webrtc.RTPSender

	mu     sync.Mutex
	w      webrtc.TrackLocalWriter
	ssrc   webrtc.SSRC
	codecs []webrtc.RTPCodecParameters
	src    *track
	feed   *slotFeed
	// rewriting: the last sequence number and timestamp sent, and the current source's offsets
	sent            bool
	lastSeq         uint16
	lastTS          uint32
	seqOff          uint16
	tsOff           uint32
	pendingRestart  bool
	frameTicksOnGap uint32
	firstSeq        uint16 // the current source's first packet sent, in its own numbers
}

// slotFeed is a slot's current source: its payload type on the viewer's connection.
type slotFeed struct {
	slot *slot
	pt   uint8
}

func newSlot(kind string, i int) *slot {
	gap := uint32(3000) // a frame at 30/s on the 90 kHz video clock
	if kind == rtc.KindAudio {
		gap = 960 // 20 ms at 48 kHz
	}
	return &slot{kind: kind, id: fmt.Sprintf("%s-%d", kind, i), frameTicksOnGap: gap}
}

// Bind is pion binding the slot to the viewer's connection once the answer is set.
func (sl *slot) Bind(ctx webrtc.TrackLocalContext) (webrtc.RTPCodecParameters, error) {
	codecs := ctx.CodecParameters()
	if len(codecs) == 0 {
		return webrtc.RTPCodecParameters{}, webrtc.ErrUnsupportedCodec
	}
	sl.mu.Lock()
	defer sl.mu.Unlock()
	sl.w, sl.ssrc, sl.codecs = ctx.WriteStream(), ctx.SSRC(), codecs
	return codecs[0], nil
}

// Unbind is pion unbinding it (the connection closes).
func (sl *slot) Unbind(webrtc.TrackLocalContext) error {
	sl.mu.Lock()
	sl.w = nil
	sl.mu.Unlock()
	return nil
}

func (sl *slot) ID() string       { return sl.id }
func (sl *slot) RID() string      { return "" }
func (sl *slot) StreamID() string { return "camagent" }
func (sl *slot) Kind() webrtc.RTPCodecType {
	if sl.kind == rtc.KindAudio {
		return webrtc.RTPCodecTypeAudio
	}
	return webrtc.RTPCodecTypeVideo
}

func (sl *slot) source() *track {
	sl.mu.Lock()
	defer sl.mu.Unlock()
	return sl.src
}

func (sl *slot) setSource(t *track, f *slotFeed) {
	sl.mu.Lock()
	sl.src, sl.feed, sl.pendingRestart = t, f, true
	sl.mu.Unlock()
}

// feedFor returns a feed of t's codec on this slot, or nil when the viewer's connection did
// not negotiate it (or is not bound yet).
func (sl *slot) feedFor(t *track) *slotFeed {
	c := t.remote.Codec()
	sl.mu.Lock()
	defer sl.mu.Unlock()
	var match *webrtc.RTPCodecParameters
	for i := range sl.codecs {
		n := &sl.codecs[i]
		if !strings.EqualFold(n.MimeType, c.MimeType) {
			continue
		}
		if n.SDPFmtpLine == c.SDPFmtpLine {
			match = n
			break
		}
		if match == nil {
			match = n
		}
	}
	if match == nil {
		return nil
	}
	return &slotFeed{slot: sl, pt: uint8(match.PayloadType)}
}

// ready reports whether the slot is bound to the viewer's connection with this feed.
func (f *slotFeed) ready() bool {
	sl := f.slot
	sl.mu.Lock()
	defer sl.mu.Unlock()
	return sl.feed == f && sl.w != nil
}

// write sends one of the source's packets on the slot (a packet of a former source is dropped).
func (f *slotFeed) write(p *rtp.Packet) error {
	sl := f.slot
	sl.mu.Lock()
	defer sl.mu.Unlock()
	if sl.feed != f || sl.w == nil {
		return nil
	}
	if sl.pendingRestart {
		sl.pendingRestart = false
		sl.seqOff, sl.tsOff = 0, 0
		if sl.sent {
			sl.seqOff = sl.lastSeq + 1 - p.SequenceNumber
			sl.tsOff = sl.lastTS + sl.frameTicksOnGap - p.Timestamp
		}
		sl.firstSeq = p.SequenceNumber
	}
	h := p.Header
	h.SSRC = uint32(sl.ssrc)
	h.PayloadType = f.pt
	h.SequenceNumber += sl.seqOff
	h.Timestamp += sl.tsOff
	sl.sent, sl.lastSeq, sl.lastTS = true, h.SequenceNumber, h.Timestamp
	_, err := sl.w.WriteRTP(&h, p.Payload)
	return err
}

// resend answers the viewer's NACK for seqs (the slot's numbers) from the current source's
// cache, mapped back to the source's numbers; packets of an earlier source are not resent.
func (sl *slot) resend(seqs []uint16) {
	if len(seqs) == 0 {
		return
	}
	sl.mu.Lock()
	defer sl.mu.Unlock()
	t := sl.src
	if t == nil || t.cache == nil || sl.feed == nil || sl.w == nil || !sl.sent || sl.pendingRestart {
		return
	}
	for _, seq := range seqs {
		orig := seq - sl.seqOff
		if int16(orig-sl.firstSeq) < 0 || int16(sl.lastSeq-seq) < 0 {
			continue // before this source, or never sent
		}
		p := t.cache.get(orig)
		if p == nil {
			t.svc.nackMissed.Add(1)
			continue
		}
		h := p.Header
		h.SSRC, h.PayloadType = uint32(sl.ssrc), sl.feed.pt
		h.SequenceNumber, h.Timestamp = seq, p.Timestamp+sl.tsOff
		if _, err := sl.w.WriteRTP(&h, p.Payload); err != nil {
			return
		}
		t.svc.nackResent.Add(1)
	}
}

// readRTCP drains the viewer's RTCP for the slot and relays its keyframe requests to the
// slot's current source.
func (sl *slot) readRTCP() {
	for {
		pkts, _, err := sl.sender.ReadRTCP()
		if err != nil {
			return
		}
		if wantsKeyframe(pkts) {
			if t := sl.source(); t != nil {
				t.requestKeyframe()
			}
		}
		sl.resend(nackedSeqs(pkts))
	}
}

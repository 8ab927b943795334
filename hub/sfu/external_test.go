package sfu

import (
	"strings"
	"testing"

	"github.com/camagent/camagent/rtc"
	"github.com/pion/webrtc/v4"
)

// TestViewerOfferNeverReceivesRefused: whatever direction tricks a WHEP offer plays (the
// variants that fool a naive direction check, in sendonly and sendrecv form), once a viewer
// may not send, pion applying the offer the hub rewrote receives nothing.
func TestViewerOfferNeverReceivesRefused(t *testing.T) {
	api, err := rtc.NewAPI(rtc.APIOptions{LoopbackOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	var variants []string
	for _, v := range sdpVariants(t, api) {
		variants = append(variants, v, strings.ReplaceAll(v, "a=sendonly", "a=sendrecv"))
	}
	nobody := func(string) bool { return false }
	checked := 0
	for i, offer := range variants {
		munged, _, _, err := viewerOffer(offer, nobody)
		if err != nil {
			continue // receives nothing: refused before any connection
		}
		checked++
		pc, err := api.NewPeerConnection(webrtc.Configuration{})
		if err != nil {
			t.Fatal(err)
		}
		if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: munged}); err != nil {
			t.Fatalf("variant %d: pion refuses the rewritten offer: %v\n%s", i, err, munged)
		}
		if recv := receivingKinds(pc); len(recv) > 0 {
			t.Errorf("variant %d: pion still receives %v from a viewer that may not send:\n%s", i, recv, munged)
		}
		pc.Close()
	}
	t.Logf("%d of %d variants receive something and were applied", checked, len(variants))
	if checked < len(variants)/2 {
		t.Errorf("only %d of %d variants were applied", checked, len(variants))
	}
	// One allowed to talk keeps its sendrecv audio.
	talk := strings.ReplaceAll(sdpVariants(t, api)[0], "a=sendonly", "a=sendrecv")
	munged, wants, refused, err := viewerOffer(talk, func(k string) bool { return k == rtc.KindAudio })
	if err != nil || !refused || wants[rtc.KindAudio] != 1 || wants[rtc.KindVideo] != 1 {
		t.Fatalf("talk offer: wants %v, refused %v, err %v", wants, refused, err)
	}
	if sends, _, _ := OfferMedia(munged); !sends[rtc.KindAudio] || sends[rtc.KindVideo] {
		t.Errorf("a viewer that may talk but not send video: the rewritten offer sends %v", sends)
	}
}

// FuzzViewerOffer: any text is read without panicking, and a rewritten offer never sends.
func FuzzViewerOffer(f *testing.F) {
	api, err := rtc.NewAPI(rtc.APIOptions{LoopbackOnly: true})
	if err != nil {
		f.Fatal(err)
	}
	for _, v := range sdpVariants(f, api) {
		f.Add(v)
		f.Add(strings.ReplaceAll(v, "a=sendonly", "a=sendrecv"))
	}
	f.Fuzz(func(t *testing.T, offer string) {
		munged, _, _, err := viewerOffer(offer, func(string) bool { return false })
		if err != nil {
			return
		}
		sends, _, err := OfferMedia(munged)
		if err != nil {
			t.Fatalf("the rewritten offer does not parse: %v\n%q", err, munged)
		}
		if len(sends) > 0 {
			t.Fatalf("the rewritten offer still sends %v:\n%q", sends, munged)
		}
	})
}

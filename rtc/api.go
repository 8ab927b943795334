package rtc

import (
	"fmt"
	"log/slog"
	"net"
	"strings"
	"time"

	"github.com/pion/ice/v4"
	"github.com/pion/interceptor"
	"github.com/pion/interceptor/pkg/nack"
	"github.com/pion/transport/v5"
	"github.com/pion/webrtc/v4"
)

// APIOptions configure the one webrtc.API a process builds (codecs, interceptors, ICE).
type APIOptions struct {
	// LoopbackOnly gathers ICE candidates on loopback addresses only (tests, single-machine
	// setups). Otherwise every non-loopback interface is used.
	LoopbackOnly bool
	// NAT1To1IPs are public addresses announced as host candidates (1:1 NAT), optional.
	NAT1To1IPs []string
	// UDPPortMin/Max bound the ephemeral UDP ports used for media (0: any).
	UDPPortMin, UDPPortMax uint16
	// ICEUDPMux, when set, carries all media on its one UDP socket (webrtc.NewICEUDPMux);
	// UDPPortMin/Max are then unused. The caller owns and closes it.
	ICEUDPMux ice.UDPMux
	// ICETCPMux, when set, accepts ICE-TCP (passive TCP candidates) for clients without UDP.
	ICETCPMux ice.TCPMux
	// ICETCP lets a client connect to a hub's ICE-TCP port (active TCP candidates) when no
	// UDP path works. Implied by ICETCPMux.
	ICETCP bool
	// Interceptors are registered before pion's defaults, i.e. closest to the network
	// (tests use this to lose packets on purpose).
	Interceptors []interceptor.Factory
	// Net is the network the ICE agent uses (nil: the host's). Tests pass one that can cut a
	// media path on purpose (rtctest.CutNet).
	Net transport.Net
	// Logger receives pion's own log lines (component "pion"); nil: slog.Default().
	Logger *slog.Logger
	// NoNACKResponder leaves out pion's NACK responder, which keeps a copy of the last
	// packets of every stream sent: the caller answers NACKs itself. The hub does, from one
	// cache per published track instead of one per subscriber.
	NoNACKResponder bool
}

// NACKCachePackets is how many sent packets per stream are kept to answer NACKs.
const NACKCachePackets = 256

// H264FmtpConstrainedBaseline is the H.264 profile the device sends (packetization-mode 1).
const H264FmtpConstrainedBaseline = "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f"

// Codecs returns the codecs camagent negotiates, in order of preference.
func Codecs() []webrtc.RTPCodecParameters {
	videoFB := []webrtc.RTCPFeedback{
		{Type: "goog-remb"}, {Type: "ccm", Parameter: "fir"}, {Type: "nack"}, {Type: "nack", Parameter: "pli"},
	}
	return []webrtc.RTPCodecParameters{
		{RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeH264, ClockRate: 90000,
			SDPFmtpLine: H264FmtpConstrainedBaseline, RTCPFeedback: videoFB}, PayloadType: 102},
		{RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeH264, ClockRate: 90000,
			SDPFmtpLine: "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42001f", RTCPFeedback: videoFB}, PayloadType: 104},
		{RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000, RTCPFeedback: videoFB}, PayloadType: 96},
		{RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2,
			SDPFmtpLine: "minptime=10;useinbandfec=1"}, PayloadType: 111},
		// G.711, for peers without Opus (the static payload types of RFC 3551).
		{RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypePCMU, ClockRate: 8000, Channels: 1}, PayloadType: 0},
		{RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypePCMA, ClockRate: 8000, Channels: 1}, PayloadType: 8},
	}
}

// NewAPI builds the webrtc.API: camagent's codecs, pion's default interceptors (NACK
// generation and answering from a packet cache, RTCP reports, TWCC) and ICE settings.
// mDNS is disabled: candidates are plain addresses, and nothing is sent to multicast groups.
func NewAPI(o APIOptions) (*webrtc.API, error) {
	m := &webrtc.MediaEngine{}
	for _, c := range Codecs() {
		typ := webrtc.RTPCodecTypeVideo
		if strings.HasPrefix(c.MimeType, "audio/") {
			typ = webrtc.RTPCodecTypeAudio
		}
		if err := m.RegisterCodec(c, typ); err != nil {
			return nil, fmt.Errorf("rtc: register codec %s: %w", c.MimeType, err)
		}
	}
	ir := &interceptor.Registry{}
	for _, f := range o.Interceptors {
		ir.Add(f)
	}
	// The NACK responder keeps a copy of the last packets of every stream it sends; the hub
	// sends one stream per subscriber, so it answers NACKs from its own per-track cache
	// instead (NoNACKResponder). 256 packets cover about a second of 1 Mbit/s video, enough
	// to repair loss on any path with an RTT under a few hundred milliseconds (pion's default
	// is 1024).
	if o.NoNACKResponder {
		if err := registerInterceptorsWithoutResponder(m, ir); err != nil {
			return nil, fmt.Errorf("rtc: register interceptors: %w", err)
		}
	} else if err := webrtc.RegisterDefaultInterceptorsWithOptions(m, ir,
		webrtc.WithNackResponderOptions(nack.ResponderSize(NACKCachePackets))); err != nil {
		return nil, fmt.Errorf("rtc: register interceptors: %w", err)
	}
	s := webrtc.SettingEngine{LoggerFactory: newPionLoggers(o.Logger)}
	s.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	networks := []webrtc.NetworkType{webrtc.NetworkTypeUDP4, webrtc.NetworkTypeUDP6}
	if o.ICETCPMux != nil {
		s.SetICETCPMux(o.ICETCPMux)
	}
	if o.ICETCPMux != nil || o.ICETCP {
		networks = append(networks, webrtc.NetworkTypeTCP4, webrtc.NetworkTypeTCP6)
	}
	if o.ICEUDPMux != nil {
		s.SetICEUDPMux(o.ICEUDPMux)
	}
	if o.Net != nil {
		s.SetNet(o.Net)
	}
	s.SetNetworkTypes(networks)
	s.SetICETimeouts(3*time.Second, 6*time.Second, time.Second)
	// A browser's host candidates are mDNS names (a page without camera permission), which
	// this API does not resolve, so the only pair it can use is the peer-reflexive one its
	// checks reveal. pion's controlling agent waits 1 s before nominating such a pair, for a
	// better one to appear; but every remote candidate comes with the description (no trickle),
	// so nothing better comes: that second was all of a browser viewer's first subscribe.
	s.SetPrflxAcceptanceMinWait(0)
	if o.LoopbackOnly {
		s.SetIncludeLoopbackCandidate(true)
		s.SetIPFilter(func(ip net.IP) bool { return ip.IsLoopback() })
		s.SetInterfaceFilter(func(name string) bool { return name == "lo" })
	}
	if len(o.NAT1To1IPs) > 0 {
		if err := s.SetICEAddressRewriteRules(webrtc.ICEAddressRewriteRule{
			External: o.NAT1To1IPs, AsCandidateType: webrtc.ICECandidateTypeHost, Mode: webrtc.ICEAddressRewriteReplace,
		}); err != nil {
			return nil, fmt.Errorf("rtc: public addresses: %w", err)
		}
	}
	if o.UDPPortMin != 0 || o.UDPPortMax != 0 {
		if err := s.SetEphemeralUDPPortRange(o.UDPPortMin, o.UDPPortMax); err != nil {
			return nil, fmt.Errorf("rtc: udp port range: %w", err)
		}
	}
	return webrtc.NewAPI(webrtc.WithMediaEngine(m), webrtc.WithInterceptorRegistry(ir), webrtc.WithSettingEngine(s)), nil
}

// registerInterceptorsWithoutResponder registers what pion's defaults do (NACK generator and
// feedback, RTCP reports, simulcast header extensions, stats, TWCC), without the responder.
func registerInterceptorsWithoutResponder(m *webrtc.MediaEngine, ir *interceptor.Registry) error {
	gen, err := nack.NewGeneratorInterceptor()
	if err != nil {
		return err
	}
	m.RegisterFeedback(webrtc.RTCPFeedback{Type: "nack"}, webrtc.RTPCodecTypeVideo)
	m.RegisterFeedback(webrtc.RTCPFeedback{Type: "nack", Parameter: "pli"}, webrtc.RTPCodecTypeVideo)
	ir.Add(gen)
	if err := webrtc.ConfigureRTCPReports(ir); err != nil {
		return err
	}
	if err := webrtc.ConfigureSimulcastExtensionHeaders(m); err != nil {
		return err
	}
	if err := webrtc.ConfigureStatsInterceptor(ir); err != nil {
		return err
	}
	return webrtc.ConfigureTWCCSender(m, ir)
}

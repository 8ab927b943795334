// Package whip serves WHIP (RFC 9725) and WHEP (the IETF WebRTC-HTTP Egress Protocol draft) on
// the hub: outside clients (OBS, GStreamer, go2rtc, MediaMTX, a browser page) publish into a
// channel or watch one with one HTTP POST of an SDP offer, answered 201 Created with the SDP
// answer and a Location to DELETE when done. Routes (docs/whip.md):
//
//	POST /whip/<appId>/<channel>     publish into a channel
//	POST /whep/<appId>/<channel>     watch a channel's published tracks
//	POST /whep/devices/<id>          watch a device (the hub has it join its view channel)
//	DELETE <Location>                end the resource
//
// This package owns the HTTP side and the resources; who may do what is the hub's decision
// (Options.Authorize: a bearer token or a scoped key under docs/security.md), and the channel
// side is hub/sfu's (External: an ordinary user without signalling).
package whip

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net"
	"net/http"
	"strings"
	"sync"

	"github.com/camagent/camagent/hub/sfu"
	"github.com/camagent/camagent/rtc"
)

// Resource kinds: what a POST made.
const (
	KindWHIP = "whip" // a publisher
	KindWHEP = "whep" // a viewer
)

// MaxOfferBytes bounds an SDP offer (a browser's is 3-8 KiB).
const MaxOfferBytes = 64 << 10

// Defaults of the limits.
const (
	DefaultMaxResources  = 500
	DefaultMaxPerAddress = 16
)

// Target is what a request asks for, for Authorize.
type Target struct {
	Kind string // KindWHIP or KindWHEP
	// AppID and Channel name a channel route; Device the device route (/whep/devices/<id>).
	AppID, Channel, Device string
	// Sends lists the media kinds the offer sends ("audio", "video"): a publisher's tracks,
	// a viewer's talk.
	Sends map[string]bool
}

// Grant is what the hub allows a request: the token its user joins the channel with.
type Grant struct {
	AppID, Channel, Token string
	// UID is the uid to join as (0: the token's, or a free one for a wildcard token).
	UID uint32
	// NoTakeover refuses a uid already in the channel rather than taking it over.
	NoTakeover bool
	// Prefer (WHEP) is the user whose tracks a viewer gets first: the device it watches.
	Prefer uint32
	// Ended, when set, runs once the resource has ended (the hub may release the device).
	Ended func()
}

// Error is a refusal with its HTTP status and the hub's error code.
type Error struct {
	Status        int
	Code, Message string
}

func (e *Error) Error() string { return fmt.Sprintf("%d %s: %s", e.Status, e.Code, e.Message) }

// Options configure a Handler.
type Options struct {
	SFU *sfu.Service
	// Authorize decides a request from its credential (an *Error refuses it with its status).
	// It runs after the offer has been read and parsed, before the user joins.
	Authorize func(r *http.Request, t Target) (*Grant, error)
	// ClientAddr names a request's client (the caller resolves trusted proxies); nil: the
	// host of RemoteAddr.
	ClientAddr func(r *http.Request) string
	Logger     *slog.Logger
	// MaxResources caps the live resources (500); MaxPerAddress those of one client address (16).
	MaxResources, MaxPerAddress int
}

// Handler serves the routes and owns the live resources.
type Handler struct {
	opts Options
	log  *slog.Logger

	mu        sync.Mutex
	resources map[string]*resource
	perAddr   map[string]int
	wg        sync.WaitGroup
}

type resource struct {
	kind  string
	path  string // the Location
	owner [32]byte
	addr  string
	ext   *sfu.External
}

// New returns a Handler; register its routes with Register.
func New(o Options) *Handler {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.ClientAddr == nil {
		o.ClientAddr = func(r *http.Request) string {
			if h, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
				return h
			}
			return r.RemoteAddr
		}
	}
	if o.MaxResources <= 0 {
		o.MaxResources = DefaultMaxResources
	}
	if o.MaxPerAddress <= 0 {
		o.MaxPerAddress = DefaultMaxPerAddress
	}
	return &Handler{opts: o, log: o.Logger.With("component", "whip"), resources: map[string]*resource{}, perAddr: map[string]int{}}
}

// Register adds the WHIP and WHEP routes to mux.
func (h *Handler) Register(mux *http.ServeMux) {
	mux.HandleFunc("POST /whip/{app}/{channel}", h.post(KindWHIP))
	mux.HandleFunc("POST /whep/{app}/{channel}", h.post(KindWHEP))
	mux.HandleFunc("POST /whep/devices/{id}", h.post(KindWHEP))
	mux.HandleFunc("DELETE /whip/{app}/{channel}/{rid}", h.delete)
	mux.HandleFunc("DELETE /whep/{app}/{channel}/{rid}", h.delete)
	// No trickle ICE or ICE restart (the offer carries its candidates, the answer the hub's).
	for _, p := range []string{"PATCH /whip/{app}/{channel}/{rid}", "PATCH /whep/{app}/{channel}/{rid}"} {
		mux.HandleFunc(p, func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Allow", "DELETE")
			writeError(w, &Error{http.StatusMethodNotAllowed, "NOT_SUPPORTED", "this server does not support trickle ICE or ICE restarts: DELETE the resource and POST a new offer"})
		})
	}
}

// Len is the number of live resources.
func (h *Handler) Len() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.resources)
}

// Wait waits for the goroutines that watch the resources; they end with their resources (the
// channel service's Close ends every one).
func (h *Handler) Wait() { h.wg.Wait() }

func writeError(w http.ResponseWriter, e *Error) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(e.Status)
	json.NewEncoder(w).Encode(map[string]any{"error": map[string]string{"code": e.Code, "message": e.Message}})
}

// statusOf maps the channel service's refusals to HTTP.
func statusOf(err error) *Error {
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	var pe *rtc.Error
	if !errors.As(err, &pe) {
		return &Error{http.StatusInternalServerError, rtc.CodeInternal, err.Error()}
	}
	status := http.StatusBadRequest
	switch pe.Code {
	case rtc.CodeTokenMissing, rtc.CodeTokenInvalid, rtc.CodeTokenExpired, rtc.CodeTokenNotYetValid:
		status = http.StatusUnauthorized
	case rtc.CodeTokenWrongApp, rtc.CodeTokenWrongChannel, rtc.CodeTokenWrongUID, rtc.CodeNoPrivilege:
		status = http.StatusForbidden
	case rtc.CodeAppUnknown:
		status = http.StatusNotFound
	case rtc.CodeUIDInUse:
		status = http.StatusConflict
	case rtc.CodeRateLimited:
		status = http.StatusTooManyRequests
	case rtc.CodeInternal:
		status = http.StatusInternalServerError
	case rtc.CodeRedirect:
		status = http.StatusTemporaryRedirect // with Location: redirectTo
	}
	return &Error{status, pe.Code, pe.Message}
}

// redirectTo is the same route on the hub that holds the channel, for a REDIRECT refusal
// (307: the client POSTs its offer there again), or "".
func redirectTo(err error, r *http.Request) string {
	var pe *rtc.Error
	if !errors.As(err, &pe) || pe.Code != rtc.CodeRedirect || pe.URL == "" {
		return ""
	}
	return strings.TrimRight(pe.URL, "/") + r.URL.RequestURI()
}

// ownerOf is what a DELETE must present again: the POST's Authorization header, hashed.
func ownerOf(r *http.Request) [32]byte { return sha256.Sum256([]byte(r.Header.Get("Authorization"))) }

// readOffer reads and parses the request's SDP offer, and the kinds it sends.
func readOffer(w http.ResponseWriter, r *http.Request) (string, map[string]bool, *Error) {
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mt != "application/sdp" {
		return "", nil, &Error{http.StatusUnsupportedMediaType, "SDP_ONLY", "the body must be an SDP offer (Content-Type: application/sdp)"}
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxOfferBytes))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return "", nil, &Error{http.StatusRequestEntityTooLarge, rtc.CodeInvalidParams, fmt.Sprintf("the offer exceeds %d bytes", MaxOfferBytes)}
		}
		return "", nil, &Error{http.StatusBadRequest, rtc.CodeInvalidParams, "reading the offer: " + err.Error()}
	}
	sends, receives, err := sfu.OfferMedia(string(body))
	if err != nil {
		return "", nil, &Error{http.StatusBadRequest, rtc.CodeInvalidParams, "the body is not an SDP offer: " + err.Error()}
	}
	if len(sends)+len(receives) == 0 {
		return "", nil, &Error{http.StatusBadRequest, rtc.CodeInvalidParams, "the offer neither sends nor receives audio or video"}
	}
	return string(body), sends, nil
}

// admit counts a new resource of addr, or refuses it.
func (h *Handler) admit(addr string) *Error {
	h.mu.Lock()
	defer h.mu.Unlock()
	switch {
	case len(h.resources) >= h.opts.MaxResources:
		return &Error{http.StatusServiceUnavailable, rtc.CodeRateLimited, "too many WHIP/WHEP sessions on this hub"}
	case h.perAddr[addr] >= h.opts.MaxPerAddress:
		return &Error{http.StatusTooManyRequests, rtc.CodeRateLimited, fmt.Sprintf("at most %d WHIP/WHEP sessions per client address", h.opts.MaxPerAddress)}
	}
	h.perAddr[addr]++ // held until the resource ends, or released by the caller on failure
	return nil
}

func (h *Handler) release(addr string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.perAddr[addr]--; h.perAddr[addr] <= 0 {
		delete(h.perAddr, addr)
	}
}

func (h *Handler) post(kind string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		addr := h.opts.ClientAddr(r)
		t := Target{Kind: kind, AppID: r.PathValue("app"), Channel: r.PathValue("channel"), Device: r.PathValue("id")}
		refuse := func(e *Error) {
			h.log.Info("refused", "kind", kind, "app", t.AppID, "channel", t.Channel, "device", t.Device,
				"status", e.Status, "code", e.Code, "err", e.Message, "remote", addr)
			writeError(w, e)
		}
		if e := h.admit(addr); e != nil {
			refuse(e)
			return
		}
		admitted := true
		defer func() {
			if admitted {
				h.release(addr)
			}
		}()
		offer, sends, e := readOffer(w, r)
		if e != nil {
			refuse(e)
			return
		}
		t.Sends = sends
		if kind == KindWHIP && len(sends) == 0 {
			refuse(&Error{http.StatusBadRequest, rtc.CodeInvalidParams, "a WHIP offer must send audio or video"})
			return
		}
		g, err := h.opts.Authorize(r, t)
		if err != nil {
			refuse(statusOf(err))
			return
		}
		var publishes map[string]bool
		if kind == KindWHIP {
			publishes = sends
		}
		ended := func() {
			if g.Ended != nil {
				g.Ended()
			}
		}
		ext, err := h.opts.SFU.JoinExternal(sfu.ExternalJoin{AppID: g.AppID, Channel: g.Channel, Token: g.Token, UID: g.UID,
			NoTakeover: g.NoTakeover, Addr: addr, Host: r.Host, Publishes: publishes})
		if err != nil {
			ended()
			if to := redirectTo(err, r); to != "" {
				w.Header().Set("Location", to)
			}
			refuse(statusOf(err))
			return
		}
		var answer string
		if kind == KindWHIP {
			answer, err = ext.Publish(offer)
		} else {
			answer, err = ext.View(offer, g.Prefer)
		}
		if err != nil {
			ext.Close()
			ended()
			refuse(statusOf(err))
			return
		}
		rid := randomID()
		res := &resource{kind: kind, path: r.URL.EscapedPath() + "/" + rid, owner: ownerOf(r), addr: addr, ext: ext}
		h.mu.Lock()
		h.resources[rid] = res
		h.mu.Unlock()
		admitted = false // released when the resource ends
		h.wg.Add(1)
		go func() {
			defer h.wg.Done()
			<-ext.Done()
			h.mu.Lock()
			delete(h.resources, rid)
			h.mu.Unlock()
			h.release(addr)
			h.log.Info("resource ended", "kind", kind, "app", g.AppID, "channel", g.Channel, "uid", ext.UID(), "reason", ext.LeaveReason())
			ended()
		}()
		h.log.Info("resource created", "kind", kind, "app", g.AppID, "channel", g.Channel, "uid", ext.UID(), "remote", addr)
		w.Header().Set("Location", res.path)
		w.Header().Set("Content-Type", "application/sdp")
		w.Header().Set("Cache-Control", "no-store")
		w.WriteHeader(http.StatusCreated)
		io.WriteString(w, answer)
	}
}

// delete ends a resource: its URL (an unguessable id) and the POST's Authorization again.
func (h *Handler) delete(w http.ResponseWriter, r *http.Request) {
	rid := r.PathValue("rid")
	h.mu.Lock()
	res := h.resources[rid]
	h.mu.Unlock()
	owner := ownerOf(r)
	if res == nil || res.path != r.URL.EscapedPath() || subtle.ConstantTimeCompare(owner[:], res.owner[:]) != 1 {
		h.log.Info("refused", "kind", "delete", "status", http.StatusNotFound, "remote", h.opts.ClientAddr(r))
		writeError(w, &Error{http.StatusNotFound, "NO_SUCH_RESOURCE", "no such WHIP/WHEP resource (or not with this Authorization)"})
		return
	}
	res.ext.Close()
	w.WriteHeader(http.StatusOK)
}

func randomID() string {
	b := make([]byte, 16)
	rand.Read(b) // never fails (Go 1.24+)
	return hex.EncodeToString(b)
}

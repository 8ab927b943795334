package config

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"sort"
	"strings"
)

// Logger builds a program's logger: text lines with a level per component (the "component"
// attribute: logLevels {sfu: debug}, others at level; "" is info). Under systemd (journal true, from
// $JOURNAL_STREAM) lines carry no time stamp, since journald adds its own.
func Logger(w io.Writer, level string, levels map[string]string, journal bool) (*slog.Logger, error) {
	var def slog.Level // "" is info
	if level == "" {
		level = "info"
	}
	if err := def.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("logLevel: %q (want debug, info, warn or error)", level)
	}
	min := def
	per := map[string]slog.Level{}
	names := make([]string, 0, len(levels))
	for k := range levels {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		var l slog.Level
		if err := l.UnmarshalText([]byte(levels[k])); err != nil {
			return nil, fmt.Errorf("logLevels.%s: %q (want debug, info, warn or error)", k, levels[k])
		}
		per[k] = l
		min = minLevel(min, l)
	}
	opts := &slog.HandlerOptions{Level: min}
	if journal {
		opts.ReplaceAttr = func(groups []string, a slog.Attr) slog.Attr {
			if len(groups) == 0 && a.Key == slog.TimeKey {
				return slog.Attr{}
			}
			return a
		}
	}
	return slog.New(&componentHandler{base: slog.NewTextHandler(w, opts), def: def, per: per, level: def}), nil
}

func minLevel(a, b slog.Level) slog.Level {
	if a < b {
		return a
	}
	return b
}

// componentHandler filters records by the level of their component, and keeps one
// "component" per line: a logger derived from another with a component of its own (the
// agent's logger handed to device/alsa, which adds component=alsa) names the new
// component in the old one's place instead of printing both.
type componentHandler struct {
	base    slog.Handler // the text handler, before any WithAttrs
	attrs   []slog.Attr  // every WithAttrs so far, component replaced in place
	grouped bool         // WithGroup was called: attrs are no longer merged
	inner   slog.Handler // base with attrs (nil: base)
	def     slog.Level
	per     map[string]slog.Level
	level   slog.Level // of the component set by WithAttrs, or def
	fixed   bool       // a component was set by WithAttrs
}

func (h *componentHandler) handler() slog.Handler {
	if h.inner != nil {
		return h.inner
	}
	return h.base
}

func (h *componentHandler) Enabled(ctx context.Context, l slog.Level) bool {
	if h.fixed {
		return l >= h.level && h.handler().Enabled(ctx, l)
	}
	// The component may still come with the record: let the most verbose level through.
	return h.handler().Enabled(ctx, l)
}

func (h *componentHandler) Handle(ctx context.Context, r slog.Record) error {
	if !h.fixed && len(h.per) > 0 {
		want := h.def
		r.Attrs(func(a slog.Attr) bool {
			if a.Key == "component" {
				if l, ok := h.per[strings.ToLower(a.Value.String())]; ok {
					want = l
				}
				return false
			}
			return true
		})
		if r.Level < want {
			return nil
		}
	}
	return h.handler().Handle(ctx, r)
}

func (h *componentHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	c := *h
	replaced := false
	for _, a := range attrs {
		if a.Key != "component" {
			continue
		}
		c.fixed = true
		c.level = h.def
		if l, ok := h.per[strings.ToLower(a.Value.String())]; ok {
			c.level = l
		}
		if h.fixed && !h.grouped {
			replaced = true
		}
	}
	if !replaced {
		c.attrs = append(h.attrs[:len(h.attrs):len(h.attrs)], attrs...)
		c.inner = h.handler().WithAttrs(attrs)
		return &c
	}
	// Rebuild from the base so that the earlier component's value is replaced where it stood.
	merged := append([]slog.Attr(nil), h.attrs...)
	for _, a := range attrs {
		if a.Key == "component" {
			if i := indexOf(merged, "component"); i >= 0 {
				merged[i] = a
				continue
			}
		}
		merged = append(merged, a)
	}
	c.attrs = merged
	c.inner = h.base.WithAttrs(merged)
	return &c
}

func indexOf(attrs []slog.Attr, key string) int {
	for i, a := range attrs {
		if a.Key == key {
			return i
		}
	}
	return -1
}

func (h *componentHandler) WithGroup(name string) slog.Handler {
	c := *h
	c.grouped = true
	c.inner = h.handler().WithGroup(name)
	return &c
}

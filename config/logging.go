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
	var h slog.Handler = slog.NewTextHandler(w, opts)
	if len(per) > 0 {
		h = &componentHandler{inner: h, def: def, per: per, level: def}
	}
	return slog.New(h), nil
}

func minLevel(a, b slog.Level) slog.Level {
	if a < b {
		return a
	}
	return b
}

// componentHandler filters records by the level of their component.
type componentHandler struct {
	inner slog.Handler
	def   slog.Level
	per   map[string]slog.Level
	level slog.Level // of the component set by WithAttrs, or def
	fixed bool       // a component was set by WithAttrs
}

func (h *componentHandler) Enabled(ctx context.Context, l slog.Level) bool {
	if h.fixed {
		return l >= h.level && h.inner.Enabled(ctx, l)
	}
	// The component may still come with the record: let the most verbose level through.
	return h.inner.Enabled(ctx, l)
}

func (h *componentHandler) Handle(ctx context.Context, r slog.Record) error {
	if !h.fixed {
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
	return h.inner.Handle(ctx, r)
}

func (h *componentHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	c := *h
	c.inner = h.inner.WithAttrs(attrs)
	for _, a := range attrs {
		if a.Key == "component" {
			c.fixed = true
			c.level = h.def
			if l, ok := h.per[strings.ToLower(a.Value.String())]; ok {
				c.level = l
			}
		}
	}
	return &c
}

func (h *componentHandler) WithGroup(name string) slog.Handler {
	c := *h
	c.inner = h.inner.WithGroup(name)
	return &c
}

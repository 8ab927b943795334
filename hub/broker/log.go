package broker

import (
	"context"
	"log/slog"
)

// quietHandler passes mochi's records to our handler one step quieter:
// mochi logs routine events (hooks added, listeners attached, server started
// and stopped) at Info, which are Debug for us.
type quietHandler struct{ h slog.Handler }

func (q quietHandler) Enabled(ctx context.Context, l slog.Level) bool {
	if l <= slog.LevelInfo {
		l = slog.LevelDebug
	}
	return q.h.Enabled(ctx, l)
}

func (q quietHandler) Handle(ctx context.Context, r slog.Record) error {
	level := r.Level
	if level <= slog.LevelInfo {
		level = slog.LevelDebug
	}
	if !q.h.Enabled(ctx, level) {
		return nil
	}
	out := slog.NewRecord(r.Time, level, r.Message, r.PC)
	r.Attrs(func(a slog.Attr) bool {
		out.AddAttrs(a)
		return true
	})
	return q.h.Handle(ctx, out)
}

func (q quietHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return quietHandler{q.h.WithAttrs(attrs)}
}

func (q quietHandler) WithGroup(name string) slog.Handler {
	return quietHandler{q.h.WithGroup(name)}
}

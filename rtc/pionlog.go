package rtc

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/pion/logging"
)

// pionLoggers routes pion's leveled loggers into the program's slog logger, under the
// component "pion" with pion's scope ("ice", "pc", "dtls"…) as an attribute, so that its lines
// look like every other, go where the others go, and obey logLevels {pion: debug}.
//
// pion is chatty where we are not: its Info and Warn lines come with every connection in
// normal operation ("Failed to ping without candidate pairs", a closed stream at hang-up), so
// they are debug lines here; its errors stay errors.
type pionLoggers struct{ log *slog.Logger }

func newPionLoggers(l *slog.Logger) pionLoggers {
	if l == nil {
		l = slog.Default()
	}
	return pionLoggers{log: l.With("component", "pion")}
}

func (f pionLoggers) NewLogger(scope string) logging.LeveledLogger {
	return pionLogger{log: f.log.With("scope", scope)}
}

// pionLogger is one pion scope's logger.
type pionLogger struct{ log *slog.Logger }

// levelTrace is below debug: shown only by a handler set lower than debug.
const levelTrace = slog.LevelDebug - 4

func (p pionLogger) emit(level slog.Level, msg string) {
	p.log.Log(context.Background(), level, msg)
}

func (p pionLogger) emitf(level slog.Level, format string, args ...any) {
	if !p.log.Enabled(context.Background(), level) {
		return // no formatting for lines nobody reads
	}
	p.log.Log(context.Background(), level, fmt.Sprintf(format, args...))
}

func (p pionLogger) Trace(msg string)                  { p.emit(levelTrace, msg) }
func (p pionLogger) Tracef(format string, args ...any) { p.emitf(levelTrace, format, args...) }
func (p pionLogger) Debug(msg string)                  { p.emit(slog.LevelDebug, msg) }
func (p pionLogger) Debugf(format string, args ...any) { p.emitf(slog.LevelDebug, format, args...) }
func (p pionLogger) Info(msg string)                   { p.emit(slog.LevelDebug, msg) }
func (p pionLogger) Infof(format string, args ...any)  { p.emitf(slog.LevelDebug, format, args...) }
func (p pionLogger) Warn(msg string)                   { p.emit(slog.LevelDebug, msg) }
func (p pionLogger) Warnf(format string, args ...any)  { p.emitf(slog.LevelDebug, format, args...) }
func (p pionLogger) Error(msg string)                  { p.emit(slog.LevelError, msg) }
func (p pionLogger) Errorf(format string, args ...any) { p.emitf(slog.LevelError, format, args...) }

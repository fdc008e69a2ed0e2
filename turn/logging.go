package turn

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/pion/logging"
)

// pionLogs adapts pion's leveled loggers to slog. Everything pion says goes
// to the Debug level: its warnings and errors are about single packets from
// remote peers (a bad nonce, a wrong password, a truncated datagram), which
// anyone on the Internet can trigger at will, so they must not flood the
// operator's log. pion never sees the shared secret (only per-username keys).
type pionLogs struct{ log *slog.Logger }

func (f pionLogs) NewLogger(scope string) logging.LeveledLogger {
	return pionLogger{f.log.With("pion", scope)}
}

type pionLogger struct{ log *slog.Logger }

func (l pionLogger) print(pionLevel, msg string) {
	l.log.Debug(msg, "pion_level", pionLevel)
}

func (l pionLogger) printf(pionLevel, format string, args ...any) {
	if l.log.Enabled(context.Background(), slog.LevelDebug) {
		l.print(pionLevel, fmt.Sprintf(format, args...))
	}
}

func (l pionLogger) Trace(string)                   {}
func (l pionLogger) Tracef(string, ...any)          {}
func (l pionLogger) Debug(msg string)               { l.print("debug", msg) }
func (l pionLogger) Debugf(format string, a ...any) { l.printf("debug", format, a...) }
func (l pionLogger) Info(msg string)                { l.print("info", msg) }
func (l pionLogger) Infof(format string, a ...any)  { l.printf("info", format, a...) }
func (l pionLogger) Warn(msg string)                { l.print("warn", msg) }
func (l pionLogger) Warnf(format string, a ...any)  { l.printf("warn", format, a...) }
func (l pionLogger) Error(msg string)               { l.print("error", msg) }
func (l pionLogger) Errorf(format string, a ...any) { l.printf("error", format, a...) }

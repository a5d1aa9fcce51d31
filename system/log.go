package system

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/mattn/go-isatty"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/rs/zerolog"
)

// NewLogger builds the gateway's logger: level from config, overridden by the LOG_LEVEL environment variable
// (so an operator can turn on debug without editing the file), format "console" (human, coloured on a terminal)
// or "json". Logs go to w (stderr in the daemon); the console sink writes data to stdout, so the two never mix.
func NewLogger(w io.Writer, level, format string) (zerolog.Logger, error) {
	if env := os.Getenv("LOG_LEVEL"); env != "" {
		level = env
	}
	if level == "" {
		level = "info"
	}
	lvl, err := zerolog.ParseLevel(strings.ToLower(level))
	if err != nil || lvl == zerolog.NoLevel {
		return zerolog.Nop(), fmt.Errorf("log level %q: want trace, debug, info, warn or error", level)
	}
	// Milliseconds in both formats: a supervisor's backoff and a device's poll are read off these timestamps.
	zerolog.TimeFieldFormat = time.RFC3339Nano
	if format == "console" || format == "" {
		color := false
		if f, ok := w.(*os.File); ok {
			color = isatty.IsTerminal(f.Fd())
		}
		w = zerolog.ConsoleWriter{Out: w, NoColor: !color, TimeFormat: "15:04:05.000"}
	} else if format != "json" {
		return zerolog.Nop(), fmt.Errorf("log format %q: want console or json", format)
	}
	return zerolog.New(w).Level(lvl).With().Timestamp().Logger(), nil
}

// slogHandler routes protoactor's slog output into zerolog, so the daemon has one logger and one format.
type slogHandler struct {
	log   zerolog.Logger
	attrs []slog.Attr
	group string
}

var _ slog.Handler = (*slogHandler)(nil)

func (h *slogHandler) Enabled(_ context.Context, l slog.Level) bool {
	return h.log.GetLevel() <= zerologLevel(l)
}

func (h *slogHandler) Handle(_ context.Context, r slog.Record) error {
	e := h.log.WithLevel(zerologLevel(r.Level))
	add := func(a slog.Attr) bool {
		key := a.Key
		if h.group != "" {
			key = h.group + "." + key
		}
		e = e.Interface(key, a.Value.Resolve().Any())
		return true
	}
	for _, a := range h.attrs {
		add(a)
	}
	r.Attrs(add)
	e.Msg(r.Message)
	return nil
}

func (h *slogHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	n := *h
	n.attrs = append(append([]slog.Attr(nil), h.attrs...), attrs...)
	return &n
}

func (h *slogHandler) WithGroup(name string) slog.Handler {
	n := *h
	if n.group != "" {
		name = n.group + "." + name
	}
	n.group = name
	return &n
}

func zerologLevel(l slog.Level) zerolog.Level {
	switch {
	case l >= slog.LevelError:
		return zerolog.ErrorLevel
	case l >= slog.LevelWarn:
		return zerolog.WarnLevel
	case l >= slog.LevelInfo:
		// protoactor logs every actor restart and system start at info; they are debugging detail for an
		// operator, who sees the supervisor's own restart and failure logs.
		return zerolog.DebugLevel
	default:
		return zerolog.TraceLevel
	}
}

// actorLogger is the protoactor logger factory option that routes its logs into log.
func actorLogger(log zerolog.Logger) actor.ConfigOption {
	return actor.WithLoggerFactory(func(*actor.ActorSystem) *slog.Logger {
		return slog.New(&slogHandler{log: log.With().Str("component", "protoactor").Logger()})
	})
}

// natsLogger routes the embedded nats-server's log into zerolog.
type natsLogger struct{ log zerolog.Logger }

var _ server.Logger = natsLogger{}

func (l natsLogger) Noticef(format string, v ...any) { l.log.Debug().Msgf(format, v...) } // start-up chatter; the runtime logs the address itself
func (l natsLogger) Warnf(format string, v ...any)   { l.log.Warn().Msgf(format, v...) }
func (l natsLogger) Fatalf(format string, v ...any)  { l.log.Error().Msgf(format, v...) }
func (l natsLogger) Errorf(format string, v ...any)  { l.log.Error().Msgf(format, v...) }
func (l natsLogger) Debugf(format string, v ...any)  { l.log.Debug().Msgf(format, v...) }
func (l natsLogger) Tracef(format string, v ...any)  { l.log.Trace().Msgf(format, v...) }

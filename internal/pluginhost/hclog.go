package pluginhost

import (
	"bytes"
	"context"
	"io"
	"log"
	"log/slog"
	"sync"

	"github.com/hashicorp/go-hclog"
)

// slogAdapter lets go-plugin log through the server's slog.Logger. go-plugin only speaks hclog
// and hclog ships no slog bridge, so this small one is ours. Plugin stderr lines in hclog JSON
// arrive here with their levels intact.
type slogAdapter struct {
	l    *slog.Logger
	name string
	args []any
}

func newHCLogger(l *slog.Logger) hclog.Logger { return &slogAdapter{l: l} }

func toSlogLevel(level hclog.Level) slog.Level {
	switch level {
	case hclog.Trace:
		return slog.LevelDebug - 4
	case hclog.Debug:
		return slog.LevelDebug
	case hclog.Warn:
		return slog.LevelWarn
	case hclog.Error:
		return slog.LevelError
	default:
		return slog.LevelInfo
	}
}

func (a *slogAdapter) Log(level hclog.Level, msg string, args ...any) {
	if level == hclog.Off {
		return
	}
	l := a.l
	if a.name != "" {
		l = l.With("plugin_logger", a.name)
	}
	l.Log(context.Background(), toSlogLevel(level), msg, append(append([]any{}, a.args...), args...)...)
}

func (a *slogAdapter) Trace(msg string, args ...any) { a.Log(hclog.Trace, msg, args...) }
func (a *slogAdapter) Debug(msg string, args ...any) { a.Log(hclog.Debug, msg, args...) }
func (a *slogAdapter) Info(msg string, args ...any)  { a.Log(hclog.Info, msg, args...) }
func (a *slogAdapter) Warn(msg string, args ...any)  { a.Log(hclog.Warn, msg, args...) }
func (a *slogAdapter) Error(msg string, args ...any) { a.Log(hclog.Error, msg, args...) }

func (a *slogAdapter) enabled(level hclog.Level) bool {
	return a.l.Enabled(context.Background(), toSlogLevel(level))
}
func (a *slogAdapter) IsTrace() bool { return a.enabled(hclog.Trace) }
func (a *slogAdapter) IsDebug() bool { return a.enabled(hclog.Debug) }
func (a *slogAdapter) IsInfo() bool  { return a.enabled(hclog.Info) }
func (a *slogAdapter) IsWarn() bool  { return a.enabled(hclog.Warn) }
func (a *slogAdapter) IsError() bool { return a.enabled(hclog.Error) }

func (a *slogAdapter) ImpliedArgs() []any { return a.args }
func (a *slogAdapter) With(args ...any) hclog.Logger {
	return &slogAdapter{l: a.l, name: a.name, args: append(append([]any{}, a.args...), args...)}
}
func (a *slogAdapter) Name() string { return a.name }
func (a *slogAdapter) Named(name string) hclog.Logger {
	n := name
	if a.name != "" {
		n = a.name + "." + name
	}
	return &slogAdapter{l: a.l, name: n, args: a.args}
}
func (a *slogAdapter) ResetNamed(name string) hclog.Logger {
	return &slogAdapter{l: a.l, name: name, args: a.args}
}
func (a *slogAdapter) SetLevel(hclog.Level) {}
func (a *slogAdapter) GetLevel() hclog.Level {
	for _, lv := range []hclog.Level{hclog.Trace, hclog.Debug, hclog.Info, hclog.Warn} {
		if a.enabled(lv) {
			return lv
		}
	}
	return hclog.Error
}
func (a *slogAdapter) StandardLogger(*hclog.StandardLoggerOptions) *log.Logger {
	return slog.NewLogLogger(a.l.Handler(), slog.LevelInfo)
}
func (a *slogAdapter) StandardWriter(*hclog.StandardLoggerOptions) io.Writer {
	return a.StandardLogger(nil).Writer()
}

var _ hclog.Logger = (*slogAdapter)(nil)

// lineLogger logs what a plugin writes to os.Stdout or os.Stderr after the handshake (go-plugin
// forwards it over its stdio stream), one record per line, so nothing a plugin prints is lost.
type lineLogger struct {
	l      *slog.Logger
	stream string
	buf    []byte
	mu     sync.Mutex
}

func (w *lineLogger) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf = append(w.buf, p...)
	for {
		i := bytes.IndexByte(w.buf, '\n')
		if i < 0 {
			break
		}
		w.l.Debug("plugin output", "stream", w.stream, "line", string(bytes.TrimRight(w.buf[:i], "\r")))
		w.buf = w.buf[i+1:]
	}
	if len(w.buf) > 64<<10 {
		w.l.Debug("plugin output", "stream", w.stream, "line", string(w.buf))
		w.buf = w.buf[:0]
	}
	return len(p), nil
}

package pluginhost

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log"
	"log/slog"
	"slices"
	"strings"
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
	// mute is the name of the sub-logger go-plugin parses the plugin's stderr for: that one is
	// off, so go-plugin never parses it (its parser panics, taking the server down, on a line
	// such as {"@message":42}); stderrLogger reads the lines instead.
	mute string
	off  bool
}

// newHCLogger returns go-plugin's logger for a provider whose executable's base name is exe.
func newHCLogger(l *slog.Logger, exe string) hclog.Logger { return &slogAdapter{l: l, mute: exe} }

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
	if level == hclog.Off || a.off {
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
	return !a.off && a.l.Enabled(context.Background(), toSlogLevel(level))
}
func (a *slogAdapter) IsTrace() bool { return a.enabled(hclog.Trace) }
func (a *slogAdapter) IsDebug() bool { return a.enabled(hclog.Debug) }
func (a *slogAdapter) IsInfo() bool  { return a.enabled(hclog.Info) }
func (a *slogAdapter) IsWarn() bool  { return a.enabled(hclog.Warn) }
func (a *slogAdapter) IsError() bool { return a.enabled(hclog.Error) }

func (a *slogAdapter) ImpliedArgs() []any { return a.args }
func (a *slogAdapter) With(args ...any) hclog.Logger {
	return &slogAdapter{l: a.l, name: a.name, args: append(append([]any{}, a.args...), args...), mute: a.mute, off: a.off}
}
func (a *slogAdapter) Name() string { return a.name }
func (a *slogAdapter) Named(name string) hclog.Logger {
	n := name
	if a.name != "" {
		n = a.name + "." + name
	}
	return &slogAdapter{l: a.l, name: n, args: a.args, mute: a.mute, off: a.off || (a.mute != "" && name == a.mute)}
}
func (a *slogAdapter) ResetNamed(name string) hclog.Logger {
	return &slogAdapter{l: a.l, name: name, args: a.args, mute: a.mute, off: a.off || (a.mute != "" && name == a.mute)}
}
func (a *slogAdapter) SetLevel(hclog.Level) {}
func (a *slogAdapter) GetLevel() hclog.Level {
	if a.off {
		return hclog.Off
	}
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

// stderrLogger logs a provider's stderr, one record per line: an hclog JSON line with its level,
// message and fields, any other line at debug level (or at the level of a leading "[ERROR]",
// "[WARN]", "[INFO]", "[DEBUG]" or "[TRACE]", as go-plugin reads them). Unlike go-plugin's own
// parser, it takes any JSON: a message or level that is not a string, a timestamp in another
// format, become text.
type stderrLogger struct {
	l   *slog.Logger
	buf []byte
	mu  sync.Mutex
}

// maxStderrFields bounds the fields taken from one JSON line.
const maxStderrFields = 32

func (w *stderrLogger) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf = append(w.buf, p...)
	for {
		i := bytes.IndexByte(w.buf, '\n')
		if i < 0 {
			break
		}
		w.line(bytes.TrimRight(w.buf[:i], "\r"))
		w.buf = w.buf[i+1:]
	}
	if len(w.buf) > 64<<10 {
		w.line(w.buf)
		w.buf = nil
	}
	return len(p), nil
}

func (w *stderrLogger) line(b []byte) {
	if len(bytes.TrimSpace(b)) == 0 {
		return
	}
	var entry map[string]any
	if b[0] != '{' || json.Unmarshal(b, &entry) != nil {
		level, msg := slog.LevelDebug, string(b)
		for prefix, lv := range map[string]hclog.Level{"[TRACE]": hclog.Trace, "[DEBUG]": hclog.Debug, "[INFO]": hclog.Info, "[WARN]": hclog.Warn, "[ERROR]": hclog.Error} {
			if rest, ok := strings.CutPrefix(msg, prefix); ok {
				level, msg = toSlogLevel(lv), strings.TrimSpace(rest)
				break
			}
		}
		w.l.Log(context.Background(), level, msg, "stream", "stderr")
		return
	}
	text := func(v any) string {
		if s, ok := v.(string); ok {
			return s
		}
		out, _ := json.Marshal(v)
		return string(out)
	}
	level := slog.LevelInfo
	if v, ok := entry["@level"]; ok {
		level = toSlogLevel(hclog.LevelFromString(text(v)))
		if hclog.LevelFromString(text(v)) == hclog.NoLevel {
			level = slog.LevelInfo
		}
	}
	msg := text(entry["@message"])
	args := []any{"stream", "stderr"}
	keys := make([]string, 0, len(entry))
	for k := range entry {
		if k != "@level" && k != "@message" && k != "@timestamp" && k != "@module" && k != "@caller" {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	for i, k := range keys {
		if i == maxStderrFields {
			args = append(args, "fields_dropped", len(keys)-i)
			break
		}
		args = append(args, k, entry[k])
	}
	w.l.Log(context.Background(), level, msg, args...)
}

package member

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
)

// logWriter receives the lines serf and memberlist print through their own
// log.Logger (built on Config.LogOutput, so this package need not import
// log) and passes them to slog. A line looks like
//
//	2024/05/01 10:00:00 [WARN] memberlist: Refuting a suspect message (from: n2)
//
// The bracketed level picks the slog level: WARN and ERR keep theirs,
// everything else (TRACE, DEBUG, and INFO, which is per-event chatter that
// Serf logs itself at Info) goes to Debug. The date is dropped (slog has its
// own) and the "serf:"/"memberlist:" prefix becomes the component attribute.
// Safe for concurrent use: it keeps no state.
type logWriter struct {
	log *slog.Logger
}

func (w *logWriter) Write(p []byte) (int, error) {
	for line := range bytes.Lines(p) {
		line = bytes.TrimRight(line, "\r\n")
		if len(line) == 0 {
			continue
		}
		level, component, msg := parseLogLine(string(line))
		w.log.Log(context.Background(), level, msg, "component", component)
	}
	return len(p), nil
}

// parseLogLine splits a serf or memberlist log line into level, component
// and message.
func parseLogLine(line string) (slog.Level, string, string) {
	level := slog.LevelDebug
	msg := line
	if i := strings.IndexByte(line, '['); i >= 0 {
		if j := strings.IndexByte(line[i:], ']'); j > 0 {
			known := true
			switch line[i+1 : i+j] {
			case "TRACE", "DEBUG", "INFO":
				level = slog.LevelDebug
			case "WARN", "WARNING":
				level = slog.LevelWarn
			case "ERR", "ERROR":
				level = slog.LevelError
			default:
				known = false
			}
			if known {
				msg = strings.TrimSpace(line[i+j+1:])
			}
		}
	}
	component := "serf"
	for _, c := range []string{"memberlist", "serf"} {
		if rest, ok := strings.CutPrefix(msg, c+": "); ok {
			component, msg = c, rest
			break
		}
	}
	return level, component, msg
}

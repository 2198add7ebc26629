package main

import (
	"fmt"
	"io"
	"log/slog"
	"strings"
)

// reportFatal writes the error a command ends with. `serve --log-format
// json` gets one JSON log record, like every other line of its log, even
// when the error came before the logger existed (a bad flag or config):
// a log shipper parsing JSON must not drop the one line that says why the
// node did not start. Everything else gets "mailarray: ERR".
func reportFatal(w io.Writer, cmd string, args []string, err error) {
	if cmd == "serve" && logFormatArg(args) == "json" {
		slog.New(slog.NewJSONHandler(w, nil)).Error("mailarray: exiting", "err", err.Error())
		return
	}
	fmt.Fprintln(w, "mailarray:", err)
}

// logFormatArg finds --log-format in args as the flag package reads it
// (-log-format or --log-format, "=value" or the next argument), without
// parsing the rest: the rest may be what failed. It stops at "--". A
// non-flag argument is passed over, not a stop: without the flag set it
// cannot tell a value ("--config FILE", as the shipped unit starts the
// node) from a stray argument, and serve takes no positional ones.
func logFormatArg(args []string) string {
	format := ""
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			break
		}
		if !strings.HasPrefix(a, "-") {
			continue
		}
		name, value, hasValue := strings.Cut(strings.TrimLeft(a, "-"), "=")
		if name != "log-format" {
			continue
		}
		if !hasValue && i+1 < len(args) {
			i++
			value = args[i]
		}
		format = value
	}
	return format
}

// helpArg reports whether args ask for the flags' usage (-h, -help).
func helpArg(args []string) bool {
	for _, a := range args {
		if a == "--" {
			break
		}
		switch strings.TrimLeft(a, "-") {
		case "h", "help":
			return strings.HasPrefix(a, "-")
		}
	}
	return false
}

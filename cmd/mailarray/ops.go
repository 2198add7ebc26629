package main

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"mailarray/node/catalog"
	"mailarray/node/pipeline"
)

// spam add|del|list DOMAIN --db FILE: edits the spam database file, which
// every node configured with it reloads on change.
func spam(args []string) error {
	if len(args) == 0 {
		return errors.New("usage: mailarray spam add|del|list [DOMAIN] --db FILE")
	}
	verb := args[0]
	fs := flag.NewFlagSet("spam "+verb, flag.ContinueOnError)
	db := fs.String("db", "spam.db", "spam database file (pipeline.spam-db of the nodes)")
	pos, err := parseArgs(fs, args[1:])
	if err != nil {
		return err
	}
	switch verb {
	case "add", "del":
		if len(pos) != 1 {
			return fmt.Errorf("usage: mailarray spam %s DOMAIN --db FILE", verb)
		}
		if verb == "add" {
			return pipeline.AddDomain(*db, pos[0])
		}
		return pipeline.DelDomain(*db, pos[0])
	case "list":
		ds, err := pipeline.ListDomains(*db)
		if err != nil {
			return err
		}
		for _, d := range ds {
			fmt.Println(d)
		}
		return nil
	}
	return fmt.Errorf("spam: unknown verb %q (add, del, list)", verb)
}

// adminTokenEnv names the variable the operator commands take the
// node's admin token from (serve --admin-token), kept out of argv.
const adminTokenEnv = "MAILARRAY_ADMIN_TOKEN"

func setAdminToken(req *http.Request) {
	if tok := os.Getenv(adminTokenEnv); tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
}

func httpDo(method, addr, path string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, "http://"+addr+path, nil)
	if err != nil {
		return nil, err
	}
	setAdminToken(req)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode/100 != 2 {
		return nil, fmt.Errorf("%s: %s", resp.Status, strings.TrimSpace(string(b)))
	}
	return b, nil
}

// quarantine list|show ID|release ID|delete ID --addr HTTP: operates a
// node's quarantine over its --http address.
func quarantine(args []string) error {
	if len(args) == 0 {
		return errors.New("usage: mailarray quarantine list|show ID [--raw]|release ID|delete ID [--addr HOST:PORT]")
	}
	verb := args[0]
	fs := flag.NewFlagSet("quarantine "+verb, flag.ContinueOnError)
	addr := fs.String("addr", "127.0.0.1:8080", "a node's --http address")
	raw := fs.Bool("raw", false, "show: the message's bytes exactly (for a file), control characters included")
	pos, err := parseArgs(fs, args[1:])
	if err != nil {
		return err
	}
	switch verb {
	case "list":
		b, err := httpDo(http.MethodGet, *addr, "/v1/quarantine")
		if err != nil {
			return err
		}
		var es []catalog.Entry
		if err := json.Unmarshal(b, &es); err != nil {
			return err
		}
		tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "ID\tMAILBOX\tSIZE\tRECEIVED\tWHY")
		for _, e := range es {
			why := ""
			if len(e.Trace) > 0 {
				why = e.Trace[len(e.Trace)-1]
				for _, t := range e.Trace {
					if strings.Contains(t, "quarantine") {
						why = t
					}
				}
			}
			fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\n", e.ID, strings.TrimPrefix(e.Mailbox, "quarantine:"), e.Size,
				time.Unix(0, e.Received).UTC().Format(time.RFC3339), why)
		}
		return tw.Flush()
	case "show":
		if len(pos) != 1 {
			return errors.New("usage: mailarray quarantine show ID [--raw]")
		}
		b, err := httpDo(http.MethodGet, *addr, "/v1/quarantine/"+url.PathEscape(pos[0]))
		if err != nil {
			return err
		}
		if !*raw {
			// Held mail is suspect: its escape sequences must not drive
			// the operator's terminal.
			b = escapeControls(b)
		}
		_, err = os.Stdout.Write(b)
		return err
	case "release", "delete":
		if len(pos) != 1 {
			return fmt.Errorf("usage: mailarray quarantine %s ID", verb)
		}
		id := url.PathEscape(pos[0])
		var err error
		if verb == "release" {
			_, err = httpDo(http.MethodPost, *addr, "/v1/quarantine/"+id+"/release")
		} else {
			_, err = httpDo(http.MethodDelete, *addr, "/v1/quarantine/"+id)
		}
		if err == nil {
			fmt.Printf("%s: %s\n", pos[0], map[string]string{"release": "released", "delete": "deleted"}[verb])
		}
		return err
	}
	return fmt.Errorf("quarantine: unknown verb %q (list, show, release, delete)", verb)
}

// escapeControls writes every control character but tab, CR and LF, and
// DEL, as \xNN, so that a message shown on a terminal cannot drive it.
func escapeControls(b []byte) []byte {
	out := make([]byte, 0, len(b))
	for _, c := range b {
		if (c < 0x20 && c != '\t' && c != '\r' && c != '\n') || c == 0x7f {
			out = fmt.Appendf(out, "\\x%02x", c)
			continue
		}
		out = append(out, c)
	}
	return out
}

// trace ID --addr HTTP: what happened to a message.
func trace(args []string) error {
	fs := flag.NewFlagSet("trace", flag.ContinueOnError)
	addr := fs.String("addr", "127.0.0.1:8080", "a node's --http address")
	asJSON := fs.Bool("json", false, "print JSON")
	pos, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return errors.New("usage: mailarray trace ID [--addr HOST:PORT]")
	}
	b, err := httpDo(http.MethodGet, *addr, "/v1/trace/"+url.PathEscape(pos[0]))
	if err != nil {
		return err
	}
	if *asJSON {
		_, err := os.Stdout.Write(b)
		return err
	}
	var es []catalog.Entry
	if err := json.Unmarshal(b, &es); err != nil {
		return err
	}
	for _, e := range es {
		fmt.Printf("message %s\n  mailbox   %s\n  state     %s (version %d)\n  size      %d bytes, sha256 %s\n  received  %s\n  copies on %s\n",
			e.ID, e.Mailbox, e.State, e.Version, e.Size, hex.EncodeToString(e.Sum[:8])+"…",
			time.Unix(0, e.Received).UTC().Format(time.RFC3339Nano), strings.Join(e.Locations, ", "))
		for _, t := range e.Trace {
			fmt.Printf("  pipeline  %s\n", t)
		}
	}
	return nil
}

// parseArgs parses flags that may come before or after the positional
// arguments (`spam add DOMAIN --db FILE`), returning the positional ones.
func parseArgs(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		if fs.NArg() == 0 {
			return pos, nil
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
}

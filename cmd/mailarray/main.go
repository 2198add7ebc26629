// Command mailarray runs and operates mailarray nodes.
//
//	mailarray serve [flags]        run a node
//	mailarray user hash [PASSWORD] print a {BCRYPT} hash for a users file
//	mailarray status [--json]      show the array as a node sees it
//	mailarray rebalance            move a share of copies to new nodes
//	mailarray drain NODE           move a node's copies to the others, then it leaves
//	mailarray spam add|del|list    the spam database of sender domains
//	mailarray quarantine list|show|release|delete
//	mailarray trace ID             what happened to a message
//	mailarray version
package main

import (
	"fmt"
	"os"

	"mailarray/node"
)

// version is the release this binary is, set at link time: `make build`
// passes -ldflags "-X main.version=$(git describe ...) -X main.commit=...".
var version = "dev"

// commit is the revision this binary was built from, set at link time
// like version (the toolchain's own stamp wins when it made one).
var commit = ""

func usage() {
	fmt.Fprint(os.Stderr, `usage: mailarray <command> [flags]

commands:
  serve        run a node (mailarray serve -h for its flags)
  user hash    print a {BCRYPT} password hash for the users file
  status       show members, mirroring table, replication and rebuild progress
  rebalance    ask every node to move copies to their balanced placement
  drain NODE   take a node out: its messages get R copies elsewhere, then it leaves the array
  spam         add|del|list blocked sender domains in the spam database file
  quarantine   list|show ID|release ID|delete ID quarantined messages
  trace ID     show what happened to a message (pipeline decisions, copies)
  tls          ca|cert: make the array CA and node certificates for the peer API's mutual TLS
  version      print the version
`)
}

func main() {
	if len(os.Args) < 2 {
		usage()
		os.Exit(2)
	}
	var err error
	cmd, args := os.Args[1], os.Args[2:]
	switch cmd {
	case "serve":
		err = serve(args)
	case "user":
		err = user(args)
	case "status":
		err = status(args)
	case "rebalance":
		err = rebalance(args)
	case "drain":
		err = drain(args)
	case "spam":
		err = spam(args)
	case "quarantine":
		err = quarantine(args)
	case "trace":
		err = trace(args)
	case "tls":
		err = tlsCmd(args)
	case "version":
		b := node.ReadBuildInfo(version, commit)
		fmt.Printf("mailarray %s (commit %s, %s)\n", b.Version, b.Commit, b.GoVersion)
	case "-h", "--help", "help":
		usage()
	default:
		fmt.Fprintf(os.Stderr, "mailarray: unknown command %q\n", cmd)
		usage()
		os.Exit(2)
	}
	if err != nil {
		reportFatal(os.Stderr, cmd, args, err)
		os.Exit(1)
	}
}

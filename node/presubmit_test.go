package node

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// forbidden lists package-level identifiers that reach the outside world
// behind the Env's back, by import path. Node and simulator code must use
// Env.Net, Env.Rand and the injected slog logger (STYLE.md rule 2).
var forbidden = map[string]map[string]bool{
	"net": set("Dial", "DialTimeout", "DialTCP", "DialUDP", "DialIP", "DialUnix",
		"Listen", "ListenPacket", "ListenTCP", "ListenUDP", "ListenIP", "ListenUnix", "ListenMulticastUDP",
		"LookupHost", "LookupIP", "LookupMX", "LookupAddr", "ResolveTCPAddr", "ResolveUDPAddr", "ResolveIPAddr",
		"Dialer", "ListenConfig", "DefaultResolver"),
	"net/http":             set("Get", "Post", "Head", "PostForm", "DefaultClient", "DefaultTransport", "ListenAndServe", "ListenAndServeTLS", "Serve", "Handle", "HandleFunc", "DefaultServeMux"),
	"crypto/tls":           set("Dial", "DialWithDialer", "Listen"),
	"github.com/miekg/dns": set("Exchange", "ExchangeContext", "ListenAndServe", "ListenAndServeTLS", "Handle", "HandleFunc", "HandleRemove", "DefaultServeMux"),
	// math/rand globals share one unseeded stream: only constructors pass.
	"math/rand":    allBut("New", "NewSource", "NewZipf", "Rand", "Source", "Source64", "Zipf"),
	"math/rand/v2": allBut("New", "NewPCG", "NewChaCha8", "NewZipf", "Rand", "Source", "PCG", "ChaCha8", "Zipf"),
}

// allowed names files that are the real implementation of an Env part.
var allowed = map[string]map[string]bool{
	"node/env/real.go": set("net.Dialer", "net.ListenConfig"),
}

type nameSet = map[string]bool

func set(names ...string) nameSet {
	m := nameSet{}
	for _, n := range names {
		m[n] = true
	}
	return m
}

// allBut marks every name forbidden except those listed (value false).
func allBut(names ...string) nameSet {
	m := nameSet{"*": true}
	for _, n := range names {
		m[n] = false
	}
	return m
}

func isForbidden(path, name string) bool {
	names, ok := forbidden[path]
	if !ok {
		return false
	}
	if v, ok := names[name]; ok {
		return v
	}
	return names["*"]
}

// violations parses one Go file and lists its forbidden uses.
func violations(fset *token.FileSet, file string, src any, rel string) ([]string, error) {
	f, err := parser.ParseFile(fset, file, src, parser.ImportsOnly|parser.ParseComments)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, imp := range f.Imports {
		if p, _ := strconv.Unquote(imp.Path.Value); p == "log" {
			out = append(out, fset.Position(imp.Pos()).String()+": imports package log (use the Env's *slog.Logger)")
		}
	}
	f, err = parser.ParseFile(fset, file, src, 0)
	if err != nil {
		return nil, err
	}
	local := map[string]string{} // local import name -> path
	for _, imp := range f.Imports {
		p, _ := strconv.Unquote(imp.Path.Value)
		name := p[strings.LastIndex(p, "/")+1:]
		if p == "math/rand/v2" {
			name = "rand"
		}
		if imp.Name != nil {
			name = imp.Name.Name
		}
		local[name] = p
	}
	ast.Inspect(f, func(n ast.Node) bool {
		sel, ok := n.(*ast.SelectorExpr)
		if !ok {
			return true
		}
		id, ok := sel.X.(*ast.Ident)
		if !ok || id.Obj != nil {
			return true
		}
		path, ok := local[id.Name]
		if !ok || !isForbidden(path, sel.Sel.Name) {
			return true
		}
		short := path[strings.LastIndex(path, "/")+1:] + "." + sel.Sel.Name
		if path == "math/rand/v2" {
			short = "rand." + sel.Sel.Name
		}
		if allowed[rel][short] {
			return true
		}
		out = append(out, fset.Position(sel.Pos()).String()+": uses "+path+"."+sel.Sel.Name+" (go through the Env)")
		return true
	})
	return out, nil
}

// TestPresubmitEnvOnly fails when code under node/ or sim/ reaches the
// network, randomness or logging except through the Env.
func TestPresubmitEnvOnly(t *testing.T) {
	root, err := filepath.Abs("..")
	require.NoError(t, err)
	fset := token.NewFileSet()
	var all []string
	for _, dir := range []string{"node", "sim"} {
		err := filepath.WalkDir(filepath.Join(root, dir), func(p string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() || !strings.HasSuffix(p, ".go") || strings.HasSuffix(p, "_test.go") {
				return err
			}
			rel, _ := filepath.Rel(root, p)
			v, err := violations(fset, p, nil, filepath.ToSlash(rel))
			all = append(all, v...)
			return err
		})
		require.NoError(t, err)
	}
	assert.Empty(t, all, "code under node/ and sim/ must reach the outside only through env.Env")
}

// TestPresubmitCatches proves the check can fail: each snippet must be
// caught, and the clean one must pass.
func TestPresubmitCatches(t *testing.T) {
	tests := []struct {
		name, src string
		bad       bool
	}{
		{"net.Dial", `package x; import "net"; func f() { net.Dial("tcp", "a:1") }`, true},
		{"net.Listen aliased", `package x; import n "net"; func f() { n.Listen("tcp", ":1") }`, true},
		{"global rand v2", `package x; import "math/rand/v2"; func f() int { return rand.IntN(3) }`, true},
		{"global rand v1", `package x; import "math/rand"; func f() int { return rand.Intn(3) }`, true},
		{"log package", `package x; import "log"; func f() { log.Print("x") }`, true},
		{"http.Get", `package x; import "net/http"; func f() { http.Get("http://x") }`, true},
		{"dns global mux", `package x; import "github.com/miekg/dns"; func f() { dns.HandleFunc(".", nil) }`, true},
		{"seeded rand is fine", `package x; import "math/rand/v2"; func f() *rand.Rand { return rand.New(rand.NewPCG(1, 2)) }`, false},
		{"net types are fine", `package x; import "net"; func f(c net.Conn) net.Addr { return c.LocalAddr() }`, false},
		{"slog is fine", `package x; import "log/slog"; func f(l *slog.Logger) { l.Info("x") }`, false},
	}
	for _, tc := range tests {
		got, err := violations(token.NewFileSet(), "x.go", tc.src, "node/x/x.go")
		require.NoError(t, err, tc.name)
		assert.Equal(t, tc.bad, len(got) > 0, "%s: violations %v", tc.name, got)
	}
}

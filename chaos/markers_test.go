//go:build !chaos

package chaos

import (
	"go/ast"
	"go/parser"
	"go/token"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"mailarray/node/fault"
)

// TestFaultPoints checks that the fault points are named once and agree
// everywhere: node/fault's list (Points) holds every constant it declares,
// node code has exactly one failpoint marker (in fault.Inject) and names
// no point by its string, each point has a call site, and every point is
// either a Failpoint of the matrix, whose Where names the files of its
// call sites, or in notInMatrix with a reason. (Under make chaos the code
// is rewritten; TestSimChaosMarkers checks the rewritten form. TestMatrix
// checks that every cell's targets are Failpoints.)
func TestFaultPoints(t *testing.T) {
	root := repoRoot(t)
	points := fault.Points()
	pointSet := map[fault.Point]bool{}
	for _, p := range points {
		require.False(t, pointSet[p], "%s listed twice in fault.Points", p)
		pointSet[p] = true
	}

	// The constants fault.go declares, by identifier.
	consts := faultConsts(t, filepath.Join(root, "node", "fault", "fault.go"))
	assert.ElementsMatch(t, points, slices.Collect(maps.Values(consts)), "fault.Points lists every Point constant")

	// Node code (tests aside): markers, point names as strings, call sites.
	marker := regexp.MustCompile(`failpoint\.[A-Za-z]+\(`)
	var markers []string
	sites := map[fault.Point]map[string]bool{} // point -> files naming it
	fset := token.NewFileSet()
	err := filepath.WalkDir(filepath.Join(root, "node"), func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || filepath.Ext(p) != ".go" || strings.HasSuffix(p, "_test.go") {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		rel = filepath.ToSlash(rel)
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		for range marker.FindAll(b, -1) {
			markers = append(markers, rel)
		}
		if strings.HasPrefix(rel, "node/fault/") {
			return nil
		}
		f, err := parser.ParseFile(fset, p, b, parser.SkipObjectResolution)
		if err != nil {
			return err
		}
		local := importName(f, "mailarray/node/fault")
		ast.Inspect(f, func(n ast.Node) bool {
			switch n := n.(type) {
			case *ast.BasicLit:
				if s, err := strconv.Unquote(n.Value); n.Kind == token.STRING && err == nil && pointSet[fault.Point(s)] {
					t.Errorf("%s: names point %q by its string: use the fault constant", fset.Position(n.Pos()), s)
				}
			case *ast.SelectorExpr:
				if x, ok := n.X.(*ast.Ident); ok && local != "" && x.Name == local {
					if p, ok := consts[n.Sel.Name]; ok {
						if sites[p] == nil {
							sites[p] = map[string]bool{}
						}
						sites[p][rel] = true
					}
				}
			}
			return true
		})
		return nil
	})
	require.NoError(t, err)
	assert.Equal(t, []string{"node/fault/fault.go"}, markers,
		"one failpoint marker in node code, in fault.Inject: every point goes through it")
	for _, p := range points {
		assert.NotEmpty(t, sites[p], "%s has no call site under node/", p)
	}

	// The chaos suite's failpoints: each a point, with its call sites'
	// files; the rest of the points left out with a reason.
	listed := map[fault.Point]bool{}
	for _, fp := range Failpoints() {
		require.True(t, pointSet[fp.Name], "failpoint %s is not a point of node/fault", fp.Name)
		require.False(t, listed[fp.Name], "failpoint %s listed twice", fp.Name)
		listed[fp.Name] = true
		assert.Equal(t, fault.Package+"/"+string(fp.Name), fp.Path(), "the rewritten marker registers the point in node/fault")
		assert.ElementsMatch(t, whereFiles(fp.Where), slices.Collect(maps.Keys(sites[fp.Name])),
			"%s: Where names the files of its call sites", fp.Name)
		assert.NotContains(t, notInMatrix, fp.Name, "%s is in the matrix", fp.Name)
	}
	for _, p := range points {
		if !listed[p] {
			assert.NotEmpty(t, notInMatrix[p], "%s is neither a Failpoint of the matrix nor in notInMatrix", p)
		}
	}
	for p := range notInMatrix {
		assert.True(t, pointSet[p], "notInMatrix names %s, not a point of node/fault", p)
	}
}

// faultConsts parses fault.go's constants of type Point: identifier ->
// value.
func faultConsts(t *testing.T, path string) map[string]fault.Point {
	f, err := parser.ParseFile(token.NewFileSet(), path, nil, parser.SkipObjectResolution)
	require.NoError(t, err)
	out := map[string]fault.Point{}
	for _, d := range f.Decls {
		g, ok := d.(*ast.GenDecl)
		if !ok || g.Tok != token.CONST {
			continue
		}
		for _, s := range g.Specs {
			vs := s.(*ast.ValueSpec)
			if typ, ok := vs.Type.(*ast.Ident); !ok || typ.Name != "Point" {
				continue
			}
			for i, name := range vs.Names {
				lit, ok := vs.Values[i].(*ast.BasicLit)
				require.True(t, ok, "%s: a string literal", name.Name)
				v, err := strconv.Unquote(lit.Value)
				require.NoError(t, err)
				out[name.Name] = fault.Point(v)
			}
		}
	}
	require.NotEmpty(t, out)
	return out
}

// importName is the name file f gives the import path, or "".
func importName(f *ast.File, path string) string {
	for _, imp := range f.Imports {
		if p, _ := strconv.Unquote(imp.Path.Value); p == path {
			if imp.Name != nil {
				return imp.Name.Name
			}
			return filepath.Base(path)
		}
	}
	return ""
}

// whereFiles lists the .go files a Failpoint's Where names.
func whereFiles(where string) []string {
	var out []string
	for _, w := range strings.Fields(where) {
		if w = strings.TrimSuffix(w, ","); strings.HasSuffix(w, ".go") {
			out = append(out, w)
		}
	}
	return out
}

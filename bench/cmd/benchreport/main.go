// Command benchreport renders benchmark results as markdown with charts
// (PNG files under <out dir>/img):
//
//	benchreport -in results/x.json -out results/x.md       # a scenario report, saturation.json or scale.json
//	benchreport -compare results/*.json -out results/README.md
//
// With -compare it reads every file given, sorts them out by kind
// (scenario reports of the simulator, bench-real reports, the saturation
// search, the scale sweep) and writes the comparison page, and beside it
// saturation.md and scale.md when their JSON is among the files. The
// output is a function of the JSON files alone.
package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"mailarray/bench"
	"mailarray/bench/report"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "benchreport:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	fs := flag.NewFlagSet("benchreport", flag.ContinueOnError)
	in := fs.String("in", "", "one result JSON to render (scenario report, saturation.json or scale.json)")
	compare := fs.Bool("compare", false, "compare every JSON given as arguments (results/*.json)")
	out := fs.String("out", "", "markdown file to write (charts go to img/ beside it)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *out == "" {
		return errors.New("-out is required")
	}
	// Both "-compare results/*.json -out x" and "-compare -out x results/*.json".
	files := fs.Args()
	if *compare && len(files) > 0 && strings.HasPrefix(files[0], "-") {
		return errors.New("flags must come before the JSON files")
	}
	opts := report.Options{ImgDir: filepath.Join(filepath.Dir(*out), "img"), ImgRel: "img"}
	var md []byte
	var err error
	switch {
	case *compare:
		md, err = comparison(files, opts)
	case *in != "":
		md, err = single(*in, opts)
	default:
		return errors.New("give -in FILE or -compare FILES")
	}
	if err != nil {
		return err
	}
	return os.WriteFile(*out, md, 0o644)
}

func single(path string, opts report.Options) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	kind, err := report.Kind(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	switch kind {
	case report.KindSaturation:
		s, err := report.LoadSaturation(path)
		if err != nil {
			return nil, err
		}
		return report.RenderSaturation(s, opts)
	case report.KindScale:
		s, err := report.LoadScale(path)
		if err != nil {
			return nil, err
		}
		return report.RenderScale(s, opts)
	case report.KindTruth:
		t, err := report.LoadTruth(path)
		if err != nil {
			return nil, err
		}
		return report.RenderTruth(t, opts)
	}
	r, err := report.Decode(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return report.RenderScenario(r, opts)
}

func comparison(files []string, opts report.Options) ([]byte, error) {
	c := &report.Comparison{Strategies: bench.Strategies, Reports: map[string]*report.Report{}, Real: map[string]*report.Report{}}
	pages := map[string]string{} // kind -> the last file of that kind
	for _, path := range files {
		b, err := os.ReadFile(path)
		if err != nil {
			return nil, err
		}
		kind, err := report.Kind(b)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		if kind != "" {
			pages[kind] = path
		}
		switch kind {
		case report.KindSaturation:
			if c.Saturation, err = report.LoadSaturation(path); err != nil {
				return nil, err
			}
		case report.KindScale:
			if c.Scale, err = report.LoadScale(path); err != nil {
				return nil, err
			}
		case report.KindTruth:
			if c.Truth, err = report.LoadTruth(path); err != nil {
				return nil, err
			}
		default:
			r, err := report.Decode(b)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", path, err)
			}
			if r.Real() {
				c.Real[r.Scenario] = r
			} else {
				c.Reports[r.Scenario] = r
			}
		}
	}
	// The sweeps' own pages go beside the comparison, so that one
	// -compare run leaves every page in step with the JSON: each as -in
	// renders it.
	dir := filepath.Dir(opts.ImgDir)
	for _, kind := range []string{report.KindSaturation, report.KindScale, report.KindTruth} {
		path, ok := pages[kind]
		if !ok {
			continue
		}
		md, err := single(path, opts)
		if err != nil {
			return nil, err
		}
		if err := os.WriteFile(filepath.Join(dir, kind+".md"), md, 0o644); err != nil {
			return nil, err
		}
	}
	return report.RenderComparison(c, opts)
}

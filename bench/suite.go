package bench

import (
	"fmt"
	"os"
	"path/filepath"
)

// Strategies are the strategy scenarios, in the order tables and charts
// show them: scenarios/<name>.yaml, each the same cluster and load with one
// distribution strategy (see the files for the DNS and placement level of
// each).
var Strategies = []string{"roundrobin", "random", "leastload", "p2c", "weighted", "size", "content", "hash"}

// BaseScenario is the strategy scenario whose cluster and load the others
// copy.
const BaseScenario = "roundrobin"

// ScaleScenarioName is the growth sweep's base scenario: scenarios/scale.yaml.
const ScaleScenarioName = "scale"

// IsStrategy reports whether name is one of Strategies.
func IsStrategy(name string) bool {
	for _, s := range Strategies {
		if s == name {
			return true
		}
	}
	return false
}

// ModuleRoot returns the directory of go.mod at or above dir.
func ModuleRoot(dir string) (string, error) {
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("bench: go.mod not found above %s", dir)
		}
		dir = parent
	}
}

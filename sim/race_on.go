//go:build race

package sim

// raceEnabled: the race detector randomizes goroutine scheduling (it
// perturbs which of two goroutines woken together runs first), which the
// determinism recipe's one-P ordering relies on.
const raceEnabled = true

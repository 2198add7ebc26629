#!/usr/bin/env bash
# make chaos: the chaos suites.
#
#  1. The simulator suites (chaos/sim_chaos_test.go, build tag `chaos`) need
#     the failpoint markers of node/ compiled in. failpoint-ctl rewrites
#     source files in place, so this script rewrites a scratch copy of the
#     module (tmp/chaos-src, git-ignored) and tests there: the working tree
#     is never touched, so an interrupted run (Ctrl-C, kill -9, a CI
#     timeout) leaves nothing to restore and no ordinary build can pick up a
#     rewritten file. The copy goes at exit.
#  2. The container suite (chaos/docker_test.go, TestComposeChaos) runs on
#     the tree as it is (it skips itself without Docker).
#
# Usage: chaos/run.sh [RUN]
#   RUN             a go test -run pattern: replay the matching simulator
#                   tests only (a failure prints the pattern to use)
#   CHAOS_SEEDS=N   seeds per cell (default: defaultSeeds in the suite)
#   CHAOS_DOCKER=0  skip the container suite
#   SIM_LOG=1       node logs (Warn+) to stderr
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
GO=${GO:-go}
run=${1:-}
work="$root/tmp/chaos-src"

. "$root/chaos/scratch.sh"
cleanup() { rm -rf "$work"; }
trap cleanup EXIT
scratch_copy "$root" "$work"

# Rewrite the markers in the copy, and prove every one was rewritten.
failpoint_rewrite "$root" "$work"
echo "chaos: $FAILPOINT_MARKERS failpoint marker compiled in, node/fault's, for every fault point (scratch copy $work)"

status=0
t0=$(date +%s)
if [ -n "$run" ]; then
	(cd "$work" && CHAOS_REPLAY="make chaos CHAOS_RUN=" \
		"$GO" test -tags chaos -count=1 -timeout 20m -v -run "$run" ./chaos/) || status=$?
	exit $status
fi
(cd "$work" && CHAOS_RESULTS="$root/results/chaos.md" CHAOS_REPLAY="make chaos CHAOS_RUN=" \
	"$GO" test -tags chaos -count=1 -timeout 15m -run '^(TestSimChaos|TestChecker)' ./chaos/) || status=$?
echo "chaos: simulator suites took $(( $(date +%s) - t0 )) s"
if [ "$root/results/chaos.md" -nt "$work/go.mod" ]; then
	echo "chaos: summary in results/chaos.md:"
	sed -n '/^## Totals/,/^## Failpoints/p' "$root/results/chaos.md" | grep '^|' || true
fi

if [ "${CHAOS_DOCKER:-1}" != 0 ]; then
	t1=$(date +%s)
	"$GO" test -count=1 -timeout 10m -run '^TestComposeChaos$' ./chaos/ || status=$?
	echo "chaos: container suite took $(( $(date +%s) - t1 )) s"
fi

# The tree carries no failpoint rewriting, ever.
if find "$root/node" -name '*__failpoint_*' | grep -q .; then
	echo "chaos: failpoint files in the working tree" >&2
	status=1
fi
exit $status

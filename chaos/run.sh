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

cleanup() { rm -rf "$work"; }
trap cleanup EXIT
rm -rf "$work"
mkdir -p "$work"

# The module's sources: tracked files and new ones not ignored (a fresh
# clone: the tracked ones), minus the reports.
if git -C "$root" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
	git -C "$root" ls-files -co --exclude-standard -z |
		while IFS= read -r -d '' f; do
			case "$f" in results/*) continue ;; esac
			[ -f "$f" ] && printf '%s\0' "$f"
		done | tar --null -T - -cf - | tar -xf - -C "$work"
else
	tar --exclude=./tmp --exclude=./bin --exclude=./results --exclude=./.git -cf - . | tar -xf - -C "$work"
fi

# Rewrite the markers in the copy, and prove every one was rewritten.
(cd "$work" && "$GO" tool failpoint-ctl enable "$work/node")
markers=$(grep -rhoE 'failpoint\.InjectCall\("[^"]+"' "$root/node" --include='*.go' | sort | uniq | wc -l)
rewritten=$(grep -rhoE 'failpoint\.Call\(_curpkg_\("[^"]+"' "$work/node" --include='*.go' | sort | uniq | wc -l)
left=$(grep -rlE 'failpoint\.InjectCall\(' "$work/node" --include='*.go' | grep -v '__failpoint_stash__' || true)
if [ "$markers" -eq 0 ] || [ "$markers" -ne "$rewritten" ] || [ -n "$left" ]; then
	echo "chaos: failpoint rewrite incomplete: $markers markers, $rewritten rewritten; not rewritten: $left" >&2
	exit 1
fi
echo "chaos: $markers failpoint markers compiled in (scratch copy $work)"

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

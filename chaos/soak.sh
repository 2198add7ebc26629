#!/usr/bin/env bash
# make chaos-soak: the simulator chaos matrix (TestSimChaos) over many
# seeds, for long runs. RUNS runs in all, spread evenly over every cell of
# the matrix (each cell runs the same seeds), sharded over SHARDS processes
# that each take their own contiguous range of seeds (CHAOS_SEED_OFFSET,
# CHAOS_SEEDS; soak_test.go). Like make chaos it tests a scratch copy of
# the module with the failpoints compiled in (tmp/chaos-soak-src; the tree
# is never rewritten), builds the test binary once, then writes
# results/chaos-soak.md from every shard's runs (chaos/cmd/soakreport).
#
# Usage: chaos/soak.sh
#   RUNS=N              runs in all, rounded up to a multiple of the cells (default 1000)
#   SHARDS=N            processes (default 2, one per core; each runs with GOMAXPROCS=1)
#   SOAK_SEED_OFFSET=K  the first seed is K+1 (default 1000: past the seeds make chaos runs)
#   SOAK_OUT=file       the report (default results/chaos-soak.md)
#   SOAK_CELLS=PAT      only the cells PAT matches (GROUP/NAME, e.g. ring/: a
#                       -run pattern below TestSimChaos), RUNS spread over them
# A failing run is listed in the report with the command that replays it.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
GO=${GO:-go}
export GOFLAGS=${GOFLAGS:--mod=mod}
runs=${RUNS:-1000}
shards=${SHARDS:-2}
base=${SOAK_SEED_OFFSET:-1000}
out=${SOAK_OUT:-$root/results/chaos-soak.md}
case $out in /*) ;; *) out="$root/$out" ;; esac
work="$root/tmp/chaos-soak-src"
logs="$root/tmp/chaos-soak-logs"

. "$root/chaos/scratch.sh"
cleanup() { rm -rf "$work"; }
trap cleanup EXIT
scratch_copy "$root" "$work"
failpoint_rewrite "$root" "$work"
rm -rf "$logs"
mkdir -p "$logs"

(cd "$work" && "$GO" test -c -tags chaos -o "$work/chaos.test" ./chaos/)
cellpat=${SOAK_CELLS:-}
cells=$(cd "$work/chaos" && CHAOS_SOAK_CELLS="$cellpat" "$work/chaos.test" -test.run '^TestChaosSoakCells$' -test.v | sed -n 's/.*chaos cells: //p')
[ -n "$cells" ] && [ "$cells" -gt 0 ] || { echo "chaos-soak: cannot count the matrix's cells" >&2; exit 1; }
per=$(( (runs + cells - 1) / cells ))       # seeds per cell
each=$(( (per + shards - 1) / shards ))     # seeds per cell per shard
commit=$(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown)
git -C "$root" diff --quiet HEAD 2>/dev/null || commit="$commit+changes"
echo "chaos-soak: $((per * cells)) runs: $cells cells${cellpat:+ matching $cellpat} x seeds $((base + 1))-$((base + per)), $shards processes, commit $commit"

t0=$(date +%s)
pids=() files=()
for ((k = 0; k < shards; k++)); do
	off=$((base + k * each))
	n=$(( per - k * each < each ? per - k * each : each ))
	[ "$n" -gt 0 ] || continue
	f="$logs/shard-$k.json"
	files+=("$f")
	echo "chaos-soak: process $k: seeds $((off + 1))-$((off + n)) (log $logs/shard-$k.log)"
	(cd "$work/chaos" && GOMAXPROCS=1 CHAOS_SEED_OFFSET=$off CHAOS_SEEDS=$n CHAOS_SOAK_JSON="$f" \
		CHAOS_REPLAY="make chaos CHAOS_RUN=" "$work/chaos.test" -test.run "^TestSimChaos\$${cellpat:+/$cellpat}" -test.count 1 -test.timeout 0 \
		>"$logs/shard-$k.log" 2>&1) &
	pids+=($!)
done
status=0
for i in "${!pids[@]}"; do
	wait "${pids[$i]}" || { echo "chaos-soak: process $i failed (log $logs/shard-$i.log)" >&2; status=1; }
done
wall=$(( $(date +%s) - t0 ))
for f in "${files[@]}"; do
	[ -s "$f" ] || { echo "chaos-soak: $f missing: its process did not finish (log beside it)" >&2; exit 1; }
done
mkdir -p "$(dirname "$out")"
(cd "$work" && "$GO" run ./chaos/cmd/soakreport -out "$out" -commit "$commit" -wall "$wall" "${files[@]}") || status=1
echo "chaos-soak: $wall s; report in ${out#"$root"/}"
sed -n '/^| runs/,/^$/p; /^## Findings/,/^$/d' "$out" | sed -n 1,3p
exit $status

#!/usr/bin/env bash
# make mutants: mutation testing. Each mutants/NAME.patch is a deliberate
# bug: a header that names it and its killing tests, then a unified diff.
# For each one this script applies the diff to a scratch copy of the module
# (tmp/mutants/src; the working tree is never edited, so an interrupted run
# leaves nothing to restore), runs the mutant's killing tests there, and
# expects at least one to fail. It prints the table and writes it to
# results/mutants.md; it fails if a mutant survives, or if a patch no
# longer applies or the mutant no longer builds (the patch must be
# refreshed: that is an error, not a survival).
#
# Header lines (before the diff; patch ignores them):
#   Mutant: NAME                 what the table calls it
#   Where: FILE (FUNCTION)       what the diff changes
#   Breaks: TEXT                 the invariant or promise it breaks
#   Sed: FILE EXPR               optional, instead of or before the diff:
#                                sed -E -i EXPR FILE, which must change FILE
#                                (robust to code moving around it)
#   Kill: go PKG PATTERN         go test PKG -run PATTERN (PATTERN: no spaces)
#   Kill: chaos PATTERN [SEEDS]  the simulator chaos suites (failpoints
#                                compiled in, as make chaos) -run PATTERN,
#                                CHAOS_SEEDS=SEEDS (default 2)
# The killing tests run in order until one fails.
#
# Usage: mutants/run.sh
#   MUTANTS="a b"        only these mutants (default: every mutants/*.patch);
#                        a name with a slash is a path (mutants/after-merge/x.patch)
#   MUTANTS_SRC=dir      test this tree instead of the working tree (a merge
#                        candidate unpacked with git archive, say)
#   MUTANTS_BASELINE=0   skip the baseline: by default every killing test
#                        first runs on the unmutated copy and must pass
#                        there, or a kill would prove nothing
#   MUTANTS_ALL=1        run every killing test of each mutant, not only up
#                        to the first that fails
#   MUTANTS_TIMEOUT=5m   go test -timeout of each killing test (a mutant
#                        that hangs a test is killed by the timeout)
#   MUTANTS_OUT=file     the report (default results/mutants.md; "-": none)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
GO=${GO:-go}
export GOFLAGS=${GOFLAGS:--mod=mod}
work="$root/tmp/mutants"
logs="$root/tmp/mutants-logs"
timeout=${MUTANTS_TIMEOUT:-5m}
out=${MUTANTS_OUT:-$root/results/mutants.md}

. "$root/chaos/scratch.sh"
cleanup() { rm -rf "$work"; }
trap cleanup EXIT
rm -rf "$logs"
mkdir -p "$logs"

if [ -n "${MUTANTS:-}" ]; then
	patches=()
	for m in ${MUTANTS//,/ }; do
		case "$m" in
		*/*) patches+=("$(cd "$(dirname "$m")" && pwd)/$(basename "$m")") ;;
		*) patches+=("$root/mutants/$m.patch") ;;
		esac
	done
else
	patches=("$root"/mutants/*.patch)
fi
for p in "${patches[@]}"; do
	[ -f "$p" ] || { echo "mutants: no such mutant: $p" >&2; exit 2; }
done

header() { sed -n "s/^$2: //p" "$1" | sed -n 1p; }
killers() { sed -n 's/^Kill: //p' "$1"; }

# The pristine copy, then the working copy every mutant and the baseline
# run in: always the same path, so the build cache serves every package a
# mutant did not change.
src=${MUTANTS_SRC:+$(cd "$MUTANTS_SRC" && pwd)}
src=${src:-$root}
scratch_copy "$src" "$work/pristine"
fresh() {
	rm -rf "$work/src"
	cp -a "$work/pristine" "$work/src"
	rewritten=0
}

# run_killer LOG KIND ARGS...: runs one killing test in $work/src; its
# status is the test's (0: passed).
run_killer() {
	local log=$1 kind=$2 pkg pattern seeds
	shift 2
	case "$kind" in
	go)
		pkg=$1 pattern=$2
		(cd "$work/src" && "$GO" test -count=1 -failfast -timeout "$timeout" -run "$pattern" "$pkg") >>"$log" 2>&1
		;;
	chaos)
		pattern=$1 seeds=${2:-2}
		if [ "$rewritten" = 0 ]; then
			failpoint_rewrite "$src" "$work/src" >>"$log" 2>&1 || return 3
			rewritten=1
		fi
		(cd "$work/src" && CHAOS_SEEDS=$seeds "$GO" test -tags chaos -count=1 -failfast -timeout "$timeout" -run "$pattern" ./chaos/) >>"$log" 2>&1
		;;
	*)
		echo "mutants: unknown killer kind $kind" >>"$log"
		return 2
		;;
	esac
}

# apply_mutant PATCH LOG: applies the mutant to $work/src: each Sed line
# (sed -E -i EXPR FILE, which must change FILE), then the diff if there is
# one (patch, no fuzz). Fails if anything does not apply.
apply_mutant() {
	local p=$1 log=$2 file expr
	while read -r file expr; do
		[ -n "$file" ] || continue
		[ -f "$work/src/$file" ] || { echo "sed: no file $file" >>"$log"; return 1; }
		cp "$work/src/$file" "$work/sed.orig"
		sed -E -i -e "$expr" "$work/src/$file" 2>>"$log" || return 1
		if cmp -s "$work/src/$file" "$work/sed.orig"; then
			echo "sed: $expr changed nothing in $file" >>"$log"
			return 1
		fi
	done < <(sed -n 's/^Sed: //p' "$p")
	grep -q '^--- ' "$p" || return 0
	(cd "$work/src" && patch -p1 -F0 -N -s --dry-run <"$p") >>"$log" 2>&1 || return 1
	(cd "$work/src" && patch -p1 -F0 -N -s --no-backup-if-mismatch <"$p") >>"$log" 2>&1
}

# section LOG LINE: the output of killing test LINE in LOG.
section() { awk -v k="== $2" '$0==k{on=1;next} /^== /{on=0} on' "$1"; }

status=0
t_all=$(date +%s)

if [ "${MUTANTS_BASELINE:-1}" != 0 ]; then
	fresh
	t0=$(date +%s)
	echo "mutants: baseline: every killing test on the unmutated copy"
	# Plain go killers first: the chaos ones rewrite the copy.
	all=$(for p in "${patches[@]}"; do killers "$p"; done | sort -u | sort -s -k1,1r)
	while read -r line; do
		[ -n "$line" ] || continue
		echo "== $line" >>"$logs/baseline.log"
		# shellcheck disable=SC2086
		if ! run_killer "$logs/baseline.log" $line; then
			echo "mutants: killing test fails on the unmutated tree: $line (log: $logs/baseline.log)" >&2
			status=1
		fi
	done <<<"$all"
	echo "mutants: baseline took $(( $(date +%s) - t0 )) s"
	[ "$status" = 0 ] || { echo "mutants: a kill by a test that fails anyway proves nothing; fix the baseline first" >&2; exit 1; }
fi

rows=()
for p in "${patches[@]}"; do
	name=$(basename "$p" .patch)
	log="$logs/$name.log"
	t0=$(date +%s)
	fresh
	ks=$(killers "$p")
	result="" by=""
	if ! apply_mutant "$p" "$log"; then
		result="ERROR: does not apply (refresh it)"
	else
		result=survived
		while read -r line; do
			[ -n "$line" ] || continue
			echo "== $line" >>"$log"
			# shellcheck disable=SC2086
			if ! run_killer "$log" $line; then
				# A mutant that does not compile is broken, not killed.
				sec=$(section "$log" "$line")
				if grep -qE '\[(build|setup) failed\]|^# mailarray|failpoint rewrite incomplete' <<<"$sec"; then
					result="ERROR: does not build (refresh it)" by=""
					break
				fi
				first=$(awk '/--- FAIL: / && !d {print $3; d=1}' <<<"$sec")
				if grep -q 'panic: test timed out' <<<"$sec"; then first="${first:-timeout}"; fi
				by+="${by:+; }${first:-$(echo "$line" | awk '{print $1" "$3}')}"
				result=killed
				[ "${MUTANTS_ALL:-0}" = 1 ] || break
			fi
		done <<<"$ks"
	fi
	secs=$(( $(date +%s) - t0 ))
	[ "$result" = killed ] || status=1
	declared=$(echo "$ks" | awk 'NF{gsub(/\|/, "\\|"); printf "%s`%s %s`", (n++ ? "<br>" : ""), $1, ($1=="go" ? $2" -run "$3 : "-run "$2 (NF>2 ? " seeds="$3 : ""))}')
	rows+=("| \`$name\` | $(header "$p" Where) | $(header "$p" Breaks) | $declared | $result${by:+ by \`$by\`} | $secs s |")
	echo "mutants: $name: $result${by:+ by $by} ($secs s; log $log)"
done

wall=$(( $(date +%s) - t_all ))
table=$(
	echo "| mutant | where | what it breaks | killing tests | result | time |"
	echo "|---|---|---|---|---|---:|"
	printf '%s\n' "${rows[@]}"
)
echo
echo "$table"
echo
echo "mutants: $wall s in all"
if [ "$out" != - ]; then
	mkdir -p "$(dirname "$out")"
	{
		echo "# Mutants"
		echo
		echo "Written by \`make mutants\` (mutants/run.sh); do not edit. Each mutant is a deliberate bug,"
		echo "mutants/NAME.patch, applied to a scratch copy of the module; its killing tests run there until one"
		echo "fails (killed). Survived: every killing test passed on the mutant. Every killing test first passed"
		echo "on the unmutated copy (baseline$( [ "${MUTANTS_BASELINE:-1}" != 0 ] || echo ': skipped in this run'))."
		echo
		echo "$table"
		echo
		if [ "$src" = "$root" ]; then
			echo "Commit $(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown)$(git -C "$root" diff --quiet HEAD 2>/dev/null || echo ' (with uncommitted changes)'); wall time $wall s on the machine that wrote this file."
		else
			echo "Tree $src (MUTANTS_SRC); wall time $wall s on the machine that wrote this file."
		fi
	} >"$out"
	echo "mutants: table in ${out#"$root"/}"
fi
exit $status

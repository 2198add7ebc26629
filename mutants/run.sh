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
#   Sed: PATH EXPR               optional, instead of or before the diff:
#                                sed -E -i EXPR on PATH, a file or a
#                                directory (its non-test .go files, in
#                                subdirectories too); it must change
#                                exactly one file. Robust to code moving
#                                around it, and with a directory to code
#                                moving between files: prefer it, and match
#                                on a distinctive line (a function range
#                                /^func .../,/^}/ when the line is not).
#   Kill: go PKG PATTERN         go test PKG -run PATTERN (PATTERN: no spaces)
#   Kill: chaos PATTERN [SEEDS]  the simulator chaos suites (failpoints
#                                compiled in, as make chaos) -run PATTERN,
#                                CHAOS_SEEDS=SEEDS (default 2)
# The killing tests run in order until one fails. A killing test that is
# not in the tree (its package directory is missing, or no test matches
# its pattern) is skipped: a mutant may name a test's home before and
# after a move. A mutant none of whose killing tests is present is an
# error, as is a patch that does not apply.
#
# Usage: mutants/run.sh
#   MUTANTS="a b"        only these mutants (default: every mutants/*.patch);
#                        a name with a slash is a path (tmp/x.patch)
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
# status is the test's (0: passed), or 4 if the test is absent: its
# package is not in the tree or no test matches its pattern (code that
# moved: a mutant may name the killer's old and new homes, and is killed
# by the first present one that fails).
run_killer() {
	local log=$1 kind=$2 pkg pattern seeds rc=0
	shift 2
	case "$kind" in
	go)
		pkg=$1 pattern=$2
		[ -d "$work/src/$pkg" ] || { echo "mutants: absent: no package $pkg" >>"$log"; return 4; }
		# shellcheck disable=SC2086
		(cd "$work/src" && "$GO" test -count=1 -failfast -timeout "$timeout" ${GOTESTFLAGS:-} -run "$pattern" "$pkg") >"$work/killer.out" 2>&1 || rc=$?
		;;
	chaos)
		pattern=$1 seeds=${2:-2}
		if [ "$rewritten" = 0 ]; then
			failpoint_rewrite "$src" "$work/src" >>"$log" 2>&1 || return 3
			rewritten=1
		fi
		(cd "$work/src" && CHAOS_SEEDS=$seeds "$GO" test -tags chaos -count=1 -failfast -timeout "$timeout" -run "$pattern" ./chaos/) >"$work/killer.out" 2>&1 || rc=$?
		;;
	*)
		echo "mutants: unknown killer kind $kind" >>"$log"
		return 2
		;;
	esac
	cat "$work/killer.out" >>"$log"
	if [ "$rc" = 0 ] && grep -q 'no tests to run' "$work/killer.out"; then
		echo "mutants: absent: no test matches $pattern" >>"$log"
		return 4
	fi
	return "$rc"
}

# apply_mutant PATCH LOG: applies the mutant to $work/src: each Sed line
# (sed -E -i EXPR on a file or a directory's non-test .go files, which
# must change exactly one file), then the diff if there is one (patch, no
# fuzz). Fails if anything does not apply.
apply_mutant() {
	local p=$1 log=$2 path expr f changed
	while read -r path expr; do
		[ -n "$path" ] || continue
		if [ -d "$work/src/$path" ]; then
			mapfile -t files < <(find "$work/src/$path" -name '*.go' ! -name '*_test.go' | sort)
		elif [ -f "$work/src/$path" ]; then
			files=("$work/src/$path")
		else
			echo "sed: no file or directory $path" >>"$log"
			return 1
		fi
		changed=()
		for f in "${files[@]}"; do
			cp "$f" "$work/sed.orig"
			sed -E -i -e "$expr" "$f" 2>>"$log" || return 1
			cmp -s "$f" "$work/sed.orig" || changed+=("${f#"$work/src/"}")
		done
		if [ "${#changed[@]}" != 1 ]; then
			echo "sed: $expr changed ${#changed[@]} files under $path, not one: ${changed[*]}" >>"$log"
			return 1
		fi
		echo "sed: mutated ${changed[0]}" >>"$log"
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
	all=$(for p in "${patches[@]}"; do killers "$p"; done | sort -u)
	absent() { echo "mutants: baseline: absent here (moved code; another killer of its mutant must be present): $*"; }
	# Plain go killers first (the chaos ones rewrite the copy), those of
	# one package in one go test -v: the test binary is linked once per
	# package, not once per killer, which is most of the baseline's time
	# on a slow machine. Each killer's pattern must match a test that ran,
	# or it is absent. Patterns with a slash (subtests) run alone.
	grouped=$(awk '$1=="go" && $3 !~ /\//' <<<"$all")
	for pkg in $(awk '{print $2}' <<<"$grouped" | sort -u); do
		pats=$(awk -v p="$pkg" '$2==p {print $3}' <<<"$grouped")
		joined=$(paste -sd'|' <<<"$pats")
		echo "== go $pkg $joined" >>"$logs/baseline.log"
		rc=0
		GOTESTFLAGS=-v run_killer "$logs/baseline.log" go "$pkg" "$joined" || rc=$?
		case $rc in
		0)
			sed -n 's/^=== RUN  *\([^/]*\)$/\1/p' "$work/killer.out" | sort -u >"$work/ran"
			while read -r pat; do
				grep -Eq -- "$pat" "$work/ran" || absent "go $pkg $pat"
			done <<<"$pats"
			;;
		4) while read -r pat; do absent "go $pkg $pat"; done <<<"$pats" ;;
		*)
			echo "mutants: killing tests fail on the unmutated tree: go $pkg: $(awk '/^--- FAIL: / {printf "%s ", $3}' "$work/killer.out")(log: $logs/baseline.log)" >&2
			status=1
			;;
		esac
	done
	while read -r line; do
		[ -n "$line" ] || continue
		echo "== $line" >>"$logs/baseline.log"
		rc=0
		# shellcheck disable=SC2086
		run_killer "$logs/baseline.log" $line || rc=$?
		case $rc in
		0) ;;
		4) absent "$line" ;;
		*)
			echo "mutants: killing test fails on the unmutated tree: $line (log: $logs/baseline.log)" >&2
			status=1
			;;
		esac
	done < <(grep -vxF -f <(printf '%s\n' "$grouped") <<<"$all" | sort -s -k1,1r)
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
		result="ERROR: none of its killing tests is in the tree (refresh it)"
		while read -r line; do
			[ -n "$line" ] || continue
			echo "== $line" >>"$log"
			rc=0
			# shellcheck disable=SC2086
			run_killer "$log" $line || rc=$?
			if [ "$rc" = 4 ]; then
				continue
			fi
			[ "$result" = killed ] || result=survived
			if [ "$rc" != 0 ]; then
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
			echo "Commit $(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown)$(git -C "$root" diff --quiet HEAD -- . ':!results' 2>/dev/null || echo ' (with uncommitted changes)'); wall time $wall s on the machine that wrote this file."
		else
			echo "Tree $src (MUTANTS_SRC); wall time $wall s on the machine that wrote this file."
		fi
	} >"$out"
	echo "mutants: table in ${out#"$root"/}"
fi
exit $status

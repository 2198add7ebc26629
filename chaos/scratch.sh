# Sourced by chaos/run.sh, chaos/soak.sh and mutants/run.sh: the scratch
# copies of the module they build and test in, so the working tree is
# never rewritten (failpoint-ctl rewrites in place; a mutant edits code).
# An interrupted run leaves nothing to restore; callers remove the copy at
# exit.

# scratch_copy ROOT DIR: the module's sources (tracked files and new ones
# not ignored; a fresh clone: the tracked ones), minus the reports, copied
# to DIR (emptied first).
scratch_copy() {
	local root=$1 work=$2
	rm -rf "$work"
	mkdir -p "$work"
	# A git work tree's own top only: a plain directory inside one (an
	# unpacked merge candidate under tmp/) is copied as it is.
	if [ "$(git -C "$root" rev-parse --show-toplevel 2>/dev/null)" = "$(cd "$root" && pwd -P)" ]; then
		git -C "$root" ls-files -co --exclude-standard -z |
			while IFS= read -r -d '' f; do
				case "$f" in results/*) continue ;; esac
				[ -f "$root/$f" ] && printf '%s\0' "$f"
			done | tar -C "$root" --null -T - -cf - | tar -xf - -C "$work"
	else
		(cd "$root" && tar --exclude=./tmp --exclude=./bin --exclude=./results --exclude=./.git -cf - .) | tar -xf - -C "$work"
	fi
}

# failpoint_rewrite ROOT DIR: rewrite the failpoint markers of DIR/node
# (a scratch copy of ROOT), and prove every marker of ROOT/node was
# rewritten. Node code has one marker, in node/fault's Inject, which every
# fault point goes through (chaos/markers_test.go checks that).
failpoint_rewrite() {
	local root=$1 work=$2 markers rewritten left
	(cd "$work" && "${GO:-go}" tool failpoint-ctl enable "$work/node")
	markers=$(grep -rhoE 'failpoint\.InjectCall\(' "$root/node" --include='*.go' | wc -l)
	rewritten=$(grep -rhoE 'failpoint\.Call\(_curpkg_\(' "$work/node" --include='*.go' | wc -l)
	left=$(grep -rlE 'failpoint\.InjectCall\(' "$work/node" --include='*.go' | grep -v '__failpoint_stash__' || true)
	if [ "$markers" -eq 0 ] || [ "$markers" -ne "$rewritten" ] || [ -n "$left" ]; then
		echo "chaos: failpoint rewrite incomplete: $markers markers, $rewritten rewritten; not rewritten: $left" >&2
		return 1
	fi
	FAILPOINT_MARKERS=$markers
}

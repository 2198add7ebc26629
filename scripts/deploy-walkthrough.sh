#!/usr/bin/env bash
# deploy-walkthrough.sh follows docs/deploy.md as a new operator would, on
# loopback, in a temporary directory, and fails when the guide and the code
# drift apart. `make test` runs it after `make build`.
#
# What it does, in the guide's order:
#   1. Install: runs the guide's install block. Paths are moved under a
#      per-node root ($work/nN/etc/mailarray, .../usr/local/bin, ...), so
#      three nodes share one machine and nothing outside $work is written;
#      as root it creates the service user `mailarray` (kept afterwards, as
#      the guide's useradd would), as another user it skips the user and
#      the ownership steps and says so.
#   2. Configure: copies the example configuration with the guide's command
#      and sets what the guide says to set (name, advertise, peer, gossip,
#      join) plus the loopback addresses; secrets from the guide's own
#      commands; the users file from the guide's block.
#   3. Certificates: the guide's CA, node and trial certificate commands,
#      then its install block on each node.
#   4. Start: the guide's start block on n1, n2, n3 in turn. `systemctl` is
#      a shell function here: daemon-reload checks the shipped unit
#      (systemd-analyze verify), start runs the unit's ExecStart as its
#      User= with setpriv. Then: `mailarray status` with the guide's admin
#      token (and 401 without it), /readyz, TLS on every client listener
#      with the guide's openssl commands, mutual TLS on the peer API, one
#      message in by SMTP STARTTLS and out by POP3S and IMAPS.
#   8. Upgrades: the guide's rolling-upgrade block on each node in turn with
#      a binary of another version, checked by status and build_info.
# Everything started is stopped at the end, whatever happened.
#
# Every wait polls a condition with a bound (wait_for); none sleeps and
# then asserts. KEEP=1 keeps $work for a look afterwards.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
guide=$root/docs/deploy.md
[[ -x $root/bin/mailarray ]] || { echo "walkthrough: $root/bin/mailarray missing (make build)" >&2; exit 1; }
for c in curl openssl awk setsid; do
	command -v "$c" >/dev/null || { echo "walkthrough: $c is needed" >&2; exit 1; }
done

say() { echo "walkthrough: $*"; }
fail() {
	echo "walkthrough: FAIL: $*" >&2
	exit 1
}

isroot=""
[[ $(id -u) == 0 ]] && isroot=1
svc_user=mailarray
[[ -n $isroot ]] || svc_user=$(id -un)

# --- the unit, as the systemctl stand-in starts it ---------------------

unit_key() { # the value of KEY= in the installed unit of node NODE
	awk -F= -v k="$2" '$1 == k { sub(/^[^=]*=/, ""); print; exit }' "$work/n$1/etc/systemd/system/mailarray.service"
}

# exec_start NODE: the unit's ExecStart, its paths moved under the node's
# root like the guide's commands.
exec_start() {
	unit_key "$1" ExecStart | sed -E "s#/usr/local/bin/#$work/n$1/usr/local/bin/#g; s#/etc/mailarray#$work/n$1/etc/mailarray#g"
}

# stop_node NODE: SIGTERM (the unit's KillSignal) and wait, bounded as
# TimeoutStopSec is, then SIGKILL like systemd.
stop_node() {
	local pidf=$work/n$1/pid pid
	[[ -f $pidf ]] || return 0
	pid=$(<"$pidf")
	kill -TERM "$pid" 2>/dev/null || true
	local deadline=$((SECONDS + 30))
	while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.1; done
	kill -0 "$pid" 2>/dev/null && { echo "walkthrough: n$1 (pid $pid) ignored SIGTERM for 30s; SIGKILL" >&2; kill -KILL "$pid" 2>/dev/null || true; }
	rm -f "$pidf"
}

if [[ ${1:-} == --systemctl ]]; then
	# Called by the guide's `systemctl` through the stand-in.
	: "${WT_WORK:?}"
	work=$WT_WORK
	node=$2
	shift 2
	case "$*" in
	daemon-reload)
		u=$work/n$node/etc/systemd/system/mailarray.service
		if command -v systemd-analyze >/dev/null; then
			# The installed unit names the installed binary, which
			# systemd-analyze checks exists: verify it with the
			# node's paths.
			sed -E "s#^ExecStart=.*#ExecStart=$(exec_start "$node")#" "$u" >"$work/n$node/mailarray.service"
			out=$(systemd-analyze verify "$work/n$node/mailarray.service" 2>&1) || { echo "$out" >&2; fail "systemd-analyze verify deploy/systemd/mailarray.service"; }
			# Warnings that are about this machine, not the unit, pass.
			bad=$(grep -v -e 'Documentation=' -e 'not executable' -e "$svc_user" -e '^$' <<<"$out" || true)
			[[ -z $bad ]] || { echo "$out" >&2; fail "systemd-analyze verify: $bad"; }
			echo "(systemd-analyze verify: the unit is valid)"
		else
			echo "(systemd-analyze not installed: the unit is parsed by hand)"
		fi
		;;
	"enable --now mailarray" | "start mailarray")
		exec_start=$(exec_start "$node")
		user=$(unit_key "$node" User)
		group=$(unit_key "$node" Group)
		[[ -n $exec_start && -n $user && -n $group ]] || fail "unit: ExecStart, User and Group are needed"
		read -r -a argv <<<"$exec_start"
		[[ -x ${argv[0]} ]] || fail "unit: ExecStart ${argv[0]} is not the installed binary"
		log=$work/n$node/journal.log
		if [[ -n $isroot ]]; then
			setsid setpriv --reuid="$user" --regid="$group" --init-groups --no-new-privs -- "${argv[@]}" >>"$log" 2>&1 </dev/null &
		else
			setsid "${argv[@]}" >>"$log" 2>&1 </dev/null &
		fi
		echo $! >"$work/n$node/pid"
		# systemctl returns once the process runs; an operator's next
		# command would meet a node still binding its listeners. Wait
		# for /healthz (or for it to exit).
		http=$(awk '$1 == "http:" {print $2}' "$work/n$node/etc/mailarray/mailarray.yaml")
		deadline=$((SECONDS + 60))
		until curl -fsS -o /dev/null --max-time 2 "http://$http/healthz" 2>/dev/null; do
			kill -0 "$(<"$work/n$node/pid")" 2>/dev/null || { tail -n 5 "$log" >&2; fail "n$node exited at start"; }
			((SECONDS < deadline)) || { tail -n 5 "$log" >&2; fail "n$node: /healthz not answering after 60s"; }
			sleep 0.2
		done
		echo "(n$node started as $([[ -n $isroot ]] && echo "$user" || id -un), pid $(<"$work/n$node/pid"), log $log)"
		;;
	"stop mailarray")
		stop_node "$node"
		echo "(n$node stopped)"
		;;
	*) fail "systemctl $*: not a command the guide uses" ;;
	esac
	exit 0
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/deploy-walkthrough.XXXXXX")
# The service user must reach the per-node roots below it.
chmod 0755 "$work"
safe=$work/safehost # where the guide's "safe host" steps run
mkdir -p "$safe"
cat >"$work/systemctl.sh" <<'EOF'
#!/usr/bin/env bash
# Stand-in for systemctl: the walkthrough calls back into its script.
exec "$WT_MAIN" "$@"
EOF
chmod 0755 "$work/systemctl.sh"
export WT_MAIN=$root/scripts/deploy-walkthrough.sh


[[ -n $isroot ]] || say "not root: skipping the service user, ownership and permission steps (the nodes run as $(id -un))"

# Ports: one set for every node, each node on its own loopback address
# (127.0.0.11..13 for the guide's 192.0.2.11..13). The guide's port on the
# left, ours on the right.
# Bases stay below the kernel's ephemeral range (32768 up), which it hands
# to outgoing connections: a port checked free there can be another test's
# source port by the time a node binds it.
pick_base() {
	local b p used
	for _ in $(seq 1 50); do
		b=$((20000 + (RANDOM % 120) * 100))
		used=""
		for p in $(seq "$b" $((b + 8))); do
			for i in 1 2 3; do
				if (exec 3<>"/dev/tcp/127.0.0.1$i/$p") 2>/dev/null; then used=1; fi
			done
		done
		[[ -z $used ]] && { echo "$b"; return; }
	done
	fail "no free port range"
}
base=$(pick_base)
declare -A port=([25]=$base [110]=$((base + 1)) [995]=$((base + 2)) [143]=$((base + 3)) [993]=$((base + 4))
	[53]=$((base + 5)) [8080]=$((base + 6)) [7000]=$((base + 7)) [7946]=$((base + 8)))
ip() { echo "127.0.0.1$1"; }

# block HEADING N prints the Nth ```sh (or ```yaml) block under the guide's heading whose
# title is HEADING (numbering ignored), up to the next heading.
block() {
	awk -v want="$1" -v n="$2" '
		/^#+ / { t = $0; sub(/^#+ ([0-9]+\. )?/, "", t); in_sec = (t == want); next }
		in_sec && /^```(sh|yaml)$/ { k++; if (k == n) { on = 1; found = 1 }; next }
		/^```/ { on = 0; next }
		on { print }
		END { if (!found) exit 1 }
	' "$guide" || fail "docs/deploy.md: no sh block $2 under \"$1\""
}

# localize NODE moves the guide's paths under node NODE's root and its
# addresses and ports onto loopback. Its output is what runs.
localize() {
	local r=$work/n$1 sed_ports="" p
	for p in "${!port[@]}"; do
		sed_ports+="s/\\b(127\\.0\\.0\\.1[0-9]):$p\\b/\\1:${port[$p]}/g;"
	done
	sed -E "
		s#\\b127\\.0\\.0\\.1:8080\\b#$(ip "$1"):8080#g
		s#192\\.0\\.2\\.1#127.0.0.1#g
		/^useradd/!s#/var/lib/mailarray#$r/var/lib/mailarray#g
		s#/etc/mailarray#$r/etc/mailarray#g
		s#/usr/local/bin/#$r/usr/local/bin/#g
		s#/etc/systemd/system/#$r/etc/systemd/system/#g
		$sed_ports"
}

# The guide's commands run with these stand-ins for what a test cannot or
# must not do to the machine. They run in the block's own bash (run_block).
shims() {
	cat <<'EOF'
make() { [[ $* == build ]] && [[ -x bin/mailarray ]] && { echo "(make build: bin/mailarray built by make test)"; return; }; command make "$@"; }
useradd() {
	[[ -n $WT_ROOT ]] || { echo "(not root: useradd skipped)"; return; }
	id "${@: -1}" >/dev/null 2>&1 && { echo "(user ${@: -1} exists)"; return; }
	command useradd "$@"
}
install() {
	if [[ -z $WT_ROOT ]]; then
		local a=() skip=""
		for x in "$@"; do
			if [[ -n $skip ]]; then skip=""; continue; fi
			case $x in -o|-g) skip=1 ;; *) a+=("$x") ;; esac
		done
		set -- "${a[@]}"
	fi
	command install "$@"
}
chgrp() { [[ -n $WT_ROOT ]] && command chgrp "$@" || echo "(not root: chgrp skipped)"; }
systemctl() { "$WT_SCRIPT" --systemctl "$WT_NODE" "$@"; }
EOF
}

# run_block NODE DIR [STDIN]: runs the guide's block read on stdin (already
# localized) for node NODE in directory DIR, bounded in time.
run_block() {
	local node=$1 dir=$2 text
	text=$(cat)
	echo "--- n$node, in $dir:"
	sed 's/^/    $ /' <<<"$text"
	(
		cd "$dir"
		export WT_ROOT=$isroot WT_NODE=$node WT_SCRIPT=$work/systemctl.sh WT_WORK=$work
		export PATH=$work/n$node/usr/local/bin:$PATH
		timeout 180 bash -euo pipefail -c "$(shims)
$text" <"${3:-/dev/null}"
	) || fail "the guide's block above failed on n$node"
}

# wait_for SECONDS DESCRIPTION COMMAND...: polls COMMAND until it succeeds.
wait_for() {
	local secs=$1 what=$2 deadline=$((SECONDS + $1))
	shift 2
	until "$@" >/dev/null 2>&1; do
		((SECONDS < deadline)) || fail "$what: not after ${secs}s"
		sleep 0.2
	done
}

cleanup() {
	local rc=$? i
	for i in 1 2 3; do stop_node "$i"; done
	if ((rc != 0)); then
		for i in 1 2 3; do
			[[ -f $work/n$i/journal.log ]] && { echo "--- the end of n$i's log:" >&2; tail -n 20 "$work/n$i/journal.log" >&2; }
		done
	fi
	if [[ -n ${KEEP:-} ]]; then say "kept $work"; else rm -rf "$work"; fi
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

say "ports from $base; nodes on $(ip 1), $(ip 2), $(ip 3); work in $work"

# --- 1. Install --------------------------------------------------------

for i in 1 2 3; do
	mkdir -p "$work/n$i/usr/local/bin" "$work/n$i/var/lib" "$work/n$i/etc/systemd/system"
	chmod -R 0755 "$work/n$i"
	block Install 1 | localize "$i" | run_block "$i" "$root"
done
if [[ -n $isroot ]]; then
	id "$svc_user" >/dev/null || fail "the guide's useradd made no user $svc_user"
	[[ $(stat -c %U "$work/n1/var/lib/mailarray") == "$svc_user" ]] || fail "the data directory is not the service user's"
fi

# --- 2. Configure ------------------------------------------------------

# Secrets: each of the guide's commands, keyed by its comment.
declare -A secret=()
while read -r line; do
	[[ $line =~ ^head\ -c\ [0-9]+\ /dev/urandom\ \|\ base64\ +#\ [a-z-]+$ ]] ||
		fail "docs/deploy.md, Configure, block 2: '$line' is not a secret's command (head ... | base64  # KEY)"
	key=${line##*# }
	secret[$key]=$(bash -c "${line%%#*}")
	[[ ${#secret[$key]} -ge 40 ]] || fail "secret $key: '${secret[$key]}' is short"
done < <(block Configure 2)
for k in gossip-key peer-key admin-token ingest-token; do
	[[ -n ${secret[$k]:-} ]] || fail "the guide generates no $k"
done

# setkey FILE KEY VALUE sets a top-level key of the example, which must be
# there exactly once (so a renamed key fails here, not in production).
setkey() {
	local n
	n=$(grep -c "^$2:" "$1" || true)
	[[ $n == 1 ]] || fail "example config: key $2 appears $n times"
	sed -i -E "s#^$2:.*#$2: $3#" "$1"
}
password=$(head -c 12 /dev/urandom | base64 | tr -d '/+=')
for i in 1 2 3; do
	block Configure 1 | localize "$i" | run_block "$i" "$root"
	conf=$work/n$i/etc/mailarray/mailarray.yaml
	# The guide's paths in the example, moved like its commands.
	localize "$i" <"$conf" >"$conf.new" && cat "$conf.new" >"$conf" && rm "$conf.new"
	setkey "$conf" name "n$i"
	setkey "$conf" advertise "$(ip "$i")"
	setkey "$conf" peer "$(ip "$i"):${port[7000]}"
	setkey "$conf" gossip "$(ip "$i"):${port[7946]}"
	for l in smtp:25 pop3:110 pop3s:995 imap:143 imaps:993 dns:53 http:8080; do
		setkey "$conf" "${l%%:*}" "$(ip "$i"):${port[${l#*:}]}"
	done
	# join: the other two (the guide: listing them does no harm).
	others=()
	for j in 1 2 3; do ((j == i)) || others+=("\"$(ip "$j"):${port[7946]}\""); done
	awk -v v="[$(
		IFS=,
		echo "${others[*]}"
	)]" '/^join:/ { print "join: " v; skip = 1; next } skip && /^  - / { next } { skip = 0; print }' "$conf" >"$conf.new" && cat "$conf.new" >"$conf" && rm "$conf.new"
	setkey "$conf" gossip-profile local # loopback failure detection
	for k in "${!secret[@]}"; do setkey "$conf" "$k" "${secret[$k]}"; done
	# SPF/DMARC lookups of the test's sender domain go to the node's own
	# DNS, authoritative for it (the example names a local resolver).
	grep -q '^    resolver: ' "$conf" || fail "example config: pipeline.auth.resolver is gone"
	sed -i -E "s#^    resolver: .*#    resolver: $(ip "$i"):${port[53]}#" "$conf"
done
# The users file: the guide's block on n1, the same file on the others.
printf '%s\n' "$password" >"$work/password"
block Configure 3 | localize 1 | run_block 1 "$safe" "$work/password"
grep -q '^alice@example.com:{BCRYPT}\$2a\$' "$work/n1/etc/mailarray/users" || fail "the users file has no hash for alice: $(cat "$work/n1/etc/mailarray/users")"
for i in 2 3; do cp -p "$work/n1/etc/mailarray/users" "$work/n$i/etc/mailarray/users"; done

# --- Certificates ------------------------------------------------------

block Certificates 1 | localize 1 | run_block 1 "$safe"
[[ -s $safe/ca/ca.pem && -s $safe/n3/n3-key.pem && -s $safe/fullchain.pem ]] || fail "the guide's certificate commands made no CA, node pairs or trial pair"
for i in 1 2 3; do
	block Certificates 2 | sed -E "s/\\bn1\\b/n$i/g" | localize "$i" | run_block "$i" "$safe"
done
# The guide's configuration lines for the certificates, with the node's
# name, set in each node's copy of the example; every file they name must
# be one the guide installed.
for i in 1 2 3; do
	conf=$work/n$i/etc/mailarray/mailarray.yaml
	while read -r k v; do
		setkey "$conf" "${k%:}" "$v"
		[[ -s $v ]] || fail "n$i: $k $v: the guide installs no such file"
	done < <(block Certificates 3 | sed -E "s/\\bn1\\b/n$i/g" | localize "$i")
done

# --- 4. Start ----------------------------------------------------------

if [[ -n $isroot ]]; then
	# A key the service user cannot read (the guide used to leave them
	# 0600 root): the node must say which one, as whom.
	key=$work/n1/etc/mailarray/tls/privkey.pem
	mode=$(stat -c %a "$key")
	chmod 0600 "$key"
	read -r -a argv <<<"$(exec_start 1)"
	# Its own data directory and no gossip: the probe leaves nothing behind.
	out=$(timeout 60 setpriv --reuid="$(unit_key 1 User)" --regid="$(unit_key 1 Group)" --init-groups -- "${argv[@]}" \
		--data "$work/n1/var/lib/mailarray/probe" --gossip "" 2>&1 </dev/null) &&
		fail "n1 started with a key it cannot read"
	grep -q "tls-key $key: permission denied: the node runs as user $svc_user" <<<"$out" ||
		fail "an unreadable key is not named in the error: $out"
	say "an unreadable tls-key is named: $(tail -n 1 <<<"$out")"
	chmod "$mode" "$key"
fi

export MAILARRAY_ADMIN_TOKEN=""
for i in 1 2 3; do
	block Start 1 | localize "$i" | run_block "$i" "$safe"
done
status_of() { MAILARRAY_ADMIN_TOKEN=${secret[admin-token]} "$root/bin/mailarray" status --addr "$(ip "$1"):${port[8080]}"; }
whole() { # every node ready and seeing three members alive
	local i s
	for i in 1 2 3; do
		s=$(status_of "$i") || return 1
		[[ $(grep -c ' alive ' <<<"$s") == 3 ]] && grep -q '^ready: ' <<<"$s" || return 1
	done
}
wait_for 90 "three nodes alive and ready" whole
# The guide's check, as it stands, on the last node: status and readyz.
out=$(block Start 1 | grep -E '^(export|mailarray|curl) ' | localize 3 | run_block 3 "$safe")
grep -q '^ready: ' <<<"$out" && grep -q '^ready$' <<<"$out" || fail "the guide's status and readyz: $out"
# And without the token, the 401 the guide warns of.
out=$(MAILARRAY_ADMIN_TOKEN="" "$root/bin/mailarray" status --addr "$(ip 1):${port[8080]}" 2>&1) && fail "status without the admin token answered"
grep -q '401 Unauthorized: admin token required' <<<"$out" || fail "status without the token: $out"

# TLS on every client listener: the guide's openssl lines, which must all
# show our trial certificate.
for i in 1 3; do
	out=$(block Start 2 | localize "$i" | run_block "$i" "$safe")
	n=$(grep -c '^subject=CN *= *mx.example.com' <<<"$out" || true)
	[[ $n == 5 ]] || fail "n$i: $n of 5 TLS listeners showed the certificate: $out"
done
# Mutual TLS on the peer API: with the node's pair and the peer key it
# answers, without a client certificate it does not.
peer_url=https://$(ip 2):${port[7000]}/v1/status
curl -fsS -o /dev/null --max-time 10 --cacert "$safe/ca/ca.pem" --cert "$safe/n1/n1.pem" --key "$safe/n1/n1-key.pem" \
	-H "X-Mailarray-Key: ${secret[peer-key]}" "$peer_url" || fail "peer API: refused n1's certificate"
curl -fsS -o /dev/null --max-time 10 --cacert "$safe/ca/ca.pem" -H "X-Mailarray-Key: ${secret[peer-key]}" "$peer_url" 2>/dev/null &&
	fail "peer API: answered a client without a certificate"
say "TLS: SMTP, POP3, POP3S, IMAP, IMAPS show the certificate; the peer API wants the array's"

# One message: in through n2 by SMTP with STARTTLS (verified against the
# trial certificate), out through n3 by POP3S and n1 by IMAPS.
token=walkthrough-$RANDOM$RANDOM
printf 'From: bob@example.com\r\nTo: alice@example.com\r\nSubject: %s\r\n\r\nfollowed docs/deploy.md\r\n' "$token" >"$work/msg"
tlsc=(--cacert "$safe/fullchain.pem")
curl -fsS --max-time 30 --ssl-reqd "${tlsc[@]}" --resolve "mx.example.com:${port[25]}:$(ip 2)" \
	"smtp://mx.example.com:${port[25]}" --mail-from bob@example.com --mail-rcpt alice@example.com -T "$work/msg" ||
	fail "SMTP STARTTLS delivery through n2"
pop3s() { curl -fsS --max-time 10 "${tlsc[@]}" --resolve "pop.example.com:${port[995]}:$(ip "$1")" -u "alice@example.com:$password" "pop3s://pop.example.com:${port[995]}/1"; }
imaps() { curl -fsS --max-time 10 "${tlsc[@]}" --resolve "imap.example.com:${port[993]}:$(ip "$1")" -u "alice@example.com:$password" "imaps://imap.example.com:${port[993]}/INBOX;UID=1"; }
# (Output is taken whole before grep -q: under pipefail, grep -q's early
# exit would fail the writer with SIGPIPE now and then.)
has_msg() { local out; out=$("$1" "$2") && grep -q "$token" <<<"$out"; }
wait_for 30 "the message read back by POP3S on n3" has_msg pop3s 3
wait_for 30 "the message read back by IMAPS on n1" has_msg imaps 1
say "a message sent by SMTP STARTTLS to n2 was read back by POP3S on n3 and IMAPS on n1"

# --- 8. Upgrades -------------------------------------------------------

# The operator exported the admin token in section 4.
export MAILARRAY_ADMIN_TOKEN=${secret[admin-token]}
# A binary of another version, as a release would be.
newver=walkthrough-upgrade
if ! (cd "$root" && CGO_ENABLED=0 go build -trimpath -ldflags "-X main.version=$newver" -o "$safe/mailarray.new" ./cmd/mailarray); then
	say "could not build a binary of another version (no go here?): the upgrade installs the same binary"
	newver=$("$root/bin/mailarray" version | awk '{print $2}')
	cp "$root/bin/mailarray" "$safe/mailarray.new"
fi
for i in 1 2 3; do
	block Upgrades 1 | localize "$i" | run_block "$i" "$safe"
	out=$(status_of "$i") && grep -q "^version $newver " <<<"$out" || fail "n$i does not report version $newver after its upgrade"
	# The guide's last line reads under-replicated; the next node waits
	# until it is 0, as the guide says.
	under0() { local out; out=$(status_of "$1") && grep -q '^under-replicated messages: 0$' <<<"$out"; }
	wait_for 60 "n$i: under-replicated 0 after its upgrade" under0 "$i"
done
metrics() { curl -fsS --max-time 10 -H "Authorization: Bearer ${secret[admin-token]}" "http://$(ip "$1"):${port[8080]}/metrics"; }
for i in 1 2 3; do
	out=$(metrics "$i") && grep -q "^mailarray_build_info{.*version=\"$newver\"" <<<"$out" || fail "n$i: mailarray_build_info is not $newver"
done
wait_for 30 "the message read back by POP3S on n2 after the upgrade" has_msg pop3s 2
say "rolling upgrade: every node reports $newver (status, mailarray_build_info); the message is still there"

# --- the end -----------------------------------------------------------

pids=()
for i in 1 2 3; do pids+=("$(<"$work/n$i/pid")"); done
for i in 1 2 3; do stop_node "$i"; done
for p in "${pids[@]}"; do
	kill -0 "$p" 2>/dev/null && fail "pid $p still running after the stop"
done
for i in 1 2 3; do
	grep -q 'mailarray: stopped' "$work/n$i/journal.log" || fail "n$i did not stop cleanly"
done
say "ok: docs/deploy.md followed end to end on loopback; every node stopped"

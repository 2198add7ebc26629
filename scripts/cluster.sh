#!/usr/bin/env bash
# cluster.sh runs a three-node mailarray cluster on loopback (R=2, W=2) for
# trying it by hand, and stops it cleanly on Ctrl-C or SIGTERM.
#
#   make cluster                  # builds bin/mailarray, then runs this
#   CLUSTER_SMTP_PORT=3525 scripts/cluster.sh
#
# Node i (i = 1..3) listens on base port + i - 1 of each service. Base
# ports and other settings come from the environment:
#
#   CLUSTER_SMTP_PORT   2525    CLUSTER_POP3_PORT   1110
#   CLUSTER_DNS_PORT    5353    CLUSTER_HTTP_PORT   8080
#   CLUSTER_IMAP_PORT   1143
#   CLUSTER_PEER_PORT   7000    CLUSTER_GOSSIP_PORT 7946
#   CLUSTER_DIR         <repo>/tmp/cluster   (users file, data, logs)
#   CLUSTER_KEEP        unset: start from empty data dirs; 1: keep old mail
#   CLUSTER_READY_SECS  30      how long to wait for the nodes to be ready
#   MAILARRAY           <repo>/bin/mailarray
#
# Logs go to $CLUSTER_DIR/nN.log, each node's pid to $CLUSTER_DIR/nN.pid.
# The nodes run in their own sessions so that Ctrl-C reaches only this
# script, which then sends each node one SIGTERM (a second signal would cut
# the node's shutdown grace short) and waits for all of them.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bin=${MAILARRAY:-$root/bin/mailarray}
dir=${CLUSTER_DIR:-$root/tmp/cluster}
host=127.0.0.1
nodes=3
domain=example.com
smtp_base=${CLUSTER_SMTP_PORT:-2525}
pop3_base=${CLUSTER_POP3_PORT:-1110}
imap_base=${CLUSTER_IMAP_PORT:-1143}
dns_base=${CLUSTER_DNS_PORT:-5353}
http_base=${CLUSTER_HTTP_PORT:-8080}
peer_base=${CLUSTER_PEER_PORT:-7000}
gossip_base=${CLUSTER_GOSSIP_PORT:-7946}
ready_secs=${CLUSTER_READY_SECS:-30}

die() {
	echo "cluster: $*" >&2
	exit 1
}

for v in smtp_base pop3_base imap_base dns_base http_base peer_base gossip_base ready_secs; do
	[[ ${!v} =~ ^[0-9]+$ ]] || die "$v: '${!v}' is not a number"
done
for v in smtp_base pop3_base imap_base dns_base http_base peer_base gossip_base; do
	((${!v} >= 1 && ${!v} + nodes - 1 <= 65535)) || die "$v: ${!v} is out of range"
done
[[ -x $bin ]] || die "$bin not found or not executable (run make build, or set MAILARRAY)"
command -v curl >/dev/null || die "curl is needed to check readiness"

port() { # port SERVICE_BASE NODE_INDEX
	echo $(($1 + $2 - 1))
}

# A node of an earlier run that is still up would hold the ports and the
# data: say so rather than fight it.
for i in $(seq 1 $nodes); do
	pidfile=$dir/n$i.pid
	if [[ -f $pidfile ]]; then
		old=$(<"$pidfile")
		if [[ $old =~ ^[0-9]+$ ]] && kill -0 "$old" 2>/dev/null && grep -qa mailarray "/proc/$old/cmdline" 2>/dev/null; then
			die "node n$i of an earlier run is still running (pid $old); stop it with: kill $old"
		fi
		rm -f "$pidfile"
	fi
done

mkdir -p "$dir"
if [[ -z ${CLUSTER_KEEP:-} ]]; then
	for i in $(seq 1 $nodes); do
		rm -rf "${dir:?}/n$i"
	done
fi
users=$dir/users
cat >"$users" <<EOF
# mailbox directory of the demo cluster: address:{SCHEME}password[:options]
alice@$domain:{PLAIN}secret
bob@$domain:{PLAIN}secret
EOF

declare -a pids=()   # pids[i] is node n(i+1)
declare -A exited=() # exited[i] is node n(i+1)'s exit status, once reaped
stopping=""

# reap waits for node i to exit and records its status. A trapped signal
# interrupts wait, so it waits again while the process exists.
reap() {
	local i=$1 pid=${pids[$1]} st
	while :; do
		st=0
		wait "$pid" 2>/dev/null || st=$?
		kill -0 "$pid" 2>/dev/null || break
	done
	exited[$i]=$st
	rm -f "$dir/n$((i + 1)).pid"
}

# stop sends each running node one SIGTERM and waits for all of them. A
# second Ctrl-C sends a second SIGTERM, which ends a node's grace period.
stop() {
	local rc=$? i
	[[ -n $stopping ]] && return
	stopping=1
	trap 'echo "cluster: second signal: nodes stop at once"; for i in "${!pids[@]}"; do [[ -n ${exited[$i]:-} ]] || kill -TERM "${pids[$i]}" 2>/dev/null || true; done' INT TERM
	if ((${#pids[@]} > 0)); then
		echo
		echo "cluster: stopping nodes (SIGTERM)..."
		for i in "${!pids[@]}"; do
			[[ -n ${exited[$i]:-} ]] || kill -TERM "${pids[$i]}" 2>/dev/null || true
		done
		local clean=1
		for i in "${!pids[@]}"; do
			[[ -n ${exited[$i]:-} ]] && continue
			reap "$i"
			echo "cluster: n$((i + 1)) (pid ${pids[$i]}) exited with status ${exited[$i]}"
			((exited[$i] == 0)) || clean=""
		done
		# Stopped on request (Ctrl-C, SIGTERM) and every node shut down
		# cleanly: that is success, not an error for make to report.
		if [[ $rc -ge 128 && -n $clean ]]; then
			echo "cluster: stopped"
			rc=0
		fi
	fi
	exit "$rc"
}
trap stop EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

for i in $(seq 1 $nodes); do
	name=n$i
	args=(serve
		--name "$name"
		--data "$dir/$name"
		--domain "$domain"
		--users "$users"
		--smtp "$host:$(port "$smtp_base" "$i")"
		--pop3 "$host:$(port "$pop3_base" "$i")"
		--imap "$host:$(port "$imap_base" "$i")"
		--dns "$host:$(port "$dns_base" "$i")"
		--http "$host:$(port "$http_base" "$i")"
		--peer "$host:$(port "$peer_base" "$i")"
		--gossip "$host:$(port "$gossip_base" "$i")"
		--gossip-profile local
		--replicas 2 --write-quorum 2)
	# Every node but the first joins the first; the first needs no join
	# (the others reach it) and rejoins through its serf snapshot on restart.
	if ((i > 1)); then
		args+=(--join "$host:$gossip_base")
	fi
	setsid "$bin" "${args[@]}" >"$dir/$name.log" 2>&1 </dev/null &
	pids+=($!)
	echo $! >"$dir/$name.pid"
done

# alive_members prints how many members node i sees alive.
alive_members() {
	"$bin" status --json --addr "$host:$(port "$http_base" "$1")" 2>/dev/null |
		grep -c '"status": "alive"' || true
}

echo "cluster: starting $nodes nodes (logs in $dir/n*.log)..."
deadline=$((SECONDS + ready_secs))
for i in $(seq 1 $nodes); do
	while :; do
		if ! kill -0 "${pids[$((i - 1))]}" 2>/dev/null; then
			echo "cluster: n$i exited during startup; the end of $dir/n$i.log:" >&2
			tail -n 15 "$dir/n$i.log" >&2 || true
			exit 1
		fi
		if curl -fsS -o /dev/null --max-time 2 "http://$host:$(port "$http_base" "$i")/readyz" 2>/dev/null &&
			(($(alive_members "$i") == nodes)); then
			break
		fi
		if ((SECONDS >= deadline)); then
			echo "cluster: n$i not ready after ${ready_secs}s; the end of $dir/n$i.log:" >&2
			tail -n 15 "$dir/n$i.log" >&2 || true
			exit 1
		fi
		sleep 0.2
	done
done

p() { port "$1" "$2"; }
cat <<EOF

cluster: $nodes nodes ready, R=2 W=2, domain $domain, mailboxes alice@$domain and bob@$domain (password: secret)

  node  pid       smtp   pop3   imap   dns    http   peer   gossip
EOF
for i in $(seq 1 $nodes); do
	printf '  n%-3d  %-8s  %-5s  %-5s  %-5s  %-5s  %-5s  %-5s  %s\n' "$i" "${pids[$((i - 1))]}" \
		"$(p "$smtp_base" "$i")" "$(p "$pop3_base" "$i")" "$(p "$imap_base" "$i")" "$(p "$dns_base" "$i")" \
		"$(p "$http_base" "$i")" "$(p "$peer_base" "$i")" "$(p "$gossip_base" "$i")"
done
cat <<EOF

Try it (copy and paste):

  # ask node 1's DNS where mail for $domain goes, and where to read it
  dig @$host -p $(p "$dns_base" 1) +short MX $domain
  dig @$host -p $(p "$dns_base" 1) +short A pop.$domain

  # send through node 2
  swaks --server $host:$(p "$smtp_base" 2) --from bob@$domain --to alice@$domain --header 'Subject: hello' --body 'Hello from the array'
  printf 'Subject: hi\r\n\r\nvia curl\r\n' | curl -sS smtp://$host:$(p "$smtp_base" 2) --mail-from bob@$domain --mail-rcpt alice@$domain -T -

  # read through node 3: list, then fetch message 1
  curl -sS pop3://$host:$(p "$pop3_base" 3)/ -u alice@$domain:secret
  curl -sS pop3://$host:$(p "$pop3_base" 3)/1 -u alice@$domain:secret

  # the same mailbox over IMAP on node 1, and in a browser (webmail)
  curl -sS 'imap://$host:$(p "$imap_base" 1)/INBOX;UID=1' -u alice@$domain:secret
  open http://$host:$(p "$http_base" 1)/

  # a fax (TIFF) for alice through node 2's gateway (loopback needs no token)
  curl -sS --data-binary @page.tif -H 'Content-Type: image/tiff' 'http://$host:$(p "$http_base" 2)/v1/ingest/fax?to=alice@$domain&from=%2B15550100'

  # members, mirroring table, replication and rebuild progress
  $bin status --addr $host:$(p "$http_base" 1)
  curl -sS http://$host:$(p "$http_base" 1)/v1/status

  # failover: kill a node outright, read again from another, watch the rebuild
  kill -9 ${pids[0]}

Ctrl-C stops the cluster.
EOF

# Wait for a signal. A node that exits (killed to try failover, say) is
# reported and the others keep running; when none is left, stop.
while ((${#exited[@]} < nodes)); do
	live=()
	for i in "${!pids[@]}"; do
		[[ -n ${exited[$i]:-} ]] || live+=("${pids[$i]}")
	done
	pid="" st=0
	wait -n -p pid "${live[@]}" 2>/dev/null || st=$?
	[[ -n $pid ]] || continue
	for i in "${!pids[@]}"; do
		if [[ ${pids[$i]} == "$pid" ]]; then
			exited[$i]=$st
			rm -f "$dir/n$((i + 1)).pid"
			echo "cluster: n$((i + 1)) (pid $pid) exited with status ${exited[$i]}; the others keep running"
		fi
	done
done
echo "cluster: every node has exited"

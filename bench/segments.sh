#!/bin/bash
# Run: sudo bash bench/segments.sh DIR [DIR ...] [-n requests]
# TCP segments per request of the 4-hop chain (get -> map -> scale -> movingAvg, the fixture
# table), for each build DIR (a folder with a release dyninka-host and libDyninkaFixture.so). Each
# build runs in a network namespace of its own, so the kernel's counters (nstat) see only its
# traffic: hey's connection to get and the three hop connections. Prints segments per request and
# per connection, pure ACKs and resets. Needs root (ip netns); the namespace is removed at the end.
set -euo pipefail
n=2000
dirs=()
while [ $# -gt 0 ]; do
    case $1 in
        -n) n=$2; shift 2 ;;
        *) dirs+=("$1"); shift ;;
    esac
done
[ ${#dirs[@]} -gt 0 ] || { echo "usage: bench/segments.sh DIR [DIR ...] [-n requests]" >&2; exit 2; }
command -v hey >/dev/null || { echo "segments: hey is missing (scripts/bootstrap --with-bench)" >&2; exit 1; }
ns=dyninka-segments-$$
cleanup() { ip netns pids "$ns" 2>/dev/null | xargs -r kill 2>/dev/null || true; ip netns del "$ns" 2>/dev/null || true; }
trap cleanup EXIT
route='Dyninka-Route: map().scale(by: 1.0).movingAvg()'
peers="get=127.0.0.1:39201,map=127.0.0.1:39202,scale=127.0.0.1:39203,movingAvg=127.0.0.1:39204"
echo "segments: $n requests per build, hey -c 10 -disable-keepalive, 4 hops (4 connections) per request"
for dir in "${dirs[@]}"; do
    ip netns add "$ns"
    ip netns exec "$ns" ip link set lo up
    i=0
    for service in get map scale movingAvg; do
        i=$((i + 1))
        ip netns exec "$ns" "$dir/dyninka-host" serve --app "$dir/libDyninkaFixture.so" --service $service \
            --port 3920$i --peers "$peers" --log-level error >/dev/null &
    done
    for _ in $(seq 50); do ip netns exec "$ns" curl -s -o /dev/null http://127.0.0.1:39204/healthz && break; sleep 0.1; done
    # Absolute counters of the namespace (nstat's history file is not per namespace), before and after.
    before=$(ip netns exec "$ns" nstat -asz TcpOutSegs TcpOutRsts TcpExtTCPPureAcks)
    ip netns exec "$ns" hey -n "$n" -c 10 -disable-keepalive -m POST -d '{}' -H "$route" http://127.0.0.1:39201/ \
        | awk '/\[200\]/ {ok = $2} END {if (ok == "") print "segments: not every request was answered" > "/dev/stderr"}'
    after=$(ip netns exec "$ns" nstat -asz TcpOutSegs TcpOutRsts TcpExtTCPPureAcks)
    delta() { echo $(( $(echo "$after" | awk -v k="$1" '$1 == k {print $2}') - $(echo "$before" | awk -v k="$1" '$1 == k {print $2}') )); }
    segs=$(delta TcpOutSegs); rsts=$(delta TcpOutRsts); acks=$(delta TcpExtTCPPureAcks)
    awk -v d="$dir" -v s="$segs" -v r="$rsts" -v a="$acks" -v n="$n" 'BEGIN {
        printf "%s: %.2f segments per request (%.2f per connection), %.2f pure ACKs, %.2f RSTs per request\n", d, s / n, s / n / 4, a / n, r / n }'
    cleanup
done

#!/bin/bash
# Run: bash bench/forward_cpu_ab.sh OLD_DIR NEW_DIR [requests] [workers] [rounds]
# CPU per request (utime + stime from /proc) of one forwarding host, map -> movingAvg, for two
# builds side by side in interleaved rounds. Each DIR holds a release dyninka-host and
# libDyninkaFixture.so (.build-release-host/release of a checkout). hey runs on CPU 0, both hosts
# on CPU 1, without keep-alive. /proc counts CPU in 10 ms ticks: with 20,000 requests a figure
# is good to 0.5 microseconds. Traffic stays on 127.0.0.1; the hosts are stopped after each round.
set -euo pipefail
old=${1:?OLD_DIR}; new=${2:?NEW_DIR}; n=${3:-20000}; c=${4:-10}; rounds=${5:-4}
command -v hey >/dev/null || { echo "forward_cpu_ab: hey is missing (scripts/bootstrap --with-bench)" >&2; exit 1; }
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
round() {
    local bin=$1 label=$2
    taskset -c 1 "$bin/dyninka-host" serve --app "$bin/libDyninkaFixture.so" --service movingAvg --port 39101 --log-level error >/dev/null &
    local avg=$!
    taskset -c 1 "$bin/dyninka-host" serve --app "$bin/libDyninkaFixture.so" --service map --port 39102 \
        --peers movingAvg=127.0.0.1:39101 --log-level error >/dev/null &
    local map=$!
    for _ in $(seq 50); do curl -s -o /dev/null http://127.0.0.1:39102/healthz && break; sleep 0.1; done
    local m0 a0 m1 a1 rps
    m0=$(ticks $map); a0=$(ticks $avg)
    rps=$(taskset -c 0 hey -n "$n" -c "$c" -disable-keepalive -m POST -d '{"sensor":"s","variable":"Temperature","value":3}' \
        http://127.0.0.1:39102/ | awk '/Requests\/sec/ {print $2}')
    m1=$(ticks $map); a1=$(ticks $avg)
    kill $map $avg; wait $map $avg 2>/dev/null || true
    echo "$label: forwarding host (map) $(( (m1 - m0) * 10000000 / n )) ns/request, last hop (movingAvg) $(( (a1 - a0) * 10000000 / n )) ns/request, $rps req/s"
}
echo "forward_cpu_ab: $n requests, hey -c $c, $rounds interleaved rounds"
for _ in $(seq "$rounds"); do round "$old" old; sleep 1; round "$new" new; sleep 1; done

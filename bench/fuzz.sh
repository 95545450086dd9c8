#!/usr/bin/env bash
# Run: bench/fuzz.sh [SECONDS]   (default 60)
# Builds the libFuzzer target over the HTTP layer and the route parser (swiftc -sanitize=fuzzer,
# with AddressSanitizer) and runs it for SECONDS, starting from Tests/Fuzz/corpus. Prints the
# inputs tried and the crashes found; exits non-zero on a crash (its input is kept in the work folder).
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-60}
scripts/bootstrap >/dev/null
work=${DYNINKA_FUZZ_DIR:-/tmp/dyninka-fuzz}
mkdir -p "$work/objects" "$work/corpus" "$work/modules"
cp -n Tests/Fuzz/corpus/* "$work/corpus/" 2>/dev/null || true
cat > "$work/modules/module.modulemap" <<MAP
module CLLHTTP {
    header "$PWD/CSupport/CLLHTTP/include/CLLHTTP.h"
    export *
}
MAP
clang=$(dirname "$(command -v swiftc)")/clang
for c in CSupport/CLLHTTP/vendor/*.c; do
    "$clang" -c -O1 -g -fsanitize=fuzzer-no-link,address -ICSupport/CLLHTTP/include "$c" -o "$work/objects/$(basename "$c" .c).o"
done
swiftc -swift-version 6 -parse-as-library -module-name DyninkaFuzz -package-name Dyninka -O -g \
    -sanitize=fuzzer,address \
    -Xcc -fmodule-map-file="$work/modules/module.modulemap" -Xcc -ICSupport/CLLHTTP/include \
    Tests/Fuzz/Fuzz.swift Sources/DyninkaHTTP/*.swift Sources/DyninkaHost/Route.swift \
    "$work"/objects/*.o -o "$work/fuzz" 2>"$work/build.log" \
    || { cat "$work/build.log" >&2; echo "fuzz: the target did not build" >&2; exit 1; }
log="$work/fuzz.log"
set +e
(cd "$work" && ./fuzz -max_total_time="$seconds" -print_final_stats=1 -timeout=10 -rss_limit_mb=2048 corpus) >"$log" 2>&1
status=$?
set -e
runs=$(grep -oE 'stat::number_of_executed_units: *[0-9]+' "$log" | grep -oE '[0-9]+$' || echo 0)
crashes=$( (ls "$work"/crash-* 2>/dev/null || true) | wc -l)
echo "fuzz: $runs inputs tried in ${seconds} s, $crashes crashes (exit $status)"
if [ "$status" -ne 0 ] || [ "$crashes" -ne 0 ]; then
    tail -n 40 "$log" >&2
    exit 1
fi

#!/bin/sh
# Builds the libFuzzer harnesses (clang, ASan, UBSan) and fuzzes the core for $1 seconds in total (default
# 60), split between them: fuzz_select (selection, corpus/) and fuzz_packet (packet path, corpus-packet/).
# New corpus entries go to wasm/fuzz/out/ (ignored by git); a crash or a broken invariant in either
# harness fails the run (non-zero exit; the reproducer is written to out/ as crash-*, the log's tail shown).
set -eu
cd "$(dirname "$0")"
SECONDS_TO_RUN="${1:-60}"
SELECT_SECONDS=$((SECONDS_TO_RUN / 2))
PACKET_SECONDS=$((SECONDS_TO_RUN - SELECT_SECONDS))
[ "$SELECT_SECONDS" -ge 1 ] || SELECT_SECONDS=1 # -max_total_time=0 would mean no limit
[ "$PACKET_SECONDS" -ge 1 ] || PACKET_SECONDS=1
mkdir -p out/corpus out/corpus-packet
CFLAGS="-std=c11 -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all -Wall -Wextra -Werror"
clang $CFLAGS -o out/fuzz_select fuzz_select.c ../core.c
# PREFETCH_MIN_ENTRIES=8: the native prefetching (packet.c) runs on the harness's small tables too
clang $CFLAGS -DPREFETCH_MIN_ENTRIES=8 -o out/fuzz_packet fuzz_packet.c packet_ref.c ../packet.c ../core.c

status=0
# run NAME SECONDS CORPUS...: fuzzes, shows the log's tail, remembers a failure.
run() {
  name="$1"
  secs="$2"
  shift 2
  rc=0
  ./out/"$name" -max_total_time="$secs" -max_len=65536 -timeout=10 -print_final_stats=1 \
    -artifact_prefix=out/ "$@" >out/"$name".log 2>&1 || rc=$?
  echo "== $name ($secs s, exit $rc)"
  sed '/Recommended dictionary/,/End of recommended dictionary/d' out/"$name".log | tail -n 12
  if [ "$rc" -ne 0 ]; then
    grep -E "ERROR:|SUMMARY:|invariant broken|^    #[0-9]+ |artifact_prefix|Test unit written" out/"$name".log | head -n 40
    echo "run.sh: $name failed (exit $rc); full log: wasm/fuzz/out/$name.log" >&2
    status=1
  fi
}
run fuzz_select "$SELECT_SECONDS" out/corpus corpus
run fuzz_packet "$PACKET_SECONDS" out/corpus-packet corpus-packet
exit "$status"

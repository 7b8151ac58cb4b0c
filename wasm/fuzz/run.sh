#!/bin/sh
# Builds the libFuzzer harness (clang, ASan, UBSan) and fuzzes the core for $1 seconds (default 60) over
# the committed corpus. New corpus entries go to wasm/fuzz/out/ (ignored by git); crashes fail the run.
set -eu
cd "$(dirname "$0")"
SECONDS_TO_RUN="${1:-60}"
mkdir -p out/corpus
clang -std=c11 -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
  -Wall -Wextra -Werror -o out/fuzz_select fuzz_select.c ../core.c
./out/fuzz_select -max_total_time="$SECONDS_TO_RUN" -max_len=65536 -timeout=10 -print_final_stats=1 \
  -artifact_prefix=out/ out/corpus corpus 2>&1 | tail -n 12

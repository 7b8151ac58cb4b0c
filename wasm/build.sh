#!/bin/sh
# Builds wasm/svcplane.wasm from the freestanding C core. Needs clang and wasm-ld (Debian: clang, lld).
# The output is committed; .ci/run rebuilds it and fails when the bytes differ, so keep the flags
# deterministic (no debug info, no paths embedded).
set -eu
cd "$(dirname "$0")"
CLANG="${CLANG:-clang}"
"$CLANG" --target=wasm32 -std=c11 -O3 -nostdlib -ffreestanding -mbulk-memory \
  -Wall -Wextra -Werror -Wconversion -Wno-sign-conversion \
  -fno-ident \
  -Wl,--no-entry -Wl,--strip-all -Wl,-z,stack-size=65536 -Wl,--initial-memory=262144 \
  -o svcplane.wasm core.c ingress.c
echo "built wasm/svcplane.wasm ($(wc -c < svcplane.wasm) bytes) with $("$CLANG" --version | head -n 1)"

#!/bin/sh
# Builds the WebAssembly core from the freestanding C sources. Needs clang and wasm-ld (Debian: clang, lld).
#   svcplane.wasm         own memory, imports nothing: the default engine
#   svcplane-shared.wasm  imports a shared memory (atomics on): readers on worker threads over the tables
#                         one writer updates (ARCHITECTURE.md, "Publication"); exports __stack_pointer so
#                         each instance gets its own stack region in the shared memory
# Both are committed; .ci/run rebuilds them and fails when the bytes differ, so keep the flags
# deterministic (no debug info, no paths embedded).
set -eu
cd "$(dirname "$0")"
CLANG="${CLANG:-clang}"
SOURCES="core.c ingress.c packet.c"
COMMON="--target=wasm32 -std=c11 -O3 -nostdlib -ffreestanding -mbulk-memory -Wall -Wextra -Werror -Wconversion -Wno-sign-conversion -fno-ident"
LINK="-Wl,--no-entry -Wl,--strip-all -Wl,-z,stack-size=65536"
# shellcheck disable=SC2086
"$CLANG" $COMMON $LINK -Wl,--initial-memory=262144 -o svcplane.wasm $SOURCES
# shellcheck disable=SC2086
"$CLANG" $COMMON -matomics -mmutable-globals $LINK -Wl,--import-memory -Wl,--shared-memory \
  -Wl,--initial-memory=262144 -Wl,--max-memory=2147483648 -Wl,--export=__stack_pointer -o svcplane-shared.wasm $SOURCES
echo "built wasm/svcplane.wasm ($(wc -c < svcplane.wasm) bytes) and wasm/svcplane-shared.wasm ($(wc -c < svcplane-shared.wasm) bytes) with $("$CLANG" --version | head -n 1)"

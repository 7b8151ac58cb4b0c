/* The native engine's tables: which files make up the core and which functions they export. Included by
 * native/binding.c and by every native/unit_*.c (where it re-declares the exports after the core file's
 * definitions, so the compiler checks each entry against the real signature).
 *
 *   - A new export of the core: one line in SP_CORE_EXPORTS (name, C return type, argument count; every
 *     argument is a u32, as in the wasm ABI; returns reach JS as the wasm export's would: an int32 number,
 *     or undefined for void). src/engine/native.ts refuses an addon that lacks an export the wasm module
 *     has, so a missing line shows up as "native unavailable", never as a wrong call.
 *   - A new file of the core (a .c in wasm/build.sh): a native/unit_<name>.c like unit_core.c, one line in
 *     SP_CORE_UNITS, one entry in binding.gyp's sources (test/native.test.ts checks the list).
 *   - The core must keep no mutable statics (its state lives in host-provided contexts): native instances
 *     share one copy of the code's globals. test/native.test.ts checks every core file.
 */
#ifndef SVCPLANE_NATIVE_EXPORTS_H
#define SVCPLANE_NATIVE_EXPORTS_H

#include "../wasm/svcplane.h"

#define SP_CORE_UNITS(X) \
  X(core)                \
  X(ingress)             \
  X(packet)

#define SP_CORE_EXPORTS(X)          \
  /* wasm/core.c */                 \
  X(sp_ctx_init, i32, 4)            \
  X(sp_ctx_reader, i32, 2)          \
  X(sp_attach, i32, 3)              \
  X(sp_detach, void, 1)             \
  X(sp_select_batch, u32, 5)        \
  X(sp_ctx_quiesce, void, 1)        \
  X(sp_hash20, u32, 2)              \
  X(sp_heap_base, u32, 0)           \
  X(sp_abi_version, u32, 0)         \
  X(sp_sizeof, u32, 1)              \
  /* wasm/ingress.c */              \
  X(sp_routes_attach, i32, 3)       \
  X(sp_routes_detach, void, 1)      \
  X(sp_route, u32, 3)               \
  X(sp_route_host, u32, 3)          \
  X(sp_route_path, u32, 4)          \
  X(sp_hash_bytes, u32, 3)          \
  X(sp_route_sizeof, u32, 1)        \
  /* wasm/packet.c */               \
  X(sp_pctx_init, i32, 5)           \
  X(sp_pctx_timeout, i32, 3)        \
  X(sp_process_batch, u32, 4)       \
  X(sp_packet_sizeof, u32, 1)

#define NB_MAX_ARGS 8
#define NB_PARAMS_0 void
#define NB_PARAMS_1 u32
#define NB_PARAMS_2 u32, u32
#define NB_PARAMS_3 u32, u32, u32
#define NB_PARAMS_4 u32, u32, u32, u32
#define NB_PARAMS_5 u32, u32, u32, u32, u32
#define NB_PARAMS_6 u32, u32, u32, u32, u32, u32
#define NB_PARAMS_7 u32, u32, u32, u32, u32, u32, u32
#define NB_PARAMS_8 u32, u32, u32, u32, u32, u32, u32, u32

#define NB_DECLARE(name, ret, n) ret name(NB_PARAMS_##n);
SP_CORE_EXPORTS(NB_DECLARE)
#undef NB_DECLARE

#endif

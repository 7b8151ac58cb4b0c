/* The native engine's tables: which files make up the core, which of their statics are per-instance
 * state, and which functions they export. Included by native/binding.c and by every native/unit_*.c
 * (where it re-declares the exports after the core file's definitions, so the compiler checks each entry
 * against the real signature).
 *
 *   - A new export of the core: one line in SP_CORE_EXPORTS (name, C return type, argument count; every
 *     argument is a u32, as in the wasm ABI; returns reach JS as the wasm export's would: an int32 number,
 *     or undefined for void). src/engine/native.ts refuses an addon that lacks an export the wasm module
 *     has, so a missing line shows up as "native unavailable", never as a wrong call.
 *   - A new file of the core (a .c in wasm/build.sh): a native/unit_<name>.c like unit_core.c, one line in
 *     SP_CORE_UNITS, one entry in binding.gyp's sources.
 *   - A new mutable static in a core file: add it to that unit's NB_UNIT_STATE (test/native.test.ts
 *     checks the lists against the statics the compiler sees).
 */
#ifndef SVCPLANE_NATIVE_EXPORTS_H
#define SVCPLANE_NATIVE_EXPORTS_H

#include "../wasm/svcplane.h"

#define SP_CORE_UNITS(X) \
  X(core)                \
  X(ingress)

#define SP_CORE_EXPORTS(X)          \
  /* wasm/core.c */                 \
  X(sp_attach, i32, 2)              \
  X(sp_detach, void, 0)             \
  X(sp_affinity_init, i32, 3)       \
  X(sp_select_batch, u32, 4)        \
  X(sp_hash20, u32, 2)              \
  X(sp_heap_base, u32, 0)           \
  X(sp_abi_version, u32, 0)         \
  X(sp_sizeof, u32, 1)              \
  /* wasm/ingress.c */              \
  X(sp_routes_attach, i32, 2)       \
  X(sp_routes_detach, void, 0)      \
  X(sp_route, u32, 2)               \
  X(sp_hash_bytes, u32, 3)          \
  X(sp_route_sizeof, u32, 1)

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

/* What each unit provides to the binding (native/unit.h defines them). */
#define NB_UNIT_DECLS(unit)                                   \
  unsigned long nb_state_size_##unit(void);                   \
  void nb_state_save_##unit(void *dst);                       \
  void nb_state_load_##unit(const void *src);                 \
  extern const char nb_state_names_##unit[];
SP_CORE_UNITS(NB_UNIT_DECLS)
#undef NB_UNIT_DECLS

#endif

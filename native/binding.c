/* svcplane native engine: the C core (wasm/core.c, wasm/ingress.c) compiled natively, behind a small
 * Node-API binding.
 *
 * The TypeScript side (src/engine/core.ts, class Core) drives this exactly as it drives the WebAssembly
 * module: it lays everything out at 32-bit offsets in one memory and calls the core's exports with
 * plain numbers. So this file provides, per instance:
 *
 *   - the memory: one address-space reservation made once, so its base never moves (ArrayBuffers handed
 *     to JS stay valid, and nothing derived from the base goes stale), committed as JS grows it, and
 *     seen from JS as an external ArrayBuffer over the same bytes (no copies per call); `grow(pages)`
 *     has WebAssembly.Memory semantics: it returns the old page count and detaches the old ArrayBuffer,
 *     and `buffer()` then returns a new one over the same base;
 *   - the core's exports, as functions of uint32 arguments returning what the wasm export returns (an
 *     int32 JS number, or undefined for void): one Node-API call per batch.
 *
 * The reservation is PROT_NONE + MAP_NORESERVE and grow() mprotects the new pages read/write: nothing is
 * committed before it is used (this also works under strict overcommit, where a 4 GiB read/write
 * mapping would be refused), and a stray access past the current size faults instead of reading zeros.
 *
 * Instances. The core keeps all its state in host-provided contexts in core memory (wasm/core.c: "no
 * mutable globals"), so instances share nothing but the platform globals sp_mem_base/sp_mem_len through
 * which the core reaches its memory: every call sets them to its instance's memory. A static added to a
 * core file would be shared by all instances (test/native.test.ts fails on one). Calls take one
 * process-wide mutex around that, so instances may also live in worker threads (their calls are then
 * serialised; an uncontended lock costs ~20 ns per call, per batch not per flow).
 *
 * The tables (core files and their exports) are in native/exports.h: adding an export is one line there.
 */
#define _DEFAULT_SOURCE 1
#define _DARWIN_C_SOURCE 1
#define NAPI_VERSION 8
#include <node_api.h>

#include <errno.h>
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "exports.h"

#define NB_BINDING_VERSION 1
#define NB_PAGE 65536ull
#define NB_HUGE_ALIGN (2ull << 20)

/* The platform layer's memory (wasm/platform.h): the active instance's. */
u8 *sp_mem_base;
u64 sp_mem_len;

struct instance {
  u8 *map;             /* the mapping, for munmap */
  u64 map_len;
  u8 *base;            /* offset 0 of core memory (2 MiB aligned, for huge pages) */
  u64 reserved;        /* bytes usable from base */
  u64 len;             /* bytes committed and visible (a multiple of 64 KiB) */
  u32 refs;            /* JS objects that point here: the functions and the live ArrayBuffers */
  napi_ref buffer;     /* weak: the current ArrayBuffer, detached on grow */
  u64 buffer_len;      /* its length */
};

static pthread_mutex_t nb_lock = PTHREAD_MUTEX_INITIALIZER;
static struct instance *nb_active; /* whose memory sp_mem_base/sp_mem_len point at */

static void activate(struct instance *in) {
  nb_active = in;
  sp_mem_base = in->base;
  sp_mem_len = in->len;
}

static void release(struct instance *in) {
  pthread_mutex_lock(&nb_lock);
  int last = --in->refs == 0;
  if (last && nb_active == in) {
    nb_active = NULL;
    sp_mem_base = NULL;
    sp_mem_len = 0;
  }
  pthread_mutex_unlock(&nb_lock);
  if (last) {
    munmap(in->map, (size_t)in->map_len);
    free(in);
  }
}

static void retain(struct instance *in) {
  pthread_mutex_lock(&nb_lock);
  in->refs++;
  pthread_mutex_unlock(&nb_lock);
}

static void finalize_ref(napi_env env, void *data, void *hint) {
  (void)env;
  (void)data;
  release((struct instance *)hint);
}

/* ---- errors ---- */

static napi_value throw_error(napi_env env, const char *code, const char *msg) {
  napi_throw_error(env, code, msg);
  return NULL;
}

static napi_value throw_range(napi_env env, const char *msg) {
  napi_throw_range_error(env, "ERR_SVCPLANE_NATIVE_MEMORY", msg);
  return NULL;
}

#define NB_CHECK(env, call)                                                                      \
  do {                                                                                           \
    if ((call) != napi_ok) {                                                                     \
      const napi_extended_error_info *nb_info = NULL;                                            \
      napi_get_last_error_info((env), &nb_info);                                                 \
      bool nb_pending = false;                                                                   \
      napi_is_exception_pending((env), &nb_pending);                                             \
      if (!nb_pending)                                                                           \
        napi_throw_error((env), "ERR_SVCPLANE_NATIVE",                                           \
                         nb_info && nb_info->error_message ? nb_info->error_message              \
                                                           : "Node-API call failed: " #call);     \
      return NULL;                                                                               \
    }                                                                                            \
  } while (0)

/* Reads `want` uint32 arguments (ToUint32, as wasm's i32 parameters) and the instance. */
static int take_args(napi_env env, napi_callback_info info, size_t want, u32 *a, struct instance **in, const char *name) {
  napi_value argv[NB_MAX_ARGS];
  size_t argc = NB_MAX_ARGS;
  void *data = NULL;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, &data) != napi_ok) {
    napi_throw_error(env, "ERR_SVCPLANE_NATIVE", "napi_get_cb_info failed");
    return 0;
  }
  if (argc < want) {
    char msg[128];
    snprintf(msg, sizeof msg, "%s expects %u arguments, got %u", name, (unsigned)want, (unsigned)argc);
    napi_throw_type_error(env, "ERR_SVCPLANE_NATIVE_ARGS", msg);
    return 0;
  }
  for (size_t i = 0; i < want; i++) {
    if (napi_get_value_uint32(env, argv[i], &a[i]) != napi_ok) {
      char msg[128];
      snprintf(msg, sizeof msg, "%s: argument %u is not a number", name, (unsigned)i);
      napi_throw_type_error(env, "ERR_SVCPLANE_NATIVE_ARGS", msg);
      return 0;
    }
  }
  *in = (struct instance *)data;
  return 1;
}

/* ---- core export wrappers, generated from SP_CORE_EXPORTS ---- */

#define NB_ARGS_0
#define NB_ARGS_1 a[0]
#define NB_ARGS_2 a[0], a[1]
#define NB_ARGS_3 a[0], a[1], a[2]
#define NB_ARGS_4 a[0], a[1], a[2], a[3]
#define NB_ARGS_5 a[0], a[1], a[2], a[3], a[4]
#define NB_ARGS_6 a[0], a[1], a[2], a[3], a[4], a[5]
#define NB_ARGS_7 a[0], a[1], a[2], a[3], a[4], a[5], a[6]
#define NB_ARGS_8 a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7]

#define NB_CALL_i32(call) i32 r = (i32)(call);
#define NB_CALL_u32(call) i32 r = (i32)(call); /* wasm hands every i32 result to JS signed */
#define NB_CALL_void(call) call;
#define NB_RETURN_i32                             \
  napi_value out;                                 \
  NB_CHECK(env, napi_create_int32(env, r, &out)); \
  return out;
#define NB_RETURN_u32 NB_RETURN_i32
#define NB_RETURN_void return NULL;

#define NB_WRAP(name, ret, n)                                          \
  static napi_value nb_##name(napi_env env, napi_callback_info info) { \
    u32 a[NB_MAX_ARGS];                                                \
    struct instance *in;                                               \
    if (!take_args(env, info, n, a, &in, #name)) return NULL;          \
    (void)a;                                                           \
    pthread_mutex_lock(&nb_lock);                                      \
    activate(in);                                                      \
    NB_CALL_##ret(name(NB_ARGS_##n))                                   \
    pthread_mutex_unlock(&nb_lock);                                    \
    NB_RETURN_##ret                                                    \
  }
SP_CORE_EXPORTS(NB_WRAP)
#undef NB_WRAP

static const struct {
  const char *name;
  napi_callback cb;
} nb_exports[] = {
#define NB_ENTRY(name, ret, n) {#name, nb_##name},
    SP_CORE_EXPORTS(NB_ENTRY)
#undef NB_ENTRY
};
#define NB_EXPORT_COUNT (sizeof nb_exports / sizeof nb_exports[0])

/* ---- memory ---- */

/* buffer(): the ArrayBuffer over [base, base + len); the same object until the next grow. */
static napi_value nb_buffer(napi_env env, napi_callback_info info) {
  u32 a[1];
  struct instance *in;
  if (!take_args(env, info, 0, a, &in, "buffer")) return NULL;
  napi_value ab = NULL;
  if (in->buffer) {
    NB_CHECK(env, napi_get_reference_value(env, in->buffer, &ab));
    if (ab && in->buffer_len == in->len) return ab;
    NB_CHECK(env, napi_delete_reference(env, in->buffer));
    in->buffer = NULL;
  }
  retain(in);
  if (napi_create_external_arraybuffer(env, in->base, (size_t)in->len, finalize_ref, in, &ab) != napi_ok) {
    release(in);
    return throw_error(env, "ERR_SVCPLANE_NATIVE", "cannot create an external ArrayBuffer over core memory");
  }
  NB_CHECK(env, napi_create_reference(env, ab, 0, &in->buffer));
  in->buffer_len = in->len;
  return ab;
}

/* grow(pages): WebAssembly.Memory.prototype.grow. Returns the old size in 64 KiB pages; RangeError when
 * the reservation is exhausted. The old ArrayBuffer is detached, as wasm detaches it. */
static napi_value nb_grow(napi_env env, napi_callback_info info) {
  u32 a[1];
  struct instance *in;
  if (!take_args(env, info, 1, a, &in, "grow")) return NULL;
  u64 old = in->len;
  u64 add = (u64)a[0] * NB_PAGE;
  if (add > in->reserved - old) return throw_range(env, "core memory cannot grow past its reservation");
  if (add && mprotect(in->base + old, (size_t)add, PROT_READ | PROT_WRITE) != 0) {
    char msg[160];
    snprintf(msg, sizeof msg, "cannot commit %llu bytes of core memory: %s", (unsigned long long)add, strerror(errno));
    return throw_range(env, msg);
  }
  pthread_mutex_lock(&nb_lock);
  in->len = old + add;
  if (nb_active == in) sp_mem_len = in->len;
  pthread_mutex_unlock(&nb_lock);
  if (in->buffer) {
    napi_value ab = NULL;
    NB_CHECK(env, napi_get_reference_value(env, in->buffer, &ab));
    if (ab) napi_detach_arraybuffer(env, ab); /* best effort: the bytes stay valid either way */
    NB_CHECK(env, napi_delete_reference(env, in->buffer));
    in->buffer = NULL;
  }
  napi_value out;
  NB_CHECK(env, napi_create_int32(env, (i32)(old / NB_PAGE), &out));
  return out;
}

/* ---- instances ---- */

static int option_bool(napi_env env, napi_value obj, const char *key) {
  napi_valuetype t;
  if (!obj || napi_typeof(env, obj, &t) != napi_ok || t != napi_object) return 0;
  napi_value v;
  bool b = false;
  if (napi_get_named_property(env, obj, key, &v) != napi_ok) return 0;
  if (napi_coerce_to_bool(env, v, &v) != napi_ok || napi_get_value_bool(env, v, &b) != napi_ok) return 0;
  return b;
}

static int add_function(napi_env env, napi_value obj, const char *name, napi_callback cb, struct instance *in) {
  napi_value fn;
  if (napi_create_function(env, name, NAPI_AUTO_LENGTH, cb, in, &fn) != napi_ok) return 0;
  retain(in);
  if (napi_add_finalizer(env, fn, NULL, finalize_ref, in, NULL) != napi_ok) {
    release(in);
    return 0;
  }
  return napi_set_named_property(env, obj, name, fn) == napi_ok;
}

/* create({ hugePages }): a fresh core instance with 1 page (64 KiB) of memory. */
static napi_value nb_create(napi_env env, napi_callback_info info) {
  napi_value argv[1] = {NULL};
  size_t argc = 1;
  NB_CHECK(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  int huge = option_bool(env, argc ? argv[0] : NULL, "hugePages");

  static const u64 sizes[] = {4ull << 30, 1ull << 30, 256ull << 20};
  void *map = MAP_FAILED;
  u64 map_len = 0;
  for (size_t i = 0; i < sizeof sizes / sizeof sizes[0] && map == MAP_FAILED; i++) {
    map_len = sizes[i] + NB_HUGE_ALIGN;
    map = mmap(NULL, (size_t)map_len, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  }
  if (map == MAP_FAILED) {
    char msg[160];
    snprintf(msg, sizeof msg, "cannot reserve address space for core memory: %s", strerror(errno));
    return throw_error(env, "ERR_SVCPLANE_NATIVE_MEMORY", msg);
  }
  struct instance *in = calloc(1, sizeof *in);
  if (!in) {
    munmap(map, (size_t)map_len);
    return throw_error(env, "ERR_SVCPLANE_NATIVE_MEMORY", "out of memory");
  }
  in->map = map;
  in->map_len = map_len;
  in->base = (u8 *)(((uintptr_t)map + NB_HUGE_ALIGN - 1) & ~(uintptr_t)(NB_HUGE_ALIGN - 1));
  in->reserved = map_len - NB_HUGE_ALIGN;
  in->refs = 1; /* held by this function until the JS objects hold it */
#ifdef MADV_HUGEPAGE
  if (huge) madvise(in->base, (size_t)in->reserved, MADV_HUGEPAGE);
#endif
  if (mprotect(in->base, NB_PAGE, PROT_READ | PROT_WRITE) != 0) {
    release(in);
    return throw_error(env, "ERR_SVCPLANE_NATIVE_MEMORY", "cannot commit core memory");
  }
  in->len = NB_PAGE;

  napi_value obj, v;
  int ok = napi_create_object(env, &obj) == napi_ok;
  for (size_t i = 0; ok && i < NB_EXPORT_COUNT; i++) ok = add_function(env, obj, nb_exports[i].name, nb_exports[i].cb, in);
  ok = ok && add_function(env, obj, "buffer", nb_buffer, in);
  ok = ok && add_function(env, obj, "grow", nb_grow, in);
  ok = ok && napi_get_boolean(env, huge != 0, &v) == napi_ok && napi_set_named_property(env, obj, "hugePages", v) == napi_ok;
  ok = ok && napi_create_double(env, (double)in->reserved, &v) == napi_ok &&
       napi_set_named_property(env, obj, "reservedBytes", v) == napi_ok;
  release(in);
  if (!ok) {
    bool pending = false;
    napi_is_exception_pending(env, &pending);
    if (!pending) napi_throw_error(env, "ERR_SVCPLANE_NATIVE", "cannot create a core instance");
    return NULL;
  }
  return obj;
}

/* ---- module ---- */

static napi_value string_array(napi_env env, const char *const *names, size_t n) {
  napi_value arr, s;
  if (napi_create_array_with_length(env, n, &arr) != napi_ok) return NULL;
  for (size_t i = 0; i < n; i++) {
    if (napi_create_string_utf8(env, names[i], NAPI_AUTO_LENGTH, &s) != napi_ok) return NULL;
    if (napi_set_element(env, arr, (uint32_t)i, s) != napi_ok) return NULL;
  }
  return arr;
}

#if defined(__clang__)
#define NB_COMPILER "clang " __clang_version__
#elif defined(__GNUC__)
#define NB_COMPILER "gcc " __VERSION__
#else
#define NB_COMPILER "unknown"
#endif
#ifndef NB_CFLAGS
#define NB_CFLAGS "unknown"
#endif

NAPI_MODULE_INIT() {
  napi_value v;
  NB_CHECK(env, napi_create_function(env, "create", NAPI_AUTO_LENGTH, nb_create, NULL, &v));
  NB_CHECK(env, napi_set_named_property(env, exports, "create", v));

  const char *names[NB_EXPORT_COUNT];
  for (size_t i = 0; i < NB_EXPORT_COUNT; i++) names[i] = nb_exports[i].name;
  if (!(v = string_array(env, names, NB_EXPORT_COUNT))) return NULL;
  NB_CHECK(env, napi_set_named_property(env, exports, "exports", v));
  static const char *const units[] = {
#define NB_UNIT_NAME(u) #u,
      SP_CORE_UNITS(NB_UNIT_NAME)
#undef NB_UNIT_NAME
  };
  if (!(v = string_array(env, units, sizeof units / sizeof units[0]))) return NULL;
  NB_CHECK(env, napi_set_named_property(env, exports, "units", v));

  NB_CHECK(env, napi_create_uint32(env, NB_BINDING_VERSION, &v));
  NB_CHECK(env, napi_set_named_property(env, exports, "bindingVersion", v));
  NB_CHECK(env, napi_create_uint32(env, SP_VERSION, &v));
  NB_CHECK(env, napi_set_named_property(env, exports, "abiVersion", v));
  NB_CHECK(env, napi_create_string_utf8(env, NB_COMPILER, NAPI_AUTO_LENGTH, &v));
  NB_CHECK(env, napi_set_named_property(env, exports, "compiler", v));
  NB_CHECK(env, napi_create_string_utf8(env, NB_CFLAGS, NAPI_AUTO_LENGTH, &v));
  NB_CHECK(env, napi_set_named_property(env, exports, "cflags", v));
  return exports;
}

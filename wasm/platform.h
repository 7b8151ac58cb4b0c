/* Where the core's memory is. The host lays out everything (image, state, batches) at 32-bit offsets
 * into one memory and passes offsets, never pointers, so the TypeScript side drives both engines the same
 * way:
 *  - wasm: the module's linear memory; an offset is the address, the size is memory.size pages.
 *  - native (Node-API addon): one host buffer registered by the binding (sp_mem_base, sp_mem_len);
 *    an offset is relative to it.
 */
#ifndef SVCPLANE_PLATFORM_H
#define SVCPLANE_PLATFORM_H

#include "svcplane.h"

#ifdef __wasm__
#define EXPORT(name) __attribute__((export_name(#name))) name
static inline u64 memory_bytes(void) { return (u64)__builtin_wasm_memory_size(0) << 16; }
static inline u8 *mem_at(u32 off) { return (u8 *)(__SIZE_TYPE__)off; }
extern u8 __heap_base;
static inline u32 heap_base(void) { return (u32)(__SIZE_TYPE__)&__heap_base; }
#else
#define EXPORT(name) name
extern u8 *sp_mem_base;
extern u64 sp_mem_len;
static inline u64 memory_bytes(void) { return sp_mem_len; }
static inline u8 *mem_at(u32 off) { return sp_mem_base + off; }
static inline u32 heap_base(void) { return 64; }
#endif

/* True when [off, off + len) lies inside the memory. */
static inline int in_memory(u32 off, u64 len) { return (u64)off + len <= memory_bytes(); }

#endif

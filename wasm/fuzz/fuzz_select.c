/* libFuzzer + AddressSanitizer + UBSan harness for the C core, built natively (wasm/platform.h's native
 * branch). Input: a table image followed by flows. The image is placed at the very end of the core memory
 * buffer, so any read past it is a heap overflow ASan reports; flows are selected with affinity on, at
 * a few times, so that every path of select_one runs over whatever the image claims (the core checks
 * every offset where it uses it, since a live image changes after attach).
 *
 *   sh wasm/fuzz/run.sh 60     # build and fuzz for 60 s with the committed corpus
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "../svcplane.h"

u8 *sp_mem_base;
u64 sp_mem_len;

i32 sp_ctx_init(u32 ctx, u32 affinity, u32 capacity, u32 seed);
i32 sp_attach(u32 ctx, u32 image, u32 len);
void sp_detach(u32 ctx);
u32 sp_select_batch(u32 ctx, u32 flows, u32 results, u32 count, u32 now);

#define AFF_CAP 64u
#define MAX_FLOWS 64u

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 4) return 0;
  /* First 4 bytes: number of trailing bytes that are flows (mod a bound), so the fuzzer controls both. */
  u32 flow_bytes = ((u32)data[0] | (u32)data[1] << 8) % (MAX_FLOWS * sizeof(struct sp_flow) + 1);
  data += 4;
  size -= 4;
  if (flow_bytes > size) flow_bytes = (u32)size;
  size_t image_len = (size - flow_bytes) & ~(size_t)7;
  u32 nflows = flow_bytes / (u32)sizeof(struct sp_flow);

  /* Layout: [ctx][affinity][flows][results][image] and nothing after the image. */
  u32 ctx = 8;
  u32 aff_off = 64;
  u32 flows_off = aff_off + AFF_CAP * (u32)sizeof(struct sp_affinity);
  u32 res_off = flows_off + MAX_FLOWS * (u32)sizeof(struct sp_flow);
  u32 img_off = (res_off + MAX_FLOWS * (u32)sizeof(struct sp_result) + 7) & ~7u;
  sp_mem_len = img_off + image_len;
  sp_mem_base = malloc(sp_mem_len);
  if (!sp_mem_base) return 0;
  memset(sp_mem_base, 0, img_off);
  memcpy(sp_mem_base + img_off, data, image_len);
  memcpy(sp_mem_base + flows_off, data + image_len, (size_t)nflows * sizeof(struct sp_flow));

  if (sp_ctx_init(ctx, aff_off, AFF_CAP, 0x12345678u) != E_OK) __builtin_trap();
  if (sp_attach(ctx, img_off, (u32)image_len) == E_OK) {
    for (u32 now = 0; now < 3; now++) {
      sp_select_batch(ctx, flows_off, res_off, nflows, now * 5000u);
      const struct sp_result *r = (const struct sp_result *)(sp_mem_base + res_off);
      for (u32 i = 0; i < nflows; i++)
        if (r[i].verdict > V_DROP) __builtin_trap();
    }
  }
  /* Out-of-range requests must be refused, never followed. */
  if (sp_select_batch(ctx, (u32)sp_mem_len - 8, res_off, 1, 0) != 0) __builtin_trap();
  if (sp_attach(ctx, img_off + 8, (u32)image_len) == E_OK && image_len >= 8) __builtin_trap();
  sp_detach(ctx);
  free(sp_mem_base);
  return 0;
}

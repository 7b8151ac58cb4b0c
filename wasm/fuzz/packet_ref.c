/* wasm/packet.c again, without its fast path (fast_l4) and with its exports renamed: the reference that
 * fuzz_packet.c runs every batch through as well, to check the fast path against the whole path. */
#define SP_NO_FAST_PATH 1
#define sp_process_batch ref_process_batch
#define sp_pctx_init ref_pctx_init
#define sp_pctx_timeout ref_pctx_timeout
#define sp_packet_sizeof ref_packet_sizeof
#include "../packet.c"

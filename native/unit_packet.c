/* wasm/packet.c (packet path: conntrack, NAT, checksums) as a translation unit of the native engine. */
#include "../wasm/packet.c"
#include "unit.h"

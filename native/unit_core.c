/* wasm/core.c (L4 selection) as a translation unit of the native engine. */
#include "../wasm/core.c"
#include "unit.h"

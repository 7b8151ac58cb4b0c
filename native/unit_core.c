/* wasm/core.c (L4 selection) as a translation unit of the native engine. */
#include "../wasm/core.c"

#define NB_UNIT core
#define NB_UNIT_STATE(X) X(img) X(aff)
#include "unit.h"

/* wasm/ingress.c (Ingress routes) as a translation unit of the native engine. */
#include "../wasm/ingress.c"

#define NB_UNIT ingress
#define NB_UNIT_STATE(X) X(rt)
#include "unit.h"

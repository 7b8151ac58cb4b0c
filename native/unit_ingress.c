/* wasm/ingress.c (Ingress routes) as a translation unit of the native engine. */
#include "../wasm/ingress.c"
#include "unit.h"

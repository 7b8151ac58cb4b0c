/* Included at the end of a native/unit_<name>.c, after the core file: re-declares the core's exports
 * (native/exports.h), so that the compiler rejects an entry whose signature differs from the
 * definition it has just seen. */
#include "exports.h"

/* Included at the end of a native/unit_<name>.c, after the core file and NB_UNIT / NB_UNIT_STATE:
 * checks the file's exports against native/exports.h and gives the binding access to the file's
 * mutable statics (the per-instance state it swaps). */
#include <string.h>

#include "exports.h"

#define NB_CAT2(a, b) a##b
#define NB_CAT(a, b) NB_CAT2(a, b)
#define NB_STR2(x) #x
#define NB_STR(x) NB_STR2(x)

struct NB_CAT(nb_state_, NB_UNIT) {
#define NB_FIELD(v) __typeof__(v) v;
  NB_UNIT_STATE(NB_FIELD)
#undef NB_FIELD
};

unsigned long NB_CAT(nb_state_size_, NB_UNIT)(void) { return sizeof(struct NB_CAT(nb_state_, NB_UNIT)); }

void NB_CAT(nb_state_save_, NB_UNIT)(void *dst) {
  struct NB_CAT(nb_state_, NB_UNIT) *s = dst;
#define NB_SAVE(v) memcpy(&s->v, &v, sizeof v);
  NB_UNIT_STATE(NB_SAVE)
#undef NB_SAVE
}

void NB_CAT(nb_state_load_, NB_UNIT)(const void *src) {
  const struct NB_CAT(nb_state_, NB_UNIT) *s = src;
#define NB_LOAD(v) memcpy(&v, &s->v, sizeof v);
  NB_UNIT_STATE(NB_LOAD)
#undef NB_LOAD
}

/* "unit:static,static" for the state check in test/native.test.ts. */
#define NB_NAME(v) "," #v
const char NB_CAT(nb_state_names_, NB_UNIT)[] = NB_STR(NB_UNIT) ":" NB_UNIT_STATE(NB_NAME);
#undef NB_NAME

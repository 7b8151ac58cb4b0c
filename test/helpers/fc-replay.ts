// fast-check options that replay one counterexample: FC_SEED and FC_PATH as a failure's report gives them.
// Without FC_SEED, nothing (the property runs as configured).

export function fcReplay(): { seed?: number; path?: string; endOnFailure?: boolean } {
  const seed = process.env.FC_SEED;
  return seed ? { seed: Number(seed), path: process.env.FC_PATH, endOnFailure: true } : {};
}

// Seeded pseudo-random numbers for the data stages: the same seed gives the same datasets on every machine.

/**
 * A deterministic random stream. The generator is mulberry32 (Tommy Ettinger's 32-bit state generator):
 * tiny, fast, passes the usual statistical batteries for this kind of use, and, unlike Math.random, it can
 * be seeded, so a stage's output is a pure function of its parameters and inputs.
 */
export interface Rng {
  /** Uniform float in [0, 1) with 32 bits of resolution. */
  next(): number;
  /**
   * Uniform integer in [0, n). Uses floor(next() * n): the bias is at most n / 2^32, far below anything the
   * data stages can observe, and it keeps the number of draws per call fixed (one), which keeps streams stable.
   */
  int(n: number): number;
  /** Uniform integer in [lo, hi], both ends included. */
  intBetween(lo: number, hi: number): number;
  /** One element chosen uniformly. */
  pick<T>(items: readonly T[]): T;
  /** Fisher–Yates shuffle of a copy. */
  shuffled<T>(items: readonly T[]): T[];
}

export function createRng(seed: number): Rng {
  let state = seed >>> 0;
  const next = (): number => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const int = (n: number): number => {
    if (!Number.isInteger(n) || n <= 0) throw new RangeError(`Rng.int needs a positive integer, got ${n}`);
    return Math.floor(next() * n);
  };
  return {
    next,
    int,
    intBetween: (lo, hi) => lo + int(hi - lo + 1),
    pick: (items) => {
      if (items.length === 0) throw new RangeError('Rng.pick needs a non-empty list');
      return items[int(items.length)]!;
    },
    shuffled: (items) => {
      const out = items.slice();
      for (let i = out.length - 1; i > 0; i--) {
        const j = int(i + 1);
        [out[i], out[j]] = [out[j]!, out[i]!];
      }
      return out;
    },
  };
}

/**
 * A seed for an independent sub-stream, e.g. one per split, so that augmenting one more split never changes
 * the rows of another. FNV-1a over the label, folded with the base seed and mixed (murmur3's finaliser).
 */
export function deriveSeed(seed: number, label: string): number {
  let h = 0x811c9dc5 ^ (seed >>> 0);
  for (let i = 0; i < label.length; i++) {
    h ^= label.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

// Pause injection as the original injector does it (method section 2), as pure functions over strings and ids.
import type { Rng } from './random.ts';

/** What `encode`/`decode` the random-pause step needs; a Tokenizer from stages/lm satisfies it. */
export interface PauseCodec {
  /** Token ids of a text without BOS/EOS. */
  encode(text: string): number[];
  /** Text of ids, special tokens (the pause) kept. */
  decode(ids: number[]): string;
  /** Id of the pause token. */
  pauseId: number;
}

export interface PauseOptions {
  pauseToken: string;
  /** Regular expression source → pauses inserted after each match. */
  patterns: Record<string, number>;
  nRandomPauses: number;
  /** Draw the number of random pauses uniformly in [0, n] per text instead of always n. */
  variable: boolean;
  /** Random positions counted in tokenizer ids; without it, in words split on single spaces. */
  codec?: PauseCodec;
}

/**
 * Pattern pauses: for every pattern in order, `count` pause tokens right after each match, inserted from the
 * last match backwards so earlier offsets stay valid. A `\n` pattern also puts `count` pauses at position 0,
 * as if the text started after a line break (the original does this so the first line gets its pauses too).
 */
export function insertPatternPauses(text: string, patterns: Record<string, number>, pauseToken: string): string {
  let out = text;
  for (const [source, count] of Object.entries(patterns)) {
    if (count <= 0) continue;
    const pauses = pauseToken.repeat(count);
    const ends = [...out.matchAll(new RegExp(source, 'g'))].map((m) => m.index + m[0].length);
    for (let i = ends.length - 1; i >= 0; i--) out = out.slice(0, ends[i]) + pauses + out.slice(ends[i]);
    if (source === '\\n' || source === '\n') out = pauses + out;
  }
  return out;
}

/** How many random pauses one text gets: n, or uniform in [0, n] when variable. */
export function drawPauseCount(rng: Rng, n: number, variable: boolean): number {
  return variable ? rng.int(n + 1) : n;
}

/**
 * `k` insertion indices drawn uniformly in [0, length] (both ends included: 0 is before the first unit,
 * length after the last), with repetition, sorted from the largest down — the order they are inserted in.
 */
export function drawInsertionIndices(rng: Rng, length: number, k: number): number[] {
  const indices: number[] = [];
  for (let i = 0; i < k; i++) indices.push(rng.int(length + 1));
  return indices.sort((a, b) => b - a);
}

/** Inserts `item` before each index (largest first, so smaller indices still point at the original units). */
export function insertAt<T>(units: readonly T[], descendingIndices: readonly number[], item: T): T[] {
  const out = units.slice();
  for (const index of descendingIndices) out.splice(index, 0, item);
  return out;
}

/** Random pauses into one text: by tokenizer ids when there is a codec, else between space-separated words. */
export function insertRandomPauses(text: string, rng: Rng, opts: Pick<PauseOptions, 'pauseToken' | 'nRandomPauses' | 'variable' | 'codec'>): string {
  const k = drawPauseCount(rng, opts.nRandomPauses, opts.variable);
  if (opts.codec) {
    const ids = opts.codec.encode(text);
    return opts.codec.decode(insertAt(ids, drawInsertionIndices(rng, ids.length, k), opts.codec.pauseId));
  }
  const words = text.split(' ');
  return insertAt(words, drawInsertionIndices(rng, words.length, k), opts.pauseToken).join(' ');
}

/** One text through both steps: pattern pauses, then random pauses. */
export function injectPauses(text: string, rng: Rng, opts: PauseOptions): string {
  const withPatterns = insertPatternPauses(text, opts.patterns, opts.pauseToken);
  return opts.nRandomPauses > 0 ? insertRandomPauses(withPatterns, rng, opts) : withPatterns;
}

/**
 * A whole split: `samplesPerExample` passes over the rows, each with fresh draws from the same stream,
 * concatenated pass after pass (row order kept inside a pass). `read` picks the text, `write` builds the row.
 */
export function augmentRows<R>(
  rows: readonly R[],
  rng: Rng,
  opts: PauseOptions & { samplesPerExample: number },
  read: (row: R) => string,
  write: (row: R, text: string) => R,
): R[] {
  const out: R[] = [];
  for (let pass = 0; pass < opts.samplesPerExample; pass++) {
    for (const row of rows) out.push(write(row, injectPauses(read(row), rng, opts)));
  }
  return out;
}

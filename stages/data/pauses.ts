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

/** The pattern whose count the original also inserts at position 0: a newline character itself, not the two characters `\\n`. */
const LINE_BREAK = '\n';

/**
 * Pattern pauses exactly as the original injector places them: every match of every pattern is found on the
 * original text (so no pattern ever matches inside an inserted pause token), the matches are sorted by start
 * from the last to the first (ties keep pattern order, then match order: Python's stable sort), and `count`
 * pauses go in at each match's end. Like the original, the ends are offsets in the original text: where matches
 * of different patterns overlap, an earlier-starting match's pauses land at its stale end. A pattern that is a
 * newline character (`"\n"` in a .pipe string) also puts its count at position 0; `\\n`, the regular expression
 * for a newline written with a backslash, matches the same newlines but adds nothing at the start, as in the
 * original, which looks the key up as `"\n"`.
 */
export function insertPatternPauses(text: string, patterns: Record<string, number>, pauseToken: string): string {
  const matches: { start: number; end: number; count: number }[] = [];
  for (const [source, count] of Object.entries(patterns)) {
    for (const m of text.matchAll(new RegExp(source, 'g'))) matches.push({ start: m.index, end: m.index + m[0].length, count });
  }
  matches.sort((x, y) => y.start - x.start);
  let out = text;
  for (const { end, count } of matches) out = out.slice(0, end) + pauseToken.repeat(count) + out.slice(end);
  const atStart = patterns[LINE_BREAK] ?? 0;
  return atStart > 0 ? pauseToken.repeat(atStart) + out : out;
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
  // The original leaves a text that draws no pause as it is: no round trip through the tokenizer.
  if (k === 0) return text;
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

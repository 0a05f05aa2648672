import { test } from 'uvu';
import * as assert from 'uvu/assert';
import {
  augmentRows,
  drawInsertionIndices,
  drawPauseCount,
  injectPauses,
  insertAt,
  insertPatternPauses,
  insertRandomPauses,
} from '../../../stages/data/pauses.ts';
import { createRng } from '../../../stages/data/random.ts';

const P = '<P>';
const strip = (text: string): string => text.replaceAll(P, '');
const countP = (text: string): number => text.split(P).length - 1;

test('pattern pauses go right after every match', () => {
  assert.is(insertPatternPauses('1+2=3', { '=': 1 }, P), '1+2=<P>3');
  assert.is(insertPatternPauses('<<2*3=6>>6 and <<6+1=7>>7', { '>>': 2 }, P), '<<2*3=6>><P><P>6 and <<6+1=7>><P><P>7');
});

test('pattern pauses are inserted from the last match backwards, so every match gets them', () => {
  // Forward insertion with stale offsets would put the second group inside `bb`; backwards keeps both right.
  assert.is(insertPatternPauses('ab ab ab', { ab: 1 }, P), 'ab<P> ab<P> ab<P>');
  assert.is(insertPatternPauses('x=1, y=22', { '[0-9]+': 3 }, P), 'x=1<P><P><P>, y=22<P><P><P>');
});

test('every pattern matches the original text, so none matches inside an inserted pause token', () => {
  // Applied one after another, `a` would find the a of `pause` in the token the `=` pattern inserted.
  assert.is(insertPatternPauses('a=b', { '=': 1, a: 1 }, '<|pause|>'), 'a<|pause|>=<|pause|>b');
  assert.is(insertPatternPauses('x|y', { '\\|': 1, '[a-z]': 1 }, '<|pause|>'), 'x<|pause|>|<|pause|>y<|pause|>');
});

test('matches of all patterns go in from the last start to the first, whatever the pattern order', () => {
  assert.is(insertPatternPauses('1+2=3', { '=': 2, '\\+': 1 }, P), '1+<P>2=<P><P>3');
  assert.is(insertPatternPauses('1+2=3', { '\\+': 1, '=': 2 }, P), '1+<P>2=<P><P>3');
});

test('overlapping matches keep the original\'s stale offsets: an enclosing match\'s pauses land at its end in the original text', () => {
  // `<<2*3=6>>` (start 0, end 9) sorts after `=` (start 5, end 6); once `=`'s pause is in, offset 9 is before the 6.
  assert.is(insertPatternPauses('<<2*3=6>>6', { '<<[^>]*>>': 1, '=': 1 }, P), '<<2*3=<P><P>6>>6');
  // Same start: the earlier pattern goes in first and the later one's end is counted in the original text.
  assert.is(insertPatternPauses('a=1', { '=': 1, '=\\d': 1 }, P), 'a=<<P>P>1');
});

test('a newline pattern also puts its pauses at position 0; \\n written with a backslash does not', () => {
  // A real newline character (the .pipe string "\n", JSON "\n"): after every line break and at the start.
  assert.is(insertPatternPauses('a\nb\nc', { '\n': 2 }, P), '<P><P>a\n<P><P>b\n<P><P>c');
  assert.is(insertPatternPauses('ab', { '\n': 1 }, P), '<P>ab');
  // The regular expression \n (backslash, n) matches the same line breaks, but the original looks up "\n" for position 0.
  assert.is(insertPatternPauses('a\nb\nc', { '\\n': 2 }, P), 'a\n<P><P>b\n<P><P>c');
  assert.is(insertPatternPauses('ab', { '\\n': 1 }, P), 'ab');
});

test('a pattern that can match the empty string puts pauses at every match re.finditer finds, empty ones included', () => {
  assert.is(insertPatternPauses('ab', { 'x*': 1 }, P), '<P>a<P>b<P>');
  // Python 3.7+ and JavaScript both find (0,0), (1,3), (3,3), (4,4): an empty match right after a non-empty one.
  assert.is(insertPatternPauses('axxb', { 'x*': 1 }, P), '<P>axx<P><P>b<P>');
});

test('insertAt inserts before each index, largest first, so indices refer to the original units', () => {
  assert.equal(insertAt(['a', 'b', 'c'], [3, 1, 1, 0], P), ['<P>', 'a', '<P>', '<P>', 'b', 'c', '<P>']);
  assert.equal(insertAt([10, 20], [2, 0], 99), [99, 10, 20, 99]);
});

test('insertion indices cover [0, len] inclusive: both ends occur, nothing outside', () => {
  const rng = createRng(7);
  const seen = new Set<number>();
  for (let i = 0; i < 200; i++) for (const index of drawInsertionIndices(rng, 3, 2)) seen.add(index);
  assert.equal([...seen].sort(), [0, 1, 2, 3]);
});

test('insertion indices come sorted from the largest down', () => {
  const indices = drawInsertionIndices(createRng(9), 50, 20);
  assert.is(indices.length, 20);
  assert.equal(indices, [...indices].sort((a, b) => b - a));
});

test('a fixed count always inserts exactly n pauses', () => {
  const rng = createRng(11);
  for (let i = 0; i < 50; i++) assert.is(drawPauseCount(rng, 4, false), 4);
});

test('a variable count is uniform in [0, n]: every value occurs, none outside', () => {
  const rng = createRng(12);
  const seen = new Set<number>();
  for (let i = 0; i < 300; i++) seen.add(drawPauseCount(rng, 3, true));
  assert.equal([...seen].sort(), [0, 1, 2, 3]);
});

test('without a tokenizer random pauses go between words split on single spaces', () => {
  const rng = createRng(7);
  // Hand-checked for seed 7: 4 words, indices drawn in [0, 4]; the first text gets {4, 0, 0}, the second {3, 2, 2}.
  assert.is(insertRandomPauses('Tom has 3 pens.', rng, { pauseToken: P, nRandomPauses: 3, variable: false }), '<P> <P> Tom has 3 pens. <P>');
  assert.is(insertRandomPauses('Tom has 3 pens.', rng, { pauseToken: P, nRandomPauses: 3, variable: false }), 'Tom has <P> <P> 3 <P> pens.');
});

test('word mode keeps double spaces and newlines inside words as they were', () => {
  const text = 'a  b\nc';
  const out = insertRandomPauses(text, createRng(3), { pauseToken: P, nRandomPauses: 5, variable: false });
  assert.is(countP(out), 5);
  assert.is(out.split(' ').filter((w) => w !== P).join(' '), text);
});

test('a text that draws no random pause stays as it is, without a round trip through the tokenizer', () => {
  // A codec whose round trip is not exact (it upper-cases), as a tokenizer's can be: with k = 0 it is never used.
  const codec = { encode: (text: string) => [...text].map((c) => c.charCodeAt(0)), decode: (ids: number[]) => String.fromCharCode(...ids).toUpperCase(), pauseId: 0 };
  assert.is(insertRandomPauses('Tom has 3 pens.', createRng(1), { pauseToken: P, nRandomPauses: 0, variable: false, codec }), 'Tom has 3 pens.');
  // A variable count that draws 0 (seed 7's first draw in [0, 1]) leaves it too.
  const rng = createRng(7);
  assert.is(insertRandomPauses('Tom has 3 pens.', rng, { pauseToken: P, nRandomPauses: 1, variable: true, codec }), 'Tom has 3 pens.');
});

test('injectPauses does pattern pauses first, then random ones (seed 42 pinned)', () => {
  const out = injectPauses('1+2=<<1+2=3>>3\n#### 3', createRng(42), { pauseToken: '<|pause|>', patterns: { '\n': 1 }, nRandomPauses: 2, variable: false });
  assert.is(out, '<|pause|>1+2=<<1+2=3>>3\n<|pause|>#### <|pause|> <|pause|> 3');
});

test('samples per example repeat the rows pass after pass with fresh randomness', () => {
  const rows = ['one two three', 'four five six'];
  const out = augmentRows(rows, createRng(1), { pauseToken: P, patterns: {}, nRandomPauses: 2, variable: false, samplesPerExample: 3 }, (r) => r, (_r, t) => t);
  assert.is(out.length, 6);
  assert.equal(out.map((t) => strip(t).replace(/ +/g, ' ').trim()), [...rows, ...rows, ...rows]);
  assert.ok(out.every((t) => countP(t) === 2));
  assert.ok(new Set([out[0], out[2], out[4]]).size > 1, 'the passes differ');
});

test('the same seed gives the same augmentation', () => {
  const run = (seed: number): string[] =>
    augmentRows(['a b c d e f'], createRng(seed), { pauseToken: P, patterns: {}, nRandomPauses: 4, variable: true, samplesPerExample: 5 }, (r) => r, (_r, t) => t);
  assert.equal(run(42), run(42));
  assert.not.equal(run(42), run(43));
});

test.run();

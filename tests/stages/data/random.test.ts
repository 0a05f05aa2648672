import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { createRng, deriveSeed } from '../../../stages/data/random.ts';

test('createRng is mulberry32: seed 42 starts with its published first value', () => {
  assert.is(createRng(42).next(), 0.6011037519201636);
});

test('the same seed gives the same stream and another seed another one', () => {
  const draw = (seed: number): number[] => {
    const rng = createRng(seed);
    return Array.from({ length: 8 }, () => rng.int(1000));
  };
  assert.equal(draw(7), draw(7));
  assert.not.equal(draw(7), draw(8));
});

test('int(n) stays in [0, n) and reaches both ends', () => {
  const rng = createRng(1);
  const seen = new Set<number>();
  for (let i = 0; i < 500; i++) seen.add(rng.int(4));
  assert.equal([...seen].sort(), [0, 1, 2, 3]);
});

test('intBetween includes both bounds', () => {
  const rng = createRng(2);
  const seen = new Set<number>();
  for (let i = 0; i < 500; i++) seen.add(rng.intBetween(5, 7));
  assert.equal([...seen].sort(), [5, 6, 7]);
});

test('shuffled permutes a copy and leaves the input alone', () => {
  const input = [1, 2, 3, 4, 5, 6, 7, 8];
  const out = createRng(3).shuffled(input);
  assert.equal(input, [1, 2, 3, 4, 5, 6, 7, 8]);
  assert.equal([...out].sort((a, b) => a - b), input);
  assert.not.equal(out, input);
});

test('deriveSeed separates labels and seeds', () => {
  assert.is(deriveSeed(42, 'train'), deriveSeed(42, 'train'));
  assert.is.not(deriveSeed(42, 'train'), deriveSeed(42, 'validation'));
  assert.is.not(deriveSeed(42, 'train'), deriveSeed(43, 'train'));
});

test.run();

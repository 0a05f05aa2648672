// The linear learning-rate schedule against transformers' get_linear_schedule_with_warmup.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { linearScheduleLr } from '../../../stages/lm/schedule.ts';

test('without warmup the rate starts at the base rate and falls linearly to zero', () => {
  assert.equal([0, 1, 2, 3].map((s) => linearScheduleLr(4, s, 4)), [4, 3, 2, 1]);
  assert.is(linearScheduleLr(4, 4, 4), 0);
  assert.is(linearScheduleLr(4, 9, 4), 0);
});

test('warmup rises from zero, peaks at the end of warmup, then decays over the remaining steps', () => {
  const lrs = [0, 1, 2, 3, 4, 5, 6].map((s) => linearScheduleLr(1, s, 6, 2));
  assert.equal(lrs, [0, 0.5, 1, 0.75, 0.5, 0.25, 0]);
});

test('bad step counts are refused', () => {
  assert.throws(() => linearScheduleLr(1, 0, 0), /total steps must be a whole number >= 1/);
  assert.throws(() => linearScheduleLr(1, 0, 4, -1), /warmup steps/);
});

test.run();

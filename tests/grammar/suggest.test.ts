// Tests for grammar/suggest.ts: edit distance and "did you mean" choices.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { closest, didYouMean, editDistance } from '../../grammar/suggest.ts';

const suggest = suite('suggest');

suggest('edit distance counts insertions, deletions, substitutions and neighbour swaps', () => {
  assert.is(editDistance('sft', 'sft'), 0);
  assert.is(editDistance('stf', 'sft'), 1);
  assert.is(editDistance('evl', 'eval'), 1);
  assert.is(editDistance('evall', 'eval'), 1);
  assert.is(editDistance('kitten', 'sitting'), 3);
  assert.is(editDistance('', 'abc'), 3);
});

suggest('the closest candidate within a third of the length wins', () => {
  assert.is(closest('n_random_pause', ['n_random_pauses', 'variable']), 'n_random_pauses');
  assert.is(closest('lr', ['lm', 'lr_head']), 'lm');
  assert.is(closest('xyz', ['sft', 'report']), undefined);
  assert.is(closest('sft', ['sft']), undefined);
});

suggest('a difference only in case is the best guess', () => {
  assert.is(closest('SFT', ['sfx', 'sft']), 'sft');
});

suggest('didYouMean gives one note or none', () => {
  assert.equal(didYouMean('titel', ['title']), ['did you mean `title`?']);
  assert.equal(didYouMean('zzz', ['title']), []);
});

suggest.run();

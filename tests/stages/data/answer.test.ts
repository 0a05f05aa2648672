import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { countPauses, extractAnswer, INVALID_ANSWER, isCorrect, meanStd } from '../../../stages/data/answer.ts';

test('extractAnswer reads the number after ####', () => {
  assert.is(extractAnswer('48+24=<<48+24=72>>72\n#### 72'), '72');
});

test('extractAnswer removes thousands separators', () => {
  assert.is(extractAnswer('#### 1,000'), '1000');
  assert.is(extractAnswer('#### 1,234,567'), '1234567');
});

test('extractAnswer keeps a minus sign and decimals', () => {
  assert.is(extractAnswer('#### -5'), '-5');
  assert.is(extractAnswer('#### 0.25'), '0.25');
  assert.is(extractAnswer('#### -1,000.5'), '-1000.5');
});

test('extractAnswer stops at the first character outside the number', () => {
  assert.is(extractAnswer('#### 18 dollars'), '18');
  assert.is(extractAnswer('#### 7.\n'), '7.');
});

test('extractAnswer is [invalid] without a final-answer line', () => {
  assert.is(extractAnswer('The answer is 72'), INVALID_ANSWER);
  assert.is(extractAnswer('####72'), INVALID_ANSWER);
  assert.is(extractAnswer('#### $72'), INVALID_ANSWER);
  assert.is(extractAnswer(''), INVALID_ANSWER);
});

test('extractAnswer takes the first of several #### lines', () => {
  assert.is(extractAnswer('#### 3\n#### 4'), '3');
  assert.is(extractAnswer('#### x\n#### 4'), '4');
});

test('isCorrect compares extracted answers and never accepts an invalid prediction', () => {
  assert.ok(isCorrect('2+2=<<2+2=4>>4\n#### 4', '#### 4'));
  assert.ok(isCorrect('#### 1,000', '#### 1000'));
  assert.not.ok(isCorrect('#### 5', '#### 4'));
  assert.not.ok(isCorrect('no answer', 'no answer either'));
});

test('countPauses counts non-overlapping pause tokens', () => {
  assert.is(countPauses('a<|pause|>b<|pause|><|pause|>', '<|pause|>'), 3);
  assert.is(countPauses('no pauses', '<|pause|>'), 0);
  assert.is(countPauses('aaaa', 'aa'), 2);
});

test('meanStd gives the mean and the population std', () => {
  assert.equal(meanStd([1, 0, 1, 0]), { mean: 0.5, std: 0.5, n: 4 });
  assert.equal(meanStd([1, 1, 1]), { mean: 1, std: 0, n: 3 });
  const empty = meanStd([]);
  assert.ok(Number.isNaN(empty.mean) && Number.isNaN(empty.std) && empty.n === 0);
});

test.run();

// Prompt format, completion-only labels and padding, with the built-in tokenizer and the fixtures' Hugging Face tokenizers.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import path from 'node:path';
import { initBackend } from '../../../stages/lm/backend.ts';
import {
  collateTraining, disposeBatch, encodeTrainingExample, leftPad, promptText, responseTemplateIds, trainingText,
} from '../../../stages/lm/collate.ts';
import { builtinTokenizer, loadTokenizer } from '../../../stages/lm/tokenizer.ts';
import { IGNORE_INDEX } from '../../../stages/lm/types.ts';
import { FIXTURES, withFixtures } from '../../helpers/hf-fixtures.ts';
const example = { question: 'Tom has 3 apples. How many?', answer: 'He has 3.\n#### 3' };

const test = suite('collate');

test.before(async () => {
  await initBackend('wasm');
});

test('training text and prompt follow the reference format exactly', () => {
  assert.is(promptText('Q?'), '### INPUT: Q?\n\n ### Answer:');
  assert.is(trainingText({ question: 'Q?', answer: 'A' }), '### INPUT: Q?\n\n ### Answer:A');
});

test('the built-in tokenizer: loss covers exactly the answer and the EOS', () => {
  const tok = builtinTokenizer();
  const ex = encodeTrainingExample(tok, example, responseTemplateIds(tok));
  const prompt = tok.encode(promptText(example.question));
  assert.is(ex.ids[0], tok.bosId);
  assert.is(ex.ids.at(-1), tok.eosId);
  assert.equal(ex.labels.slice(0, prompt.length), prompt.map(() => IGNORE_INDEX));
  assert.equal(ex.labels.slice(prompt.length), ex.ids.slice(prompt.length));
  assert.is(tok.decode(ex.labels.slice(prompt.length)), `${example.answer}</s>`);
  assert.ok(ex.hasCompletion);
});

test('the last occurrence of the template starts the completion, as in TRL', () => {
  const tok = builtinTokenizer();
  // A question quoting the template must not unmask the rest of the prompt.
  const tricky = { question: 'What follows " ### Answer:" here?', answer: '7' };
  const ex = encodeTrainingExample(tok, tricky, responseTemplateIds(tok));
  assert.is(tok.decode(ex.labels.filter((l) => l !== IGNORE_INDEX)), '7</s>');
});

test('max length cuts the end; a cut template leaves the example without loss', () => {
  const tok = builtinTokenizer();
  const ids = responseTemplateIds(tok);
  const cut = encodeTrainingExample(tok, example, ids, 60);
  assert.is(cut.ids.length, 60);
  assert.ok(cut.hasCompletion);
  assert.is(cut.labels.filter((l) => l !== IGNORE_INDEX).length, 60 - tok.encode(promptText(example.question)).length);
  const lost = encodeTrainingExample(tok, example, ids, 20);
  assert.is(lost.ids.length, 20);
  assert.not.ok(lost.hasCompletion);
  assert.ok(lost.labels.every((l) => l === IGNORE_INDEX));
});

for (const file of ['tokenizer-sp.json', 'tokenizer-bytelevel.json']) {
  withFixtures(test)(`${file}: the template is found by its in-context ids and the loss covers exactly the answer`, async () => {
    const tok = await loadTokenizer(path.join(FIXTURES, file));
    const ex = encodeTrainingExample(tok, example, responseTemplateIds(tok));
    assert.ok(ex.hasCompletion);
    assert.is(tok.decode(ex.labels.filter((l) => l !== IGNORE_INDEX), { skipSpecialTokens: true }), example.answer);
    assert.is(ex.labels.at(-1), tok.eosId);
    if (file === 'tokenizer-sp.json') {
      // Encoded alone, the template's leading space becomes an extra `▁`: TRL's plain search would miss it and
      // silently drop every example from the loss.
      const naive = encodeTrainingExample(tok, example, tok.encode(' ### Answer:', { addSpecialTokens: false }));
      assert.not.ok(naive.hasCompletion);
    }
  });
}

test('training batches are right-padded, masked by position and carry no loss on padding', async () => {
  const tok = builtinTokenizer();
  const ids = responseTemplateIds(tok);
  const a = encodeTrainingExample(tok, { question: 'Q', answer: 'AB' }, ids);
  const b = encodeTrainingExample(tok, { question: 'Longer Q', answer: 'A' }, ids);
  const batch = collateTraining([a, b], tok.padId!);
  const width = b.ids.length;
  assert.equal(batch.inputIds.shape, [2, width]);
  const inputIds = Array.from(await batch.inputIds.data());
  const mask = Array.from(await batch.attentionMask.data());
  const labels = Array.from(await batch.labels.data());
  const pad = width - a.ids.length;
  assert.equal(inputIds.slice(0, width), [...a.ids, ...Array(pad).fill(tok.padId)]);
  assert.equal(mask.slice(0, width), [...Array(a.ids.length).fill(1), ...Array(pad).fill(0)]);
  assert.equal(labels.slice(0, width), [...a.labels, ...Array(pad).fill(IGNORE_INDEX)]);
  assert.equal(inputIds.slice(width), b.ids);
  assert.equal(labels.slice(width), b.labels);
  assert.equal(batch.labels.dtype, 'int32');
  disposeBatch(batch);
});

test('prompts are left-padded so every row ends in the last column', () => {
  const batch = leftPad([[5, 6, 7], [8]], 0);
  assert.is(batch.width, 3);
  assert.equal(Array.from(batch.ids), [5, 6, 7, 0, 0, 8]);
  assert.equal(Array.from(batch.mask), [1, 1, 1, 0, 0, 1]);
  assert.throws(() => leftPad([[1], []], 0), /a prompt has no tokens/);
});

test.run();

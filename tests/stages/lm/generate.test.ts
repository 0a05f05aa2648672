// Cached generation against the fixtures' greedy ids, batching against row-by-row decoding, and tensor hygiene.
import * as assert from 'uvu/assert';
import * as tf from '@tensorflow/tfjs-core';
import path from 'node:path';
import { generate, generateAnswers } from '../../../stages/lm/generate.ts';
import type { CausalLM } from '../../../stages/lm/model.ts';
import { loadTokenizer } from '../../../stages/lm/tokenizer.ts';
import type { Tokenizer } from '../../../stages/lm/types.ts';
import { backendSuite, forEachBackend } from '../../helpers/backends.ts';
import { expectedTensors, fixtureModel, FIXTURES, FIXTURES_PRESENT as present, pauseFixtureModel, withFixtures } from '../../helpers/hf-fixtures.ts';

forEachBackend((backend) => {
  const test = backendSuite('generate', backend);
  let model: CausalLM;
  let tok: Tokenizer;

  test.before(async () => {
    if (!present) return;
    model = await fixtureModel('mistral-tiny');
    // The byte-level fixture tokenizer has the tiny models' 512 ids, <s> = 0 and </s> = 1.
    tok = await loadTokenizer(path.join(FIXTURES, 'tokenizer-bytelevel.json'));
  });

  test.after(() => model?.dispose());

  async function expected(fixture: string): Promise<{ prompt: number[]; greedy: number[] }> {
    const tensors = await expectedTensors(fixture);
    return { prompt: Array.from(tensors.get('greedy_prompt')!.data), greedy: Array.from(tensors.get('greedy_ids')!.data) };
  }

  withFixtures(test)('greedy decoding with the KV cache reproduces the fixture greedy ids of mistral-tiny', async () => {
    const { prompt, greedy } = await expected('mistral-tiny');
    const [row] = await generate(model, tok, [prompt], { maxNewTokens: greedy.length - prompt.length });
    assert.equal(row!.ids, greedy.slice(prompt.length));
    assert.not.ok(row!.stoppedAtEos);
    assert.is(row!.text, tok.decode(greedy.slice(prompt.length), { skipSpecialTokens: true }));
  });

  withFixtures(test)('greedy decoding over the combined log-probs reproduces the pause wrapper fixture; pauses vanish from the text', async () => {
    const pauseModel = await pauseFixtureModel();
    const pauseTok = await loadTokenizer(path.join(FIXTURES, 'tokenizer-bytelevel-pause.json'));
    try {
      const { prompt, greedy } = await expected('pause-wrapper');
      const [row] = await generate(pauseModel, pauseTok, [prompt], { maxNewTokens: greedy.length - prompt.length });
      const want = greedy.slice(prompt.length);
      assert.equal(row!.ids, want);
      assert.is(row!.pauses, want.filter((id) => id === 512).length);
      assert.ok(row!.pauses > 0);
      assert.is(row!.text, pauseTok.decode(want, { skipSpecialTokens: true }));
      assert.not.match(row!.text, '<|pause|>');
      assert.is(row!.textWithSpecial.split('<|pause|>').length - 1, row!.pauses);
    } finally {
      pauseModel.dispose();
    }
  });

  withFixtures(test)('a model that always pauses spends its whole budget on pauses, as in the original: they count against max_new_tokens and max_length', async () => {
    const pauseModel = await pauseFixtureModel();
    const pauseTok = await loadTokenizer(path.join(FIXTURES, 'tokenizer-bytelevel-pause.json'));
    try {
      // A pause-head bias this far towards class 0 (pause) makes the pause every step's greedy choice.
      tf.tidy(() => pauseModel.variable('ctrl_tok_clf.bias').assign(tf.tensor1d([60, -60])));
      const { prompt } = await expected('pause-wrapper');
      const [byNew] = await generate(pauseModel, pauseTok, [prompt], { maxNewTokens: 6 });
      assert.equal([byNew!.ids, byNew!.pauses, byNew!.text, byNew!.stoppedAtEos], [Array(6).fill(512), 6, '', false]);
      const [byLength] = await generate(pauseModel, pauseTok, [prompt], { maxNewTokens: 6, maxLength: prompt.length + 3 });
      assert.equal([byLength!.ids, byLength!.pauses], [Array(3).fill(512), 3]);
    } finally {
      pauseModel.dispose();
    }
  });

  const PROMPTS = [[0, 44, 279, 322, 467, 302, 85, 287], [0, 42, 303], [0, 43, 86, 259, 355, 266]];

  withFixtures(test)('a left-padded batch generates exactly what each prompt generates alone (greedy)', async () => {
    const batched = await generate(model, tok, PROMPTS, { maxNewTokens: 9 });
    for (let i = 0; i < PROMPTS.length; i++) {
      const [alone] = await generate(model, tok, [PROMPTS[i]!], { maxNewTokens: 9 });
      assert.equal(batched[i]!.ids, alone!.ids, `row ${i}`);
    }
  });

  withFixtures(test)('seeded sampling is reproducible and independent of the batch size', async () => {
    const questions = ['What is 2+3?', 'Count the eggs.', 'Why?'];
    const opts = { maxNewTokens: 8, temperature: 1.0, seed: 7 };
    const together = await generateAnswers(model, tok, questions, { ...opts, batchSize: 3 });
    const oneByOne = await generateAnswers(model, tok, questions, { ...opts, batchSize: 1 });
    assert.equal(together.map((r) => r.ids), oneByOne.map((r) => r.ids));
    const otherSeed = await generateAnswers(model, tok, questions, { ...opts, seed: 8, batchSize: 3 });
    assert.not.equal(otherSeed.map((r) => r.ids), together.map((r) => r.ids));
    // Temperature 1 on an untrained model must wander off the greedy path somewhere.
    const greedy = await generateAnswers(model, tok, questions, { maxNewTokens: 8, batchSize: 3 });
    assert.not.equal(greedy.map((r) => r.ids), together.map((r) => r.ids));
  });

  withFixtures(test)('a row stops at its own limit: max new tokens, or max length counted with its own prompt', async () => {
    const rows = await generate(model, tok, PROMPTS, { maxNewTokens: 6, maxLength: 10 });
    assert.equal(rows.map((r) => r.ids.length), [2, 6, 4]);
  });

  withFixtures(test)('finished rows leave the batch on wasm, and every row generates what it generates alone (greedy and sampled)', async () => {
    const sizes: number[] = [];
    const decodeStep = model.decodeStep;
    model.decodeStep = (ids, mask, cache) => {
      sizes.push(ids.shape[0]);
      return decodeStep.call(model, ids, mask, cache);
    };
    try {
      for (const sampling of [{}, { temperature: 1.0, seed: 3 }]) {
        sizes.length = 0;
        // Limits 2, 6 and 4 (max length 10 with prompts of 8, 3 and 6): the first row is done after step 2.
        const rows = await generate(model, tok, PROMPTS, { maxNewTokens: 6, maxLength: 10, ...sampling });
        assert.equal(rows.map((r) => r.ids.length), [2, 6, 4]);
        // Two rows stay at least, so the third finishing at step 4 leaves the batch as it is.
        if (backend === 'wasm') assert.equal(sizes, [3, 3, 2, 2, 2, 2], 'rows per decode step');
        for (let i = 0; i < PROMPTS.length; i++) {
          const [alone] = await generate(model, tok, [PROMPTS[i]!], { maxNewTokens: 6, maxLength: 10, ...sampling, firstRow: i });
          assert.equal(rows[i]!.ids, alone!.ids, `row ${i} ${JSON.stringify(sampling)}`);
        }
      }
    } finally {
      model.decodeStep = decodeStep;
    }
  });

  withFixtures(test)('with the padded batch counted, as transformers counts max_length, every row of a batch gets the same budget', async () => {
    const own = await generate(model, tok, PROMPTS, { maxNewTokens: 6, maxLength: 10 });
    // Widths 8, 3 and 6 pad to 8: each row may add 10 - 8 = 2 tokens, the first 2 it generates on its own rule.
    const padded = await generate(model, tok, PROMPTS, { maxNewTokens: 6, maxLength: 10, maxLengthCountsPadding: true });
    assert.equal(padded.map((r) => r.ids), own.map((r) => r.ids.slice(0, 2)));
  });

  withFixtures(test)('the batch stops when the padded rows fill the model\'s positions', async () => {
    const free = await generate(model, tok, PROMPTS, { maxNewTokens: 6 });
    // Width 8 + 3 generated = 10 positions: the fourth token would need an eleventh.
    const capped = await generate(model, tok, PROMPTS, { maxNewTokens: 6, contextLength: 10 });
    assert.equal(capped.map((r) => r.ids), free.map((r) => r.ids.slice(0, 3)));
    await generate(model, tok, PROMPTS, { maxNewTokens: 6, contextLength: 7 }).then(() => assert.unreachable(), (err) => assert.match(err.message, /a prompt of 8 tokens does not fit the model's 7 positions/));
  });

  withFixtures(test)('live tensors stay constant across decode steps and nothing leaks after generation', async () => {
    const before = tf.memory().numTensors;
    const counts: number[] = [];
    await generate(model, tok, PROMPTS, { maxNewTokens: 6, onStep: () => counts.push(tf.memory().numTensors) });
    assert.is(counts.length, 6);
    // Where a step is queued before the previous one is read (webgpu), none is queued after the last: one tensor fewer.
    assert.ok(counts.slice(0, -1).every((c) => c === counts[0]) && counts.at(-1)! <= counts[0]!, `tensors per step: ${counts.join(', ')}`);
    assert.is(tf.memory().numTensors, before);
  });

  withFixtures(test)('bad limits are refused', async () => {
    await generate(model, tok, PROMPTS, { maxNewTokens: 0 }).then(() => assert.unreachable(), (err) => assert.match(err.message, /maxNewTokens must be a whole number >= 1/));
  });

  test.run();
});

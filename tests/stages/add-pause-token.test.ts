// add_pause_token: the pause surgery on a model folder, saved under the wrapper's names with the pause token in the tokenizer.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { ADD_PAUSE_TOKEN } from '../../stages/add-pause-token.ts';
import { readSafetensors } from '../../stages/lm/safetensors.ts';
import { loadTokenizer } from '../../stages/lm/tokenizer.ts';
import { runKind, tinyModelFolder } from '../helpers/model-stages.ts';
import { removeTempDirs, withDefaults } from './data/stage-context.ts';

const test = suite('add_pause_token');
test.after(removeTempDirs);

test('the defaults add `<|pause|>` with seed 42', () => {
  assert.equal(withDefaults(ADD_PAUSE_TOKEN), { token: '<|pause|>', seed: 42 });
});

test('the wrapped folder keeps the original weights, adds the pause row, head and token at id V', async () => {
  const base = await tinyModelFolder();
  const { ctx, result } = await runKind(ADD_PAUSE_TOKEN, { inputs: { model: [base] } });
  // Where it ran is recorded as by every model kind (which backend depends on the machine).
  const { backend, device, ...facts } = result.metrics!;
  assert.equal(facts, { pause_token: '<|pause|>', pause_token_id: 100, vocab_size: 101 });
  assert.ok(typeof backend === 'string' && typeof device === 'string' && device.length > 0, `${backend} ${device}`);
  const config = JSON.parse(await readFile(path.join(ctx.outDir, 'config.json'), 'utf8'));
  assert.equal([config.vocab_size, config.pause_token_id, config.pause_token], [100, 100, '<|pause|>']);
  const tok = await loadTokenizer(ctx.outDir);
  assert.is(tok.pauseId, 100);
  assert.equal(tok.encode('1<|pause|>2', { addSpecialTokens: false }), [...tok.encode('1', { addSpecialTokens: false }), 100, ...tok.encode('2', { addSpecialTokens: false })]);

  const before = (await readSafetensors(path.join(base.dir, 'model.safetensors'))).tensors;
  const after = (await readSafetensors(path.join(ctx.outDir, 'model.safetensors'))).tensors;
  assert.equal(Array.from(after.get('language_model.model.embed_tokens.original_embedding.weight')!.data), Array.from(before.get('model.embed_tokens.weight')!.data));
  assert.equal(Array.from(after.get('language_model.model.layers.0.self_attn.q_proj.weight')!.data), Array.from(before.get('model.layers.0.self_attn.q_proj.weight')!.data));
  assert.equal(after.get('language_model.model.embed_tokens.new_embedding.weight')!.shape, [1, 64]);
  assert.equal(after.get('language_model.lm_head.weight')!.shape, [101, 64]);
  assert.equal(after.get('ctrl_tok_clf.weight')!.shape, [2, 64]);
  assert.equal(after.get('ctrl_tok_clf.bias')!.shape, [2]);
});

test('the new rows are a pure function of the seed', async () => {
  const base = await tinyModelFolder();
  const row = async (seed: number) => {
    const { ctx } = await runKind(ADD_PAUSE_TOKEN, { params: { seed }, inputs: { model: [base] } });
    return Array.from((await readSafetensors(path.join(ctx.outDir, 'model.safetensors'))).tensors.get('language_model.model.embed_tokens.new_embedding.weight')!.data);
  };
  const [a, b, c] = [await row(3), await row(3), await row(4)];
  assert.equal(a, b);
  assert.not.equal(a, c);
});

test('a model that already has a pause token is refused', async () => {
  const base = await tinyModelFolder();
  const { ctx } = await runKind(ADD_PAUSE_TOKEN, { inputs: { model: [base] } });
  const wrapped = { ...base, stage: 'wrapped', dir: ctx.outDir };
  await runKind(ADD_PAUSE_TOKEN, { inputs: { model: [wrapped] } }).then(() => assert.unreachable(), (err) => assert.match(err.message, /already has a pause token/));
});

test.run();

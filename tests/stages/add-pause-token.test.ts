// add_pause_token: the pause surgery on a model folder, saved under the wrapper's names with the pause token in the tokenizer.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { cp, readFile } from 'node:fs/promises';
import path from 'node:path';
import { ADD_PAUSE_TOKEN } from '../../stages/add-pause-token.ts';
import {
  readSafetensors, roundedToBfloat16, storedDtypes, toBfloat16, writeSafetensors, type HostTensor, type WriteTensor,
} from '../../stages/lm/safetensors.ts';
import { loadTokenizer } from '../../stages/lm/tokenizer.ts';
import { runKind, tinyModelFolder } from '../helpers/model-stages.ts';
import { removeTempDirs, tempDir, withDefaults } from './data/stage-context.ts';

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

test('a model stored in bfloat16 gets its new weights in bfloat16, rounded from the same draws, and stays BF16', async () => {
  const base = await tinyModelFolder();
  const weights = (await readSafetensors(path.join(base.dir, 'model.safetensors'))).tensors;
  // The same bfloat16 values stored two ways: as BF16 (a bfloat16 checkpoint) and widened to F32.
  const storedAs = async (dtype: 'BF16' | 'F32') => {
    const dir = await tempDir(`pause-${dtype}`);
    await cp(base.dir, dir, { recursive: true });
    const tensors = new Map<string, WriteTensor>([...weights].map(([name, t]) => {
      const values: HostTensor = { ...t, data: roundedToBfloat16(t.data as Float32Array) };
      return [name, dtype === 'BF16' ? toBfloat16(values) : values];
    }));
    await writeSafetensors(path.join(dir, 'model.safetensors'), tensors, { format: 'pt' });
    return { ...base, dir };
  };
  const wrap = async (dtype: 'BF16' | 'F32') => {
    const { ctx } = await runKind(ADD_PAUSE_TOKEN, { inputs: { model: [await storedAs(dtype)] } });
    const tensors = (await readSafetensors(path.join(ctx.outDir, 'model.safetensors'))).tensors;
    const config = JSON.parse(await readFile(path.join(ctx.outDir, 'config.json'), 'utf8'));
    return { dir: ctx.outDir, tensors, dtype: config.torch_dtype ?? config.dtype, surgery: ctx.logs.find((l) => l.startsWith('pause surgery')) };
  };
  const bf16 = await wrap('BF16');
  const f32 = await wrap('F32');
  assert.equal([...storedDtypes(bf16.dir)!], ['BF16']);
  assert.equal(bf16.dtype, 'bfloat16');
  assert.match(bf16.surgery!, /; new weights in bfloat16, as the model$/);
  assert.equal([...storedDtypes(f32.dir)!], ['F32']);
  assert.not.match(f32.surgery!, /bfloat16/);
  const values = (t: HostTensor | undefined) => Array.from(t!.data);
  for (const name of ['language_model.model.embed_tokens.new_embedding.weight', 'ctrl_tok_clf.weight', 'ctrl_tok_clf.bias']) {
    const drawn = f32.tensors.get(name)!.data as Float32Array;
    assert.ok(drawn.some((x, i) => x !== roundedToBfloat16(drawn)[i]), `${name}: the float32 draws are not bfloat16 numbers already`);
    assert.equal(values(bf16.tensors.get(name)), Array.from(roundedToBfloat16(drawn)), name);
  }
  const head = (t: HostTensor) => t.data as Float32Array;
  const [headBf16, headF32] = [head(bf16.tensors.get('language_model.lm_head.weight')!), head(f32.tensors.get('language_model.lm_head.weight')!)];
  assert.equal(Array.from(headBf16.subarray(100 * 64)), Array.from(roundedToBfloat16(headF32.subarray(100 * 64))), 'the grown row');
  assert.equal(Array.from(headBf16.subarray(0, 100 * 64)), Array.from(headF32.subarray(0, 100 * 64)), 'the model\'s own rows');
});

test('a model that already has a pause token is refused', async () => {
  const base = await tinyModelFolder();
  const { ctx } = await runKind(ADD_PAUSE_TOKEN, { inputs: { model: [base] } });
  const wrapped = { ...base, stage: 'wrapped', dir: ctx.outDir };
  await runKind(ADD_PAUSE_TOKEN, { inputs: { model: [wrapped] } }).then(() => assert.unreachable(), (err) =>
    assert.is(err.message, 'add_pause_token: wrapped already has the pause token <|pause|> (id 100): give it to sft or evaluate as it is'));
});

test.run();

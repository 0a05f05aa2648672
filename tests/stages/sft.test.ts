// sft: the reference's training arguments as defaults, metrics the report reads, what trains, and resuming a killed stage.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { ADD_PAUSE_TOKEN } from '../../stages/add-pause-token.ts';
import { readSafetensors } from '../../stages/lm/safetensors.ts';
import { SFT, type SftTrainGroups } from '../../stages/sft.ts';
import { datasetFolder, runKind, sumRows, tinyModelFolder } from '../helpers/model-stages.ts';
import { artifactRef, makeContext, removeTempDirs, withDefaults } from './data/stage-context.ts';

const test = suite('sft');
test.after(removeTempDirs);

const splits = { train: sumRows(8), validation: sumRows(4, 8), test: sumRows(2, 12) };
const groups = (on: Partial<SftTrainGroups>): SftTrainGroups => ({ pause_embedding: false, pause_head: false, lm_head: false, lm_embeddings: false, all: false, ...on });

test('the defaults are the reference\'s training arguments, and every parameter is described', () => {
  const d = withDefaults(SFT);
  assert.equal(
    [d.batch_size, d.lr, d.epochs, d.warmup, d.weight_decay, d.max_grad_norm, d.eval_steps, d.max_length, d.seed, d.grad_accum, d.max_steps, d.lora],
    [8, 5e-5, 1, 0, 0, 1.0, 500, 600, 42, 1, null, null],
  );
  const lora = SFT.params.properties.lora!.properties as Record<string, { default: unknown; description: string }>;
  assert.equal(Object.fromEntries(Object.entries(lora).map(([k, v]) => [k, v.default])), { r: 16, alpha: 32, dropout: 0.05, target_modules: ['q_proj', 'v_proj'], merge: true });
  const walk = (props: Record<string, Record<string, unknown>>, at: string) => {
    for (const [name, schema] of Object.entries(props)) {
      assert.ok(typeof schema.description === 'string' && schema.description.length > 10, `${at}${name} has a description`);
      if (schema.properties) walk(schema.properties as Record<string, Record<string, unknown>>, `${at}${name}.`);
    }
  };
  walk(SFT.params.properties, '');
});

test('full training of a from-scratch model: loss curves, trainable counts and a changed model folder', async () => {
  const base = await tinyModelFolder();
  const data = await datasetFolder(splits);
  const { ctx, result } = await runKind(SFT, {
    params: { train: groups({ all: true }), batch_size: 4, max_steps: 6, lr: 3e-3, eval_steps: 3, logging_steps: 2 },
    inputs: { model: [base], data: [data] },
  });
  const m = result.metrics as Record<string, any>; // metrics are JSON; the test reads known keys
  assert.equal(m.train_loss_curve.map(([s]: number[]) => s), [2, 4, 6]);
  assert.equal(m.eval_loss_curve.map(([s]: number[]) => s), [3, 6]);
  assert.ok(m.train_loss_curve[2][1] < m.train_loss_curve[0][1]);
  assert.is(m.eval_loss, Math.min(...m.eval_loss_curve.map(([, l]: number[]) => l)));
  assert.equal(m.trainable.groups, ['all']);
  assert.is(m.trainable.lora, false);
  assert.is(m.trainable.trainable_params, m.trainable.total_params);
  assert.is(m.steps, 6);
  assert.is(m.resumed_from, null);
  const before = (await readSafetensors(path.join(base.dir, 'model.safetensors'))).tensors;
  const after = (await readSafetensors(path.join(ctx.outDir, 'model.safetensors'))).tensors;
  assert.not.equal(Array.from(after.get('lm_head.weight')!.data), Array.from(before.get('lm_head.weight')!.data));
  assert.ok(existsSync(path.join(ctx.outDir, 'tokenizer.json')));
});

test('pause groups with unmerged LoRA: only the chosen groups change and the adapter is saved as PEFT files', async () => {
  const base = await tinyModelFolder();
  const { ctx: wrapCtx } = await runKind(ADD_PAUSE_TOKEN, { inputs: { model: [base] } });
  const wrapped = artifactRef('wrapped', 'add_pause_token', wrapCtx.outDir);
  const data = await datasetFolder(splits);
  const { ctx, result } = await runKind(SFT, {
    params: { batch_size: 4, max_steps: 2, lr: 1e-2, lora: { r: 2, alpha: 4, dropout: 0.1, target_modules: ['q_proj'], merge: false } },
    inputs: { model: [wrapped], data: [data] },
  });
  const m = result.metrics as Record<string, any>; // metrics are JSON; the test reads known keys
  assert.equal(m.trainable.groups, ['pauseEmbedding', 'pauseHead']);
  assert.is(m.trainable.lora, true);
  // 2 layers × q_proj (A [2, 64] + B [64, 2]) + pause row 64 + pause head 2×64+2.
  assert.is(m.trainable.trainable_params, 2 * (128 + 128) + 64 + 130);
  const adapterConfig = JSON.parse(await readFile(path.join(ctx.outDir, 'adapter_config.json'), 'utf8'));
  assert.is(adapterConfig.r, 2);
  const before = (await readSafetensors(path.join(wrapCtx.outDir, 'model.safetensors'))).tensors;
  const after = (await readSafetensors(path.join(ctx.outDir, 'model.safetensors'))).tensors;
  const same = (name: string) => Array.from(after.get(name)!.data).every((v, i) => v === before.get(name)!.data[i]);
  assert.ok(same('language_model.lm_head.weight'), 'the LM head is frozen');
  assert.ok(same('language_model.model.layers.0.self_attn.q_proj.weight'), 'base weights stay under the adapter');
});

test('pause groups on a model without a pause token are skipped with a note, and max_length is capped at the model\'s positions', async () => {
  const base = await tinyModelFolder();
  const data = await datasetFolder(splits);
  const { ctx, result } = await runKind(SFT, { params: { batch_size: 4, max_steps: 1, train: groups({ pause_embedding: true, pause_head: true, lm_head: true }) }, inputs: { model: [base], data: [data] } });
  assert.ok(ctx.logs.includes('sft: the model has no pause token; pause_embedding and pause_head ignored'), ctx.logs.join('\n'));
  // The tiny model holds 128 positions: the default max_length of 600 is capped, as SFTTrainer does.
  assert.ok(ctx.logs.includes("max_length 600 exceeds the model's max_position_embeddings 128; using 128"), ctx.logs.join('\n'));
  assert.equal((result.metrics as Record<string, any>).trainable.groups, ['lmHead']); // metrics are JSON
});

test('default pause groups on a model without a pause token fail before training and say what to set', async () => {
  const base = await tinyModelFolder();
  const data = await datasetFolder(splits);
  try {
    await runKind(SFT, { params: { batch_size: 4, max_steps: 1 }, inputs: { model: [base], data: [data] } });
    assert.unreachable('should fail');
  } catch (err) {
    assert.is((err as Error).message, 'nothing to train: `train` selects no weight group this model has (it has no pause token, so pause_embedding and pause_head do not apply); ' +
      'set `train: { all: true }` or `lm_head: true`, add `lora`, or fine-tune a model from add_pause_token');
  }
});

test('a stage aborted mid-training resumes from its scratch checkpoint and saves the same model as an uninterrupted run', async () => {
  const base = await tinyModelFolder();
  const data = await datasetFolder(splits);
  const params = { train: groups({ all: true }), batch_size: 2, max_steps: 6, save_steps: 2, eval_steps: 3, lr: 3e-3 };
  const inputs = { model: [base], data: [data] };
  const { ctx: whole } = await runKind(SFT, { params, inputs });

  const ctx = await makeContext(SFT, { params, inputs });
  const abort = new AbortController();
  const killed = { ...ctx, signal: abort.signal, progress: (p: { step: number }) => void (p.step === 3 && abort.abort(new Error('stopped by the runner'))) };
  await SFT.run(killed).then(() => assert.unreachable(), (err) => assert.is(err.message, 'stopped by the runner'));
  const again = await SFT.run(ctx);
  assert.is((again.metrics as Record<string, any>).resumed_from, 2); // metrics are JSON
  const a = await readFile(path.join(whole.outDir, 'model.safetensors'));
  const b = await readFile(path.join(ctx.outDir, 'model.safetensors'));
  assert.ok(a.equals(b), 'resumed weights are bit-identical');
});

test.run();

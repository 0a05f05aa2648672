// sft: the reference's training arguments as defaults, metrics the report reads, what trains, and resuming a killed stage.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { ADD_PAUSE_TOKEN } from '../../stages/add-pause-token.ts';
import { readSafetensors, type HostTensor } from '../../stages/lm/safetensors.ts';
import { checkpointingFor, SFT, type SftTrainGroups } from '../../stages/sft.ts';
import { backendSuite, runOnWebgpu } from '../helpers/backends.ts';
import { withEnv } from '../helpers/env.ts';
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
  // Today's behaviour by default; the seed's (pure bfloat16, no evaluation after the last update) when asked.
  assert.equal([d.precision, d.eval_at_end], ['fp32', true]);
  const lora = SFT.params.properties.lora!.properties as Record<string, { default: unknown; description: string }>;
  assert.equal(Object.fromEntries(Object.entries(lora).map(([k, v]) => [k, v.default])), { r: 16, alpha: 32, dropout: 0.05, target_modules: ['q_proj', 'v_proj'], merge: true, modules_to_save: null });
  const walk = (props: Record<string, Record<string, unknown>>, at: string) => {
    for (const [name, schema] of Object.entries(props)) {
      assert.ok(typeof schema.description === 'string' && schema.description.length > 10, `${at}${name} has a description`);
      if (schema.properties) walk(schema.properties as Record<string, Record<string, unknown>>, `${at}${name}.`);
    }
  };
  walk(SFT.params.properties, '');
});

test('its work, for the run\'s ETA, is the examples it trains on: the updates\' when max_steps is set, else the epochs\' over the training split', () => {
  const d = withDefaults(SFT);
  const data = { data: [artifactRef('paused', 'inject_pauses', '/d', { metrics: { counts: { train: 7000, validation: 473, test: 1319 } } })] };
  assert.is(SFT.work!({ ...d, max_steps: 100, batch_size: 16, grad_accum: 2 }, data), 3200);
  assert.is(SFT.work!({ ...d, max_steps: 100, batch_size: 16 }), 1600);
  assert.is(SFT.work!({ ...d, epochs: 2 }, data), 14000);
  assert.is(SFT.work!({ ...d, epochs: 2 }), undefined);
  // A data input without counts (another kind's folder): unknown, and the ETA falls back to durations alone.
  assert.is(SFT.work!({ ...d, epochs: 2 }, { data: [artifactRef('own', 'sh', '/d')] }), undefined);
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
  // Unset, and not on a GPU: no checkpointing.
  assert.is(m.gradient_checkpointing, false);
  const before = (await readSafetensors(path.join(base.dir, 'model.safetensors'))).tensors;
  const after = (await readSafetensors(path.join(ctx.outDir, 'model.safetensors'))).tensors;
  assert.not.equal(Array.from(after.get('lm_head.weight')!.data), Array.from(before.get('lm_head.weight')!.data));
  assert.ok(existsSync(path.join(ctx.outDir, 'tokenizer.json')));
});

test('gradient_checkpointing: unset turns on only where the estimate without it exceeds the GPU; set is obeyed, false with a warning', () => {
  const tooBig = { withoutMiB: 254_591, withMiB: 47_034, needed: true, gpuMiB: 143_771 };
  const fits = { withoutMiB: 20_000, withMiB: 9_000, needed: false, gpuMiB: 143_771 };
  const estimate = 'training is estimated at 248.6 GiB of GPU memory without activation checkpointing (45.9 GiB with it), and the GPU has 140.4 GiB';
  const said: string[] = [];
  const told: string[] = [];
  const choose = (asked: boolean | undefined, advice: typeof tooBig | undefined) => checkpointingFor(asked, advice, (l) => said.push(l), (l) => told.push(l));
  assert.equal([choose(undefined, undefined), choose(undefined, fits), choose(true, fits), choose(false, fits), choose(true, undefined)], [false, false, true, false, true]);
  assert.equal([said, told], [[], []]);
  assert.is(choose(undefined, tooBig), true);
  assert.equal(said, [`gradient_checkpointing: on, since ${estimate}; set gradient_checkpointing: false to keep every activation`]);
  assert.equal(told, [`gradient checkpointing turned on: ${estimate}`]);
  assert.is(choose(false, tooBig), false);
  assert.is(said[1], `gradient_checkpointing is false, but ${estimate}: the run may run out of GPU memory (set it to true, or leave it unset)`);
  assert.is(choose(true, tooBig), true);
  assert.equal([said.length, told.length], [2, 1]);
});

test('pause groups with unmerged LoRA: only the chosen groups change and the adapter is saved as PEFT files', async () => {
  const base = await tinyModelFolder();
  const { ctx: wrapCtx } = await runKind(ADD_PAUSE_TOKEN, { inputs: { model: [base] } });
  const wrapped = artifactRef('wrapped', 'add_pause_token', wrapCtx.outDir);
  const data = await datasetFolder(splits);
  const { ctx, result } = await runKind(SFT, {
    params: { batch_size: 4, max_steps: 2, lr: 1e-2, lora: { r: 2, alpha: 4, dropout: 0.1, target_modules: ['q_proj'], merge: false, modules_to_save: null } },
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
  const told: string[] = [];
  const again = await SFT.run({ ...ctx, notice: (line) => told.push(line) });
  assert.is((again.metrics as Record<string, any>).resumed_from, 2); // metrics are JSON
  assert.equal(told.filter((l) => !l.startsWith('backend: ')), ['sft resumes from the checkpoint its interrupted run left at step 2 of 6']);
  const a = await readFile(path.join(whole.outDir, 'model.safetensors'));
  const b = await readFile(path.join(ctx.outDir, 'model.safetensors'));
  assert.ok(a.equals(b), 'resumed weights are bit-identical');
});

// After the resume test: on a software WebGPU adapter (Mesa lavapipe) the resume is not always bit-identical once
// more trainings ran in the process (NOTES.md), and these add several.
/** A model folder from add_pause_token on the tiny base. */
async function pauseModelFolder() {
  const { ctx } = await runKind(ADD_PAUSE_TOKEN, { inputs: { model: [await tinyModelFolder()] } });
  return { ref: artifactRef('wrapped', 'add_pause_token', ctx.outDir), dir: ctx.outDir };
}

async function weightsOf(dir: string): Promise<Map<string, HostTensor>> {
  return (await readSafetensors(path.join(dir, 'model.safetensors'))).tensors;
}

const sameValues = (a: HostTensor, b: HostTensor): boolean => a.data.every((v, i) => v === b.data[i]);

test('an explicit modules_to_save trains what it lists, not the train groups, as the seed\'s flawed LoRA config did', async () => {
  const wrapped = await pauseModelFolder();
  const data = await datasetFolder(splits);
  // sft_fr_pembed_unfr_lm_head_embed_peft.yaml: unfreeze the pause head, LM head and embeddings; PEFT config
  // mistral_pause_embed_lm_head_embed: modules_to_save new_embedding, lm_head, original_embedding.
  const { ctx, result } = await runKind(SFT, {
    params: {
      batch_size: 4, max_steps: 2, lr: 1e-2,
      train: groups({ pause_head: true, lm_head: true, lm_embeddings: true }),
      lora: { r: 2, alpha: 4, dropout: 0, target_modules: ['q_proj', 'v_proj'], merge: true, modules_to_save: ['new_embedding', 'lm_head', 'original_embedding'] },
    },
    inputs: { model: [wrapped.ref], data: [data] },
  });
  const m = result.metrics as Record<string, any>; // metrics are JSON; the test reads known keys
  assert.equal(m.trainable.groups, ['pauseEmbedding', 'lmHead', 'lmEmbeddings']);
  assert.equal(m.trainable.modules_to_save, ['new_embedding', 'lm_head', 'original_embedding']);
  assert.ok(ctx.logs.includes('sft: pauseHead in `train` but not in modules_to_save: frozen, as PEFT does'), ctx.logs.join('\n'));
  assert.ok(ctx.logs.includes('sft: pauseEmbedding not in `train` but in modules_to_save: trained, as PEFT does'), ctx.logs.join('\n'));
  // PEFT counts: the pause row trains as a copy (its original frozen), the pause head not at all.
  const rows = new Map((m.trainable_rows as { group: string; trainable: number; frozen: number }[]).map((r) => [r.group, [r.trainable, r.frozen]]));
  assert.equal(rows.get('pause embedding'), [64, 64]);
  assert.equal(rows.get('pause head'), [0, 130]);
  const before = await weightsOf(wrapped.dir);
  const after = await weightsOf(ctx.outDir);
  assert.ok(sameValues(after.get('ctrl_tok_clf.weight')!, before.get('ctrl_tok_clf.weight')!), 'the pause head keeps its initialisation');
  // These rows hold no pause token, so the pause row gets no gradient; the LM weights do.
  for (const name of ['language_model.lm_head.weight', 'language_model.model.embed_tokens.original_embedding.weight']) {
    assert.not.ok(sameValues(after.get(name)!, before.get(name)!), `${name} trained`);
  }
});

test('a modules_to_save entry that names no module is refused with the model\'s modules listed', async () => {
  const wrapped = await pauseModelFolder();
  const data = await datasetFolder(splits);
  try {
    await runKind(SFT, {
      params: { batch_size: 4, max_steps: 1, lora: { r: 2, alpha: 4, dropout: 0, target_modules: ['q_proj'], merge: true, modules_to_save: ['ctrl_tok_clf', 'pause_head'] } },
      inputs: { model: [wrapped.ref], data: [data] },
    });
    assert.unreachable('should fail');
  } catch (err) {
    assert.match((err as Error).message, /^modules_to_save: 'pause_head' matches no module of this model \(its modules include language_model\.model\.embed_tokens\.original_embedding, language_model\.model\.embed_tokens\.new_embedding, language_model\.model\.norm, language_model\.lm_head, ctrl_tok_clf, and model\.layers\.N\.…\)$/);
  }
});

test('bf16 precision stores every saved weight as a bfloat16 value, merged LoRA included; fp32 does not', async () => {
  const wrapped = await pauseModelFolder();
  const data = await datasetFolder(splits);
  const isBf16 = (t: HostTensor) => t.data.every((x) => (new Uint32Array(new Float32Array([x]).buffer)[0]! & 0xffff) === 0);
  const run = (precision: 'fp32' | 'bf16') => runKind(SFT, {
    params: { batch_size: 4, max_steps: 2, lr: 1e-2, precision, lora: { r: 2, alpha: 4, dropout: 0, target_modules: ['q_proj'], merge: true, modules_to_save: null } },
    inputs: { model: [wrapped.ref], data: [data] },
  });
  const bf16 = await run('bf16');
  assert.is((bf16.result.metrics as Record<string, any>).precision, 'bf16'); // metrics are JSON
  const saved = await weightsOf(bf16.ctx.outDir);
  assert.equal([...saved].filter(([, t]) => !isBf16(t)).map(([n]) => n), []);
  const fp32 = await weightsOf((await run('fp32')).ctx.outDir);
  assert.not.ok(isBf16(fp32.get('language_model.model.layers.0.self_attn.q_proj.weight')!), 'the float32 run merges in float32');
});

test('eval_at_end false evaluates only every eval_steps updates, as HF Trainer, so the last partial window is never the best', async () => {
  const base = await tinyModelFolder();
  const data = await datasetFolder(splits);
  const run = (evalAtEnd: boolean) => runKind(SFT, {
    params: { train: groups({ all: true }), batch_size: 4, max_steps: 5, eval_steps: 2, lr: 3e-3, eval_at_end: evalAtEnd },
    inputs: { model: [base], data: [data] },
  });
  const hf = (await run(false)).result.metrics as Record<string, any>; // metrics are JSON
  assert.equal(hf.eval_loss_curve.map(([s]: number[]) => s), [2, 4]);
  assert.ok(hf.best_step === 2 || hf.best_step === 4, `best step ${hf.best_step}`);
  assert.is(hf.final_eval_loss, null);
  const ours = (await run(true)).result.metrics as Record<string, any>; // metrics are JSON
  assert.equal(ours.eval_loss_curve.map(([s]: number[]) => s), [2, 4, 5]);
});

test.run();

const onGpu = backendSuite('sft on a GPU', 'webgpu');

onGpu('unset gradient_checkpointing turns on where the estimate exceeds the GPU\'s memory, and says so', async () => {
  const base = await tinyModelFolder();
  const data = await datasetFolder(splits);
  // Any estimate exceeds the 512 MiB set aside for the worker itself.
  const { ctx, result } = await withEnv('PAUSEPIPE_GPU_MEMORY_MIB', '512', () => runKind(SFT, {
    params: { train: groups({ all: true }), batch_size: 4, max_steps: 2, eval_steps: 2 },
    inputs: { model: [base], data: [data] },
    backend: 'webgpu',
  }));
  const m = result.metrics as Record<string, any>; // metrics are JSON
  assert.equal([m.backend, m.gradient_checkpointing, m.steps], ['webgpu', true, 2]);
  assert.match(ctx.logs.find((l) => l.startsWith('gradient_checkpointing: on'))!, /^gradient_checkpointing: on, since training is estimated at 0\.5 GiB of GPU memory without activation checkpointing \(0\.5 GiB with it\), and the GPU has 0\.5 GiB; /);
  assert.ok(ctx.logs.includes('gradient checkpointing: each decoder layer keeps only its input and is recomputed in the backward pass'));
});

runOnWebgpu(onGpu);

// The model on the fused WebGPU path: fixture parity, decoding against the no-cache path, training against wasm, and the kernel and read counts per step.
import * as tf from '@tensorflow/tfjs-core';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { initBackend } from '../../../stages/lm/backend.ts';
import { presetConfig, type LmConfig } from '../../../stages/lm/config.ts';
import { configureTraining, type TrainingSetup } from '../../../stages/lm/freeze.ts';
import { generate } from '../../../stages/lm/generate.ts';
import { createModel, FLOAT32_MIN, type CausalLM } from '../../../stages/lm/model.ts';
import { AdamW } from '../../../stages/lm/optimizer.ts';
import type { PauseLM } from '../../../stages/lm/pause.ts';
import { builtinTokenizer, loadTokenizer } from '../../../stages/lm/tokenizer.ts';
import { train } from '../../../stages/lm/trainer.ts';
import { IGNORE_INDEX, type Batch } from '../../../stages/lm/types.ts';
import { countGpuWork } from '../../../stages/lm/webgpu/counters.ts';
import { DECODER_TUNING } from '../../../stages/lm/webgpu/decoder.ts';
import { expectedTensors, FIXTURES, FIXTURES_PRESENT, fixtureModel, pauseFixtureModel, readJson, relDiff, toTf } from '../../helpers/hf-fixtures.ts';
import { maxDiff, useWebgpu, values, withWebgpu } from '../../helpers/webgpu.ts';

/** Greedy ids by a full forward pass per step (no cache), as the fixtures were made; read asynchronously. */
async function greedyFull(step: (ids: tf.Tensor2D) => tf.Tensor, prompt: number[], steps: number): Promise<number[]> {
  const ids = [...prompt];
  for (let s = 0; s < steps; s++) {
    const next = tf.tidy(() => {
      const scores = step(tf.tensor2d(ids, [1, ids.length], 'int32'));
      const V = scores.shape[2]!;
      return tf.argMax(tf.reshape(tf.slice(scores, [0, ids.length - 1, 0], [1, 1, V]), [V]));
    });
    ids.push((await values(next))[0]!);
    next.dispose();
  }
  return ids;
}

const parity = suite('webgpu model: parity with transformers through the fused kernels');
// These read ../shared/fixtures too: skipped where the shared folder is absent (CI always has it).
if (!FIXTURES_PRESENT) console.log(`skip: ${FIXTURES} is absent (the shared fixtures are not checked out)`);
const fixtureTest = FIXTURES_PRESENT ? withWebgpu(parity) : parity.skip;
parity.before(useWebgpu);

for (const fixture of ['mistral-tiny', 'llama-tiny-tied']) {
  fixtureTest(`${fixture}: logits (full and left-padded, real positions) within 1e-4, loss within 1e-5 relative, greedy ids identical with and without the cache`, async () => {
    const model = await fixtureModel(fixture);
    try {
      const ex = await expectedTensors(fixture);
      const ids = toTf<tf.Tensor2D>(ex.get('input_ids')!);
      const logits = await values(model.forward(ids));
      assert.ok(maxDiff(logits, ex.get('logits')!.data) < 1e-4, `logits ${maxDiff(logits, ex.get('logits')!.data)}`);
      const mask = ex.get('attention_mask')!;
      const V = model.config.vocabSize;
      const left = await values(model.forward(ids, toTf<tf.Tensor2D>(mask)));
      const d = maxDiff(left, ex.get('logits_left_masked')!.data, (i) => mask.data[Math.floor(i / V)] === 1);
      assert.ok(d < 1e-4, `left-padded logits ${d}`);
      const { loss: expected } = await readJson<{ loss: number }>(path.join(FIXTURES, fixture, 'expected.json'));
      const loss = (await values(model.lossParts({ inputIds: ids, attentionMask: tf.onesLike(ids), labels: ids }, { training: false }).loss))[0]!;
      assert.ok(relDiff(loss, expected) < 1e-5, `loss ${loss} vs ${expected}`);
      const prompt = Array.from(ex.get('greedy_prompt')!.data);
      const greedy = Array.from(ex.get('greedy_ids')!.data);
      assert.equal(await greedyFull((x) => model.forward(x), prompt, 12), greedy);
      const tok = await loadTokenizer(path.join(FIXTURES, 'tokenizer-bytelevel.json'));
      const [row] = await generate(model, tok, [prompt], { maxNewTokens: 12 });
      assert.equal(row!.ids, greedy.slice(prompt.length));
    } finally {
      model.dispose();
    }
  });
}

fixtureTest('pause wrapper: combined log-probs and both heads\' logits within 1e-4, the three losses within 1e-5, greedy ids identical through the cache', async () => {
  const model = await pauseFixtureModel();
  try {
    const ex = await expectedTensors('pause-wrapper');
    const exJson = await readJson<{ loss: number; lm_loss: number; ctrl_tok_loss: number }>(path.join(FIXTURES, 'pause-wrapper', 'expected.json'));
    const ids = toTf<tf.Tensor2D>(ex.get('input_ids')!);
    const out = model.pauseForward(ids);
    const V1 = 513;
    const lm = await values(out.lmLogits);
    assert.ok(maxDiff(await values(out.combined), ex.get('combined_logprobs')!.data) < 1e-4, 'combined');
    assert.ok(maxDiff(lm, ex.get('lm_logits')!.data, (i) => i % V1 !== 512) < 1e-4, 'lm logits');
    for (let i = 512; i < lm.length; i += V1) assert.is(lm[i], FLOAT32_MIN);
    assert.ok(maxDiff(await values(out.ctrlLogits), ex.get('ctrl_logits')!.data) < 1e-4, 'ctrl logits');
    // The decode path combines the heads in one kernel: the same log-probs at the last position.
    const last = model.decodeStep(ids, tf.onesLike(ids), null);
    const T = ids.shape[1];
    const want = ex.get('combined_logprobs')!.data;
    const got = await values(last.logProbs);
    const rows = ids.shape[0];
    for (let b = 0; b < rows; b++) {
      const at = (b * T + T - 1) * V1;
      assert.ok(maxDiff(got.subarray(b * V1, (b + 1) * V1), want.subarray(at, at + V1)) < 1e-4, `decode row ${b}`);
    }
    last.cache.dispose();
    const parts = model.lossParts({ inputIds: ids, attentionMask: tf.onesLike(ids), labels: ids }, { training: false });
    const [loss, lmLoss, ctrlLoss] = await Promise.all([parts.loss, parts.lmLoss!, parts.ctrlLoss!].map(async (t) => (await values(t))[0]!));
    assert.ok(relDiff(loss!, exJson.loss) < 1e-5, `loss ${loss} vs ${exJson.loss}`);
    assert.ok(relDiff(lmLoss!, exJson.lm_loss) < 1e-5, `lm_loss ${lmLoss}`);
    assert.ok(relDiff(ctrlLoss!, exJson.ctrl_tok_loss) < 1e-5, `ctrl_tok_loss ${ctrlLoss}`);
    const prompt = Array.from(ex.get('greedy_prompt')!.data);
    const greedy = Array.from(ex.get('greedy_ids')!.data);
    const tok = (await loadTokenizer(path.join(FIXTURES, 'tokenizer-bytelevel.json'))).withPauseToken();
    const [row] = await generate(model as PauseLM, tok, [prompt], { maxNewTokens: 12 });
    assert.equal(row!.ids, greedy.slice(prompt.length));
  } finally {
    model.dispose();
  }
});

parity.run();

const decoding = suite('webgpu decoding');
const decodeTest = withWebgpu(decoding);
decoding.before(useWebgpu);
const tok = builtinTokenizer();

function tinyModel(cfg: LmConfig = presetConfig('tiny', tok, 64), setup: TrainingSetup = { groups: 'all' }): CausalLM {
  const model = createModel(cfg, 3);
  configureTraining(model, setup, () => {});
  return model;
}

decodeTest('a left-padded batch generates what each prompt generates alone, greedy and sampled, and the cache grows past its first size', async () => {
  const model = tinyModel();
  try {
    const prompts = [tok.encode('7+8=', { addSpecialTokens: true }), tok.encode('12', { addSpecialTokens: true })];
    for (const temperature of [0, 0.8]) {
      const opts = { maxNewTokens: 9, temperature, seed: 4 };
      const batch = await generate(model, tok, prompts, opts);
      const alone = await Promise.all(prompts.map((p, i) => generate(model, tok, [p], { ...opts, firstRow: i })));
      assert.equal(batch.map((r) => r.ids), alone.map(([r]) => r!.ids), `temperature ${temperature}`);
    }
    // decodeStep with no cache starts one as wide as the prompt; each later step grows it in place.
    const ids = tf.tensor2d([prompts[0]!], [1, prompts[0]!.length], 'int32');
    const first = model.decodeStep(ids, tf.onesLike(ids), null);
    let input = tf.reshape(tf.argMax(first.logProbs, 1), [1, 1]) as tf.Tensor2D;
    const seq = [...prompts[0]!];
    let cache = first.cache;
    for (let s = 0; s < 3; s++) {
      seq.push((await values(input))[0]!);
      const step = model.decodeStep(input, tf.ones([1, seq.length], 'int32') as tf.Tensor2D, cache);
      cache = step.cache;
      const full = model.decodeStep(tf.tensor2d([seq], [1, seq.length], 'int32'), tf.ones([1, seq.length], 'int32') as tf.Tensor2D, null);
      assert.ok(maxDiff(await values(step.logProbs), await values(full.logProbs)) < 1e-4, `step ${s}`);
      full.cache.dispose();
      input = tf.reshape(tf.argMax(step.logProbs, 1), [1, 1]) as tf.Tensor2D;
    }
    assert.is(cache.length, seq.length);
    cache.dispose();
  } finally {
    model.dispose();
  }
});

decodeTest('each decode step reads the host once, and generation leaves no tensor behind', async () => {
  const model = tinyModel();
  try {
    const prompts = [tok.encode('3+4=', { addSpecialTokens: true })];
    await generate(model, tok, prompts, { maxNewTokens: 2 });
    const before = tf.memory().numTensors;
    const short = await countGpuWork(() => generate(model, tok, prompts, { maxNewTokens: 4 }));
    const long = await countGpuWork(() => generate(model, tok, prompts, { maxNewTokens: 10 }));
    assert.is(short.reads, 4);
    assert.is(long.reads, 10);
    assert.is(tf.memory().numTensors, before);
  } finally {
    model.dispose();
  }
});

decoding.run();

const training = suite('webgpu training');
const trainTest = withWebgpu(training);
training.before(useWebgpu);

/** A right-padded batch with ignored labels (prompt positions and padding), as collate.ts makes them. */
function batchOf(): Batch {
  const B = 2;
  const T = 16;
  const ids = Array.from({ length: B * T }, (_, i) => 3 + ((i * 7) % 40));
  const mask = ids.map((_, i) => (i >= T + 12 ? 0 : 1));
  const labels = ids.map((id, i) => (mask[i] === 0 || i % T < 4 ? IGNORE_INDEX : id));
  return {
    inputIds: tf.tensor2d(ids, [B, T], 'int32'),
    attentionMask: tf.tensor2d(mask, [B, T], 'int32'),
    labels: tf.tensor2d(labels, [B, T], 'int32'),
  };
}

/** The loss gradient of every trainable weight, read to the host. */
async function gradients(model: CausalLM): Promise<Map<string, Float32Array>> {
  const vars = model.trainableVariables();
  const names = new Map([...vars].map(([saved, v]) => [v.name, saved]));
  const batch = batchOf();
  const { value, grads } = tf.variableGrads(() => model.lossParts(batch, { training: true }).loss, [...vars.values()]);
  const out = new Map<string, Float32Array>();
  for (const [name, g] of Object.entries(grads)) out.set(names.get(name)!, Float32Array.from(await values(g)));
  tf.dispose([value, ...Object.values(grads), batch.inputIds, batch.attentionMask, batch.labels]);
  return out;
}

const SETUPS: Array<[string, TrainingSetup]> = [
  ['every weight', { groups: 'all' }],
  ['LoRA on q and v with a trained LM head copy', { groups: ['lmHead'], lora: { rank: 4, alpha: 8, dropout: 0.1, targetModules: ['q_proj', 'v_proj'], seed: 5 } }],
];

for (const [label, setup] of SETUPS) {
  trainTest(`gradients (${label}) match the tfjs-op path on wasm within 2e-5`, async () => {
    await initBackend('wasm');
    const onWasm = tinyModel(undefined, setup);
    const want = await gradients(onWasm);
    onWasm.dispose();
    await useWebgpu();
    const onGpu = tinyModel(undefined, setup);
    const got = await gradients(onGpu);
    onGpu.dispose();
    assert.equal([...got.keys()].sort(), [...want.keys()].sort());
    for (const [name, g] of got) assert.ok(maxDiff(g, want.get(name)!) < 2e-5, `${name}: ${maxDiff(g, want.get(name)!)}`);
  });
}

trainTest('a short training run gives wasm\'s loss curve and leaves the live tensors where they were', async () => {
  const rows = Array.from({ length: 8 }, (_, i) => ({ question: `${i % 5}+${(i * 3) % 5}?`, answer: `${(i % 5) + ((i * 3) % 5)}\n#### ${(i % 5) + ((i * 3) % 5)}` }));
  const data = { train: rows.slice(0, 6), validation: rows.slice(6) };
  const run = async () => {
    const model = tinyModel();
    const res = await train(model, tok, data, { batchSize: 3, maxSteps: 4, lr: 3e-3, loggingSteps: 1, evalSteps: 2 }, { log: () => {} });
    model.dispose();
    return res;
  };
  await initBackend('wasm');
  const want = await run();
  await useWebgpu();
  const before = tf.memory().numTensors;
  const got = await run();
  assert.is(tf.memory().numTensors, before);
  got.trainLossCurve.forEach(([step, loss], i) => assert.ok(relDiff(loss, want.trainLossCurve[i]![1]) < 1e-4, `step ${step}: ${loss} vs ${want.trainLossCurve[i]![1]}`));
  got.evalLossCurve.forEach(([step, loss], i) => assert.ok(relDiff(loss, want.evalLossCurve[i]![1]) < 1e-4, `eval ${step}: ${loss} vs ${want.evalLossCurve[i]![1]}`));
});

trainTest('a run killed after a checkpoint resumes and ends with bit-identical weights (no atomics in any gradient)', async () => {
  const rows = Array.from({ length: 10 }, (_, i) => ({ question: `${i % 5}+${(i * 3) % 5}?`, answer: `${(i % 5) + ((i * 3) % 5)}\n#### ${(i % 5) + ((i * 3) % 5)}` }));
  const data = { train: rows.slice(0, 8), validation: rows.slice(8) };
  const opts = { batchSize: 2, maxSteps: 5, saveSteps: 2, evalSteps: 3, lr: 3e-3 };
  const weights = async (model: CausalLM) => Promise.all([...model.weights.values()].map(async (v) => Array.from(await values(v))));
  const scratch = await mkdtemp(path.join(tmpdir(), 'pausepipe-webgpu-resume-'));
  try {
    const whole = tinyModel();
    await train(whole, tok, data, opts, { log: () => {} });
    const expected = await weights(whole);
    whole.dispose();
    const killed = tinyModel();
    await train(killed, tok, data, { ...opts, checkpointDir: scratch }, {
      log: () => {},
      afterStep: (step) => {
        if (step === 3) throw new Error('killed');
      },
    }).then(() => assert.unreachable(), (err: Error) => assert.is(err.message, 'killed'));
    killed.dispose();
    const resumed = tinyModel();
    const res = await train(resumed, tok, data, { ...opts, checkpointDir: scratch }, { log: () => {} });
    assert.is(res.resumedFrom, 2);
    assert.equal(await weights(resumed), expected);
    resumed.dispose();
  } finally {
    await rm(scratch, { recursive: true, force: true });
  }
});

training.run();

const counts = suite('webgpu kernel counts');
const countTest = withWebgpu(counts);
counts.before(useWebgpu);

/** Dispatches of one full training step (loss, gradients of every weight, AdamW) after a first warm-up step. */
async function trainStepKernels(cfg: LmConfig): Promise<{ dispatches: number; reads: number }> {
  const model = tinyModel(cfg);
  const vars = model.trainableVariables();
  const names = new Map([...vars].map(([saved, v]) => [v.name, saved]));
  const optimizer = new AdamW(vars);
  const batch = batchOf();
  const step = async () => {
    const { value, grads } = tf.variableGrads(() => model.lossParts(batch, { training: true }).loss, [...vars.values()]);
    const byName = new Map(Object.entries(grads).map(([n, g]) => [names.get(n)!, g]));
    await value.data();
    const norm = optimizer.apply(byName, 1e-3);
    tf.dispose([value, norm, ...byName.values()]);
  };
  await step();
  const work = await countGpuWork(step);
  optimizer.dispose();
  model.dispose();
  tf.dispose([batch.inputIds, batch.attentionMask, batch.labels]);
  return work;
}

/** Dispatches and reads of one generated token (the difference between two generation lengths). */
async function decodeStepKernels(cfg: LmConfig): Promise<{ dispatches: number; reads: number }> {
  const model = tinyModel(cfg);
  const prompts = [tok.encode('5+6=', { addSpecialTokens: true }), tok.encode('9', { addSpecialTokens: true })];
  // The first call also stacks the projection weights, once for all later calls.
  await generate(model, tok, prompts, { maxNewTokens: 1 });
  const short = await countGpuWork(() => generate(model, tok, prompts, { maxNewTokens: 3 }));
  const long = await countGpuWork(() => generate(model, tok, prompts, { maxNewTokens: 5 }));
  model.dispose();
  // Two more steps, unless a row stopped at EOS on the way (then the prompts need changing).
  assert.equal(long.result.map((r) => r.ids.length), [5, 5]);
  return { dispatches: (long.dispatches - short.dispatches) / 2, reads: (long.reads - short.reads) / 2 };
}

countTest('a training step takes 27 kernels per layer plus 30, and one read (the loss)', async () => {
  const cfg = presetConfig('tiny', tok, 64);
  const two = await trainStepKernels(cfg);
  const three = await trainStepKernels({ ...cfg, numLayers: 3 });
  assert.is(three.dispatches - two.dispatches, 27);
  assert.is(two.dispatches, 2 * 27 + 30);
  assert.is(two.reads, 1);
});

countTest('a decode step takes 9 kernels per layer plus 7, and one read (the chosen tokens)', async () => {
  const cfg = presetConfig('tiny', tok, 64);
  const two = await decodeStepKernels(cfg);
  const three = await decodeStepKernels({ ...cfg, numLayers: 3 });
  assert.is(three.dispatches - two.dispatches, 9);
  assert.is(two.dispatches, 2 * 9 + 7);
  assert.is(two.reads, 1);
});

countTest('a model too large to keep stacked copies of its frozen weights decodes the same tokens with 14 kernels per layer (five matmuls and two concatenations for two)', async () => {
  const cfg = presetConfig('tiny', tok, 64);
  const prompts = [tok.encode('5+6=', { addSpecialTokens: true }), tok.encode('9', { addSpecialTokens: true })];
  const model = tinyModel(cfg);
  const stacked = await generate(model, tok, prompts, { maxNewTokens: 6 });
  model.dispose();
  const saved = DECODER_TUNING.stackedBudget;
  DECODER_TUNING.stackedBudget = 0;
  try {
    const unstacked = tinyModel(cfg);
    assert.equal((await generate(unstacked, tok, prompts, { maxNewTokens: 6 })).map((r) => r.ids), stacked.map((r) => r.ids));
    unstacked.dispose();
    const two = await decodeStepKernels(cfg);
    const three = await decodeStepKernels({ ...cfg, numLayers: 3 });
    assert.is(three.dispatches - two.dispatches, 14);
  } finally {
    DECODER_TUNING.stackedBudget = saved;
  }
});

counts.run();

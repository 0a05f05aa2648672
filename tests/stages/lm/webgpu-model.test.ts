// The model on the fused WebGPU path beyond the model suites' parity: decoding against the no-cache path, training and the sliding window against wasm, and the kernel and read counts per step.
import * as tf from '@tensorflow/tfjs-core';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import * as assert from 'uvu/assert';
import { initBackend, readTensor as values } from '../../../stages/lm/backend.ts';
import { presetConfig, type LmConfig } from '../../../stages/lm/config.ts';
import { configureTraining, type TrainingSetup } from '../../../stages/lm/freeze.ts';
import { generate } from '../../../stages/lm/generate.ts';
import { createModel, type CausalLM } from '../../../stages/lm/model.ts';
import { applyLora } from '../../../stages/lm/lora.ts';
import { AdamW } from '../../../stages/lm/optimizer.ts';
import { addPauseToken, PAUSE_NAMES } from '../../../stages/lm/pause.ts';
import { SPLIT_TUNING } from '../../../stages/lm/split-weights.ts';
import { builtinTokenizer } from '../../../stages/lm/tokenizer.ts';
import { train } from '../../../stages/lm/trainer.ts';
import { attentionLanes } from '../../../stages/lm/webgpu/attention.ts';
import { countGpuWork } from '../../../stages/lm/webgpu/counters.ts';
import { profileGpu } from '../../../stages/lm/webgpu/profile.ts';
import { DECODER_TUNING } from '../../../stages/lm/webgpu/decoder.ts';
import { rightPaddedBatch } from '../../helpers/batches.ts';
import { withEnv } from '../../helpers/env.ts';
import { backendSuite, runOnWebgpu, useBackend } from '../../helpers/backends.ts';
import { expectedTensors, maxDiff, pauseFixtureModel, rejectsWith, relDiff, toTf, withFixtures } from '../../helpers/hf-fixtures.ts';

const decodeTest = backendSuite('webgpu decoding', 'webgpu');
const tok = builtinTokenizer();

/** The tokenizer without an end-of-sequence id: generation runs to its token limit, so counts compare step for step. */
const noEos = Object.create(tok, { eosId: { value: null } }) as typeof tok;

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

withFixtures(decodeTest)('the pause wrapper\'s decode step combines its two heads in one kernel: the fixture\'s log-probs at the last position within 1e-4', async () => {
  const model = await pauseFixtureModel();
  try {
    const ex = await expectedTensors('pause-wrapper');
    const ids = toTf<tf.Tensor2D>(ex.get('input_ids')!);
    const [rows, T] = ids.shape;
    const V1 = model.config.vocabSize + 1;
    const last = model.decodeStep(ids, tf.onesLike(ids), null);
    const got = await values(last.logProbs);
    const want = ex.get('combined_logprobs')!.data;
    for (let b = 0; b < rows; b++) {
      const at = (b * T + T - 1) * V1;
      assert.ok(maxDiff(got.subarray(b * V1, (b + 1) * V1), want.subarray(at, at + V1)) < 1e-4, `row ${b}`);
    }
    last.logProbs.dispose();
    last.cache.dispose();
  } finally {
    model.dispose();
  }
});

/** Generation with decode-graph replay turned on or off (PAUSEPIPE_DECODE_GRAPH), counted. */
function generateWithGraph(graph: 'on' | 'off', model: CausalLM, prompts: number[][], opts: Parameters<typeof generate>[3]) {
  return withEnv('PAUSEPIPE_DECODE_GRAPH', graph, () => countGpuWork(() => generate(model, noEos, prompts, opts)));
}

decodeTest('replayed decode steps choose the tokens that steps through tfjs choose: greedy and sampled, the plain model and the pause wrapper; LoRA steps are not replayed and decode the same', async () => {
  const prompts = [tok.encode('7+8=', { addSpecialTokens: true }), tok.encode('12', { addSpecialTokens: true })];
  const base = tinyModel();
  const pause = await addPauseToken(tinyModel(), 5, { log: () => {} });
  // A pause head leaning towards pauses, so sampled rows emit some and replayed steps embed the pause token.
  pause.variable(PAUSE_NAMES.ctrlBias).assign(tf.tensor1d([1, 0]));
  const lora = tinyModel();
  applyLora(lora, { rank: 2, targetModules: ['q_proj', 'v_proj'] }, () => {});
  try {
    for (const [name, model, replayed] of [['plain', base, true], ['pause', pause, true], ['lora', lora, false]] as const) {
      // The first generation also stacks the frozen projection weights, once for all later ones.
      await generate(model, tok, prompts, { maxNewTokens: 1 });
      for (const temperature of [0, 1.5]) {
        const opts = { maxNewTokens: 12, temperature, seed: 8 };
        const on = await generateWithGraph('on', model, prompts, opts);
        const off = await generateWithGraph('off', model, prompts, opts);
        const label = `${name}, temperature ${temperature}`;
        assert.equal(on.result.map((r) => r.ids), off.result.map((r) => r.ids), label);
        assert.is(on.dispatches, off.dispatches, label);
        // Each step through tfjs makes a bind group per dispatch; replayed steps make none, so six more tokens
        // cost no bind group at all once the recorded step's are made.
        const shorter = await generateWithGraph('on', model, prompts, { ...opts, maxNewTokens: 6 });
        assert.is(on.bindGroups === shorter.bindGroups, replayed, `${label}: ${shorter.bindGroups} bind groups for 6 tokens, ${on.bindGroups} for 12`);
      }
    }
    const sampled = await generateWithGraph('on', pause, prompts, { maxNewTokens: 12, temperature: 1.5, seed: 8 });
    assert.ok(sampled.result.some((r) => r.ids.includes(pause.pauseId)), 'a pause was drawn');
  } finally {
    base.dispose();
    pause.dispose();
    lora.dispose();
  }
});

decodeTest('decoding several steps ahead of the host\'s read (PAUSEPIPE_DECODE_LOOKAHEAD) chooses the same tokens, reads each step once and runs no step past the limit', async () => {
  const model = tinyModel();
  const prompts = [tok.encode('7+8=', { addSpecialTokens: true }), tok.encode('12', { addSpecialTokens: true })];
  /** Generation with `n` steps ahead, counted; `readAtFirstStep` is the steps read when the host has the first one's tokens. */
  const ahead = async (n: string, t: typeof tok, opts: Parameters<typeof generate>[3]) => {
    let readAtFirstStep = -1;
    const run = await withEnv('PAUSEPIPE_DECODE_LOOKAHEAD', n, () => countGpuWork((work) =>
      generate(model, t, prompts, { ...opts, onStep: (step) => void (step === 1 && (readAtFirstStep = work.reads)) })));
    return { ...run, readAtFirstStep };
  };
  try {
    await generate(model, tok, prompts, { maxNewTokens: 1 });
    for (const temperature of [0, 1.5]) {
      const opts = { maxNewTokens: 10, temperature, seed: 3 };
      const [none, one, four] = [await ahead('0', noEos, opts), await ahead('1', noEos, opts), await ahead('4', noEos, opts)];
      for (const [label, run] of [['0 ahead', none], ['4 ahead', four]] as const) {
        assert.equal(run.result.map((r) => r.ids), one.result.map((r) => r.ids), `${label}, temperature ${temperature}`);
        // Ten steps (the prompt's and nine one-token steps), each read once, whatever runs ahead.
        assert.is(run.dispatches, one.dispatches, `${label}, temperature ${temperature}: dispatches`);
        assert.is(run.reads, one.reads, `${label}, temperature ${temperature}: reads`);
      }
      assert.is(one.reads, 10);
      // Every queued step's read is asked for as it is queued: when the first step's tokens arrive, 1 + n are.
      assert.equal([none.readAtFirstStep, one.readAtFirstStep, four.readAtFirstStep], [1, 2, 5]);
    }
    // With an end-of-sequence token rows stop early; steps queued past it are thrown away, the tokens stay the same.
    const withEos = { maxNewTokens: 12, temperature: 1.5, seed: 5 };
    assert.equal((await ahead('4', tok, withEos)).result, (await ahead('0', tok, withEos)).result);
    await withEnv('PAUSEPIPE_DECODE_LOOKAHEAD', 'two', async () => {
      await rejectsWith(() => generate(model, tok, prompts, { maxNewTokens: 2 }), /PAUSEPIPE_DECODE_LOOKAHEAD must be a whole number from 0 to 64, got 'two'/);
    });
  } finally {
    model.dispose();
  }
});

runOnWebgpu(decodeTest);

const trainTest = backendSuite('webgpu training', 'webgpu');

/** The loss gradient of every trainable weight, read to the host. */
async function gradients(model: CausalLM, batch = rightPaddedBatch()): Promise<Map<string, Float32Array>> {
  const vars = model.trainableVariables();
  const names = new Map([...vars].map(([saved, v]) => [v.name, saved]));
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
    await useBackend('webgpu');
    const onGpu = tinyModel(undefined, setup);
    const got = await gradients(onGpu);
    onGpu.dispose();
    assert.equal([...got.keys()].sort(), [...want.keys()].sort());
    for (const [name, g] of got) assert.ok(maxDiff(g, want.get(name)!) < 2e-5, `${name}: ${maxDiff(g, want.get(name)!)}`);
  });
}

trainTest('the lanes attention (PAUSEPIPE_ATTENTION=lanes): every weight\'s gradient and two training steps\' losses within 1e-5 of the rows kernels\', then the same greedy tokens', async () => {
  await useBackend('webgpu');
  const byAttention = (choice: 'rows' | 'lanes') => withEnv('PAUSEPIPE_ATTENTION', choice, async () => {
    assert.is(attentionLanes(16), choice === 'lanes' ? 2 : 0, 'invocations per row');
    const model = tinyModel();
    const grads = await gradients(model);
    model.dispose();
    const rows = Array.from({ length: 4 }, (_, i) => ({ question: `${i}+${i + 2}?`, answer: `${2 * i + 2}\n#### ${2 * i + 2}` }));
    const trained = tinyModel();
    const res = await train(trained, tok, { train: rows, validation: [] }, { batchSize: 2, maxSteps: 2, lr: 3e-3, loggingSteps: 1 }, { log: () => {} });
    // Prompts of different lengths: the prefill attends over the cache with left padding.
    const generated = await generate(trained, noEos, [tok.encode('3+4=', { addSpecialTokens: true }), tok.encode('10', { addSpecialTokens: true })], { maxNewTokens: 8 });
    trained.dispose();
    return { grads, losses: res.trainLossCurve.map(([, l]) => l), tokens: generated.map((r) => r.ids) };
  });
  const want = await byAttention('rows');
  const got = await byAttention('lanes');
  assert.equal([...got.grads.keys()].sort(), [...want.grads.keys()].sort());
  for (const [name, g] of got.grads) assert.ok(maxDiff(g, want.grads.get(name)!) < 1e-5, `${name}: ${maxDiff(g, want.grads.get(name)!)}`);
  assert.is(got.losses.length, 2);
  got.losses.forEach((l, i) => assert.ok(relDiff(l, want.losses[i]!) < 1e-5, `loss ${i}: ${l} vs ${want.losses[i]}`));
  assert.equal(got.tokens, want.tokens, 'greedy tokens after training');
  assert.equal(got.tokens.map((ids) => ids.length), [8, 8]);
});

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
  await useBackend('webgpu');
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
  const weights = async (model: CausalLM) => Promise.all([...model.weights.keys()].map(async (name) => Array.from(await values(model.variable(name)))));
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

runOnWebgpu(trainTest);

const windowTest = backendSuite('webgpu sliding window', 'webgpu');

windowTest('with a sliding window of 5 over 16 positions the fused path gives the tfjs-op path\'s logits, gradients and generated tokens', async () => {
  // Larger weights than the preset's 0.02, so attention is far from uniform and the window visibly matters.
  const cfg: LmConfig = { ...presetConfig('tiny', tok, 64), modelType: 'mistral', slidingWindow: 5, initializerRange: 0.2 };
  const prompts = [tok.encode('7+8=', { addSpecialTokens: true }), tok.encode('12+3=40', { addSpecialTokens: true })];
  const run = async (config: LmConfig) => {
    const model = tinyModel(config);
    const batch = rightPaddedBatch();
    const logits = await values(model.forward(batch.inputIds, batch.attentionMask));
    const grads = await gradients(model, batch);
    // Prompts of 5 and 8 tokens and 12 new ones: the cache outgrows the window, left padding included.
    const greedy = await generate(model, tok, prompts, { maxNewTokens: 12 });
    const sampled = await generate(model, tok, prompts, { maxNewTokens: 12, temperature: 0.8, seed: 9 });
    model.dispose();
    return { logits, grads, ids: [...greedy, ...sampled].map((r) => r.ids) };
  };
  await initBackend('wasm');
  const want = await run(cfg);
  await useBackend('webgpu');
  const got = await run(cfg);
  const unlimited = await run({ ...cfg, slidingWindow: undefined });
  const mask = await values(rightPaddedBatch().attentionMask);
  const V = cfg.vocabSize;
  const real = (i: number) => mask[Math.floor(i / V)] === 1;
  assert.ok(maxDiff(got.logits, want.logits, real) < 1e-4, `logits ${maxDiff(got.logits, want.logits, real)}`);
  assert.ok(maxDiff(unlimited.logits, want.logits, real) > 1e-2, 'without the window the logits differ: the window is what the paths agree on');
  // Weights this large give gradients up to ~1e4: within 2e-5 of the largest of each weight's gradient.
  for (const [name, g] of got.grads) {
    const w = want.grads.get(name)!;
    const scale = Math.max(1, ...w.map(Math.abs));
    assert.ok(maxDiff(g, w) < 2e-5 * scale, `${name}: ${maxDiff(g, w)} with gradients up to ${scale}`);
  }
  assert.equal(got.ids, want.ids);
});

runOnWebgpu(windowTest);

const countTest = backendSuite('webgpu kernel counts', 'webgpu');

/** Dispatches of one full training step (loss, gradients of every weight, AdamW) after a first warm-up step. */
async function trainStepKernels(cfg: LmConfig): Promise<{ dispatches: number; reads: number }> {
  const model = tinyModel(cfg);
  const vars = model.trainableVariables();
  const names = new Map([...vars].map(([saved, v]) => [v.name, saved]));
  const optimizer = new AdamW(vars);
  const batch = rightPaddedBatch();
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

/** Dispatches, reads and bind groups of one generated token (the difference between two generation lengths). */
async function decodeStepKernels(cfg: LmConfig): Promise<{ dispatches: number; reads: number; bindGroups: number }> {
  const model = tinyModel(cfg);
  const prompts = [tok.encode('5+6=', { addSpecialTokens: true }), tok.encode('9', { addSpecialTokens: true })];
  // The first call also stacks the projection weights, once for all later calls.
  await generate(model, tok, prompts, { maxNewTokens: 1 });
  const short = await countGpuWork(() => generate(model, tok, prompts, { maxNewTokens: 3 }));
  const long = await countGpuWork(() => generate(model, tok, prompts, { maxNewTokens: 5 }));
  model.dispose();
  // Two more steps, unless a row stopped at EOS on the way (then the prompts need changing).
  assert.equal(long.result.map((r) => r.ids.length), [5, 5]);
  const perStep = (key: 'dispatches' | 'reads' | 'bindGroups') => (long[key] - short[key]) / 2;
  return { dispatches: perStep('dispatches'), reads: perStep('reads'), bindGroups: perStep('bindGroups') };
}

countTest('a training step takes 27 kernels per layer plus 30, and one read (the loss)', async () => {
  const cfg = presetConfig('tiny', tok, 64);
  const two = await trainStepKernels(cfg);
  const three = await trainStepKernels({ ...cfg, numLayers: 3 });
  assert.is(three.dispatches - two.dispatches, 27);
  assert.is(two.dispatches, 2 * 27 + 30);
  assert.is(two.reads, 1);
});

countTest('a decode step takes 7 kernels per layer plus 5, one read (the chosen tokens), and makes no bind group (it is replayed)', async () => {
  const cfg = presetConfig('tiny', tok, 64);
  const two = await decodeStepKernels(cfg);
  const three = await decodeStepKernels({ ...cfg, numLayers: 3 });
  assert.is(three.dispatches - two.dispatches, 7);
  assert.is(two.dispatches, 2 * 7 + 5);
  assert.is(two.reads, 1);
  assert.is(two.bindGroups, 0);
});

countTest('a model too large to keep stacked copies of its frozen weights decodes the same tokens with 7 kernels per layer (q|k|v and gate|up each one product reading the weights side by side), replayed', async () => {
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
    assert.is(three.dispatches - two.dispatches, 7);
    // Mistral-7B's decode steps take this path on a GPU: they are replayed too.
    assert.is(two.bindGroups, 0);
  } finally {
    DECODER_TUNING.stackedBudget = saved;
  }
});

countTest('profileGpu times every dispatch of a forward pass on the GPU, tfjs\'s programs and the fused kernels by name', async () => {
  const model = tinyModel();
  const ids = tf.tensor2d([[3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20]], [1, 18], 'int32');
  try {
    tf.dispose(model.forward(ids)); // pipelines and prepared weights
    const counted = await countGpuWork(() => tf.dispose(model.forward(ids)));
    const profiled = await profileGpu(() => tf.dispose(model.forward(ids)));
    assert.is(profiled.kernels.reduce((n, k) => n + k.dispatches, 0), counted.dispatches);
    const names = profiled.kernels.map((k) => k.name);
    // tfjs's matmul programs (the default product) and the fused attention, one dispatch per layer.
    assert.ok(names.some((n) => n.startsWith('MatMul')), names.join(', '));
    assert.is(profiled.kernels.find((k) => /^attention-\d+-\d+$/.test(k.name))?.dispatches, 2);
    assert.ok(profiled.kernels.every((k) => k.ms >= 0) && profiled.totalMs > 0);
  } finally {
    ids.dispose();
    model.dispose();
  }
});

countTest('a stacked gate|up beyond one binding runs as two matmuls through the split check (one-token steps: one product side by side), and decodes the same tokens', async () => {
  const cfg = presetConfig('tiny', tok, 64);
  const prompts = [tok.encode('5+6=', { addSpecialTokens: true }), tok.encode('9', { addSpecialTokens: true })];
  const model = tinyModel(cfg);
  await generate(model, tok, prompts, { maxNewTokens: 1 });
  const stacked = await countGpuWork(() => generate(model, noEos, prompts, { maxNewTokens: 6 }));
  // gate|up stacked is 2 × 176 × 64 floats (90 KB), q|k|v 32 KB, gate alone 45 KB.
  SPLIT_TUNING.maxBindingBytes = 64 * 1024;
  try {
    const split = await countGpuWork(() => generate(model, noEos, prompts, { maxNewTokens: 6 }));
    assert.equal(split.result.map((r) => r.ids), stacked.result.map((r) => r.ids));
    // The prompt's step: two matmuls and a concatenation instead of one matmul, 2 more kernels per layer. The five
    // one-token steps read gate and up side by side in one few-rows product, as many kernels as stacked.
    assert.is(split.dispatches - stacked.dispatches, 2 * cfg.numLayers);
  } finally {
    SPLIT_TUNING.maxBindingBytes = null;
    model.dispose();
  }
});

runOnWebgpu(countTest);

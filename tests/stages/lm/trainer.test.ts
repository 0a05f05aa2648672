// The training loop on a tiny from-scratch model: learning, accumulation, best-model reload, bit-exact resume, NaN stop, tensor hygiene.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import * as tf from '@tensorflow/tfjs-core';
import { mkdtemp, readdir, rm, truncate } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { initBackend } from '../../../stages/lm/backend.ts';
import { presetConfig } from '../../../stages/lm/config.ts';
import { configureTraining, type TrainingSetup } from '../../../stages/lm/freeze.ts';
import { encodeTrainingExample, padIdOf, responseTemplateIds } from '../../../stages/lm/collate.ts';
import { createModel, type CausalLM } from '../../../stages/lm/model.ts';
import { addPauseToken, LM_CLASS, PAUSE_CLASS } from '../../../stages/lm/pause.ts';
import { builtinTokenizer } from '../../../stages/lm/tokenizer.ts';
import { evaluateLoss, train, type TrainOptions } from '../../../stages/lm/trainer.ts';
import { IGNORE_INDEX } from '../../../stages/lm/types.ts';

const tok = builtinTokenizer();
const quiet = () => {};

/** Sums of small numbers: every answer is `d\n#### d` (same completion length, so accumulation is exact). */
function rows(n: number, offset = 0): { question: string; answer: string }[] {
  return Array.from({ length: n }, (_, k) => {
    const i = k + offset;
    const a = i % 5;
    const b = (i * 3) % 5;
    return { question: `${a}+${b}?`, answer: `${a + b}\n#### ${a + b}` };
  });
}
const data = { train: rows(12), validation: rows(4, 12) };

function tinyModel(setup: TrainingSetup = { groups: 'all' }): CausalLM {
  const model = createModel(presetConfig('tiny', tok, 64), 3);
  configureTraining(model, setup, quiet);
  return model;
}

async function values(model: CausalLM): Promise<Map<string, Float32Array>> {
  const out = new Map<string, Float32Array>();
  for (const [name, v] of model.trainableVariables()) out.set(name, (await v.data()) as Float32Array);
  return out;
}

const test = suite('trainer');

test.before(async () => {
  await initBackend('wasm');
});

test('training lowers the loss, logs every logging step and evaluates every eval step and at the end', async () => {
  const model = tinyModel();
  const progress: number[] = [];
  const res = await train(model, tok, data, { batchSize: 4, maxSteps: 10, lr: 3e-3, loggingSteps: 2, evalSteps: 4 }, { progress: (p) => progress.push(p.step), log: quiet });
  assert.equal(progress, [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
  assert.equal(res.trainLossCurve.map(([s]) => s), [2, 4, 6, 8, 10]);
  assert.equal(res.evalLossCurve.map(([s]) => s), [4, 8, 10]);
  assert.ok(res.trainLossCurve.at(-1)![1] < res.trainLossCurve[0]![1] - 0.5, `train loss ${JSON.stringify(res.trainLossCurve)}`);
  assert.ok(res.evalLossCurve.at(-1)![1] < res.evalLossCurve[0]![1], `eval loss ${JSON.stringify(res.evalLossCurve)}`);
  assert.is(res.steps, 10);
  // 12 rows in batches of 4: 3 updates per epoch.
  assert.ok(Math.abs(res.epochs - 10 / 3) < 1e-12);
  assert.is(res.finalEvalLoss, res.evalLossCurve.at(-1)![1]);
  assert.is(res.trainable.trainable, res.trainable.total);
  model.dispose();
});

test('epochs set the number of updates when max steps is absent', async () => {
  const model = tinyModel();
  const res = await train(model, tok, data, { batchSize: 5, epochs: 2, lr: 1e-3 }, { log: quiet });
  // ceil(12 / 5) = 3 batches per epoch.
  assert.is(res.steps, 6);
  assert.is(res.epochs, 2);
  model.dispose();
});

test('two accumulated micro-batches of 2 give the same update as one batch of 4', async () => {
  const opts: Partial<TrainOptions> = { maxSteps: 3, lr: 1e-2 };
  const a = tinyModel();
  await train(a, tok, data, { ...opts, batchSize: 4 }, { log: quiet });
  const b = tinyModel();
  await train(b, tok, data, { ...opts, batchSize: 2, gradAccum: 2 }, { log: quiet });
  const [va, vb] = [await values(a), await values(b)];
  let worst = 0;
  for (const [name, x] of va) {
    const y = vb.get(name)!;
    for (let i = 0; i < x.length; i++) worst = Math.max(worst, Math.abs(x[i]! - y[i]!));
  }
  assert.ok(worst < 1e-5, `largest difference ${worst}`);
  a.dispose();
  b.dispose();
});

test('gradient checkpointing trains to the same losses and weights, logs that it is on, and is switched off after', async () => {
  const opts: Partial<TrainOptions> = { batchSize: 4, maxSteps: 3, lr: 1e-2, loggingSteps: 1, evalSteps: 3 };
  const a = tinyModel();
  const plain = await train(a, tok, data, opts, { log: quiet });
  const b = tinyModel();
  const lines: string[] = [];
  const recomputed = await train(b, tok, data, { ...opts, gradientCheckpointing: true }, { log: (l) => lines.push(l) });
  assert.ok(lines.some((l) => l.startsWith('gradient checkpointing: ')), lines.join('\n'));
  assert.is(b.gradientCheckpointing, false);
  assert.equal(recomputed.trainLossCurve.map(([s]) => s), [1, 2, 3]);
  for (const [i, [, loss]] of plain.trainLossCurve.entries()) assert.ok(Math.abs(recomputed.trainLossCurve[i]![1] - loss) < 1e-6, `step ${i + 1}`);
  const [va, vb] = [await values(a), await values(b)];
  let worst = 0;
  for (const [name, x] of va) {
    const y = vb.get(name)!;
    for (let i = 0; i < x.length; i++) worst = Math.max(worst, Math.abs(x[i]! - y[i]!));
  }
  assert.ok(worst < 1e-6, `largest difference ${worst}`);
  a.dispose();
  b.dispose();
});

test('the best weights by eval loss are put back at the end', async () => {
  const model = tinyModel();
  const seen = new Map<number, Map<string, Float32Array>>();
  // A learning rate far too high: the eval loss gets worse after the first steps, so the best is not the last.
  const res = await train(model, tok, data, { batchSize: 4, maxSteps: 6, lr: 0.3, evalSteps: 1 }, {
    log: quiet,
    afterStep: async (step) => void seen.set(step, await values(model)),
  });
  assert.ok(res.bestStep !== null && res.bestStep < res.steps, `best step ${res.bestStep} of ${res.steps}`);
  assert.is(res.bestEvalLoss, Math.min(...res.evalLossCurve.map(([, l]) => l)));
  const final = await values(model);
  for (const [name, v] of seen.get(res.bestStep!)!) assert.equal(Array.from(final.get(name)!), Array.from(v), name);
  model.dispose();
});

test('a run killed after a checkpoint resumes and ends with bit-identical weights, curves and best model', async () => {
  const scratch = await mkdtemp(path.join(tmpdir(), 'pausepipe-trainer-'));
  // LoRA with dropout and a modules_to_save copy: the resume must also reproduce the dropout masks.
  const setup: TrainingSetup = { groups: ['lmHead'], lora: { rank: 4, alpha: 8, dropout: 0.1, targetModules: ['q_proj', 'v_proj'], seed: 5 } };
  const opts: Partial<TrainOptions> = { batchSize: 2, gradAccum: 2, maxSteps: 7, lr: 5e-3, evalSteps: 3, saveSteps: 2, loggingSteps: 1 };
  try {
    const whole = tinyModel(setup);
    const expected = await train(whole, tok, data, opts, { log: quiet });
    const expectedWeights = await values(whole);
    whole.dispose();

    const first = tinyModel(setup);
    const killed = new Error('killed');
    await train(first, tok, data, { ...opts, checkpointDir: scratch }, {
      log: quiet,
      afterStep: (step) => {
        if (step === 5) throw killed;
      },
    }).then(() => assert.unreachable('the run should have been killed'), (err) => assert.is(err, killed));
    first.dispose();
    assert.equal((await readdir(scratch)).sort(), ['checkpoint-000004', 'latest.json']);

    const second = tinyModel(setup);
    const lines: string[] = [];
    const resumed = await train(second, tok, data, { ...opts, checkpointDir: scratch }, { log: (l) => lines.push(l) });
    assert.is(resumed.resumedFrom, 4);
    assert.ok(lines.includes('resuming from the checkpoint at step 4 of 7'), lines.join('\n'));
    assert.equal(resumed.trainLossCurve, expected.trainLossCurve);
    assert.equal(resumed.evalLossCurve, expected.evalLossCurve);
    assert.is(resumed.bestStep, expected.bestStep);
    const got = await values(second);
    assert.equal([...got.keys()], [...expectedWeights.keys()]);
    for (const [name, v] of expectedWeights) assert.equal(Array.from(got.get(name)!), Array.from(v), name);
    second.dispose();
  } finally {
    await rm(scratch, { recursive: true, force: true });
  }
});

test('a checkpoint written with other settings is ignored, not resumed', async () => {
  const scratch = await mkdtemp(path.join(tmpdir(), 'pausepipe-trainer-'));
  try {
    const a = tinyModel();
    await train(a, tok, data, { batchSize: 4, maxSteps: 3, saveSteps: 1, checkpointDir: scratch }, { log: quiet });
    a.dispose();
    const b = tinyModel();
    const lines: string[] = [];
    const res = await train(b, tok, data, { batchSize: 4, maxSteps: 3, saveSteps: 1, lr: 1e-3, checkpointDir: scratch }, { log: (l) => lines.push(l) });
    assert.is(res.resumedFrom, null);
    assert.ok(lines.some((l) => l.startsWith('ignoring the checkpoint')));
    b.dispose();
  } finally {
    await rm(scratch, { recursive: true, force: true });
  }
});

test('a damaged checkpoint is said, removed, and training starts over to the same weights as a fresh run', async () => {
  const scratch = await mkdtemp(path.join(tmpdir(), 'pausepipe-trainer-'));
  const opts: Partial<TrainOptions> = { batchSize: 4, maxSteps: 3, saveSteps: 1 };
  try {
    const fresh = tinyModel();
    await train(fresh, tok, data, opts, { log: quiet });
    const expected = await values(fresh);
    fresh.dispose();
    const killed = tinyModel();
    await train(killed, tok, data, { ...opts, checkpointDir: scratch }, {
      log: quiet,
      afterStep: (step) => {
        if (step === 2) throw new Error('killed');
      },
    }).catch(() => undefined);
    killed.dispose();
    // Cut short, as a full disk or a lost write leaves it.
    assert.equal((await readdir(scratch)).sort(), ['checkpoint-000001', 'latest.json']);
    await truncate(path.join(scratch, 'checkpoint-000001', 'trainable.safetensors'), 100);
    const again = tinyModel();
    const lines: string[] = [];
    const damaged: string[] = [];
    const res = await train(again, tok, data, { ...opts, checkpointDir: scratch }, { log: (l) => lines.push(l), checkpointDamaged: (why) => damaged.push(why) });
    assert.is(res.resumedFrom, null);
    assert.equal(damaged.length, 1);
    assert.match(damaged[0]!, 'trainable.safetensors');
    assert.ok(lines.includes(`ignoring the damaged checkpoint in ${scratch} and starting over: ${damaged[0]}`), lines.join('\n'));
    const got = await values(again);
    for (const [name, v] of expected) assert.equal(Array.from(got.get(name)!), Array.from(v), name);
    again.dispose();
  } finally {
    await rm(scratch, { recursive: true, force: true });
  }
});

test('a NaN loss stops training with an error naming the step', async () => {
  const model = tinyModel();
  const norm = model.variable('model.norm.weight');
  let step = 0;
  await train(model, tok, data, { batchSize: 4, maxSteps: 5 }, {
    log: quiet,
    afterStep: (s) => {
      step = s;
      // Poison a weight after the second update: the third update's loss is NaN.
      if (s === 2) norm.assign(tf.fill(norm.shape, NaN));
    },
  }).then(() => assert.unreachable('NaN must stop training'), (err) => assert.match(err.message, /^training loss is NaN at step 3 \(epoch 1, batch 3\)/));
  assert.is(step, 2);
  model.dispose();
});

test('live tensors stay constant across training steps, evaluation included, and all go with the model', async () => {
  const before = tf.memory().numTensors;
  const model = tinyModel({ groups: ['lmHead', 'lmEmbeddings'], lora: { rank: 2, dropout: 0.05 } });
  const counts: number[] = [];
  await train(model, tok, data, { batchSize: 4, maxSteps: 6, evalSteps: 2, gradAccum: 2 }, { log: quiet, afterStep: () => void counts.push(tf.memory().numTensors) });
  assert.ok(counts.every((c) => c === counts[0]), `tensors per step: ${counts.join(', ')}`);
  model.dispose();
  assert.is(tf.memory().numTensors, before);
});

test('the eval loss is each batch\'s per-token loss weighted by its rows, as Trainer.evaluate; pauses count through the pause head', async () => {
  const plain = createModel(presetConfig('tiny', tok, 64), 5);
  const model = await addPauseToken(plain, 7, { log: quiet });
  plain.dispose();
  const ptok = tok.withPauseToken();
  const P = '<|pause|>';
  // Completions of 9, 26 and 6 tokens (EOS included), pauses among them, so pooling the tokens would differ.
  const examples = [
    { question: '1+1?', answer: `2${P}\n#### 2` },
    { question: '2+3+4?', answer: `2+3=<<2+3=5>>5${P}${P}\n5+4=9\n#### 9` },
    { question: '3?', answer: '#### 3' },
  ].map((ex) => encodeTrainingExample(ptok, ex, responseTemplateIds(ptok)));
  // Each example alone, unpadded, from the model's three outputs: what right padding must not change.
  const perExample = examples.map((ex) => tf.tidy(() => {
    const ids = tf.tensor2d([ex.ids], [1, ex.ids.length], 'int32');
    const out = model.pauseForward(ids);
    const lm = tf.logSoftmax(out.lmLogits).arraySync() as number[][][];
    const head = tf.logSoftmax(out.ctrlLogits).arraySync() as number[][][];
    let lmSum = 0; let lmCount = 0; let headSum = 0; let counted = 0;
    for (let t = 0; t + 1 < ex.ids.length; t++) {
      const target = ex.labels[t + 1]!;
      if (target === IGNORE_INDEX) continue;
      counted++;
      if (target === model.pauseId) {
        headSum -= head[0]![t]![PAUSE_CLASS]!;
      } else {
        headSum -= head[0]![t]![LM_CLASS]!;
        lmSum -= lm[0]![t]![target]!;
        lmCount++;
      }
    }
    return { lmSum, lmCount, headSum, counted };
  }));
  type Sums = (typeof perExample)[number];
  const add = (a: Sums, b: Sums): Sums => ({ lmSum: a.lmSum + b.lmSum, lmCount: a.lmCount + b.lmCount, headSum: a.headSum + b.headSum, counted: a.counted + b.counted });
  const batchLosses = [perExample.slice(0, 2).reduce(add), perExample[2]!].map((s) => ({
    loss: (s.lmSum + s.headSum) / s.counted, lmLoss: s.lmSum / s.lmCount, ctrlLoss: s.headSum / s.counted,
  }));
  const weighted = (key: 'loss' | 'lmLoss' | 'ctrlLoss') => (2 * batchLosses[0]![key] + 1 * batchLosses[1]![key]) / 3;
  const got = await evaluateLoss(model, examples, 2, padIdOf(ptok));
  for (const key of ['loss', 'lmLoss', 'ctrlLoss'] as const) {
    assert.ok(Math.abs(got[key]! - weighted(key)) <= 1e-5 * weighted(key), `${key}: ${got[key]} vs ${weighted(key)}`);
  }
  const all = perExample.reduce(add);
  const pooled = (all.lmSum + all.headSum) / all.counted;
  assert.ok(Math.abs(pooled - weighted('loss')) > 1e-3, `pooling every token (${pooled}) must differ from the per-batch mean here`);
  model.dispose();
});

test('bad options are refused before any work', async () => {
  const model = tinyModel();
  await train(model, tok, data, { batchSize: 0 }).then(() => assert.unreachable(), (err) => assert.match(err.message, /batchSize must be a whole number >= 1, got 0/));
  await train(model, tok, { train: [], validation: [] }).then(() => assert.unreachable(), (err) => assert.match(err.message, /training set is empty/));
  // max_length 4 ends every row inside its prompt: nothing would be learned, and the eval loss would read 0.
  await train(model, tok, data, { batchSize: 4, maxSteps: 2, maxLength: 4 }, { log: quiet }).then(() => assert.unreachable(), (err) => assert.is(err.message,
    'none of the 12 training examples has an answer token within max_length 4: the question and the `### Answer:` template fill it; raise max_length'));
  model.dispose();
});

test.run();

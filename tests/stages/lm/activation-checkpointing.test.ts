// Activation checkpointing: the same loss and gradients as the stored-activation backward, with a lower peak, on every backend present.
import * as assert from 'uvu/assert';
import * as tf from '@tensorflow/tfjs-core';
import { readTensor } from '../../../stages/lm/backend.ts';
import { fromHfConfig, initWeights } from '../../../stages/lm/config.ts';
import { configureTraining, type TrainingSetup } from '../../../stages/lm/freeze.ts';
import { CausalLM } from '../../../stages/lm/model.ts';
import { IGNORE_INDEX, type Batch } from '../../../stages/lm/types.ts';
import { backendSuite, forEachBackend } from '../../helpers/backends.ts';
import { FIXTURES, fixtureModel, maxDiff, pauseFixtureModel, readJson, withFixtures } from '../../helpers/hf-fixtures.ts';
import path from 'node:path';

const quiet = () => {};

/**
 * Recomputing a layer runs the same kernels on the same inputs, so values agree to the last bits; gradients may be
 * summed in another order (the checkpointed input's gradient arrives in one piece), hence a float32 rounding margin.
 */
const TOL = 1e-6;

/** Two rows, the second left-padded, the prompt's labels ignored; ids below `vocab`, the pause id in both rows. */
function batchOf(pauseId: number | null): Batch {
  const p = pauseId ?? 7;
  const ids = [[0, 44, 279, p, 322, 467, 302, 85, p, 287, 12, 1], [2, 2, 2, 0, 42, 303, p, 43, 86, 259, 355, 1]];
  const mask = [[1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1], [0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1]];
  const labels = ids.map((row, r) => row.map((id, t) => (t < 4 || mask[r]![t] === 0 ? IGNORE_INDEX : id)));
  return {
    inputIds: tf.tensor2d(ids, undefined, 'int32'),
    attentionMask: tf.tensor2d(mask, undefined, 'int32'),
    labels: tf.tensor2d(labels, undefined, 'int32'),
  };
}

/** Loss and gradients of every trainable variable, by saved name, read to the host. */
async function lossAndGrads(model: CausalLM, batch: Batch, checkpointing: boolean): Promise<{ loss: number; grads: Map<string, Float32Array> }> {
  model.gradientCheckpointing = checkpointing;
  if (model.lora) model.lora.dropoutSeed = 1234;
  const vars = model.trainableVariables();
  const names = new Map([...vars].map(([saved, v]) => [v.name, saved]));
  const { value, grads } = tf.variableGrads(() => model.lossParts(batch, { training: true }).loss, [...vars.values()]);
  const out = new Map<string, Float32Array>();
  for (const [tfName, g] of Object.entries(grads)) {
    out.set(names.get(tfName)!, Float32Array.from(await readTensor(g)));
    g.dispose();
  }
  const loss = (await readTensor(value))[0]!;
  value.dispose();
  model.gradientCheckpointing = false;
  return { loss, grads: out };
}

async function sameLossAndGrads(model: CausalLM, setup: TrainingSetup, pauseId: number | null): Promise<void> {
  configureTraining(model, setup, quiet);
  // PEFT starts every B at zero, which zeroes every A's gradient: give B values so both gradients are tested.
  let seed = 100;
  for (const { b } of model.lora?.adapters.values() ?? []) tf.tidy(() => b.assign(tf.randomNormal(b.shape, 0, 0.05, 'float32', seed++)));
  const batch = batchOf(pauseId);
  try {
    const stored = await lossAndGrads(model, batch, false);
    const before = tf.memory().numTensors;
    const recomputed = await lossAndGrads(model, batch, true);
    assert.is(tf.memory().numTensors, before, 'checkpointing leaks no tensor');
    assert.ok(Math.abs(recomputed.loss - stored.loss) <= TOL, `loss ${recomputed.loss} vs ${stored.loss}`);
    assert.equal([...recomputed.grads.keys()], [...stored.grads.keys()]);
    assert.ok(stored.grads.size > 0);
    for (const [name, g] of stored.grads) {
      const d = maxDiff(recomputed.grads.get(name)!, g);
      assert.ok(d <= TOL, `${name}: max diff ${d}`);
      assert.ok(g.some((v) => v !== 0), `${name}: a gradient reaches it`);
    }
  } finally {
    tf.dispose([batch.inputIds, batch.attentionMask, batch.labels]);
  }
}

/** Peak bytes tfjs holds during one loss-and-gradient step. */
async function peakBytes(model: CausalLM, batch: Batch, checkpointing: boolean): Promise<number> {
  model.gradientCheckpointing = checkpointing;
  const vars = [...model.trainableVariables().values()];
  const info = await tf.profile(() => {
    const { value, grads } = tf.variableGrads(() => model.lossParts(batch, { training: true }).loss, vars);
    tf.dispose([value, ...Object.values(grads)]);
  });
  model.gradientCheckpointing = false;
  return info.peakBytes;
}

forEachBackend((backend) => {
  const test = backendSuite('activation checkpointing', backend);

  withFixtures(test)('pause-only training (pause embedding and head): loss and both gradients equal with and without it', async () => {
    const model = await pauseFixtureModel();
    try {
      await sameLossAndGrads(model, { groups: ['pauseEmbedding', 'pauseHead'], lora: null }, 512);
    } finally {
      model.dispose();
    }
  });

  withFixtures(test)('LoRA with dropout on every projection and the pause head: loss and every adapter gradient equal', async () => {
    const model = await pauseFixtureModel();
    try {
      const lora = { rank: 4, alpha: 8, dropout: 0.1, targetModules: ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj'] };
      await sameLossAndGrads(model, { groups: ['pauseHead'], lora }, 512);
    } finally {
      model.dispose();
    }
  });

  withFixtures(test)('full training of a plain model: loss and the gradient of every weight equal', async () => {
    const model = await fixtureModel('mistral-tiny');
    try {
      await sameLossAndGrads(model, { groups: 'all', lora: null }, null);
    } finally {
      model.dispose();
    }
  });

  withFixtures(test)('8 layers, embedding-only training: the peak of a step drops by more than half', async () => {
    const json = await readJson(path.join(FIXTURES, 'mistral-tiny', 'config.json'));
    const config = fromHfConfig({ ...json, num_hidden_layers: 8 });
    const model = CausalLM.fromWeights(config, initWeights(config, 3));
    configureTraining(model, { groups: ['lmEmbeddings'], lora: null }, quiet);
    const batch = batchOf(null);
    try {
      const weights = [...model.weights.values()].reduce((n, v) => n + v.size * 4, 0);
      const stored = (await peakBytes(model, batch, false)) - weights;
      const recomputed = (await peakBytes(model, batch, true)) - weights;
      // Stored: 8 layers' activations. Checkpointed: 8 layer inputs and one layer's activations (recomputed in backward).
      assert.ok(recomputed < stored / 2, `peak above the weights: ${recomputed} bytes checkpointed vs ${stored} stored`);
    } finally {
      tf.dispose([batch.inputIds, batch.attentionMask, batch.labels]);
      model.dispose();
    }
  });

  test.run();
});

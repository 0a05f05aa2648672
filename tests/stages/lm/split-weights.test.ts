// Weights beyond one WebGPU binding as row blocks: the same logits, decoding and gradients as whole, and no training of them.
import * as tf from '@tensorflow/tfjs-core';
import * as assert from 'uvu/assert';
import { readTensor } from '../../../stages/lm/backend.ts';
import type { LmConfig } from '../../../stages/lm/config.ts';
import { configureTraining } from '../../../stages/lm/freeze.ts';
import { createModel, type CausalLM } from '../../../stages/lm/model.ts';
import { joinRowBlocks, SPLIT_TUNING } from '../../../stages/lm/split-weights.ts';
import { IGNORE_INDEX } from '../../../stages/lm/types.ts';
import { backendSuite, forEachBackend } from '../../helpers/backends.ts';
import { FIXTURES_PRESENT, maxDiff, pauseFixtureModel, valuesOf, withFixtures } from '../../helpers/hf-fixtures.ts';

const TINY: LmConfig = {
  modelType: 'llama', vocabSize: 100, hiddenSize: 16, intermediateSize: 32, numLayers: 2, numHeads: 4, numKvHeads: 2, headDim: 4,
  ropeTheta: 10000, rmsNormEps: 1e-6, tieWordEmbeddings: false, maxPositionEmbeddings: 32, initializerRange: 0.4, bosId: 1, eosId: 2, padId: 0,
};
/** 32 rows of 16 floats: the [100, 16] embedding and head split into blocks of 32, 32, 32 and 4 rows; the rest fits. */
const LIMIT = 32 * 16 * 4;
const quiet = () => {};

/** `f` with weights above `limit` bytes split (null: the backend's own limit, which these tiny weights never reach). */
async function withLimit<T>(limit: number | null, f: () => Promise<T>): Promise<T> {
  SPLIT_TUNING.maxBindingBytes = limit;
  try {
    return await f();
  } finally {
    SPLIT_TUNING.maxBindingBytes = null;
  }
}

const ids = (ids = [[1, 5, 99, 33, 67, 21], [0, 0, 1, 98, 12, 64]]) => tf.tensor2d(ids, [2, 6], 'int32');
const mask = () => tf.tensor2d([[1, 1, 1, 1, 1, 1], [0, 0, 1, 1, 1, 1]], [2, 6], 'int32');

/** Gradients of the named weights, by name, for the loss of the batch above. */
async function gradients(model: CausalLM, names: string[], rows = [[1, 5, 99, 33, 67, 21], [0, 0, 1, 98, 12, 64]]): Promise<Map<string, Float32Array | Int32Array>> {
  const x = ids(rows);
  const labels = rows.map((r, i) => r.map((id, j) => (j === 0 || (i === 1 && j < 3) ? IGNORE_INDEX : id)));
  const batch = { inputIds: x, attentionMask: mask(), labels: tf.tensor2d(labels, [2, 6], 'int32') };
  const vars = model.trainableVariables();
  const { value, grads } = tf.variableGrads(() => model.lossParts(batch, { training: true }).loss, [...vars.values()]);
  const out = new Map<string, Float32Array | Int32Array>();
  for (const name of names) out.set(name, await readTensor(grads[vars.get(name)!.name]!));
  tf.dispose([value, ...Object.values(grads), x, batch.attentionMask, batch.labels]);
  return out;
}

forEachBackend((backend) => {
  const test = backendSuite('split weights', backend);

  test('logits and cached decoding through row blocks equal those through the whole weights', async () => {
    const model = createModel(TINY, 4);
    try {
      const forward = () => valuesOf(() => model.forward(ids(), mask()));
      const decode = async () => {
        const first = model.decodeStep(ids(), mask(), null);
        const second = model.decodeStep(tf.tensor2d([[7], [99]], [2, 1], 'int32'), tf.concat([mask(), tf.ones([2, 1], 'int32')], 1) as tf.Tensor2D, first.cache);
        const out = await readTensor(second.logProbs);
        tf.dispose([first.logProbs, second.logProbs]);
        second.cache.dispose();
        return out;
      };
      const whole = [await forward(), await decode()];
      const split = await withLimit(LIMIT, async () => [await forward(), await decode()]);
      assert.ok(maxDiff(split[0]!, whole[0]!) < 1e-5, `logits ${maxDiff(split[0]!, whole[0]!)}`);
      assert.ok(maxDiff(split[1]!, whole[1]!) < 1e-5, `decoding ${maxDiff(split[1]!, whole[1]!)}`);
    } finally {
      model.dispose();
    }
  });

  test('gradients of the other weights are unchanged, and a split weight that would train is refused by name', async () => {
    const model = createModel(TINY, 4);
    try {
      const names = ['model.layers.0.self_attn.q_proj.weight', 'model.layers.1.mlp.down_proj.weight', 'model.norm.weight'];
      model.trainableNames = new Set(names);
      const whole = await gradients(model, names);
      const split = await withLimit(LIMIT, () => gradients(model, names));
      for (const n of names) assert.ok(maxDiff(split.get(n)!, whole.get(n)!) < 1e-5, `${n}: ${maxDiff(split.get(n)!, whole.get(n)!)}`);
      model.trainableNames = null;
      await withLimit(LIMIT, () => gradients(model, names)).then(() => assert.unreachable('a split weight trained'), (err: Error) =>
        assert.match(err.message, /^weight model\.embed_tokens\.weight \[100, 16\] takes 6400 bytes, beyond the 2048 bytes one WebGPU kernel can bind on this adapter: it can be used but not trained here/));
    } finally {
      model.dispose();
    }
  });

  withFixtures(test)('pause-only training of the pause wrapper gets the same gradients with its embedding and heads split', async () => {
    if (!FIXTURES_PRESENT) return;
    const model = await pauseFixtureModel();
    try {
      configureTraining(model, { groups: ['pauseEmbedding', 'pauseHead'] }, quiet);
      const names = [...model.trainableVariables().keys()];
      assert.equal(names, ['language_model.model.embed_tokens.new_embedding.weight', 'ctrl_tok_clf.weight', 'ctrl_tok_clf.bias']);
      // Pauses (id 512) among the inputs and the labels, so the pause row and the pause head both learn.
      const rows = [[0, 44, 512, 279, 322, 512], [0, 0, 43, 512, 86, 259]];
      const whole = await gradients(model, names, rows);
      // The [512, 64] embedding and [513, 64] head exceed 32 KiB: 4 and 5 blocks of 128 rows.
      const split = await withLimit(128 * 64 * 4, () => gradients(model, names, rows));
      for (const n of names) assert.ok(maxDiff(split.get(n)!, whole.get(n)!) < 1e-5, `${n}: ${maxDiff(split.get(n)!, whole.get(n)!)}`);
      assert.ok(Array.from(whole.get(names[0]!)!).some((g) => g !== 0), 'the pause row gets a gradient');
    } finally {
      model.dispose();
    }
  });

  test('joinRowBlocks makes one tensor of row blocks, in order, and frees the blocks', async () => {
    const blocks = [tf.tensor2d([[1, 2, 3], [4, 5, 6]]), tf.tensor2d([[7, 8, 9]]), tf.tensor2d([[10, 11, 12], [13, 14, 15], [16, 17, 18]])];
    const before = tf.memory().numTensors;
    const joined = joinRowBlocks(blocks);
    assert.equal(joined.shape, [6, 3]);
    assert.equal(Array.from(await readTensor(joined)), Array.from({ length: 18 }, (_, i) => i + 1));
    assert.ok(blocks.every((b) => b.isDisposed));
    assert.is(tf.memory().numTensors, before - 2);
    joined.dispose();
    assert.throws(() => joinRowBlocks([tf.zeros([1, 2]) as tf.Tensor2D, tf.zeros([1, 3]) as tf.Tensor2D]), /joinRowBlocks: blocks of 2 and 3 columns/);
  });

  test.run();
});

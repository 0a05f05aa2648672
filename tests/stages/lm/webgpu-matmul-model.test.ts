// The model with PAUSEPIPE_MATMUL=wgsl: its projections run the WGSL GEMM, training matches the tfjs matmul, fixture parity holds.
import * as tf from '@tensorflow/tfjs-core';
import path from 'node:path';
import * as assert from 'uvu/assert';
import { readTensor as values } from '../../../stages/lm/backend.ts';
import { presetConfig } from '../../../stages/lm/config.ts';
import { configureTraining } from '../../../stages/lm/freeze.ts';
import { createModel, type CausalLM } from '../../../stages/lm/model.ts';
import { builtinTokenizer } from '../../../stages/lm/tokenizer.ts';
import { train } from '../../../stages/lm/trainer.ts';
import { matMulChoice, type MatMulChoice } from '../../../stages/lm/webgpu/matmul.ts';
import { rightPaddedBatch } from '../../helpers/batches.ts';
import { withEnv } from '../../helpers/env.ts';
import { backendSuite, runOnWebgpu } from '../../helpers/backends.ts';
import { expectedTensors, FIXTURES, fixtureModel, maxDiff, readJson, relDiff, toTf, valuesOf, withFixtures } from '../../helpers/hf-fixtures.ts';

const test = backendSuite('webgpu matmul in the model', 'webgpu');
const tok = builtinTokenizer();

/** Runs `body` with PAUSEPIPE_MATMUL set to `choice`, restoring what was there. */
function withMatMul<T>(choice: MatMulChoice, body: () => Promise<T>): Promise<T> {
  return withEnv('PAUSEPIPE_MATMUL', choice, body);
}

function tinyModel(): CausalLM {
  const model = createModel(presetConfig('tiny', tok, 64), 3);
  configureTraining(model, { groups: 'all' }, () => {});
  return model;
}

test('PAUSEPIPE_MATMUL picks the product: tfjs by default, the WGSL kernel for wgsl, an error naming the variable otherwise', async () => {
  const model = tinyModel();
  // More rows than matvec.ts takes (a forward pass of 4 tokens would run its products there).
  const ids = tf.tensor2d([Array.from({ length: 20 }, (_, i) => 3 + i)], [1, 20], 'int32');
  try {
    const kernelsOf = async () => new Set((await tf.profile(() => model.forward(ids))).kernelNames);
    const byDefault = await kernelsOf();
    assert.ok(byDefault.has('BatchMatMul') && !byDefault.has('PausepipeMatMul'), [...byDefault].join(', '));
    const wgsl = await withMatMul('wgsl', kernelsOf);
    assert.ok(wgsl.has('PausepipeMatMul') && !wgsl.has('BatchMatMul'), [...wgsl].join(', '));
    await withMatMul('cuda' as MatMulChoice, async () => assert.throws(() => matMulChoice(), /PAUSEPIPE_MATMUL must be tfjs or wgsl, got 'cuda'/));
  } finally {
    ids.dispose();
    model.dispose();
  }
});

test('every weight\'s gradient and two training steps with the WGSL GEMM equal the tfjs matmul within 1e-5', async () => {
  const gradients = async () => {
    const model = tinyModel();
    const vars = model.trainableVariables();
    const names = new Map([...vars].map(([saved, v]) => [v.name, saved]));
    const batch = rightPaddedBatch();
    const { value, grads } = tf.variableGrads(() => model.lossParts(batch, { training: true }).loss, [...vars.values()]);
    const out = new Map<string, Float32Array>([['loss', Float32Array.from(await values(value))]]);
    for (const [name, g] of Object.entries(grads)) out.set(names.get(name)!, Float32Array.from(await values(g)));
    tf.dispose([value, ...Object.values(grads), batch.inputIds, batch.attentionMask, batch.labels]);
    model.dispose();
    return out;
  };
  const want = await withMatMul('tfjs', gradients);
  const got = await withMatMul('wgsl', gradients);
  assert.equal([...got.keys()].sort(), [...want.keys()].sort());
  for (const [name, g] of got) assert.ok(maxDiff(g, want.get(name)!) < 1e-5, `${name}: ${maxDiff(g, want.get(name)!)}`);

  const rows = Array.from({ length: 4 }, (_, i) => ({ question: `${i}+${i + 1}?`, answer: `${2 * i + 1}\n#### ${2 * i + 1}` }));
  const trained = async () => {
    const model = tinyModel();
    const res = await train(model, tok, { train: rows, validation: [] }, { batchSize: 2, maxSteps: 2, lr: 3e-3, loggingSteps: 1 }, { log: () => {} });
    const weights = new Map<string, Float32Array>();
    for (const name of model.weights.keys()) weights.set(name, Float32Array.from(await values(model.variable(name))));
    model.dispose();
    return { losses: res.trainLossCurve.map(([, l]) => l), weights };
  };
  const before = await withMatMul('tfjs', trained);
  const after = await withMatMul('wgsl', trained);
  after.losses.forEach((l, i) => assert.ok(relDiff(l, before.losses[i]!) < 1e-5, `loss ${i}: ${l} vs ${before.losses[i]}`));
  for (const [name, w] of after.weights) assert.ok(maxDiff(w, before.weights.get(name)!) < 1e-5, `${name}: ${maxDiff(w, before.weights.get(name)!)}`);
});

for (const fixture of ['mistral-tiny', 'llama-tiny-tied']) {
  withFixtures(test)(`${fixture}: logits within 1e-4 of transformers and the loss within 1e-5 relative, through the WGSL GEMM`, async () => {
    const model = await fixtureModel(fixture);
    const ex = await expectedTensors(fixture);
    try {
      await withMatMul('wgsl', async () => {
        const got = await valuesOf(() => model.forward(toTf(ex.get('input_ids')!)));
        assert.ok(maxDiff(got, ex.get('logits')!.data) < 1e-4, `max diff ${maxDiff(got, ex.get('logits')!.data)}`);
        const mask = ex.get('attention_mask')!;
        const V = model.config.vocabSize;
        const padded = await valuesOf(() => model.forward(toTf(ex.get('input_ids')!), toTf<tf.Tensor2D>(mask)));
        const d = maxDiff(padded, ex.get('logits_left_masked')!.data, (i) => mask.data[Math.floor(i / V)] === 1);
        assert.ok(d < 1e-4, `left-padded: max diff ${d}`);
        const { loss: expected } = await readJson<{ loss: number }>(path.join(FIXTURES, fixture, 'expected.json'));
        const ids = toTf<tf.Tensor2D>(ex.get('input_ids')!);
        const loss = (await values(model.lossParts({ inputIds: ids, attentionMask: tf.onesLike(ids), labels: ids }, { training: false }).loss))[0]!;
        assert.ok(relDiff(loss, expected) < 1e-5, `loss ${loss} vs ${expected}`);
      });
    } finally {
      model.dispose();
    }
  });
}

runOnWebgpu(test);

// CausalLM parity with transformers (logits, left padding, loss, greedy ids), KV-cached decoding, config mapping, init, gradients.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import * as tf from '@tensorflow/tfjs-core';
import path from 'node:path';
import { initBackend, readTensor } from '../../../stages/lm/backend.ts';
import { fromHfConfig, initWeights, presetConfig, toHfConfig, type LmConfig } from '../../../stages/lm/config.ts';
import { CausalLM, createModel, type LmKvCache } from '../../../stages/lm/model.ts';
import { IGNORE_INDEX } from '../../../stages/lm/types.ts';
import {
  expectedTensors, finiteDiff, FIXTURES, FIXTURES_PRESENT, fixtureModel, greedyCached, largestIndices, greedyFull, maxDiff, readJson, relDiff, scalarOf,
  toTf, valuesOf, withFixtures } from '../../helpers/hf-fixtures.ts';
import { backendSuite, forEachBackend } from '../../helpers/backends.ts';
import { loadModel } from '../../../stages/lm/model-io.ts';
import { readSafetensors } from '../../../stages/lm/safetensors.ts';

forEachBackend((backend) => {
for (const fixture of ['mistral-tiny', 'llama-tiny-tied']) {
  const test = backendSuite(`model: ${fixture} parity with transformers`, backend);
  let model: CausalLM;
  let ex: Awaited<ReturnType<typeof expectedTensors>>;

  test.before(async () => {
    if (!FIXTURES_PRESENT) return;
    model = await fixtureModel(fixture);
    ex = await expectedTensors(fixture);
  });
  test.after(() => model?.dispose());

  withFixtures(test)('logits of the full batch are within 1e-4', async () => {
    const got = await valuesOf(() => model.forward(toTf(ex.get('input_ids')!)));
    assert.ok(maxDiff(got, ex.get('logits')!.data) < 1e-4, `max diff ${maxDiff(got, ex.get('logits')!.data)}`);
  });

  withFixtures(test)('left-padded logits are within 1e-4 at every real (unmasked) position', async () => {
    const mask = ex.get('attention_mask')!;
    const got = await valuesOf(() => model.forward(toTf(ex.get('input_ids')!), toTf<tf.Tensor2D>(mask)));
    const V = model.config.vocabSize;
    // transformers' logits at padded query positions depend on its attention kernel; nobody reads them.
    const real = (i: number) => mask.data[Math.floor(i / V)] === 1;
    assert.is(Array.from(mask.data).filter((m) => m === 0).length, 3);
    const d = maxDiff(got, ex.get('logits_left_masked')!.data, real);
    assert.ok(d < 1e-4, `max diff ${d}`);
  });

  withFixtures(test)('loss (labels = input_ids) is within 1e-5 relative', async () => {
    const { loss: expected } = await readJson<{ loss: number }>(path.join(FIXTURES, fixture, 'expected.json'));
    const loss = await scalarOf(() => {
      const ids = toTf<tf.Tensor2D>(ex.get('input_ids')!);
      return model.lossParts({ inputIds: ids, attentionMask: tf.onesLike(ids), labels: ids }, { training: false }).loss;
    });
    assert.ok(relDiff(loss, expected) < 1e-5, `${loss} vs ${expected}`);
  });

  withFixtures(test)('greedy ids (12 steps, full forward each step) are identical, and identical through the KV cache', async () => {
    const prompt = Array.from(ex.get('greedy_prompt')!.data);
    const expected = Array.from(ex.get('greedy_ids')!.data);
    assert.equal(await greedyFull((ids) => model.forward(ids), prompt, 12), expected);
    assert.equal(await greedyCached(model, prompt, 12), expected);
  });

  withFixtures(test)('a left-padded row decodes like the same row unpadded, step after step', async () => {
    const row = Array.from(ex.get('input_ids')!.data.slice(14 + 3, 28)); // row 1 without its 3 padded positions
    const run = async (ids: number[], pads: number) => {
      const [first, second] = tf.tidy(() => {
        const input = tf.tensor2d([...Array(pads).fill(0), ...ids], [1, pads + ids.length], 'int32');
        const first = model.decodeStep(input, tf.tensor2d([...Array(pads).fill(0), ...ids.map(() => 1)], [1, pads + ids.length], 'int32'), null);
        const second = model.decodeStep(tf.tensor2d([7], [1, 1], 'int32'), tf.tensor2d([...Array(pads).fill(0), ...ids.map(() => 1), 1], [1, pads + ids.length + 1], 'int32'), first.cache);
        assert.is((second.cache as LmKvCache).length, pads + ids.length + 1);
        second.cache.dispose();
        return [first.logProbs, second.logProbs];
      });
      const out = [await readTensor(first!), await readTensor(second!)];
      tf.dispose([first!, second!]);
      return out;
    };
    const [plain1, plain2] = await run(row, 0);
    const [padded1, padded2] = await run(row, 3);
    assert.ok(maxDiff(plain1!, padded1!) < 1e-4, `first step ${maxDiff(plain1!, padded1!)}`);
    assert.ok(maxDiff(plain2!, padded2!) < 1e-4, `second step ${maxDiff(plain2!, padded2!)}`);
  });

  test.run();
}
});

const mapping = suite('model: fixture configs');

for (const fixture of ['mistral-tiny', 'llama-tiny-tied']) {
  withFixtures(mapping)(`${fixture}: config.json maps to LmConfig and back unchanged`, async () => {
    const json = await readJson(path.join(FIXTURES, fixture, 'config.json'));
    const cfg = fromHfConfig(json);
    assert.equal(toHfConfig(cfg), json);
    assert.equal(
      [cfg.vocabSize, cfg.hiddenSize, cfg.numLayers, cfg.numHeads, cfg.numKvHeads, cfg.headDim, cfg.intermediateSize, cfg.ropeTheta, cfg.rmsNormEps],
      [512, 64, 2, 4, 2, 16, 176, 10000, 1e-5],
    );
    assert.is(cfg.tieWordEmbeddings, fixture === 'llama-tiny-tied');
    const { tensors } = await readSafetensors(path.join(FIXTURES, fixture, 'model.safetensors'));
    assert.is(tensors.has('lm_head.weight'), fixture !== 'llama-tiny-tied');
  });
}

mapping.run();

forEachBackend((backend) => {
  const window = backendSuite('model: sliding window', backend);
  /** One layer, so a position's logits depend on exactly the tokens its attention sees. */
  const MISTRAL_TINY: LmConfig = {
    modelType: 'mistral', vocabSize: 24, hiddenSize: 16, intermediateSize: 32, numLayers: 1, numHeads: 4, numKvHeads: 2, headDim: 4,
    ropeTheta: 10000, rmsNormEps: 1e-6, tieWordEmbeddings: false, maxPositionEmbeddings: 32, initializerRange: 0.4, bosId: 1, eosId: 2, padId: 0,
    slidingWindow: 3,
  };

  window('with window 3 a position sees itself and the two before it: a change 3 or more tokens back changes nothing', async () => {
    const model = createModel(MISTRAL_TINY, 5);
    const unlimited = CausalLM.fromWeights({ ...MISTRAL_TINY, slidingWindow: undefined }, initWeights(MISTRAL_TINY, 5));
    try {
      const ids = [[1, 5, 9, 13, 17, 21, 4, 8], [0, 0, 1, 4, 8, 12, 16, 20]];
      const changed = [[1, 6, 9, 13, 17, 21, 4, 8], [0, 0, 1, 3, 8, 12, 16, 20]];
      const mask = [[1, 1, 1, 1, 1, 1, 1, 1], [0, 0, 1, 1, 1, 1, 1, 1]];
      const run = (m: CausalLM, x: number[][]) => valuesOf(() => m.forward(tf.tensor2d(x, [2, 8], 'int32'), tf.tensor2d(mask, [2, 8], 'int32')));
      const [a, b, full] = [await run(model, ids), await run(model, changed), await run(unlimited, changed)];
      const V = 24;
      const at = (v: ArrayLike<number>, row: number, pos: number) => Array.from(v).slice((row * 8 + pos) * V, (row * 8 + pos + 1) * V);
      // Row 0 changed token 1, row 1 token 3: positions within 2 of it move, later ones do not.
      for (const [row, pos] of [[0, 1], [0, 2], [0, 3], [1, 3], [1, 4], [1, 5]] as const) {
        assert.ok(maxDiff(at(a, row, pos), at(b, row, pos)) > 1e-3, `row ${row} position ${pos} sees the change`);
      }
      for (const [row, pos] of [[0, 4], [0, 7], [1, 6], [1, 7]] as const) {
        assert.ok(maxDiff(at(a, row, pos), at(b, row, pos)) < 1e-6, `row ${row} position ${pos} is beyond the window: ${maxDiff(at(a, row, pos), at(b, row, pos))}`);
      }
      // Without the window the same positions do see it.
      assert.ok(maxDiff(at(full, 0, 7), at(b, 0, 7)) > 1e-3, 'the window is what hides it');
      // Decoding through the KV cache applies the same window.
      const first = model.decodeStep(tf.tensor2d(changed.map((r) => r.slice(0, 7)), [2, 7], 'int32'), tf.tensor2d(mask.map((r) => r.slice(0, 7)), [2, 7], 'int32'), null);
      const second = model.decodeStep(tf.tensor2d(changed.map((r) => r.slice(7)), [2, 1], 'int32'), tf.tensor2d(mask, [2, 8], 'int32'), first.cache);
      const cached = await readTensor(second.logProbs);
      const direct = await valuesOf(() => tf.logSoftmax(tf.reshape(tf.slice(model.forward(tf.tensor2d(changed, [2, 8], 'int32'), tf.tensor2d(mask, [2, 8], 'int32')), [0, 7, 0], [2, 1, V]), [2, V])));
      assert.ok(maxDiff(cached, direct) < 1e-5, `cached decoding ${maxDiff(cached, direct)}`);
      tf.dispose([first.logProbs, second.logProbs]);
      second.cache.dispose();
    } finally {
      model.dispose();
      unlimited.dispose();
    }
  });

  window.run();
});

const config = suite('model: config, presets and init');

config('fromHfConfig reads transformers 4.x keys, defaults and lists of eos ids', () => {
  const cfg = fromHfConfig({ model_type: 'mistral', vocab_size: 32000, hidden_size: 4096, intermediate_size: 14336, num_hidden_layers: 32,
    num_attention_heads: 32, num_key_value_heads: 8, rope_theta: 1000000, eos_token_id: [2, 7], max_position_embeddings: 32768, sliding_window: null, foo: 'kept' });
  assert.equal([cfg.headDim, cfg.ropeTheta, cfg.eosId, cfg.bosId, cfg.rmsNormEps, cfg.tieWordEmbeddings], [128, 1000000, 2, null, 1e-6, false]);
  const back = toHfConfig(cfg);
  assert.is(back.foo, 'kept');
  assert.is(back.rope_theta, 1000000);
  assert.equal(back.eos_token_id, [2, 7]);
});

config('unsupported architectures are errors that name the key', () => {
  const base = { vocab_size: 8, hidden_size: 8, intermediate_size: 8, num_hidden_layers: 1, num_attention_heads: 2 };
  assert.throws(() => fromHfConfig({ ...base, rope_scaling: { rope_type: 'llama3', factor: 8 } }, 'x/config.json'), /x\/config.json: rope_type "llama3" is not supported/);
  assert.throws(() => fromHfConfig({ ...base, model_type: 'gpt2' }), /model_type "gpt2" is not supported/);
  assert.throws(() => fromHfConfig({ ...base, model_type: 'mistral', sliding_window: 'wide' }), /"sliding_window" must be a number, got "wide"/);
  assert.throws(() => fromHfConfig({ ...base, model_type: 'mistral', sliding_window: 0 }), /sliding_window must be a positive integer, got 0/);
  assert.throws(() => fromHfConfig({ ...base, num_key_value_heads: 3 }), /num_attention_heads 2 is not a multiple of num_key_value_heads 3/);
  assert.throws(() => fromHfConfig({ ...base, hidden_size: 'big' }), /"hidden_size" must be a number/);
  assert.throws(() => fromHfConfig({ ...base, vocab_size: undefined }), /missing required key "vocab_size"/);
});

/** config.json of mistralai/Mistral-7B-v0.1, the seed's base model, as published on the Hugging Face hub. */
const MISTRAL_7B_V01 = {
  architectures: ['MistralForCausalLM'], bos_token_id: 1, eos_token_id: 2, hidden_act: 'silu', hidden_size: 4096, initializer_range: 0.02,
  intermediate_size: 14336, max_position_embeddings: 32768, model_type: 'mistral', num_attention_heads: 32, num_hidden_layers: 32,
  num_key_value_heads: 8, rms_norm_eps: 1e-05, rope_theta: 10000.0, sliding_window: 4096, tie_word_embeddings: false, torch_dtype: 'bfloat16',
  transformers_version: '4.34.0.dev0', use_cache: true, vocab_size: 32000,
};

config('Mistral-7B-v0.1\'s config.json loads, its 4096-token sliding window included, and maps back unchanged', () => {
  const cfg = fromHfConfig(MISTRAL_7B_V01, 'Mistral-7B-v0.1/config.json');
  assert.equal(
    [cfg.modelType, cfg.vocabSize, cfg.hiddenSize, cfg.intermediateSize, cfg.numLayers, cfg.numHeads, cfg.numKvHeads, cfg.headDim,
      cfg.ropeTheta, cfg.rmsNormEps, cfg.maxPositionEmbeddings, cfg.slidingWindow, cfg.tieWordEmbeddings, cfg.bosId, cfg.eosId, cfg.padId],
    ['mistral', 32000, 4096, 14336, 32, 32, 8, 128, 10000, 1e-5, 32768, 4096, false, 1, 2, null],
  );
  assert.equal(toHfConfig(cfg), { ...MISTRAL_7B_V01, head_dim: 128, pad_token_id: null });
  // A Llama config.json with the key keeps it unread, as transformers' LlamaConfig does.
  assert.is(fromHfConfig({ ...MISTRAL_7B_V01, model_type: 'llama' }).slidingWindow, undefined);
});

config('presets have the documented sizes and take the vocabulary from the tokenizer', () => {
  const vocab = { vocabSize: 100, bosId: 1, eosId: 2, padId: 3 };
  const small = presetConfig('small', vocab);
  assert.equal([small.numLayers, small.hiddenSize, small.numHeads, small.intermediateSize, small.vocabSize, small.padId], [4, 128, 4, 512, 100, 3]);
  const medium = presetConfig('medium', vocab);
  assert.equal([medium.numLayers, medium.hiddenSize, medium.numHeads, medium.intermediateSize], [8, 512, 8, 2048]);
  assert.throws(() => presetConfig('huge', vocab), /unknown model size preset "huge" \(expected one of tiny, small, medium\)/);
});

config('initWeights is HF-style (N(0, 0.02), norms at one, padding row zero) and deterministic by seed', () => {
  const cfg = presetConfig('small', { vocabSize: 100, bosId: 1, eosId: 2, padId: 3 });
  const a = initWeights(cfg, 7);
  const b = initWeights(cfg, 7);
  const c = initWeights(cfg, 8);
  assert.equal(a.get('model.layers.3.mlp.down_proj.weight')!.data, b.get('model.layers.3.mlp.down_proj.weight')!.data);
  assert.not.equal(a.get('lm_head.weight')!.data, c.get('lm_head.weight')!.data);
  const w = Array.from(a.get('model.layers.0.mlp.gate_proj.weight')!.data);
  const mean = w.reduce((s, x) => s + x, 0) / w.length;
  const std = Math.sqrt(w.reduce((s, x) => s + (x - mean) ** 2, 0) / w.length);
  assert.ok(Math.abs(mean) < 1e-3 && Math.abs(std - 0.02) < 5e-4, `mean ${mean} std ${std}`);
  assert.ok(a.get('model.norm.weight')!.data.every((x) => x === 1));
  const embed = a.get('model.embed_tokens.weight')!;
  assert.ok(embed.data.slice(3 * 128, 4 * 128).every((x) => x === 0), 'the <pad> row is zero');
  assert.equal(embed.shape, [100, 128]);
});

config.run();

const grads = suite('model: gradients');

grads.before(async () => {
  await initBackend('wasm');
});

const TINY: LmConfig = {
  modelType: 'llama', vocabSize: 24, hiddenSize: 16, intermediateSize: 32, numLayers: 2, numHeads: 4, numKvHeads: 2, headDim: 4,
  ropeTheta: 10000, rmsNormEps: 1e-6, tieWordEmbeddings: false, maxPositionEmbeddings: 32, initializerRange: 0.4, bosId: 1, eosId: 2, padId: 0,
};

/** A tiny random model with large enough weights that every gradient is visible in float32. */
function tinyModel(): CausalLM {
  return createModel(TINY, 3);
}

grads('the loss gradient matches central finite differences (right padding and ignored labels included)', () => {
  const model = tinyModel();
  const ids = tf.tensor2d([[1, 5, 9, 13, 17, 21], [1, 4, 8, 12, 0, 0]], [2, 6], 'int32');
  const mask = tf.tensor2d([[1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 0, 0]], [2, 6], 'int32');
  const labels = tf.tensor2d([[IGNORE_INDEX, IGNORE_INDEX, 9, 13, 17, 21], [IGNORE_INDEX, 4, 8, 12, IGNORE_INDEX, IGNORE_INDEX]], [2, 6], 'int32');
  const batch = { inputIds: ids, attentionMask: mask, labels };
  const lossValue = () => tf.tidy(() => model.lossParts(batch, { training: false }).loss.dataSync()[0]!);
  const vars = model.trainableVariables();
  const { grads: g } = tf.variableGrads(() => model.lossParts(batch, { training: true }).loss, [...vars.values()]);
  const checked = ['model.embed_tokens.weight', 'model.layers.0.self_attn.q_proj.weight', 'model.layers.1.self_attn.k_proj.weight',
    'model.layers.0.self_attn.v_proj.weight', 'model.layers.1.self_attn.o_proj.weight', 'model.layers.0.mlp.gate_proj.weight',
    'model.layers.1.mlp.down_proj.weight', 'model.layers.0.input_layernorm.weight', 'model.norm.weight', 'lm_head.weight'];
  let worst = 0;
  let largest = 0;
  for (const name of checked) {
    const v = vars.get(name)!;
    const analytic = g[v.name]!.dataSync();
    // The coordinates with the largest gradients, plus a fixed one: all must agree.
    for (const i of [...largestIndices(analytic, 2), 5]) {
      const numeric = finiteDiff(v, i, lossValue);
      worst = Math.max(worst, Math.abs(numeric - analytic[i]!) / (2e-3 + 2e-2 * Math.abs(analytic[i]!)));
      largest = Math.max(largest, Math.abs(analytic[i]!));
    }
  }
  tf.dispose(Object.values(g));
  model.dispose();
  assert.ok(largest > 0.05, `gradients too small to test: ${largest}`);
  assert.ok(worst <= 1, `worst normalised gradient error ${worst}`);
});

grads('decodeStep checks the mask against the cache and leaves no tensors behind', () => {
  const before = tf.memory().numTensors;
  const model = tinyModel();
  const ids = tf.tensor2d([[1, 5, 9]], [1, 3], 'int32');
  const short = tf.ones([1, 2], 'int32') as tf.Tensor2D;
  const mask = tf.ones([1, 3], 'int32') as tf.Tensor2D;
  assert.throws(() => model.decodeStep(ids, short, null), /attention mask has shape \[1, 2\], expected \[1, 3\]/);
  const { logProbs, cache } = model.decodeStep(ids, mask, null);
  const sum = tf.tidy(() => tf.sum(tf.exp(logProbs)).dataSync()[0]!);
  assert.ok(Math.abs(sum - 1) < 1e-5, `probabilities sum to ${sum}`);
  tf.dispose([logProbs, ids, short, mask]);
  cache.dispose();
  model.dispose();
  assert.is(tf.memory().numTensors, before);
});

grads.run();

const own = suite('model: tensor ownership');

own.before(async () => {
  await initBackend('wasm');
  // ops.ts keeps one RoPE rotation matrix pair per head size for the whole process: build it before counting.
  const warm = tinyModel();
  tf.tidy(() => void warm.forward(tf.tensor2d([[1, 2]], [1, 2], 'int32')));
  warm.dispose();
});

/** Runs a forward pass and two cached decode steps, freeing their outputs: what fills a model's own caches. */
function use(model: CausalLM): void {
  tf.tidy(() => {
    model.forward(tf.tensor2d([[1, 5, 9]], [1, 3], 'int32'));
    const first = model.decodeStep(tf.tensor2d([[1, 5]], [1, 2], 'int32'), tf.ones([1, 2], 'int32') as tf.Tensor2D, null);
    const second = model.decodeStep(tf.tensor2d([[9]], [1, 1], 'int32'), tf.ones([1, 3], 'int32') as tf.Tensor2D, first.cache);
    second.cache.dispose();
  });
}

own('creating, using and disposing a model returns the live tensors to where they were', () => {
  const before = tf.memory().numTensors;
  const model = tinyModel();
  assert.is(tf.memory().numTensors, before + model.weights.size);
  use(model);
  model.dispose();
  assert.is(tf.memory().numTensors, before);
});

own('fromWeights takes tf tensors over: they are freed with the model, and when the map is refused', () => {
  const host = initWeights(TINY, 3);
  const before = tf.memory().numTensors;
  const given = new Map([...host].map(([name, h]) => [name, tf.tensor(h.data, h.shape)] as [string, tf.Tensor]));
  const model = CausalLM.fromWeights(TINY, given);
  assert.ok([...given.values()].every((t) => t.isDisposed));
  assert.is(tf.memory().numTensors, before + model.weights.size);
  use(model);
  model.dispose();
  assert.is(tf.memory().numTensors, before);
  const wrong = new Map([...host].map(([name, h]) => [name, name === 'model.norm.weight' ? tf.ones([3]) : tf.tensor(h.data, h.shape)] as [string, tf.Tensor]));
  assert.throws(() => CausalLM.fromWeights(TINY, wrong), /model weights: weight model.norm.weight has shape \[3\], expected \[16\]/);
  assert.is(tf.memory().numTensors, before);
});

withFixtures(own)('a model loaded from a folder frees everything on dispose', async () => {
  const before = tf.memory().numTensors;
  const model = await loadModel(path.join(FIXTURES, 'mistral-tiny'), { log: () => {} });
  use(model);
  model.dispose();
  assert.is(tf.memory().numTensors, before);
});

own('forward passes follow weight changes: after assign the model computes what a model built with the new weights does', () => {
  const model = tinyModel();
  const ids = tf.tensor2d([[1, 5, 9, 13]], [1, 4], 'int32');
  const logits = (m: CausalLM) => tf.tidy(() => m.forward(ids).dataSync());
  const old = logits(model);
  const live = tf.memory().numTensors;
  const changed = initWeights(TINY, 3);
  for (const name of ['model.layers.0.self_attn.q_proj.weight', 'model.layers.1.mlp.up_proj.weight', 'lm_head.weight']) {
    const w = model.variable(name);
    const next = Float32Array.from(w.dataSync(), (x) => x * 1.5);
    tf.tidy(() => w.assign(tf.tensor(next, w.shape)));
    changed.set(name, { dtype: 'float32', shape: [...w.shape], data: next });
  }
  const now = logits(model);
  // The prepared transposes were rebuilt in place, not added to.
  assert.is(tf.memory().numTensors, live);
  const rebuilt = CausalLM.fromWeights(TINY, changed);
  assert.equal(now, logits(rebuilt));
  assert.ok(maxDiff(now, old) > 1e-3, 'the change is visible in the logits');
  tf.dispose([ids]);
  model.dispose();
  rebuilt.dispose();
});

own.run();

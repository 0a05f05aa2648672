// Frozen weights kept as bfloat16 on WebGPU (PAUSEPIPE_FROZEN_WEIGHTS=bf16): exact packing, the products reading it, and a model trained, decoded and saved with it giving what float32 weights give.
import * as tf from '@tensorflow/tfjs-core';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import * as assert from 'uvu/assert';
import { readTensor as values } from '../../../stages/lm/backend.ts';
import { packFrozenWeights } from '../../../stages/lm/bf16-weights.ts';
import { presetConfig } from '../../../stages/lm/config.ts';
import { configureTraining } from '../../../stages/lm/freeze.ts';
import { generate } from '../../../stages/lm/generate.ts';
import { applyLora, mergeLora } from '../../../stages/lm/lora.ts';
import { createModel, type CausalLM } from '../../../stages/lm/model.ts';
import { addPauseToken } from '../../../stages/lm/pause.ts';
import { loadModel, saveModel } from '../../../stages/lm/model-io.ts';
import { roundToBfloat16 } from '../../../stages/lm/optimizer.ts';
import { builtinTokenizer } from '../../../stages/lm/tokenizer.ts';
import { storeInBfloat16, train } from '../../../stages/lm/trainer.ts';
import { packBf16, PackedBf16, unpackOnHost } from '../../../stages/lm/webgpu/bf16.ts';
import { matMul, withMatMul } from '../../../stages/lm/webgpu/matmul.ts';
import { countGpuWork } from '../../../stages/lm/webgpu/counters.ts';
import { submitPending } from '../../../stages/lm/webgpu/engine.ts';
import { matVec, matVecConcat, matVecSwiglu } from '../../../stages/lm/webgpu/matvec.ts';
import { EVALUATE } from '../../../stages/evaluate.ts';
import { datasetFolder } from '../../helpers/model-stages.ts';
import { rightPaddedBatch } from '../../helpers/batches.ts';
import { withEnv } from '../../helpers/env.ts';
import { artifactRef, makeContext } from '../data/stage-context.ts';
import { backendSuite, runOnWebgpu } from '../../helpers/backends.ts';

const test = backendSuite('webgpu bfloat16 frozen weights', 'webgpu');
const tok = builtinTokenizer();
/** Without an end-of-sequence id generation runs to its limit, so every step is compared. */
const noEos = Object.create(tok, { eosId: { value: null } }) as typeof tok;

/** Values of the tiny preset's decoder projections: 2 layers of q, o [64, 64], k, v [32, 64], gate, up [176, 64], down [64, 176]. */
const TINY_PROJECTION_VALUES = 2 * (2 * 64 * 64 + 2 * 32 * 64 + 3 * 176 * 64);

/** Random values rounded to bfloat16, with the awkward ones in front: zeros of both signs, a tiny and a huge one. */
function bf16Values(rows: number, cols: number, seed: number): tf.Tensor2D {
  return tf.tidy(() => {
    const t = tf.randomNormal([rows * cols], 0, 1, 'float32', seed);
    const special = tf.tensor1d([0, -0, 1e-30, -3e30, 1, -1]);
    return roundToBfloat16(tf.reshape(tf.concat([special, tf.slice(t, 6)]), [rows, cols])) as tf.Tensor2D;
  });
}

function bitsOf(x: Float32Array): Uint32Array {
  return new Uint32Array(x.buffer, x.byteOffset, x.length);
}

test('packing keeps the bits of bfloat16 values in half the memory, and refuses a weight holding a value bfloat16 cannot', async () => {
  const w = bf16Values(12, 20, 1);
  const want = Float32Array.from(await values(w));
  const before = tf.memory().numTensors;
  const packed = (await packBf16(w))!;
  assert.ok(packed instanceof PackedBf16);
  assert.equal(packed.shape, [12, 20]);
  assert.equal(packed.words.shape, [12, 10]);
  assert.is(packed.words.dtype, 'int32');
  assert.is(packed.bytes, 12 * 20 * 2);
  assert.equal(bitsOf(await packed.data()), bitsOf(want), 'read back on the host');
  const widened = packed.unpacked();
  assert.equal(bitsOf(Float32Array.from(await values(widened))), bitsOf(want), 'widened on the GPU');
  // Value 2i sits in the low half of word i, as a safetensors bfloat16 pair.
  assert.equal(Array.from(unpackOnHost(Int32Array.of(0x3f80_4000))), [2, 1]);
  tf.dispose([widened]);
  packed.dispose();
  assert.is(tf.memory().numTensors, before, 'the count of inexact values is freed');

  const off = tf.tidy(() => tf.add(w, tf.reshape(tf.scatterND([[3 * 20 + 7]], [1e-3], [240]), [12, 20])) as tf.Tensor2D);
  assert.is(await packBf16(off), null);
  assert.is(tf.memory().numTensors, before + 1, 'nothing kept but the input');
  tf.dispose([w, off]);
});

test('the GEMM and the few-rows products read packed weights and give the float32 weights\' results bit for bit, dX included', async () => {
  const w = bf16Values(52, 64, 2); // [out, in]
  const w2 = bf16Values(36, 64, 3);
  const down = bf16Values(20, 88, 4); // reads silu(gate)·up of width 88
  const [p, p2, pDown] = [(await packBf16(w))!, (await packBf16(w2))!, (await packBf16(down))!];
  const x = tf.randomNormal([37, 64], 0, 1, 'float32', 5) as tf.Tensor2D;
  const few = tf.randomNormal([3, 64], 0, 1, 'float32', 6) as tf.Tensor2D;
  const gu = tf.randomNormal([3, 176], 0, 1, 'float32', 7) as tf.Tensor2D;
  const same = async (got: tf.Tensor, want: tf.Tensor, what: string) => {
    assert.equal(bitsOf(Float32Array.from(await values(got))), bitsOf(Float32Array.from(await values(want))), what);
    tf.dispose([got, want]);
  };
  await same(matMul(x, p, false, true), matMul(x, w, false, true), 'x·Wᵀ');
  const dy = tf.randomNormal([37, 52], 0, 1, 'float32', 9) as tf.Tensor2D;
  const dx = (b: PackedBf16 | tf.Tensor2D) => tf.grad((a: tf.Tensor) => tf.mul(matMul(a as tf.Tensor2D, b, false, true), dy))(x);
  await same(dx(p), dx(w), 'dX through x·Wᵀ');
  await same(matVec(few, p), matVec(few, w), 'few rows');
  await same(matVecConcat(few, [p, w2, p2]), matVecConcat(few, [w, w2, w2]), 'q|k|v side by side, packed and not');
  await same(matVecSwiglu(gu, pDown), matVecSwiglu(gu, down), 'SwiGLU with down_proj');
  tf.dispose([w, w2, down, x, few, gu, dy]);
  [p, p2, pDown].forEach((t) => t.dispose());
});

/** The WGSL products for float32 weights too, so both sides sum in the same order. */
function withMatMulWgsl<T>(fn: () => T): T {
  return withMatMul('wgsl', fn);
}

function tinyModel(): CausalLM {
  return createModel(presetConfig('tiny', tok, 64), 3);
}

/** A new temporary model folder (built-in tokenizer) of the tiny model stored in bfloat16, as a bf16 run saves it. */
async function bf16ModelFolder(label: string): Promise<string> {
  const dir = await mkdtemp(path.join(tmpdir(), `pausepipe-bf16-${label}-`));
  const source = tinyModel();
  storeInBfloat16(source);
  await saveModel(source, tok, dir);
  source.dispose();
  return dir;
}

/** The bits of a model's logits, computed with the WGSL products whatever its weights are. */
async function logitBits(model: CausalLM, ids: tf.Tensor2D): Promise<Uint32Array> {
  return bitsOf(Float32Array.from(await values(withMatMulWgsl(() => model.forward(ids)))));
}

/** tfjs's GPU byte counts: in use by tensors, and allocated (its pool of freed buffers included). */
function gpuMemory(): { numBytesInGPU: number; numBytesAllocatedInGPU: number } {
  return tf.memory() as tf.MemoryInfo & { numBytesInGPU: number; numBytesAllocatedInGPU: number };
}

test('packFrozenWeights packs every frozen projection (only those; all of them for inference), frees 2 bytes a value, and leaves weights bfloat16 cannot hold as they are', async () => {
  const lines: string[] = [];
  const model = tinyModel();
  try {
    configureTraining(model, { groups: ['lmHead'] }, () => {});
    const raw = await packFrozenWeights(model, (l) => lines.push(l));
    assert.equal(raw, { packed: 0, inexact: 14, bytesSaved: 0 });
    storeInBfloat16(model);
    const before = { tensors: tf.memory().numBytes, allocated: gpuMemory().numBytesAllocatedInGPU };
    const report = await packFrozenWeights(model, (l) => lines.push(l));
    assert.equal(report, { packed: 14, inexact: 0, bytesSaved: 2 * TINY_PROJECTION_VALUES });
    assert.is(before.tensors - tf.memory().numBytes, 2 * TINY_PROJECTION_VALUES);
    // The freed float32 buffers leave the GPU, not only the tensors: tfjs's pool of buffers for reuse is emptied.
    assert.is(gpuMemory().numBytesAllocatedInGPU, gpuMemory().numBytesInGPU);
    assert.ok(before.allocated - gpuMemory().numBytesAllocatedInGPU >= 2 * TINY_PROJECTION_VALUES, `${before.allocated} → ${gpuMemory().numBytesAllocatedInGPU}`);
    const packedNames = [...model.weights].filter(([, w]) => w instanceof PackedBf16).map(([n]) => n);
    assert.equal(packedNames, [...model.weights.keys()].filter((n) => /_proj\.weight$/.test(n)));
    assert.equal(lines, [
      'frozen weights: 0 decoder projections kept as bfloat16 (0 bytes of GPU memory saved); 14 left float32, holding values bfloat16 cannot',
      'frozen weights: 14 decoder projections kept as bfloat16 (184320 bytes of GPU memory saved)',
    ]);
    // A model nobody configured trains every weight; evaluation (inference) trains none.
    const fresh = tinyModel();
    storeInBfloat16(fresh);
    assert.equal(await packFrozenWeights(fresh, () => {}), { packed: 0, inexact: 0, bytesSaved: 0 });
    assert.equal(await packFrozenWeights(fresh, () => {}, { inference: true }), { packed: 14, inexact: 0, bytesSaved: 2 * TINY_PROJECTION_VALUES });
    fresh.dispose();
    // A packed weight set to train becomes a variable again, with the same values.
    const q = 'model.layers.0.self_attn.q_proj.weight';
    const packedQ = Float32Array.from(await (model.weights.get(q) as PackedBf16).data());
    configureTraining(model, { groups: 'all' }, () => {});
    assert.ok(model.weights.get(q) instanceof tf.Variable);
    assert.equal(bitsOf(Float32Array.from(await values(model.variable(q)))), bitsOf(packedQ));
  } finally {
    model.dispose();
  }
});

test('a folder of bfloat16 numbers loads with its projections packed (no float32 copy on the GPU), computes the same logits, and widens what is set to train', async () => {
  const tmp = await bf16ModelFolder('load');
  const ids = tf.tensor2d([Array.from({ length: 20 }, (_, i) => 3 + i)], [1, 20], 'int32');
  const load = async (frozen: 'f32' | 'bf16') => withEnv('PAUSEPIPE_FROZEN_WEIGHTS', frozen, async () => {
    const before = tf.memory().numBytes;
    const model = await loadModel(tmp);
    return { model, bytes: tf.memory().numBytes - before };
  });
  const f32 = await load('f32');
  const bf16 = await load('bf16');
  try {
    assert.is(f32.bytes - bf16.bytes, 2 * TINY_PROJECTION_VALUES);
    assert.equal([...bf16.model.weights].filter(([, w]) => w instanceof PackedBf16).map(([n]) => n),
      [...bf16.model.weights.keys()].filter((n) => /_proj\.weight$/.test(n)));
    assert.equal(await logitBits(bf16.model, ids), await logitBits(f32.model, ids));
    const lines: string[] = [];
    assert.equal(await packFrozenWeights(bf16.model, (l) => lines.push(l), { inference: true }), { packed: 14, inexact: 0, bytesSaved: 2 * TINY_PROJECTION_VALUES });
    assert.equal(lines, ['frozen weights: 14 decoder projections kept as bfloat16 (184320 bytes of GPU memory saved)']);
    configureTraining(bf16.model, { groups: 'all' }, () => {});
    assert.ok([...bf16.model.weights.values()].every((w) => w instanceof tf.Variable && w.trainable));
    // The packed words widened away leave the GPU (tfjs would keep them in its pool once the queue is submitted).
    submitPending();
    assert.is(gpuMemory().numBytesAllocatedInGPU, gpuMemory().numBytesInGPU);
    assert.equal(await logitBits(bf16.model, ids), await logitBits(f32.model, ids));
  } finally {
    ids.dispose();
    f32.model.dispose();
    bf16.model.dispose();
    await rm(tmp, { recursive: true, force: true });
  }
});

test('the pause surgery on a packed model copies its projections packed and builds the wrapper float32 weights build', async () => {
  const dir = await bf16ModelFolder('pause');
  const ids = tf.tensor2d([[3, 9, 12, 64, 5, 7, 64, 20, 31, 4, 8, 15, 16, 23, 42, 17, 6]], [1, 17], 'int32');
  const wrapped = (frozen: 'f32' | 'bf16') => withEnv('PAUSEPIPE_FROZEN_WEIGHTS', frozen, async () => {
    const base = await loadModel(dir);
    try {
      return await addPauseToken(base, 5, { log: () => {} });
    } finally {
      base.dispose();
    }
  });
  const [f32, bf16] = [await wrapped('f32'), await wrapped('bf16')];
  try {
    assert.equal([...bf16.weights].filter(([, w]) => w instanceof PackedBf16).map(([n]) => n),
      [...bf16.weights.keys()].filter((n) => /^language_model\.model\.layers\.\d+\..*_proj\.weight$/.test(n)));
    assert.is([...bf16.weights.values()].filter((w) => w instanceof PackedBf16).length, 14);
    assert.equal(await logitBits(bf16, ids), await logitBits(f32, ids));
  } finally {
    ids.dispose();
    f32.dispose();
    bf16.dispose();
    await rm(dir, { recursive: true, force: true });
  }
});

test('the evaluate stage with PAUSEPIPE_FROZEN_WEIGHTS=bf16 on a bfloat16 model: projections packed as they load, the same answers, accuracy and eval loss', async () => {
  const dir = await bf16ModelFolder('eval');
  try {
    const rows = [{ question: '1+1?', answer: '#### 2' }, { question: '3+4?', answer: '#### 7' }];
    const data = await datasetFolder({ train: [], validation: rows, test: rows });
    const evaluate = (frozen: 'f32' | 'bf16') => withEnv('PAUSEPIPE_FROZEN_WEIGHTS', frozen, () => withEnv('PAUSEPIPE_MATMUL', 'wgsl', async () => {
      const ctx = await makeContext(EVALUATE, { params: { max_new_tokens: 6, batch_size: 2 }, inputs: { model: [artifactRef('model', 'sft', dir)], data: [data] } });
      ctx.backend = 'webgpu';
      const { metrics } = await EVALUATE.run(ctx);
      return { logs: ctx.logs, metrics, answers: await readFile(path.join(ctx.outDir, 'test_results.json'), 'utf8') };
    }));
    const f32 = await evaluate('f32');
    const bf16 = await evaluate('bf16');
    assert.ok(bf16.logs.includes('frozen weights: 14 decoder projections kept as bfloat16 (184320 bytes of GPU memory saved)'), bf16.logs.join('\n'));
    assert.not.ok(f32.logs.some((l) => l.startsWith('frozen weights')));
    assert.is(bf16.answers, f32.answers);
    assert.equal([bf16.metrics!.accuracy, bf16.metrics!.eval_loss], [f32.metrics!.accuracy, f32.metrics!.eval_loss]);
    assert.is(typeof bf16.metrics!.eval_loss, 'number');
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('packed weights stack as float32 ones do: a training step and decoding run as many kernels, with the same loss and tokens', async () => {
  const prompts = [tok.encode('7+8=', { addSpecialTokens: true }), tok.encode('12', { addSpecialTokens: true })];
  const run = (frozen: 'f32' | 'bf16') => withEnv('PAUSEPIPE_MATMUL', 'wgsl', async () => {
    const model = tinyModel();
    configureTraining(model, { groups: ['lmHead'] }, () => {});
    storeInBfloat16(model);
    if (frozen === 'bf16') await packFrozenWeights(model, () => {});
    const batch = rightPaddedBatch();
    const step = () => {
      const { value, grads } = tf.variableGrads(() => model.lossParts(batch, { training: true }).loss, [...model.trainableVariables().values()]);
      tf.dispose(Object.values(grads));
      return value;
    };
    try {
      // The first step and generation make the stacks; the counted ones reuse them.
      tf.dispose(step());
      await generate(model, noEos, prompts, { maxNewTokens: 2 });
      const training = await countGpuWork(async () => {
        const loss = step();
        const bits = bitsOf(Float32Array.from(await values(loss)));
        loss.dispose();
        return bits;
      });
      const decoding = await countGpuWork(() => generate(model, noEos, prompts, { maxNewTokens: 6 }));
      return { training: [training.dispatches, training.result], decoding: [decoding.dispatches, decoding.result.map((r) => r.ids)] };
    } finally {
      tf.dispose([batch.inputIds, batch.attentionMask, batch.labels]);
      model.dispose();
    }
  });
  const f32 = await run('f32');
  assert.equal(await run('bf16'), f32);
});

/** Trains the tiny model's LM head for two steps in bfloat16 precision, then decodes and saves it; its log kept. */
async function trainDecodeSave(frozen: 'f32' | 'bf16', dir: string, lora: boolean) {
  return withEnv('PAUSEPIPE_FROZEN_WEIGHTS', frozen, () => withEnv('PAUSEPIPE_MATMUL', 'wgsl', async () => {
    const model = tinyModel();
    const log: string[] = [];
    try {
      if (lora) applyLora(model, { rank: 2, targetModules: ['q_proj', 'down_proj'] }, () => {});
      else configureTraining(model, { groups: ['lmHead'] }, () => {});
      const rows = Array.from({ length: 4 }, (_, i) => ({ question: `${i}+${i + 1}?`, answer: `${2 * i + 1}\n#### ${2 * i + 1}` }));
      const res = await train(model, tok, { train: rows, validation: [] }, { batchSize: 2, maxSteps: 2, lr: 3e-3, loggingSteps: 1, precision: 'bf16' }, { log: (l) => log.push(l) });
      const prompts = [tok.encode('7+8=', { addSpecialTokens: true }), tok.encode('12', { addSpecialTokens: true })];
      const ids = (await generate(model, noEos, prompts, { maxNewTokens: 8 })).map((r) => r.ids);
      if (lora) mergeLora(model, () => {});
      await saveModel(model, tok, dir);
      return { losses: res.trainLossCurve.map(([, l]) => l), ids, file: await readFile(path.join(dir, 'model.safetensors')), log };
    } finally {
      model.dispose();
    }
  }));
}

for (const lora of [false, true]) {
  test(`${lora ? 'LoRA on packed bases, merged' : 'the LM head'} trained in bfloat16 with packed frozen weights: the same losses, tokens and saved file as with float32 ones`, async () => {
    const tmp = await mkdtemp(path.join(tmpdir(), 'pausepipe-bf16-'));
    try {
      const f32 = await trainDecodeSave('f32', path.join(tmp, 'f32'), lora);
      const bf16 = await trainDecodeSave('bf16', path.join(tmp, 'bf16'), lora);
      assert.equal(bf16.losses, f32.losses);
      assert.equal(bf16.ids, f32.ids);
      assert.ok(bf16.file.equals(f32.file), 'model.safetensors differs');
      assert.ok(bf16.log.includes('frozen weights: 14 decoder projections kept as bfloat16 (184320 bytes of GPU memory saved)'), bf16.log.join('\n'));
      assert.not.ok(f32.log.some((l) => l.startsWith('frozen weights')));
    } finally {
      await rm(tmp, { recursive: true, force: true });
    }
  });
}

runOnWebgpu(test);

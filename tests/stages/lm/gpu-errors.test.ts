// Device errors on WebGPU (a buffer beyond the adapter's maxBufferSize) stop the watched read, training step and generation with a GpuError.
import * as assert from 'uvu/assert';
import * as tf from '@tensorflow/tfjs-core';
import path from 'node:path';
import { deviceLimits, readTensor } from '../../../stages/lm/backend.ts';
import { configureTraining } from '../../../stages/lm/freeze.ts';
import { generate } from '../../../stages/lm/generate.ts';
import type { CausalLM } from '../../../stages/lm/model.ts';
import { loadTokenizer } from '../../../stages/lm/tokenizer.ts';
import { createOptimizer, optimizerUpdate } from '../../../stages/lm/trainer.ts';
import type { Batch } from '../../../stages/lm/types.ts';
import { formatBytes, GpuError, GpuWatch, watchGpu } from '../../../stages/lm/webgpu/gpu-errors.ts';
import { backendSuite, runOnWebgpu } from '../../helpers/backends.ts';
import { FIXTURES, fixtureModel, withFixtures } from '../../helpers/hf-fixtures.ts';

const test = backendSuite('gpu errors', 'webgpu');

let refused = 0;

/**
 * A float32 tensor a few pages past the adapter's largest buffer: the device refuses it without allocating anything.
 * Each is a new size: tfjs pools freed buffers by size, and would hand the refused (invalid) buffer out again.
 */
function oversize(): { tensor: tf.Tensor; bytes: number } {
  const elements = Math.floor(deviceLimits()!.maxBufferSize / 4) + 1024 * ++refused;
  return { tensor: tf.fill([elements], 1), bytes: elements * 4 };
}

const refusal = (bytes: number) => `Buffer size (${bytes}) exceeds the max buffer size limit (${deviceLimits()!.maxBufferSize}).`;

async function rejectsWith(p: Promise<unknown>): Promise<GpuError> {
  try {
    await p;
  } catch (err) {
    if (err instanceof GpuError) return err;
    throw err;
  }
  throw new Error('expected a GpuError, nothing was thrown');
}

test('unwatched, a refused buffer reads back a wrong value silently; watched, the read ends in a validation GpuError naming the buffer', async () => {
  const silent = oversize();
  const sum = tf.sum(silent.tensor);
  // What the H200 run showed: the work is skipped and the read answers as if it had run, with whatever the output
  // buffer held (zeros when it is new, an old tensor's value when the pool reused one), never the sum of the ones.
  const [value] = await readTensor(sum);
  assert.is.not(value, silent.bytes / 4);
  tf.dispose([silent.tensor, sum]);

  let bytes = 0;
  const err = await rejectsWith(watchGpu('a test read', async () => {
    const big = oversize();
    bytes = big.bytes;
    const s = tf.sum(big.tensor);
    const v = await readTensor(s);
    tf.dispose([big.tensor, s]);
    return v;
  }));
  assert.is(err.failure, 'validation');
  assert.ok(err.message.startsWith(`webgpu validation error in a test read: ${refusal(bytes)}`), err.message);
});

test('a watch reports each error once, at the check after it, and stays quiet when the device is', async () => {
  const watch = new GpuWatch('decoding');
  const ok = tf.sum(tf.ones([8]));
  assert.equal(Array.from(await readTensor(ok)), [8]);
  await watch.check('step 1');
  const big = oversize();
  const err = await rejectsWith(watch.check('step 2'));
  assert.ok(err.message.startsWith(`webgpu validation error in decoding (step 2): ${refusal(big.bytes)}`), err.message);
  // The failed check popped its scopes: closing again is a no-op, and a new watch starts clean.
  await watch.close();
  const next = new GpuWatch('next');
  await next.close();
  tf.dispose([ok, big.tensor]);
});

test('formatBytes: GiB, MiB, bytes', () => {
  assert.is(formatBytes(172.6 * 2 ** 30), '172.60 GiB');
  assert.is(formatBytes(3 * 2 ** 20), '3.0 MiB');
  assert.is(formatBytes(512), '512 bytes');
});

withFixtures(test)('a device error during a training step stops optimizerUpdate before the weights change', async () => {
  const model = await fixtureModel('mistral-tiny');
  try {
    configureTraining(model, { groups: ['lmHead'], lora: null }, () => {});
    const optimizer = createOptimizer(model, { weightDecay: 0, maxGradNorm: 1, precision: 'fp32' });
    const head = model.trainableVariables().get('lm_head.weight')!;
    const before = Float32Array.from(await readTensor(head));
    let big: { tensor: tf.Tensor; bytes: number } | null = null;
    const batch = (): Batch => {
      // Stands for any step that asks the device for more than it has (a batch too large, say).
      big = oversize();
      return {
        inputIds: tf.tensor2d([[0, 5, 9, 12]], [1, 4], 'int32'),
        attentionMask: tf.tensor2d([[1, 1, 1, 1]], [1, 4], 'int32'),
        labels: tf.tensor2d([[0, 5, 9, 12]], [1, 4], 'int32'),
      };
    };
    const err = await rejectsWith(optimizerUpdate(model, optimizer, [batch], 1e-2));
    assert.is(err.failure, 'validation');
    assert.ok(err.message.startsWith(`webgpu validation error in training step (micro-batch 1): ${refusal(big!.bytes)}`), err.message);
    assert.equal(Array.from(await readTensor(head)), Array.from(before));
    optimizer.dispose();
    big!.tensor.dispose();
  } finally {
    model.dispose();
  }
});

withFixtures(test)('generation whose KV cache exceeds the largest buffer stops at its first step with a GpuError', async () => {
  const model: CausalLM = await fixtureModel('mistral-tiny');
  const tok = await loadTokenizer(path.join(FIXTURES, 'tokenizer-bytelevel.json'));
  try {
    // mistral-tiny's cache holds 2 KV heads × 16 floats per position and layer: 128 bytes a position, so one more
    // position than the largest buffer holds makes each layer's keys a buffer the device refuses.
    const steps = Math.floor(deviceLimits()!.maxBufferSize / 128) + 1;
    const err = await rejectsWith(generate(model, tok, [[0, 44, 279]], { maxNewTokens: steps }));
    const bytes = (3 + steps - 1) * 128;
    assert.is(err.failure, 'validation');
    assert.ok(err.message.startsWith(`webgpu validation error in generation (step 1): ${refusal(bytes)}`), err.message);
  } finally {
    model.dispose();
  }
});

runOnWebgpu(test);

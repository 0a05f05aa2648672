// initBackend: the pick on a GPU-less machine, honouring a preference, falling back with a notice, gradients registered.
import * as tf from '@tensorflow/tfjs-core';
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { initBackend, readTensor } from '../../../stages/lm/backend.ts';

const backend = suite('backend');
const require = createRequire(import.meta.url);

function installed(pkg: string): boolean {
  try {
    require.resolve(pkg);
    return true;
  } catch {
    return false;
  }
}

/** This machine has no tfjs-node and no Vulkan loader (so no WebGPU): the case CI runs in. */
const plainCpuMachine = !installed('@tensorflow/tfjs-node') && !installed('@tensorflow/tfjs-node-gpu')
  && !['/usr/lib/x86_64-linux-gnu/libvulkan.so.1', '/usr/lib/aarch64-linux-gnu/libvulkan.so.1', '/usr/lib64/libvulkan.so.1']
    .some((p) => existsSync(p));

backend('picks wasm with SIMD when no native or GPU backend exists', async () => {
  if (!plainCpuMachine) {
    console.log('  (skipped: this machine has tfjs-node or a Vulkan loader, so wasm is not the expected pick)');
    return;
  }
  const info = await initBackend();
  assert.is(info.name, 'wasm');
  assert.is(tf.getBackend(), 'wasm');
  assert.match(info.device ?? '', /^wasm \(SIMD, \d+ threads?\)$/);
});

backend('honours preferred cpu and switches back to wasm when asked again', async () => {
  const cpu = await initBackend('cpu');
  assert.is(cpu.name, 'cpu');
  assert.is(cpu.notice, undefined);
  assert.is(tf.getBackend(), 'cpu');
  const wasm = await initBackend('wasm');
  assert.is(wasm.name, 'wasm');
  assert.is(tf.getBackend(), 'wasm');
});

backend('is idempotent: the same preference gives the same answer', async () => {
  const a = await initBackend('wasm');
  const b = await initBackend('wasm');
  assert.equal(a, b);
  assert.is(tf.getBackend(), 'wasm');
});

backend('a requested but unavailable webgpu gives a one-line notice and falls back to wasm', async () => {
  if (!plainCpuMachine) {
    console.log('  (skipped: a GPU may be present here)');
    return;
  }
  const info = await initBackend('webgpu');
  assert.is(info.name, 'wasm');
  assert.is(tf.getBackend(), 'wasm');
  assert.match(info.notice ?? '', /^webgpu backend unavailable: .+; using wasm$/);
  assert.not.match(info.notice ?? '', /\n/);
});

backend('a requested but missing tfjs-node names the package and falls back', async () => {
  if (!plainCpuMachine) {
    console.log('  (skipped: tfjs-node or a GPU may be present here)');
    return;
  }
  const info = await initBackend('tensorflow');
  assert.is(info.name, 'wasm');
  assert.match(info.notice ?? '', /tensorflow backend unavailable: neither @tensorflow\/tfjs-node-gpu nor @tensorflow\/tfjs-node is installed/);
});

backend('an unknown backend name gives a notice and the automatic pick', async () => {
  const info = await initBackend('tpu');
  const auto = await initBackend();
  assert.is(info.name, auto.name);
  assert.match(info.notice ?? '', /^unknown backend 'tpu' \(expected one of tensorflow, webgpu, wasm, cpu, auto\)/);
});

backend('registers gradients: tf.grad works on plain tfjs-core ops', async () => {
  await initBackend('wasm');
  const g = tf.tidy(() => tf.grad((x: tf.Tensor) => tf.sum(tf.mul(x, x)))(tf.tensor1d([1, 2, 3])).dataSync());
  assert.equal(Array.from(g), [2, 4, 6]);
});

backend('readTensor returns typed arrays without a synchronous read', async () => {
  await initBackend('wasm');
  const f = tf.tensor1d([1.5, -2]);
  const i = tf.tensor1d([3, 4], 'int32');
  const b = tf.tensor1d([true, false], 'bool');
  const fv = await readTensor(f);
  const iv = await readTensor(i);
  const bv = await readTensor(b);
  assert.ok(fv instanceof Float32Array);
  assert.equal(Array.from(fv), [1.5, -2]);
  assert.ok(iv instanceof Int32Array);
  assert.equal(Array.from(iv), [3, 4]);
  assert.ok(bv instanceof Int32Array);
  assert.equal(Array.from(bv), [1, 0]);
  tf.dispose([f, i, b]);
});

backend.run();

// Where the host's time goes in a decode step on webgpu: Dawn's calls counted and timed, with decode steps replayed
// (decode-graph.ts) and without. Any adapter, lavapipe included: these are host costs, what bounds decoding a small
// model on a fast GPU. Each step's tokens are read before the next is queued, so a CPU adapter's execution of the
// step does not compete with the host for the cores while it is timed.
//
//   node --import tsx bench/decode-host.bench.ts [--layers 4] [--width 32] [--batch 1] [--tokens 200]
import * as tf from '@tensorflow/tfjs-core';
import { parseArgs } from 'node:util';
import { initBackend, readTensor } from '../stages/lm/backend.ts';
import type { LmConfig } from '../stages/lm/config.ts';
import { kernels } from '../stages/lm/kernels.ts';
import type { KvCache } from '../stages/lm/types.ts';
import { deviceRandomModel } from './random-model.ts';

const { values: args } = parseArgs({
  options: { layers: { type: 'string', default: '4' }, width: { type: 'string', default: '32' }, batch: { type: 'string', default: '1' }, tokens: { type: 'string', default: '200' } },
});
const [L, W, B, G] = [args.layers, args.width, args.batch, args.tokens].map(Number) as [number, number, number, number];

const info = await initBackend('webgpu');
if (info.name !== 'webgpu') {
  console.log(`decode-host: needs a WebGPU adapter, this machine runs ${info.name}`);
  process.exit(0);
}

/** Milliseconds and calls per Dawn method while `timing` is on. */
const calls = new Map<string, { ms: number; n: number }>();
let timing = false;
function timed(proto: object, method: string): void {
  const p = proto as Record<string, (...a: unknown[]) => unknown>;
  const original = p[method]!;
  p[method] = function (this: unknown, ...a: unknown[]) {
    if (!timing) return original.apply(this, a);
    const t = performance.now();
    try {
      return original.apply(this, a);
    } finally {
      const e = calls.get(method) ?? { ms: 0, n: 0 };
      e.ms += performance.now() - t;
      e.n++;
      calls.set(method, e);
    }
  };
}
for (const m of ['createBindGroup', 'createBuffer', 'createCommandEncoder']) timed(GPUDevice.prototype, m);
for (const m of ['writeBuffer', 'submit']) timed(GPUQueue.prototype, m);
for (const m of ['setPipeline', 'setBindGroup', 'dispatchWorkgroups']) timed(GPUComputePassEncoder.prototype, m);
timed(GPUComputePipeline.prototype, 'getBindGroupLayout');
timed(GPUCommandEncoder.prototype, 'beginComputePass');

const config: LmConfig = {
  modelType: 'llama', vocabSize: 512, hiddenSize: W, intermediateSize: 4 * W, numLayers: L, numHeads: 4, numKvHeads: 4, headDim: W / 4,
  ropeTheta: 10000, rmsNormEps: 1e-6, tieWordEmbeddings: false, maxPositionEmbeddings: G + 32, initializerRange: 0.02, bosId: 1, eosId: 2, padId: 3,
};
const model = deviceRandomModel(config, 1);
const prompts = Array.from({ length: B }, (_, r) => Array.from({ length: 16 }, (_, i) => 5 + ((r * 31 + i * 7) % 400)));
console.log(`decode-host: ${info.device}; ${L} layers, width ${W}, batch ${B}, ${G} tokens greedy`);

/**
 * Decodes `tokens` steps greedily as generate() does, but reads each step's tokens before queuing the next, so the
 * GPU is idle while the host queues a step: the time measured is the host's alone. Returns ms per step queued
 * (the prompt's step and the recorded one left out).
 */
async function hostPerStep(tokens: number): Promise<number> {
  const steps = kernels().decodeSteps(model, 0);
  let ids = tf.tensor2d(prompts.flat(), [B, prompts[0]!.length], 'int32');
  let mask = tf.onesLike(ids);
  let cache: KvCache | null = model.newKvCache(prompts[0]!.length + tokens);
  let queuing = 0;
  for (let s = 0; s < tokens; s++) {
    const t = performance.now();
    const out = await steps.step(ids, mask, cache, null);
    if (s >= 2) queuing += performance.now() - t;
    cache = out.cache;
    await readTensor(out.ids);
    if (steps.replaying) {
      out.ids.dispose();
      continue;
    }
    const next = tf.reshape(out.ids, [B, 1]) as tf.Tensor2D;
    const grown = tf.concat([mask, tf.ones([B, 1], 'int32')], 1) as tf.Tensor2D;
    tf.dispose([ids, mask, out.ids]);
    [ids, mask] = [next, grown];
  }
  steps.dispose();
  tf.dispose([ids, mask]);
  cache?.dispose();
  return queuing / (tokens - 2);
}

for (const graph of ['off', 'on']) {
  process.env.PAUSEPIPE_DECODE_GRAPH = graph;
  await hostPerStep(4); // pipelines and stacked weights
  calls.clear();
  timing = true;
  const host = await hostPerStep(G);
  timing = false;
  console.log(`replay ${graph}: host ${host.toFixed(2)} ms queuing a step (the GPU idle meanwhile)`);
  for (const [method, { ms, n }] of [...calls].sort((a, b) => b[1].ms - a[1].ms)) {
    console.log(`  ${method.padEnd(20)} ${(n / G).toFixed(1).padStart(6)} a step  ${((1000 * ms) / n).toFixed(1).padStart(7)} µs each  ${(ms / G).toFixed(3)} ms a step`);
  }
}
model.dispose();
tf.disposeVariables();
process.exit(0);

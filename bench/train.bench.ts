// Training and generation throughput of the causal LM on the active backend, against the backend's own matmul roofline.
//
//   node --import tsx bench/train.bench.ts [--shape small|medium] [--steps N] [--backend wasm|cpu|webgpu|tensorflow] [--gen N] [--profile]
//   (`npm run bench:train` runs it for both shapes on the best available backend)
//
// Training FLOPs per token = 6·N + 12·L·T·d_attn, where N counts the weights of every matmul (q/k/v/o, MLP and
// LM head; not the embedding lookup or norms) and the second term is attention's QKᵀ and P·V over the full T×T
// scores (both 2·T·d_attn per token and layer forward, ×3 for forward plus backward). The roofline is the best
// rate of one rank-2 1024×1024×1024 tf.matMul on the same backend.
import * as tf from '@tensorflow/tfjs-core';
import { parseArgs } from 'node:util';
import { initBackend, readTensor } from '../stages/lm/backend.ts';
import { presetConfig, type LmConfig } from '../stages/lm/config.ts';
import { createModel, type CausalLM } from '../stages/lm/model.ts';
import { AdamW } from '../stages/lm/optimizer.ts';
import type { Batch, KvCache } from '../stages/lm/types.ts';

interface Shape {
  preset: 'small' | 'medium';
  seqLen: number;
  batch: number;
  /**
   * Rows per forward/backward pass; the batch is accumulated over batch/micro passes before one update, as the
   * trainer's gradAccum does. The wasm heap is 32-bit (4 GiB), and medium's 16×256 activations do not fit at once.
   */
  micro: number;
  /** Timed steps when --steps is not given (medium takes about a minute a step on one wasm thread). */
  steps: number;
}

const SHAPES: Record<string, Shape> = {
  small: { preset: 'small', seqLen: 128, batch: 8, micro: 8, steps: 5 },
  medium: { preset: 'medium', seqLen: 256, batch: 16, micro: 1, steps: 1 },
};
const VOCAB = 512;

const { values: args } = parseArgs({
  options: {
    shape: { type: 'string', default: 'small' },
    steps: { type: 'string' },
    backend: { type: 'string' },
    gen: { type: 'string', default: '32' },
    profile: { type: 'boolean', default: false },
  },
});

function fail(message: string): never {
  console.error(`train.bench: ${message}`);
  process.exit(2);
}

const shape = SHAPES[args.shape!] ?? fail(`unknown --shape ${args.shape} (expected ${Object.keys(SHAPES).join(' or ')})`);
const steps = args.steps === undefined ? shape.steps : Number(args.steps);
if (!Number.isInteger(steps) || steps < 1) fail(`--steps must be a whole number >= 1, got ${args.steps}`);
const genTokens = Number(args.gen);
if (!Number.isInteger(genTokens) || genTokens < 1) fail(`--gen must be a whole number >= 1, got ${args.gen}`);

/**
 * Wall-clock and CPU time since `start()`. On a shared machine the process's CPU time is what the code would take
 * alone (wasm runs on one thread), so rates are given for both; the roofline ratio uses CPU time on both sides.
 */
function stopwatch(): () => { wallMs: number; cpuMs: number } {
  const wall = performance.now();
  const cpu = process.cpuUsage();
  return () => {
    const used = process.cpuUsage(cpu);
    return { wallMs: performance.now() - wall, cpuMs: (used.user + used.system) / 1e3 };
  };
}

/** Best rate of a rank-2 n×n×n matmul, in FLOP/s of wall and of CPU time. */
async function matmulRoofline(n = 1024, reps = 5): Promise<{ wall: number; cpu: number }> {
  const a = tf.randomNormal([n, n]);
  const b = tf.randomNormal([n, n]);
  let wallMs = Infinity;
  let cpuMs = Infinity;
  for (let i = 0; i < reps + 1; i++) {
    const stop = stopwatch();
    const c = tf.matMul(a as tf.Tensor2D, b as tf.Tensor2D);
    await c.data();
    const t = stop();
    c.dispose();
    if (i === 0) continue; // the first run creates the kernel's packed weights
    wallMs = Math.min(wallMs, t.wallMs);
    cpuMs = Math.min(cpuMs, t.cpuMs);
  }
  tf.dispose([a, b]);
  return { wall: (2 * n ** 3) / (wallMs / 1e3), cpu: (2 * n ** 3) / (cpuMs / 1e3) };
}

function matmulParams(cfg: LmConfig): number {
  const H = cfg.hiddenSize;
  const attn = H * cfg.numHeads * cfg.headDim * 2 + H * cfg.numKvHeads * cfg.headDim * 2;
  const mlp = 3 * H * cfg.intermediateSize;
  return cfg.numLayers * (attn + mlp) + cfg.vocabSize * H;
}

function trainFlopsPerToken(cfg: LmConfig, T: number): number {
  return 6 * matmulParams(cfg) + 12 * cfg.numLayers * T * cfg.numHeads * cfg.headDim;
}

function randomIds(B: number, T: number, seed: number): Int32Array {
  const ids = new Int32Array(B * T);
  let s = seed >>> 0;
  for (let i = 0; i < ids.length; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    ids[i] = s % VOCAB;
  }
  return ids;
}

function makeBatch(B: number, T: number, seed: number): Batch {
  const ids = randomIds(B, T, seed);
  return {
    inputIds: tf.tensor2d(ids, [B, T], 'int32'),
    attentionMask: tf.ones([B, T], 'int32') as tf.Tensor2D,
    labels: tf.tensor2d(ids, [B, T], 'int32'),
  };
}

/** One optimizer update as the trainer does it: loss and gradients of all weights (summed over micro-batches), then AdamW. */
async function trainStep(model: CausalLM, vars: Map<string, tf.Variable>, opt: AdamW, micro: Batch[]): Promise<number> {
  const names = new Map([...vars].map(([saved, v]) => [v.name, saved]));
  const sum = new Map<string, tf.Tensor>();
  let loss = 0;
  for (const batch of micro) {
    const { value, grads } = tf.variableGrads(() => tf.div(model.lossParts(batch, { training: true }).loss, micro.length) as tf.Scalar, [...vars.values()]);
    for (const [tfName, g] of Object.entries(grads)) {
      const name = names.get(tfName)!;
      const prev = sum.get(name);
      sum.set(name, prev ? tf.add(prev, g) : g);
      if (prev) tf.dispose([prev, g]);
    }
    loss += (await readTensor(value))[0]!;
    value.dispose();
  }
  opt.apply(sum, 1e-3).dispose();
  tf.dispose([...sum.values()]);
  return loss;
}

/** Greedy decoding with the KV cache: a prefill of the prompt, then one token per step. Times the steps after prefill. */
async function greedyDecode(model: CausalLM, prompt: tf.Tensor2D, newTokens: number): Promise<{ prefillMs: number; decode: { wallMs: number; cpuMs: number } }> {
  const [B, P] = prompt.shape;
  let cache: KvCache | null = null;
  let ids = prompt;
  let mask = tf.ones([B, P], 'int32') as tf.Tensor2D;
  let prefillMs = 0;
  const t0 = performance.now();
  let stop = stopwatch();
  for (let i = 0; i < newTokens; i++) {
    const step = model.decodeStep(ids, mask, cache);
    cache = step.cache;
    const next = tf.tidy(() => tf.reshape(tf.argMax(step.logProbs, -1), [B, 1]).toInt()) as tf.Tensor2D;
    await readTensor(next); // what a generator does each step: look at the token (eos check)
    step.logProbs.dispose();
    if (ids !== prompt) ids.dispose();
    ids = next;
    const grown = tf.tidy(() => tf.concat([mask, tf.ones([B, 1], 'int32')], 1)) as tf.Tensor2D;
    mask.dispose();
    mask = grown;
    if (i === 0) {
      prefillMs = performance.now() - t0;
      stop = stopwatch();
    }
  }
  const decode = stop();
  cache?.dispose();
  tf.dispose([ids, mask]);
  return { prefillMs, decode };
}

function fmt(flops: number): string {
  return `${(flops / 1e9).toFixed(2)} GFLOP/s`;
}

const info = await initBackend(args.backend);
console.log(`backend: ${info.name}${info.device ? ` (${info.device})` : ''}`);
if (info.notice) console.log(`notice: ${info.notice}`);
const roofline = await matmulRoofline();
console.log(`roofline: rank-2 1024³ matmul ${fmt(roofline.wall)} wall, ${fmt(roofline.cpu)} per CPU second`);

const cfg = presetConfig(shape.preset, { vocabSize: VOCAB, bosId: 0, eosId: 1, padId: null }, shape.seqLen + genTokens + 16);
const { seqLen: T, batch: B } = shape;
const model = createModel(cfg, 1);
const vars = model.trainableVariables();
const opt = new AdamW(vars, { maxGradNorm: 1 });
console.log(`shape ${args.shape}: ${cfg.numLayers} layers, width ${cfg.hiddenSize}, ${cfg.numHeads} heads (${cfg.numKvHeads} kv), ` +
  `SwiGLU ${cfg.intermediateSize}, vocab ${VOCAB}, sequence ${T}, batch ${B}; ${(matmulParams(cfg) / 1e6).toFixed(2)}M matmul weights`);

const batches = Array.from({ length: B / shape.micro }, (_, i) => makeBatch(shape.micro, T, 7 + i));
if (batches.length > 1) console.log(`  (each update accumulates ${batches.length} micro-batches of ${shape.micro} rows)`);
const warm = await trainStep(model, vars, opt, batches); // first step builds kernels and packed weights
const before = tf.memory().numTensors;
let lastLoss = warm;
if (args.profile) {
  const prof = await tf.profile(async () => {
    lastLoss = await trainStep(model, vars, opt, batches);
  });
  const byKernel = new Map<string, { ms: number; n: number }>();
  for (const k of prof.kernels) {
    const e = byKernel.get(k.name) ?? { ms: 0, n: 0 };
    e.ms += typeof k.kernelTimeMs === 'number' ? k.kernelTimeMs : 0;
    e.n += 1;
    byKernel.set(k.name, e);
  }
  const total = [...byKernel.values()].reduce((a, e) => a + e.ms, 0);
  console.log(`profile of one step: ${prof.kernels.length} kernels, ${total.toFixed(0)} ms in kernels`);
  for (const [name, e] of [...byKernel].sort((a, b) => b[1].ms - a[1].ms).slice(0, 15)) {
    console.log(`  ${name.padEnd(18)} ${e.ms.toFixed(1).padStart(8)} ms  ${((100 * e.ms) / total).toFixed(1).padStart(5)}%  ×${e.n}`);
  }
}
const stopTrain = stopwatch();
for (let s = 0; s < steps; s++) lastLoss = await trainStep(model, vars, opt, batches);
const trainTime = stopTrain();
const leaked = tf.memory().numTensors - before;
const flopsPerToken = trainFlopsPerToken(cfg, T);
const rate = (ms: number) => (B * T * steps) / (ms / 1e3);
console.log(`train: ${steps} steps in ${(trainTime.wallMs / 1e3).toFixed(2)} s wall (${(trainTime.cpuMs / 1e3).toFixed(2)} s CPU) → ` +
  `${rate(trainTime.wallMs).toFixed(0)} tokens/s wall, ${rate(trainTime.cpuMs).toFixed(0)} tokens/s per CPU second; ` +
  `${fmt(rate(trainTime.cpuMs) * flopsPerToken)} per CPU second = ${((100 * rate(trainTime.cpuMs) * flopsPerToken) / roofline.cpu).toFixed(1)}% of roofline`);
console.log(`  (${(flopsPerToken / 1e6).toFixed(2)} MFLOP per token; loss ${warm.toFixed(3)} → ${lastLoss.toFixed(3)}; live tensors ${leaked >= 0 ? '+' : ''}${leaked} over the timed steps)`);
for (const b of batches) tf.dispose([b.inputIds, b.attentionMask, b.labels]);

const promptLen = 16;
const prompt = tf.tensor2d(randomIds(B, promptLen, 11), [B, promptLen], 'int32');
await greedyDecode(model, prompt, 2); // warm-up of the decode kernels
const gen = await greedyDecode(model, prompt, genTokens);
const perS = (ms: number) => (B * (genTokens - 1)) / (ms / 1e3);
console.log(`generate: batch ${B}, prompt ${promptLen}, ${genTokens} new tokens greedy with KV cache → prefill ${gen.prefillMs.toFixed(0)} ms, ` +
  `${perS(gen.decode.wallMs).toFixed(0)} tokens/s wall, ${perS(gen.decode.cpuMs).toFixed(0)} per CPU second ` +
  `(${(gen.decode.wallMs / (genTokens - 1)).toFixed(1)} ms per step)`);
prompt.dispose();
opt.dispose();
model.dispose();

// Training and decoding throughput of the causal LM on the active backend, against its matmul roofline and against PyTorch.
//
//   node --import tsx bench/train.bench.ts [--shape small|medium|large|mistral7b] [--layers N] [--steps N] [--batch N]
//       [--seq N] [--micro N] [--gen N] [--checkpointing on|off] [--backend wasm|cpu|webgpu|tensorflow] [--torch FILE|none] [--profile]
//       [--matmul tfjs|wgsl] [--attention rows|lanes] [--frozen-weights f32|bf16]
//   (`npm run bench:train` runs small and medium on the best available backend)
//
// Shapes: small (4 layers, width 128), medium (8, 512), large (12, 1024, 16 heads, sequence 512, batch 8) train every
// weight with AdamW; mistral7b is Mistral-7B-v0.1 with the pause token (32 layers, width 4096, 32 heads, 8 KV heads,
// SwiGLU 14336, 32,001 rows) training only the pause embedding and pause head, batch 8 × 600, as the seed does, with
// activation checkpointing (every layer's activations would take about 170 GiB). Before building the model the bench
// prints the memory estimate (stages/lm/memory-estimate.ts) against the device; a GPU error (out of memory above all)
// stops it with the error's message and exit status 3, never with numbers computed from invalid buffers.
// Weights are random and made on the device (bench/random-model.ts), so a 7B model never passes through host memory.
//
// Rates are by wall time on a GPU and by CPU time on wasm/cpu (one thread on a shared machine). The roofline is the
// backend's best rank-2 matmul rate: on WebGPU five 4096³ products in a row before one read (256³ on a software
// adapter), so it measures the GPU and not a readback. Training FLOPs per token = 6·N + 12·L·T·d_attn (N: weights of
// every matmul; attention's QKᵀ and P·V over the full T×T scores); pause-only training has no weight gradients: 4·N + 8·L·T·d_attn.
//
// On WebGPU `--matmul` (default: PAUSEPIPE_MATMUL, else tfjs) picks the product of the projections: tfjs's MatMul or
// the WGSL GEMM of stages/lm/webgpu/matmul.ts; the roofline uses the same product. One-token decode steps always take
// the few-rows product (stages/lm/webgpu/matvec.ts), so that they can be replayed. `--attention` (default:
// PAUSEPIPE_ATTENTION, else rows) picks the training attention kernels: one invocation per row (attention.ts) or a row
// split over a subgroup's lanes (attention-lanes.ts); the backend line says how many lanes the shape's heads got.
// `--frozen-weights bf16` (default: PAUSEPIPE_FROZEN_WEIGHTS, else f32) stores the weights in bfloat16 as the seed's
// `precision: "bf16"` does and keeps the frozen decoder projections packed (stages/lm/bf16-weights.ts): pause-only
// mistral7b then holds 14 GB of projections instead of 28, which the memory lines show.
//
// Every WebGPU run prints `kernels: train N, decode M, reads R, bind groups G`: dispatches in one training step,
// dispatches per decode step, host reads per decode step and bind groups made per decode step (0 once steps are
// replayed, decode-graph.ts); the decode line gives the host's time queuing a step, which bounds the decode rate on a
// fast GPU. With PyTorch at hand (python3 with torch; or --torch FILE from bench/torch-bench.py --out FILE) the same
// shape's PyTorch figures and the ratios are printed.
import * as tf from '@tensorflow/tfjs-core';
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { initBackend, readTensor, webgpuAdapter } from '../stages/lm/backend.ts';
import type { LmConfig } from '../stages/lm/config.ts';
import { packCandidates, packFrozenWeights, packingFrozenWeights } from '../stages/lm/bf16-weights.ts';
import { configureTraining } from '../stages/lm/freeze.ts';
import { generate } from '../stages/lm/generate.ts';
import { GPU_CHOICES } from '../stages/lm/gpu-settings.ts';
import { kernels } from '../stages/lm/kernels.ts';
import type { CausalLM } from '../stages/lm/model.ts';
import { AdamW, roundToBfloat16 } from '../stages/lm/optimizer.ts';
import { builtinTokenizerJson, JsonTokenizer } from '../stages/lm/tokenizer.ts';
import type { Batch } from '../stages/lm/types.ts';
import { estimateGpuMemoryMiB, parameterCount } from '../stages/lm/memory-estimate.ts';
import { countGpuWork, type GpuWork } from '../stages/lm/webgpu/counters.ts';
import { GpuError, watchGpu } from '../stages/lm/webgpu/gpu-errors.ts';
import { releasePooledBuffers } from '../stages/lm/webgpu/engine.ts';
import { profileGpu } from '../stages/lm/webgpu/profile.ts';
import { attentionChoice, attentionLanes } from '../stages/lm/webgpu/attention.ts';
import { matMulChoice, projection } from '../stages/lm/webgpu/matmul.ts';
import { deviceRandomModel, deviceRandomPauseModel } from './random-model.ts';

interface Shape {
  layers: number;
  width: number;
  heads: number;
  kvHeads: number;
  ffn: number;
  vocab: number;
  seq: number;
  batch: number;
  /** Timed training steps when --steps is not given. */
  steps: number;
  /** Rows per forward/backward pass on wasm/cpu, whose heap is 32-bit (4 GiB); GPUs take the full batch. */
  hostMicro: number;
  /** The seed's model: the pause wrapper, pause embedding and head training, Mistral's RMSNorm epsilon. */
  pauseOnly?: boolean;
  /** Activation checkpointing unless --checkpointing says otherwise. */
  checkpointing?: boolean;
}

const SHAPES: Record<string, Shape> = {
  small: { layers: 4, width: 128, heads: 4, kvHeads: 4, ffn: 512, vocab: 512, seq: 128, batch: 8, steps: 5, hostMicro: 8 },
  medium: { layers: 8, width: 512, heads: 8, kvHeads: 8, ffn: 2048, vocab: 512, seq: 256, batch: 16, steps: 3, hostMicro: 1 },
  large: { layers: 12, width: 1024, heads: 16, kvHeads: 16, ffn: 4096, vocab: 512, seq: 512, batch: 8, steps: 3, hostMicro: 1 },
  mistral7b: { layers: 32, width: 4096, heads: 32, kvHeads: 8, ffn: 14336, vocab: 32000, seq: 600, batch: 8, steps: 2, hostMicro: 1, pauseOnly: true, checkpointing: true },
};
const PROMPT = 16;
const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

const { values: args } = parseArgs({
  options: {
    shape: { type: 'string', default: 'small' },
    layers: { type: 'string' },
    steps: { type: 'string' },
    batch: { type: 'string' },
    seq: { type: 'string' },
    micro: { type: 'string' },
    gen: { type: 'string', default: '32' },
    backend: { type: 'string' },
    torch: { type: 'string' },
    profile: { type: 'boolean', default: false },
    checkpointing: { type: 'string' },
    matmul: { type: 'string' },
    attention: { type: 'string' },
    'frozen-weights': { type: 'string' },
  },
});

// A GPU error ends the bench with its message (what failed, what was asked for, the device's limits) and status 3.
process.on('uncaughtException', (err) => {
  console.error(`train.bench: ${err instanceof GpuError ? err.message : (err.stack ?? String(err))}`);
  process.exit(err instanceof GpuError ? 3 : 1);
});

function fail(message: string): never {
  console.error(`train.bench: ${message}`);
  process.exit(2);
}

function count(name: string, value: string | undefined, fallback: number): number {
  if (value === undefined) return fallback;
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1) fail(`--${name} must be a whole number >= 1, got ${value}`);
  return n;
}

const shapeName = args.shape!;
const shape = SHAPES[shapeName] ?? fail(`unknown --shape ${shapeName} (expected ${Object.keys(SHAPES).join(', ')})`);
const L = count('layers', args.layers, shape.layers);
const steps = count('steps', args.steps, shape.steps);
const B = count('batch', args.batch, shape.batch);
const T = count('seq', args.seq, shape.seq);
const genTokens = count('gen', args.gen, 32);
const checkpointing = args.checkpointing === undefined ? shape.checkpointing === true
  : args.checkpointing === 'on' ? true : args.checkpointing === 'off' ? false : fail(`--checkpointing must be on or off, got ${args.checkpointing}`);
if (genTokens < 3) fail('--gen must be at least 3 (the first step is the prefill, the kernels line counts the steps between the first and the last)');

/** The training attention this run's heads get: rows, or lanes with their count (rows where the device has no subgroups). */
function attentionLine(): string {
  if (attentionChoice() === 'rows') return 'rows';
  const lanes = attentionLanes(shape.width / shape.heads);
  return lanes > 0 ? `lanes (${lanes} per row)` : 'rows (lanes asked, but this device has no subgroups that fit)';
}

/** A FLOP rate in the unit that keeps it readable. */
function rate(flops: number): string {
  return flops >= 1e12 ? `${(flops / 1e12).toFixed(2)} TFLOP/s` : `${(flops / 1e9).toFixed(1)} GFLOP/s`;
}

/** Wall-clock and CPU time since it was made. */
function stopwatch(): () => { wallMs: number; cpuMs: number } {
  const wall = performance.now();
  const cpu = process.cpuUsage();
  return () => {
    const used = process.cpuUsage(cpu);
    return { wallMs: performance.now() - wall, cpuMs: (used.user + used.system) / 1e3 };
  };
}

/** A flag that sets a GPU choice variable for this run, checked against the values gpu-settings.ts lists. */
function choiceFlag(flag: string, variable: keyof typeof GPU_CHOICES, value: string | undefined): void {
  if (value === undefined) return;
  const values: readonly string[] = GPU_CHOICES[variable];
  if (!values.includes(value)) fail(`--${flag} must be ${values.join(' or ')}, got ${value}`);
  process.env[variable] = value;
}
choiceFlag('matmul', 'PAUSEPIPE_MATMUL', args.matmul);
choiceFlag('attention', 'PAUSEPIPE_ATTENTION', args.attention);
choiceFlag('frozen-weights', 'PAUSEPIPE_FROZEN_WEIGHTS', args['frozen-weights']);
const matmul = matMulChoice();
const info = await initBackend(args.backend);
if (matmul === 'wgsl' && info.name !== 'webgpu') fail(`--matmul wgsl needs the webgpu backend, this run has ${info.name}`);
if (args['frozen-weights'] === 'bf16' && info.name !== 'webgpu') fail(`--frozen-weights bf16 needs the webgpu backend, this run has ${info.name}`);
const onGpu = info.name === 'webgpu' || info.name === 'tensorflow';
const adapter = info.name === 'webgpu' ? await webgpuAdapter() : null;
const frozenBf16 = packingFrozenWeights();
console.log(`backend: ${info.name}${info.device ? ` (${info.device})` : ''}${info.name === 'webgpu' ? `, matmul ${matmul}, attention ${attentionLine()}, frozen weights ${frozenBf16 ? 'bf16' : 'f32'}` : ''}`);
if (info.notice) console.log(`notice: ${info.notice}`);
if (adapter) {
  console.log(`adapter limits: maxStorageBufferBindingSize ${adapter.limits.maxStorageBufferBindingSize}, maxBufferSize ${adapter.limits.maxBufferSize}`);
}
/** GPU rates are by wall time; a wasm thread on a shared machine is measured by its CPU time. */
const clock = (t: { wallMs: number; cpuMs: number }) => (onGpu ? t.wallMs : t.cpuMs);
const clockName = onGpu ? 'wall' : 'per CPU second';

/** Best rate of `reps` rank-2 n³ matmuls in a row followed by one read, in FLOP/s by the bench's clock. */
async function matmulRoofline(n: number, reps: number): Promise<number> {
  const a = tf.randomNormal([n, n]) as tf.Tensor2D;
  const b = tf.randomNormal([n, n]) as tf.Tensor2D;
  let best = Infinity;
  for (let trial = 0; trial < 4; trial++) {
    const stop = stopwatch();
    const outs = Array.from({ length: reps }, () => (info.name === 'webgpu' ? projection(a, b, false, false) : tf.matMul(a, b)));
    await watchGpu('the roofline matmuls', () => readTensor(outs.at(-1)!));
    const t = clock(stop());
    tf.dispose(outs);
    if (trial > 0) best = Math.min(best, t); // the first trial builds the kernel (and wasm's packed weights)
  }
  tf.dispose([a, b]);
  return (reps * 2 * n ** 3) / (best / 1e3);
}

const rooflineN = !onGpu ? 1024 : adapter?.software ? 256 : 4096;
const rooflineReps = onGpu ? 5 : 1;
const roofline = await matmulRoofline(rooflineN, rooflineReps);
console.log(`roofline: ${rooflineReps} × rank-2 ${rooflineN}³ ${info.name === 'webgpu' ? `${matmul} ` : ''}matmul, best ${rate(roofline)} ${clockName}` +
  `${adapter?.software ? ' (a software adapter: 256³ keeps it short)' : ''}`);

const config: LmConfig = {
  modelType: shape.pauseOnly ? 'mistral' : 'llama', vocabSize: shape.vocab, hiddenSize: shape.width, intermediateSize: shape.ffn, numLayers: L,
  numHeads: shape.heads, numKvHeads: shape.kvHeads, headDim: shape.width / shape.heads, ropeTheta: 10000, rmsNormEps: shape.pauseOnly ? 1e-5 : 1e-6,
  tieWordEmbeddings: false, maxPositionEmbeddings: Math.max(T, PROMPT + genTokens) + 16, initializerRange: 0.02, bosId: 1, eosId: 2, padId: 3,
  ...(shape.pauseOnly ? { slidingWindow: 4096, pause: { tokenId: shape.vocab, token: '<|pause|>' } } : {}),
};
// The estimate before anything large is made, so a shape that cannot fit says so first.
const hfConfig = {
  hidden_size: config.hiddenSize, intermediate_size: config.intermediateSize, num_hidden_layers: L, num_attention_heads: config.numHeads,
  num_key_value_heads: config.numKvHeads, vocab_size: config.vocabSize, tie_word_embeddings: false, ...(shape.pauseOnly ? { pause_token_id: config.vocabSize } : {}),
};
// Pause-only training trains the pause embedding row and the pause head Linear(H → 2) with its bias.
const trainedParams = shape.pauseOnly ? 3 * config.hiddenSize + 2 : parameterCount(hfConfig);
const estimateMiB = estimateGpuMemoryMiB(hfConfig, { batch: B, seq: T, training: true, trainableParams: trainedParams, checkpointing, frozenBf16 });
const weightsGiB = (parameterCount(hfConfig) * 4) / 2 ** 30;
console.log(`memory estimate: ${(estimateMiB / 1024).toFixed(1)} GiB for training (${weightsGiB.toFixed(1)} GiB of float32 weights), ` +
  `activation checkpointing ${checkpointing ? 'on' : 'off'}; WebGPU reports no memory size, so compare with the GPU's own`);
const buildClock = stopwatch();
const model: CausalLM = shape.pauseOnly ? deviceRandomPauseModel(config, 1) : deviceRandomModel(config, 1);
if (shape.pauseOnly) configureTraining(model, { groups: ['pauseEmbedding', 'pauseHead'] }, () => {});
model.gradientCheckpointing = checkpointing;
if (frozenBf16) {
  // Rounded as `precision: "bf16"` stores a model (only the weights to pack: the whole 7B embedding would not fit one
  // binding of a small adapter); then the frozen projections are exact in bfloat16.
  for (const name of packCandidates(model)) tf.tidy(() => model.variable(name).assign(roundToBfloat16(model.variable(name))));
  await watchGpu('packing the frozen weights', () => packFrozenWeights(model, console.log));
}
const vars = model.trainableVariables();
// Wait for the weights to exist before timing anything else; a model too large for the device fails here.
await watchGpu('making the random weights', () => readTensor(tf.sum([...vars.values()][0]!)));
// The temporaries of making random weights (a model read from disk has none) would stay in tfjs's buffer pool and
// count in the GPU peak below.
if (info.name === 'webgpu') releasePooledBuffers();
const buildS = buildClock().wallMs / 1e3;

const H = config.hiddenSize;
const dAttn = config.numHeads * config.headDim;
const matmulWeights = L * (2 * H * dAttn + 2 * H * config.numKvHeads * config.headDim + 3 * H * config.intermediateSize) + (config.vocabSize + (shape.pauseOnly ? 1 : 0)) * H;
const flopsPerToken = shape.pauseOnly ? 4 * matmulWeights + 8 * L * T * dAttn : 6 * matmulWeights + 12 * L * T * dAttn;
const trainableCount = [...vars.values()].reduce((n, v) => n + v.size, 0);
console.log(`shape ${shapeName}: ${L} layers, width ${H}, ${config.numHeads} heads (${config.numKvHeads} kv), SwiGLU ${config.intermediateSize}, ` +
  `vocab ${config.vocabSize}${shape.pauseOnly ? ' + pause' : ''}, sequence ${T}, batch ${B}; ${(matmulWeights / 1e6).toFixed(1)}M matmul weights, ` +
  `${trainableCount} trained${shape.pauseOnly ? ' (pause embedding and pause head)' : ''}; random weights made on the device in ${buildS.toFixed(1)} s`);

/** Host RSS peak (the kernel's own count) and the largest GPU allocation tfjs reported at the sampled points. */
let gpuPeak = 0;
function sampleGpu(): void {
  const m = tf.memory() as { numBytesAllocatedInGPU?: number };
  gpuPeak = Math.max(gpuPeak, m.numBytesAllocatedInGPU ?? 0);
}

function randomIds(rows: number, cols: number, seed: number, vocab: number, pauseEvery = 0): Int32Array {
  const ids = new Int32Array(rows * cols);
  let s = seed >>> 0;
  for (let i = 0; i < ids.length; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    ids[i] = pauseEvery > 0 && i % pauseEvery === pauseEvery - 1 ? vocab : 4 + (s % (vocab - 4));
  }
  return ids;
}

function makeBatch(rows: number, seed: number): Batch {
  // The seed's data has about one pause in ten answer tokens.
  const ids = randomIds(rows, T, seed, config.vocabSize, shape.pauseOnly ? 10 : 0);
  return { inputIds: tf.tensor2d(ids, [rows, T], 'int32'), attentionMask: tf.ones([rows, T], 'int32') as tf.Tensor2D, labels: tf.tensor2d(ids, [rows, T], 'int32') };
}

/**
 * One optimizer update as the trainer does it: loss and gradients over the micro-batches (summed), then AdamW. Under a
 * GpuWatch as in the trainer: an out-of-memory step reads back a stale loss and would otherwise be timed as a fast one.
 */
function trainStep(opt: AdamW, micro: Batch[]): Promise<number> {
  return watchGpu('training step', () => unwatchedStep(opt, micro));
}

async function unwatchedStep(opt: AdamW, micro: Batch[]): Promise<number> {
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
  sampleGpu();
  return loss;
}

const micro = count('micro', args.micro, onGpu ? B : Math.min(shape.hostMicro, B));
if (B % micro !== 0) fail(`--micro ${micro} must divide the batch ${B}`);
const opt = new AdamW(vars, { maxGradNorm: 1 });
const batches = Array.from({ length: B / micro }, (_, i) => makeBatch(micro, 7 + i));
if (batches.length > 1) console.log(`  (each update accumulates ${batches.length} micro-batches of ${micro} rows)`);
const warm = await trainStep(opt, batches); // the first step builds the kernels
if (args.profile) {
  if (info.name !== 'webgpu') fail('--profile times GPU programs: it needs --backend webgpu');
  const prof = await profileGpu(() => trainStep(opt, batches));
  const dispatches = prof.kernels.reduce((n, k) => n + k.dispatches, 0);
  console.log(`profile of one step: ${dispatches} dispatches, ${prof.totalMs.toFixed(1)} ms of GPU time in them (each timed alone)`);
  for (const k of prof.kernels.slice(0, 20)) {
    console.log(`  ${k.name.padEnd(44)} ${k.ms.toFixed(2).padStart(9)} ms  ${((100 * k.ms) / prof.totalMs).toFixed(1).padStart(5)}%  ×${k.dispatches}`);
  }
}
const before = tf.memory().numTensors;
// The first timed step is also counted (a counter adds one increment per dispatch, nothing a clock sees).
let kernelsPerStep: number | null = null;
const stopTrain = stopwatch();
let lastLoss = warm;
for (let s = 0; s < steps; s++) {
  if (s === 0 && info.name === 'webgpu') {
    const counted = await countGpuWork(() => trainStep(opt, batches));
    kernelsPerStep = counted.dispatches;
    lastLoss = counted.result;
  } else {
    lastLoss = await trainStep(opt, batches);
  }
}
const trainTime = stopTrain();
const leaked = tf.memory().numTensors - before;
const trainRate = (B * T * steps) / (clock(trainTime) / 1e3);
console.log(`train${checkpointing ? ' (activation checkpointing; rates count model FLOPs, not the recomputed forward)' : ''}: ${steps} steps, ${(clock(trainTime) / steps).toFixed(0)} ms a step → ${trainRate.toFixed(0)} tokens/s ${clockName}; ` +
  `${rate(trainRate * flopsPerToken)} = ${((100 * trainRate * flopsPerToken) / roofline).toFixed(1)}% of the roofline ` +
  `(${(flopsPerToken / 1e6).toFixed(1)} MFLOP per token; loss ${warm.toFixed(3)} → ${lastLoss.toFixed(3)}; live tensors ${leaked >= 0 ? '+' : ''}${leaked})`);
for (const b of batches) tf.dispose([b.inputIds, b.attentionMask, b.labels]);
opt.dispose();

// Decoding through the project's generator: greedy, batch B, the KV cache, a built-in tokenizer without an end-of-text
// token so every row decodes exactly genTokens tokens.
const tokenizer = new JsonTokenizer(builtinTokenizerJson(), { bos_token: '<s>', pad_token: '<pad>' });
const prompts = Array.from({ length: B }, (_, r) => Array.from(randomIds(1, PROMPT, 11 + r, config.vocabSize)));
await generate(model, tokenizer, prompts, { maxNewTokens: 2 }); // builds the decode kernels
const marks: number[] = [];
/** The running GPU counts at each step's end (webgpu only). */
const work: GpuWork[] = [];
/** Host milliseconds spent queuing each step (the step's call and its read request, not the wait for the tokens). */
const queuing: number[] = [];
const decode = (running: Readonly<GpuWork> | null) => generate(model, tokenizer, prompts, {
  maxNewTokens: genTokens,
  onQueued: (ms) => queuing.push(ms),
  onStep: () => {
    marks.push(performance.now());
    if (running) work.push({ ...running });
  },
});
const t0 = performance.now();
if (info.name === 'webgpu') await countGpuWork(decode);
else await decode(null);
sampleGpu();
const prefillMs = marks[0]! - t0;
const decodeMs = marks.at(-1)! - marks[0]!;
const decodeRate = (B * (genTokens - 1)) / (decodeMs / 1e3);
// Steps queued ahead of the host's read of a step's tokens (kernels.ts; 0 where computing is synchronous).
const lookahead = kernels().decodeLookahead;
// The first queued step is the prefill (and, on webgpu, the second the recorded one): the rest are plain decode steps.
const hostMs = queuing.slice(2).reduce((a, b) => a + b, 0) / Math.max(queuing.length - 2, 1);
console.log(`decode: batch ${B}, prompt ${PROMPT}, ${genTokens} tokens greedy with the KV cache, ${lookahead} step${lookahead === 1 ? '' : 's'} ahead of each read → prefill ${prefillMs.toFixed(0)} ms, ` +
  `${decodeRate.toFixed(0)} tokens/s wall (${(decodeMs / (genTokens - 1)).toFixed(1)} ms a step, of which the host spends ${hostMs.toFixed(2)} ms queuing it)`);
// At the k-th onStep min(k + lookahead, genTokens) steps are queued: from the first onStep to the
// (genTokens − lookahead)-th, genTokens − lookahead − 1 steps were queued and as many read.
const counted = genTokens - lookahead - 1;
if (kernelsPerStep !== null && work.length === genTokens && counted > 0) {
  const first = work[0]!;
  const last = work[counted]!;
  const perStep = (k: 'dispatches' | 'reads' | 'bindGroups') => (last[k] - first[k]) / counted;
  console.log(`kernels: train ${kernelsPerStep}, decode ${perStep('dispatches').toFixed(0)}, reads ${perStep('reads').toFixed(1)}, ` +
    `bind groups ${perStep('bindGroups').toFixed(1)}` +
    `  (÷ ${L} layers, embedding, head, loss and optimizer included: train ${(kernelsPerStep / L).toFixed(1)}, decode ${(perStep('dispatches') / L).toFixed(1)})`);
}
const peakRss = process.resourceUsage().maxRSS * 1024;
console.log(`memory: peak host RSS ${(peakRss / 2 ** 30).toFixed(2)} GiB` + (onGpu ? `, GPU ${(gpuPeak / 2 ** 30).toFixed(2)} GiB allocated by tfjs at its peak` : ''));
model.dispose();

/** One PyTorch measurement of this shape, as bench/torch-bench.py writes them. */
interface TorchResult {
  shape: string;
  layers: number;
  batch: number;
  seq: number;
  dtype: string;
  device: string;
  /** float32 runs on CUDA: whether torch let matmuls use TF32 tensor cores (absent in files from before stop 15). */
  tf32?: boolean | null;
  train_tokens_per_s: number | null;
  decode_tokens_per_s: number | null;
  error?: string;
}

/** PyTorch's figures for this exact shape: from --torch FILE, or by running bench/torch-bench.py when torch imports. */
function torchResults(): TorchResult[] {
  if (args.torch === 'none') return [];
  const matches = (r: TorchResult) => r.shape === shapeName && r.layers === L && r.batch === B && r.seq === T;
  if (args.torch !== undefined) {
    const all = JSON.parse(readFileSync(args.torch, 'utf8')) as TorchResult[];
    return all.filter(matches);
  }
  try {
    execFileSync('python3', ['-c', 'import torch, transformers'], { stdio: 'ignore' });
  } catch {
    console.log('pytorch: not compared (python3 with torch and transformers not found)');
    return [];
  }
  const out = execFileSync('python3', [path.join(ROOT, 'bench', 'torch-bench.py'), '--shape', shapeName, '--layers', String(L), '--batch', String(B),
    '--seq', String(T), '--steps', String(steps), '--gen', String(genTokens), '--out', '-'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] });
  return (JSON.parse(out) as TorchResult[]).filter(matches);
}

const ratio = (ours: number, theirs: number) => (ours >= theirs ? `${(ours / theirs).toFixed(2)}× faster` : `${(theirs / ours).toFixed(2)}× slower`);
for (const r of torchResults()) {
  if (r.error) {
    console.log(`pytorch ${r.dtype} (${r.device}): ${r.error}`);
    continue;
  }
  const parts = [];
  if (r.train_tokens_per_s) parts.push(`train ${r.train_tokens_per_s.toFixed(0)} tokens/s (ours ${ratio(trainRate, r.train_tokens_per_s)})`);
  if (r.decode_tokens_per_s) parts.push(`decode ${r.decode_tokens_per_s.toFixed(0)} tokens/s (ours ${ratio(decodeRate, r.decode_tokens_per_s)})`);
  const precision = typeof r.tf32 === 'boolean' ? `, TF32 ${r.tf32 ? 'on' : 'off'}` : '';
  console.log(`pytorch ${r.dtype} (${r.device}${precision}), same shape: ${parts.join(', ')}`);
}

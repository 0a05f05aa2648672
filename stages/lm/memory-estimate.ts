// A rough GPU memory estimate of a model stage from its model folder's config.json, so small stages can share a GPU.
import { readFileSync } from 'node:fs';
import path from 'node:path';
import type { Resources } from '../kind.ts';
import { gpuChoice } from './gpu-settings.ts';
import { storedDtypes } from './safetensors.ts';

/** What a stage does with the model: the shape of its largest batch, and whether it trains. */
export interface MemoryShape {
  batch: number;
  /** Longest sequence in tokens. */
  seq: number;
  training: boolean;
  /** Training with activation checkpointing: one layer's activations at a time, plus every layer's input. */
  checkpointing?: boolean;
  /** Checkpointing is left to the run, which turns it on where the estimate without it exceeds the GPU (checkpointingFor). */
  autoCheckpointing?: boolean;
  /** Parameters that train (gradients and two AdamW moments each); absent: all of them, an upper bound. */
  trainableParams?: number;
  /**
   * Frozen decoder projections kept as bfloat16 (PAUSEPIPE_FROZEN_WEIGHTS=bf16, bf16-weights.ts): 2 bytes each. Taken
   * as every projection that `trainableParams` leaves frozen, at most all of them.
   */
  frozenBf16?: boolean;
  /**
   * What trains, for the host memory estimate of a run without a GPU (the GPU estimate keeps `trainableParams`):
   * every weight, or the LM head and embeddings (the large groups) when chosen; gradients through the layers or not.
   */
  trains?: { all: boolean; lmHead: boolean; lmEmbeddings: boolean; throughLayers: boolean; lora?: { r: number; targetModules: string[] } };
}

/**
 * What tfjs holds per layer and token in training, over the activation count below: measured on an H200 with the
 * Mistral-7B shape, pause-only, batch 8 × 600 (1 layer 12.78 GiB, 2 layers 18.94 GiB: 6.16 GiB for one more layer,
 * of which 0.81 GiB its weights; 5.35 GiB / 4,800 tokens = 299k floats against the 106k counted). tfjs keeps copies
 * the count leaves out (transposes, saved clones, gradient temporaries).
 */
const TRAINING_ACTIVATION_FACTOR = 2.8;

/** Per worker, whatever the model: the GPU context, the backend's kernels and buffer pools (a rough figure). */
export const PROCESS_OVERHEAD_MIB = 512;
/** Allocators round and keep freed buffers in pools: headroom on top of the tensors themselves. */
const HEADROOM = 1.25;
const F32 = 4;

type Json = Record<string, unknown>;

function field(config: Json, key: string, fallback?: number): number {
  const v = config[key];
  if (typeof v === 'number' && Number.isFinite(v) && v > 0) return v;
  if (fallback !== undefined) return fallback;
  throw new Error(`config.json: "${key}" must be a positive number`);
}

/** Weights of the decoder layers' projections (q, k, v, o, gate, up, down). */
function projectionCount(d: ReturnType<typeof dims>): number {
  return d.layers * (2 * d.hidden * d.heads * d.headDim + 2 * d.hidden * d.kvHeads * d.headDim + 3 * d.hidden * d.intermediate);
}

/** The dimensions the estimate needs, with Hugging Face's defaults. */
function dims(config: Json) {
  const hidden = field(config, 'hidden_size');
  const heads = field(config, 'num_attention_heads');
  return {
    hidden,
    heads,
    kvHeads: field(config, 'num_key_value_heads', heads),
    headDim: field(config, 'head_dim', hidden / heads),
    layers: field(config, 'num_hidden_layers'),
    intermediate: field(config, 'intermediate_size'),
    vocab: field(config, 'vocab_size'),
    pause: config.pause_token_id !== undefined && config.pause_token_id !== null,
    tied: config.tie_word_embeddings === true,
  };
}

/**
 * Parameters of a Llama/Mistral decoder described by a config.json; with `pause_token_id`, also the pause surgery's
 * (embedding row, untied LM head with one more row, the pause head Linear(H → 2) with bias).
 */
export function parameterCount(config: Json): number {
  const d = dims(config);
  // Each layer's projections and its two norms.
  const layers = projectionCount(d) + d.layers * 2 * d.hidden;
  const embedding = d.vocab * d.hidden;
  const head = d.pause ? (d.vocab + 1) * d.hidden + d.hidden + 2 * d.hidden + 2 : d.tied ? 0 : embedding;
  return layers + embedding + head + d.hidden;
}

/**
 * Training: float32 weights, gradients and both AdamW moments of the parameters that train (all, unless told), plus
 * the activations kept for the backward pass (per layer and token: the residual stream, norms, q/k/v, attention
 * output, the MLP's three intermediates and the attention probabilities, times what tfjs keeps besides; the logits
 * with their softmax and gradient); with checkpointing, every layer's input and one layer's activations.
 * Generation: the weights, the KV cache and one layer's activations at a time.
 */
export function estimateGpuMemoryMiB(config: Json, shape: MemoryShape): number {
  const d = dims(config);
  const tokens = shape.batch * shape.seq;
  const perLayerToken = 6 * d.hidden + 3 * d.intermediate + 2 * d.heads * shape.seq;
  let floats: number;
  if (shape.training) {
    const params = parameterCount(config);
    const trained = shape.trainableParams ?? params;
    // With checkpointing the backward pass holds every layer's input and recomputes one layer at a time.
    const layers = shape.checkpointing ? d.layers * d.hidden + TRAINING_ACTIVATION_FACTOR * perLayerToken : TRAINING_ACTIVATION_FACTOR * d.layers * perLayerToken;
    // Packed frozen projections take half a float each.
    const packed = shape.frozenBf16 ? Math.max(0, Math.min(projectionCount(d), params - trained)) : 0;
    floats = params - packed / 2 + 3 * trained + tokens * (layers + 3 * d.vocab);
  } else {
    const kvCache = tokens * d.layers * 2 * d.kvHeads * d.headDim;
    // Generation trains nothing: every projection packs.
    const packed = shape.frozenBf16 ? projectionCount(d) : 0;
    floats = parameterCount(config) - packed / 2 + kvCache + tokens * (perLayerToken + 2 * d.vocab);
  }
  return Math.ceil(PROCESS_OVERHEAD_MIB + (floats * F32 * HEADROOM) / 2 ** 20);
}

/** The most tfjs-backend-wasm can hold: its memory has 32-bit addresses and grows up to 4 GiB less one 64 KiB page. */
export const WASM_MEMORY_BYTES = 2 ** 32 - 2 ** 16;

/** What a model stage does with its model, as far as the tensors it holds on the wasm backend go. */
export interface WasmUse {
  /** Runs the model forward (sft, evaluate): the transposed copy of each weight it multiplies by is made and kept. */
  forward: boolean;
  /** Gradients flow back through the decoder layers (anything but a head trains): each weight multiplies them too. */
  backwardThroughLayers?: boolean;
  /** Parameters that train: a gradient and two AdamW moments each. Absent: none. */
  trainableParams?: number;
}

/** The floor's parts, named for a message, in bytes. */
export type FloorPart = [what: string, bytes: number];

/**
 * Bytes of tensors a model stage holds at once on the wasm backend, whatever else it allocates: every weight in
 * float32; for a forward pass the transposed copy of each weight it multiplies by (the projections and the LM head,
 * kept by model.ts's TransposeCache), and XNNPACK's packed copy of each (tfjs-backend-wasm keeps one per right-hand
 * operand of a product for as long as that tensor lives); for gradients through the layers the packed copy of each of
 * those weights too (dX = dY·W); for training a gradient and two AdamW moments per trained weight. A floor, not an
 * estimate (activations, the update's temporaries and the allocator's waste come on top): a model beyond wasm's
 * memory by this count cannot run there at all.
 */
export function wasmTensorFloor(config: Json, use: WasmUse): { bytes: number; parts: FloorPart[] } {
  const d = dims(config);
  const multiplied = (projectionCount(d) + (d.vocab + (d.pause ? 1 : 0)) * d.hidden) * F32;
  const parts: FloorPart[] = [['float32 weights', parameterCount(config) * F32]];
  if (use.forward) parts.push(['their transposed copies', multiplied], ['the packed copies of those that wasm\'s products keep', multiplied]);
  if (use.forward && use.backwardThroughLayers) parts.push(['the packed copies of the weights the gradients pass through', multiplied]);
  if (use.trainableParams) parts.push([`the gradients and AdamW moments of ${use.trainableParams.toLocaleString('en-US')} trained weights`, 3 * use.trainableParams * F32]);
  return { bytes: parts.reduce((sum, [, bytes]) => sum + bytes, 0), parts };
}

const gib = (bytes: number) => `${(bytes / 2 ** 30).toFixed(1)} GiB`;

/** What a model stage is about to do with the model, for a refusal: the verb, and what else would make it fit. */
export interface MemoryPurpose {
  /** What the tensors are needed for: `train`, `evaluate`, `load`, ... */
  verb: string;
  /** Ways out besides a GPU, e.g. `train fewer weights`; a smaller model is always one. */
  otherwise?: string;
}

/**
 * Why a stage cannot run on the wasm backend, or undefined when its tensor floor fits wasm's 4 GiB (or the config.json
 * lacks the sizes: loading the folder then says what is wrong). One text for the stage's own refusal when it starts and
 * for `plan` and `run`, which say it before anything runs.
 */
export function wasmMemoryRefusal(config: Json, use: WasmUse, purpose: MemoryPurpose): string | undefined {
  let floor;
  try {
    floor = wasmTensorFloor(config, use);
  } catch {
    return undefined;
  }
  if (floor.bytes <= WASM_MEMORY_BYTES) return undefined;
  const params = (parameterCount(config) / 1e9).toFixed(2);
  const parts = floor.parts.map(([what, bytes]) => `${gib(bytes)} for ${what}`).join(', ');
  // Training fewer weights helps only where the model alone, run forward, fits.
  const modelAlone = wasmTensorFloor(config, { forward: use.forward }).bytes;
  const ways = ['run it on a machine with a GPU (webgpu), or where @tensorflow/tfjs-node is installed (auto then uses it)',
    modelAlone <= WASM_MEMORY_BYTES ? purpose.otherwise : undefined, 'use a smaller model'];
  return `the model (${params} B parameters) needs at least ${gib(floor.bytes)} of tensors to ${purpose.verb} (${parts}), ` +
    `but the wasm backend holds at most 4 GiB in a process, whatever the machine's memory: ${ways.filter(Boolean).join(', or ')}`;
}

/** A model folder's config.json, or undefined when it cannot be read (loading the folder then says why). */
export function readModelConfig(dir: string): Record<string, unknown> | undefined {
  try {
    const config: unknown = JSON.parse(readFileSync(path.join(dir, 'config.json'), 'utf8'));
    return typeof config === 'object' && config !== null && !Array.isArray(config) ? (config as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}

/** What a worker process holds besides its tensors: Node.js, tfjs and the wasm module's own (a demo-sized sft: 480 MiB in all). */
const WORKER_MIB = 512;
/** Activations, an update's temporaries and the allocator's waste over the tensor floor (measured 0.9–1.3×, with the worker). */
const HOST_FLOOR_FACTOR = 1.3;

/**
 * Memory of a model stage's worker on a machine without a GPU, where the wasm backend holds the model: the tensor floor
 * with a margin, at most wasm's 4 GiB, plus the process's own. Measured on this project's machine (peak resident):
 * evaluating a 0.09 B model 1.3 GiB (estimate 1.8), a 0.30 B one 4.3 GiB (4.5); training every weight of a 0.02 B
 * one 1.2 GiB (1.3).
 */
export function hostMemoryMiB(config: Json, use: WasmUse): number {
  const floorMiB = wasmTensorFloor(config, use).bytes / 2 ** 20;
  return Math.ceil(WORKER_MIB + Math.min(WASM_MEMORY_BYTES / 2 ** 20, floorMiB * HOST_FLOOR_FACTOR));
}

/** Training estimates with and without activation checkpointing, against the memory of the GPU it runs on. */
export interface CheckpointingAdvice {
  withoutMiB: number;
  withMiB: number;
  /** The estimate without checkpointing exceeds the GPU: it would run out of memory, or very nearly. */
  needed: boolean;
}

/** Whether training `shape` on a GPU of `gpuMiB` needs activation checkpointing, by the estimates with and without it. */
export function checkpointingAdvice(config: Json, shape: Omit<MemoryShape, 'training' | 'checkpointing'>, gpuMiB: number): CheckpointingAdvice {
  const withoutMiB = estimateGpuMemoryMiB(config, { ...shape, training: true, checkpointing: false });
  const withMiB = estimateGpuMemoryMiB(config, { ...shape, training: true, checkpointing: true });
  return { withoutMiB, withMiB, needed: withoutMiB > gpuMiB };
}

/** Whether every weight of the folder is stored as BF16. */
function storedInBfloat16(dir: string): boolean {
  const dtypes = storedDtypes(dir);
  return dtypes !== undefined && dtypes.size === 1 && dtypes.has('BF16');
}

/**
 * A model stage's resources: a CPU slot and a GPU, with the estimates for the model folder `dir` (on a GPU, and in host
 * memory where it runs without one) when its config.json can be read (before the upstream model exists, or for a
 * folder that is not one, the stage holds a GPU alone), and why it cannot run on wasm at all where it cannot (`purpose`
 * words the refusal).
 */
export function modelStageResources(dir: string | undefined, shape: MemoryShape, purpose: MemoryPurpose): Resources {
  const config = dir === undefined ? undefined : readModelConfig(dir);
  if (dir === undefined || config === undefined) return { cpu: 1, gpu: 1 };
  try {
    // PAUSEPIPE_FROZEN_WEIGHTS=bf16 packs the frozen projections of a model stored in bfloat16 (values it holds exactly).
    const frozenBf16 = shape.frozenBf16 ?? (gpuChoice('PAUSEPIPE_FROZEN_WEIGHTS') === 'bf16' && storedInBfloat16(dir));
    // What trains is counted (heads, embeddings, LoRA adapters), as the run's own checkpointing advice counts it: the
    // seed's pause-only 7B takes 46 GiB checkpointed, not the 141 GiB of every weight's gradient and moments.
    const trainableParams = shape.trainableParams ?? (shape.trains && !shape.trains.all ? trainedWeights(config, shape.trains) : undefined);
    const gpuShape = { ...shape, frozenBf16, ...(trainableParams === undefined ? {} : { trainableParams }) };
    const gpuMemoryMiB = estimateGpuMemoryMiB(config, gpuShape);
    const checkpointed = shape.training && !shape.checkpointing && shape.autoCheckpointing
      ? { gpuMemoryCheckpointedMiB: estimateGpuMemoryMiB(config, { ...gpuShape, checkpointing: true }) }
      : {};
    const use = hostUse(config, shape);
    const beyondWasm = wasmMemoryRefusal(config, use, purpose);
    return { cpu: 1, gpu: 1, gpuMemoryMiB, ...checkpointed, hostMemoryMiB: hostMemoryMiB(config, use), ...(beyondWasm === undefined ? {} : { beyondWasm }) };
  } catch {
    return { cpu: 1, gpu: 1 };
  }
}

/** What a stage of `shape` does with the model on wasm: the trained groups' weights counted, the small ones left out. */
function hostUse(config: Json, shape: MemoryShape): WasmUse {
  if (!shape.training) return { forward: true };
  const trains = shape.trains ?? { all: true, lmHead: false, lmEmbeddings: false, throughLayers: true };
  const d = dims(config);
  const trainableParams = trains.all ? parameterCount(config) : (trains.lmHead ? (d.vocab + (d.pause ? 1 : 0)) * d.hidden : 0) + (trains.lmEmbeddings ? d.vocab * d.hidden : 0);
  return { forward: true, backwardThroughLayers: trains.all || trains.throughLayers, trainableParams };
}

/**
 * Weights that train short of all: the LM head and embeddings when chosen, the pause row and pause head (small) always,
 * and LoRA's two r-wide matrices per adapted projection and layer (a projection of in → out: r · (in + out)).
 */
function trainedWeights(config: Json, trains: NonNullable<MemoryShape['trains']>): number {
  const d = dims(config);
  const pause = d.pause ? 3 * d.hidden + 2 : 0;
  const q = d.heads * d.headDim;
  const kv = d.kvHeads * d.headDim;
  const sides: Record<string, number> = {
    q_proj: d.hidden + q, k_proj: d.hidden + kv, v_proj: d.hidden + kv, o_proj: q + d.hidden,
    gate_proj: d.hidden + d.intermediate, up_proj: d.hidden + d.intermediate, down_proj: d.intermediate + d.hidden,
  };
  const lora = trains.lora ? d.layers * trains.lora.r * trains.lora.targetModules.reduce((sum, m) => sum + (sides[m.split('.').pop()!] ?? 0), 0) : 0;
  return (trains.lmHead ? (d.vocab + (d.pause ? 1 : 0)) * d.hidden : 0) + (trains.lmEmbeddings ? d.vocab * d.hidden : 0) + pause + lora;
}

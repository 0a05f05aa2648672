// PAUSEPIPE_FROZEN_WEIGHTS=bf16: a model's frozen decoder projections kept on the GPU as bfloat16, where that is exact.
//
// The seed trains a bfloat16 Mistral-7B with most of it frozen; its projections are 28 GB in float32 and 14 GB as the
// checkpoint stores them. Under `precision: "bf16"`, or after loading a bfloat16 checkpoint, every value of such a
// weight is a bfloat16 number, so keeping only its high halves (webgpu/bf16.ts) changes no result: the products
// widen each value back as they read it. A weight that trains, or holds a value bfloat16 cannot, stays float32.
import * as tf from '@tensorflow/tfjs-core';
import { settleOnDevice } from './backend.ts';
import { gpuChoice } from './gpu-settings.ts';
import type { CausalLM } from './model.ts';
import { isBfloat16Exact, type HostTensor } from './safetensors.ts';
import { bindingLimit } from './split-weights.ts';
import { packBf16, PackedBf16, packOnHost } from './webgpu/bf16.ts';
import { releasePooledBuffers } from './webgpu/engine.ts';
import { formatBytes } from './webgpu/gpu-errors.ts';

/** The linear modules of a decoder layer, which only the projections read (pause.ts's wrapper prefixes them). */
const PROJECTION = /(^|\.)model\.layers\.\d+\.(self_attn\.[qkvo]_proj|mlp\.(gate|up|down)_proj)\.weight$/;

/**
 * The model after packing: its packed weights (those packed on loading included), the weights left float32 because a
 * value is not bfloat16, and the GPU bytes the packed weights save.
 */
export interface PackReport {
  packed: number;
  inexact: number;
  bytesSaved: number;
}

export interface PackOptions {
  /** For inference (evaluation) nothing trains, whatever the model's training configuration says. */
  inference?: boolean;
}

/**
 * Whether a float32 weight `name` of `shape` may be packed: a decoder projection, with rows of whole vec4s (a read is
 * two whole words), within one binding as float32 (the packing kernel binds it whole, and a widened copy must fit;
 * larger weights are split instead, split-weights.ts).
 */
function qualifies(name: string, shape: readonly number[]): boolean {
  const size = shape.reduce((a, b) => a * b, 1);
  return PROJECTION.test(name) && shape.length === 2 && shape[1]! % 4 === 0 && size > 0 && 4 * size <= bindingLimit();
}

/**
 * Names of the float32 weights packing would try: those that qualify, do not train and are not replaced by a LoRA
 * modules_to_save copy.
 */
export function packCandidates(model: CausalLM, opts: PackOptions = {}): string[] {
  const trains = new Set<unknown>(opts.inference ? [] : model.trainableVariables().values());
  return [...model.weights].filter(([name, w]) => !(w instanceof PackedBf16) && w.dtype === 'float32' && qualifies(name, w.shape) &&
    !trains.has(w) && !model.lora?.saved.has(name)).map(([name]) => name);
}

/**
 * A weight read from a checkpoint, packed on its way to the GPU when packing is on, it qualifies and its values are
 * bfloat16 numbers, else null. Whether it trains is not known yet: freezing widens a packed weight that is to train. A
 * bfloat16 checkpoint (or a folder saved from a bfloat16 model) thus never holds float32 projections on the GPU, not
 * even while loading.
 */
export function packOnLoad(name: string, t: HostTensor): PackedBf16 | null {
  if (!packingFrozenWeights() || !qualifies(name, t.shape) || !isBfloat16Exact(t)) return null;
  const words = tf.tensor2d(packOnHost(t.data as Float32Array), [t.shape[0]!, t.shape[1]! / 2], 'int32');
  settleOnDevice(words);
  return new PackedBf16(words, [t.shape[0]!, t.shape[1]!]);
}

/** Whether PAUSEPIPE_FROZEN_WEIGHTS asks for packing and the backend can do it (WebGPU only). */
export function packingFrozenWeights(): boolean {
  return gpuChoice('PAUSEPIPE_FROZEN_WEIGHTS') === 'bf16' && tf.getBackend() === 'webgpu';
}

/**
 * Packs those of `packCandidates` whose values are all bfloat16 numbers, one weight at a time: each packed copy is
 * made and checked, then its float32 variable freed and its buffer destroyed (tfjs would keep it in its pool), so the
 * GPU never holds more than one extra copy. Logs one line.
 */
export async function packFrozenWeights(model: CausalLM, log: (line: string) => void, opts: PackOptions = {}): Promise<PackReport> {
  const report: PackReport = { packed: 0, inexact: 0, bytesSaved: 0 };
  const count = (w: PackedBf16) => {
    report.packed++;
    report.bytesSaved += 2 * w.size;
  };
  for (const w of model.weights.values()) if (w instanceof PackedBf16) count(w);
  for (const name of packCandidates(model, opts)) {
    const w = model.variable(name);
    const packed = await packBf16(w as tf.Tensor2D);
    if (!packed) {
      report.inexact++;
      continue;
    }
    count(packed);
    model.weights.set(name, packed);
    w.dispose();
    releasePooledBuffers();
  }
  if (report.packed > 0) {
    // Stacks and transposes made from the float32 weights would keep their memory alive.
    model.dropDerived();
    releasePooledBuffers();
  }
  log(`frozen weights: ${report.packed} decoder projections kept as bfloat16 (${formatBytes(report.bytesSaved)} of GPU memory saved)` +
    (report.inexact > 0 ? `; ${report.inexact} left float32, holding values bfloat16 cannot` : ''));
  return report;
}

// Concatenation along the last axis (fused projection weights and outputs) and its inverse split, one kernel each.
import * as tf from '@tensorflow/tfjs-core';
import { bindings, grid, perElementMain, runToTensors } from './engine.ts';

const WG = 256;
/** Storage buffers a program may bind (WebGPU's guaranteed minimum, what tfjs asks the device for): one is the output. */
const MAX_PARTS = 7;

/** Segment offsets of the parts along the last axis, and their sum. */
function layout(widths: number[]): { offsets: number[]; total: number } {
  const offsets: number[] = [];
  let total = 0;
  for (const w of widths) {
    offsets.push(total);
    total += w;
  }
  return { offsets, total };
}

/** WGSL giving element `idx`'s `row`, its column `col` in the concatenation and the `part` that column falls in. */
function locatePart(offsets: number[], total: number): string {
  const select = offsets.slice(1).map((o, i) => `if (col >= ${o}u) { part = ${i + 1}u; }`).join(' ');
  return `  let row = idx / ${total}u;
  let col = idx - row * ${total}u;
  var part = 0u;
  ${select}`;
}

function concatWgsl(widths: number[]): string {
  const { offsets, total } = layout(widths);
  const parts = widths.map((w, i) => `if (part == ${i}u) { out[idx] = p${i}[row * ${w}u + col - ${offsets[i]}u]; }`).join('\n  ');
  return `
${bindings([['out', 'f32']], widths.map((_, i) => [`p${i}`, 'f32']), [['count', 'u32']])}
${perElementMain(WG)}
${locatePart(offsets, total)}
  ${parts}
}`;
}

function splitWgsl(widths: number[]): string {
  const { offsets, total } = layout(widths);
  const parts = widths.map((w, i) => `if (part == ${i}u) { p${i}[row * ${w}u + col - ${offsets[i]}u] = whole[idx]; }`).join('\n  ');
  return `
${bindings(widths.map((_, i) => [`p${i}`, 'f32']), [['whole', 'f32']], [['count', 'u32']])}
${perElementMain(WG)}
${locatePart(offsets, total)}
  ${parts}
}`;
}

function checkParts(n: number): void {
  if (n < 1 || n > MAX_PARTS) throw new Error(`concat: ${n} parts (1 to ${MAX_PARTS} fit one WebGPU program)`);
}

/** Concatenation of float32 tensors along their last axis (leading dims equal), not differentiable. */
export function concatLastRaw(parts: tf.Tensor[]): tf.Tensor {
  checkParts(parts.length);
  const widths = parts.map((p) => p.shape[p.shape.length - 1]!);
  const lead = parts[0]!.shape.slice(0, -1);
  for (const p of parts) {
    if (p.shape.length !== lead.length + 1 || lead.some((d, i) => d !== p.shape[i])) {
      throw new Error(`concat: parts [${parts.map((q) => `[${q.shape.join(', ')}]`).join(', ')}] differ before the last axis`);
    }
  }
  const { total } = layout(widths);
  const count = lead.reduce((a, b) => a * b, 1) * total;
  return runToTensors({
    key: `concat-${widths.join('-')}`,
    wgsl: () => concatWgsl(widths),
    inputs: parts,
    outputs: [{ shape: [...lead, total], dtype: 'float32' }],
    uniforms: [{ u32: count }],
    workgroups: grid(Math.ceil(count / WG)),
  })[0]!;
}

/** Pieces of `whole` along its last axis with the given widths, one kernel for all of them. */
export function splitLast(whole: tf.Tensor, widths: number[]): tf.Tensor[] {
  checkParts(widths.length);
  const lead = whole.shape.slice(0, -1);
  const { total } = layout(widths);
  if (whole.shape[whole.shape.length - 1] !== total) throw new Error(`split: widths ${widths.join('+')} do not add up to [${whole.shape.join(', ')}]`);
  return runToTensors({
    key: `split-${widths.join('-')}`,
    wgsl: () => splitWgsl(widths),
    inputs: [whole],
    outputs: widths.map((w) => ({ shape: [...lead, w], dtype: 'float32' as const })),
    uniforms: [{ u32: whole.size }],
    workgroups: grid(Math.ceil(whole.size / WG)),
  });
}

/** concatLastRaw with gradients: the backward pass is one split kernel that hands each part its piece. */
export const concatLast = (parts: tf.Tensor[]): tf.Tensor => {
  const widths = parts.map((p) => p.shape[p.shape.length - 1]!);
  const op = tf.customGrad((...args: Array<tf.Tensor | tf.GradSaveFunc>) => {
    const inputs = args.slice(0, -1) as tf.Tensor[];
    return { value: concatLastRaw(inputs), gradFunc: (dy: tf.Tensor) => splitLast(dy, widths) };
  });
  return op(...parts);
};

/**
 * Weights [out_i, in] stacked along their rows into one [Σout, in] matrix: the whole buffers laid end to end,
 * which is the last-axis concatenation of the weights seen as [1, out_i·in].
 */
export function stackRows(weights: tf.Tensor[], differentiable: boolean): tf.Tensor {
  const inDim = weights[0]!.shape[1]!;
  for (const w of weights) if (w.rank !== 2 || w.shape[1] !== inDim) throw new Error(`stackRows: weights must be [out, ${inDim}], got [${w.shape.join(', ')}]`);
  const rows = weights.reduce((a, w) => a + w.shape[0]!, 0);
  return tf.tidy(() => {
    const flat = weights.map((w) => tf.reshape(w, [1, w.size]));
    return tf.reshape(differentiable ? concatLast(flat) : concatLastRaw(flat), [rows, inDim]);
  });
}

// x·Wᵀ for a few rows of x (decoding: one token per row), split along K so the weights stream through every core of the GPU.
import * as tf from '@tensorflow/tfjs-core';
import { PackedBf16, UNPACK4, type WeightTensor } from './bf16.ts';
import { bindings, grid, FLAT_WORKGROUP, recordingGradients, runToTensors } from './engine.ts';

/** Most rows of x a product takes here; more rows are a GEMM's work (matmul.ts). */
export const MATVEC_MAX_ROWS = 16;

/** Whether a product of `rows` rows goes here: few enough rows, and no gradient being taken (this one has none). */
export function takesMatVec(rows: number): boolean {
  return rows <= MATVEC_MAX_ROWS && !recordingGradients();
}
/** Output columns per workgroup, and invocations sharing one column's K. */
const COLS = 8;
const LANES = 32;
/** Rows accumulated at once (registers per invocation); more rows re-read the workgroup's weights from cache. */
const ROWS_AT_ONCE = 8;

/**
 * A workgroup of 256 invocations computes 8 output columns for every row: 32 invocations per column stride along K
 * (consecutive vec4s of the weight row, coalesced) and a tree in workgroup memory sums their partials. The decode
 * projections of a 7B model (K up to 14,336, N from 4,096 to 32,001) thus run on N/8 workgroups, where a GEMM tile
 * of 64 columns gives the GPU N/64 long serial loops. With several weights (q, k, v) their rows follow one another as
 * the output's columns: one kernel where each would be a product and their outputs a concatenation.
 */
function matVecWgsl(vec: boolean, swiglu: boolean, packed: boolean[]): string {
  const weights = packed.length;
  const t = vec ? 'vec4<f32>' as const : 'f32' as const;
  const threads = COLS * LANES;
  // With SwiGLU, x holds gate then up ([M, 2K]) and the product's input is silu(gate)·up, as swiglu.ts computes it.
  const load = swiglu
    ? `let g = x[r * 2u * params.k + kk];
  return (g * (1.0 / (1.0 + exp(-g)))) * x[r * 2u * params.k + params.k + kk];`
    : 'return x[r * params.k + kk];';
  const names = Array.from({ length: weights }, (_, i) => `w${i}`);
  // Output column col is row col − end(i − 1) of weight i, where end(i) is the columns of weights 0..i (params.endI).
  const ends = names.slice(0, -1).map((_, i): [string, 'u32'] => [`end${i}`, 'u32']);
  const pick = names.map((w, i) => {
    const row = i === 0 ? 'col' : `(col - params.end${i - 1})`;
    // A packed weight's row of k vec4s is k pairs of words.
    const read = packed[i] ? `return unpack4(${w}[${row} * params.k + kk]);` : `return ${w}[${row} * params.k + kk];`;
    return i < weights - 1 ? `if (col < params.end${i}) { ${read} }` : read;
  });
  return `
${bindings([['y', 'f32']], [['x', t], ...names.map((w, i): [string, typeof t | 'vec2<u32>'] => [w, packed[i] ? 'vec2<u32>' : t])], [['m', 'u32'], ['n', 'u32'], ['k', 'u32'], ...ends])}
${packed.some((p) => p) ? UNPACK4 : ''}
fn weight(col: u32, kk: u32) -> ${t} {
  ${pick.join('\n  ')}
}
var<workgroup> red: array<f32, ${ROWS_AT_ONCE * threads}>;
fn input(r: u32, kk: u32) -> ${t} {
  ${load}
}
@compute @workgroup_size(${threads})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let col = (${FLAT_WORKGROUP}) * ${COLS}u + lid / ${LANES}u;
  let lane = lid % ${LANES}u;
  let live = col < params.n;
  for (var r0 = 0u; r0 < params.m; r0 = r0 + ${ROWS_AT_ONCE}u) {
    var acc: array<f32, ${ROWS_AT_ONCE}>;
    for (var r = 0u; r < ${ROWS_AT_ONCE}u; r = r + 1u) { acc[r] = 0.0; }
    if (live) {
      for (var kk = lane; kk < params.k; kk = kk + ${LANES}u) {
        let wv = weight(col, kk);
        for (var r = 0u; r < ${ROWS_AT_ONCE}u; r = r + 1u) {
          if (r0 + r < params.m) { acc[r] = acc[r] + ${vec ? 'dot(input(r0 + r, kk), wv)' : 'input(r0 + r, kk) * wv'}; }
        }
      }
    }
    for (var r = 0u; r < ${ROWS_AT_ONCE}u; r = r + 1u) { red[r * ${threads}u + lid] = acc[r]; }
    workgroupBarrier();
    for (var s = ${LANES / 2}u; s > 0u; s = s >> 1u) {
      if (lane < s) {
        for (var r = 0u; r < ${ROWS_AT_ONCE}u; r = r + 1u) { red[r * ${threads}u + lid] = red[r * ${threads}u + lid] + red[r * ${threads}u + lid + s]; }
      }
      workgroupBarrier();
    }
    if (live && lane == 0u) {
      for (var r = 0u; r < ${ROWS_AT_ONCE}u; r = r + 1u) {
        if (r0 + r < params.m) { y[(r0 + r) * params.n + col] = red[r * ${threads}u + lid]; }
      }
    }
    workgroupBarrier();
  }
}`;
}

/** x [M, K] · w [N, K]ᵀ → [M, N] for M ≤ MATVEC_MAX_ROWS; not differentiable (decoding and evaluation only). */
export function matVec(x: tf.Tensor2D, w: WeightTensor): tf.Tensor2D {
  return product(x, [w], false);
}

/**
 * x [M, K] times each weight [Nᵢ, K]ᵀ, the outputs side by side → [M, ΣNᵢ], in one kernel: a decode step's q|k|v
 * or gate|up where the weights are not stacked into one matrix (a model too large to keep stacked copies). At most
 * MATVEC_MAX_WEIGHTS weights; not differentiable.
 */
export function matVecConcat(x: tf.Tensor2D, weights: WeightTensor[]): tf.Tensor2D {
  if (weights.length < 1 || weights.length > MATVEC_MAX_WEIGHTS) throw new Error(`matvec: ${weights.length} weights, 1 to ${MATVEC_MAX_WEIGHTS}`);
  return product(x, weights, false);
}

/** Weights one product reads side by side (q, k, v): with x, y and the uniforms within WebGPU's 8 storage buffers. */
export const MATVEC_MAX_WEIGHTS = 3;

/**
 * silu(gate)·up of gu [M, 2K] (gate then up, the fused gate|up projection) times w [N, K]ᵀ → [M, N] in one kernel:
 * SwiGLU and down_proj of a decode step. Not differentiable.
 */
export function matVecSwiglu(gu: tf.Tensor2D, w: WeightTensor): tf.Tensor2D {
  return product(gu, [w], true);
}

function product(x: tf.Tensor2D, weights: WeightTensor[], swiglu: boolean): tf.Tensor2D {
  const [m, width] = x.shape;
  const k = swiglu ? width / 2 : width;
  for (const w of weights) {
    if (w.shape[1] !== k) throw new Error(`matvec: inner sizes differ: [${x.shape.join(', ')}]${swiglu ? ' (gate|up)' : ''} · [${w.shape.join(', ')}]ᵀ`);
  }
  if (m > MATVEC_MAX_ROWS) throw new Error(`matvec: ${m} rows, at most ${MATVEC_MAX_ROWS}`);
  const vec = k % 4 === 0;
  const packed = weights.map((w) => w instanceof PackedBf16);
  // Packed weights have rows of whole vec4s (bf16.ts's packable).
  if (!vec && packed.some((p) => p)) throw new Error(`matvec: a packed weight needs K a multiple of 4, got ${k}`);
  // The output column where each weight's rows end (the kernel needs all but the last's).
  const ends: number[] = [];
  let n = 0;
  for (const w of weights) ends.push((n += w.shape[0]));
  const [y] = runToTensors({
    key: `matvec-${vec ? 'vec4' : 'scalar'}${swiglu ? '-swiglu' : ''}${weights.length > 1 ? `-w${weights.length}` : ''}${packed.some((p) => p) ? `-bf16${packed.map(Number).join('')}` : ''}`,
    wgsl: () => matVecWgsl(vec, swiglu, packed),
    inputs: [x, ...weights.map((w) => (w instanceof PackedBf16 ? w.words : w))],
    outputs: [{ shape: [m, n], dtype: 'float32' }],
    uniforms: [m, n, vec ? k / 4 : k, ...ends.slice(0, -1)].map((u) => ({ u32: u })),
    workgroups: grid(Math.ceil(n / COLS)),
  });
  return y as tf.Tensor2D;
}

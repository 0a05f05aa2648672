// RMSNorm with the residual add fused in, forward and backward, as registered tfjs kernels with lazy gradients.
import * as tf from '@tensorflow/tfjs-core';
import { bindings, grid, perRowMain, run, runToTensors } from './engine.ts';
import { reductions } from './wgsl.ts';

const NORM = 'PausepipeRmsNorm';
const ADD_NORM = 'PausepipeAddRmsNorm';

/** Invocations per row: enough to cover a row in a few strides without idling most of them on narrow models. */
function rowThreads(cols: number): number {
  return cols >= 1024 ? 256 : 64;
}

/**
 * Forward: s = x (+ d); r = 1/sqrt(mean(s²) + eps); h = s·r·w. One workgroup per row. Outputs h and r, and then s
 * when a residual `d` is added and the sum is wanted downstream (r stays second so the gradient config can save it).
 */
function forwardWgsl(wg: number, add: boolean, emitSum: boolean): string {
  const outs: Array<[string, 'f32']> = [['h', 'f32'], ['r', 'f32'], ...(emitSum ? [['s', 'f32'] as [string, 'f32']] : [])];
  const ins: Array<[string, 'f32']> = [['x', 'f32'], ...(add ? [['d', 'f32'] as [string, 'f32']] : []), ['w', 'f32']];
  const value = add ? 'x[base + c] + d[base + c]' : 'x[base + c]';
  return `
${bindings(outs, ins, [['rows', 'u32'], ['cols', 'u32'], ['eps', 'f32']])}
${reductions(wg)}
${perRowMain(wg)}
  let base = row * params.cols;
  var ss = 0.0;
  for (var c = lid; c < params.cols; c = c + ${wg}u) {
    let v = ${value};
    ${emitSum ? 's[base + c] = v;' : ''}
    ss = ss + v * v;
  }
  let rr = inverseSqrt(sumAll(lid, ss) / f32(params.cols) + params.eps);
  for (var c = lid; c < params.cols; c = c + ${wg}u) {
    let v = ${value};
    h[base + c] = (v * rr) * w[c];
  }
  if (lid == 0u) { r[row] = rr; }
}`;
}

/** dx = r·(g − xn·mean(g·xn)) (+ ds) with g = dh·w, xn = s·r and s = x (+ d); one workgroup per row. */
function backwardXWgsl(wg: number, add: boolean, withResidual: boolean): string {
  const ins: Array<[string, 'f32']> = [['dh', 'f32'], ['x', 'f32'], ...(add ? [['d', 'f32'] as [string, 'f32']] : []), ['w', 'f32'], ['r', 'f32'],
    ...(withResidual ? [['ds', 'f32'] as [string, 'f32']] : [])];
  const value = add ? '(x[base + c] + d[base + c])' : 'x[base + c]';
  return `
${bindings([['dx', 'f32']], ins, [['rows', 'u32'], ['cols', 'u32']])}
${reductions(wg)}
${perRowMain(wg)}
  let base = row * params.cols;
  let rr = r[row];
  var dot = 0.0;
  for (var c = lid; c < params.cols; c = c + ${wg}u) {
    dot = dot + (dh[base + c] * w[c]) * (${value} * rr);
  }
  let proj = sumAll(lid, dot) / f32(params.cols);
  for (var c = lid; c < params.cols; c = c + ${wg}u) {
    let xn = ${value} * rr;
    dx[base + c] = (dh[base + c] * w[c] - xn * proj) * rr${withResidual ? ' + ds[base + c]' : ''};
  }
}`;
}

const DW_COLS = 16;
const DW_LANES = 16;

/** dw[c] = Σ_rows dh·s·r: each workgroup owns 16 columns, its 16 lanes stride over the rows, then add up. */
function backwardWWgsl(add: boolean): string {
  const ins: Array<[string, 'f32']> = [['dh', 'f32'], ['x', 'f32'], ...(add ? [['d', 'f32'] as [string, 'f32']] : []), ['r', 'f32']];
  const value = add ? '(x[i] + d[i])' : 'x[i]';
  return `
${bindings([['dw', 'f32']], ins, [['rows', 'u32'], ['cols', 'u32']])}
var<workgroup> part: array<f32, ${DW_COLS * DW_LANES}>;
@compute @workgroup_size(${DW_COLS * DW_LANES})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let col = wid.x * ${DW_COLS}u + lid % ${DW_COLS}u;
  let lane = lid / ${DW_COLS}u;
  var acc = 0.0;
  if (col < params.cols) {
    for (var n = lane; n < params.rows; n = n + ${DW_LANES}u) {
      let i = n * params.cols + col;
      acc = acc + dh[i] * (${value} * r[n]);
    }
  }
  part[lid] = acc;
  workgroupBarrier();
  if (lane == 0u && col < params.cols) {
    var total = 0.0;
    for (var l = 0u; l < ${DW_LANES}u; l = l + 1u) { total = total + part[l * ${DW_COLS}u + lid]; }
    dw[col] = total;
  }
}`;
}

interface NormAttrs {
  eps: number;
  /** Whether the sum x + d is an output (it is the next residual stream; the last norm of a model needs none). */
  emitSum: boolean;
}

function dims(x: tf.TensorInfo): { rows: number; cols: number } {
  const cols = x.shape[x.shape.length - 1]!;
  return { rows: x.shape.reduce((a, b) => a * b, 1) / cols, cols };
}

function forwardKernel(add: boolean): tf.KernelFunc {
  return ({ inputs, attrs }) => {
    const { eps, emitSum } = attrs as unknown as NormAttrs;
    const x = inputs.x!;
    const { rows, cols } = dims(x);
    const wg = rowThreads(cols);
    const sum = add && emitSum;
    const outs: Array<{ shape: number[]; dtype: 'float32' }> = [{ shape: x.shape, dtype: 'float32' }, { shape: [rows], dtype: 'float32' }];
    if (sum) outs.push({ shape: x.shape, dtype: 'float32' });
    return run({
      key: `rmsnorm-${wg}-${add}-${sum}`,
      wgsl: () => forwardWgsl(wg, add, sum),
      inputs: add ? [x, inputs.d!, inputs.w!] : [x, inputs.w!],
      outputs: outs,
      uniforms: [{ u32: rows }, { u32: cols }, { f32: eps }],
      workgroups: grid(rows),
    });
  };
}

/** dx of the normalised input s = x (+ d), plus `ds` when the sum itself also had a gradient. */
function normBackwardX(dh: tf.Tensor, x: tf.Tensor, d: tf.Tensor | null, w: tf.Tensor, r: tf.Tensor, ds: tf.Tensor | null): tf.Tensor {
  const { rows, cols } = dims(x);
  const wg = rowThreads(cols);
  return runToTensors({
    key: `rmsnorm-dx-${wg}-${d !== null}-${ds !== null}`,
    wgsl: () => backwardXWgsl(wg, d !== null, ds !== null),
    inputs: [dh, x, ...(d ? [d] : []), w, r, ...(ds ? [ds] : [])],
    outputs: [{ shape: x.shape, dtype: 'float32' }],
    uniforms: [{ u32: rows }, { u32: cols }],
    workgroups: grid(rows),
  })[0]!;
}

function normBackwardW(dh: tf.Tensor, x: tf.Tensor, d: tf.Tensor | null, r: tf.Tensor): tf.Tensor {
  const { rows, cols } = dims(x);
  return runToTensors({
    key: `rmsnorm-dw-${d !== null}`,
    wgsl: () => backwardWWgsl(d !== null),
    inputs: [dh, x, ...(d ? [d] : []), r],
    outputs: [{ shape: [cols], dtype: 'float32' }],
    uniforms: [{ u32: rows }, { u32: cols }],
    workgroups: [Math.ceil(cols / DW_COLS), 1, 1],
  })[0]!;
}

tf.registerKernel({ kernelName: NORM, backendName: 'webgpu', kernelFunc: forwardKernel(false) });
tf.registerKernel({ kernelName: ADD_NORM, backendName: 'webgpu', kernelFunc: forwardKernel(true) });

tf.registerGradient({
  kernelName: NORM,
  inputsToSave: ['x', 'w'],
  outputsToSave: [false, true],
  gradFunc: (dys, saved) => {
    const [dh] = dys as tf.Tensor[];
    const [x, w, r] = saved as [tf.Tensor, tf.Tensor, tf.Tensor];
    return { x: () => normBackwardX(dh!, x, null, w, r, null), w: () => normBackwardW(dh!, x, null, r) };
  },
});

tf.registerGradient({
  kernelName: ADD_NORM,
  inputsToSave: ['x', 'd', 'w'],
  outputsToSave: [false, true, false],
  gradFunc: (dys, saved, attrs) => {
    const { emitSum } = attrs as unknown as NormAttrs;
    const list = dys as tf.Tensor[];
    const [x, d, w, r] = saved as [tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor];
    const dh = list[0]!;
    const ds = emitSum ? list[2]! : null;
    // x and d share one gradient: computed once, the second caller gets a clone (which runs no kernel).
    let shared: tf.Tensor | null = null;
    const dsum = () => {
      if (shared && !shared.isDisposed) return tf.clone(shared);
      shared = normBackwardX(dh, x, d, w, r, ds);
      return shared;
    };
    return { x: dsum, d: dsum, w: () => normBackwardW(dh, x, d, r) };
  },
});

/** HF LlamaRMSNorm of x [..., H] with weight [H]: one kernel. */
export function rmsNorm(x: tf.Tensor, w: tf.Tensor, eps: number): tf.Tensor {
  const [h] = tf.engine().runKernel(NORM, { x, w }, { eps, emitSum: false } as unknown as tf.NamedAttrMap) as tf.Tensor[];
  return h!;
}

/** The residual stream's next value s = x + d and its norm, in one kernel. */
export function addRmsNorm(x: tf.Tensor, d: tf.Tensor, w: tf.Tensor, eps: number): { sum: tf.Tensor; normed: tf.Tensor } {
  const [normed, , sum] = tf.engine().runKernel(ADD_NORM, { x, d, w }, { eps, emitSum: true } as unknown as tf.NamedAttrMap) as tf.Tensor[];
  return { sum: sum!, normed: normed! };
}

/** The norm of x + d when the sum itself is not needed (the model's final norm). */
export function addRmsNormOnly(x: tf.Tensor, d: tf.Tensor, w: tf.Tensor, eps: number): tf.Tensor {
  const [normed] = tf.engine().runKernel(ADD_NORM, { x, d, w }, { eps, emitSum: false } as unknown as tf.NamedAttrMap) as tf.Tensor[];
  return normed!;
}

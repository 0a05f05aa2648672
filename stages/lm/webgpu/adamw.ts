// AdamW with global-norm clipping over every trainable weight at once: three dispatches per update, whatever the number of weights.
import * as tf from '@tensorflow/tfjs-core';
import { bindings, clearBuffer, copyBuffer, emptyTensor, FLAT_WORKGROUP, grid, runToTensors } from './engine.ts';
import { BF16_ROUND } from './wgsl.ts';

const WG = 256;
/** Workgroups of the squared-norm pass: enough to fill a large GPU, few enough for one workgroup to add up. */
const PARTIALS = 1024;

export interface AdamWUpdate {
  /** The weights in order, each with its gradient (absent: a zero gradient, as torch gives an unused weight). */
  slots: Array<{ variable: tf.Variable; grad: tf.Tensor | undefined }>;
  /** First and second moments of all weights laid end to end, [Σ sizes]; replaced by the update. */
  expAvg: tf.Variable;
  expAvgSq: tf.Variable;
  lr: number;
  beta1: number;
  beta2: number;
  eps: number;
  weightDecay: number;
  /** clip_grad_norm_'s max_norm, or null for no clipping. */
  maxGradNorm: number | null;
  /** Updates done including this one (torch's state['step']). */
  step: number;
  /**
   * Round the new weights and both moments to bfloat16 (round to nearest even), for pure-bf16 training as the
   * reference's bf16 configs do; the values stay stored in float32 buffers.
   */
  bf16: boolean;
}

function partialsWgsl(): string {
  return `
${bindings([['partials', 'f32']], [['g', 'f32']], [['total', 'u32']])}
var<workgroup> red: array<f32, ${WG}>;
@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  var acc = 0.0;
  for (var i = wid.x * ${WG}u + lid; i < params.total; i = i + ${PARTIALS * WG}u) { acc = acc + g[i] * g[i]; }
  red[lid] = acc;
  workgroupBarrier();
  for (var s = ${WG / 2}u; s > 0u; s = s >> 1u) {
    if (lid < s) { red[lid] = red[lid] + red[lid + s]; }
    workgroupBarrier();
  }
  if (lid == 0u) { partials[wid.x] = red[0]; }
}`;
}

function normWgsl(): string {
  return `
${bindings([['norm', 'f32']], [['partials', 'f32']])}
var<workgroup> red: array<f32, ${WG}>;
@compute @workgroup_size(${WG})
fn main(@builtin(local_invocation_index) lid: u32) {
  var acc = 0.0;
  for (var i = lid; i < ${PARTIALS}u; i = i + ${WG}u) { acc = acc + partials[i]; }
  red[lid] = acc;
  workgroupBarrier();
  for (var s = ${WG / 2}u; s > 0u; s = s >> 1u) {
    if (lid < s) { red[lid] = red[lid] + red[lid + s]; }
    workgroupBarrier();
  }
  if (lid == 0u) { norm[0] = sqrt(red[0]); }
}`;
}

/** torch.optim.AdamW's update in its own operation order (see optimizer.ts), after clip_grad_norm_'s scaling. */
function updateWgsl(): string {
  return `
${bindings([['pOut', 'f32'], ['mOut', 'f32'], ['vOut', 'f32']], [['g', 'f32'], ['p', 'f32'], ['m', 'f32'], ['v', 'f32'], ['norm', 'f32']], [
    ['total', 'u32'], ['clip', 'u32'], ['maxNorm', 'f32'], ['decay', 'f32'], ['oneMinusBeta1', 'f32'], ['beta2', 'f32'],
    ['oneMinusBeta2', 'f32'], ['bc2Sqrt', 'f32'], ['eps', 'f32'], ['stepSize', 'f32'], ['bf16', 'u32']])}
${BF16_ROUND}
fn store(x: f32) -> f32 { return select(x, roundBf16(x), params.bf16 != 0u); }
@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let i = (${FLAT_WORKGROUP}) * ${WG}u + lid;
  if (i >= params.total) { return; }
  var grad = g[i];
  if (params.clip != 0u) { grad = grad * min(params.maxNorm / (norm[0] + 1e-6), 1.0); }
  let w = p[i] * params.decay;
  let mm = m[i] + (grad - m[i]) * params.oneMinusBeta1;
  let vv = v[i] * params.beta2 + (grad * grad) * params.oneMinusBeta2;
  let denom = sqrt(vv) / params.bc2Sqrt + params.eps;
  pOut[i] = store(w - (mm / denom) * params.stepSize);
  mOut[i] = store(mm);
  vOut[i] = store(vv);
}`;
}

/**
 * One AdamW update on the GPU: the gradients and weights are copied end to end into flat buffers (copies, not
 * kernels), one pass of partial squared sums and one of their total give the norm, one kernel updates weights and
 * moments, and each weight gets its slice of the result back by a copy. Returns the gradient norm before clipping.
 */
export function adamwStep(u: AdamWUpdate): tf.Scalar {
  const total = u.slots.reduce((a, s) => a + s.variable.size, 0);
  if (u.expAvg.size !== total || u.expAvgSq.size !== total) throw new Error(`adamw: moments hold ${u.expAvg.size} values for ${total} weights`);
  const g = emptyTensor([total], 'float32');
  const p = emptyTensor([total], 'float32');
  let at = 0;
  for (const { variable, grad } of u.slots) {
    if (grad) copyBuffer(grad, 0, g, at, variable.size);
    else clearBuffer(g, at, variable.size);
    copyBuffer(variable, 0, p, at, variable.size);
    at += variable.size;
  }
  const [partials] = runToTensors({
    key: 'adamw-partials',
    wgsl: partialsWgsl,
    inputs: [g],
    outputs: [{ shape: [PARTIALS], dtype: 'float32' }],
    uniforms: [{ u32: total }],
    workgroups: [PARTIALS, 1, 1],
  });
  const [norm] = runToTensors({ key: 'adamw-norm', wgsl: normWgsl, inputs: [partials!], outputs: [{ shape: [1], dtype: 'float32' }], workgroups: [1, 1, 1] });
  const t = u.step;
  const [pNew, mNew, vNew] = runToTensors({
    key: 'adamw-update',
    wgsl: updateWgsl,
    inputs: [g, p, u.expAvg, u.expAvgSq, norm!],
    outputs: [{ shape: [total], dtype: 'float32' }, { shape: [total], dtype: 'float32' }, { shape: [total], dtype: 'float32' }],
    uniforms: [
      { u32: total }, { u32: u.maxGradNorm === null ? 0 : 1 }, { f32: u.maxGradNorm ?? 0 }, { f32: u.weightDecay === 0 ? 1 : 1 - u.lr * u.weightDecay },
      { f32: 1 - u.beta1 }, { f32: u.beta2 }, { f32: 1 - u.beta2 }, { f32: Math.sqrt(1 - u.beta2 ** t) }, { f32: u.eps },
      { f32: u.lr / (1 - u.beta1 ** t) }, { u32: u.bf16 ? 1 : 0 },
    ],
    workgroups: grid(Math.ceil(total / WG)),
  });
  at = 0;
  for (const { variable } of u.slots) {
    const fresh = emptyTensor(variable.shape, 'float32');
    copyBuffer(pNew!, at, fresh, 0, variable.size);
    variable.assign(fresh);
    fresh.dispose();
    at += variable.size;
  }
  u.expAvg.assign(mNew!);
  u.expAvgSq.assign(vNew!);
  tf.dispose([g, p, partials!, pNew!, mNew!, vNew!]);
  const out = tf.reshape(norm!, []) as tf.Scalar;
  norm!.dispose();
  return out;
}

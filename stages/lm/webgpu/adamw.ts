// AdamW with torch's clip_grad_norm_ over every trainable weight at once, float32 or pure bfloat16 per weight: three dispatches per update, whatever the number of weights.
import * as tf from '@tensorflow/tfjs-core';
import { bindings, clearBuffer, copyBuffer, emptyTensor, FLAT_WORKGROUP, grid, run, runToTensors } from './engine.ts';
import { BF16_ROUND } from './wgsl.ts';

const WG = 256;
/** Elements per chunk: a workgroup's share of the norm and of the update. A chunk never spans two weights. */
const CHUNK = 8 * WG;

/** A weight the update covers, and whether it is stored in bfloat16. */
export interface AdamWWeight {
  variable: tf.Variable;
  /**
   * Stored in bfloat16: its gradient, moments and new values are rounded to bfloat16 wherever optimizer.ts's
   * `toStorage` rounds them (torch's pure-bf16 training), in float32 buffers.
   */
  bf16: boolean;
}

export interface AdamWUpdate {
  /** Each weight's gradient, in the weights' order (absent: a zero gradient, as torch gives an unused weight). */
  grads: Array<tf.Tensor | undefined>;
  /** First and second moments of all weights laid end to end, [Σ sizes]; updated in place. */
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
}

/** WGSL reading the chunk table (needs `chunkTable` bound and `params.chunks`, `params.slots`). */
const CHUNK_TABLE_FNS = `
fn chunkStart(c: u32) -> u32 { return u32(chunkTable[c]); }
fn slotOfChunk(c: u32) -> u32 { return u32(chunkTable[params.chunks + 1u + c]); }
fn firstChunk(s: u32) -> u32 { return u32(chunkTable[2u * params.chunks + 1u + s]); }
fn slotBf16(s: u32) -> bool { return chunkTable[2u * params.chunks + params.slots + 2u + s] != 0; }`;

/** Per chunk: the sum of its squared gradients (bfloat16 weights' gradients rounded first, as their .grad holds them). */
function partialsWgsl(): string {
  return `
${bindings([['partials', 'f32']], [['g', 'f32'], ['chunkTable', 'i32']], [['chunks', 'u32'], ['slots', 'u32']])}
${BF16_ROUND}
${CHUNK_TABLE_FNS}
var<workgroup> red: array<f32, ${WG}>;
@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let c = ${FLAT_WORKGROUP};
  var acc = 0.0;
  if (c < params.chunks) {
    let bf = slotBf16(slotOfChunk(c));
    for (var i = chunkStart(c) + lid; i < chunkStart(c + 1u); i = i + ${WG}u) {
      let gi = select(g[i], roundBf16(g[i]), bf);
      acc = acc + gi * gi;
    }
  }
  red[lid] = acc;
  workgroupBarrier();
  for (var s = ${WG / 2}u; s > 0u; s = s >> 1u) {
    if (lid < s) { red[lid] = red[lid] + red[lid + s]; }
    workgroupBarrier();
  }
  if (lid == 0u && c < params.chunks) { partials[c] = red[0]; }
}`;
}

/**
 * clip_grad_norm_ as torch computes it (optimizer.ts's gradNorm): each weight's norm in its own precision, then the
 * norm of those norms (bfloat16 only when every weight is), and the clipping coefficient min(1, max / (norm + 1e-6))
 * in the norm's precision. One workgroup: an invocation per weight, then one adds the weights' squares in order.
 */
function normWgsl(): string {
  return `
${bindings([['norm', 'f32'], ['coef', 'f32'], ['slotNorms', 'f32']], [['partials', 'f32'], ['chunkTable', 'i32']], [
    ['chunks', 'u32'], ['slots', 'u32'], ['clip', 'u32'], ['maxNorm', 'f32'], ['allBf16', 'u32']])}
${BF16_ROUND}
${CHUNK_TABLE_FNS}
@compute @workgroup_size(${WG})
fn main(@builtin(local_invocation_index) lid: u32) {
  for (var s = lid; s < params.slots; s = s + ${WG}u) {
    var acc = 0.0;
    for (var c = firstChunk(s); c < firstChunk(s + 1u); c = c + 1u) { acc = acc + partials[c]; }
    let n = sqrt(acc);
    slotNorms[s] = select(n, roundBf16(n), slotBf16(s));
  }
  storageBarrier();
  if (lid != 0u) { return; }
  var sq = 0.0;
  for (var s = 0u; s < params.slots; s = s + 1u) { sq = sq + slotNorms[s] * slotNorms[s]; }
  let bf = params.allBf16 != 0u;
  let total = select(sqrt(sq), roundBf16(sqrt(sq)), bf);
  norm[0] = total;
  let shifted = select(total + 1e-6, roundBf16(total + 1e-6), bf);
  let scale = select(params.maxNorm / shifted, roundBf16(params.maxNorm / shifted), bf);
  coef[0] = select(1.0, min(scale, 1.0), params.clip != 0u);
}`;
}

/** torch.optim.AdamW's update in optimizer.ts's operation order and rounding points, in place on p, m and v. */
function updateWgsl(): string {
  return `
${bindings([['p', 'f32'], ['m', 'f32'], ['v', 'f32']], [['g', 'f32'], ['coef', 'f32'], ['chunkTable', 'i32']], [
    ['chunks', 'u32'], ['slots', 'u32'], ['clip', 'u32'], ['decay', 'f32'], ['oneMinusBeta1', 'f32'], ['beta2', 'f32'],
    ['oneMinusBeta2', 'f32'], ['bc2Sqrt', 'f32'], ['eps', 'f32'], ['stepSize', 'f32']])}
${BF16_ROUND}
${CHUNK_TABLE_FNS}
@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let c = ${FLAT_WORKGROUP};
  if (c >= params.chunks) { return; }
  let bf = slotBf16(slotOfChunk(c));
  for (var i = chunkStart(c) + lid; i < chunkStart(c + 1u); i = i + ${WG}u) {
    var grad = select(g[i], roundBf16(g[i]), bf);
    if (params.clip != 0u) { grad = store(grad * coef[0], bf); }
    let w = store(p[i] * params.decay, bf);
    let mm = store(m[i] + (grad - m[i]) * params.oneMinusBeta1, bf);
    let vv = store(store(v[i] * params.beta2, bf) + (grad * grad) * params.oneMinusBeta2, bf);
    let denom = store(store(store(sqrt(vv), bf) / params.bc2Sqrt, bf) + params.eps, bf);
    p[i] = store(w - (mm / denom) * params.stepSize, bf);
    m[i] = mm;
    v[i] = vv;
  }
}
fn store(x: f32, bf: bool) -> f32 { return select(x, roundBf16(x), bf); }`;
}

/**
 * AdamW over a fixed list of weights. The chunk table (int32, uploaded once): chunk starts (nChunks + 1 element
 * offsets), each chunk's weight, each weight's first chunk (nSlots + 1), each weight's bfloat16 flag.
 */
export class FlatAdamW {
  private readonly table: tf.Tensor;
  private readonly chunks: number;
  private readonly total: number;

  constructor(private readonly weights: AdamWWeight[]) {
    const starts: number[] = [];
    const slotOf: number[] = [];
    const firstChunk: number[] = [];
    let at = 0;
    weights.forEach(({ variable }, s) => {
      firstChunk.push(starts.length);
      for (let c = 0; c < variable.size; c += CHUNK) {
        starts.push(at + c);
        slotOf.push(s);
      }
      at += variable.size;
    });
    firstChunk.push(starts.length);
    this.chunks = starts.length;
    this.total = at;
    starts.push(at);
    this.table = tf.tensor1d(Int32Array.from([...starts, ...slotOf, ...firstChunk, ...weights.map((w) => Number(w.bf16))]), 'int32');
  }

  /**
   * One update: the gradients and weights are copied end to end into flat buffers (copies, not kernels), one pass of
   * per-chunk squared sums and one of the per-weight and total norms give the clipping, one kernel updates weights
   * and moments in place, and each weight gets its slice back by a copy. Returns the gradient norm before clipping.
   */
  apply(u: AdamWUpdate): tf.Scalar {
    const { total, weights } = this;
    if (u.expAvg.size !== total || u.expAvgSq.size !== total) throw new Error(`adamw: moments hold ${u.expAvg.size} values for ${total} weights`);
    if (u.grads.length !== weights.length) throw new Error(`adamw: ${u.grads.length} gradients for ${weights.length} weights`);
    const sizes = [{ u32: this.chunks }, { u32: weights.length }];
    const g = emptyTensor([total], 'float32');
    const p = emptyTensor([total], 'float32');
    let at = 0;
    weights.forEach(({ variable }, i) => {
      const grad = u.grads[i];
      if (grad) copyBuffer(grad, 0, g, at, variable.size);
      else clearBuffer(g, at, variable.size);
      copyBuffer(variable, 0, p, at, variable.size);
      at += variable.size;
    });
    const [partials] = runToTensors({
      key: 'adamw-partials',
      wgsl: partialsWgsl,
      inputs: [g, this.table],
      outputs: [{ shape: [this.chunks], dtype: 'float32' }],
      uniforms: sizes,
      workgroups: grid(this.chunks),
    });
    const clip = u.maxGradNorm === null ? 0 : 1;
    const [norm, coef, slotNorms] = runToTensors({
      key: 'adamw-norm',
      wgsl: normWgsl,
      inputs: [partials!, this.table],
      outputs: [{ shape: [1], dtype: 'float32' }, { shape: [1], dtype: 'float32' }, { shape: [weights.length], dtype: 'float32' }],
      uniforms: [...sizes, { u32: clip }, { f32: u.maxGradNorm ?? 0 }, { u32: weights.every((w) => w.bf16) ? 1 : 0 }],
      workgroups: [1, 1, 1],
    });
    const t = u.step;
    run({
      key: 'adamw-update',
      wgsl: updateWgsl,
      inputs: [g, coef!, this.table],
      outputs: [{ into: p }, { into: u.expAvg }, { into: u.expAvgSq }],
      uniforms: [
        ...sizes, { u32: clip }, { f32: u.weightDecay === 0 ? 1 : 1 - u.lr * u.weightDecay },
        { f32: 1 - u.beta1 }, { f32: u.beta2 }, { f32: 1 - u.beta2 }, { f32: Math.sqrt(1 - u.beta2 ** t) }, { f32: u.eps },
        { f32: u.lr / (1 - u.beta1 ** t) },
      ],
      workgroups: grid(this.chunks),
    });
    at = 0;
    for (const { variable } of weights) {
      const fresh = emptyTensor(variable.shape, 'float32');
      copyBuffer(p, at, fresh, 0, variable.size);
      variable.assign(fresh);
      fresh.dispose();
      at += variable.size;
    }
    tf.dispose([g, p, partials!, coef!, slotNorms!]);
    const out = tf.reshape(norm!, []) as tf.Scalar;
    norm!.dispose();
    return out;
  }

  dispose(): void {
    this.table.dispose();
  }
}

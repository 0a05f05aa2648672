// The next token of every row chosen on the GPU from its log-probs: greedy argmax, or a draw from softmax(log-probs / T) with host-made uniforms.
import * as tf from '@tensorflow/tfjs-core';
import { bindings, grid, perRowMain, runToTensors } from './engine.ts';

const THREADS = 256;

/** argmax per row, the lowest index among equal maxima (as tf.argMax). */
function greedyWgsl(): string {
  return `
${bindings([['ids', 'i32']], [['x', 'f32']], [['rows', 'u32'], ['width', 'u32']])}
var<workgroup> bestV: array<f32, ${THREADS}>;
var<workgroup> bestI: array<u32, ${THREADS}>;
${perRowMain(THREADS)}
  let base = row * params.width;
  var v = -3.4e38;
  var i = 0xffffffffu;
  for (var c = lid; c < params.width; c = c + ${THREADS}u) {
    let y = x[base + c];
    if (y > v || i == 0xffffffffu) { v = y; i = c; }
  }
  bestV[lid] = v;
  bestI[lid] = i;
  workgroupBarrier();
  for (var s = ${THREADS / 2}u; s > 0u; s = s >> 1u) {
    if (lid < s) {
      let ov = bestV[lid + s];
      let oi = bestI[lid + s];
      if (oi != 0xffffffffu && (ov > bestV[lid] || (ov == bestV[lid] && oi < bestI[lid]) || bestI[lid] == 0xffffffffu)) {
        bestV[lid] = ov;
        bestI[lid] = oi;
      }
    }
    workgroupBarrier();
  }
  if (lid == 0u) { ids[row] = i32(bestI[0]); }
}`;
}

/**
 * A draw per row: p = softmax(x / temperature); the token is the first whose running sum of p exceeds the row's
 * uniform u, skipping zero probabilities; if rounding leaves the total at or under u, the last possible token.
 * Each invocation sums a contiguous chunk; invocation 0 finds the chunk and walks it.
 */
function sampleWgsl(): string {
  return `
${bindings([['ids', 'i32']], [['x', 'f32'], ['u', 'f32']], [['rows', 'u32'], ['width', 'u32'], ['temperature', 'f32']])}
var<workgroup> red: array<f32, ${THREADS}>;
var<workgroup> part: array<f32, ${THREADS}>;
var<workgroup> lastNz: array<i32, ${THREADS}>;
var<workgroup> bcast: array<f32, 2>;
${perRowMain(THREADS)}
  let base = row * params.width;
  let chunk = (params.width + ${THREADS - 1}u) / ${THREADS}u;
  let lo = min(lid * chunk, params.width);
  let hi = min(lo + chunk, params.width);
  var mx = -3.4e38;
  for (var c = lo; c < hi; c = c + 1u) { mx = max(mx, x[base + c] / params.temperature); }
  red[lid] = mx;
  workgroupBarrier();
  if (lid == 0u) {
    var m = red[0];
    for (var k = 1u; k < ${THREADS}u; k = k + 1u) { m = max(m, red[k]); }
    bcast[0] = m;
  }
  workgroupBarrier();
  let top = bcast[0];
  var sum = 0.0;
  for (var c = lo; c < hi; c = c + 1u) { sum = sum + exp(x[base + c] / params.temperature - top); }
  red[lid] = sum;
  workgroupBarrier();
  if (lid == 0u) {
    var s = 0.0;
    for (var k = 0u; k < ${THREADS}u; k = k + 1u) { s = s + red[k]; }
    bcast[1] = s;
  }
  workgroupBarrier();
  let total = bcast[1];
  var acc = 0.0;
  var last = -1;
  for (var c = lo; c < hi; c = c + 1u) {
    let p = exp(x[base + c] / params.temperature - top) / total;
    if (p > 0.0) { acc = acc + p; last = i32(c); }
  }
  part[lid] = acc;
  lastNz[lid] = last;
  workgroupBarrier();
  if (lid == 0u) {
    let goal = u[row];
    var before = 0.0;
    var pick = -1;
    var fallback = 0;
    for (var k = 0u; k < ${THREADS}u; k = k + 1u) {
      if (lastNz[k] >= 0) { fallback = lastNz[k]; }
      if (pick < 0 && goal < before + part[k]) {
        let klo = min(k * chunk, params.width);
        let khi = min(klo + chunk, params.width);
        var run = before;
        for (var c = klo; c < khi; c = c + 1u) {
          let p = exp(x[base + c] / params.temperature - top) / total;
          if (p > 0.0) {
            run = run + p;
            if (goal < run) { pick = i32(c); break; }
          }
        }
      }
      before = before + part[k];
    }
    ids[row] = select(fallback, pick, pick >= 0);
  }
}`;
}

/**
 * Token ids [B] int32 from log-probs [B, W]: greedy when `uniforms` is null, else one draw per row with that
 * row's uniform in [0, 1) (a tensor where a replayed decode step rewrites them, decode-graph.ts).
 */
export function pickTokens(logProbs: tf.Tensor2D, temperature: number, uniforms: Float32Array | tf.Tensor1D | null): tf.Tensor1D {
  const [rows, width] = logProbs.shape;
  if (uniforms === null) {
    return runToTensors({
      key: 'pick-greedy',
      wgsl: greedyWgsl,
      inputs: [logProbs],
      outputs: [{ shape: [rows], dtype: 'int32' }],
      uniforms: [{ u32: rows }, { u32: width }],
      workgroups: grid(rows),
    })[0] as tf.Tensor1D;
  }
  const draws = uniforms instanceof tf.Tensor ? uniforms.size : uniforms.length;
  if (draws !== rows) throw new Error(`pickTokens: ${draws} uniforms for ${rows} rows`);
  return tf.tidy(() => runToTensors({
    key: 'pick-sample',
    wgsl: sampleWgsl,
    inputs: [logProbs, uniforms instanceof tf.Tensor ? uniforms : tf.tensor1d(uniforms)],
    outputs: [{ shape: [rows], dtype: 'int32' }],
    uniforms: [{ u32: rows }, { u32: width }, { f32: temperature }],
    workgroups: grid(rows),
  })[0] as tf.Tensor1D);
}

// Fused causal self-attention with RoPE, padding mask, sliding window and grouped kv heads: flash-style forward and backward, KV-cache append and single-query decoding.
//
// Layouts (row-major): qkv [B, T, nh + 2·nkv, hd] is the fused q|k|v projection, unrotated; `meta` [2, B, S] int32
// holds the attention mask then the RoPE position of every column; `rope` [2, P, hd] holds cos then sin; the
// output is [B, T, nh·hd], ready for o_proj; `lse` [B, nh, T] is each query row's log-sum-exp for the backward
// pass. A KV cache is [B, nkv, capacity, hd] per layer, keys stored rotated. Query t sits at column past + t and
// sees key column j when mask[j] is 1, j ≤ its column and, with a window W, column − j < W. A query that sees no
// key (a left-padding position) gets zeros: the reference's uniform average there is read by nobody.
import * as tf from '@tensorflow/tfjs-core';
import { gpuChoice } from '../gpu-settings.ts';
import { COMMON_PARAMS, HELPERS, keyTileFill, loopBounds, tileRows, uniforms, type AttentionShape, type Geometry } from './attention-common.ts';
import { laneRows, lanesBackwardKvWgsl, lanesBackwardQWgsl, lanesFor, lanesForwardWgsl, rowDeltaWgsl } from './attention-lanes.ts';
import { bindings, ForcedChoice, grid, run, runToTensors } from './engine.ts';
import { reductions, ropeFns } from './wgsl.ts';

export type { AttentionShape } from './attention-common.ts';

const ATTENTION = 'PausepipeAttention';
/** Query rows (one per invocation) of a forward or dQ workgroup; keys per dK/dV workgroup. */
const ROWS = 64;

/** The key-tile loop shared by the forward and the dQ kernel: K (rotated) and V tiles of KB keys in workgroup memory. */
function keyTileLoad(cache: boolean): string {
  const load = cache
    ? `let at = ((b * params.nkv + kvh) * params.cs + j) * HD + d;
        kv = kc[at];
        vv = vc[at];`
    : `let kb = headAt(b, j, params.nh + kvh);
        kv = ropeFwd(posAt(b, j), d, qkv[kb + d], qkv[kb + partner(d)]);
        vv = qkv[kb + params.nkv * HD + d];`;
  return keyTileFill({ per: 'HD', index: 'd', zero: '0.0', threads: ROWS, load });
}

/**
 * Forward, one query row per invocation, online softmax over key tiles (FlashAttention's recurrence): the T×S
 * scores never reach memory. In cache mode keys and values come from the cache (already rotated).
 */
function forwardWgsl(hd: number, kb: number, cache: boolean): string {
  const L = loopBounds('KB');
  const ins: Array<[string, 'f32' | 'i32']> = [['qkv', 'f32'], ['colInfo', 'i32'], ['rope', 'f32'], ...(cache ? [['kc', 'f32'], ['vc', 'f32']] as Array<[string, 'f32']> : [])];
  return `
${bindings([['o', 'f32'], ['lse', 'f32']], ins, COMMON_PARAMS)}
${ropeFns(hd)}
${HELPERS}
const KB = ${kb}u;
var<workgroup> kt: array<f32, ${kb * hd}>;
var<workgroup> vt: array<f32, ${kb * hd}>;
var<workgroup> kok: array<u32, ${kb}>;
@compute @workgroup_size(${ROWS})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let b = wid.y / params.nh;
  let h = wid.y - b * params.nh;
  let kvh = h / (params.nh / params.nkv);
  let t = wid.x * ${ROWS}u + lid;
  let live = t < params.T;
  let col = params.past + t;
  var q: array<f32, ${hd}>;
  var acc: array<f32, ${hd}>;
  var m = -3.0e38;
  var l = 0.0;
  if (live) {
    let pos = posAt(b, col);
    let at = headAt(b, t, h);
    for (var d = 0u; d < ${L.hd}; d = d + 1u) {
      q[d] = ropeFwd(pos, d, qkv[at + d], qkv[at + partner(d)]) * params.scale;
      acc[d] = 0.0;
    }
  }
  let kEnd = params.past + min(params.T, wid.x * ${ROWS}u + ${ROWS}u);
  let kStart = (firstKey(params.past + wid.x * ${ROWS}u) / KB) * KB;
  for (var k0 = kStart; k0 < kEnd; k0 = k0 + KB) {
    ${keyTileLoad(cache)}
    if (live) {
      var sc: array<f32, ${kb}>;
      var seen = 0u;
      var mt = -3.0e38;
      for (var jj = 0u; jj < ${L.tile}; jj = jj + 1u) {
        if (kok[jj] == 1u && visible(k0 + jj, col)) {
          var s = 0.0;
          for (var d = 0u; d < ${L.hd}; d = d + 1u) { s = s + q[d] * kt[jj * HD + d]; }
          sc[jj] = s;
          mt = max(mt, s);
          seen = seen | (1u << jj);
        }
      }
      if (seen != 0u) {
        let mn = max(m, mt);
        let corr = exp(m - mn);
        l = l * corr;
        for (var d = 0u; d < ${L.hd}; d = d + 1u) { acc[d] = acc[d] * corr; }
        for (var jj = 0u; jj < ${L.tile}; jj = jj + 1u) {
          if ((seen & (1u << jj)) != 0u) {
            let p = exp(sc[jj] - mn);
            l = l + p;
            for (var d = 0u; d < ${L.hd}; d = d + 1u) { acc[d] = acc[d] + p * vt[jj * HD + d]; }
          }
        }
        m = mn;
      }
    }
  }
  if (live) {
    let at = ((b * params.T + t) * params.nh + h) * HD;
    for (var d = 0u; d < ${L.hd}; d = d + 1u) { o[at + d] = select(0.0, acc[d] / l, l > 0.0); }
    lse[(b * params.nh + h) * params.T + t] = select(0.0, m + log(l), l > 0.0);
  }
}`;
}

/**
 * dK and dV: one key per invocation, looping over the query heads of its kv head and the query tiles that can see
 * it; D = rowsum(dO·O) is recomputed per tile row instead of stored. Writes the k and v parts of dqkv, unrotated.
 */
function backwardKvWgsl(hd: number, qt: number): string {
  const L = loopBounds('QT');
  return `
${bindings([['dqkv', 'f32']], [['qkv', 'f32'], ['o', 'f32'], ['dout', 'f32'], ['lse', 'f32'], ['colInfo', 'i32'], ['rope', 'f32']], COMMON_PARAMS)}
${ropeFns(hd)}
${HELPERS}
const QT = ${qt}u;
var<workgroup> qs: array<f32, ${qt * hd}>;
var<workgroup> gs: array<f32, ${qt * hd}>;
var<workgroup> ls: array<f32, ${qt}>;
var<workgroup> dd: array<f32, ${qt}>;
@compute @workgroup_size(${ROWS})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let b = wid.y / params.nkv;
  let kvh = wid.y - b * params.nkv;
  let grp = params.nh / params.nkv;
  let j = wid.x * ${ROWS}u + lid;
  let live = j < params.T;
  let keyOk = live && maskAt(b, j);
  var kr: array<f32, ${hd}>;
  var vr: array<f32, ${hd}>;
  var dk: array<f32, ${hd}>;
  var dv: array<f32, ${hd}>;
  var pos = 0u;
  var kb = 0u;
  if (live) {
    pos = posAt(b, j);
    kb = headAt(b, j, params.nh + kvh);
    for (var d = 0u; d < ${L.hd}; d = d + 1u) {
      kr[d] = ropeFwd(pos, d, qkv[kb + d], qkv[kb + partner(d)]);
      vr[d] = qkv[kb + params.nkv * HD + d];
      dk[d] = 0.0;
      dv[d] = 0.0;
    }
  }
  let kFirst = wid.x * ${ROWS}u;
  let kLastEx = min(params.T, kFirst + ${ROWS}u);
  var tEnd = params.T;
  if (params.window > 0u) { tEnd = min(params.T, kLastEx - 1u + params.window); }
  let tStart = (kFirst / QT) * QT;
  for (var g = 0u; g < grp; g = g + 1u) {
    let h = kvh * grp + g;
    for (var t0 = tStart; t0 < tEnd; t0 = t0 + QT) {
      workgroupBarrier();
      for (var e = lid; e < QT * HD; e = e + ${ROWS}u) {
        let t = t0 + e / HD;
        let d = e % HD;
        var qv = 0.0;
        var gv = 0.0;
        if (t < params.T) {
          let at = headAt(b, t, h);
          qv = ropeFwd(posAt(b, t), d, qkv[at + d], qkv[at + partner(d)]) * params.scale;
          gv = dout[((b * params.T + t) * params.nh + h) * HD + d];
        }
        qs[e] = qv;
        gs[e] = gv;
      }
      workgroupBarrier();
      for (var e = lid; e < QT; e = e + ${ROWS}u) {
        let t = t0 + e;
        var dsum = 0.0;
        var lv = 0.0;
        if (t < params.T) {
          let at = ((b * params.T + t) * params.nh + h) * HD;
          for (var d = 0u; d < ${L.hd}; d = d + 1u) { dsum = dsum + gs[e * HD + d] * o[at + d]; }
          lv = lse[(b * params.nh + h) * params.T + t];
        }
        dd[e] = dsum;
        ls[e] = lv;
      }
      workgroupBarrier();
      if (keyOk) {
        for (var tt = 0u; tt < ${L.tile}; tt = tt + 1u) {
          let t = t0 + tt;
          if (t < params.T && visible(j, t)) {
            var s = 0.0;
            var dp = 0.0;
            for (var d = 0u; d < ${L.hd}; d = d + 1u) {
              s = s + qs[tt * HD + d] * kr[d];
              dp = dp + gs[tt * HD + d] * vr[d];
            }
            let p = exp(s - ls[tt]);
            let ds = p * (dp - dd[tt]);
            for (var d = 0u; d < ${L.hd}; d = d + 1u) {
              dv[d] = dv[d] + p * gs[tt * HD + d];
              dk[d] = dk[d] + ds * qs[tt * HD + d];
            }
          }
        }
      }
    }
  }
  if (live) {
    for (var d = 0u; d < ${L.hd}; d = d + 1u) {
      dqkv[kb + d] = ropeBwd(pos, d, dk[d], dk[partner(d)]);
      dqkv[kb + params.nkv * HD + d] = dv[d];
    }
  }
}`;
}

/** dQ: one query row per invocation over the key tiles it sees; writes the q part of dqkv, unrotated. */
function backwardQWgsl(hd: number, kb: number): string {
  const L = loopBounds('KB');
  return `
${bindings([['dqkv', 'f32']], [['qkv', 'f32'], ['o', 'f32'], ['dout', 'f32'], ['lse', 'f32'], ['colInfo', 'i32'], ['rope', 'f32']], COMMON_PARAMS)}
${ropeFns(hd)}
${HELPERS}
const KB = ${kb}u;
var<workgroup> kt: array<f32, ${kb * hd}>;
var<workgroup> vt: array<f32, ${kb * hd}>;
var<workgroup> kok: array<u32, ${kb}>;
@compute @workgroup_size(${ROWS})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let b = wid.y / params.nh;
  let h = wid.y - b * params.nh;
  let kvh = h / (params.nh / params.nkv);
  let t = wid.x * ${ROWS}u + lid;
  let live = t < params.T;
  let col = t;
  var q: array<f32, ${hd}>;
  var g: array<f32, ${hd}>;
  var dq: array<f32, ${hd}>;
  var pos = 0u;
  var lv = 0.0;
  var dsum = 0.0;
  if (live) {
    pos = posAt(b, t);
    let at = headAt(b, t, h);
    let ot = ((b * params.T + t) * params.nh + h) * HD;
    for (var d = 0u; d < ${L.hd}; d = d + 1u) {
      q[d] = ropeFwd(pos, d, qkv[at + d], qkv[at + partner(d)]) * params.scale;
      g[d] = dout[ot + d];
      dsum = dsum + g[d] * o[ot + d];
      dq[d] = 0.0;
    }
    lv = lse[(b * params.nh + h) * params.T + t];
  }
  let kEnd = min(params.T, wid.x * ${ROWS}u + ${ROWS}u);
  let kStart = (firstKey(wid.x * ${ROWS}u) / KB) * KB;
  for (var k0 = kStart; k0 < kEnd; k0 = k0 + KB) {
    ${keyTileLoad(false)}
    if (live) {
      for (var jj = 0u; jj < ${L.tile}; jj = jj + 1u) {
        if (kok[jj] == 1u && visible(k0 + jj, col)) {
          var s = 0.0;
          var dp = 0.0;
          for (var d = 0u; d < ${L.hd}; d = d + 1u) {
            s = s + q[d] * kt[jj * HD + d];
            dp = dp + g[d] * vt[jj * HD + d];
          }
          let ds = exp(s - lv) * (dp - dsum);
          for (var d = 0u; d < ${L.hd}; d = d + 1u) { dq[d] = dq[d] + ds * kt[jj * HD + d]; }
        }
      }
    }
  }
  if (live) {
    let at = headAt(b, t, h);
    for (var d = 0u; d < ${L.hd}; d = d + 1u) {
      dqkv[at + d] = ropeBwd(pos, d, dq[d] * params.scale, dq[partner(d)] * params.scale);
    }
  }
}`;
}

/** Writes the new tokens' rotated keys and their values into the cache at columns past…past+T−1. */
function appendWgsl(hd: number): string {
  return `
${bindings([['kc', 'f32'], ['vc', 'f32']], [['qkv', 'f32'], ['colInfo', 'i32'], ['rope', 'f32']], COMMON_PARAMS)}
${ropeFns(hd)}
${HELPERS}
@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let idx = (wid.x + wid.y * nwg.x) * 256u + lid;
  if (idx >= params.B * params.T * params.nkv * HD) { return; }
  let d = idx % HD;
  let r = idx / HD;
  let kvh = r % params.nkv;
  let bt = r / params.nkv;
  let t = bt % params.T;
  let b = bt / params.T;
  let col = params.past + t;
  let kb = headAt(b, t, params.nh + kvh);
  let at = ((b * params.nkv + kvh) * params.cs + col) * HD + d;
  kc[at] = ropeFwd(posAt(b, col), d, qkv[kb + d], qkv[kb + partner(d)]);
  vc[at] = qkv[kb + params.nkv * HD + d];
}`;
}

const DECODE_THREADS = 64;
const DECODE_CHUNK = 256;

/**
 * One new query per row against the cache, the new key and value written into it by the same kernel: a workgroup
 * per (row, head) walks the keys in chunks of 256, scores in workgroup memory, each invocation owning a few output
 * dimensions. Every head takes the new column's key (rotated) and value from qkv, and the first head of each kv
 * group stores them in the cache: no workgroup reads a cache column another one writes.
 */
function decodeWgsl(hd: number): string {
  const L = loopBounds('KB');
  const dims = Math.ceil(hd / DECODE_THREADS);
  const perThread = DECODE_CHUNK / DECODE_THREADS;
  return `
${bindings([['o', 'f32'], ['kc', 'f32'], ['vc', 'f32']], [['qkv', 'f32'], ['colInfo', 'i32'], ['rope', 'f32']], COMMON_PARAMS)}
${ropeFns(hd)}
${HELPERS}
${reductions(DECODE_THREADS)}
var<workgroup> qs: array<f32, ${hd}>;
var<workgroup> nk: array<f32, ${hd}>;
var<workgroup> nv: array<f32, ${hd}>;
var<workgroup> sc: array<f32, ${DECODE_CHUNK}>;
@compute @workgroup_size(${DECODE_THREADS})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let b = wid.x / params.nh;
  let h = wid.x - b * params.nh;
  let group = params.nh / params.nkv;
  let kvh = h / group;
  let col = params.past;
  let keys = params.past + 1u;
  let pos = posAt(b, col);
  let at = headAt(b, 0u, h);
  let kvAt = headAt(b, 0u, params.nh + kvh);
  let rowBase = (b * params.nkv + kvh) * params.cs;
  for (var d = lid; d < HD; d = d + ${DECODE_THREADS}u) {
    qs[d] = ropeFwd(pos, d, qkv[at + d], qkv[at + partner(d)]) * params.scale;
    nk[d] = ropeFwd(pos, d, qkv[kvAt + d], qkv[kvAt + partner(d)]);
    nv[d] = qkv[kvAt + params.nkv * HD + d];
    if (h == kvh * group) {
      kc[(rowBase + col) * HD + d] = nk[d];
      vc[(rowBase + col) * HD + d] = nv[d];
    }
  }
  workgroupBarrier();
  var acc: array<f32, ${dims}>;
  for (var i = 0u; i < ${dims}u; i = i + 1u) { acc[i] = 0.0; }
  var m = -3.0e38;
  var l = 0.0;
  for (var c0 = firstKey(col); c0 < keys; c0 = c0 + ${DECODE_CHUNK}u) {
    var localMax = -3.0e38;
    for (var i = 0u; i < ${perThread}u; i = i + 1u) {
      let jj = lid + i * ${DECODE_THREADS}u;
      let j = c0 + jj;
      var s = -3.0e38;
      if (j < keys && maskAt(b, j) && visible(j, col)) {
        s = 0.0;
        if (j == col) {
          for (var d = 0u; d < ${L.hd}; d = d + 1u) { s = s + qs[d] * nk[d]; }
        } else {
          let kb = (rowBase + j) * HD;
          for (var d = 0u; d < ${L.hd}; d = d + 1u) { s = s + qs[d] * kc[kb + d]; }
        }
        localMax = max(localMax, s);
      }
      sc[jj] = s;
    }
    let mn = max(m, maxAll(lid, localMax));
    let corr = exp(m - mn);
    var localSum = 0.0;
    for (var i = 0u; i < ${perThread}u; i = i + 1u) {
      let jj = lid + i * ${DECODE_THREADS}u;
      let s = sc[jj];
      let p = select(0.0, exp(s - mn), s > -1.0e38);
      sc[jj] = p;
      localSum = localSum + p;
    }
    l = l * corr + sumAll(lid, localSum);
    for (var i = 0u; i < ${dims}u; i = i + 1u) { acc[i] = acc[i] * corr; }
    let last = min(${DECODE_CHUNK}u, keys - c0);
    for (var jj = 0u; jj < last; jj = jj + 1u) {
      let p = sc[jj];
      if (p > 0.0) {
        let fresh = c0 + jj == col;
        let vb = (rowBase + c0 + jj) * HD;
        for (var i = 0u; i < ${dims}u; i = i + 1u) {
          let d = lid + i * ${DECODE_THREADS}u;
          if (d < HD) {
            if (fresh) { acc[i] = acc[i] + p * nv[d]; } else { acc[i] = acc[i] + p * vc[vb + d]; }
          }
        }
      }
    }
    m = mn;
    workgroupBarrier();
  }
  let ob = (b * params.nh + h) * HD;
  for (var i = 0u; i < ${dims}u; i = i + 1u) {
    let d = lid + i * ${DECODE_THREADS}u;
    if (d < HD) { o[ob + d] = select(0.0, acc[i] / l, l > 0.0); }
  }
}`;
}

interface AttentionAttrs extends AttentionShape {
  ropeRows: number;
  /** Invocations per row of the training kernels: 0 for attention.ts's one-per-row kernels, else attention-lanes.ts's. */
  lanes: number;
}

/**
 * The forward kernel for `lanes` invocations per row (0: one per row), over the new tokens only or, in cache mode,
 * over the cache too: its pipeline key, its WGSL, and the query rows one workgroup covers.
 */
function forwardProgram(hd: number, lanes: number, kb: number, cache: boolean): { key: string; wgsl: () => string; rows: number } {
  const mode = cache ? '-cached' : '';
  if (lanes > 0) return { key: `attention-lanes${mode}-${hd}-${lanes}-${kb}`, wgsl: () => lanesForwardWgsl(hd, lanes, kb, cache), rows: laneRows(lanes) };
  return { key: `attention${mode}-${hd}-${kb}`, wgsl: () => forwardWgsl(hd, kb, cache), rows: ROWS };
}

function geometry(qkv: tf.TensorInfo, meta: tf.TensorInfo, attrs: AttentionAttrs, past: number, cs: number): Geometry {
  return { B: qkv.shape[0]!, T: qkv.shape[1]!, past, ms: meta.shape[2]!, ropeRows: attrs.ropeRows, cs };
}

tf.registerKernel({
  kernelName: ATTENTION,
  backendName: 'webgpu',
  kernelFunc: ({ inputs, attrs }) => {
    const a = attrs as unknown as AttentionAttrs;
    const { qkv, meta, rope } = inputs as { qkv: tf.TensorInfo; meta: tf.TensorInfo; rope: tf.TensorInfo };
    const g = geometry(qkv, meta, a, 0, 0);
    const kb = tileRows(a.headDim);
    const { key, wgsl, rows } = forwardProgram(a.headDim, a.lanes, kb, false);
    return run({
      key,
      wgsl,
      inputs: [qkv, meta, rope],
      outputs: [{ shape: [g.B, g.T, a.numHeads * a.headDim], dtype: 'float32' }, { shape: [g.B, a.numHeads, g.T], dtype: 'float32' }],
      uniforms: uniforms(g, a, kb),
      workgroups: [Math.ceil(g.T / rows), g.B * a.numHeads, 1],
    });
  },
});

tf.registerGradient({
  kernelName: ATTENTION,
  inputsToSave: ['qkv', 'meta', 'rope'],
  outputsToSave: [true, true],
  gradFunc: (dys, saved, attrs) => {
    const a = attrs as unknown as AttentionAttrs;
    const [dout] = dys as tf.Tensor[];
    const [qkv, meta, rope, o, lse] = saved as tf.Tensor[];
    return {
      qkv: () => (a.lanes > 0 ? lanesBackward(a, qkv!, meta!, rope!, o!, lse!, dout!) : rowsBackward(a, qkv!, meta!, rope!, o!, lse!, dout!)),
      rope: () => tf.zerosLike(rope!),
    };
  },
});

/** dqkv with one invocation per key (dK, dV) and per query (dQ). */
function rowsBackward(a: AttentionAttrs, qkv: tf.Tensor, meta: tf.Tensor, rope: tf.Tensor, o: tf.Tensor, lse: tf.Tensor, dout: tf.Tensor): tf.Tensor {
  const g = geometry(qkv, meta, a, 0, 0);
  const qt = tileRows(a.headDim);
  const ins = [qkv, o, dout, lse, meta, rope];
  const [dqkv] = runToTensors({
    key: `attention-dkv-${a.headDim}-${qt}`,
    wgsl: () => backwardKvWgsl(a.headDim, qt),
    inputs: ins,
    outputs: [{ shape: qkv.shape, dtype: 'float32' }],
    uniforms: uniforms(g, a, qt),
    workgroups: [Math.ceil(g.T / ROWS), g.B * a.numKvHeads, 1],
  });
  run({
    key: `attention-dq-${a.headDim}-${qt}`,
    wgsl: () => backwardQWgsl(a.headDim, qt),
    inputs: ins,
    outputs: [{ into: dqkv! }],
    uniforms: uniforms(g, a, qt),
    workgroups: [Math.ceil(g.T / ROWS), g.B * a.numHeads, 1],
  });
  return dqkv!;
}

/** dqkv with P lanes per key and per query, after one kernel makes each query row's D = rowsum(dO ∘ O). */
function lanesBackward(a: AttentionAttrs, qkv: tf.Tensor, meta: tf.Tensor, rope: tf.Tensor, o: tf.Tensor, lse: tf.Tensor, dout: tf.Tensor): tf.Tensor {
  const g = geometry(qkv, meta, a, 0, 0);
  const qt = tileRows(a.headDim);
  const rows = laneRows(a.lanes);
  const count = g.B * g.T * a.numHeads;
  const [delta] = runToTensors({
    key: `attention-delta-${a.headDim}`,
    wgsl: () => rowDeltaWgsl(a.headDim),
    inputs: [o, dout],
    outputs: [{ shape: [g.B, a.numHeads, g.T], dtype: 'float32' }],
    uniforms: [count, g.T, a.numHeads].map((u) => ({ u32: u })),
    workgroups: grid(Math.ceil(count / 256)),
  });
  const ins = [qkv, dout, lse, delta!, meta, rope];
  const [dqkv] = runToTensors({
    key: `attention-lanes-dkv-${a.headDim}-${a.lanes}-${qt}`,
    wgsl: () => lanesBackwardKvWgsl(a.headDim, a.lanes, qt),
    inputs: ins,
    outputs: [{ shape: qkv.shape, dtype: 'float32' }],
    uniforms: uniforms(g, a, qt),
    workgroups: [Math.ceil(g.T / rows), g.B * a.numKvHeads, 1],
  });
  run({
    key: `attention-lanes-dq-${a.headDim}-${a.lanes}-${qt}`,
    wgsl: () => lanesBackwardQWgsl(a.headDim, a.lanes, qt),
    inputs: ins,
    outputs: [{ into: dqkv! }],
    uniforms: uniforms(g, a, qt),
    workgroups: [Math.ceil(g.T / rows), g.B * a.numHeads, 1],
  });
  delta!.dispose();
  return dqkv!;
}

function checkQkv(qkv: tf.Tensor, s: AttentionShape): void {
  const width = (s.numHeads + 2 * s.numKvHeads) * s.headDim;
  if (qkv.rank !== 3 || qkv.shape[2] !== width) throw new Error(`attention: qkv [${qkv.shape.join(', ')}] must be [B, T, ${width}]`);
  if (s.numHeads % s.numKvHeads !== 0) throw new Error(`attention: ${s.numHeads} heads are not a multiple of ${s.numKvHeads} kv heads`);
}

/**
 * The training kernels: `rows` (one invocation per query or key row, this file) or `lanes` (a row's head split over
 * several invocations of a subgroup, attention-lanes.ts; where the device has no suitable subgroups, rows).
 */
export type AttentionChoice = 'rows' | 'lanes';

const forcedAttention = new ForcedChoice<AttentionChoice>();

/** Runs `fn` with attention on `choice`, whatever PAUSEPIPE_ATTENTION says (until the promise settles, when `fn` is async). */
export function withAttention<T>(choice: AttentionChoice, fn: () => T): T {
  return forcedAttention.during(choice, fn);
}

/**
 * PAUSEPIPE_ATTENTION (default `rows`), read at each call. `lanes` stays opt-in until a GPU run shows it faster: both
 * give the same values up to float32 summation order.
 */
export function attentionChoice(): AttentionChoice {
  return forcedAttention.current ?? gpuChoice('PAUSEPIPE_ATTENTION');
}

/** Invocations per row the training attention of head size `hd` runs with now: 0 for rows. */
export function attentionLanes(hd: number): number {
  return attentionChoice() === 'lanes' ? lanesFor(hd) : 0;
}

/**
 * Causal self-attention of the fused projection qkv [B, T, (nh + 2·nkv)·hd] over its own T positions, with
 * gradients; `meta` from attentionMeta, `rope` from ropeTable. Returns [B, T, nh·hd].
 */
export function attention(qkv: tf.Tensor, meta: tf.Tensor, rope: tf.Tensor, s: AttentionShape): tf.Tensor {
  checkQkv(qkv, s);
  const attrs: AttentionAttrs = { ...s, ropeRows: rope.shape[1]!, lanes: attentionLanes(s.headDim) };
  const [out] = tf.engine().runKernel(ATTENTION, { qkv, meta, rope }, attrs as unknown as tf.NamedAttrMap) as tf.Tensor[];
  return out!;
}

/** One layer's cache: rotated keys and values [B, nkv, capacity, hd]. */
export interface CacheLayer {
  keys: tf.Tensor;
  values: tf.Tensor;
}

/** Writes the T new keys (rotated) and values of qkv into `cache` at columns past…past+T−1; not differentiable. */
export function appendToCache(cache: CacheLayer, qkv: tf.Tensor, meta: tf.Tensor, rope: tf.Tensor, past: number, s: AttentionShape): void {
  checkQkv(qkv, s);
  const [B, T] = qkv.shape as [number, number];
  const g: Geometry = { B, T, past, ms: meta.shape[2]!, ropeRows: rope.shape[1]!, cs: cache.keys.shape[2]! };
  if (past + T > g.cs) throw new Error(`attention: ${past + T} positions exceed the cache's ${g.cs}`);
  const count = B * T * s.numKvHeads * s.headDim;
  run({
    key: `attention-append-${s.headDim}`,
    wgsl: () => appendWgsl(s.headDim),
    inputs: [qkv, meta, rope],
    outputs: [{ into: cache.keys }, { into: cache.values }],
    uniforms: uniforms(g, s),
    workgroups: grid(Math.ceil(count / 256)),
  });
}

/**
 * Attention of the T new queries in qkv against the cache's past + T positions. One query per row takes the
 * single-query kernel, which also writes the new key and value into the cache; more than one need them appended
 * first (appendToCache). Returns [B, T, nh·hd]; not differentiable.
 */
export function attendCache(cache: CacheLayer, qkv: tf.Tensor, meta: tf.Tensor, rope: tf.Tensor, past: number, s: AttentionShape): tf.Tensor {
  checkQkv(qkv, s);
  const [B, T] = qkv.shape as [number, number];
  const g: Geometry = { B, T, past, ms: meta.shape[2]!, ropeRows: rope.shape[1]!, cs: cache.keys.shape[2]! };
  const out = { shape: [B, T, s.numHeads * s.headDim], dtype: 'float32' as const };
  if (T === 1) {
    if (past + 1 > g.cs) throw new Error(`attention: ${past + 1} positions exceed the cache's ${g.cs}`);
    const [o] = run({
      key: `attention-decode-${s.headDim}`,
      wgsl: () => decodeWgsl(s.headDim),
      inputs: [qkv, meta, rope],
      outputs: [out, { into: cache.keys }, { into: cache.values }],
      uniforms: uniforms(g, s),
      workgroups: [B * s.numHeads, 1, 1],
    });
    return tf.engine().makeTensorFromTensorInfo(o!);
  }
  const kb = tileRows(s.headDim);
  const { key, wgsl, rows } = forwardProgram(s.headDim, attentionLanes(s.headDim), kb, true);
  const [o, lse] = runToTensors({
    key,
    wgsl,
    inputs: [qkv, meta, rope, cache.keys, cache.values],
    outputs: [out, { shape: [B, s.numHeads, T], dtype: 'float32' }],
    uniforms: uniforms(g, s, kb),
    workgroups: [Math.ceil(T / rows), B * s.numHeads, 1],
  });
  lse!.dispose();
  return o!;
}

/** meta [2, B, S] int32 for an attention mask [B, S]: the mask as 0/1, then RoPE positions cumsum(mask) − 1 clipped at 0. */
function metaWgsl(): string {
  return `
${bindings([['colInfo', 'i32']], [['mask', 'i32']], [['B', 'u32'], ['S', 'u32']])}
@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let b = gid.x;
  if (b >= params.B) { return; }
  var seen = 0;
  for (var j = 0u; j < params.S; j = j + 1u) {
    let on = select(0, 1, mask[b * params.S + j] != 0);
    seen = seen + on;
    colInfo[b * params.S + j] = on;
    colInfo[(params.B + b) * params.S + j] = max(seen - 1, 0);
  }
}`;
}

/** Mask and positions of every column for the attention kernels, in one kernel (one invocation per row). */
export function attentionMeta(attentionMask: tf.Tensor2D): tf.Tensor {
  if (attentionMask.dtype !== 'int32') throw new Error(`attention: the attention mask must be int32, got ${attentionMask.dtype}`);
  const [B, S] = attentionMask.shape;
  return runToTensors({
    key: 'attention-meta',
    wgsl: metaWgsl,
    inputs: [attentionMask],
    outputs: [{ shape: [2, B, S], dtype: 'int32' }],
    uniforms: [{ u32: B }, { u32: S }],
    workgroups: [Math.ceil(B / 64), 1, 1],
  })[0]!;
}

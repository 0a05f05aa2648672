// Attention over many rows (training, and a prompt over the KV cache) with each row's head split over P neighbouring
// invocations ("lanes") of a subgroup.
//
// attention.ts's kernels give one query (or key) row to one invocation, which holds whole head vectors: the dK/dV
// kernel 4·hd floats. At hd = 128 (Mistral-7B) that is 512 registers, twice what an NVIDIA thread has, so they spill,
// and a workgroup of 64 such rows leaves most of a big GPU idle. Here P invocations share a row, each holding 16 of its
// values (P = hd/16, 2 to 8): a dot product is P partial sums added across the lanes with subgroupShuffleXor (log2 P
// steps, every lane ends with the same bits), and workgroups hold 256/P rows. Lane `part` owns the vec4s part,
// part + P, part + 2P, ... of a head, so the P lanes of a row read P consecutive vec4s of workgroup memory, and a
// value's RoPE partner (hd/2 away) is the same lane's vec4 V4/2 further on. Same layouts, masks and results as
// attention.ts (up to float32 summation order); the single-query decoding and the cache append stay there.
import { COMMON_PARAMS, HELPERS, keyTileFill, loopBounds } from './attention-common.ts';
import { bindings, perElementMain } from './engine.ts';
import { subgroupLayout } from './subgroups.ts';
import { ropeFns } from './wgsl.ts';

/** Invocations per workgroup: 256/P rows of P lanes. */
export const LANE_WORKGROUP = 256;

/**
 * Lanes per row for head size `hd` on this device, 0 where the lanes kernels cannot run: no subgroups (or not laid
 * out linearly), subgroups smaller than P, or a head size whose lane shares are not an even number of vec4s.
 */
export function lanesFor(hd: number): number {
  const sub = subgroupLayout();
  if (!sub) return 0;
  for (let p = Math.min(8, Math.max(2, 2 ** Math.floor(Math.log2(hd / 16)))); p >= 2; p /= 2) {
    if (hd % (8 * p) === 0 && p <= sub.minSize) return p;
  }
  return 0;
}

/** Rows of one workgroup for P lanes per row. */
export function laneRows(lanes: number): number {
  return LANE_WORKGROUP / lanes;
}

/**
 * WGSL shared by the lanes kernels: the constants, the lane's vec4 of a rotated head (`ropeVec`) or of a plain one
 * (`qkvVec`), and `acrossLanes`, the row's sum of one value per lane (every lane gets the same bits: each butterfly
 * step adds two values in either order, and float addition commutes).
 */
function laneHelpers(hd: number, lanes: number): string {
  return `
${ropeFns(hd)}
${HELPERS}
const P = ${lanes}u;
const HD4 = ${hd / 4}u;
const V4 = ${hd / 4 / lanes}u;
const R = ${laneRows(lanes)}u;
fn ropeVec(pos: u32, base: u32, v: u32) -> vec4<f32> {
  let d = 4u * v;
  let p = partner(d);
  return vec4<f32>(ropeFwd(pos, d, qkv[base + d], qkv[base + p]), ropeFwd(pos, d + 1u, qkv[base + d + 1u], qkv[base + p + 1u]),
                   ropeFwd(pos, d + 2u, qkv[base + d + 2u], qkv[base + p + 2u]), ropeFwd(pos, d + 3u, qkv[base + d + 3u], qkv[base + p + 3u]));
}
fn qkvVec(at: u32) -> vec4<f32> { return vec4<f32>(qkv[at], qkv[at + 1u], qkv[at + 2u], qkv[at + 3u]); }
fn acrossLanes(x: f32) -> f32 {
  var s = x;
  for (var m = 1u; m < P; m = m << 1u) { s = s + subgroupShuffleXor(s, m); }
  return s;
}
// The lane's gradient vec4 i of a head, rotated back: component c pairs with the same component of vec4 i ± V4/2.
fn ropeBackVec(pos: u32, part: u32, i: u32, g: vec4<f32>, gp: vec4<f32>) -> vec4<f32> {
  let d = 4u * (part + P * i);
  return vec4<f32>(ropeBwd(pos, d, g.x, gp.x), ropeBwd(pos, d + 1u, g.y, gp.y), ropeBwd(pos, d + 2u, g.z, gp.z), ropeBwd(pos, d + 3u, g.w, gp.w));
}`;
}

/**
 * Rotated K and V tiles of KB keys (k0…) in workgroup memory, as vec4s, rotated from qkv or, in cache mode, read from
 * the KV cache (stored rotated); `kok` marks keys that exist and are unmasked.
 */
function keyTile(cache: boolean): string {
  const load = cache
    ? `let at = ((b * params.nkv + kvh) * params.cs + j) * HD4 + v;
        kv = kc[at];
        vv = vc[at];`
    : `let kb = headAt(b, j, params.nh + kvh);
        kv = ropeVec(posAt(b, j), kb, v);
        vv = qkvVec(kb + params.nkv * HD + 4u * v);`;
  return keyTileFill({ per: 'HD4', index: 'v', zero: 'vec4<f32>(0.0)', threads: LANE_WORKGROUP, load });
}

/** The opening shared by the forward and the dQ kernel: one query row of head h per P lanes, its key-tile range. */
function queryRowOpening(kb: number, hd: number): string {
  return `
const KB = ${kb}u;
var<workgroup> kt: array<vec4<f32>, ${(kb * hd) / 4}>;
var<workgroup> vt: array<vec4<f32>, ${(kb * hd) / 4}>;
var<workgroup> kok: array<u32, ${kb}>;
@compute @workgroup_size(${LANE_WORKGROUP})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let row = lid / P;
  let part = lid % P;
  let b = wid.y / params.nh;
  let h = wid.y - b * params.nh;
  let kvh = h / (params.nh / params.nkv);
  let t = wid.x * R + row;
  let live = t < params.T;
  let col = params.past + t;
  let kEnd = params.past + min(params.T, wid.x * R + R);
  let kStart = (firstKey(params.past + wid.x * R) / KB) * KB;`;
}

/**
 * Forward: online softmax over key tiles (FlashAttention's recurrence), the tile's scores in registers. The shuffles
 * sit outside every branch on `live` (subgroup operations need the whole subgroup), rows past T compute on zeros. In
 * cache mode (the T new queries of a prompt against the cache's past + T columns) keys and values come from the cache.
 */
export function lanesForwardWgsl(hd: number, lanes: number, kb: number, cache: boolean): string {
  const L = loopBounds('KB');
  const ins: Array<[string, 'f32' | 'i32' | 'vec4<f32>']> = [['qkv', 'f32'], ['colInfo', 'i32'], ['rope', 'f32'], ...(cache ? [['kc', 'vec4<f32>'], ['vc', 'vec4<f32>']] as Array<[string, 'vec4<f32>']> : [])];
  return `enable subgroups;
${bindings([['o', 'vec4<f32>'], ['lse', 'f32']], ins, COMMON_PARAMS)}
${laneHelpers(hd, lanes)}
${queryRowOpening(kb, hd)}
  var q: array<vec4<f32>, V4>;
  var acc: array<vec4<f32>, V4>;
  var m = -3.0e38;
  var l = 0.0;
  if (live) {
    let pos = posAt(b, col);
    let at = headAt(b, t, h);
    for (var i = 0u; i < V4; i++) { q[i] = ropeVec(pos, at, part + P * i) * params.scale; }
  }
  for (var k0 = kStart; k0 < kEnd; k0 = k0 + KB) {
    ${keyTile(cache)}
    var sc: array<f32, ${kb}>;
    for (var jj = 0u; jj < ${L.tile}; jj++) {
      var s = 0.0;
      for (var i = 0u; i < V4; i++) { s = s + dot(q[i], kt[jj * HD4 + part + P * i]); }
      sc[jj] = acrossLanes(s);
    }
    if (live) {
      var seen = 0u;
      var mt = -3.0e38;
      for (var jj = 0u; jj < ${L.tile}; jj++) {
        if (kok[jj] == 1u && visible(k0 + jj, col)) {
          mt = max(mt, sc[jj]);
          seen = seen | (1u << jj);
        }
      }
      if (seen != 0u) {
        let mn = max(m, mt);
        let corr = exp(m - mn);
        l = l * corr;
        for (var i = 0u; i < V4; i++) { acc[i] = acc[i] * corr; }
        for (var jj = 0u; jj < ${L.tile}; jj++) {
          if ((seen & (1u << jj)) != 0u) {
            let p = exp(sc[jj] - mn);
            l = l + p;
            for (var i = 0u; i < V4; i++) { acc[i] = acc[i] + p * vt[jj * HD4 + part + P * i]; }
          }
        }
        m = mn;
      }
    }
  }
  if (live) {
    let at = ((b * params.T + t) * params.nh + h) * HD4;
    for (var i = 0u; i < V4; i++) { o[at + part + P * i] = select(vec4<f32>(0.0), acc[i] / l, l > 0.0); }
    if (part == 0u) { lse[(b * params.nh + h) * params.T + t] = select(0.0, m + log(l), l > 0.0); }
  }
}`;
}

/** D = rowsum(dO ∘ O) per query row and head, [B, nh, T]: the softmax backward's correction, made once for both kernels. */
export function rowDeltaWgsl(hd: number): string {
  return `
${bindings([['delta', 'f32']], [['o', 'vec4<f32>'], ['dout', 'vec4<f32>']], [['count', 'u32'], ['T', 'u32'], ['nh', 'u32']])}
${perElementMain(256)}
  let h = idx % params.nh;
  let bt = idx / params.nh;
  let t = bt % params.T;
  let b = bt / params.T;
  var s = 0.0;
  for (var v = 0u; v < ${hd / 4}u; v++) { s = s + dot(dout[idx * ${hd / 4}u + v], o[idx * ${hd / 4}u + v]); }
  delta[(b * params.nh + h) * params.T + t] = s;
}`;
}

/**
 * The buffers of both backward kernels, which attention.ts dispatches with the same inputs (qkv, dout, lse, D, the
 * column info, the RoPE table) into one dqkv.
 */
const BACKWARD_BINDINGS = bindings([['dqkv', 'vec4<f32>']],
  [['qkv', 'f32'], ['dout', 'vec4<f32>'], ['lse', 'f32'], ['delta', 'f32'], ['colInfo', 'i32'], ['rope', 'f32']], COMMON_PARAMS);

/** dQ: one query row per P lanes over the key tiles it sees; writes the q part of dqkv, unrotated. */
export function lanesBackwardQWgsl(hd: number, lanes: number, kb: number): string {
  const L = loopBounds('KB');
  return `enable subgroups;
${BACKWARD_BINDINGS}
${laneHelpers(hd, lanes)}
${queryRowOpening(kb, hd)}
  var q: array<vec4<f32>, V4>;
  var g: array<vec4<f32>, V4>;
  var dq: array<vec4<f32>, V4>;
  var pos = 0u;
  var lv = 0.0;
  var dsum = 0.0;
  if (live) {
    pos = posAt(b, t);
    let at = headAt(b, t, h);
    let ot = ((b * params.T + t) * params.nh + h) * HD4;
    for (var i = 0u; i < V4; i++) {
      q[i] = ropeVec(pos, at, part + P * i) * params.scale;
      g[i] = dout[ot + part + P * i];
    }
    lv = lse[(b * params.nh + h) * params.T + t];
    dsum = delta[(b * params.nh + h) * params.T + t];
  }
  for (var k0 = kStart; k0 < kEnd; k0 = k0 + KB) {
    ${keyTile(false)}
    for (var jj = 0u; jj < ${L.tile}; jj++) {
      var s = 0.0;
      var dp = 0.0;
      for (var i = 0u; i < V4; i++) {
        s = s + dot(q[i], kt[jj * HD4 + part + P * i]);
        dp = dp + dot(g[i], vt[jj * HD4 + part + P * i]);
      }
      s = acrossLanes(s);
      dp = acrossLanes(dp);
      if (live && kok[jj] == 1u && visible(k0 + jj, col)) {
        let ds = exp(s - lv) * (dp - dsum);
        for (var i = 0u; i < V4; i++) { dq[i] = dq[i] + ds * kt[jj * HD4 + part + P * i]; }
      }
    }
  }
  if (live) {
    let at = headAt(b, t, h) / 4u;
    for (var i = 0u; i < V4; i++) {
      dqkv[at + part + P * i] = ropeBackVec(pos, part, i, dq[i] * params.scale, dq[(i + V4 / 2u) % V4] * params.scale);
    }
  }
}`;
}

/**
 * dK and dV: one key row per P lanes, over the query heads of its kv head and the query tiles that can see it
 * (rotated, scaled queries and their output gradients in workgroup memory). Writes the k and v parts of dqkv.
 */
export function lanesBackwardKvWgsl(hd: number, lanes: number, qt: number): string {
  const L = loopBounds('QT');
  return `enable subgroups;
${BACKWARD_BINDINGS}
${laneHelpers(hd, lanes)}
const QT = ${qt}u;
var<workgroup> qs: array<vec4<f32>, ${(qt * hd) / 4}>;
var<workgroup> gs: array<vec4<f32>, ${(qt * hd) / 4}>;
var<workgroup> ls: array<f32, ${qt}>;
var<workgroup> dd: array<f32, ${qt}>;
@compute @workgroup_size(${LANE_WORKGROUP})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let row = lid / P;
  let part = lid % P;
  let b = wid.y / params.nkv;
  let kvh = wid.y - b * params.nkv;
  let grp = params.nh / params.nkv;
  let j = wid.x * R + row;
  let live = j < params.T;
  let keyOk = live && maskAt(b, j);
  var kr: array<vec4<f32>, V4>;
  var vr: array<vec4<f32>, V4>;
  var dk: array<vec4<f32>, V4>;
  var dv: array<vec4<f32>, V4>;
  var pos = 0u;
  var kb = 0u;
  if (live) {
    pos = posAt(b, j);
    kb = headAt(b, j, params.nh + kvh);
    for (var i = 0u; i < V4; i++) {
      kr[i] = ropeVec(pos, kb, part + P * i);
      vr[i] = qkvVec(kb + params.nkv * HD + 4u * (part + P * i));
    }
  }
  let kFirst = wid.x * R;
  let kLastEx = min(params.T, kFirst + R);
  var tEnd = params.T;
  if (params.window > 0u) { tEnd = min(params.T, kLastEx - 1u + params.window); }
  let tStart = (kFirst / QT) * QT;
  for (var gi = 0u; gi < grp; gi++) {
    let h = kvh * grp + gi;
    for (var t0 = tStart; t0 < tEnd; t0 = t0 + QT) {
      workgroupBarrier();
      for (var e = lid; e < QT * HD4; e = e + ${LANE_WORKGROUP}u) {
        let t = t0 + e / HD4;
        let v = e % HD4;
        var qv = vec4<f32>(0.0);
        var gv = vec4<f32>(0.0);
        if (t < params.T) {
          qv = ropeVec(posAt(b, t), headAt(b, t, h), v) * params.scale;
          gv = dout[((b * params.T + t) * params.nh + h) * HD4 + v];
        }
        qs[e] = qv;
        gs[e] = gv;
      }
      for (var e = lid; e < QT; e = e + ${LANE_WORKGROUP}u) {
        let t = t0 + e;
        var lv = 0.0;
        var dv0 = 0.0;
        if (t < params.T) {
          lv = lse[(b * params.nh + h) * params.T + t];
          dv0 = delta[(b * params.nh + h) * params.T + t];
        }
        ls[e] = lv;
        dd[e] = dv0;
      }
      workgroupBarrier();
      for (var tt = 0u; tt < ${L.tile}; tt++) {
        var s = 0.0;
        var dp = 0.0;
        for (var i = 0u; i < V4; i++) {
          s = s + dot(qs[tt * HD4 + part + P * i], kr[i]);
          dp = dp + dot(gs[tt * HD4 + part + P * i], vr[i]);
        }
        s = acrossLanes(s);
        dp = acrossLanes(dp);
        let t = t0 + tt;
        if (keyOk && t < params.T && visible(j, t)) {
          let p = exp(s - ls[tt]);
          let ds = p * (dp - dd[tt]);
          for (var i = 0u; i < V4; i++) {
            dv[i] = dv[i] + p * gs[tt * HD4 + part + P * i];
            dk[i] = dk[i] + ds * qs[tt * HD4 + part + P * i];
          }
        }
      }
    }
  }
  if (live) {
    let at = kb / 4u;
    for (var i = 0u; i < V4; i++) {
      dqkv[at + part + P * i] = ropeBackVec(pos, part, i, dk[i], dk[(i + V4 / 2u) % V4]);
      dqkv[at + params.nkv * HD4 + part + P * i] = dv[i];
    }
  }
}`;
}

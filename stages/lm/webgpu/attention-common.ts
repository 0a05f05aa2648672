// What the attention kernels share: head geometry, their uniforms, the WGSL helpers for masks, positions and heads.
import { cpuAdapter, webgpuBackend } from './engine.ts';

/** Head geometry and the sliding window (0: none). */
export interface AttentionShape {
  numHeads: number;
  numKvHeads: number;
  headDim: number;
  window: number;
}

/** The largest tile of `rowsPerTile` ∈ {32, 16, 8, 4} rows of `perRow` floats (two such arrays) that fits workgroup memory. */
export function tileRows(perRow: number): number {
  const limit = webgpuBackend().device.limits.maxComputeWorkgroupStorageSize;
  for (const rows of [32, 16, 8, 4]) if (2 * rows * perRow * 4 + 2 * rows * 4 <= limit) return rows;
  throw new Error(`attention: head dimension ${perRow} does not fit this GPU's ${limit} bytes of workgroup memory`);
}

export const COMMON_PARAMS: Array<[string, 'u32' | 'f32']> = [
  ['B', 'u32'], ['T', 'u32'], ['past', 'u32'], ['nh', 'u32'], ['nkv', 'u32'], ['ms', 'u32'], ['ropeRows', 'u32'], ['cs', 'u32'],
  ['window', 'u32'], ['scale', 'f32'], ['hd', 'u32'], ['tile', 'u32'],
];

/**
 * Bounds of the loops over a head's values and over a tile's rows: the constants on a GPU, the same numbers from the
 * uniforms on a CPU adapter (see cpuAdapter).
 */
export function loopBounds(tile: 'KB' | 'QT'): { hd: string; tile: string } {
  return cpuAdapter() ? { hd: 'params.hd', tile: 'params.tile' } : { hd: 'HD', tile };
}

export interface Geometry {
  B: number;
  T: number;
  past: number;
  /** Row stride of `meta` (its number of columns). */
  ms: number;
  ropeRows: number;
  /** Column capacity of the cache (its row stride), 0 without one. */
  cs: number;
}

export function uniforms(g: Geometry, s: AttentionShape, tile = 0) {
  return [
    { u32: g.B }, { u32: g.T }, { u32: g.past, position: true as const }, { u32: s.numHeads }, { u32: s.numKvHeads }, { u32: g.ms }, { u32: g.ropeRows },
    { u32: g.cs }, { u32: s.window }, { f32: 1 / Math.sqrt(s.headDim) }, { u32: s.headDim }, { u32: tile },
  ];
}

/** Shared WGSL: who sees whom, and where things live. */
export const HELPERS = `
fn visible(j: u32, col: u32) -> bool { return j <= col && (params.window == 0u || col < j + params.window); }
fn maskAt(b: u32, j: u32) -> bool { return colInfo[b * params.ms + j] != 0; }
fn posAt(b: u32, j: u32) -> u32 { return u32(colInfo[(params.B + b) * params.ms + j]); }
fn nht() -> u32 { return params.nh + 2u * params.nkv; }
fn headAt(b: u32, t: u32, head: u32) -> u32 { return ((b * params.T + t) * nht() + head) * HD; }
fn firstKey(col: u32) -> u32 { return select(0u, col + 1u - params.window, params.window > 0u && col + 1u > params.window); }`;

/**
 * The key-tile fill shared by the forward and dQ kernels of both layouts: KB keys from k0 into workgroup memory `kt`
 * (rotated) and `vt`, `per` values per key in slots of type `zero`'s (f32, or vec4 for the lanes kernels), `index`
 * naming the slot within a key for `load`, which sets `kv` and `vv` for key j; `kok` marks keys that exist and are
 * unmasked. `threads`: the workgroup's invocations, which share the fill.
 */
export function keyTileFill(o: { per: string; index: string; zero: string; threads: number; load: string }): string {
  return `
    workgroupBarrier();
    for (var e = lid; e < KB * ${o.per}; e = e + ${o.threads}u) {
      let j = k0 + e / ${o.per};
      let ${o.index} = e % ${o.per};
      var kv = ${o.zero};
      var vv = ${o.zero};
      if (j < kEnd) {
        ${o.load}
      }
      kt[e] = kv;
      vt[e] = vv;
    }
    for (var e = lid; e < KB; e = e + ${o.threads}u) { kok[e] = select(0u, 1u, k0 + e < kEnd && maskAt(b, k0 + e)); }
    workgroupBarrier();`;
}

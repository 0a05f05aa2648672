// A register-tiled WGSL GEMM, C = op(A)·op(B) with either operand transposed, and its gradients through the same kernel.
import * as tf from '@tensorflow/tfjs-core';
import { gpuChoice } from '../gpu-settings.ts';
import { PackedBf16, UNPACK4, type WeightTensor } from './bf16.ts';
import { bindings, ForcedChoice, grid, perElementMain, run, webgpuBackend } from './engine.ts';
import { matVec, takesMatVec } from './matvec.ts';

const MATMUL = 'PausepipeMatMul';

/**
 * One block tile: the workgroup computes BM×BN outputs, each invocation TM×TN of them in registers, stepping
 * through K by BK. An invocation owns TM/4 groups of 4 rows and TN/4 groups of 4 columns, strided by the
 * workgroup's width so that neighbouring invocations read neighbouring vec4s of workgroup memory (no bank
 * conflicts on the inner loop's loads).
 */
export interface MatMulTile {
  bm: number;
  bn: number;
  bk: number;
  tm: number;
  tn: number;
  /**
   * Copies of the two tiles in workgroup memory (default 1). With 2, a K step's products read one copy while its
   * successor's values are stored into the other, so a step needs one barrier instead of two.
   */
  buffers?: 1 | 2;
}

/** For big outputs: 256 invocations of 8×8, the shape big NVIDIA GPUs run fp32 GEMMs at. */
export const BIG_TILE: MatMulTile = { bm: 128, bn: 128, bk: 8, tm: 8, tn: 8 };
/** For outputs too small to fill a GPU with 128×128 tiles (decoding, narrow layers): 128 invocations of 4×4. */
export const SMALL_TILE: MatMulTile = { bm: 32, bn: 64, bk: 16, tm: 4, tn: 4 };

/** Workgroups a GPU needs to stay busy; below this many big tiles the small tile gives more parallelism. */
const BIG_TILE_MIN_WORKGROUPS = 128;

/**
 * Workgroups that fill a big GPU: about two resident big-tile workgroups on each of an H100's or H200's 132 SMs
 * (WebGPU does not say how many a GPU has). A product with fewer output tiles splits K among more workgroups.
 */
const TARGET_WORKGROUPS = 256;
/** Fewest K values one slice of a split product covers, so each workgroup's own loop stays long. */
const MIN_SLICE_K = 256;
/** Most slices: their partial outputs are summed by one more kernel, which reads all of them. */
const MAX_SPLITS = 16;

/** How one product runs: its block tile, and how many slices of K it is split into (1: none). */
export interface MatMulPlan {
  tile: MatMulTile;
  splits: number;
}

/**
 * The plan for an [m, k]·[k, n] product. The big tile where the output spans at least one of it each way and fills
 * enough workgroups, counting K's slices; else the small one. K is split when the output has fewer tiles than a GPU
 * has room for and K is long: the weight gradients dW = Xᵀ·dY (an output of weight size, K = the batch's tokens).
 */
export function planProduct(m: number, n: number, k: number): MatMulPlan {
  if (m >= BIG_TILE.bm && n >= BIG_TILE.bn) {
    const big = tilesOf(BIG_TILE, m, n);
    const splits = splitsFor(big, k, BIG_TILE.bk);
    if (big * splits >= BIG_TILE_MIN_WORKGROUPS) return { tile: BIG_TILE, splits };
  }
  return { tile: SMALL_TILE, splits: splitsFor(tilesOf(SMALL_TILE, m, n), k, SMALL_TILE.bk) };
}

function tilesOf(t: MatMulTile, m: number, n: number): number {
  return Math.ceil(m / t.bm) * Math.ceil(n / t.bn);
}

function splitsFor(tiles: number, k: number, bk: number): number {
  if (tiles >= TARGET_WORKGROUPS) return 1;
  return sliceCount(k, Math.min(Math.ceil(TARGET_WORKGROUPS / tiles), Math.floor(k / MIN_SLICE_K), MAX_SPLITS), bk);
}

/** K values per slice for `splits` slices: a whole number of K steps, so no step reads into the next slice. */
function sliceLength(k: number, splits: number, bk: number): number {
  return Math.max(bk, Math.ceil(Math.ceil(k / Math.max(1, splits)) / bk) * bk);
}

/** The slices `splits` asks for once each is a whole number of K steps (fewer where K is short). */
function sliceCount(k: number, splits: number, bk: number): number {
  return Math.max(1, Math.ceil(k / sliceLength(k, splits, bk)));
}

interface Variant {
  tile: MatMulTile;
  transposeA: boolean;
  transposeB: boolean;
  /** Whether A's, B's, C's rows hold a multiple of 4 values: then they are read and written as aligned vec4s. */
  vecA: boolean;
  vecB: boolean;
  vecC: boolean;
  /** B holds bfloat16 pairs (bf16.ts), read as vec2<u32> words and widened as loaded. */
  packedB: boolean;
}

function keyOf(v: Variant): string {
  const t = v.tile;
  return `matmul-${t.bm}x${t.bn}x${t.bk}-${t.tm}x${t.tn}${t.buffers === 2 ? '-db' : ''}-${v.transposeA ? 'T' : 'N'}${v.transposeB ? 'T' : 'N'}-${+v.vecA}${+v.vecB}${+v.vecC}${v.packedB ? '-bf16' : ''}`;
}

/**
 * WGSL that fills one operand's tile in workgroup memory, k-major (`name`S[k · W/4 + i/4][i % 4] for the tile's
 * k-th step and its i-th row of A, or column of B). `kContiguous` says whether the stored matrix runs along k
 * (A untransposed, B transposed): then a vec4 read holds four k steps of one row and is stored as four scalars;
 * otherwise it holds four rows at one k and is stored whole.
 */
function tileLoader(name: 'a' | 'b', width: number, bk: number, threads: number, kContiguous: boolean, base: string): { load: string; store: string; regs: number } {
  const slots = (width * bk) / 4;
  const regs = Math.ceil(slots / threads);
  const w4 = width / 4;
  const load: string[] = [];
  const store: string[] = [];
  for (let r = 0; r < regs; r++) {
    const guard = slots % threads === 0 ? '' : `if (lid + ${r * threads}u < ${slots}u) `;
    const slot = `(lid + ${r * threads}u)`;
    // (row, col) of the stored matrix for this slot: along k when kContiguous, else along the tile's width.
    const [row, col, inTile] = kContiguous
      ? [`${name}0 + ${slot} / ${bk / 4}u`, `kt + (${slot} % ${bk / 4}u) * 4u`, [`${slot} / ${bk / 4}u`, `(${slot} % ${bk / 4}u) * 4u`]]
      : [`kt + ${slot} / ${w4}u`, `${name}0 + (${slot} % ${w4}u) * 4u`, [`${slot} % ${w4}u`, `${slot} / ${w4}u`]];
    load.push(`${guard}{ ${name}R${r} = load${name.toUpperCase()}(${row}, ${col}); }`);
    if (kContiguous) {
      const [i, k] = inTile;
      const lines = [0, 1, 2, 3].map((c) => `${name}S[${base}(${k} + ${c}u) * ${w4}u + (${i}) / 4u][(${i}) % 4u] = ${name}R${r}[${c}];`);
      store.push(`${guard}{ ${lines.join(' ')} }`);
    } else {
      const [i4, k] = inTile;
      store.push(`${guard}{ ${name}S[${base}(${k}) * ${w4}u + ${i4}] = ${name}R${r}; }`);
    }
  }
  return { load: load.join('\n    '), store: store.join('\n    '), regs };
}

/** A reader of four consecutive values of a stored row, zero past the matrix's edges. */
function reader(name: 'a' | 'b', vec: boolean, packed = false): string {
  const fn = `load${name.toUpperCase()}`;
  const rows = `params.${name}Rows`;
  const cols = `params.${name}Cols`;
  // Packed rows hold a multiple of 4 values, and reads start at multiples of 4: a read is two whole words.
  if (packed) {
    return `${UNPACK4}
fn ${fn}(row: u32, col: u32) -> vec4<f32> {
  if (row >= ${rows} || col >= ${cols}) { return vec4<f32>(0.0); }
  return unpack4(${name}[(row * ${cols} + col) / 4u]);
}`;
  }
  if (vec) {
    return `fn ${fn}(row: u32, col: u32) -> vec4<f32> {
  if (row >= ${rows} || col >= ${cols}) { return vec4<f32>(0.0); }
  return ${name}[(row * ${cols} + col) / 4u];
}`;
  }
  return `fn ${fn}(row: u32, col: u32) -> vec4<f32> {
  var v = vec4<f32>(0.0);
  if (row >= ${rows}) { return v; }
  for (var c = 0u; c < 4u; c++) {
    if (col + c < ${cols}) { v[c] = ${name}[row * ${cols} + col + c]; }
  }
  return v;
}`;
}

/** `store(row, col, x)`: four consecutive outputs of a row, those past the matrix's edges left out, into this slice's part of C. */
function writer(vec: boolean): string {
  if (vec) {
    return `fn store(row: u32, col: u32, x: vec4<f32>) {
  if (row < params.m && col < params.n) { c[(cBase + row * params.n + col) / 4u] = x; }
}`;
  }
  return `fn store(row: u32, col: u32, x: vec4<f32>) {
  if (row >= params.m) { return; }
  for (var q = 0u; q < 4u; q++) {
    if (col + q < params.n) { c[cBase + row * params.n + col + q] = x[q]; }
  }
}`;
}

function wgsl(v: Variant): string {
  const { bm, bn, bk, tm, tn } = v.tile;
  const wx = bn / tn;
  const wy = bm / tm;
  const threads = wx * wy;
  const double = v.tile.buffers === 2;
  // With two copies, stores go to the copy at wa/wb and the products read the one at ra/rb (vec4 offsets).
  const ta = tileLoader('a', bm, bk, threads, !v.transposeA, double ? 'wa + ' : '');
  const tb = tileLoader('b', bn, bk, threads, v.transposeB, double ? 'wb + ' : '');
  const rowGroups = tm / 4;
  const colGroups = tn / 4;
  const acc: string[] = [];
  const fma: string[] = [];
  const write: string[] = [];
  for (let g = 0; g < colGroups; g++) fma.push(`let bv${g} = bS[${double ? 'rb + ' : ''}k * ${bn / 4}u + tx + ${g * wx}u];`);
  for (let h = 0; h < rowGroups; h++) {
    fma.push(`let av${h} = aS[${double ? 'ra + ' : ''}k * ${bm / 4}u + ty + ${h * wy}u];`);
    for (let r = 0; r < 4; r++) {
      for (let g = 0; g < colGroups; g++) {
        const name = `acc${h * 4 + r}_${g}`;
        acc.push(`var ${name} = vec4<f32>(0.0);`);
        fma.push(`${name} = fma(vec4<f32>(av${h}[${r}]), bv${g}, ${name});`);
        const row = `m0 + (ty + ${h * wy}u) * 4u + ${r}u`;
        const col = `n0 + (tx + ${g * wx}u) * 4u`;
        write.push(`store(${row}, ${col}, ${name});`);
      }
    }
  }
  const regs = [
    ...Array.from({ length: ta.regs }, (_, r) => `var aR${r} = vec4<f32>(0.0);`),
    ...Array.from({ length: tb.regs }, (_, r) => `var bR${r} = vec4<f32>(0.0);`),
  ];
  const elem = (vec: boolean) => (vec ? 'vec4<f32>' : 'f32');
  return `
@group(0) @binding(0) var<storage, read_write> c: array<${elem(v.vecC)}>;
@group(0) @binding(1) var<storage, read> a: array<${elem(v.vecA)}>;
@group(0) @binding(2) var<storage, read> b: array<${v.packedB ? 'vec2<u32>' : elem(v.vecB)}>;
struct Params { m: u32, n: u32, k: u32, aRows: u32, aCols: u32, bRows: u32, bCols: u32, slice: u32, };
@group(0) @binding(3) var<uniform> params: Params;
// Where this workgroup's slice of K writes its partial C (0 when K is not split).
var<private> cBase: u32;
var<workgroup> aS: array<vec4<f32>, ${(v.tile.buffers ?? 1) * ((bm * bk) / 4)}>;
var<workgroup> bS: array<vec4<f32>, ${(v.tile.buffers ?? 1) * ((bn * bk) / 4)}>;
${reader('a', v.vecA)}
${reader('b', v.vecB, v.packedB)}
${writer(v.vecC)}
@compute @workgroup_size(${wx}, ${wy}, 1)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lidv: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let tx = lidv.x;
  let ty = lidv.y;
  let m0 = wid.y * ${bm}u;
  let n0 = wid.x * ${bn}u;
  let a0 = m0;
  let b0 = n0;
  // Slice wid.z of K (the whole of K when the product is not split), and its own copy of C.
  let kEnd = min((wid.z + 1u) * params.slice, params.k);
  cBase = wid.z * params.m * params.n;
  ${acc.join('\n  ')}
  ${regs.join('\n  ')}
  var kt = wid.z * params.slice;
  ${ta.load}
  ${tb.load}
  ${double ? doubleBufferedLoop(ta, tb, fma, bm, bn, bk) : `loop {
    if (kt >= kEnd) { break; }
    ${ta.store}
    ${tb.store}
    workgroupBarrier();
    kt = kt + ${bk}u;
    // The next tile's global reads are issued before this tile's products, hiding their latency.
    if (kt < kEnd) {
      ${ta.load}
      ${tb.load}
    }
    for (var k = 0u; k < ${bk}u; k++) {
      ${fma.join('\n      ')}
    }
    workgroupBarrier();
  }`}
  ${write.join('\n  ')}
}`;
}

type Loader = ReturnType<typeof tileLoader>;

/**
 * The K loop over two copies of the tiles: step i's products read copy i mod 2 while step i + 1's values, loaded
 * from global memory before the products, are stored into the other copy; one barrier ends the step. It suffices:
 * after it every invocation has finished reading copy i mod 2 (so step i + 1 may overwrite it with step i + 2's
 * values) and has stored its share of copy (i + 1) mod 2 (which step i + 1 reads).
 */
function doubleBufferedLoop(ta: Loader, tb: Loader, fma: string[], bm: number, bn: number, bk: number): string {
  const [a4, b4] = [(bm * bk) / 4, (bn * bk) / 4];
  return `var wa = 0u;
  var wb = 0u;
  ${ta.store}
  ${tb.store}
  workgroupBarrier();
  var copy = 0u;
  loop {
    if (kt >= kEnd) { break; }
    let ra = copy * ${a4}u;
    let rb = copy * ${b4}u;
    wa = (1u - copy) * ${a4}u;
    wb = (1u - copy) * ${b4}u;
    kt = kt + ${bk}u;
    let more = kt < kEnd;
    if (more) {
      ${ta.load}
      ${tb.load}
    }
    for (var k = 0u; k < ${bk}u; k++) {
      ${fma.join('\n      ')}
    }
    if (more) {
      ${ta.store}
      ${tb.store}
    }
    workgroupBarrier();
    copy = 1u - copy;
  }`;
}

/** Records one product of stored tensors into the command stream (the kernel function of MATMUL). */
function product(a: tf.TensorInfo, b: tf.TensorInfo, attrs: MatMulAttrs): tf.TensorInfo {
  const { transposeA, transposeB } = attrs;
  const packedB = attrs.packedB ?? false;
  if (a.shape.length !== 2 || b.shape.length !== 2) throw new Error(`matmul: rank-2 operands only, got [${a.shape.join(', ')}] and [${b.shape.join(', ')}]`);
  const [aRows, aCols] = a.shape as [number, number];
  // A packed B's words hold two values each.
  const [bRows, bCols] = [b.shape[0]!, packedB ? 2 * b.shape[1]! : b.shape[1]!];
  if (packedB && (b.dtype !== 'int32' || bCols % 4 !== 0)) throw new Error(`matmul: a packed B is int32 words [rows, cols / 2] with cols a multiple of 4, got ${b.dtype} [${b.shape.join(', ')}]`);
  const [m, k] = transposeA ? [aCols, aRows] : [aRows, aCols];
  const [kb, n] = transposeB ? [bCols, bRows] : [bRows, bCols];
  if (k !== kb) throw new Error(`matmul: inner sizes differ: [${a.shape.join(', ')}]${transposeA ? 'ᵀ' : ''} · [${b.shape.join(', ')}]${transposeB ? 'ᵀ' : ''}`);
  const { tile: t, splits } = planOf(attrs.tile, attrs.splits, m, n, k);
  const variant: Variant = { tile: t, transposeA, transposeB, vecA: aCols % 4 === 0, vecB: bCols % 4 === 0, vecC: n % 4 === 0, packedB };
  const [c] = run({
    key: keyOf(variant),
    wgsl: () => wgsl(variant),
    inputs: [a, b],
    // A split product writes each slice's partial C; one more kernel sums them in slice order (no atomics, so the
    // same inputs always give the same bits).
    outputs: [{ shape: splits === 1 ? [m, n] : [splits, m, n], dtype: 'float32' }],
    uniforms: [m, n, k, aRows, aCols, bRows, bCols, sliceLength(k, splits, t.bk)].map((u) => ({ u32: u })),
    workgroups: [Math.max(1, Math.ceil(n / t.bn)), Math.max(1, Math.ceil(m / t.bm)), splits],
  });
  if (splits === 1) return c!;
  const sum = sumSlices(c!, m, n);
  // Released once the queued commands that read it are submitted (tfjs defers it).
  webgpuBackend().disposeData(c!.dataId);
  return sum;
}

/** C [m, n] = the partial products [S, m, n] summed, slice 0 first; four values per invocation where rows allow. */
function sumSlices(partial: tf.TensorInfo, m: number, n: number): tf.TensorInfo {
  const splits = partial.shape[0]!;
  const vec = n % 4 === 0;
  const count = vec ? (m * n) / 4 : m * n;
  const elem = vec ? 'vec4<f32>' : 'f32';
  return run({
    key: `matmul-sum-slices-${vec ? 'vec4' : 'scalar'}`,
    wgsl: () => `
${bindings([['c', elem]], [['part', elem]], [['count', 'u32'], ['splits', 'u32']])}
${perElementMain(256)}
  var total = part[idx];
  for (var s = 1u; s < params.splits; s++) { total = total + part[s * params.count + idx]; }
  c[idx] = total;
}`,
    inputs: [partial],
    outputs: [{ shape: [m, n], dtype: 'float32' }],
    uniforms: [count, splits].map((u) => ({ u32: u })),
    workgroups: grid(Math.ceil(count / 256)),
  })[0]!;
}

/**
 * Which block tile a product uses: chosen from the output's size, or fixed (tests cover each tile on small shapes),
 * or any tile of the right form (bench/matmul.bench.ts tries others on a GPU).
 */
export type TileChoice = 'auto' | 'big' | 'small' | MatMulTile;
/** Slices of K: as the plan says, or a number (tests; fewer where K is too short for that many whole K steps). */
export type SplitChoice = 'auto' | number;

interface MatMulAttrs {
  transposeA: boolean;
  transposeB: boolean;
  tile: TileChoice;
  splits: SplitChoice;
  /** B is a packed bfloat16 weight's words (bf16.ts); absent: float32. */
  packedB?: boolean;
}

function planOf(tile: TileChoice, splits: SplitChoice, m: number, n: number, k: number): MatMulPlan {
  const plan = tile === 'auto' ? planProduct(m, n, k) : fixedTilePlan(tileOf(tile), m, n, k);
  if (splits === 'auto') return plan;
  if (!Number.isInteger(splits) || splits < 1) throw new Error(`matmul: splits must be a whole number >= 1, got ${splits}`);
  return { tile: plan.tile, splits: sliceCount(k, splits, plan.tile.bk) };
}

/** A fixed tile's plan: K split as the tile's output count asks. */
function fixedTilePlan(tile: MatMulTile, m: number, n: number, k: number): MatMulPlan {
  return { tile, splits: splitsFor(tilesOf(tile, m, n), k, tile.bk) };
}

function tileOf(choice: Exclude<TileChoice, 'auto'>): MatMulTile {
  if (typeof choice === 'object') return checkedTile(choice);
  return choice === 'big' ? BIG_TILE : SMALL_TILE;
}

/** Workgroup memory a tile takes: its A and B tiles, times its copies. */
export function tileBytes(t: MatMulTile): number {
  return (t.buffers ?? 1) * (t.bm + t.bn) * t.bk * 4;
}

/** A tile the kernel can run: per-invocation blocks of whole vec4s, and K steps of whole vec4s. */
function checkedTile(t: MatMulTile): MatMulTile {
  const ok = t.tm % 4 === 0 && t.tn % 4 === 0 && t.bk % 4 === 0 && t.bm % t.tm === 0 && t.bn % t.tn === 0 && (t.bm / t.tm) * (t.bn / t.tn) <= 256 &&
    (t.buffers === undefined || t.buffers === 1 || t.buffers === 2);
  if (!ok) throw new Error(`matmul: tile ${JSON.stringify(t)} needs tm, tn, bk multiples of 4, bm/tm and bn/tn whole, at most 256 invocations, 1 or 2 buffers`);
  const limit = webgpuBackend().device.limits.maxComputeWorkgroupStorageSize;
  if (tileBytes(t) > limit) throw new Error(`matmul: tile ${JSON.stringify(t)} needs ${tileBytes(t)} bytes of workgroup memory, this GPU has ${limit}`);
  return t;
}

tf.registerKernel({
  kernelName: MATMUL,
  backendName: 'webgpu',
  kernelFunc: ({ inputs, attrs }) => {
    return product(inputs.a!, inputs.b!, attrs as unknown as MatMulAttrs);
  },
});

/**
 * With C = op(A)·op(B) and dC its gradient: d op(A) = dC·op(B)ᵀ and d op(B) = op(A)ᵀ·dC, each written as one
 * product of the stored tensors with the transposes folded into the flags, so no transpose kernel runs. Through
 * matMul itself, so a gradient of a gradient works too.
 */
tf.registerGradient({
  kernelName: MATMUL,
  inputsToSave: ['a', 'b'],
  gradFunc: (dy, saved, attrs) => {
    const [a, b] = saved as [tf.Tensor2D, tf.Tensor2D];
    const { transposeA, transposeB, tile, packedB } = attrs as unknown as MatMulAttrs;
    const dc = dy as tf.Tensor2D;
    if (packedB) {
      // A packed weight is frozen: only dA, where B stays the B operand (the projections' x·Wᵀ).
      return {
        a: () => {
          if (transposeA) throw new Error('matmul: no gradient through Aᵀ times a packed B');
          return matMulKernel(dc, b, { transposeA: false, transposeB: !transposeB, tile, splits: 'auto', packedB: true });
        },
        b: () => {
          throw new Error('matmul: a packed bfloat16 weight does not train');
        },
      };
    }
    return {
      a: () => (transposeA ? matMul(b, dc, transposeB, true, tile) : matMul(dc, b, false, !transposeB, tile)),
      b: () => (transposeB ? matMul(dc, a, true, transposeA, tile) : matMul(a, dc, !transposeA, false, tile)),
    };
  },
});

/**
 * op(A)·op(B) for rank-2 float32 tensors on webgpu, differentiable in both. `splits` fixes the slices of K of this
 * product only: its gradients' products (other shapes) plan their own.
 */
export function matMul(a: tf.Tensor2D, b: WeightTensor, transposeA = false, transposeB = false, tile: TileChoice = 'auto', splits: SplitChoice = 'auto'): tf.Tensor2D {
  if (b instanceof PackedBf16) return matMulKernel(a, b.words, { transposeA, transposeB, tile, splits, packedB: true });
  return matMulKernel(a, b, { transposeA, transposeB, tile, splits });
}

/** One MATMUL kernel through the engine (recorded on the gradient tape). */
function matMulKernel(a: tf.Tensor2D, b: tf.Tensor2D, attrs: MatMulAttrs): tf.Tensor2D {
  return tf.engine().runKernel(MATMUL, { a, b }, attrs as unknown as tf.NamedAttrMap) as tf.Tensor2D;
}

/** The products of the model's projections on webgpu: tfjs-backend-webgpu's MatMul, or this file's GEMM. */
export type MatMulChoice = 'tfjs' | 'wgsl';

const forcedProduct = new ForcedChoice<MatMulChoice>();

/**
 * Runs `fn` with every projection on `choice`, whatever PAUSEPIPE_MATMUL says (until the promise settles, when `fn` is
 * async). One-token decode steps take this file's products (decode-graph.ts): a step made only of this project's
 * programs can be recorded once and replayed.
 */
export function withMatMul<T>(choice: MatMulChoice, fn: () => T): T {
  return forcedProduct.during(choice, fn);
}

/**
 * PAUSEPIPE_MATMUL (default `tfjs`), read at each product so a bench or test can switch between runs. The WGSL GEMM
 * stays opt-in until a GPU run shows it faster; both give the same values up to float32 summation order.
 */
export function matMulChoice(): MatMulChoice {
  return forcedProduct.current ?? gpuChoice('PAUSEPIPE_MATMUL');
}

/**
 * op(A)·op(B) through the product PAUSEPIPE_MATMUL selects (kernels.ts's linear and the fused decoder's stacks); on
 * `wgsl` a few rows times a weight outside a gradient take matvec.ts. A packed bfloat16 B always takes this file's
 * products (tfjs's cannot read it).
 */
export function projection(a: tf.Tensor2D, b: WeightTensor, transposeA: boolean, transposeB: boolean): tf.Tensor2D {
  if (matMulChoice() === 'tfjs' && !(b instanceof PackedBf16)) return tf.matMul(a, b, transposeA, transposeB);
  // A few rows times a weight (decoding), with no gradient to take: split along K instead of tiled.
  if (!transposeA && transposeB && takesMatVec(a.shape[0])) return matVec(a, b);
  return matMul(a, b, transposeA, transposeB);
}

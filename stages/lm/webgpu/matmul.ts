// A register-tiled WGSL GEMM, C = op(A)·op(B) with either operand transposed, and its gradients through the same kernel.
import * as tf from '@tensorflow/tfjs-core';
import { run } from './engine.ts';
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
}

/** For big outputs: 256 invocations of 8×8, the shape big NVIDIA GPUs run fp32 GEMMs at. */
export const BIG_TILE: MatMulTile = { bm: 128, bn: 128, bk: 8, tm: 8, tn: 8 };
/** For outputs too small to fill a GPU with 128×128 tiles (decoding, narrow layers): 128 invocations of 4×4. */
export const SMALL_TILE: MatMulTile = { bm: 32, bn: 64, bk: 16, tm: 4, tn: 4 };

/** Workgroups a GPU needs to stay busy; below this many big tiles the small tile gives more parallelism. */
const BIG_TILE_MIN_WORKGROUPS = 128;

/** The big tile where the output spans at least one of it each way and fills enough workgroups; else the small one. */
export function chooseTile(m: number, n: number): MatMulTile {
  const big = Math.ceil(m / BIG_TILE.bm) * Math.ceil(n / BIG_TILE.bn);
  return m >= BIG_TILE.bm && n >= BIG_TILE.bn && big >= BIG_TILE_MIN_WORKGROUPS ? BIG_TILE : SMALL_TILE;
}

interface Variant {
  tile: MatMulTile;
  transposeA: boolean;
  transposeB: boolean;
  /** Whether A's, B's, C's rows hold a multiple of 4 values: then they are read and written as aligned vec4s. */
  vecA: boolean;
  vecB: boolean;
  vecC: boolean;
}

function keyOf(v: Variant): string {
  const t = v.tile;
  return `matmul-${t.bm}x${t.bn}x${t.bk}-${t.tm}x${t.tn}-${v.transposeA ? 'T' : 'N'}${v.transposeB ? 'T' : 'N'}-${+v.vecA}${+v.vecB}${+v.vecC}`;
}

/**
 * WGSL that fills one operand's tile in workgroup memory, k-major (`name`S[k · W/4 + i/4][i % 4] for the tile's
 * k-th step and its i-th row of A, or column of B). `kContiguous` says whether the stored matrix runs along k
 * (A untransposed, B transposed): then a vec4 read holds four k steps of one row and is stored as four scalars;
 * otherwise it holds four rows at one k and is stored whole.
 */
function tileLoader(name: 'a' | 'b', width: number, bk: number, threads: number, kContiguous: boolean): { load: string; store: string; regs: number } {
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
      const lines = [0, 1, 2, 3].map((c) => `${name}S[(${k} + ${c}u) * ${w4}u + (${i}) / 4u][(${i}) % 4u] = ${name}R${r}[${c}];`);
      store.push(`${guard}{ ${lines.join(' ')} }`);
    } else {
      const [i4, k] = inTile;
      store.push(`${guard}{ ${name}S[(${k}) * ${w4}u + ${i4}] = ${name}R${r}; }`);
    }
  }
  return { load: load.join('\n    '), store: store.join('\n    '), regs };
}

/** A reader of four consecutive values of a stored row, zero past the matrix's edges. */
function reader(name: 'a' | 'b', vec: boolean): string {
  const fn = `load${name.toUpperCase()}`;
  const rows = `params.${name}Rows`;
  const cols = `params.${name}Cols`;
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

/** `store(row, col, x)`: four consecutive outputs of a row, those past the matrix's edges left out. */
function writer(vec: boolean): string {
  if (vec) {
    return `fn store(row: u32, col: u32, x: vec4<f32>) {
  if (row < params.m && col < params.n) { c[(row * params.n + col) / 4u] = x; }
}`;
  }
  return `fn store(row: u32, col: u32, x: vec4<f32>) {
  if (row >= params.m) { return; }
  for (var q = 0u; q < 4u; q++) {
    if (col + q < params.n) { c[row * params.n + col + q] = x[q]; }
  }
}`;
}

function wgsl(v: Variant): string {
  const { bm, bn, bk, tm, tn } = v.tile;
  const wx = bn / tn;
  const wy = bm / tm;
  const threads = wx * wy;
  const ta = tileLoader('a', bm, bk, threads, !v.transposeA);
  const tb = tileLoader('b', bn, bk, threads, v.transposeB);
  const rowGroups = tm / 4;
  const colGroups = tn / 4;
  const acc: string[] = [];
  const fma: string[] = [];
  const write: string[] = [];
  for (let g = 0; g < colGroups; g++) fma.push(`let bv${g} = bS[k * ${bn / 4}u + tx + ${g * wx}u];`);
  for (let h = 0; h < rowGroups; h++) {
    fma.push(`let av${h} = aS[k * ${bm / 4}u + ty + ${h * wy}u];`);
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
@group(0) @binding(2) var<storage, read> b: array<${elem(v.vecB)}>;
struct Params { m: u32, n: u32, k: u32, aRows: u32, aCols: u32, bRows: u32, bCols: u32, };
@group(0) @binding(3) var<uniform> params: Params;
var<workgroup> aS: array<vec4<f32>, ${(bm * bk) / 4}>;
var<workgroup> bS: array<vec4<f32>, ${(bn * bk) / 4}>;
${reader('a', v.vecA)}
${reader('b', v.vecB)}
${writer(v.vecC)}
@compute @workgroup_size(${wx}, ${wy}, 1)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lidv: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let tx = lidv.x;
  let ty = lidv.y;
  let m0 = wid.y * ${bm}u;
  let n0 = wid.x * ${bn}u;
  let a0 = m0;
  let b0 = n0;
  ${acc.join('\n  ')}
  ${regs.join('\n  ')}
  var kt = 0u;
  ${ta.load}
  ${tb.load}
  loop {
    if (kt >= params.k) { break; }
    ${ta.store}
    ${tb.store}
    workgroupBarrier();
    kt = kt + ${bk}u;
    // The next tile's global reads are issued before this tile's products, hiding their latency.
    if (kt < params.k) {
      ${ta.load}
      ${tb.load}
    }
    for (var k = 0u; k < ${bk}u; k++) {
      ${fma.join('\n      ')}
    }
    workgroupBarrier();
  }
  ${write.join('\n  ')}
}`;
}

/** Records one product of stored tensors into the command stream (the kernel function of MATMUL). */
function product(a: tf.TensorInfo, b: tf.TensorInfo, transposeA: boolean, transposeB: boolean, choice: TileChoice): tf.TensorInfo {
  if (a.shape.length !== 2 || b.shape.length !== 2) throw new Error(`matmul: rank-2 operands only, got [${a.shape.join(', ')}] and [${b.shape.join(', ')}]`);
  const [aRows, aCols] = a.shape as [number, number];
  const [bRows, bCols] = b.shape as [number, number];
  const [m, k] = transposeA ? [aCols, aRows] : [aRows, aCols];
  const [kb, n] = transposeB ? [bCols, bRows] : [bRows, bCols];
  if (k !== kb) throw new Error(`matmul: inner sizes differ: [${a.shape.join(', ')}]${transposeA ? 'ᵀ' : ''} · [${b.shape.join(', ')}]${transposeB ? 'ᵀ' : ''}`);
  const t = tileOf(choice, m, n);
  const variant: Variant = { tile: t, transposeA, transposeB, vecA: aCols % 4 === 0, vecB: bCols % 4 === 0, vecC: n % 4 === 0 };
  return run({
    key: keyOf(variant),
    wgsl: () => wgsl(variant),
    inputs: [a, b],
    outputs: [{ shape: [m, n], dtype: 'float32' }],
    uniforms: [m, n, k, aRows, aCols, bRows, bCols].map((u) => ({ u32: u })),
    workgroups: [Math.max(1, Math.ceil(n / t.bn)), Math.max(1, Math.ceil(m / t.bm)), 1],
  })[0]!;
}

/**
 * Which block tile a product uses: chosen from the output's size, or fixed (tests cover each tile on small shapes),
 * or any tile of the right form (bench/matmul.bench.ts tries others on a GPU).
 */
export type TileChoice = 'auto' | 'big' | 'small' | MatMulTile;

interface MatMulAttrs {
  transposeA: boolean;
  transposeB: boolean;
  tile: TileChoice;
}

function tileOf(choice: TileChoice, m: number, n: number): MatMulTile {
  if (typeof choice === 'object') return checkedTile(choice);
  return choice === 'big' ? BIG_TILE : choice === 'small' ? SMALL_TILE : chooseTile(m, n);
}

/** A tile the kernel can run: per-invocation blocks of whole vec4s, and K steps of whole vec4s. */
function checkedTile(t: MatMulTile): MatMulTile {
  const ok = t.tm % 4 === 0 && t.tn % 4 === 0 && t.bk % 4 === 0 && t.bm % t.tm === 0 && t.bn % t.tn === 0 && (t.bm / t.tm) * (t.bn / t.tn) <= 256;
  if (!ok) throw new Error(`matmul: tile ${JSON.stringify(t)} needs tm, tn, bk multiples of 4, bm/tm and bn/tn whole, at most 256 invocations`);
  return t;
}

tf.registerKernel({
  kernelName: MATMUL,
  backendName: 'webgpu',
  kernelFunc: ({ inputs, attrs }) => {
    const { transposeA, transposeB, tile } = attrs as unknown as MatMulAttrs;
    return product(inputs.a!, inputs.b!, transposeA, transposeB, tile);
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
    const { transposeA, transposeB, tile } = attrs as unknown as MatMulAttrs;
    const dc = dy as tf.Tensor2D;
    return {
      a: () => (transposeA ? matMul(b, dc, transposeB, true, tile) : matMul(dc, b, false, !transposeB, tile)),
      b: () => (transposeB ? matMul(dc, a, true, transposeA, tile) : matMul(a, dc, !transposeA, false, tile)),
    };
  },
});

/** op(A)·op(B) for rank-2 float32 tensors on webgpu, differentiable in both. */
export function matMul(a: tf.Tensor2D, b: tf.Tensor2D, transposeA = false, transposeB = false, tile: TileChoice = 'auto'): tf.Tensor2D {
  const attrs: MatMulAttrs = { transposeA, transposeB, tile };
  return tf.engine().runKernel(MATMUL, { a, b }, attrs as unknown as tf.NamedAttrMap) as tf.Tensor2D;
}

/** The products of the model's projections on webgpu: tfjs-backend-webgpu's MatMul, or this file's GEMM. */
export type MatMulChoice = 'tfjs' | 'wgsl';

let forcedChoice: MatMulChoice | null = null;

/**
 * Runs `fn` with every projection on `choice`, whatever PAUSEPIPE_MATMUL says. One-token decode steps take this
 * file's products (decode-graph.ts): a step made only of this project's programs can be recorded once and replayed.
 */
export function withMatMul<T>(choice: MatMulChoice, fn: () => T): T {
  const saved = forcedChoice;
  forcedChoice = choice;
  try {
    return fn();
  } finally {
    forcedChoice = saved;
  }
}

/**
 * PAUSEPIPE_MATMUL (default `tfjs`), read at each product so a bench or test can switch between runs. The WGSL GEMM
 * stays opt-in until a GPU run shows it faster; both give the same values up to float32 summation order.
 */
export function matMulChoice(): MatMulChoice {
  if (forcedChoice) return forcedChoice;
  const v = process.env.PAUSEPIPE_MATMUL ?? 'tfjs';
  if (v !== 'tfjs' && v !== 'wgsl') throw new Error(`PAUSEPIPE_MATMUL must be tfjs or wgsl, got '${v}'`);
  return v;
}

/**
 * op(A)·op(B) through the product PAUSEPIPE_MATMUL selects (kernels.ts's linear and the fused decoder's stacks); on
 * `wgsl` a few rows times a weight outside a gradient take matvec.ts.
 */
export function projection(a: tf.Tensor2D, b: tf.Tensor2D, transposeA: boolean, transposeB: boolean): tf.Tensor2D {
  if (matMulChoice() === 'tfjs') return tf.matMul(a, b, transposeA, transposeB);
  // A few rows times a weight (decoding), with no gradient to take: split along K instead of tiled.
  if (!transposeA && transposeB && takesMatVec(a.shape[0])) return matVec(a, b);
  return matMul(a, b, transposeA, transposeB);
}

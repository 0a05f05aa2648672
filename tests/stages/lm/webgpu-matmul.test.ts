// The WGSL GEMM (webgpu/matmul.ts) and the few-rows product (webgpu/matvec.ts) against tf.matMul: every transpose combination, ragged shapes, both tiles, gradients.
import * as tf from '@tensorflow/tfjs-core';
import * as assert from 'uvu/assert';
import { readTensor as values } from '../../../stages/lm/backend.ts';
import { BIG_TILE, matMul, type MatMulTile, planProduct, SMALL_TILE, type SplitChoice, type TileChoice } from '../../../stages/lm/webgpu/matmul.ts';
import { webgpuBackend } from '../../../stages/lm/webgpu/engine.ts';
import { countGpuWork } from '../../../stages/lm/webgpu/counters.ts';
import { matVec, matVecConcat, matVecSwiglu } from '../../../stages/lm/webgpu/matvec.ts';
import { randn } from '../../helpers/gradcheck.ts';
import { backendSuite, runOnWebgpu } from '../../helpers/backends.ts';
import { maxDiff } from '../../helpers/hf-fixtures.ts';

const test = backendSuite('webgpu matmul', 'webgpu');

/** float32 sums of at most a few hundred products of unit normals: order differences stay near 1e-5. */
const TOL = 1e-4;

async function close(label: string, got: tf.Tensor, want: tf.Tensor): Promise<void> {
  assert.equal(got.shape, want.shape, `${label}: shape`);
  const d = maxDiff(await values(got), await values(want));
  assert.ok(d <= TOL, `${label}: max diff ${d}`);
}

const stored = (rows: number, cols: number, transposed: boolean, seed: number) => randn(transposed ? [cols, rows] : [rows, cols], seed) as tf.Tensor2D;

const COMBOS: Array<[boolean, boolean]> = [[false, false], [false, true], [true, false], [true, true]];

/**
 * [M, K, N]: edges of every kind (1, 3, one past a tile). Odd sizes make every row be read and written as scalars,
 * multiples of 4 as vec4s; keeping each shape all one or all the other limits the shader variants llvmpipe compiles
 * (some 4 s each). The vec4 reads and writes are the same code for both tiles, so the big tile takes odd sizes only.
 */
const ODD: Array<[number, number, number]> = [[1, 1, 1], [3, 5, 7], [129, 3, 65], [33, 17, 131]];
const FOURS: Array<[number, number, number]> = [[8, 64, 36], [132, 20, 68]];

for (const [tile, shapes] of [['small', [...ODD, ...FOURS]], ['big', ODD]] as Array<[TileChoice, typeof ODD]>) {
  test(`${tile} tile: all four transpose combinations on ragged shapes equal tf.matMul`, async () => {
    for (const [m, k, n] of shapes) {
      for (const [ta, tb] of COMBOS) {
        const a = stored(m, k, ta, m + k);
        const b = stored(k, n, tb, k + n);
        await close(`${m}x${k}x${n} ${ta ? 'T' : 'N'}${tb ? 'T' : 'N'}`, matMul(a, b, ta, tb, tile), tf.matMul(a, b, ta, tb));
        tf.dispose([a, b]);
      }
    }
  });
}

test('double-buffered tiles (two copies in workgroup memory, one barrier a K step): every transpose combination, K over many steps and split, equal tf.matMul', async () => {
  const cases: Array<[MatMulTile, SplitChoice, Array<[number, number, number]>]> = [
    [{ ...SMALL_TILE, buffers: 2 }, 'auto', [[3, 5, 7], [5, 70, 9], [33, 17, 131], [8, 64, 36]]],
    [{ ...SMALL_TILE, buffers: 2 }, 3, [[3, 75, 7]]],
    [{ ...BIG_TILE, buffers: 2 }, 'auto', [[129, 45, 131]]],
  ];
  for (const [tile, splits, shapes] of cases) {
    for (const [m, k, n] of shapes) {
      for (const [ta, tb] of COMBOS) {
        const a = stored(m, k, ta, m + k);
        const b = stored(k, n, tb, k + n);
        await close(`${tile.bm}x${tile.bn}x${tile.bk} ${m}x${k}x${n} ${ta ? 'T' : 'N'}${tb ? 'T' : 'N'} in ${splits}`, matMul(a, b, ta, tb, tile, splits), tf.matMul(a, b, ta, tb));
        tf.dispose([a, b]);
      }
    }
  }
});

test('a few rows times a weight (matvec.ts): 1 to 16 rows, K a multiple of 4 or not, N not a multiple of 8, equal tf.matMul; more rows are refused', async () => {
  // [M, K, N]: the vec4 kernel (K % 4 = 0) and the scalar one; 9 and 16 rows take two passes of 8.
  const shapes: Array<[number, number, number]> = [[1, 64, 13], [3, 300, 70], [8, 36, 9], [9, 64, 33], [16, 17, 70], [2, 1030, 5]];
  for (const [m, k, n] of shapes) {
    const x = randn([m, k], m + k) as tf.Tensor2D;
    const w = randn([n, k], k + n) as tf.Tensor2D;
    await close(`${m}x${k}x${n}`, matVec(x, w), tf.matMul(x, w, false, true));
    tf.dispose([x, w]);
  }
  assert.throws(() => matVec(tf.zeros([17, 4]) as tf.Tensor2D, tf.zeros([3, 4]) as tf.Tensor2D), /17 rows, at most 16/);
});

test('a few rows times several weights side by side (q, k, v unstacked) equals the concatenation of the products', async () => {
  // [M, K, rows of each weight]: vec4 and scalar K, boundaries inside a workgroup's 8 columns.
  const cases: Array<[number, number, number[]]> = [[2, 64, [13, 5, 5]], [9, 17, [30, 11]], [1, 36, [8, 8, 8]]];
  for (const [m, k, rows] of cases) {
    const x = randn([m, k], m + k) as tf.Tensor2D;
    const ws = rows.map((n, i) => randn([n, k], k + n + i) as tf.Tensor2D);
    await close(`${m}x${k}x[${rows.join(', ')}]`, matVecConcat(x, ws), tf.concat(ws.map((w) => tf.matMul(x, w, false, true)), 1));
    tf.dispose([x, ...ws]);
  }
  const x = tf.zeros([2, 4]) as tf.Tensor2D;
  assert.throws(() => matVecConcat(x, [1, 2, 3, 4].map(() => x)), /matvec: 4 weights, 1 to 3/);
  assert.throws(() => matVecConcat(x, [x, tf.zeros([3, 5]) as tf.Tensor2D]), /matvec: inner sizes differ: \[2, 4\] · \[3, 5\]ᵀ/);
  x.dispose();
});

test('SwiGLU applied as the few-rows product loads gate|up equals silu(gate)·up times the weight', async () => {
  for (const [m, k, n] of [[2, 64, 13], [9, 17, 30]] as Array<[number, number, number]>) {
    const gu = randn([m, 2 * k], m + k) as tf.Tensor2D;
    const w = randn([n, k], k + n) as tf.Tensor2D;
    const [gate, up] = tf.split(gu, 2, 1);
    await close(`${m}x${k}x${n}`, matVecSwiglu(gu, w), tf.matMul(tf.mul(tf.mul(gate!, tf.sigmoid(gate!)), up!), w, false, true));
    tf.dispose([gu, w, gate!, up!]);
  }
});

test('a block tile the GEMM cannot run (K steps of 6, more workgroup memory than the GPU has) is refused, naming what a tile needs', () => {
  const z = tf.zeros([4, 4]) as tf.Tensor2D;
  assert.throws(() => matMul(z, z, false, false, { bm: 64, bn: 64, bk: 6, tm: 4, tn: 4 }), /needs tm, tn, bk multiples of 4, bm\/tm and bn\/tn whole, at most 256 invocations/);
  const limit = webgpuBackend().device.limits.maxComputeWorkgroupStorageSize;
  const huge: MatMulTile = { bm: 128, bn: 128, bk: 64, tm: 8, tn: 8, buffers: 2 };
  assert.throws(() => matMul(z, z, false, false, huge), new RegExp(`needs 131072 bytes of workgroup memory, this GPU has ${limit}`));
  z.dispose();
});

test('gradients of both operands, for every transpose combination, equal tf.matMul\'s', async () => {
  const [m, k, n] = [37, 21, 45];
  for (const [ta, tb] of COMBOS) {
    const a = stored(m, k, ta, 11);
    const b = stored(k, n, tb, 12);
    const r = randn([m, n], 13);
    const loss = (f: (x: tf.Tensor2D, y: tf.Tensor2D) => tf.Tensor) => tf.grads((x: tf.Tensor, y: tf.Tensor) => tf.sum(tf.mul(f(x as tf.Tensor2D, y as tf.Tensor2D), r)))([a, b]);
    const got = loss((x, y) => matMul(x, y, ta, tb));
    const want = loss((x, y) => tf.matMul(x, y, ta, tb));
    await close(`dA ${ta ? 'T' : 'N'}${tb ? 'T' : 'N'}`, got[0]!, want[0]!);
    await close(`dB ${ta ? 'T' : 'N'}${tb ? 'T' : 'N'}`, got[1]!, want[1]!);
    tf.dispose([a, b, r, ...got, ...want]);
  }
});

test('the plan: the big tile once an output fills 128 of its workgroups (counting slices of K), the small one below; K split when an output has under 256 tiles and K is long', () => {
  const big = (splits: number) => ({ tile: BIG_TILE, splits });
  const small = (splits: number) => ({ tile: SMALL_TILE, splits });
  // Outputs that fill a GPU: one slice.
  assert.equal(planProduct(4800, 4096, 4096), big(1));
  assert.equal(planProduct(4096, 4096, 4096), big(1));
  assert.equal(planProduct(1024, 2048, 64), big(1));
  assert.equal(planProduct(8, 32001, 4096), small(1));
  // 120 big tiles: with a short K the small tile, with a long one three slices of the big tile.
  assert.equal(planProduct(1024, 1920, 64), small(1));
  assert.equal(planProduct(1024, 1920, 4096), big(3));
  // The medium shape's weight gradients (K = 4,096 tokens): o_proj's 16 tiles in 16 slices of 256, q|k|v's 48 in 6.
  assert.equal(planProduct(512, 512, 4096), big(16));
  assert.equal(planProduct(1536, 512, 4096), big(6));
  // Slices of at least 256 K values, at most 16 of them.
  assert.equal(planProduct(64, 64, 700), small(2));
  assert.equal(planProduct(64, 64, 100000), small(16));
  assert.equal(planProduct(32001, 100, 64), small(1));
});

test('a product split into slices of K equals tf.matMul: both tiles, every transpose combination, ragged K, vec4 and scalar rows', async () => {
  // [M, K, N] with K spanning several K steps, the last slice shorter than the others.
  const cases: Array<[TileChoice, number, [number, number, number]]> = [['small', 3, [3, 75, 7]], ['small', 4, [33, 131, 17]], ['small', 3, [8, 64, 36]], ['big', 2, [129, 45, 131]]];
  for (const [tile, splits, [m, k, n]] of cases) {
    for (const [ta, tb] of COMBOS) {
      const a = stored(m, k, ta, m + k);
      const b = stored(k, n, tb, k + n);
      const label = `${tile} ${m}x${k}x${n} ${ta ? 'T' : 'N'}${tb ? 'T' : 'N'} in ${splits}`;
      const split = await countGpuWork(() => matMul(a, b, ta, tb, tile, splits));
      // The product's slices, then their sum.
      assert.is(split.dispatches, 2, label);
      await close(label, split.result, tf.matMul(a, b, ta, tb));
      tf.dispose([a, b, split.result]);
    }
  }
  const z = tf.zeros([4, 4]) as tf.Tensor2D;
  assert.throws(() => matMul(z, z, false, false, 'small', 0), /matmul: splits must be a whole number >= 1, got 0/);
  z.dispose();
});

test('a weight gradient over many tokens (dW = dYᵀ·X, K = 600 tokens) runs in two slices and equals tf.matMul\'s', async () => {
  const x = randn([600, 20], 21) as tf.Tensor2D;
  const w = randn([24, 20], 22) as tf.Tensor2D;
  const r = randn([600, 24], 23);
  assert.equal(planProduct(24, 20, 600), { tile: SMALL_TILE, splits: 2 });
  // The product the gradient of x·Wᵀ takes for W: two slices, then their sum.
  const dW = await countGpuWork(() => matMul(r as tf.Tensor2D, x, true, false));
  assert.is(dW.dispatches, 2);
  await close('dYᵀ·X', dW.result, tf.matMul(r as tf.Tensor2D, x, true, false));
  const gradW = (f: (w: tf.Tensor2D) => tf.Tensor) => tf.grad((v: tf.Tensor) => tf.sum(tf.mul(f(v as tf.Tensor2D), r)))(w);
  const [got, want] = [gradW((v) => matMul(x, v, false, true)), gradW((v) => tf.matMul(x, v, false, true))];
  await close('dW', got, want);
  tf.dispose([x, w, r, dW.result, got, want]);
});

test('a clear error for operands that do not fit', () => {
  const a = tf.zeros([3, 4]) as tf.Tensor2D;
  const b = tf.zeros([5, 6]) as tf.Tensor2D;
  assert.throws(() => matMul(a, b), /matmul: inner sizes differ: \[3, 4\] · \[5, 6\]/);
  tf.dispose([a, b]);
});

runOnWebgpu(test);

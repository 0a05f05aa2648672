// TFLOP/s of tfjs-backend-webgpu's matMul against the WGSL GEMM (stages/lm/webgpu/matmul.ts) at 4096³ and the model's shapes.
//
//   node --import tsx bench/matmul.bench.ts [--trials N] [--other-tiles]
//
// Each shape runs as several products in a row before one host read (enough work that the read's latency does not
// count), by wall time, best of N trials after one that builds the kernels. The two products' outputs are compared
// on the GPU (largest |difference| relative to the largest |value|). On a software adapter every size is divided by
// 16 and one product runs per read: it checks that the bench runs, its rates mean nothing. With --other-tiles, on a
// GPU, each shape also runs on six other block tiles of the GEMM (two of them double-buffered), so one device run can
// say which tile to make the default. Where B is a weight (no Aᵀ), the WGSL GEMM also runs with B rounded to bfloat16
// and packed (stages/lm/webgpu/bf16.ts, PAUSEPIPE_FROZEN_WEIGHTS=bf16): its rate against the same B in float32, and
// whether the two gave the same bits.
import * as tf from '@tensorflow/tfjs-core';
import { parseArgs } from 'node:util';
import { initBackend, readTensor, webgpuAdapter } from '../stages/lm/backend.ts';
import { roundToBfloat16 } from '../stages/lm/optimizer.ts';
import { packBf16 } from '../stages/lm/webgpu/bf16.ts';
import { webgpuBackend } from '../stages/lm/webgpu/engine.ts';
import { matMul, planProduct, tileBytes, type MatMulTile } from '../stages/lm/webgpu/matmul.ts';

interface Case {
  label: string;
  m: number;
  k: number;
  n: number;
  transposeA: boolean;
  transposeB: boolean;
}

/** Tokens of a Mistral-7B pause-training batch (8 × 600) and of the medium bench shape (16 × 256). */
const TOKENS_7B = 4800;
const TOKENS_MEDIUM = 4096;

const CASES: Case[] = [
  { label: '4096³', m: 4096, k: 4096, n: 4096, transposeA: false, transposeB: false },
  { label: '7B gate/up x·Wᵀ', m: TOKENS_7B, k: 4096, n: 14336, transposeA: false, transposeB: true },
  { label: '7B down x·Wᵀ', m: TOKENS_7B, k: 14336, n: 4096, transposeA: false, transposeB: true },
  { label: '7B down dX = dY·W', m: TOKENS_7B, k: 4096, n: 14336, transposeA: false, transposeB: false },
  { label: '7B down dW = dYᵀ·X', m: 4096, k: TOKENS_7B, n: 14336, transposeA: true, transposeB: false },
  { label: '7B head x·Wᵀ (vocab 32,001)', m: TOKENS_7B, k: 4096, n: 32001, transposeA: false, transposeB: true },
  { label: 'medium up x·Wᵀ', m: TOKENS_MEDIUM, k: 512, n: 2048, transposeA: false, transposeB: true },
  { label: 'medium up dW = dYᵀ·X', m: 2048, k: TOKENS_MEDIUM, n: 512, transposeA: true, transposeB: false },
  { label: 'medium o dW = dYᵀ·X', m: 512, k: TOKENS_MEDIUM, n: 512, transposeA: true, transposeB: false },
];

const { values: args } = parseArgs({ options: { trials: { type: 'string', default: '3' }, 'other-tiles': { type: 'boolean', default: false } } });
const trials = Number(args.trials);
if (!Number.isInteger(trials) || trials < 1) {
  console.error(`matmul.bench: --trials must be a whole number >= 1, got ${args.trials}`);
  process.exit(2);
}

const info = await initBackend('webgpu');
if (info.name !== 'webgpu') {
  console.error(`matmul.bench: needs a WebGPU adapter; ${info.notice ?? `${info.name} started instead`}`);
  process.exit(2);
}
const adapter = await webgpuAdapter();
const software = adapter?.software ?? false;
console.log(`backend: ${info.device ?? adapter?.name ?? 'webgpu'}${software ? ', a software adapter: sizes / 16, rates meaningless' : ''}`);

/** A FLOP rate in the unit that keeps it readable. */
function rate(flops: number): string {
  return flops >= 1e12 ? `${(flops / 1e12).toFixed(2)} TFLOP/s` : `${(flops / 1e9).toFixed(2)} GFLOP/s`;
}

type Product = (a: tf.Tensor2D, b: tf.Tensor2D, ta: boolean, tb: boolean) => tf.Tensor2D;
const PRODUCTS: Array<[string, Product]> = [['tfjs', (a, b, ta, tb) => tf.matMul(a, b, ta, tb)], ['wgsl', (a, b, ta, tb) => matMul(a, b, ta, tb)]];
/** Other block tiles of the GEMM, tried on a GPU only (each is one more shader to compile), so one run can say which to make the default. */
const OTHER_TILES: MatMulTile[] = [
  { bm: 128, bn: 128, bk: 16, tm: 8, tn: 8 },
  { bm: 128, bn: 64, bk: 8, tm: 8, tn: 4 },
  { bm: 64, bn: 64, bk: 8, tm: 4, tn: 4 },
  { bm: 64, bn: 128, bk: 16, tm: 4, tn: 8 },
  // Two copies of the tiles in workgroup memory, one barrier a K step (16 KiB and 32 KiB).
  { bm: 128, bn: 128, bk: 8, tm: 8, tn: 8, buffers: 2 },
  { bm: 128, bn: 128, bk: 16, tm: 8, tn: 8, buffers: 2 },
];
const tileName = (t: MatMulTile) => `${t.bm}x${t.bn}x${t.bk}/${t.tm}x${t.tn}${t.buffers === 2 ? '+db' : ''}`;

/** Best seconds of `reps` products in a row and one read of the last, over `trials` timed trials after a warm-up. */
async function time(product: Product, a: tf.Tensor2D, b: tf.Tensor2D, c: Case, reps: number): Promise<number> {
  let best = Infinity;
  for (let trial = 0; trial <= trials; trial++) {
    const t0 = performance.now();
    const outs = Array.from({ length: reps }, () => product(a, b, c.transposeA, c.transposeB));
    // One element read: the queue runs in order, so it waits for every product without timing a large copy.
    const first = tf.slice(outs.at(-1)!, [0, 0], [1, 1]);
    await readTensor(first);
    const s = (performance.now() - t0) / 1e3;
    tf.dispose([first, ...outs]);
    if (trial > 0) best = Math.min(best, s);
  }
  return best;
}

/** The WGSL GEMM with B (a weight) in bfloat16, packed, against the same rounded B in float32. */
async function packedLine(c: Case, reps: number, flops: number): Promise<string> {
  const a = tf.randomNormal([c.m, c.k]) as tf.Tensor2D;
  const b = tf.tidy(() => roundToBfloat16(tf.randomNormal(c.transposeB ? [c.n, c.k] : [c.k, c.n])) as tf.Tensor2D);
  const packed = await packBf16(b);
  if (!packed) throw new Error('matmul.bench: a rounded B did not pack');
  const f32 = (reps * flops) / (await time((x, y, ta, tb) => matMul(x, y, ta, tb), a, b, c, reps));
  const bf16 = (reps * flops) / (await time((x, _y, ta, tb) => matMul(x, packed, ta, tb), a, b, c, reps));
  const same = tf.tidy(() => tf.all(tf.equal(matMul(a, packed, false, c.transposeB), matMul(a, b, false, c.transposeB))));
  const identical = (await readTensor(same))[0] === 1;
  tf.dispose([a, b, same]);
  packed.dispose();
  return `  wgsl with B packed as bfloat16: ${rate(bf16)} (${(bf16 / f32).toFixed(2)}× the float32 B's ${rate(f32)}), ` +
    `${identical ? 'the same bits' : 'DIFFERENT values'}`;
}

const scale = software ? 16 : 1;
for (const full of CASES) {
  const c = { ...full, m: Math.ceil(full.m / scale), k: Math.ceil(full.k / scale), n: Math.ceil(full.n / scale) };
  const flops = 2 * c.m * c.n * c.k;
  // About half a TFLOP of work per read on a GPU (0.05 s at 10 TFLOP/s), at least two products.
  const reps = software ? 1 : Math.max(2, Math.min(20, Math.round(0.5e12 / flops)));
  const a = tf.randomNormal(c.transposeA ? [c.k, c.m] : [c.m, c.k]) as tf.Tensor2D;
  const b = tf.randomNormal(c.transposeB ? [c.n, c.k] : [c.k, c.n]) as tf.Tensor2D;
  const rates = new Map<string, number>();
  for (const [name, product] of PRODUCTS) rates.set(name, (reps * flops) / (await time(product, a, b, c, reps)));
  const diff = tf.tidy(() => {
    const want = tf.matMul(a, b, c.transposeA, c.transposeB);
    return tf.div(tf.max(tf.abs(tf.sub(matMul(a, b, c.transposeA, c.transposeB), want))), tf.max(tf.abs(want)));
  });
  const rel = (await readTensor(diff))[0]!;
  tf.dispose([a, b, diff]);
  const [t, w] = [rates.get('tfjs')!, rates.get('wgsl')!];
  const plan = planProduct(c.m, c.n, c.k);
  const line = `matmul ${c.label}: ${c.m}×${c.k}×${c.n} ${c.transposeA ? 'T' : 'N'}${c.transposeB ? 'T' : 'N'}, ${reps} per read: ` +
    `tfjs ${rate(t)}, wgsl ${rate(w)} (${(w / t).toFixed(2)}×; ${tileName(plan.tile)}${plan.splits > 1 ? `, K in ${plan.splits} slices` : ''}), ` +
    `max diff ${rel.toExponential(1)} of max |C|`;
  console.log(line);
  if (!c.transposeA) console.log(await packedLine(c, reps, flops));
  if (args['other-tiles'] && !software) {
    const others: string[] = [];
    const limit = webgpuBackend().device.limits.maxComputeWorkgroupStorageSize;
    const tooBig = OTHER_TILES.filter((t) => tileBytes(t) > limit);
    for (const tile of OTHER_TILES.filter((t) => !tooBig.includes(t))) {
      const x = tf.randomNormal(c.transposeA ? [c.k, c.m] : [c.m, c.k]) as tf.Tensor2D;
      const y = tf.randomNormal(c.transposeB ? [c.n, c.k] : [c.k, c.n]) as tf.Tensor2D;
      const seconds = await time((p, q, ta, tb) => matMul(p, q, ta, tb, tile), x, y, c, reps);
      tf.dispose([x, y]);
      others.push(`${tileName(tile)} ${rate((reps * flops) / seconds)}`);
    }
    console.log(`  other wgsl tiles (bm x bn x bk / per invocation; +db = two copies): ${others.join(', ')}`);
    if (tooBig.length > 0) console.log(`  not tried (over this GPU's ${limit} bytes of workgroup memory): ${tooBig.map(tileName).join(', ')}`);
  }
}
process.exit(0);

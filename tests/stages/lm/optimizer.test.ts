// AdamW and gradient clipping against torch.optim.AdamW's documented update and torch's clip_grad_norm_, in float32 and pure bfloat16.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import * as tf from '@tensorflow/tfjs-core';
import { initBackend } from '../../../stages/lm/backend.ts';
import { AdamW, roundToBfloat16 } from '../../../stages/lm/optimizer.ts';
import { roundedToBfloat16 } from '../../../stages/lm/safetensors.ts';
import { peakTensorBytes } from '../../helpers/heap.ts';

const test = suite('optimizer');

test.before(async () => {
  await initBackend('wasm');
});

function vars(values: Record<string, number[]>): Map<string, tf.Variable> {
  return new Map(Object.entries(values).map(([name, v]) => [name, tf.variable(tf.tensor1d(v), true)]));
}

function grads(values: Record<string, number[]>): Map<string, tf.Tensor> {
  return new Map(Object.entries(values).map(([name, v]) => [name, tf.tensor1d(v)]));
}

function closeTo(actual: ArrayLike<number>, expected: number[], tol: number, what: string): void {
  assert.is(actual.length, expected.length, `${what}: length`);
  for (let i = 0; i < expected.length; i++) {
    const diff = Math.abs(actual[i]! - expected[i]!);
    assert.ok(diff <= tol * Math.max(1, Math.abs(expected[i]!)), `${what}[${i}]: ${actual[i]} vs ${expected[i]}`);
  }
}

/** torch.optim.AdamW's update written out in float64, one weight at a time (the reference the fused code must match). */
function torchAdamW(p: number[], gs: number[][], lr: number[], wd: number, maxNorm: number | null): number[] {
  const m = p.map(() => 0);
  const v = p.map(() => 0);
  const out = [...p];
  gs.forEach((g0, i) => {
    const t = i + 1;
    const norm = Math.sqrt(g0.reduce((s, x) => s + x * x, 0));
    const coef = maxNorm === null ? 1 : Math.min(1, maxNorm / (norm + 1e-6));
    const g = g0.map((x) => x * coef);
    for (let j = 0; j < out.length; j++) {
      out[j] = out[j]! * (1 - lr[i]! * wd);
      m[j] = m[j]! + (g[j]! - m[j]!) * (1 - 0.9);
      v[j] = v[j]! * 0.999 + g[j]! * g[j]! * (1 - 0.999);
      const denom = Math.sqrt(v[j]!) / Math.sqrt(1 - 0.999 ** t) + 1e-8;
      out[j] = out[j]! - (lr[i]! / (1 - 0.9 ** t)) * (m[j]! / denom);
    }
  });
  return out;
}

test('the first update moves every weight by lr times the sign of its gradient', async () => {
  const params = vars({ w: [1, -2, 0.5], b: [3] });
  const opt = new AdamW(params, { maxGradNorm: null });
  const g = grads({ w: [0.2, -3, 1e-3], b: [-0.7] });
  opt.apply(g, 0.1).dispose();
  closeTo(await params.get('w')!.data(), [0.9, -1.9, 0.4], 1e-6, 'w');
  closeTo(await params.get('b')!.data(), [3.1], 1e-6, 'b');
  assert.is(opt.step, 1);
  g.forEach((t) => t.dispose());
  params.forEach((v) => v.dispose());
  opt.dispose();
});

test('five steps with weight decay, a changing learning rate and clipping match torch.optim.AdamW', async () => {
  // Gradients of very different sizes so the clip (max norm 1) bites on some steps and not on others.
  const gs = [[3, 4, 0, 1], [0.3, -0.4, 0.1, 0], [-2, 0.5, 8, 1], [0.01, 0.02, -0.03, 0.04], [1, 1, 1, 1]];
  const lrs = [1e-2, 8e-3, 6e-3, 4e-3, 2e-3];
  const p0 = [0.5, -1.5, 2, 0.25];
  // Two variables, so the flat buffer's split is exercised: a = first three, b = last one.
  const params = vars({ a: p0.slice(0, 3), b: p0.slice(3) });
  const opt = new AdamW(params, { weightDecay: 0.1, maxGradNorm: 1.0 });
  const norms: number[] = [];
  for (let i = 0; i < gs.length; i++) {
    const g = grads({ a: gs[i]!.slice(0, 3), b: gs[i]!.slice(3) });
    const norm = opt.apply(g, lrs[i]!);
    norms.push((await norm.data())[0]!);
    norm.dispose();
    g.forEach((t) => t.dispose());
  }
  const expected = torchAdamW(p0, gs, lrs, 0.1, 1.0);
  closeTo([...(await params.get('a')!.data()), ...(await params.get('b')!.data())], expected, 1e-5, 'weights');
  // clip_grad_norm_ returns the norm before clipping.
  closeTo(norms, gs.map((g) => Math.hypot(...g)), 1e-6, 'norms');
  // Without the clip the result differs: the test would notice clipping silently switched off.
  const unclipped = torchAdamW(p0, gs, lrs, 0.1, null);
  assert.ok(Math.abs(unclipped[0]! - expected[0]!) > 1e-4, 'the clip changes the outcome of this sequence');
  params.forEach((v) => v.dispose());
  opt.dispose();
});

test('a variable without a gradient is updated as if its gradient were zero', async () => {
  const params = vars({ used: [1, 1], unused: [2] });
  const opt = new AdamW(params, { maxGradNorm: null });
  const g1 = grads({ used: [1, -1], unused: [1] });
  opt.apply(g1, 0.1).dispose();
  const g2 = grads({ used: [1, -1] });
  opt.apply(g2, 0.1).dispose();
  closeTo(await params.get('unused')!.data(), torchAdamW([2], [[1], [0]], [0.1, 0.1], 0, null), 1e-6, 'unused');
  [g1, g2].forEach((g) => g.forEach((t) => t.dispose()));
  params.forEach((v) => v.dispose());
  opt.dispose();
});

test('state exported after two steps and loaded into a fresh optimizer continues bit-exactly', async () => {
  const gs = [[0.5, -1], [2, 0.25], [-0.75, 1.5], [0.1, 0.1]];
  const run = async (splitAt: number | null): Promise<Float32Array> => {
    let params = vars({ w: [1, 2] });
    let opt = new AdamW(params, { weightDecay: 0.01 });
    for (let i = 0; i < gs.length; i++) {
      if (i === splitAt) {
        const state = await opt.exportState();
        const values = await params.get('w')!.data();
        opt.dispose();
        params.forEach((v) => v.dispose());
        params = new Map([['w', tf.variable(tf.tensor1d(values as Float32Array), true)]]);
        opt = new AdamW(params, { weightDecay: 0.01 });
        opt.loadState(state);
      }
      const g = grads({ w: gs[i]! });
      opt.apply(g, 1e-2).dispose();
      g.forEach((t) => t.dispose());
    }
    const out = (await params.get('w')!.data()) as Float32Array;
    params.forEach((v) => v.dispose());
    opt.dispose();
    return out;
  };
  assert.equal(Array.from(await run(2)), Array.from(await run(null)));
});

test('loading state for other variables is refused with the variable named', async () => {
  const params = vars({ w: [1, 2] });
  const opt = new AdamW(params);
  assert.throws(() => opt.loadState({ step: 3, expAvg: new Map([['w', new Float32Array(3)]]), expAvgSq: new Map([['w', new Float32Array(3)]]) }), /w has 3 values, the variable has 2/);
  assert.throws(() => opt.loadState({ step: 3, expAvg: new Map([['v', new Float32Array(2)]]), expAvgSq: new Map() }), /do not train now: v/);
  params.forEach((v) => v.dispose());
  opt.dispose();
});

test('a step leaves the number of live tensors unchanged', () => {
  const params = vars({ a: [1, 2, 3], b: [4] });
  const opt = new AdamW(params, { weightDecay: 0.1 });
  const g = grads({ a: [0.1, 0.2, 0.3], b: [0.4] });
  opt.apply(g, 1e-3).dispose();
  const before = tf.memory().numTensors;
  for (let i = 0; i < 3; i++) opt.apply(g, 1e-3).dispose();
  assert.is(tf.memory().numTensors, before);
  g.forEach((t) => t.dispose());
  params.forEach((v) => v.dispose());
  opt.dispose();
});

test('an optimizer with nothing to train is refused', () => {
  assert.throws(() => new AdamW(new Map()), /no trainable variables/);
});

/** float32 → bfloat16 by bits, round to nearest even: what torch's conversion does (its values: safetensors.test). */
function bf16(x: number): number {
  return roundedToBfloat16(new Float32Array([x]))[0]!;
}

/** A float32 from its bits. */
function fromBits(bits: number): number {
  return new Float32Array(new Uint32Array([bits >>> 0]).buffer)[0]!;
}

test('roundToBfloat16 rounds like the bit-level conversion: ties to even, binade edges, subnormals, signs', async () => {
  const edges = [
    0, -0, 1, -1, 1.5, 3.140625, 2 ** -126, 2 ** -130, -(2 ** -140), 2 ** 111 * 1.7, 65504, 1e-8, 5e-5,
    fromBits(0x3f808000), // 1 + 2^-8: a tie between 1 and 1 + 2^-7 → 1 (even)
    fromBits(0x3f818000), // 1 + 3·2^-8: a tie → 1 + 2^-6 (even)
    fromBits(0x3f808001), // just above the tie → up
    fromBits(0xbf808000), // negative tie → -1
    fromBits(0x3fffffff), // just below 2: rounds up into the next binade
    fromBits(0x407fffff), // just below 4
    fromBits(0x00008000), // a subnormal tie → 0 (even)
    fromBits(0x00018000), // a subnormal tie → 2 subnormal steps (even)
    fromBits(0x007fffff), // the largest subnormal → 2^-126
  ];
  // Random bit patterns over the whole range below 2^112, both signs.
  let seed = 12345;
  const random = Array.from({ length: 4000 }, () => {
    seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
    const exponent = (seed >>> 8) % 239; // 0..238: below 2^112
    seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
    return fromBits(((seed & 1) << 31) | (exponent << 23) | (seed >>> 9));
  });
  const input = [...edges, ...random];
  const t = tf.tensor1d(input);
  const out = roundToBfloat16(t);
  const got = Array.from(await out.data());
  const wrong = input.flatMap((x, i) => (Object.is(got[i], bf16(x)) ? [] : [`${x} → ${got[i]} (expected ${bf16(x)})`]));
  assert.equal(wrong, []);
  t.dispose();
  out.dispose();
});

test('roundToBfloat16 keeps NaN, infinities and magnitudes from 2^112 up', async () => {
  const input = [NaN, Infinity, -Infinity, 2 ** 112, -(2 ** 120) * 1.3];
  const t = tf.tensor1d(input);
  const out = roundToBfloat16(t);
  assert.equal(Array.from(await out.data()), Array.from(new Float32Array(input)));
  t.dispose();
  out.dispose();
});

/** torch.optim.AdamW on bfloat16 parameters, clip included, op by op with the result of each op rounded. */
function torchAdamWBf16(p: number[], gs: number[][], lr: number[], maxNorm: number): { weights: number[]; norms: number[] } {
  const m = p.map(() => 0);
  const v = p.map(() => 0);
  const out = p.map(bf16);
  const norms: number[] = [];
  gs.forEach((g0, i) => {
    const t = i + 1;
    const g1 = g0.map(bf16);
    const norm = bf16(Math.sqrt(g1.reduce((s, x) => s + x * x, 0)));
    norms.push(norm);
    const coef = Math.min(1, bf16(maxNorm / bf16(norm + 1e-6)));
    const g = g1.map((x) => bf16(x * coef));
    const stepSize = lr[i]! / (1 - 0.9 ** t);
    const bc2Sqrt = Math.sqrt(1 - 0.999 ** t);
    for (let j = 0; j < out.length; j++) {
      m[j] = bf16(m[j]! + (g[j]! - m[j]!) * (1 - 0.9));
      v[j] = bf16(bf16(v[j]! * 0.999) + g[j]! * g[j]! * (1 - 0.999));
      const denom = bf16(bf16(bf16(Math.sqrt(v[j]!)) / bc2Sqrt) + 1e-8);
      out[j] = bf16(out[j]! - stepSize * (m[j]! / denom));
    }
  });
  return { weights: out, norms };
}

test('in bfloat16 small updates round away: a weight moves only when the step exceeds half its spacing', async () => {
  // Spacing near 1 is 2^-7, so lr 1e-3 cannot move it; near 1e-3 the spacing is ~4e-6 and the step lands.
  const params = vars({ w: [1, -1, 0.001, -0.0005] });
  const opt = new AdamW(params, { maxGradNorm: null, bfloat16: ['w'] });
  const g = grads({ w: [0.3, -0.2, 0.1, -0.4] });
  opt.apply(g, 1e-3).dispose();
  const got = Array.from(await params.get('w')!.data());
  assert.equal(got.slice(0, 2), [1, -1]);
  assert.equal(got.slice(2), [bf16(0.001 - 1e-3), bf16(-0.0005 + 1e-3)]);
  g.forEach((t) => t.dispose());
  params.forEach((v) => v.dispose());
  opt.dispose();
});

test('five bfloat16 steps with clipping match torch\'s op-by-op rounding exactly, norms included', async () => {
  const gs = [[3, 4, 0.001, 1], [0.3, -0.4, 0.1, 0], [-2, 0.5, 8, 1], [0.01, 0.02, -0.03, 0.04], [1, 1, 1, 1]];
  const lrs = [1e-2, 8e-3, 6e-3, 4e-3, 2e-3];
  const p0 = [0.5, -1.5, 0.0123, 0.25].map(bf16);
  // One variable: clip_grad_norm_'s per-parameter bfloat16 norm is then the reference's single norm.
  const params = vars({ w: p0 });
  const opt = new AdamW(params, { maxGradNorm: 1.0, bfloat16: ['w'] });
  const norms: number[] = [];
  for (let i = 0; i < gs.length; i++) {
    const g = grads({ w: gs[i]! });
    const norm = opt.apply(g, lrs[i]!);
    norms.push((await norm.data())[0]!);
    norm.dispose();
    g.forEach((t) => t.dispose());
  }
  const expected = torchAdamWBf16(p0, gs, lrs, 1.0);
  assert.equal(Array.from(await params.get('w')!.data()), expected.weights);
  assert.equal(norms, expected.norms);
  // Every stored value is a bfloat16, the moments included.
  const state = await opt.exportState();
  for (const values of [...state.expAvg.values(), ...state.expAvgSq.values(), await params.get('w')!.data()]) {
    assert.equal(Array.from(values), Array.from(values).map(bf16));
  }
  params.forEach((v) => v.dispose());
  opt.dispose();
});

test('bfloat16 and float32 variables train side by side: only the named ones are rounded', async () => {
  const params = vars({ half: [0.3, 0.7], full: [0.3, 0.7] });
  const opt = new AdamW(params, { maxGradNorm: null, bfloat16: ['half'] });
  const g = grads({ half: [0.5, -0.25], full: [0.5, -0.25] });
  for (let i = 0; i < 3; i++) opt.apply(g, 1e-3).dispose();
  const half = Array.from(await params.get('half')!.data());
  const full = Array.from(await params.get('full')!.data());
  assert.equal(half, half.map(bf16));
  assert.not.equal(full, full.map(bf16));
  closeTo(full, torchAdamW([0.3, 0.7], [[0.5, -0.25], [0.5, -0.25], [0.5, -0.25]], [1e-3, 1e-3, 1e-3], 0, null), 1e-6, 'full');
  g.forEach((t) => t.dispose());
  params.forEach((v) => v.dispose());
  opt.dispose();
});

test('naming a variable that does not train as bfloat16 is refused', () => {
  const params = vars({ w: [1] });
  assert.throws(() => new AdamW(params, { bfloat16: ['v'] }), /bfloat16 names variables that do not train: v/);
  params.forEach((v) => v.dispose());
});

/**
 * The most bytes of tensor buffers an update holds at once beyond those held before it (weights, moments, gradients),
 * counted in flat copies of the trained weights: the largest model a CPU run trains in wasm's 4 GiB depends on it.
 */
async function peakCopies(opts: { bfloat16: boolean }): Promise<number> {
  const sizes = [3000, 5000, 2000];
  const total = sizes.reduce((a, b) => a + b, 0);
  const params = new Map(sizes.map((n, i) => [`w${i}`, tf.tidy(() => tf.variable(tf.randomNormal([n], 0, 1, 'float32', i), true))]));
  const optimizer = new AdamW(params, { maxGradNorm: 1, weightDecay: 0.1, bfloat16: opts.bfloat16 ? [...params.keys()] : [] });
  const g = new Map(sizes.map((n, i) => [`w${i}`, tf.randomNormal([n], 0, 1, 'float32', 10 + i)]));
  const { peak, result } = await peakTensorBytes(() => optimizer.apply(g, 1e-3));
  result.dispose();
  g.forEach((t) => t.dispose());
  params.forEach((v) => v.dispose());
  optimizer.dispose();
  return peak / (4 * total);
}

test('an update holds at most 4 flat copies of the trained weights at once in float32, 11 in bfloat16', async () => {
  // One tidy around the whole update held 18 and 57. The small rest is scalars (norms, the clipping coefficient).
  const float32 = await peakCopies({ bfloat16: false });
  assert.ok(float32 < 4.01, `float32: ${float32} copies`);
  const bfloat16 = await peakCopies({ bfloat16: true });
  assert.ok(bfloat16 < 11.01, `bfloat16: ${bfloat16} copies`);
});

test.run();

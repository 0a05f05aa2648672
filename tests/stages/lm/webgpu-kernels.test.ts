// Every fused WebGPU kernel against the tfjs-op implementation it replaces (ops.ts, optimizer.ts), values and gradients, on webgpu.
import * as tf from '@tensorflow/tfjs-core';
import * as assert from 'uvu/assert';
import {
  applyRope, attention as opsAttention, causalPaddingMask, crossEntropySum as opsCrossEntropySum, embedding as opsEmbedding, logSoftmax as opsLogSoftmax,
  MASK_VALUE, rmsNorm as opsRmsNorm, ropeTables, swiglu,
} from '../../../stages/lm/ops.ts';
import { initBackend, readTensor as values } from '../../../stages/lm/backend.ts';
import { AdamW, type AdamWOptions } from '../../../stages/lm/optimizer.ts';
import { IGNORE_INDEX } from '../../../stages/lm/types.ts';
import { FlatAdamW } from '../../../stages/lm/webgpu/adamw.ts';
import { appendToCache, attendCache, attention, attentionChoice, attentionLanes, attentionMeta, type AttentionShape, withAttention } from '../../../stages/lm/webgpu/attention.ts';
import { concatLast, splitLast, stackRows } from '../../../stages/lm/webgpu/concat.ts';
import { embedding, pauseEmbedding } from '../../../stages/lm/webgpu/embedding.ts';
import { emptyTensor } from '../../../stages/lm/webgpu/engine.ts';
import { crossEntropySum, logSoftmax, pauseLogProbs } from '../../../stages/lm/webgpu/loss.ts';
import { addRmsNorm, addRmsNormOnly, rmsNorm } from '../../../stages/lm/webgpu/norm.ts';
import { pickTokens } from '../../../stages/lm/webgpu/pick.ts';
import { swigluFused } from '../../../stages/lm/webgpu/swiglu.ts';
import { randn, rng } from '../../helpers/gradcheck.ts';
import { backendSuite, runOnWebgpu, useBackend } from '../../helpers/backends.ts';
import { withEnv } from '../../helpers/env.ts';
import { maxDiff } from '../../helpers/hf-fixtures.ts';

const test = backendSuite('webgpu kernels', 'webgpu');

/**
 * Both sides compute in float32 with different summation orders; over the few hundred terms of these shapes the
 * rounding differences stay near 1e-6, so 1e-4 leaves a wide margin yet fails any real mistake.
 */
const TOL = 1e-4;

async function close(label: string, got: tf.Tensor, want: tf.Tensor, keep?: (i: number) => boolean, tol = TOL): Promise<void> {
  assert.equal(got.shape, want.shape, `${label}: shape`);
  const d = maxDiff(await values(got), await values(want), keep);
  assert.ok(d <= tol, `${label}: max diff ${d}`);
}

/** Gradients of Σ f(...)·r for a fixed random r, so every output element carries a distinct weight. */
function gradsOf(f: (...xs: tf.Tensor[]) => tf.Tensor, xs: tf.Tensor[], seed: number): tf.Tensor[] {
  return tf.tidy(() => {
    const r = randn(f(...xs).shape, seed);
    return tf.grads((...a: tf.Tensor[]) => tf.sum(tf.mul(f(...a), r)))(xs);
  });
}

test('RMSNorm: values and gradients of x and the weight match ops.rmsNorm', async () => {
  const x = randn([3, 5, 96], 1);
  const w = randn([96], 2);
  await close('value', rmsNorm(x, w, 1e-6), opsRmsNorm(x, w, 1e-6));
  const got = gradsOf((a, b) => rmsNorm(a!, b!, 1e-6), [x, w], 3);
  const want = gradsOf((a, b) => opsRmsNorm(a!, b!, 1e-6), [x, w], 3);
  await close('dx', got[0]!, want[0]!);
  await close('dw', got[1]!, want[1]!);
});

test('residual RMSNorm: the sum and its norm, and the gradients of both addends and the weight, match add + ops.rmsNorm', async () => {
  const x = randn([4, 1100], 4);
  const d = randn([4, 1100], 5);
  const w = randn([1100], 6);
  const { sum, normed } = addRmsNorm(x, d, w, 1e-5);
  await close('sum', sum, tf.add(x, d));
  await close('norm', normed, opsRmsNorm(tf.add(x, d), w, 1e-5));
  await close('norm only', addRmsNormOnly(x, d, w, 1e-5), opsRmsNorm(tf.add(x, d), w, 1e-5));
  // Both outputs carry gradient: the sum (next residual stream) and the norm (next layer's input).
  const fused = (a: tf.Tensor, b: tf.Tensor, c: tf.Tensor) => {
    const out = addRmsNorm(a, b, c, 1e-5);
    return tf.concat([out.sum, tf.mul(out.normed, 3)], 1);
  };
  const plain = (a: tf.Tensor, b: tf.Tensor, c: tf.Tensor) => {
    const s = tf.add(a, b);
    return tf.concat([s, tf.mul(opsRmsNorm(s, c, 1e-5), 3)], 1);
  };
  const got = gradsOf((a, b, c) => fused(a!, b!, c!), [x, d, w], 7);
  const want = gradsOf((a, b, c) => plain(a!, b!, c!), [x, d, w], 7);
  for (const [i, name] of ['dx', 'dd', 'dw'].entries()) await close(name, got[i]!, want[i]!, undefined, 5e-4);
});

test('SwiGLU over the fused gate|up tensor: value and gradient match ops.swiglu', async () => {
  const gu = randn([6, 2 * 40], 8);
  const gate = tf.slice(gu, [0, 0], [6, 40]);
  const up = tf.slice(gu, [0, 40], [6, 40]);
  await close('value', swigluFused(gu), swiglu(gate, up));
  const [got] = gradsOf((a) => swigluFused(a!), [gu], 9);
  const [dg, du] = gradsOf((a, b) => swiglu(a!, b!), [gate, up], 9);
  await close('grad', got!, tf.concat([dg!, du!], 1));
});

test('embedding: rows and the table gradient (repeated ids summed in token order) match ops.embedding; an unknown id gives a NaN row', async () => {
  const table = randn([70, 24], 23);
  const ids = tf.tensor2d([[3, 69, 3, 0], [5, 3, 5, 12]], [2, 4], 'int32');
  await close('rows', embedding(ids, table), opsEmbedding(ids, table));
  const [got] = gradsOf((t) => embedding(ids, t!), [table], 24);
  const [want] = gradsOf((t) => opsEmbedding(ids, t!), [table], 24);
  await close('dtable', got!, want!);
  const row = await values(embedding(tf.tensor1d([70], 'int32'), table));
  assert.ok(row.every((v) => Number.isNaN(v)));
});

test('pause embedding: id V takes the pause row, the others the table\'s, bit for bit', async () => {
  const table = randn([70, 24], 25);
  const pauseRow = randn([1, 24], 26);
  const ids = tf.tensor2d([[3, 70, 69, 0], [70, 70, 5, 12]], [2, 4], 'int32');
  const want = tf.gather(tf.concat([table, pauseRow], 0), ids);
  assert.equal(await values(pauseEmbedding(ids, table, pauseRow)), await values(want));
});

interface Case {
  label: string;
  B: number;
  T: number;
  shape: AttentionShape;
  /** Per row, the first real position (left padding) and one past the last (right padding). */
  spans: Array<[number, number]>;
}

const CASES: Case[] = [
  { label: 'grouped heads, right padding, more rows than a tile', B: 2, T: 70, shape: { numHeads: 4, numKvHeads: 2, headDim: 16, window: 0 }, spans: [[0, 70], [0, 61]] },
  { label: 'left padding, one kv head for four query heads', B: 2, T: 9, shape: { numHeads: 4, numKvHeads: 1, headDim: 16, window: 0 }, spans: [[3, 9], [0, 9]] },
  { label: 'sliding window of 5', B: 1, T: 40, shape: { numHeads: 2, numKvHeads: 2, headDim: 16, window: 5 }, spans: [[0, 40]] },
];
// One head size throughout (the fixtures' 16): a CPU adapter compiles each kernel once per head size, slowly.

/** Rows of the RoPE table: more than any case's positions (a position past the table would read the sine half). */
const ROPE_ROWS = 160;

function maskOf(c: Case): tf.Tensor2D {
  const m = new Int32Array(c.B * c.T);
  c.spans.forEach(([lo, hi], b) => m.fill(1, b * c.T + lo, b * c.T + hi));
  return tf.tensor2d(m, [c.B, c.T], 'int32');
}

/** ops.ts's attention on the same inputs: q/k/v split from qkv, rotated, masked (window applied to the mask). */
function reference(qkv: tf.Tensor, c: Case, mask: tf.Tensor2D, cos: tf.Tensor2D, sin: tf.Tensor2D): tf.Tensor {
  const { numHeads: nh, numKvHeads: nkv, headDim: hd, window } = c.shape;
  const { B, T } = c;
  const heads = (t: tf.Tensor, n: number) => tf.transpose(tf.reshape(t, [B, T, n, hd]), [0, 2, 1, 3]) as tf.Tensor4D;
  const [q, k, v] = tf.split(qkv, [nh * hd, nkv * hd, nkv * hd], 2);
  const positions = tf.cast(tf.relu(tf.sub(tf.cumsum(tf.cast(mask, 'float32'), 1), 1)), 'int32') as tf.Tensor2D;
  let additive = causalPaddingMask(mask, T);
  if (window > 0) {
    const far = new Float32Array(T * T);
    for (let t = 0; t < T; t++) for (let j = 0; j < T; j++) if (t - j >= window) far[t * T + j] = MASK_VALUE;
    additive = tf.minimum(additive, tf.tensor4d(far, [1, 1, T, T]));
  }
  const out = opsAttention(applyRope(heads(q!, nh), cos, sin, positions), applyRope(heads(k!, nkv), cos, sin, positions), heads(v!, nkv), additive);
  return tf.reshape(tf.transpose(out, [0, 2, 1, 3]), [B, T, nh * hd]);
}

/** Rows that see at least one key: a left-padding row sees none, and its value is nobody's business. */
function seenRows(c: Case): (i: number) => boolean {
  const width = c.shape.numHeads * c.shape.headDim;
  return (i) => {
    const row = Math.floor(i / width);
    const b = Math.floor(row / c.T);
    return row % c.T >= c.spans[b]![0];
  };
}

/**
 * The lanes kernels (attention-lanes.ts) on the same cases, and on head sizes that split a row over 4 and 8 lanes:
 * 16 → 2 lanes of 8 values, 64 → 4 of 16, 128 → 8 of 16 (the software adapter's subgroups hold 8 invocations).
 */
const LANE_CASES: Array<Case & { lanes: number }> = [
  ...CASES.map((c) => ({ ...c, label: `lanes, ${c.label}`, lanes: 2 })),
  { label: 'lanes, 4 per row, grouped heads, left padding', B: 2, T: 37, shape: { numHeads: 4, numKvHeads: 2, headDim: 64, window: 0 }, spans: [[2, 37], [0, 30]], lanes: 4 },
  { label: 'lanes, 8 per row, sliding window of 9', B: 1, T: 21, shape: { numHeads: 2, numKvHeads: 1, headDim: 128, window: 9 }, spans: [[0, 21]], lanes: 8 },
  // More rows than a workgroup holds (64 rows of 4 lanes, 32 of 8): later blocks start their key and query loops late.
  { label: 'lanes, 4 per row, three row blocks, padding both sides', B: 2, T: 150, shape: { numHeads: 2, numKvHeads: 1, headDim: 64, window: 0 }, spans: [[5, 150], [0, 140]], lanes: 4 },
  { label: 'lanes, 8 per row, three row blocks, sliding window of 40', B: 1, T: 75, shape: { numHeads: 2, numKvHeads: 2, headDim: 128, window: 40 }, spans: [[0, 75]], lanes: 8 },
];

for (const c of [...CASES.map((c) => ({ ...c, lanes: 0 })), ...LANE_CASES]) {
  test(`attention (${c.label}): output and the qkv gradient match ops.ts's rope + attention`, async () => {
    const { cos, sin } = ropeTables(c.shape.headDim, ROPE_ROWS, 10000);
    const rope = tf.stack([cos, sin]);
    const width = (c.shape.numHeads + 2 * c.shape.numKvHeads) * c.shape.headDim;
    const qkv = randn([c.B, c.T, width], 10);
    const mask = maskOf(c);
    const meta = attentionMeta(mask);
    const keep = seenRows(c);
    // The loss weights only rows that see a key, so both sides' gradients are defined the same way.
    const weights = tf.tensor3d(Array.from({ length: c.B * c.T * c.shape.numHeads * c.shape.headDim }, (_, i) => (keep(i) ? 1 : 0)), [c.B, c.T, c.shape.numHeads * c.shape.headDim]);
    // The kernels are chosen when the forward pass records its attrs: both passes run inside the choice (synchronously).
    const [value, got] = withAttention(c.lanes > 0 ? 'lanes' : 'rows', () => {
      assert.is(attentionLanes(c.shape.headDim), c.lanes, 'invocations per row');
      return [attention(qkv, meta, rope, c.shape), gradsOf((x) => tf.mul(attention(x!, meta, rope, c.shape), weights), [qkv], 11)[0]!];
    });
    await close('value', value, reference(qkv, c, mask, cos, sin), keep);
    const [want] = gradsOf((x) => tf.mul(reference(x!, c, mask, cos, sin), weights), [qkv], 11);
    await close('dqkv', got, want!);
  });
}

test('PAUSEPIPE_ATTENTION picks the training kernels: rows by default and when empty, lanes when asked, an error naming the variable otherwise', async () => {
  await withEnv('PAUSEPIPE_ATTENTION', undefined, async () => {
    assert.is(attentionChoice(), 'rows');
    assert.is(attentionLanes(64), 0);
  });
  await withEnv('PAUSEPIPE_ATTENTION', '', async () => assert.is(attentionChoice(), 'rows'));
  await withEnv('PAUSEPIPE_ATTENTION', 'lanes', async () => {
    assert.is(attentionLanes(64), 4);
    // A head size whose lane shares would not be an even number of vec4s keeps the rows kernels.
    assert.is(attentionLanes(20), 0);
    assert.is(withAttention('rows', () => attentionLanes(64)), 0);
  });
  await withEnv('PAUSEPIPE_ATTENTION', 'flash', async () => {
    assert.throws(() => attentionChoice(), /PAUSEPIPE_ATTENTION must be rows or lanes, got 'flash'/);
  });
});

for (const choice of ['rows', 'lanes'] as const) {
  test(`the KV cache (${choice}): a prompt and a chunk of 3 appended and attended over, then single tokens the decode kernel writes itself, equal attention over the whole sequence`, async () => {
    const shape: AttentionShape = { numHeads: 4, numKvHeads: 2, headDim: 16, window: 0 };
    const B = 2;
    const T = 12;
    const chunks = [7, 3, 1, 1];
    const { cos, sin } = ropeTables(shape.headDim, ROPE_ROWS, 10000);
    const rope = tf.stack([cos, sin]);
    const width = (shape.numHeads + 2 * shape.numKvHeads) * shape.headDim;
    const qkv = randn([B, T, width], 12);
    // Row 0 is left-padded by two positions, as generation batches prompts of different lengths.
    const mask = tf.tensor2d([0, 0, ...Array(T - 2).fill(1), ...Array(T).fill(1)], [B, T], 'int32');
    const full = attention(qkv, attentionMeta(mask), rope, shape);
    const cache = { keys: emptyTensor([B, 2, 16, 16], 'float32'), values: emptyTensor([B, 2, 16, 16], 'float32') };
    const steps = withAttention(choice, () => {
      assert.is(attentionLanes(shape.headDim), choice === 'lanes' ? 2 : 0, 'invocations per row');
      const out: tf.Tensor[] = [];
      let past = 0;
      for (const n of chunks) {
        const part = tf.slice(qkv, [0, past, 0], [B, n, width]);
        const meta = attentionMeta(tf.slice(mask, [0, 0], [B, past + n]) as tf.Tensor2D);
        // A one-token step's attention kernel writes the new key and value itself; a longer one appends them first.
        if (n > 1) appendToCache(cache, part, meta, rope, past, shape);
        out.push(attendCache(cache, part, meta, rope, past, shape));
        past += n;
      }
      return out;
    });
    const joined = tf.concat(steps, 1);
    const perRow = T * shape.numHeads * shape.headDim;
    // Row 0's two padding positions see no key.
    await close('cached', joined, full, (i) => !(i < perRow && Math.floor(i / (shape.numHeads * shape.headDim)) < 2));
  });
}

test('cross-entropy: sum, count and the logits gradient match ops.crossEntropySum, ignored labels included', async () => {
  const logits = randn([7, 33], 13, 3) as tf.Tensor2D;
  const labels = tf.tensor1d([3, IGNORE_INDEX, 0, 32, 5, IGNORE_INDEX, 17], 'int32');
  const got = crossEntropySum(logits, labels);
  const want = opsCrossEntropySum(logits, labels);
  await close('sum', got.sum, want.sum);
  assert.is((await values(got.count))[0], 5);
  const [g] = tf.grads((x: tf.Tensor) => tf.mul(crossEntropySum(x as tf.Tensor2D, labels).sum, 1.5))([logits]);
  const [w] = tf.grads((x: tf.Tensor) => tf.mul(opsCrossEntropySum(x as tf.Tensor2D, labels).sum, 1.5))([logits]);
  await close('dlogits', g!, w!);
});

test('cross-entropy: a label outside the vocabulary makes the loss NaN rather than a wrong number', async () => {
  const { sum } = crossEntropySum(randn([2, 5], 14) as tf.Tensor2D, tf.tensor1d([1, 5], 'int32'));
  assert.ok(Number.isNaN((await values(sum))[0]));
});

test('log-softmax: value and gradient match ops.logSoftmax; the pause log-probs match the wrapper\'s tfjs-op combination', async () => {
  const x = randn([5, 300], 15, 4);
  await close('value', logSoftmax(x), opsLogSoftmax(x));
  const [g] = gradsOf((a) => logSoftmax(a!), [x], 16);
  const [w] = gradsOf((a) => opsLogSoftmax(a!), [x], 16);
  await close('grad', g!, w!);
  const ctrl = randn([5, 2], 17, 2);
  const bias = tf.tensor1d([0.25, -0.5]);
  const V = 299;
  const [pause, useLm] = tf.split(opsLogSoftmax(tf.add(ctrl, bias)), 2, -1);
  const want = tf.concat([tf.add(opsLogSoftmax(tf.slice(x, [0, 0], [5, V])), useLm!), pause!], -1);
  await close('pause log-probs (the head\'s bias added in the kernel)', pauseLogProbs(x, ctrl, bias, V, 0), want);
});

test('concatenation and split along the last axis, and stacked weights with gradients per weight', async () => {
  const a = randn([3, 4], 18);
  const b = randn([3, 6], 19);
  await close('concat', concatLast([a, b]), tf.concat([a, b], 1));
  const [pa, pb] = splitLast(tf.concat([a, b], 1), [4, 6]);
  await close('split a', pa!, a);
  await close('split b', pb!, b);
  const w1 = randn([5, 4], 20);
  const w2 = randn([2, 4], 21);
  await close('stacked', stackRows([w1, w2], true), tf.concat([w1, w2], 0));
  const [g1, g2] = gradsOf((x, y) => stackRows([x!, y!], true), [w1, w2], 22);
  const [r1, r2] = gradsOf((x, y) => tf.concat([x!, y!], 0), [w1, w2], 22);
  await close('grad 1', g1!, r1!);
  await close('grad 2', g2!, r2!);
});

test('token picking: greedy is tf.argMax with the first of equal maxima; a draw follows the row\'s uniform through the cumulative probabilities', async () => {
  const logProbs = tf.tensor2d([[0.5, 2, 2, -1], [-3, -2, -1, -0.5], [1, 1, 1, 1]], [3, 4]);
  assert.equal(Array.from(await values(pickTokens(logProbs, 0, null))), [1, 3, 0]);
  const uniform = tf.tensor2d([[0, 0, 0, 0]], [1, 4]);
  // Four equal probabilities: u in [0.25k, 0.25(k+1)) picks token k.
  const draws = await Promise.all([0.1, 0.3, 0.6, 0.99].map(async (u) => (await values(pickTokens(uniform, 1, Float32Array.of(u))))[0]));
  assert.equal(draws, [0, 1, 2, 3]);
  // A token of probability 0 (underflow at a low temperature) is never drawn, even by u = 0.
  const peaked = tf.tensor2d([[-1000, 0, -1000]], [1, 3]);
  assert.equal(Array.from(await values(pickTokens(peaked, 0.5, Float32Array.of(0)))), [1]);
});

/** Weights and gradients of a small optimizer problem, as host arrays (the same values on both backends). */
function problem(seed: number): { params: Float32Array[]; grads: Float32Array[][]; shapes: number[][] } {
  const shapes = [[3, 4], [5], [2, 2, 2]];
  const data = (shape: number[], s: number) => {
    const next = rng(s);
    return Float32Array.from({ length: shape.reduce((x, y) => x * y, 1) }, () => 2 * next() - 1);
  };
  return {
    shapes,
    params: shapes.map((s, i) => data(s, seed + i)),
    // The middle weight gets no gradient at step 2: AdamW treats it as zero.
    grads: [0, 1, 2].map((step) => shapes.map((s, i) => (step === 1 && i === 1 ? new Float32Array(0) : data(s, seed + 10 * (step + 1) + i)))),
  };
}

async function runAdamW(p: ReturnType<typeof problem>, opts: AdamWOptions): Promise<{ params: Float32Array[]; norms: number[]; m: Float32Array }> {
  const vars = new Map(p.params.map((v, i) => [`w${i}`, tf.variable(tf.tensor(v, p.shapes[i]!))]));
  const opt = new AdamW(vars, opts);
  const norms: number[] = [];
  for (const grads of p.grads) {
    const g = new Map(grads.flatMap((v, i) => (v.length === 0 ? [] : [[`w${i}`, tf.tensor(v, p.shapes[i]!)] as [string, tf.Tensor]])));
    const norm = opt.apply(g, 0.01);
    norms.push((await norm.data())[0]!);
    tf.dispose([norm, ...g.values()]);
  }
  const params = await Promise.all([...vars.values()].map(async (v) => Float32Array.from(await v.data() as Float32Array)));
  const state = await opt.exportState();
  opt.dispose();
  for (const v of vars.values()) v.dispose();
  return { params, norms, m: Float32Array.from([...state.expAvg.values()].flatMap((a) => [...a])) };
}

/** Whether x is a bfloat16 value (its float32 bits end in 16 zeros). */
const isBfloat16 = (x: number) => (new Uint32Array(Float32Array.of(x).buffer)[0]! & 0xffff) === 0;

test('AdamW over flat buffers: weights, moments and gradient norms of three clipped, decayed steps match optimizer.ts on wasm', async () => {
  const p = problem(30);
  for (const opts of [{ weightDecay: 0.1, maxGradNorm: 1 }, { weightDecay: 0, maxGradNorm: null }]) {
    await initBackend('wasm');
    const want = await runAdamW(p, opts);
    await useBackend('webgpu');
    const got = await runAdamW(p, opts);
    got.params.forEach((v, i) => assert.ok(maxDiff(v, want.params[i]!) < 1e-6, `${JSON.stringify(opts)} weight ${i}: ${maxDiff(v, want.params[i]!)}`));
    assert.ok(maxDiff(got.m, want.m) < 1e-6, `moments ${maxDiff(got.m, want.m)}`);
    assert.ok(maxDiff(got.norms, want.norms) < 1e-5, `norms ${got.norms} vs ${want.norms}`);
  }
});

test('AdamW in pure bfloat16 (every weight, or some beside float32 ones) rounds where optimizer.ts rounds: the same weights, moments and norms as on wasm', async () => {
  const p = problem(40);
  for (const bfloat16 of [['w0', 'w1', 'w2'], ['w0', 'w2']]) {
    const opts = { weightDecay: 0.1, maxGradNorm: 0.5, bfloat16 };
    await initBackend('wasm');
    const want = await runAdamW(p, opts);
    await useBackend('webgpu');
    const got = await runAdamW(p, opts);
    got.params.forEach((v, i) => {
      // Both round the same float32 values; an intermediate a last float32 bit apart may round to the next bfloat16.
      const off = v.filter((x, j) => x !== want.params[i]![j]).length;
      assert.ok(maxDiff(v, want.params[i]!) <= 2 ** -7, `${bfloat16.join(',')}: weight ${i} off by ${maxDiff(v, want.params[i]!)}`);
      assert.ok(off <= 1, `${bfloat16.join(',')}: weight ${i} differs in ${off} of ${v.length} elements`);
      if (bfloat16.includes(`w${i}`)) assert.ok(v.every(isBfloat16), `weight ${i} holds values that are not bfloat16`);
      else assert.not.ok(v.every(isBfloat16), `weight ${i} was rounded though it is float32`);
    });
    assert.ok(maxDiff(got.m, want.m) <= 2 ** -8 * Math.max(...want.m.map(Math.abs)), `moments ${maxDiff(got.m, want.m)}`);
    got.norms.forEach((n, i) => assert.ok(Math.abs(n - want.norms[i]!) <= 2 ** -8 * want.norms[i]!, `norm ${i}: ${n} vs ${want.norms[i]}`));
  }
});

test('AdamW\'s bfloat16 mode rounds weights to nearest even and leaves NaN a NaN', async () => {
  // lr 0 and no decay: the update leaves each weight as it was, so what is stored is its rounding.
  // 1 + 2⁻⁸ and 1 + 3·2⁻⁸ lie halfway between bfloat16 neighbours (ties go to the even one); 1 + 2⁻⁸ + 2⁻²³ is past halfway.
  const w = tf.variable(tf.tensor1d([1 + 2 ** -8, 1 + 3 * 2 ** -8, 1 + 2 ** -8 + 2 ** -23, -2.5, NaN]));
  const m = tf.variable(tf.zeros([5]));
  const v = tf.variable(tf.zeros([5]));
  const adamw = new FlatAdamW([{ variable: w, bf16: true }]);
  const norm = adamw.apply({ grads: [tf.zeros([5])], expAvg: m, expAvgSq: v, lr: 0, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0, maxGradNorm: 1, step: 1 });
  adamw.dispose();
  const got = Array.from(await values(w));
  assert.equal(got.slice(0, 4), [1, 1.015625, 1.0078125, -2.5]);
  assert.ok(Number.isNaN(got[4]));
  assert.is((await values(norm))[0], 0);
  tf.dispose([w, m, v, norm]);
});

runOnWebgpu(test);

// Every op of stages/lm/ops.ts against a naive reference (values) and against finite differences (gradients), on wasm.
import * as tf from '@tensorflow/tfjs-core';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { initBackend } from '../../../stages/lm/backend.ts';
import {
  applyRope, attention, causalPaddingMask, crossEntropySum, eachFlatPiece, embedding, linear, logSoftmax, MASK_VALUE, OPS_TUNING,
  rmsNorm, ropeTables, swiglu, transposeWeight,
} from '../../../stages/lm/ops.ts';
import { presetConfig } from '../../../stages/lm/config.ts';
import { createModel } from '../../../stages/lm/model.ts';
import { AdamW } from '../../../stages/lm/optimizer.ts';
import { peakTensorBytes } from '../../helpers/heap.ts';
import { IGNORE_INDEX, type KvCache } from '../../../stages/lm/types.ts';
import { gradCheck, maxAbsDiff, randn } from '../../helpers/gradcheck.ts';

const ops = suite('ops');

ops.before(async () => {
  const info = await initBackend('wasm');
  assert.ok(info.name === 'wasm' || info.name === 'cpu', `tests run on wasm (or cpu), got ${info.name}`);
});

/**
 * Gradient-check tolerance. float32 has a relative precision of 6e-8; the loss L = Σ r·f sums at most a few hundred
 * terms of order 1, so its rounding error is about 1e-6 and a central difference with eps = 1e-2 carries about
 * 1e-6 / 2e-2 = 5e-5 of it, while the truncation error (eps²/6)·|f'''| is about 2e-5 for these smooth functions of
 * inputs of order 1. Measured worst case over all ops here: 1e-4 (smaller eps only grows the rounding part:
 * 8e-4 at eps = 1e-3). 5e-4 absolute plus 0.2% of the gradient keeps a 5× margin over that, yet catches a
 * gradient that is off by 1% anywhere it is larger than about 0.1.
 */
const TOL = { eps: 1e-2, atol: 5e-4, rtol: 2e-3 };

/** A way the ops can compute: host copies (what wasm and cpu use) or plain kernels (what GPUs use). */
interface Path {
  label: string;
  hostCopies: 'auto' | 'never';
  blockedMinWork: number;
}

const HOST: Path = { label: 'host', hostCopies: 'auto', blockedMinWork: 65536 };
const KERNELS: Path = { label: 'kernels', hostCopies: 'never', blockedMinWork: Infinity };
/** Attention has a third: per-(batch, kv head) rank-2 blocks, forced here by a zero threshold. */
const ATTENTION_PATHS: Path[] = [{ label: 'host blocked', hostCopies: 'auto', blockedMinWork: 0 }, { ...HOST, label: 'host batched', blockedMinWork: Infinity }, KERNELS];

/** Runs `body` once per path, restoring the tuning afterwards. */
function eachPath(paths: Path[], body: (label: string) => void): void {
  const saved = { ...OPS_TUNING };
  try {
    for (const path of paths) {
      OPS_TUNING.hostCopies = path.hostCopies;
      OPS_TUNING.blockedMinWork = path.blockedMinWork;
      tf.tidy(() => body(path.label));
    }
  } finally {
    Object.assign(OPS_TUNING, saved);
  }
}

function expectGrad(name: string, f: (...xs: tf.Tensor[]) => tf.Tensor, inputs: tf.Tensor[], wrt: number[]): void {
  const res = gradCheck(f, inputs, wrt, TOL);
  assert.ok(res.checked > 0, `${name}: nothing checked`);
  assert.ok(res.worst <= 1, `${name}: gradient off at ${res.where} (${res.worst.toFixed(2)}× the tolerance)`);
}

function expectClose(actual: tf.Tensor, expected: tf.Tensor | ArrayLike<number>, tol = 1e-5, what = 'value'): void {
  const e = expected instanceof tf.Tensor ? expected.dataSync() : expected;
  if (expected instanceof tf.Tensor) assert.equal(actual.shape, expected.shape, `${what}: shape`);
  const d = maxAbsDiff(actual.dataSync(), e);
  assert.ok(d <= tol, `${what}: max abs diff ${d} > ${tol}`);
}

ops('linear matches x·Wᵀ + b for rank-3 input with HF [out, in] weights', () => {
  eachPath([HOST, KERNELS], (path) => {
    const x = randn([2, 3, 5], 1);
    const w = randn([4, 5], 2);
    const b = randn([4], 3);
    const y = linear(x, w, b);
    assert.equal(y.shape, [2, 3, 4]);
    const ref = tf.reshape(tf.add(tf.matMul(tf.reshape(x, [6, 5]), w, false, true), b), [2, 3, 4]);
    expectClose(y, ref);
    expectClose(linear(x, w), tf.reshape(tf.matMul(tf.reshape(x, [6, 5]), w, false, true), [2, 3, 4]));
  });
});

ops('linear rejects a weight whose input width differs', () => {
  tf.tidy(() => {
    assert.throws(() => linear(tf.zeros([2, 5]), tf.zeros([5, 4])), /does not fit input \[\.\.\., 5\]/);
  });
});

ops('linear gradients match finite differences for x, W and b, narrowing and widening', () => {
  eachPath([HOST, KERNELS], (path) => {
    const x = randn([2, 3, 5], 4);
    const b = randn([4], 6);
    // out < in and out > in take different transposes in the weight gradient
    const narrow = randn([4, 5], 5);
    const wide = randn([7, 5], 30);
    expectGrad(`linear+bias (${path})`, (x, w, b) => linear(x, w, b), [x, narrow, b], [0, 1, 2]);
    expectGrad(`linear narrowing (${path})`, (x, w) => linear(x, w), [x, narrow], [0, 1]);
    expectGrad(`linear widening (${path})`, (x, w) => linear(x, w), [x, wide], [0, 1]);
  });
});

ops('linear through a prepared transposeWeight computes the same values and gradients, and checks its shape', () => {
  eachPath([HOST, KERNELS], (path) => {
    const x = randn([2, 3, 5], 7);
    const w = randn([4, 5], 8);
    const b = randn([4], 9);
    const wT = transposeWeight(w);
    assert.equal(wT.shape, [5, 4]);
    expectClose(wT, tf.transpose(w), 0, `transposeWeight (${path})`);
    expectClose(linear(x, w, b, wT), linear(x, w, b), 0, `with bias (${path})`);
    expectClose(linear(x, w, undefined, wT), linear(x, w), 0, `without bias (${path})`);
    // The prepared transpose is not differentiated: the gradient goes to w, as without it.
    expectGrad(`linear+bias prepared (${path})`, (x, w, b) => linear(x, w, b, transposeWeight(w)), [x, w, b], [0, 1, 2]);
    assert.throws(() => linear(x, w, b, w), /linear: transposed weight \[4, 5\] must be \[5, 4\]/);
  });
});

/** BatchMatMul kernels that `f` runs, nested ones included (tf.profile records every kernel the engine runs). */
async function productsRun(f: () => tf.TensorContainer): Promise<number> {
  const profile = await tf.profile(f);
  return profile.kernels.filter((k) => k.name === 'BatchMatMul').length;
}

/** Whether two float32 tensors hold the same bits. */
function sameBits(a: tf.Tensor, b: tf.Tensor): boolean {
  const [x, y] = [a.dataSync() as Float32Array, b.dataSync() as Float32Array];
  return x.length === y.length && Buffer.compare(Buffer.from(x.buffer, x.byteOffset, x.byteLength), Buffer.from(y.buffer, y.byteOffset, y.byteLength)) === 0;
}

ops('linear computes no weight gradient for a weight that is not differentiated (a frozen one), and the same dx', async () => {
  const saved = { ...OPS_TUNING };
  try {
    for (const hostCopies of ['auto', 'never'] as const) {
      OPS_TUNING.hostCopies = hostCopies;
      const x = randn([6, 5], 11);
      const w = tf.variable(randn([4, 5], 12), false);
      const loss = (xi: tf.Tensor) => tf.sum(linear(xi, w));
      // Forward x·Wᵀ, then dx = dy·W: two products; dW would be a third.
      assert.is(await productsRun(() => tf.grad(loss)(x)), 2, `${hostCopies}: products for dx only`);
      const both = tf.grads((xi: tf.Tensor, wi: tf.Tensor) => tf.sum(linear(xi, wi)));
      assert.is(await productsRun(() => both([x, w])), 3, `${hostCopies}: products for dx and dW`);
      assert.ok(sameBits(tf.grad(loss)(x), both([x, w])[0]!), `${hostCopies}: dx alone and dx beside dW differ`);
      tf.dispose([x, w]);
    }
  } finally {
    Object.assign(OPS_TUNING, saved);
  }
});

ops('wasm: a rank-2 product gives the same bits with its operands swapped and transposed (what weightGrad relies on)', () => {
  tf.tidy(() => {
    for (const [n, out, inDim] of [[300, 7, 5], [300, 5, 7], [2144, 256, 64]] as const) {
      const dy = randn([n, out], 13) as tf.Tensor2D;
      const x = randn([n, inDim], 14) as tf.Tensor2D;
      const direct = tf.matMul(tf.transpose(dy), x); // [out, in]
      const swapped = tf.transpose(tf.matMul(tf.transpose(x), dy)); // [in, out]ᵀ
      assert.ok(sameBits(direct, swapped), `dyᵀ·x and (xᵀ·dy)ᵀ differ for N ${n}, out ${out}, in ${inDim}`);
    }
  });
});

ops('wasm: a batched product reads Bᵀ through the flag with the same bits as from a transposed copy', () => {
  tf.tidy(() => {
    // Decode steps' scores (one query row) and short training sequences' (several), both summed by tfjs's own loop.
    for (const [n, rows, S, hd] of [[8, 1, 70, 32], [6, 9, 60, 16]] as const) {
      const a = randn([n, rows, hd], 15) as tf.Tensor3D;
      const b = randn([n, S, hd], 16) as tf.Tensor3D;
      assert.ok(sameBits(tf.matMul(a, b, false, true), tf.matMul(a, tf.transpose(b, [0, 2, 1]))), `n ${n}, rows ${rows}, S ${S}`);
    }
  });
});

ops('embedding picks rows of the table', () => {
  eachPath([HOST, KERNELS], (path) => {
    const table = randn([7, 3], 7);
    const ids = tf.tensor2d([[0, 6, 2], [2, 2, 5]], [2, 3], 'int32');
    const e = embedding(ids, table);
    assert.equal(e.shape, [2, 3, 3]);
    expectClose(e, tf.gather(table, ids));
  });
});

ops('embedding table gradient sums repeated ids and matches finite differences', () => {
  eachPath([HOST, KERNELS], (path) => {
    const table = randn([6, 3], 8);
    const ids = tf.tensor2d([[1, 4, 1], [1, 0, 4]], [2, 3], 'int32');
    expectGrad(`embedding (${path})`, (ids, t) => embedding(ids, t), [ids, table], [1]);
    // dL/dtable with L = sum(e): row i gets the count of id i, rows never used stay 0
    const g = tf.grad((t: tf.Tensor) => tf.sum(embedding(ids, t)))(table);
    expectClose(g, [1, 1, 1, 3, 3, 3, 0, 0, 0, 0, 0, 0, 2, 2, 2, 0, 0, 0], 0);
  });
});

ops('embedding rejects float ids and ids outside the table', () => {
  tf.tidy(() => {
    assert.throws(() => embedding(tf.zeros([1, 2]), tf.zeros([3, 2])), /ids must be int32/);
    assert.throws(() => embedding(tf.tensor2d([[0, 3]], [1, 2], 'int32'), tf.zeros([3, 2])), /id 3 at position 1 is outside \[0, 3\)/);
  });
});

/** HF LlamaRMSNorm computed in float64 in plain JS. */
function rmsNormRef(x: Float32Array, w: Float32Array, H: number, eps: number): Float64Array {
  const out = new Float64Array(x.length);
  for (let r = 0; r < x.length / H; r++) {
    let ss = 0;
    for (let i = 0; i < H; i++) ss += x[r * H + i]! ** 2;
    const inv = 1 / Math.sqrt(ss / H + eps);
    for (let i = 0; i < H; i++) out[r * H + i] = w[i]! * x[r * H + i]! * inv;
  }
  return out;
}

ops('rmsNorm matches the Hugging Face formula', () => {
  eachPath([HOST, KERNELS], (path) => {
    const x = randn([2, 3, 8], 9);
    const w = randn([8], 10);
    const y = rmsNorm(x, w, 1e-5);
    assert.equal(y.shape, [2, 3, 8]);
    expectClose(y, rmsNormRef(x.dataSync() as Float32Array, w.dataSync() as Float32Array, 8, 1e-5));
  });
});

ops('rmsNorm gradients match finite differences for x and weight', () => {
  eachPath([HOST, KERNELS], (path) => {
    const x = randn([3, 6], 11);
    const w = randn([6], 12);
    expectGrad(`rmsNorm (${path})`, (x, w) => rmsNorm(x, w, 1e-5), [x, w], [0, 1]);
  });
});

ops('ropeTables follow HF inv_freq = 1/θ^(2i/d) with both halves repeated', () => {
  const { cos, sin } = ropeTables(8, 20, 10000);
  assert.equal(cos.shape, [20, 8]);
  const expectC = new Float64Array(160);
  const expectS = new Float64Array(160);
  for (let p = 0; p < 20; p++) {
    for (let j = 0; j < 8; j++) {
      const a = p / 10000 ** ((2 * (j % 4)) / 8);
      expectC[p * 8 + j] = Math.cos(a);
      expectS[p * 8 + j] = Math.sin(a);
    }
  }
  expectClose(cos, expectC, 1e-5, 'cos');
  expectClose(sin, expectS, 1e-5, 'sin');
  cos.dispose();
  sin.dispose();
});

ops('applyRope rotates pairs (i, i+d/2) by the angle of each row\'s own positions', () => {
  eachPath([HOST, KERNELS], (path) => {
    const { cos, sin } = ropeTables(4, 16, 10000);
    const x = randn([2, 3, 2, 4], 13); // [B, heads, T, hd]
    const pos = tf.tensor2d([[0, 1], [5, 9]], [2, 2], 'int32');
    const y = applyRope(x as tf.Tensor4D, cos, sin, pos);
    const xv = x.dataSync();
    const expected = new Float64Array(xv.length);
    const posv = [[0, 1], [5, 9]];
    for (let b = 0; b < 2; b++) {
      for (let h = 0; h < 3; h++) {
        for (let t = 0; t < 2; t++) {
          const o = ((b * 3 + h) * 2 + t) * 4;
          for (let i = 0; i < 2; i++) {
            const a = posv[b]![t]! / 10000 ** ((2 * i) / 4);
            const x1 = xv[o + i]!;
            const x2 = xv[o + i + 2]!;
            expected[o + i] = x1 * Math.cos(a) - x2 * Math.sin(a);
            expected[o + i + 2] = x2 * Math.cos(a) + x1 * Math.sin(a);
          }
        }
      }
    }
    expectClose(y, expected);
    expectGrad(`applyRope (${path})`, (x) => applyRope(x as tf.Tensor4D, cos, sin, pos), [x], [0]);
  });
});

/** Naive GQA attention with tfjs's own ops (batched matmuls, repeated kv heads). */
function attentionRef(q: tf.Tensor4D, k: tf.Tensor4D, v: tf.Tensor4D, mask: tf.Tensor4D): tf.Tensor {
  const [B, nh, , hd] = q.shape;
  const [, nkv, S] = k.shape;
  const rep = (x: tf.Tensor) => tf.reshape(tf.tile(tf.reshape(x, [B, nkv, 1, S, hd]), [1, 1, nh / nkv, 1, 1]), [B, nh, S, hd]);
  const scores = tf.add(tf.div(tf.matMul(q, rep(k), false, true), Math.sqrt(hd)), mask);
  return tf.matMul(tf.softmax(scores), rep(v));
}

ops('causalPaddingMask lets the last T queries see earlier unpadded positions only', () => {
  eachPath([HOST, KERNELS], (path) => {
    const m = causalPaddingMask(tf.tensor2d([[1, 1, 1, 1], [0, 1, 1, 1]], [2, 4], 'int32'), 2);
    assert.equal(m.shape, [2, 1, 2, 4]);
    const X = MASK_VALUE;
    assert.equal(Array.from(m.dataSync()), [0, 0, 0, X, 0, 0, 0, 0, X, 0, 0, X, X, 0, 0, 0]);
  });
});

ops('causalPaddingMask with a sliding window hides keys W or more positions back, counted in the padded sequence', () => {
  eachPath([HOST, KERNELS], (path) => {
    const X = MASK_VALUE;
    // Window 2 over 4 positions: query i sees i − 1 and i; row 1's position 0 is padding.
    const full = causalPaddingMask(tf.tensor2d([[1, 1, 1, 1], [0, 1, 1, 1]], [2, 4], 'int32'), 4, 2);
    assert.equal(Array.from(full.dataSync()), [
      0, X, X, X, 0, 0, X, X, X, 0, 0, X, X, X, 0, 0,
      X, X, X, X, X, 0, X, X, X, 0, 0, X, X, X, 0, 0,
    ], path);
    // One query over a cache of 5 positions (decoding): it is position 4 and sees 3 and 4 only.
    const step = causalPaddingMask(tf.tensor2d([[1, 1, 1, 1, 1]], [1, 5], 'int32'), 1, 2);
    assert.equal(Array.from(step.dataSync()), [X, X, X, 0, 0], path);
    // A window as long as the sequence changes nothing.
    const wide = causalPaddingMask(tf.tensor2d([[1, 1, 1]], [1, 3], 'int32'), 3, 3);
    assert.equal(Array.from(wide.dataSync()), Array.from(causalPaddingMask(tf.tensor2d([[1, 1, 1]], [1, 3], 'int32'), 3).dataSync()), path);
  });
  assert.throws(() => causalPaddingMask(tf.tensor2d([[1, 1]], [1, 2], 'int32'), 2, 0), /sliding window 0 must be a positive integer/);
});

ops('attention with grouped kv heads matches the naive computation, with and without padding', () => {
  eachPath(ATTENTION_PATHS, (path) => {
    const q = randn([2, 4, 3, 4], 14) as tf.Tensor4D;
    const k = randn([2, 2, 3, 4], 15) as tf.Tensor4D;
    const v = randn([2, 2, 3, 4], 16) as tf.Tensor4D;
    const mask = causalPaddingMask(tf.tensor2d([[1, 1, 1], [0, 1, 1]], [2, 3], 'int32'), 3);
    const y = attention(q, k, v, mask);
    assert.equal(y.shape, [2, 4, 3, 4]);
    expectClose(y, attentionRef(q, k, v, mask), 1e-5, `${path} prefill`);
    // one new query over a cache of 5 positions, as in decoding
    const q1 = randn([2, 4, 1, 4], 17) as tf.Tensor4D;
    const k5 = randn([2, 2, 5, 4], 18) as tf.Tensor4D;
    const v5 = randn([2, 2, 5, 4], 19) as tf.Tensor4D;
    const m5 = causalPaddingMask(tf.tensor2d([[1, 1, 1, 1, 1], [0, 0, 1, 1, 1]], [2, 5], 'int32'), 1);
    expectClose(attention(q1, k5, v5, m5), attentionRef(q1, k5, v5, m5), 1e-5, `${path} decode`);
  });
});

ops('attention gradients for q, k and v match finite differences under a padded causal mask', () => {
  eachPath(ATTENTION_PATHS, (path) => {
    const q = randn([2, 4, 3, 4], 20);
    const k = randn([2, 2, 3, 4], 21);
    const v = randn([2, 2, 3, 4], 22);
    // Right padding: a left-padded row has a query that sees nothing, whose scores sit at MASK_VALUE where float32
    // spacing (64) hides any finite-difference step, so only rows with a visible key can be checked numerically.
    const mask = causalPaddingMask(tf.tensor2d([[1, 1, 1], [1, 1, 0]], [2, 3], 'int32'), 3);
    expectGrad(`attention (${path})`, (q, k, v) => attention(q as tf.Tensor4D, k as tf.Tensor4D, v as tf.Tensor4D, mask), [q, k, v], [0, 1, 2]);
  });
});

ops('attention gradients hold for queries that are the last of a longer key sequence', () => {
  eachPath(ATTENTION_PATHS, (path) => {
    const q = randn([1, 2, 2, 4], 27);
    const k = randn([1, 1, 5, 4], 28);
    const v = randn([1, 1, 5, 4], 29);
    const mask = causalPaddingMask(tf.tensor2d([[1, 1, 1, 1, 1]], [1, 5], 'int32'), 2);
    expectGrad(`attention with cache (${path})`, (q, k, v) => attention(q as tf.Tensor4D, k as tf.Tensor4D, v as tf.Tensor4D, mask), [q, k, v], [0, 1, 2]);
  });
});

ops('attention rejects heads that are not a multiple of kv heads', () => {
  tf.tidy(() => {
    const q = tf.zeros([1, 3, 2, 4]) as tf.Tensor4D;
    const k = tf.zeros([1, 2, 2, 4]) as tf.Tensor4D;
    assert.throws(() => attention(q, k, k, tf.zeros([1, 1, 2, 2]) as tf.Tensor4D), /heads a multiple of kv heads/);
  });
});

ops('swiglu is silu(gate)·up and its gradients match finite differences', () => {
  tf.tidy(() => {
    const g = randn([3, 5], 23);
    const u = randn([3, 5], 24);
    expectClose(swiglu(g, u), tf.mul(tf.mul(g, tf.sigmoid(g)), u));
    expectGrad('swiglu', swiglu, [g, u], [0, 1]);
  });
});

ops('logSoftmax matches tf.logSoftmax and its gradient matches finite differences', () => {
  tf.tidy(() => {
    const x = randn([3, 7], 25, 3);
    expectClose(logSoftmax(x), tf.logSoftmax(x));
    expectGrad('logSoftmax', logSoftmax, [x], [0]);
  });
});

ops('crossEntropySum sums −log p(label) over counted rows and skips IGNORE_INDEX', () => {
  eachPath([HOST, KERNELS], (path) => {
    const logits = randn([4, 6], 26, 2) as tf.Tensor2D;
    const labels = tf.tensor1d([3, IGNORE_INDEX, 0, 5], 'int32');
    const { sum, count } = crossEntropySum(logits, labels);
    const lv = logits.dataSync();
    let expected = 0;
    [3, -1, 0, 5].forEach((label, r) => {
      if (label < 0) return;
      let z = 0;
      for (let j = 0; j < 6; j++) z += Math.exp(lv[r * 6 + j]!);
      expected += Math.log(z) - lv[r * 6 + label]!;
    });
    assert.equal(sum.shape, []);
    assert.ok(Math.abs(sum.dataSync()[0]! - expected) <= 1e-5 * Math.max(1, Math.abs(expected)), `sum ${sum.dataSync()[0]} vs ${expected}`);
    assert.is(count.dataSync()[0], 3);
    expectGrad(`crossEntropySum (${path})`, (l) => crossEntropySum(l as tf.Tensor2D, labels).sum, [logits], [0]);
    // the ignored row gets no gradient at all
    const g = tf.grad((l: tf.Tensor) => crossEntropySum(l as tf.Tensor2D, labels).sum)(logits).dataSync();
    assert.equal(Array.from(g.slice(6, 12)), [0, 0, 0, 0, 0, 0]);
  });
});

ops('crossEntropySum rejects a label outside the vocabulary', () => {
  tf.tidy(() => {
    assert.throws(() => crossEntropySum(tf.zeros([2, 3]) as tf.Tensor2D, tf.tensor1d([0, 3], 'int32')), /label 3 at row 1 is outside \[0, 3\)/);
  });
});

ops('crossEntropySum stays finite when the label\'s logit is at float32 minimum', () => {
  tf.tidy(() => {
    const logits = tf.tensor2d([[0, 1, -3.4028234663852886e38]], [1, 3]);
    const { sum } = crossEntropySum(logits, tf.tensor1d([1], 'int32'));
    const expected = Math.log(1 + Math.E) - 1;
    assert.ok(Math.abs(sum.dataSync()[0]! - expected) < 1e-6, `sum ${sum.dataSync()[0]} vs ${expected}`);
    const ls = logSoftmax(logits).dataSync();
    assert.ok(Math.abs(ls[0]! - (0 - Math.log(1 + Math.E))) < 1e-6);
    assert.ok(Number.isFinite(ls[2]!), 'a float32-min logit gives a finite log-probability, as in torch');
  });
});

ops('eachFlatPiece hands over a flat buffer\'s pieces of the given sizes in turn, as tf.split cuts them, freeing each after use', () => {
  eachPath([HOST, KERNELS], (path) => {
    const x = tf.tensor1d([1, 2, 3, 4, 5, 6]);
    const seen: number[][] = [];
    const pieces: tf.Tensor[] = [];
    eachFlatPiece(x, [1, 3, 0, 2], (piece, i) => {
      assert.is(piece.dtype, 'float32');
      assert.is(i, seen.length);
      seen.push(Array.from(piece.dataSync()));
      pieces.push(piece);
    });
    assert.equal(seen, [[1], [2, 3, 4], [], [5, 6]], path);
    assert.ok(pieces.every((p) => p.isDisposed), `${path}: every piece freed`);
    assert.throws(() => eachFlatPiece(x, [2, 3], () => {}), /eachFlatPiece: sizes add up to 5, tensor is \[6\]/);
    x.dispose();
  });
});

ops('crossEntropySum of an all-ignored batch is 0 over 0 rows', () => {
  tf.tidy(() => {
    const { sum, count } = crossEntropySum(tf.ones([2, 3]) as tf.Tensor2D, tf.tensor1d([IGNORE_INDEX, IGNORE_INDEX], 'int32'));
    assert.is(sum.dataSync()[0], 0);
    assert.is(count.dataSync()[0], 0);
  });
});

ops.run();

const memory = suite('ops memory');

memory.before(async () => {
  await initBackend('wasm');
});

/** Live tensors after each of `steps` calls of `step` (after one warm-up call that may build caches). */
function liveTensorsAcross(steps: number, step: () => void): number[] {
  step();
  const counts: number[] = [];
  for (let i = 0; i < steps; i++) {
    step();
    counts.push(tf.memory().numTensors);
  }
  return counts;
}

memory('linear keeps no copy of a weight variable for the backward pass: a step training only what follows it holds none', async () => {
  const w = tf.variable(tf.randomNormal([256, 512], 0, 1, 'float32', 1), false); // 512 KiB, frozen
  const wT = transposeWeight(w);
  const x = tf.randomNormal([2, 512], 0, 1, 'float32', 2);
  const head = tf.variable(tf.randomNormal([2, 256], 0, 1, 'float32', 3), true);
  // As training only the LM head: the gradient never reaches the layers, whose weights the engine kept clones of.
  const step = () => tf.variableGrads(() => tf.sum(tf.mul(linear(x, w, undefined, wT), head)) as tf.Scalar, [head]);
  tf.dispose(Object.values(step().grads)); // a warm-up: wasm packs wT once, as it does for every weight it multiplies by
  const { peak, result } = await peakTensorBytes(step);
  const expected = tf.tidy(() => linear(x, w, undefined, wT));
  assert.equal(Array.from(await result.grads[head.name]!.data()), Array.from(await expected.data()));
  assert.ok(peak < w.size, `${peak} bytes held at once; a copy of the weight takes ${4 * w.size}`);
  tf.dispose([w, wT, x, head, expected, result.value, ...Object.values(result.grads)]);
});

memory('through a frozen weight variable, gradients are those of a saved one', async () => {
  const w = tf.variable(tf.randomNormal([6, 5], 0, 1, 'float32', 4), false);
  const x = tf.variable(tf.randomNormal([3, 5], 0, 1, 'float32', 5), true);
  const dy = tf.randomNormal([3, 6], 0, 1, 'float32', 6);
  const viaVariable = tf.variableGrads(() => tf.sum(tf.mul(linear(x, w), dy)) as tf.Scalar, [x]);
  const copy = tf.clone(w);
  const viaTensor = tf.grads((xi: tf.Tensor, wi: tf.Tensor) => tf.sum(tf.mul(linear(xi, wi), dy)))([x, copy]);
  assert.equal(Array.from(await viaVariable.grads[x.name]!.data()), Array.from(await viaTensor[0]!.data()));
  tf.dispose([w, x, dy, copy, viaVariable.value, ...Object.values(viaVariable.grads), ...viaTensor]);
});

memory('training steps of a decoder built from these ops leave the live tensor count unchanged', () => {
  eachPath(ATTENTION_PATHS, (path) => {
    const cfg = presetConfig('tiny', { vocabSize: 64, bosId: 0, eosId: 1, padId: null }, 32);
    const model = createModel(cfg, 3);
    const vars = model.trainableVariables();
    const opt = new AdamW(vars);
    const ids = tf.tensor2d(Array.from({ length: 2 * 16 }, (_, i) => (i * 7) % 64), [2, 16], 'int32');
    const batch = { inputIds: ids, attentionMask: tf.onesLike(ids) as tf.Tensor2D, labels: ids };
    const names = new Map([...vars].map(([saved, v]) => [v.name, saved]));
    const counts = liveTensorsAcross(3, () => {
      const { value, grads } = tf.variableGrads(() => model.lossParts(batch, { training: true }).loss, [...vars.values()]);
      opt.apply(new Map(Object.entries(grads).map(([n, g]) => [names.get(n)!, g])), 1e-3).dispose();
      tf.dispose([value, ...Object.values(grads)]);
    });
    assert.equal(counts, [counts[0], counts[0], counts[0]], `${path}: live tensors per step ${counts.join(', ')}`);
    opt.dispose();
    model.dispose();
  });
});

memory('decode steps with a KV cache leave only the grown cache behind', () => {
  eachPath(ATTENTION_PATHS, (path) => {
    const cfg = presetConfig('tiny', { vocabSize: 64, bosId: 0, eosId: 1, padId: null }, 64);
    const model = createModel(cfg, 4);
    const prompt = tf.tensor2d([[5, 6, 7, 8], [0, 0, 9, 10]], [2, 4], 'int32');
    const promptMask = tf.tensor2d([[1, 1, 1, 1], [0, 0, 1, 1]], [2, 4], 'int32');
    let { logProbs, cache } = model.decodeStep(prompt, promptMask, null);
    let mask = promptMask;
    const counts = liveTensorsAcross(4, () => {
      const next = tf.tidy(() => tf.reshape(tf.cast(tf.argMax(logProbs, -1), 'int32'), [2, 1])) as tf.Tensor2D;
      const grown = tf.tidy(() => tf.concat([mask, tf.ones([2, 1], 'int32')], 1)) as tf.Tensor2D;
      logProbs.dispose();
      if (mask !== promptMask) mask.dispose();
      mask = grown;
      ({ logProbs, cache } = model.decodeStep(next, mask, cache as KvCache));
      next.dispose();
    });
    assert.equal(counts, [counts[0], counts[0], counts[0], counts[0]], `${path}: live tensors per decode step ${counts.join(', ')}`);
    assert.is(cache.length, 4 + 5);
    tf.dispose([logProbs, mask, prompt, promptMask]);
    cache.dispose();
    model.dispose();
  });
});

memory.run();

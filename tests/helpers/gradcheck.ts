// Test helpers for tensor code: seeded random data, closeness checks and finite-difference gradient checks.
import * as tf from '@tensorflow/tfjs-core';
import { createRng } from '../../stages/data/random.ts';

/** Deterministic uniform [0, 1) generator (the data stages' mulberry32), so failures reproduce. */
export function rng(seed: number): () => number {
  return createRng(seed).next;
}

/** Standard-normal float32 tensor from a seed (Box–Muller). */
export function randn(shape: number[], seed: number, scale = 1): tf.Tensor {
  const next = rng(seed);
  const n = shape.reduce((a, b) => a * b, 1);
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    const u = Math.max(next(), 1e-12);
    out[i] = scale * Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * next());
  }
  return tf.tensor(out, shape, 'float32');
}

/** Largest absolute difference between two equally long arrays. */
export function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) throw new Error(`length ${a.length} vs ${b.length}`);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
}

export interface GradCheckResult {
  /** Worst |numeric − analytic| / (atol + rtol·|analytic|) over all checked coordinates; ≤ 1 passes. */
  worst: number;
  /** Where the worst one was, for the failure message. */
  where: string;
  checked: number;
}

/**
 * Compares tf.grads of L = Σ r ⊙ f(inputs) (r fixed random weights, so every output element matters) with
 * central differences of L computed in float64 from f's float32 outputs, for the inputs listed in `wrt`.
 */
export function gradCheck(
  f: (...xs: tf.Tensor[]) => tf.Tensor,
  inputs: tf.Tensor[],
  wrt: number[],
  opts: { eps: number; atol: number; rtol: number; seed?: number },
): GradCheckResult {
  const outShape = tf.tidy(() => f(...inputs).shape);
  const r = randn(outShape, opts.seed ?? 99);
  const rv = r.dataSync();
  const lossAt = (xs: tf.Tensor[]): number =>
    tf.tidy(() => {
      const y = f(...xs).dataSync();
      let s = 0;
      for (let i = 0; i < y.length; i++) s += y[i]! * rv[i]!;
      return s;
    });
  const analytic = tf.tidy(() =>
    tf.grads((...sel: tf.Tensor[]) => {
      const all = inputs.slice();
      wrt.forEach((j, k) => (all[j] = sel[k]!));
      return tf.sum(tf.mul(f(...all), r));
    })(wrt.map((j) => inputs[j]!)).map((g) => g.dataSync()),
  );
  let worst = 0;
  let where = '';
  let checked = 0;
  wrt.forEach((j, k) => {
    const base = inputs[j]!.dataSync().slice();
    for (let i = 0; i < base.length; i++) {
      const at = (delta: number): number => {
        const v = base.slice();
        v[i] = v[i]! + delta;
        const xs = inputs.slice();
        const moved = tf.tensor(v, inputs[j]!.shape, inputs[j]!.dtype);
        xs[j] = moved;
        const l = lossAt(xs);
        moved.dispose();
        return l;
      };
      const numeric = (at(opts.eps) - at(-opts.eps)) / (2 * opts.eps);
      const a = analytic[k]![i]!;
      const ratio = Math.abs(numeric - a) / (opts.atol + opts.rtol * Math.abs(a));
      checked++;
      if (ratio > worst) {
        worst = ratio;
        where = `input ${j} element ${i}: numeric ${numeric.toPrecision(6)} vs analytic ${a.toPrecision(6)}`;
      }
    }
  });
  r.dispose();
  return { worst, where, checked };
}

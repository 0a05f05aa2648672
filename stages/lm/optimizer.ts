// AdamW as torch.optim.AdamW, with torch's clip_grad_norm_ fused into the step, over one flat buffer of all trainable weights.
import * as tf from '@tensorflow/tfjs-core';
import { readTensor } from './backend.ts';
import { kernels } from './kernels.ts';
import { splitFlat } from './ops.ts';

export interface AdamWOptions {
  /** Exponential decay of the first moment (torch default 0.9). */
  beta1?: number;
  /** Exponential decay of the second moment (torch default 0.999). */
  beta2?: number;
  /** Added to the denominator for stability (torch default 1e-8). */
  eps?: number;
  /** Decoupled weight decay: every step multiplies the weights by 1 - lr·weightDecay (default 0, as the reference). */
  weightDecay?: number;
  /** Global L2 norm the gradients are clipped to, as clip_grad_norm_; null turns clipping off (default 1.0). */
  maxGradNorm?: number | null;
}

/** Optimizer state on the host, by saved weight name, for checkpoints. */
export interface AdamWState {
  /** Number of updates done so far (torch's `state['step']`). */
  step: number;
  expAvg: Map<string, Float32Array>;
  expAvgSq: Map<string, Float32Array>;
}

interface Slot {
  name: string;
  variable: tf.Variable;
  offset: number;
  size: number;
}

/**
 * torch.optim.AdamW (non-amsgrad, non-maximize) over a fixed set of variables. The moments of all variables live
 * in two flat buffers and every update runs as one sequence of about twenty elementwise ops over the concatenated
 * weights, however many variables train (LoRA trains hundreds of small ones); only the copy back is per variable.
 */
export class AdamW {
  readonly beta1: number;
  readonly beta2: number;
  readonly eps: number;
  readonly weightDecay: number;
  readonly maxGradNorm: number | null;
  private readonly slots: Slot[];
  private readonly total: number;
  private expAvg: tf.Variable; // [total]
  private expAvgSq: tf.Variable; // [total]
  private steps = 0;

  constructor(params: Map<string, tf.Variable>, opts: AdamWOptions = {}) {
    this.beta1 = opts.beta1 ?? 0.9;
    this.beta2 = opts.beta2 ?? 0.999;
    this.eps = opts.eps ?? 1e-8;
    this.weightDecay = opts.weightDecay ?? 0;
    this.maxGradNorm = opts.maxGradNorm === undefined ? 1.0 : opts.maxGradNorm;
    if (params.size === 0) throw new Error('AdamW: no trainable variables (every weight is frozen)');
    for (const [key, value] of Object.entries({ beta1: this.beta1, beta2: this.beta2 })) {
      if (!(value >= 0 && value < 1)) throw new Error(`AdamW: ${key} must be in [0, 1), got ${value}`);
    }
    if (!(this.eps >= 0)) throw new Error(`AdamW: eps must be >= 0, got ${this.eps}`);
    if (!(this.weightDecay >= 0)) throw new Error(`AdamW: weightDecay must be >= 0, got ${this.weightDecay}`);
    if (this.maxGradNorm !== null && !(this.maxGradNorm > 0)) throw new Error(`AdamW: maxGradNorm must be > 0 or null, got ${this.maxGradNorm}`);
    let offset = 0;
    this.slots = [...params].map(([name, variable]) => {
      if (variable.dtype !== 'float32') throw new Error(`AdamW: ${name} is ${variable.dtype}, only float32 weights train`);
      const slot = { name, variable, offset, size: variable.size };
      offset += variable.size;
      return slot;
    });
    this.total = offset;
    this.expAvg = tf.tidy(() => tf.variable(tf.zeros([this.total]), false));
    this.expAvgSq = tf.tidy(() => tf.variable(tf.zeros([this.total]), false));
  }

  /** Updates done so far. */
  get step(): number {
    return this.steps;
  }

  /**
   * One update with learning rate `lr`: clips `grads` (by saved name) to the global norm, then applies AdamW.
   * A variable without a gradient gets a zero one, as an embedding row no token used does in torch.
   * Returns the gradient norm before clipping (a scalar the caller owns), as clip_grad_norm_ returns it.
   */
  apply(grads: Map<string, tf.Tensor>, lr: number): tf.Scalar {
    for (const name of grads.keys()) {
      if (!this.slots.some((s) => s.name === name)) throw new Error(`AdamW: gradient for unknown variable ${name}`);
    }
    this.steps += 1;
    const t = this.steps;
    const { beta1, beta2, eps, weightDecay, maxGradNorm } = this;
    const fused = kernels().adamw;
    if (fused) {
      const slots = this.slots.map((s) => ({ variable: s.variable, grad: grads.get(s.name) }));
      return fused({ slots, expAvg: this.expAvg, expAvgSq: this.expAvgSq, lr, beta1, beta2, eps, weightDecay, maxGradNorm, step: t, bf16: false });
    }
    // Scalars in float64 on the host, as torch computes them in Python before touching the tensors.
    const stepSize = lr / (1 - beta1 ** t);
    const bc2Sqrt = Math.sqrt(1 - beta2 ** t);
    return tf.tidy(() => {
      const flat = (tensors: tf.Tensor[]) => (tensors.length === 1 ? tf.reshape(tensors[0]!, [-1]) : tf.concat(tensors.map((x) => tf.reshape(x, [-1]))));
      let g = flat(this.slots.map((s) => grads.get(s.name) ?? tf.zerosLike(s.variable)));
      // clip_grad_norm_: total = ||g||₂; g *= min(1, max / (total + 1e-6)).
      const norm = tf.sqrt(tf.sum(tf.square(g))) as tf.Scalar;
      if (maxGradNorm !== null) g = tf.mul(g, tf.minimum(tf.div(maxGradNorm, tf.add(norm, 1e-6)), 1));
      let p = flat(this.slots.map((s) => s.variable));
      if (weightDecay !== 0) p = tf.mul(p, 1 - lr * weightDecay);
      // exp_avg.lerp_(grad, 1 - β1); exp_avg_sq.mul_(β2).addcmul_(grad, grad, 1 - β2)
      const m = tf.add(this.expAvg, tf.mul(tf.sub(g, this.expAvg), 1 - beta1));
      const v = tf.add(tf.mul(this.expAvgSq, beta2), tf.mul(tf.square(g), 1 - beta2));
      // param.addcdiv_(exp_avg, sqrt(exp_avg_sq) / sqrt(bc2) + eps, value=-step_size)
      const denom = tf.add(tf.div(tf.sqrt(v), bc2Sqrt), eps);
      p = tf.sub(p, tf.mul(tf.div(m, denom), stepSize));
      this.expAvg.assign(m);
      this.expAvgSq.assign(v);
      this.scatter(p);
      return tf.keep(norm);
    });
  }

  /** Writes the flat updated weights back into the variables. */
  private scatter(flat: tf.Tensor): void {
    if (this.slots.length === 1) {
      this.slots[0]!.variable.assign(tf.reshape(flat, this.slots[0]!.variable.shape));
      return;
    }
    // splitFlat copies on the host where tensors live there: the wasm Slice kernel costs ~80 ns per element.
    const pieces = splitFlat(flat, this.slots.map((s) => s.size));
    this.slots.forEach((s, i) => s.variable.assign(tf.reshape(pieces[i]!, s.variable.shape)));
  }

  /** The moments and step count on the host, by saved name. */
  async exportState(): Promise<AdamWState> {
    const [m, v] = await Promise.all([readTensor(this.expAvg), readTensor(this.expAvgSq)]);
    const expAvg = new Map<string, Float32Array>();
    const expAvgSq = new Map<string, Float32Array>();
    for (const s of this.slots) {
      expAvg.set(s.name, Float32Array.from(m.subarray(s.offset, s.offset + s.size)));
      expAvgSq.set(s.name, Float32Array.from(v.subarray(s.offset, s.offset + s.size)));
    }
    return { step: this.steps, expAvg, expAvgSq };
  }

  /** Restores a state saved by exportState for the same variables (names and sizes must match). */
  loadState(state: AdamWState): void {
    const m = new Float32Array(this.total);
    const v = new Float32Array(this.total);
    const extra = [...state.expAvg.keys()].filter((n) => !this.slots.some((s) => s.name === n));
    if (extra.length > 0) throw new Error(`AdamW state holds variables that do not train now: ${extra.join(', ')}`);
    for (const s of this.slots) {
      const a = state.expAvg.get(s.name);
      const b = state.expAvgSq.get(s.name);
      if (!a || !b) throw new Error(`AdamW state has no moments for ${s.name}`);
      if (a.length !== s.size || b.length !== s.size) {
        throw new Error(`AdamW state for ${s.name} has ${a.length} values, the variable has ${s.size}`);
      }
      m.set(a, s.offset);
      v.set(b, s.offset);
    }
    if (!Number.isInteger(state.step) || state.step < 0) throw new Error(`AdamW state step must be a whole number >= 0, got ${state.step}`);
    tf.tidy(() => {
      this.expAvg.assign(tf.tensor1d(m));
      this.expAvgSq.assign(tf.tensor1d(v));
    });
    this.steps = state.step;
  }

  dispose(): void {
    this.expAvg.dispose();
    this.expAvgSq.dispose();
  }
}

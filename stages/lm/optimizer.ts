// AdamW as torch.optim.AdamW, with torch's clip_grad_norm_ fused into the step, over one flat buffer of all trainable weights; float32 or pure bfloat16.
import * as tf from '@tensorflow/tfjs-core';
import { readTensor } from './backend.ts';
import { kernels, type FusedAdamW } from './kernels.ts';
import { eachFlatPiece } from './ops.ts';

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
  /**
   * Saved names of the variables stored in bfloat16, as torch holds a model loaded with torch_dtype=bfloat16: their
   * gradients, moments and weights are rounded to bfloat16 after every tensor op where torch rounds them, with no
   * float32 master copy. The others (default: all) stay float32.
   */
  bfloat16?: Iterable<string>;
}

/** Optimizer state on the host, by saved weight name, for checkpoints. */
export interface AdamWState {
  /** Number of updates done so far (torch's `state['step']`). */
  step: number;
  expAvg: Map<string, Float32Array>;
  expAvgSq: Map<string, Float32Array>;
}

/** Magnitudes from here up pass roundToBfloat16 unchanged: its rounding constant would overflow float32 (bfloat16 and float32 share the range). */
const BF16_ROUNDING_LIMIT = 2 ** 112;

/**
 * Rounds float32 values to the nearest bfloat16 (8 significant bits), ties to even, as torch's float → bfloat16
 * conversion does, with float32 tensor ops only, so it runs unchanged on every backend (tfjs has no bitcast).
 * For |x| in [2^e, 2^(e+1)) the bfloat16 spacing is 2^(e-7), which is float32's spacing at c = 1.5·2^(e+16): the
 * float32 addition x + c therefore rounds x to that spacing (to nearest, ties to even, since c is an even multiple
 * of it), and subtracting c again is exact. 2^e comes from an exact ladder of power-of-two steps; below 2^-126 the
 * same constant gives bfloat16's subnormal spacing 2^-133. Zeros keep their sign, NaN stays NaN; magnitudes of 2^112 (≈5e33) and more
 * (and infinities) pass unchanged. A backend with bit operations could replace this by one kernel.
 */
export function roundToBfloat16(x: tf.Tensor): tf.Tensor {
  // Each step frees what the next no longer reads: this runs over the optimizer's flat buffers (every trained weight).
  const then = replacing;
  return tf.tidy(() => {
    const a = tf.abs(x);
    let binade = tf.fill(x.shape, 2 ** -126); // largest power of two <= |x|, at least 2^-126
    for (const k of [128, 64, 32, 16, 8, 4, 2, 1]) {
      // 2^128 itself is not a float32; two exact steps of 2^64 make it.
      const up = tf.tidy(() => (k === 128 ? tf.mul(tf.mul(binade, 2 ** 64), 2 ** 64) : tf.mul(binade, 2 ** k)));
      binade = then(binade, () => tf.where(tf.greaterEqual(a, up), up, binade));
      up.dispose();
    }
    const c = then(binade, () => tf.mul(binade, 1.5 * 2 ** 16));
    const rounded = then(c, () => tf.sub(tf.add(x, c), c));
    // (x + c) - c is +0 for a negative x that rounds to zero; x·0 carries x's sign, as torch keeps -0.
    const signed = then(rounded, () => tf.where(tf.equal(rounded, 0), tf.mul(x, 0), rounded));
    return tf.where(tf.greaterEqual(a, BF16_ROUNDING_LIMIT), x, signed);
  });
}

/** `make()` (its intermediates freed), then `old` freed: one buffer replaces another without both tidies' leftovers. */
function replacing(old: tf.Tensor, make: () => tf.Tensor): tf.Tensor {
  const made = tf.tidy(make);
  old.dispose();
  return made;
}

interface Slot {
  name: string;
  variable: tf.Variable;
  offset: number;
  size: number;
  /** Stored in bfloat16 (AdamWOptions.bfloat16). */
  bf16: boolean;
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
  /** Which elements of the flat buffers are bfloat16: null when none or all are (no mask needed). */
  private readonly bf16Mask: tf.Tensor | null; // [total] bool
  private steps = 0;
  /** The backend's own update (kernels.ts), made at the first step that takes it. */
  private fused: FusedAdamW | null = null;

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
    const bf16 = new Set(opts.bfloat16 ?? []);
    const unknown = [...bf16].filter((n) => !params.has(n));
    if (unknown.length > 0) throw new Error(`AdamW: bfloat16 names variables that do not train: ${unknown.join(', ')}`);
    let offset = 0;
    this.slots = [...params].map(([name, variable]) => {
      if (variable.dtype !== 'float32') throw new Error(`AdamW: ${name} is ${variable.dtype}, only float32 weights train`);
      const slot = { name, variable, offset, size: variable.size, bf16: bf16.has(name) };
      offset += variable.size;
      return slot;
    });
    this.total = offset;
    const mixed = bf16.size > 0 && bf16.size < this.slots.length;
    this.bf16Mask = mixed
      ? tf.tidy(() => tf.cast(tf.concat(this.slots.map((s) => tf.fill([s.size], s.bf16 ? 1 : 0, 'int32'))), 'bool'))
      : null;
    this.expAvg = tf.tidy(() => tf.variable(tf.zeros([this.total]), false));
    this.expAvgSq = tf.tidy(() => tf.variable(tf.zeros([this.total]), false));
  }

  /** Updates done so far. */
  get step(): number {
    return this.steps;
  }

  /** Saved names of the variables kept in bfloat16. */
  get bfloat16Names(): string[] {
    return this.slots.filter((s) => s.bf16).map((s) => s.name);
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
      // The same update in three GPU programs, with the same per-weight norms and bfloat16 rounding points.
      this.fused ??= fused(this.slots.map((s) => ({ variable: s.variable, bf16: s.bf16 })));
      const update = { grads: this.slots.map((s) => grads.get(s.name)), expAvg: this.expAvg, expAvgSq: this.expAvgSq };
      return this.fused.apply({ ...update, lr, beta1, beta2, eps, weightDecay, maxGradNorm, step: t });
    }
    // Scalars in float64 on the host, as torch computes them in Python before touching the tensors.
    const stepSize = lr / (1 - beta1 ** t);
    const bc2Sqrt = Math.sqrt(1 - beta2 ** t);
    // Every op result torch writes into a bfloat16 tensor is rounded here too (identity for float32 storage).
    const store = (x: tf.Tensor) => this.toStorage(x);
    // Each flat buffer is made in a tidy of its own and freed once nothing later reads it: one tidy around the whole
    // update held every intermediate to its end (18 flat copies of the trained weights in float32, 57 in bfloat16),
    // which took 2.3 GB of wasm's 4 GiB when a CPU run trained every weight of a 23M-parameter model.
    const next = replacing;
    return tf.tidy(() => {
      const flat = (tensors: tf.Tensor[]) => (tensors.length === 1 ? tf.reshape(tensors[0]!, [-1]) : tf.concat(tensors.map((x) => tf.reshape(x, [-1]))));
      // A bfloat16 parameter's .grad is bfloat16.
      const perSlot = this.slots.map((s) => tf.tidy(() => {
        const raw = grads.get(s.name) ?? tf.zerosLike(s.variable);
        return s.bf16 ? roundToBfloat16(raw) : raw;
      }));
      const norm = tf.tidy(() => this.gradNorm(perSlot));
      let g = tf.tidy(() => flat(perSlot));
      // The caller's gradients stay; the copies made here (rounded, zero) go.
      tf.dispose(perSlot.filter((x, i) => x !== grads.get(this.slots[i]!.name)));
      // clip_grad_norm_: g *= min(1, max / (total + 1e-6)), the coefficient in the total's precision.
      if (maxGradNorm !== null) {
        const allBf16 = this.slots.every((s) => s.bf16);
        const inNormPrecision = (x: tf.Tensor) => (allBf16 ? roundToBfloat16(x) : x);
        const coef = tf.tidy(() => tf.minimum(inNormPrecision(tf.div(maxGradNorm, inNormPrecision(tf.add(norm, 1e-6)))), 1));
        g = next(g, () => store(tf.mul(g, coef)));
      }
      // exp_avg.lerp_(grad, 1 - β1); exp_avg_sq.mul_(β2).addcmul_(grad, grad, 1 - β2)
      const step1 = tf.tidy(() => tf.mul(tf.sub(g, this.expAvg), 1 - beta1));
      this.expAvg.assign(next(step1, () => store(tf.add(this.expAvg, step1))));
      const step2 = next(g, () => tf.mul(tf.square(g), 1 - beta2));
      const decayed = tf.tidy(() => store(tf.mul(this.expAvgSq, beta2)));
      this.expAvgSq.assign(next(decayed, () => store(tf.add(decayed, step2))));
      step2.dispose();
      let p = tf.tidy(() => flat(this.slots.map((s) => s.variable)));
      if (weightDecay !== 0) p = next(p, () => store(tf.mul(p, 1 - lr * weightDecay)));
      // param.addcdiv_(exp_avg, (exp_avg_sq.sqrt() / sqrt(bc2)).add_(eps), value=-step_size)
      let denom = tf.tidy(() => store(tf.sqrt(this.expAvgSq)));
      denom = next(denom, () => store(tf.div(denom, bc2Sqrt)));
      denom = next(denom, () => store(tf.add(denom, eps)));
      const ratio = next(denom, () => tf.div(this.expAvg, denom));
      p = next(p, () => store(tf.sub(p, tf.mul(ratio, stepSize))));
      ratio.dispose();
      this.scatter(p);
      p.dispose();
      return tf.keep(norm);
    });
  }

  /** `x` [total] as the flat buffers store it: bfloat16 elements rounded, float32 ones unchanged. */
  private toStorage(x: tf.Tensor): tf.Tensor {
    if (this.bf16Mask) return tf.where(this.bf16Mask, roundToBfloat16(x), x);
    return this.slots[0]!.bf16 ? roundToBfloat16(x) : x;
  }

  /**
   * The total gradient norm as clip_grad_norm_ computes it: each parameter's norm in its own precision, then the
   * norm of those norms (in bfloat16 only when every parameter is bfloat16). Per parameter rather than over the
   * flat buffer: a float32 running sum over tens of thousands of small squares behind a large one (wasm's Sum is a
   * plain loop) drifted by 3e-5 relative from torch's norm in the LoRA trace, per parameter by 3e-6.
   */
  private gradNorm(perSlot: tf.Tensor[]): tf.Scalar {
    const norms = perSlot.map((g, i) => {
      const n = tf.sqrt(tf.sum(tf.square(g)));
      return this.slots[i]!.bf16 ? roundToBfloat16(n) : n;
    });
    const total = tf.sqrt(tf.sum(tf.square(tf.stack(norms))));
    return (this.slots.every((s) => s.bf16) ? roundToBfloat16(total) : total) as tf.Scalar;
  }

  /** Writes the flat updated weights back into the variables. */
  private scatter(flat: tf.Tensor): void {
    if (this.slots.length === 1) {
      this.slots[0]!.variable.assign(tf.reshape(flat, this.slots[0]!.variable.shape));
      return;
    }
    // eachFlatPiece copies on the host where tensors live there: the wasm Slice kernel costs ~80 ns per element.
    eachFlatPiece(flat, this.slots.map((s) => s.size), (piece, i) => {
      const s = this.slots[i]!;
      tf.tidy(() => s.variable.assign(tf.reshape(piece, s.variable.shape)));
    });
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
    this.bf16Mask?.dispose();
    this.fused?.dispose();
  }
}

// Differentiable transformer ops with hand-written gradients, fast on the wasm backend and safe on every backend.
//
// Why it looks like this (measured on tfjs-backend-wasm 4.22, one thread):
// - A rank-2 tf.matMul without transpose flags runs XNNPACK's kernels (~35 GFLOP/s); with a flag, or batched
//   (rank 3/4), tfjs's own loop runs it (~3 GFLOP/s, 10–30× slower); so every large product here is rank 2 on
//   contiguous operands.
// - Slice, Unpack and SplitV copy their whole input out of the wasm heap once per output piece (O(pieces²)), and
//   GatherV2 and broadcasting Equal cost ~40 ns per element; so on backends whose memory is host memory
//   (wasm, cpu) blocks and row gathers are done on a host copy in plain JS, where they are memcpy-fast. A 2-D
//   Transpose kernel, though, is ~1 ns per element on wasm, 4–10× faster than a JS copy out and back.
// - tf.gather's gradient needs UnsortedSegmentSum, which wasm lacks; the embedding gradient is a ScatterNd.
// - A rank-2 product on wasm is XNNPACK's: every output element is one float32 sum over the inner dimension in order,
//   whichever operand is A or B and however the rows or columns are cut, so those choices are free for speed and
//   never change a bit. XNNPACK packs the B operand before multiplying (cached per tensor: once for a weight, on every
//   call for an activation). Batched and transposed products take tfjs's own loop, which sums in blocks of 48: other
//   bits, so a product never moves between the two paths.
// GPU-like backends (webgpu, tensorflow) take the plain batched path, where few large kernels are what counts.
import * as tf from '@tensorflow/tfjs-core';
import { IGNORE_INDEX } from './types.ts';

/** Additive mask value for positions a query must not see (finite, so sums of masks never reach -inf). */
export const MASK_VALUE = -1e9;

/**
 * Knobs of the host (wasm/cpu) fast paths, exposed so tests can cover every path on a CPU-only machine.
 * - `hostCopies`: 'auto' uses host-side copies on wasm/cpu; 'never' takes the plain kernel path GPUs take.
 * - `blockedMinWork`: per-(batch, kv-head) rank-2 attention matmuls pay ~50 µs of overhead each, so they only
 *   beat one batched matmul when a block has at least this many multiply-adds (rows·inner·cols).
 */
export const OPS_TUNING: { hostCopies: 'auto' | 'never'; blockedMinWork: number } = { hostCopies: 'auto', blockedMinWork: 65536 };

type Save = (tensors: tf.Tensor[]) => void;
/** An input's gradient: computed already, or a function the backward pass calls only if that input needs one. */
type InputGrad = tf.Tensor | (() => tf.Tensor);
type GradResult = { value: tf.Tensor; gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => InputGrad[] };
type Op = (...inputs: tf.Tensor[]) => tf.Tensor;

/** The engine method tf.customGrad runs its function through (tfjs-core 4.22's Engine, present but not typed public). */
interface KernelFuncEngine {
  runKernelFunc(params: {
    forwardFunc: (backend: unknown, save: Save) => tf.Tensor;
    backwardsFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => Record<number, () => tf.Tensor>;
    inputs: Record<number, tf.Tensor>;
  }): tf.Tensor;
}

/**
 * tf.customGrad with the inputs as one array, so each op destructures what it takes, and with gradients that may be
 * functions. tf.customGrad computes every input's gradient; the engine's backward pass asks only for those of inputs
 * that depend on what is differentiated, so a function is never called for a frozen weight (the dW products of a
 * LoRA or pause-only step) nor for an input that no trained weight precedes. The values are the same either way.
 */
function customOp(f: (inputs: tf.Tensor[], save: Save) => GradResult): Op {
  return (...inputs: tf.Tensor[]) => {
    let gradFunc: GradResult['gradFunc'] | null = null;
    return (tf.engine() as unknown as KernelFuncEngine).runKernelFunc({
      forwardFunc: (_backend, save) => {
        const result = f(inputs, save);
        gradFunc = result.gradFunc;
        return result.value;
      },
      backwardsFunc: (dy, saved) => {
        const grads = gradFunc!(dy, saved);
        if (grads.length !== inputs.length) throw new Error(`customOp: ${grads.length} gradients for ${inputs.length} inputs`);
        return Object.fromEntries(grads.map((g, i) => [i, typeof g === 'function' ? g : () => g]));
      },
      inputs: Object.fromEntries(inputs.map((t, i) => [i, t])),
    });
  };
}

/**
 * Saves intermediates for the backward pass and frees the forward's own references. The engine saves a copy
 * (on wasm a real one), so keeping the originals until the step ends would hold every saved activation twice.
 */
function saveOwned(save: Save, keepAlso: tf.Tensor[], owned: tf.Tensor[]): void {
  save([...keepAlso, ...owned]);
  tf.dispose(owned);
}

/** Whether tensor memory is host memory, so a synchronous read is a plain copy (never on webgpu). */
function onHost(): boolean {
  if (OPS_TUNING.hostCopies === 'never') return false;
  const name = tf.getBackend();
  return name === 'wasm' || name === 'cpu';
}

function lastDim(t: tf.Tensor): number {
  return t.shape[t.shape.length - 1]!;
}

function shapeText(t: tf.Tensor): string {
  return `[${t.shape.join(', ')}]`;
}

/** Host copy of a float32 tensor (wasm/cpu only). */
function hostValues(t: tf.Tensor): Float32Array {
  return t.dataSync() as Float32Array;
}

/** `count` blocks [rows, cols] of a host array, each transposed to [cols, rows] and multiplied by `scale`. */
function transposeBlocks(v: Float32Array, count: number, rows: number, cols: number, scale = 1): Float32Array {
  const out = new Float32Array(count * rows * cols);
  const size = rows * cols;
  for (let b = 0; b < count; b++) {
    const base = b * size;
    for (let r = 0; r < rows; r++) {
      const src = base + r * cols;
      for (let c = 0; c < cols; c++) out[base + c * rows + r] = v[src + c]! * scale;
    }
  }
  return out;
}

/** Block i of a host array holding `count` row-major [rows, cols] matrices, as a tensor. */
function block(v: Float32Array, i: number, rows: number, cols: number): tf.Tensor2D {
  const size = rows * cols;
  return tf.tensor2d(v.subarray(i * size, (i + 1) * size), [rows, cols]);
}

/** Transpose of a 2-D tensor (a copy of the values, so every backend gives the same bits). */
function t2(x: tf.Tensor): tf.Tensor2D {
  return tf.transpose(x as tf.Tensor2D);
}

/** rows[ids[i]] of a [V, H] table for int32 ids of any shape → [...ids.shape, H], with a range check. */
function gatherRows(table: tf.Tensor, ids: tf.Tensor, what: string): tf.Tensor {
  const [V, H] = table.shape as [number, number];
  if (!onHost()) return tf.gather(table, ids);
  const idv = ids.dataSync() as Int32Array;
  const tv = hostValues(table);
  const out = new Float32Array(idv.length * H);
  for (let i = 0; i < idv.length; i++) {
    const id = idv[i]!;
    if (!(id >= 0 && id < V)) throw new Error(`${what}: id ${id} at position ${i} is outside [0, ${V})`);
    out.set(tv.subarray(id * H, (id + 1) * H), i * H);
  }
  return tf.tensor(out, [...ids.shape, H]);
}

/** Σ over rows of a [N, H] tensor → [H]; wasm reduces axis 0 through a slow transpose, so host backends sum in JS. */
function columnSums(x: tf.Tensor): tf.Tensor1D {
  const [N, H] = x.shape as [number, number];
  if (!onHost()) return tf.sum(x, 0);
  const v = hostValues(x);
  const out = new Float64Array(H);
  for (let r = 0; r < N; r++) {
    const o = r * H;
    for (let c = 0; c < H; c++) out[c] += v[o + c]!;
  }
  return tf.tensor1d(Float32Array.from(out));
}

/**
 * The pieces of a 1-D tensor with the given sizes, as tf.split(x, sizes) gives them, handed to `use` one at a time and
 * freed when it returns, so on host backends no more than one piece exists beside `x` (an optimizer's flat buffer
 * holds every trained weight). Linear in the size on wasm, whose SplitV copies the whole input once per piece (100
 * weights: 100 copies). Not differentiable: meant for optimizer state and other tensors off the gradient tape.
 */
export function eachFlatPiece(x: tf.Tensor, sizes: number[], use: (piece: tf.Tensor1D, index: number) => void): void {
  const total = sizes.reduce((a, b) => a + b, 0);
  if (x.rank !== 1 || x.size !== total) throw new Error(`eachFlatPiece: sizes add up to ${total}, tensor is ${shapeText(x)}`);
  if (!onHost()) {
    const pieces = tf.split(x as tf.Tensor1D, sizes) as tf.Tensor1D[];
    try {
      pieces.forEach((piece, i) => use(piece, i));
    } finally {
      tf.dispose(pieces);
    }
    return;
  }
  const v = x.dataSync();
  let at = 0;
  sizes.forEach((n, i) => {
    const piece = tf.tensor1d(v.subarray(at, at + n) as Float32Array | Int32Array, x.dtype);
    at += n;
    try {
      use(piece, i);
    } finally {
      piece.dispose();
    }
  });
}

/**
 * x [N, in] · Wᵀ (+ b) for w [out, in]. The forward multiplies by `wT` [in, out] when the caller holds a prepared
 * transpose (model.ts keeps one per weight), which also lets the wasm backend reuse the weights it packed for that
 * tensor; without one it transposes W on every call. `wT` is closed over, not an input: gradients go to w only.
 */
function linear2(x: tf.Tensor, w: tf.Tensor, b: tf.Tensor | undefined, wT: tf.Tensor | undefined): tf.Tensor {
  const op = customOp(([xi, wi, bi], save) => {
    // A weight variable outlives the step, so the backward pass reads it where it is: saving it would make the engine
    // keep a clone, on wasm a copy of every weight for as long as a training step runs, whatever trains.
    const persistent = wi instanceof tf.Variable;
    save(persistent ? [xi!] : [xi!, wi!]);
    return {
      value: tf.tidy(() => {
        const y = tf.matMul(xi as tf.Tensor2D, (wT ?? t2(wi!)) as tf.Tensor2D); // [N, out]
        return bi ? tf.add(y, bi) : y;
      }),
      gradFunc: (dy, [xs, saved]) => {
        const ws = persistent ? wi! : saved!;
        const grads = [
          () => tf.matMul(dy as tf.Tensor2D, ws as tf.Tensor2D), // dx [N, in]
          () => weightGrad(dy, xs!), // dW [out, in]
        ];
        return bi ? [...grads, () => columnSums(dy)] : grads;
      },
    };
  });
  return b ? op(x, w, b) : op(x, w);
}

/**
 * dW = dyᵀ·x [out, in] for dy [N, out], x [N, in]. Both activations are new each step, so the product's B operand is
 * packed on every call (wasm): B is the narrower one and the wider is transposed, which on wasm costs less than
 * packing it (a [2144, 256] B: 1.4 ms to pack, 0.3 ms to transpose). Either way each element is the same sum.
 */
function weightGrad(dy: tf.Tensor, x: tf.Tensor): tf.Tensor {
  if (lastDim(dy) >= lastDim(x)) return tf.matMul(t2(dy), x as tf.Tensor2D);
  return t2(tf.matMul(t2(x), dy as tf.Tensor2D));
}

/** Wᵀ [in, out] of a weight [out, in], materialised: what `linear` can reuse as `weightT`. */
export function transposeWeight(weight: tf.Tensor): tf.Tensor2D {
  if (weight.rank !== 2) throw new Error(`transposeWeight: weight ${shapeText(weight)} must be [out, in]`);
  return t2(weight);
}

/**
 * y = x·Wᵀ + b with weight in Hugging Face layout [out, in]; x [..., in] → [..., out]. `weightT`, when given, must
 * hold transposeWeight(weight)'s values: the forward pass then skips the transpose (decoding reuses it every step).
 */
export function linear(x: tf.Tensor, weight: tf.Tensor, bias?: tf.Tensor, weightT?: tf.Tensor): tf.Tensor {
  const inDim = lastDim(x);
  if (weight.rank !== 2 || weight.shape[1] !== inDim) {
    throw new Error(`linear: weight ${shapeText(weight)} does not fit input [..., ${inDim}] (expected [out, ${inDim}])`);
  }
  const outDim = weight.shape[0]!;
  if (bias && (bias.rank !== 1 || bias.shape[0] !== outDim)) throw new Error(`linear: bias ${shapeText(bias)} must be [${outDim}]`);
  return tf.tidy(() => {
    const x2 = tf.reshape(x, [-1, inDim]);
    if (weightT && (weightT.rank !== 2 || weightT.shape[0] !== inDim || weightT.shape[1] !== outDim)) {
      throw new Error(`linear: transposed weight ${shapeText(weightT)} must be [${inDim}, ${outDim}]`);
    }
    const y = linear2(x2, weight, bias, weightT);
    return tf.reshape(y, [...x.shape.slice(0, -1), outDim]);
  });
}

/** Table rows for flat ids [N] → [N, H], differentiable in the table only. */
function embeddingRows(ids: tf.Tensor, table: tf.Tensor): tf.Tensor {
  const [V, H] = table.shape as [number, number];
  const op = customOp(([t], save) => {
    save([ids]);
    return {
      value: gatherRows(t, ids, 'embedding'), // [N, H]
      // Scatter-add of the rows of dy into the table gradient; ScatterNd sums repeated ids.
      gradFunc: (dy, [idv]) => [tf.tidy(() => tf.scatterND(tf.reshape(idv!, [-1, 1]), dy, [V, H]))],
    };
  });
  return op(table);
}

/** Rows of `table` [V, H] for int32 `ids` of any shape → [...ids.shape, H]. */
export function embedding(ids: tf.Tensor, table: tf.Tensor): tf.Tensor {
  if (ids.dtype !== 'int32') throw new Error(`embedding: ids must be int32, got ${ids.dtype}`);
  if (table.rank !== 2) throw new Error(`embedding: table ${shapeText(table)} must be [vocab, hidden]`);
  return tf.tidy(() => tf.reshape(embeddingRows(tf.reshape(ids, [-1]), table), [...ids.shape, lastDim(table)]));
}

const rmsNormOps = new Map<number, Op>();

function rmsNormOp(eps: number): Op {
  let op = rmsNormOps.get(eps);
  if (op) return op;
  op = customOp(([x, w], save) => {
    // x [N, H]; y = (x·r)·w with r = 1/sqrt(mean(x²) + eps) [N, 1]
    const H = lastDim(x);
    const [value, xn, r] = tf.tidy(() => {
      const r = tf.rsqrt(tf.add(tf.mean(tf.square(x), -1, true), eps));
      const xn = tf.mul(x, r);
      return [tf.mul(xn, w), xn, r];
    });
    saveOwned(save, [w], [xn!, r!]);
    return {
      value: value!,
      gradFunc: (dy, [ws, xns, rs]) => [
        () => {
          const g = tf.mul(dy, ws!); // [N, H]
          // dx = r·(g − xn·mean(g·xn))
          const proj = tf.div(tf.sum(tf.mul(g, xns!), -1, true), H);
          return tf.mul(tf.sub(g, tf.mul(xns!, proj)), rs!);
        },
        () => columnSums(tf.mul(dy, xns!)),
      ],
    };
  });
  rmsNormOps.set(eps, op);
  return op;
}

/** Hugging Face LlamaRMSNorm in float32: weight · x / sqrt(mean(x², -1) + eps). */
export function rmsNorm(x: tf.Tensor, weight: tf.Tensor, eps: number): tf.Tensor {
  const H = lastDim(x);
  if (weight.rank !== 1 || weight.shape[0] !== H) throw new Error(`rmsNorm: weight ${shapeText(weight)} does not fit input [..., ${H}]`);
  const op = rmsNormOp(eps);
  return tf.tidy(() => tf.reshape(op(tf.reshape(x, [-1, H]), weight), x.shape));
}

/**
 * RoPE tables as Hugging Face's default rotary embedding computes them in float32:
 * inv_freq[i] = 1 / θ^(2i/d), angle = pos · inv_freq, both halves repeated (rotate_half layout).
 */
export function ropeTables(headDim: number, maxPos: number, theta: number): { cos: tf.Tensor2D; sin: tf.Tensor2D } {
  if (headDim % 2 !== 0) throw new Error(`ropeTables: head dimension ${headDim} must be even`);
  const half = headDim / 2;
  const f = Math.fround;
  const invFreq = new Float32Array(half);
  for (let i = 0; i < half; i++) invFreq[i] = f(1 / f(f(theta) ** f((2 * i) / headDim)));
  const cos = new Float32Array(maxPos * headDim);
  const sin = new Float32Array(maxPos * headDim);
  for (let p = 0; p < maxPos; p++) {
    for (let i = 0; i < half; i++) {
      const angle = f(p * invFreq[i]!);
      cos[p * headDim + i] = cos[p * headDim + i + half] = Math.cos(angle);
      sin[p * headDim + i] = sin[p * headDim + i + half] = Math.sin(angle);
    }
  }
  return { cos: tf.tensor2d(cos, [maxPos, headDim]), sin: tf.tensor2d(sin, [maxPos, headDim]) };
}

/**
 * Per backend and head size, [R, Rᵀ] with x·R = rotate_half(x) = cat(−x₂, x₁): a rank-2 matmul instead of split +
 * concat. Kept per backend: a process that switches backends (tests do) must not read another backend's tensor,
 * which for a WebGPU tensor read from wasm would be a synchronous GPU read.
 */
const rotations = new Map<string, [tf.Tensor2D, tf.Tensor2D]>();

function rotation(hd: number): [tf.Tensor2D, tf.Tensor2D] {
  const key = `${tf.getBackend()}/${hd}`;
  let r = rotations.get(key);
  if (!r || r[0].isDisposed) {
    const half = hd / 2;
    const m = new Float32Array(hd * hd);
    // out[j] = Σ_i x[i]·R[i, j]: out[j] = −x[j + half] for j < half, x[j − half] otherwise
    for (let j = 0; j < half; j++) {
      m[(j + half) * hd + j] = -1;
      m[j * hd + j + half] = 1;
    }
    const mt = transposeBlocks(m, 1, hd, hd);
    r = [tf.keep(tf.tensor2d(m, [hd, hd])), tf.keep(tf.tensor2d(mt, [hd, hd]))];
    rotations.set(key, r);
  }
  return r;
}

/** x·cos + rotate_half(x)·sin for x [B, h, T, hd] and c/s [B, 1, T, hd], differentiable in x only. */
function rope(x: tf.Tensor, c: tf.Tensor, s: tf.Tensor): tf.Tensor {
  const hd = lastDim(x);
  const [rot, rotT] = rotation(hd);
  const rotate = (t: tf.Tensor, m: tf.Tensor2D) => tf.reshape(tf.matMul(tf.reshape(t, [-1, hd]) as tf.Tensor2D, m), t.shape);
  const op = customOp(([xi], save) => {
    save([c, s]);
    return {
      value: tf.tidy(() => tf.add(tf.mul(xi, c), tf.mul(rotate(xi, rot), s))),
      gradFunc: (dy, [cs, ss]) => [tf.tidy(() => tf.add(tf.mul(dy, cs!), rotate(tf.mul(dy, ss!), rotT)))],
    };
  });
  return op(x);
}

/** Rotary position embedding of x [B, heads, T, hd] at int32 positions [B, T]. */
export function applyRope(x: tf.Tensor4D, cos: tf.Tensor2D, sin: tf.Tensor2D, positions: tf.Tensor2D): tf.Tensor4D {
  const [B, , T, hd] = x.shape;
  if (positions.shape[0] !== B || positions.shape[1] !== T) {
    throw new Error(`applyRope: positions ${shapeText(positions)} do not match x [${B}, heads, ${T}, ${hd}]`);
  }
  if (cos.shape[1] !== hd || sin.shape[1] !== hd) throw new Error(`applyRope: table width ${cos.shape[1]} differs from head dimension ${hd}`);
  if (positions.dtype !== 'int32') throw new Error(`applyRope: positions must be int32, got ${positions.dtype}`);
  return tf.tidy(() => {
    const c = tf.reshape(gatherRows(cos, positions, 'applyRope positions'), [B, 1, T, hd]);
    const s = tf.reshape(gatherRows(sin, positions, 'applyRope positions'), [B, 1, T, hd]);
    return rope(x, c, s) as tf.Tensor4D;
  });
}

/** Softmax backward: dS = P ⊙ (dP − Σ_j dP·P) over the last axis. */
function softmaxGrad(p: tf.Tensor, dp: tf.Tensor): tf.Tensor {
  return tf.mul(p, tf.sub(dp, tf.sum(tf.mul(dp, p), -1, true)));
}

interface AttentionDims {
  B: number;
  nh: number;
  nkv: number;
  T: number;
  S: number;
  hd: number;
  /** Query heads per kv head. */
  grp: number;
  /** Independent problems: B·nkv. */
  n: number;
  /** Query rows of one problem: grp·T (HF's repeat_kv makes the heads of a group consecutive). */
  rows: number;
}

/** Equal-shaped 2-D tensors one after another along the rows: tf.stack's values, in a quarter of its time on wasm. */
function stackRows(parts: tf.Tensor[]): tf.Tensor2D {
  return tf.concat(parts as tf.Tensor2D[], 0);
}

/**
 * Attention as n = B·nkv independent rank-2 problems, each [rows, hd]·[hd, S], computed block by block on a
 * host copy (wasm, cpu). Blocks are cut and transposed in JS; the scale is folded into the transposed blocks.
 */
function attentionBlocked(q: tf.Tensor, k: tf.Tensor, v: tf.Tensor, mask: tf.Tensor, d: AttentionDims, scale: number, save: Save): GradResult {
  const { B, nh, T, S, hd, n, rows } = d;
  const qv = hostValues(q);
  const kv = hostValues(k);
  const vv = hostValues(v);
  const probs = tf.tidy(() => {
    const kT = transposeBlocks(kv, n, S, hd, scale); // n × [hd, S]
    const scores = stackRows(Array.from({ length: n }, (_, i) => tf.matMul(block(qv, i, rows, hd), block(kT, i, hd, S))));
    return tf.softmax(tf.add(tf.reshape(scores, [B, nh, T, S]), mask));
  });
  const pv = hostValues(probs);
  saveOwned(save, [], [probs]);
  const value = tf.tidy(() =>
    tf.reshape(stackRows(Array.from({ length: n }, (_, i) => tf.matMul(block(pv, i, rows, S), block(vv, i, S, hd)))), [B, nh, T, hd]),
  );
  return {
    value,
    // The host copies qv, kv, vv, pv live in this closure as long as the tape keeps it.
    gradFunc: (dy, [ps]) =>
      tf.tidy(() => {
        const dyv = hostValues(dy);
        const vT = transposeBlocks(vv, n, S, hd); // n × [hd, S]
        const dyb = Array.from({ length: n }, (_, i) => block(dyv, i, rows, hd));
        const dP = stackRows(dyb.map((g, i) => tf.matMul(g, block(vT, i, hd, S)))); // [n·rows, S]
        const dsv = hostValues(softmaxGrad(ps!, tf.reshape(dP, ps!.shape)));
        const dsT = transposeBlocks(dsv, n, rows, S, scale); // n × [S, rows]
        const pT = transposeBlocks(pv, n, rows, S); // n × [S, rows]
        const dq = tf.mul(stackRows(Array.from({ length: n }, (_, i) => tf.matMul(block(dsv, i, rows, S), block(kv, i, S, hd)))), scale);
        const dk = stackRows(Array.from({ length: n }, (_, i) => tf.matMul(block(dsT, i, S, rows), block(qv, i, rows, hd))));
        const dv = stackRows(dyb.map((g, i) => tf.matMul(block(pT, i, S, rows), g)));
        return [tf.reshape(dq, q.shape), tf.reshape(dk, k.shape), tf.reshape(dv, v.shape)];
      }),
  };
}

/** The same computation as one batched matmul per product: what GPUs want, and cheaper on wasm for tiny blocks. */
function attentionBatched(q: tf.Tensor, k: tf.Tensor, v: tf.Tensor, mask: tf.Tensor, d: AttentionDims, scale: number, save: Save): GradResult {
  const { B, nh, T, S, hd, n, rows } = d;
  // GPU kernels take the transpose flags for free. On wasm a batched product (n > 1) runs tfjs's own loop, which reads
  // Bᵀ with the flag at no cost (and contiguously: 6× faster than on a transposed copy for a decode step's scores) and
  // sums in the same order either way; a single product (n = 1) is XNNPACK's, which wants B materialised, and sums
  // otherwise (see the top of this file). Aᵀ through the flag is no faster there: transposed explicitly.
  const host = onHost();
  const mmT = (a: tf.Tensor3D, b: tf.Tensor3D) => (host && n === 1 ? tf.matMul(a, tf.transpose(b, [0, 2, 1])) : tf.matMul(a, b, false, true));
  const mTm = (a: tf.Tensor3D, b: tf.Tensor3D) => (host ? tf.matMul(tf.transpose(a, [0, 2, 1]), b) : tf.matMul(a, b, true, false));
  const q3 = tf.reshape(q, [n, rows, hd]) as tf.Tensor3D;
  const k3 = tf.reshape(k, [n, S, hd]) as tf.Tensor3D;
  const v3 = tf.reshape(v, [n, S, hd]) as tf.Tensor3D;
  const [value, probs] = tf.tidy(() => {
    const scores = mmT(tf.mul(q3, scale), k3); // [n, rows, S]
    const probs = tf.softmax(tf.add(tf.reshape(scores, [B, nh, T, S]), mask));
    return [tf.reshape(tf.matMul(tf.reshape(probs, [n, rows, S]) as tf.Tensor3D, v3), [B, nh, T, hd]), probs];
  });
  saveOwned(save, [q3, k3, v3], [probs!]);
  return {
    value: value!,
    gradFunc: (dy, [qs, ks, vs, ps]) =>
      tf.tidy(() => {
        const dy3 = tf.reshape(dy, [n, rows, hd]) as tf.Tensor3D;
        const p3 = tf.reshape(ps!, [n, rows, S]) as tf.Tensor3D;
        const dS = tf.mul(softmaxGrad(p3, mmT(dy3, vs as tf.Tensor3D)), scale) as tf.Tensor3D; // [n, rows, S]
        const dq = tf.matMul(dS, ks as tf.Tensor3D);
        const dk = mTm(dS, qs as tf.Tensor3D); // sums the grp heads of each kv head
        const dv = mTm(p3, dy3);
        return [tf.reshape(dq, q.shape), tf.reshape(dk, k.shape), tf.reshape(dv, v.shape)];
      }),
  };
}

/**
 * Scaled dot-product attention with grouped kv heads: q [B, nh, T, hd], k/v [B, nkv, S, hd] (nh a multiple of
 * nkv), additive mask [B, 1, T, S]; scale 1/sqrt(hd); returns [B, nh, T, hd].
 */
export function attention(q: tf.Tensor4D, k: tf.Tensor4D, v: tf.Tensor4D, mask: tf.Tensor4D): tf.Tensor4D {
  const [B, nh, T, hd] = q.shape;
  const [kB, nkv, S, khd] = k.shape;
  if (kB !== B || khd !== hd || nh % nkv !== 0) {
    throw new Error(`attention: q ${shapeText(q)} and k ${shapeText(k)} do not fit (need same B and head dim, heads a multiple of kv heads)`);
  }
  if (!v.shape.every((dim, i) => dim === k.shape[i])) throw new Error(`attention: v ${shapeText(v)} differs from k ${shapeText(k)}`);
  if (mask.shape[0] !== B || mask.shape[1] !== 1 || mask.shape[2] !== T || mask.shape[3] !== S) {
    throw new Error(`attention: mask ${shapeText(mask)} must be [${B}, 1, ${T}, ${S}]`);
  }
  const grp = nh / nkv;
  const d: AttentionDims = { B, nh, nkv, T, S, hd, grp, n: B * nkv, rows: grp * T };
  const scale = 1 / Math.sqrt(hd);
  // The mask is closed over rather than an input: it needs no gradient.
  const op = customOp(([qi, ki, vi], save) =>
    onHost() && d.rows * hd * S >= OPS_TUNING.blockedMinWork
      ? attentionBlocked(qi, ki, vi, mask, d, scale, save)
      : attentionBatched(qi, ki, vi, mask, d, scale, save),
  );
  return op(q, k, v) as tf.Tensor4D;
}

/**
 * Additive mask [B, 1, T, S] for T queries that are the last T of S positions: a query sees earlier or equal
 * positions whose attention-mask entry is 1, and with a sliding window W only the last W of them (query at i, key at
 * j: i − W < j ≤ i, positions counted in the padded sequence as transformers does); everything else gets MASK_VALUE.
 */
export function causalPaddingMask(attentionMask: tf.Tensor2D, queryLen: number, slidingWindow?: number): tf.Tensor4D {
  const [B, S] = attentionMask.shape;
  if (!Number.isInteger(queryLen) || queryLen > S || queryLen < 1) {
    throw new Error(`causalPaddingMask: ${queryLen} queries cannot be the last of ${S} positions`);
  }
  if (slidingWindow !== undefined && !(Number.isInteger(slidingWindow) && slidingWindow > 0)) {
    throw new Error(`causalPaddingMask: sliding window ${slidingWindow} must be a positive integer`);
  }
  // [T, S]: MASK_VALUE above the diagonal that ends at the last position (and W or more positions below it), 0 elsewhere
  const causal = new Float32Array(queryLen * S);
  for (let t = 0; t < queryLen; t++) {
    const i = S - queryLen + t;
    causal.fill(MASK_VALUE, t * S + i + 1, (t + 1) * S);
    if (slidingWindow !== undefined && i - slidingWindow >= 0) causal.fill(MASK_VALUE, t * S, t * S + i - slidingWindow + 1);
  }
  if (onHost()) {
    // Broadcasting kernels are slow on wasm; the mask is small, build it in JS.
    const am = attentionMask.dataSync();
    const out = new Float32Array(B * queryLen * S);
    for (let b = 0; b < B; b++) {
      out.set(causal, b * queryLen * S);
      for (let j = 0; j < S; j++) {
        if (am[b * S + j] !== 0) continue;
        for (let t = 0; t < queryLen; t++) out[(b * queryLen + t) * S + j] = MASK_VALUE;
      }
    }
    return tf.tensor4d(out, [B, 1, queryLen, S]);
  }
  return tf.tidy(() => {
    const pad = tf.mul(tf.sub(1, tf.cast(attentionMask, 'float32')), MASK_VALUE); // [B, S]
    // minimum, not a sum: a padded key above the diagonal stays at MASK_VALUE
    return tf.minimum(tf.reshape(tf.tensor2d(causal, [queryLen, S]), [1, 1, queryLen, S]), tf.reshape(pad, [B, 1, 1, S])) as tf.Tensor4D;
  });
}

const swigluOp = customOp(([gate, up], save) => {
  // Saving the sigmoid too would cost a copy of the largest activation per layer; recomputing it is one kernel.
  save([gate, up]);
  return {
    value: tf.tidy(() => tf.mul(tf.mul(gate, tf.sigmoid(gate)), up)),
    gradFunc: (dy, [g, u]) =>
      tf.tidy(() => {
        const s = tf.sigmoid(g!);
        const silu = tf.mul(g!, s);
        // d silu/dg = s + silu·(1 − s)
        const dsilu = tf.add(s, tf.mul(silu, tf.sub(1, s)));
        return [tf.mul(tf.mul(dy, u!), dsilu), tf.mul(dy, silu)];
      }),
  };
});

/** silu(gate) · up, the Llama MLP activation. */
export function swiglu(gate: tf.Tensor, up: tf.Tensor): tf.Tensor {
  if (gate.rank !== up.rank || !gate.shape.every((d, i) => d === up.shape[i])) {
    throw new Error(`swiglu: gate ${shapeText(gate)} and up ${shapeText(up)} differ`);
  }
  return swigluOp(gate, up);
}

/**
 * log-sum-exp over the last axis from the fused softmax: lse = max(x) − log(max(P)). The largest probability is at
 * least 1/V, so unlike log(P[label]) this never underflows.
 */
function logSumExp(x: tf.Tensor, p: tf.Tensor): tf.Tensor {
  return tf.sub(tf.max(x, -1, true), tf.log(tf.max(p, -1, true)));
}

const logSoftmaxOp = customOp(([x], save) => {
  const [value, p] = tf.tidy(() => {
    const p = tf.softmax(x);
    return [tf.sub(x, logSumExp(x, p)), p];
  });
  saveOwned(save, [], [p!]);
  return {
    value: value!,
    // g − softmax·Σg
    gradFunc: (dy, [ps]) => [tf.tidy(() => tf.sub(dy, tf.mul(ps!, tf.sum(dy, -1, true))))],
  };
});

/** log-softmax over the last axis in float32. */
export function logSoftmax(x: tf.Tensor): tf.Tensor {
  return logSoftmaxOp(x);
}

/**
 * Σ over valid rows of lse(logits) − logits[label], differentiable in the logits only. flatIdx [N] int32 is
 * row·V + label (label 0 on ignored rows); valid [N, 1] is 1 on counted rows, else 0.
 */
function nllSum(logits: tf.Tensor, flatIdx: tf.Tensor, valid: tf.Tensor): tf.Tensor {
  const [N, V] = logits.shape as [number, number];
  const op = customOp(([x], save) => {
    const [value, p] = tf.tidy(() => {
      const p = tf.softmax(x);
      const picked = tf.reshape(tf.gather(tf.reshape(x, [-1]), flatIdx), [N, 1]);
      return [tf.sum(tf.mul(tf.sub(logSumExp(x, p), picked), valid)), p];
    });
    saveOwned(save, [flatIdx, valid], [p!]);
    return {
      value: value!,
      // (softmax − onehot(label))·valid·dy, the one-hot part scattered into the N·V grid
      gradFunc: (dy, [idx, vd, ps]) => [
        tf.tidy(() => {
          const w = tf.mul(vd!, dy); // [N, 1]
          const hot = tf.reshape(tf.scatterND(tf.reshape(idx!, [N, 1]), tf.reshape(w, [N]), [N * V]), [N, V]);
          return tf.sub(tf.mul(ps!, w), hot);
        }),
      ],
    };
  });
  return op(logits);
}

/**
 * Summed next-token negative log-likelihood over rows whose label is not IGNORE_INDEX, and how many rows
 * counted. logits [N, V] float32, labels int32 [N] (already shifted by the caller), each in [0, V) or IGNORE_INDEX.
 */
export function crossEntropySum(logits: tf.Tensor2D, labels: tf.Tensor1D): { sum: tf.Scalar; count: tf.Scalar } {
  const [N, V] = logits.shape;
  if (labels.rank !== 1 || labels.shape[0] !== N) throw new Error(`crossEntropySum: labels ${shapeText(labels)} must be [${N}]`);
  if (labels.dtype !== 'int32') throw new Error(`crossEntropySum: labels must be int32, got ${labels.dtype}`);
  if (onHost()) {
    const lv = labels.dataSync();
    const bad = lv.findIndex((l) => l !== IGNORE_INDEX && !(l >= 0 && l < V));
    if (bad >= 0) throw new Error(`crossEntropySum: label ${lv[bad]} at row ${bad} is outside [0, ${V}) and not IGNORE_INDEX (${IGNORE_INDEX})`);
  }
  return tf.tidy(() => {
    const validB = tf.notEqual(labels, IGNORE_INDEX);
    const safe = tf.where(validB, labels, tf.zerosLike(labels));
    const flatIdx = tf.add(safe, tf.range(0, N * V, V, 'int32'));
    const valid = tf.reshape(tf.cast(validB, 'float32'), [N, 1]);
    const sum = nllSum(logits, flatIdx, valid) as tf.Scalar;
    return { sum, count: tf.sum(valid) as tf.Scalar };
  });
}

// The model's compute primitives per backend, chosen in one place: tfjs ops (ops.ts) on every backend, fused WGSL programs (webgpu/) on webgpu.
import * as tf from '@tensorflow/tfjs-core';
import type { LmConfig } from './config.ts';
import { decodeLookahead } from './gpu-settings.ts';
import * as ops from './ops.ts';
import type { KvCache, LanguageModel } from './types.ts';
import { FlatAdamW, type AdamWUpdate, type AdamWWeight } from './webgpu/adamw.ts';
import { PackedBf16 } from './webgpu/bf16.ts';
import { ReplayedDecodeSteps, type DecodeSteps } from './webgpu/decode-graph.ts';
import { DeviceKvCache, fusedHidden, type DecoderAccess } from './webgpu/decoder.ts';
import { embedding, pauseEmbedding } from './webgpu/embedding.ts';
import { recordingGradients } from './webgpu/engine.ts';
import { crossEntropySum, logSoftmax, pauseLogProbs } from './webgpu/loss.ts';
import { projection } from './webgpu/matmul.ts';

/** A decoder stack run by a backend's own programs instead of the model's tfjs-op code. */
export interface FusedDecoder {
  /** Final normed hidden states [B, T, H], as CausalLM.hidden computes them. */
  hidden(model: DecoderAccess, inputIds: tf.Tensor2D, attentionMask: tf.Tensor2D, cache: KvCache | null, training: boolean): tf.Tensor3D;
  /** An empty cache for this decoder, with room for `capacity` positions before it has to grow. */
  newCache(config: LmConfig, capacity: number): KvCache;
}

/** A backend's AdamW over a fixed list of weights (it may keep tensors describing them until disposed). */
export interface FusedAdamW {
  /** One update with clipping, as optimizer.ts's; returns the gradient norm before clipping. */
  apply(update: AdamWUpdate): tf.Scalar;
  dispose(): void;
}

export interface BackendKernels {
  /** Rows of a table [V, H] for int32 ids of any shape → [...ids.shape, H], differentiable in the table. */
  embedding(ids: tf.Tensor, table: tf.Tensor): tf.Tensor;
  /**
   * x·Wᵀ (+ b) for a weight [out, in]; `transposed` gives a prepared Wᵀ where the backend wants one. A packed
   * bfloat16 weight (webgpu/bf16.ts) exists only on webgpu.
   */
  linear(x: tf.Tensor, weight: tf.Tensor | PackedBf16, bias: tf.Tensor | undefined, transposed: () => tf.Tensor): tf.Tensor;
  crossEntropySum(logits: tf.Tensor2D, labels: tf.Tensor1D): { sum: tf.Scalar; count: tf.Scalar };
  logSoftmax(x: tf.Tensor): tf.Tensor;
  /**
   * The pause wrapper's combined log-probs [..., V+1] from its LM logits [..., V+1] and pause-head logits [..., 2]
   * in one program (decoding; it has no gradient), or null where the wrapper's own tfjs-op code is the way.
   */
  readonly pauseLogProbs: ((lmLogits: tf.Tensor, ctrlLogits: tf.Tensor, ctrlBias: tf.Tensor, vocab: number, pauseClass: number) => tf.Tensor) | null;
  /**
   * The pause wrapper's embedding in one program: ids [B, T] → [B, T, H], id V (the pause token) from `pauseRow`
   * [1, H], the others from `table` [V, H] (decoding; no gradient), or null where the wrapper's tfjs-op code is the way.
   */
  readonly pauseEmbedding: ((ids: tf.Tensor, table: tf.Tensor, pauseRow: tf.Tensor) => tf.Tensor) | null;
  /**
   * One generation's decode steps: the model's step, then the next token of every row, greedy (uniforms null) or a
   * draw from softmax(log-probs / temperature) with each row's uniform. Webgpu chooses on the GPU and replays
   * recorded one-token steps.
   */
  decodeSteps(model: LanguageModel, temperature: number): DecodeSteps;
  /**
   * Decode steps queued ahead of the host's read of a step's tokens: on a GPU the next steps run while the host
   * reads this one's; where computing is synchronous there is nothing to overlap.
   */
  readonly decodeLookahead: number;
  /** AdamW updating all `weights` at once, or null where optimizer.ts's tfjs-op update is the way. */
  adamw: ((weights: AdamWWeight[]) => FusedAdamW) | null;
  decoder: FusedDecoder | null;
}

/** A row's draw from host-side probabilities, as the reference's sampling walk does it. */
function sampleOnHost(probs: Float32Array | Int32Array, row: number, vocab: number, u: number): number {
  let acc = 0;
  let last = 0;
  for (let v = 0; v < vocab; v++) {
    const p = probs[row * vocab + v]!;
    if (p <= 0) continue;
    last = v;
    acc += p;
    if (u < acc) return v;
  }
  // Rounding left the probabilities summing just under u: the last possible token.
  return last;
}

/** Each row's next token from log-probs [B, W] with tfjs ops: argmax, or a draw made on the host. Ids [B] int32. */
async function pickOnHost(logProbs: tf.Tensor2D, temperature: number, uniforms: Float64Array | null): Promise<tf.Tensor1D> {
  if (uniforms === null) return tf.argMax(logProbs, 1) as tf.Tensor1D;
  const scaled = tf.tidy(() => tf.softmax(tf.div(logProbs, temperature)));
  const probs = await scaled.data();
  scaled.dispose();
  const [rows, vocab] = logProbs.shape;
  const ids = Int32Array.from({ length: rows }, (_, r) => sampleOnHost(probs as Float32Array, r, vocab, uniforms[r]!));
  return tf.tensor1d(ids, 'int32');
}

const TFJS_OPS: BackendKernels = {
  embedding: ops.embedding,
  linear: (x, weight, bias, transposed) => {
    if (weight instanceof PackedBf16) throw new Error(`a packed bfloat16 weight is read by webgpu's products only, the backend is ${tf.getBackend()}`);
    return ops.linear(x, weight, bias, transposed());
  },
  crossEntropySum: ops.crossEntropySum,
  logSoftmax: ops.logSoftmax,
  pauseLogProbs: null,
  pauseEmbedding: null,
  decodeSteps: (model, temperature) => ({
    replaying: false,
    async step(inputIds, mask, cache, uniforms) {
      const { logProbs, cache: next } = model.decodeStep(inputIds, mask, cache);
      try {
        return { ids: await pickOnHost(logProbs, temperature, uniforms), cache: next };
      } finally {
        logProbs.dispose();
      }
    },
    dispose() {},
  }),
  decodeLookahead: 0,
  adamw: null,
  decoder: null,
};

const WEBGPU: BackendKernels = {
  embedding,
  // GPU matmul programs read Wᵀ through the transpose flag at no cost: no prepared transpose, and the registered
  // gradient computes dW only for weights that train.
  linear: (x, weight, bias) => tf.tidy(() => {
    const inDim = x.shape[x.shape.length - 1]!;
    const y = projection(tf.reshape(x, [-1, inDim]) as tf.Tensor2D, weight as tf.Tensor2D | PackedBf16, false, true);
    const out = bias ? tf.add(y, bias) : y;
    return tf.reshape(out, [...x.shape.slice(0, -1), weight.shape[0]!]);
  }),
  crossEntropySum,
  logSoftmax,
  get pauseLogProbs() {
    return recordingGradients() ? null : pauseLogProbs;
  },
  get pauseEmbedding() {
    return recordingGradients() ? null : pauseEmbedding;
  },
  decodeSteps: (model, temperature) => new ReplayedDecodeSteps(model, temperature),
  // PAUSEPIPE_DECODE_LOOKAHEAD (default 1): steps a GPU decodes ahead of the host's read of a step's tokens. They
  // never leave the GPU between steps, so more in flight hide a read's latency; past the last EOS they are work thrown
  // away (at most this many steps per batch). Read at each generation so a bench can compare.
  get decodeLookahead() {
    return decodeLookahead();
  },
  adamw: (weights) => new FlatAdamW(weights),
  decoder: { hidden: fusedHidden, newCache: (config, capacity) => new DeviceKvCache(config, capacity) },
};

/** The kernels of the active tfjs backend. */
export function kernels(): BackendKernels {
  return tf.getBackend() === 'webgpu' ? WEBGPU : TFJS_OPS;
}

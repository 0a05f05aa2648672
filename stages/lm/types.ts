// Shared contracts of the language-model code: what the stage kinds, the trainer and the generator rely on.
import type * as tf from '@tensorflow/tfjs-core';
import type { PackedBf16 } from './webgpu/bf16.ts';

/** Ignored label, as in PyTorch's cross-entropy. */
export const IGNORE_INDEX = -100;

/** A Hugging Face tokenizer (tokenizer.json) or the built-in one, plus the pause token when added. */
export interface Tokenizer {
  /** Number of ids, added special tokens included. */
  readonly vocabSize: number;
  readonly bosId: number | null;
  readonly eosId: number | null;
  readonly padId: number | null;
  /** Id of `<|pause|>` once added (equals the original vocabulary size), else null. */
  readonly pauseId: number | null;
  encode(text: string, opts?: { addSpecialTokens?: boolean }): number[];
  decode(ids: number[], opts?: { skipSpecialTokens?: boolean }): string;
  /** A copy with `<|pause|>` added as a special token (lstrip/rstrip) at id = current vocabulary size. */
  withPauseToken(token?: string): Tokenizer;
  /** The tokenizer.json document. */
  toJSON(): unknown;
}

/** One training or evaluation batch; right-padded. */
export interface Batch {
  inputIds: tf.Tensor2D;     // [B, T] int32
  attentionMask: tf.Tensor2D; // [B, T] int32, 1 = real token
  labels: tf.Tensor2D;       // [B, T] int32, IGNORE_INDEX where no loss (prompt, padding); unshifted like HF
}

export interface LossParts {
  /** What is optimised: mean NLL (plain LM) or the pause wrapper's combined loss. */
  loss: tf.Scalar;
  /** Pause models: LM part averaged over its counted positions. */
  lmLoss?: tf.Scalar;
  /** Pause models: pause-head part averaged over its counted positions. */
  ctrlLoss?: tf.Scalar;
}

/** Opaque per-layer key/value cache owned by the model. */
export interface KvCache {
  /** Number of positions already stored. */
  readonly length: number;
  /**
   * Keeps only the batch rows at `rows` (indices into the current batch, ascending), so later steps compute those
   * alone; absent where the cache cannot drop rows (a GPU's, whose steps are recorded for a fixed batch).
   */
  keepRows?(rows: number[]): void;
  dispose(): void;
}

/**
 * A stored weight: a tf.Variable, or, for a frozen decoder projection on WebGPU under `PAUSEPIPE_FROZEN_WEIGHTS=bf16`,
 * the same values packed as bfloat16 (bf16-weights.ts), which only the projections read.
 */
export type ModelWeight = tf.Variable | PackedBf16;

/** What the trainer and the generator need from a model (plain causal LM or pause-wrapped). */
export interface LanguageModel {
  /** Every weight under its saved name (Hugging Face names; the pause wrapper's names when wrapped). */
  readonly weights: Map<string, ModelWeight>;
  /** The variables that train under the current freezing/LoRA setup, by saved name. */
  trainableVariables(): Map<string, tf.Variable>;
  /** Loss of a batch; call inside tf.variableGrads. `training` turns LoRA dropout on. */
  lossParts(batch: Batch, opts: { training: boolean }): LossParts;
  /**
   * Log-probabilities of the next token after the last position of every row, extending the cache.
   * Pause models return the combined log-probs over V+1 ids. Prompts are left-padded; the mask covers all
   * positions seen so far (cache + new).
   */
  decodeStep(inputIds: tf.Tensor2D, attentionMask: tf.Tensor2D, cache: KvCache | null): { logProbs: tf.Tensor2D; cache: KvCache };
  /** An empty KV cache for decodeStep with room for `capacity` positions (a GPU cache is allocated once, not grown). */
  newKvCache(capacity: number): KvCache;
  dispose(): void;
}

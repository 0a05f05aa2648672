// The pause-token surgery and the pause wrapper: extended embedding, grown LM head, pause head, combined log-probs and loss.
import * as tf from '@tensorflow/tfjs-core';
import { DEFAULT_PAUSE_TOKEN, SeededRandom, weightShapes, type LmConfig } from './config.ts';
import { kernels } from './kernels.ts';
import { CausalLM, detach, FLOAT32_MIN, weightVariables } from './model.ts';
import { roundedToBfloat16, type HostTensor } from './safetensors.ts';
import { IGNORE_INDEX, type Batch, type LossParts, type ModelWeight } from './types.ts';
import { PackedBf16, stackPacked } from './webgpu/bf16.ts';

/** Saved names of the wrapper's own tensors (as the original PauseClassifierWrapper's state dict). */
export const PAUSE_NAMES = {
  originalEmbedding: 'language_model.model.embed_tokens.original_embedding.weight',
  newEmbedding: 'language_model.model.embed_tokens.new_embedding.weight',
  lmHead: 'language_model.lm_head.weight',
  ctrlWeight: 'ctrl_tok_clf.weight',
  ctrlBias: 'ctrl_tok_clf.bias',
} as const;

/** Classes of the pause head (`ctrl_tok_clf`): 0 = emit a pause, 1 = use the LM head. */
export const PAUSE_CLASS = 0;
export const LM_CLASS = 1;

/** Names and shapes of a pause-wrapped model's tensors, in the reference's state-dict order. */
export function pauseWeightShapes(cfg: LmConfig): [string, number[]][] {
  const H = cfg.hiddenSize;
  const out: [string, number[]][] = [
    [PAUSE_NAMES.originalEmbedding, [cfg.vocabSize, H]],
    [PAUSE_NAMES.newEmbedding, [1, H]],
  ];
  for (const [name, shape] of weightShapes({ ...cfg, tieWordEmbeddings: true })) {
    if (name !== 'model.embed_tokens.weight') out.push([`language_model.${name}`, shape]);
  }
  out.push([PAUSE_NAMES.lmHead, [cfg.vocabSize + 1, H]], [PAUSE_NAMES.ctrlWeight, [2, H]], [PAUSE_NAMES.ctrlBias, [2]]);
  return out;
}

/** The three heads' outputs for every position. */
export interface PauseOutputs {
  /** LM logits [..., V+1], the pause column at float32's minimum. */
  lmLogits: tf.Tensor;
  /** Pause-head logits [..., 2]. */
  ctrlLogits: tf.Tensor;
  /** `[log_softmax(lm)[:V] + log p_head(LM), log p_head(pause)]` [..., V+1]: what generation ranks. */
  combined: tf.Tensor;
}

/**
 * A causal LM wrapped with the pause token: ids 0..V-1 as before, id V = `<|pause|>`. The LM head never
 * predicts a pause; the pause head decides between "pause" and "use the LM head" from the final normed
 * hidden state, detached so the pause loss does not train the body.
 */
export class PauseLM extends CausalLM {
  constructor(config: LmConfig, weights: Map<string, ModelWeight>) {
    if (!config.pause) throw new Error('PauseLM: config has no pause token fields');
    super({ ...config, tieWordEmbeddings: false }, weights, 'language_model.');
  }

  /** Builds the wrapper from tensors under the reference's saved names. */
  static fromPauseWeights(config: LmConfig, tensors: Map<string, HostTensor | tf.Tensor | PackedBf16>): PauseLM {
    return new PauseLM(config, weightVariables(tensors, pauseWeightShapes(config), 'pause model weights'));
  }

  override get hasPause(): boolean {
    return true;
  }

  get pauseId(): number {
    return this.config.pause!.tokenId;
  }

  /**
   * Rows of the extended embedding [B, T, H]: ids < V from the original table, id V from the new row. Done per
   * token rather than on a concatenated [V+1, H] table, which would copy the whole table on every decode step.
   */
  protected override embed(inputIds: tf.Tensor2D): tf.Tensor3D {
    const table = this.variableParam(PAUSE_NAMES.originalEmbedding);
    const fused = kernels().pauseEmbedding;
    if (fused && !this.blocksOf(table)) return fused(inputIds, table, this.variableParam(PAUSE_NAMES.newEmbedding)) as tf.Tensor3D;
    const V = this.config.vocabSize;
    const isPause = tf.expandDims(tf.cast(tf.equal(inputIds, V), 'float32'), -1); // [B, T, 1]
    const original = this.embeddingRows(tf.minimum(inputIds, tf.scalar(V - 1, 'int32')), table); // [B, T, H]
    const pauseRow = tf.reshape(this.variableParam(PAUSE_NAMES.newEmbedding), [this.config.hiddenSize]); // [H]
    return tf.add(tf.mul(original, tf.sub(1, isPause)), tf.mul(isPause, pauseRow)) as tf.Tensor3D;
  }

  protected override headWeight(): tf.Variable {
    return this.variableParam(PAUSE_NAMES.lmHead); // [V+1, H]
  }

  override headName(): string {
    return PAUSE_NAMES.lmHead;
  }

  /** LM logits over the V real tokens [..., V] (the pause column dropped, which is what masking it to -max means). */
  private lmLogitsV(hidden: tf.Tensor): tf.Tensor {
    const V = this.config.vocabSize;
    const full = this.linear(hidden, this.headWeight()); // [..., V+1]
    const begin = full.shape.map(() => 0);
    const size = full.shape.map((d, i) => (i === full.rank - 1 ? V : d));
    return tf.slice(full, begin, size);
  }

  private ctrlLogitsOf(hidden: tf.Tensor): tf.Tensor {
    return this.linear(detach(hidden), this.variableParam(PAUSE_NAMES.ctrlWeight), this.variableParam(PAUSE_NAMES.ctrlBias)); // [..., 2]
  }

  /** LM logits [..., V+1] with the pause column at float32's minimum, as the reference returns them. */
  override logitsOf(hidden: tf.Tensor): tf.Tensor {
    const lm = this.lmLogitsV(hidden);
    return tf.concat([lm, tf.fill([...lm.shape.slice(0, -1), 1], FLOAT32_MIN)], -1);
  }

  private combine(lmV: tf.Tensor, ctrl: tf.Tensor): tf.Tensor {
    const logSoftmax = kernels().logSoftmax;
    const [pause, useLm] = tf.split(logSoftmax(ctrl), 2, -1); // PAUSE_CLASS = 0, LM_CLASS = 1
    return tf.concat([tf.add(logSoftmax(lmV), useLm!), pause!], -1);
  }

  override logProbsOf(hidden: tf.Tensor): tf.Tensor {
    // One program where the backend has it: the full LM logits in, the pause column skipped, no slice or concat.
    const fused = kernels().pauseLogProbs;
    if (fused) {
      const ctrl = this.linear(detach(hidden), this.variableParam(PAUSE_NAMES.ctrlWeight)); // [..., 2], its bias added by the kernel
      return fused(this.linear(hidden, this.headWeight()), ctrl, this.variableParam(PAUSE_NAMES.ctrlBias), this.config.vocabSize, PAUSE_CLASS);
    }
    return this.combine(this.lmLogitsV(hidden), this.ctrlLogitsOf(hidden));
  }

  /** All three outputs for a full forward pass (no cache); the mask defaults to all ones. */
  pauseForward(inputIds: tf.Tensor2D, attentionMask?: tf.Tensor2D): PauseOutputs {
    return tf.tidy(() => {
      const hidden = this.hidden(inputIds, attentionMask ?? tf.onesLike(inputIds), null, false);
      const lmV = this.lmLogitsV(hidden);
      const ctrlLogits = this.ctrlLogitsOf(hidden);
      const lmLogits = tf.concat([lmV, tf.fill([...lmV.shape.slice(0, -1), 1], FLOAT32_MIN)], -1);
      return { lmLogits, ctrlLogits, combined: this.combine(lmV, ctrlLogits) };
    });
  }

  /**
   * The reference's loss on shifted labels: a normal target trains the LM head (label = token) and the pause head
   * (label 1); a pause target trains only the pause head (label 0). `loss` sums both NLLs over the positions
   * where at least one label counts; `lmLoss` and `ctrlLoss` average over their own counted positions.
   */
  override lossParts(batch: Batch, opts: { training: boolean }): LossParts {
    const [B, T] = batch.inputIds.shape;
    const N = B * (T - 1);
    const hidden = tf.slice(this.hidden(batch.inputIds, batch.attentionMask, null, opts.training), [0, 0, 0], [B, T - 1, -1]);
    const targets = tf.reshape(tf.slice(batch.labels, [0, 1], [B, T - 1]), [N]) as tf.Tensor1D;
    const ignored = tf.fill([N], IGNORE_INDEX, 'int32');
    const isPause = tf.equal(targets, this.pauseId);
    const lmLabels = tf.where(isPause, ignored, targets) as tf.Tensor1D;
    const ctrlLabels = tf.where(tf.equal(targets, IGNORE_INDEX), ignored,
      tf.where(isPause, tf.fill([N], PAUSE_CLASS, 'int32'), tf.fill([N], LM_CLASS, 'int32'))) as tf.Tensor1D;
    const { crossEntropySum } = kernels();
    const lm = crossEntropySum(tf.reshape(this.lmLogitsV(hidden), [N, -1]) as tf.Tensor2D, lmLabels);
    const ctrl = crossEntropySum(tf.reshape(this.ctrlLogitsOf(hidden), [N, 2]) as tf.Tensor2D, ctrlLabels);
    // Every counted position has a pause-head label, so the pause head's count is "at least one label counts".
    const counted = tf.maximum(ctrl.count, 1);
    return {
      loss: tf.div(tf.add(lm.sum, ctrl.sum), counted) as tf.Scalar,
      lmLoss: tf.div(lm.sum, tf.maximum(lm.count, 1)) as tf.Scalar,
      ctrlLoss: tf.div(ctrl.sum, counted) as tf.Scalar,
    };
  }
}

/** `grown` with its row `row` (of width `width`) rounded to bfloat16, in place: the other rows are the model's own. */
function withRoundedRow(grown: Float32Array, row: number, width: number): Float32Array {
  const at = row * width;
  grown.set(roundedToBfloat16(grown.subarray(at, at + width)), at);
  return grown;
}

function unbiasedVariance(data: Float32Array): number {
  let mean = 0;
  for (let i = 0; i < data.length; i++) mean += data[i]!;
  mean /= data.length;
  let ss = 0;
  for (let i = 0; i < data.length; i++) ss += (data[i]! - mean) ** 2;
  return ss / (data.length - 1);
}

export interface PauseSurgeryOptions {
  /** Text of the pause token (recorded in the config). Default `<|pause|>`. */
  token?: string;
  /** Where the one-line summary goes. Default console.log. */
  log?: (line: string) => void;
  /**
   * Create the new rows and the pause head in bfloat16 (drawn in float32, rounded to nearest), as the reference does
   * for a model loaded in bfloat16: the wrapped model then holds only bfloat16 numbers and saves as BF16. Default false.
   */
  bfloat16?: boolean;
}

/**
 * The pause surgery on a plain model, as the reference's wrapper does it: embedding = original table + one new
 * row drawn from N(0, var(original table)); LM head grown by one row (the mean of its rows plus noise of
 * variance 1e-9·var per column, transformers' resize_token_embeddings init; the column is masked anyway); the
 * tie broken; a fresh pause head Linear(H → 2) with PyTorch's default init U(±1/√H). Returns a new model;
 * `model` is left untouched. Deterministic in `seed`.
 */
export async function addPauseToken(model: CausalLM, seed: number, opts: PauseSurgeryOptions = {}): Promise<PauseLM> {
  if (model.hasPause) throw new Error('addPauseToken: the model already has a pause token');
  if (model.lora) throw new Error('addPauseToken: merge or drop the LoRA adapters first (mergeLora in lora.ts)');
  const cfg = model.config;
  const V = cfg.vocabSize;
  const H = cfg.hiddenSize;
  const rng = new SeededRandom(seed);
  // Read asynchronously: a synchronous read is refused by WebGPU.
  const embed = (await model.variable('model.embed_tokens.weight').data()) as Float32Array;
  const head = (cfg.tieWordEmbeddings ? embed : await model.variable('lm_head.weight').data()) as Float32Array;
  const newRow = rng.normalArray(H, Math.sqrt(unbiasedVariance(embed)));
  const grown = new Float32Array((V + 1) * H);
  grown.set(head);
  for (let j = 0; j < H; j++) {
    let mean = 0;
    for (let i = 0; i < V; i++) mean += head[i * H + j]!;
    mean /= V;
    let ss = 0;
    for (let i = 0; i < V; i++) ss += (head[i * H + j]! - mean) ** 2;
    grown[V * H + j] = mean + Math.sqrt((1e-9 * ss) / (V - 1)) * rng.normal();
  }
  const bound = 1 / Math.sqrt(H);
  const created = opts.bfloat16 ? roundedToBfloat16 : (data: Float32Array) => data;
  const tensors = new Map<string, HostTensor | tf.Tensor | PackedBf16>();
  tensors.set(PAUSE_NAMES.originalEmbedding, { dtype: 'float32', shape: [V, H], data: embed.slice() });
  tensors.set(PAUSE_NAMES.newEmbedding, { dtype: 'float32', shape: [1, H], data: created(newRow) });
  for (const [name, w] of model.weights) {
    if (name === 'model.embed_tokens.weight' || name === 'lm_head.weight') continue;
    // A packed weight (bf16-weights.ts) is copied packed: widening would hold the whole body in float32 twice.
    tensors.set(`language_model.${name}`, w instanceof PackedBf16 ? stackPacked([w]) : w.clone());
  }
  tensors.set(PAUSE_NAMES.lmHead, { dtype: 'float32', shape: [V + 1, H], data: opts.bfloat16 ? withRoundedRow(grown, V, H) : grown });
  tensors.set(PAUSE_NAMES.ctrlWeight, { dtype: 'float32', shape: [2, H], data: created(rng.uniformArray(2 * H, -bound, bound)) });
  tensors.set(PAUSE_NAMES.ctrlBias, { dtype: 'float32', shape: [2], data: created(rng.uniformArray(2, -bound, bound)) });
  const config: LmConfig = { ...cfg, tieWordEmbeddings: false, pause: { tokenId: V, token: opts.token ?? DEFAULT_PAUSE_TOKEN } };
  // Takes the cloned tensors over (and frees them).
  const wrapped = PauseLM.fromPauseWeights(config, tensors);
  (opts.log ?? console.log)(
    `pause surgery: token ${config.pause!.token} = id ${V}; embedding ${V}×${H} + new row (std ${Math.sqrt(unbiasedVariance(newRow)).toFixed(4)}); ` +
      `lm_head ${V}×${H} → ${V + 1}×${H}${cfg.tieWordEmbeddings ? ' (tie broken)' : ''}; pause head ctrl_tok_clf 2×${H} + bias${opts.bfloat16 ? '; new weights in bfloat16, as the model' : ''}`,
  );
  return wrapped;
}

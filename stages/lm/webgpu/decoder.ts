// The decoder stack on WebGPU: fused projections, norms with the residual add, one attention kernel per layer, and a preallocated KV cache written in place.
import * as tf from '@tensorflow/tfjs-core';
import type { LmConfig } from '../config.ts';
import { bindingLimit } from '../split-weights.ts';
import type { KvCache, ModelWeight } from '../types.ts';
import { PackedBf16, stackPacked } from './bf16.ts';
import { appendToCache, attendCache, attention, attentionMeta, type AttentionShape, type CacheLayer } from './attention.ts';
import { concatLast, stackRows } from './concat.ts';
import { copyBuffer, emptyTensor, recordingGradients } from './engine.ts';
import { matMulChoice, projection } from './matmul.ts';
import { matVecConcat, matVecSwiglu, takesMatVec } from './matvec.ts';
import { addRmsNorm, addRmsNormOnly, rmsNorm } from './norm.ts';
import { swigluFused } from './swiglu.ts';

/**
 * Tensors derived from others and kept between calls (stacked projection weights, the RoPE table): an entry is
 * valid while its sources hold the data they held when it was made, so weight updates rebuild it on next use.
 */
export class PreparedTensors {
  private readonly entries = new Map<string, { sources: tf.Tensor[]; data: object[]; value: tf.Tensor }>();

  get(key: string, sources: tf.Tensor[], make: () => tf.Tensor): tf.Tensor {
    const entry = this.entries.get(key);
    if (entry && entry.sources.length === sources.length && entry.sources.every((s, i) => s === sources[i] && !s.isDisposed && s.dataId === entry.data[i])) {
      return entry.value;
    }
    entry?.value.dispose();
    // Kept: the caller is usually inside a tidy that must not free it.
    const value = tf.keep(make());
    this.entries.set(key, { sources, data: sources.map((s) => s.dataId), value });
    return value;
  }

  clear(): void {
    for (const { value } of this.entries.values()) value.dispose();
    this.entries.clear();
  }
}

/** What the fused decoder needs from a model (CausalLM builds it; the pause wrapper's names and embedding included). */
export interface DecoderAccess {
  readonly config: LmConfig;
  /** Token embeddings [B, T, H]. */
  embed(inputIds: tf.Tensor2D): tf.Tensor3D;
  /** A decoder weight by its plain Hugging Face name (`model.layers.0...`), the modules_to_save copy when there is one. */
  weight(local: string): tf.Variable;
  /** A linear module's weight by plain name without `.weight`, as `proj` reads it: float32, or packed bfloat16. */
  projWeight(module: string): ModelWeight;
  /** A linear module of the decoder with its LoRA adapter, by plain name without `.weight`. */
  proj(x: tf.Tensor, module: string, training: boolean): tf.Tensor;
  /** Whether a LoRA adapter is attached to the module. */
  hasAdapter(module: string): boolean;
  /** RoPE cos and sin [max_position_embeddings, head_dim]. */
  ropeTables(): { cos: tf.Tensor2D; sin: tf.Tensor2D };
  /** The variables that train now. */
  trainable(): Set<tf.Variable>;
  readonly prepared: PreparedTensors;
  /** Runs layer i under activation checkpointing, or null when the model does not checkpoint this pass. */
  readonly checkpoint: LayerCheckpoint | null;
}

/** Runs `layer` (decoder layer i, residual stream in, residual stream out) so that backward recomputes it. */
export type LayerCheckpoint = (i: number, x: tf.Tensor, context: tf.Tensor[], layer: (x: tf.Tensor, context: tf.Tensor[]) => tf.Tensor) => tf.Tensor;

/**
 * Per-layer keys (rotated) and values [B, nkv, capacity, hd], allocated at the first step for the rows it brings and
 * written in place; grows by copying (no kernel) when a step needs more room than it has.
 */
export class DeviceKvCache implements KvCache {
  layers: CacheLayer[] = [];
  length = 0;
  private rows = 0;
  /** attentionMeta of every column the cache can hold, made when its capacity is set (see `columnInfo`). */
  private columns: tf.Tensor | null = null;

  /** Counts allocations: a grown cache is new buffers, so a recorded step that bound the old ones cannot replay. */
  version = 0;

  /** `capacity`: positions per row the buffers hold (set by the first step, doubled when a step needs more). */
  constructor(private readonly config: LmConfig, public capacity: number) {}

  /** Room for `positions` positions of `rows` rows. */
  reserve(rows: number, positions: number): void {
    const { numLayers, numKvHeads, headDim } = this.config;
    if (this.layers.length > 0 && rows !== this.rows) throw new Error(`KV cache holds ${this.rows} rows, the step brings ${rows}`);
    if (this.layers.length > 0 && positions <= this.capacity) return;
    const capacity = this.layers.length === 0 ? Math.max(this.capacity, positions) : Math.max(positions, 2 * this.capacity);
    // Kept: steps run inside tidy scopes that must not free the cache.
    const fresh = () => tf.keep(emptyTensor([rows, numKvHeads, capacity, headDim], 'float32'));
    const grown = Array.from({ length: numLayers }, () => ({ keys: fresh(), values: fresh() }));
    for (const [i, old] of this.layers.entries()) {
      for (const part of ['keys', 'values'] as const) {
        for (let block = 0; block < rows * numKvHeads; block++) {
          copyBuffer(old[part], block * this.capacity * headDim, grown[i]![part], block * capacity * headDim, this.length * headDim);
        }
        old[part].dispose();
      }
    }
    this.layers = grown;
    this.rows = rows;
    this.capacity = capacity;
    this.version++;
  }

  /**
   * Mask and RoPE position of all `capacity` columns, from the step's mask [B, past + T] extended with real tokens:
   * the columns after a step's are the tokens generation appends, never padding. One tensor for every step of a
   * generation, so a decode step binds the same buffers each time (decode-graph.ts) and makes no meta per step.
   */
  columnInfo(attentionMask: tf.Tensor2D): tf.Tensor {
    if (this.columns?.shape[2] !== this.capacity) {
      this.columns?.dispose();
      const [B, S] = attentionMask.shape;
      // Kept: the step's tidy must not free it.
      this.columns = tf.keep(tf.tidy(() => attentionMeta(S === this.capacity ? attentionMask : tf.concat([attentionMask, tf.ones([B, this.capacity - S], 'int32')], 1) as tf.Tensor2D)));
    }
    return this.columns!;
  }

  dispose(): void {
    this.columns?.dispose();
    this.columns = null;
    for (const { keys, values } of this.layers) {
      keys.dispose();
      values.dispose();
    }
    this.layers = [];
    this.length = 0;
  }
}

/**
 * `stackedBudget`: bytes the stacked copies of a model's frozen q|k|v and gate|up weights may take. Within it, frozen
 * weights are stacked once and reused (one matmul per group); beyond it (Mistral-7B's would take 18 GB) each
 * projection runs on its own and the outputs are concatenated: one more kernel per group, no second copy of the
 * weights. Exposed so tests can take both paths with a small model.
 */
export const DECODER_TUNING: { stackedBudget: number } = { stackedBudget: 2 ** 30 };

function stackedBytes(c: LmConfig): number {
  const attention = (c.numHeads + 2 * c.numKvHeads) * c.headDim * c.hiddenSize;
  return 4 * c.numLayers * (attention + 2 * c.intermediateSize * c.hiddenSize);
}

/**
 * x·Wᵀ for the modules' weights stacked into one [Σout, in] matrix: one matmul instead of one per module. Stacked
 * on the gradient tape when a weight trains (one kernel forward, one split backward), else prepared once and reused
 * when the model's stacked copies fit the budget (DECODER_TUNING). Modules with a LoRA adapter, frozen weights of a
 * model too large to copy, and groups whose stack one kernel could not bind (split-weights.ts: Mistral-7B's
 * gate|up is 470 MB) run on their own, through the model's linear with its split check, and their outputs are
 * concatenated; in a decode step without adapters, one few-rows product reads such weights side by side instead.
 */
function projectStacked(m: DecoderAccess, h: tf.Tensor, modules: string[], training: boolean, trainable: Set<tf.Variable>): tf.Tensor {
  const weights = modules.map((mod) => m.projWeight(mod));
  const trains = weights.some((w) => trainable.has(w as tf.Variable));
  const unbindable = 4 * weights.reduce((n, w) => n + w.size, 0) > bindingLimit();
  const packed = weights.filter((w) => w instanceof PackedBf16).length;
  // A group with packed and float32 weights (some value of one was not bfloat16) has nothing to stack into.
  const mixed = packed > 0 && packed < weights.length;
  if (mixed || modules.some((mod) => m.hasAdapter(mod)) || unbindable || (!trains && stackedBytes(m.config) > DECODER_TUNING.stackedBudget)) {
    // A decode step reads the weights side by side in one few-rows product.
    if (readsDirectly(m, modules, h.shape[0]!, training)) return matVecConcat(h as tf.Tensor2D, weights as Array<tf.Tensor2D | PackedBf16>);
    return concatLast(modules.map((mod) => m.proj(h, mod, training)));
  }
  if (packed > 0) {
    // Packed weights are frozen: their words stacked once (rows of words, as rows of values), kept packed.
    const parts = weights as PackedBf16[];
    const words = m.prepared.get(modules.join('+'), parts.map((w) => w.words), () => stackPacked(parts).words);
    return projection(h as tf.Tensor2D, new PackedBf16(words as tf.Tensor2D, [parts.reduce((n, w) => n + w.shape[0], 0), parts[0]!.shape[1]]), false, true);
  }
  const variables = weights as tf.Variable[];
  const stacked = trains ? stackRows(variables, true) : m.prepared.get(modules.join('+'), variables, () => stackRows(variables, false));
  return projection(h as tf.Tensor2D, stacked as tf.Tensor2D, false, true);
}

/**
 * down_proj(silu(gate)·up). A one-token step with no gradient to take runs it as one few-rows product that applies
 * SwiGLU as it loads gu (matvec.ts), where the weight has no LoRA adapter and fits one binding; else two kernels.
 */
function downProjection(m: DecoderAccess, gu: tf.Tensor, module: string, training: boolean, oneToken: boolean): tf.Tensor {
  if (!oneToken || !readsDirectly(m, [module], gu.shape[0]!, training)) return m.proj(swigluFused(gu), module, training);
  return matVecSwiglu(gu as tf.Tensor2D, m.projWeight(module) as tf.Tensor2D | PackedBf16);
}

/**
 * Whether a few-rows product (matvec.ts) may read these modules' weights as they are: no gradient to take, few
 * enough rows, the WGSL products in use (one-token decode steps force them), no LoRA adapter, each weight within
 * one binding (else the model's linear splits it).
 */
function readsDirectly(m: DecoderAccess, modules: string[], rows: number, training: boolean): boolean {
  return !training && takesMatVec(rows) && matMulChoice() === 'wgsl' &&
    modules.every((mod) => !m.hasAdapter(mod) && bytesOf(m.projWeight(mod)) <= bindingLimit());
}

/** GPU bytes of a stored weight. */
function bytesOf(w: ModelWeight): number {
  return w instanceof PackedBf16 ? w.bytes : 4 * w.size;
}

/**
 * The decoder as CausalLM.hidden defines it, on the fused kernels: per layer one norm (with the residual add),
 * one q|k|v matmul, one attention kernel, o_proj, one norm, one gate|up matmul, SwiGLU, down_proj. With a cache the
 * new keys and values are written into it and attention reads it.
 */
export function fusedHidden(m: DecoderAccess, inputIds: tf.Tensor2D, attentionMask: tf.Tensor2D, cache: KvCache | null, training: boolean): tf.Tensor3D {
  if (cache !== null && !(cache instanceof DeviceKvCache)) throw new Error('decodeStep: cache was not made by this model');
  const c = m.config;
  const [B, T] = inputIds.shape;
  const past = cache?.length ?? 0;
  const shape: AttentionShape = { numHeads: c.numHeads, numKvHeads: c.numKvHeads, headDim: c.headDim, window: c.slidingWindow ?? 0 };
  const trainable = recordingGradients() ? m.trainable() : new Set<tf.Variable>();
  cache?.reserve(B, past + T);
  const mask = cache ? cache.columnInfo(attentionMask) : attentionMeta(attentionMask);
  const rope = m.prepared.get('rope', [], () => {
    const { cos, sin } = m.ropeTables();
    return tf.stack([cos, sin]);
  });
  const width = (c.numHeads + 2 * c.numKvHeads) * c.headDim;
  /**
   * Layer i from its residual stream: `x` plus, when given, the last layer's MLP output `delta`, which the input norm
   * adds (one kernel for the add and the norm). Returns the stream after attention and this layer's MLP output.
   */
  const layer = (i: number, x: tf.Tensor, delta: tf.Tensor | null, meta: tf.Tensor): { x: tf.Tensor; delta: tf.Tensor } => {
    const p = `model.layers.${i}.`;
    let h: tf.Tensor;
    if (delta) {
      const next = addRmsNorm(x, delta, m.weight(`${p}input_layernorm.weight`), c.rmsNormEps);
      x = next.sum;
      h = next.normed;
    } else {
      h = rmsNorm(x, m.weight(`${p}input_layernorm.weight`), c.rmsNormEps);
    }
    const qkv = tf.reshape(projectStacked(m, h, [`${p}self_attn.q_proj`, `${p}self_attn.k_proj`, `${p}self_attn.v_proj`], training, trainable), [B, T, width]);
    let att: tf.Tensor;
    if (cache) {
      const kv = cache.layers[i]!;
      // One new token per row: the attention kernel writes its key and value into the cache itself.
      if (T > 1) appendToCache(kv, qkv, meta, rope, past, shape);
      att = attendCache(kv, qkv, meta, rope, past, shape);
    } else {
      att = attention(qkv, meta, rope, shape);
    }
    const post = addRmsNorm(x, m.proj(tf.reshape(att, [B * T, c.numHeads * c.headDim]), `${p}self_attn.o_proj`, training),
      m.weight(`${p}post_attention_layernorm.weight`), c.rmsNormEps);
    const gu = projectStacked(m, post.normed, [`${p}mlp.gate_proj`, `${p}mlp.up_proj`], training, trainable);
    return { x: post.sum, delta: downProjection(m, gu, `${p}mlp.down_proj`, training, cache !== null && T === 1) };
  };
  const embedded = tf.reshape(m.embed(inputIds), [B * T, c.hiddenSize]); // [N, H]
  const checkpoint = cache ? null : m.checkpoint;
  if (checkpoint) {
    // A checkpointed layer has one input to keep: the stream with the MLP output added (one more add per layer).
    let x = embedded;
    for (let i = 0; i < c.numLayers; i++) {
      x = checkpoint(i, x, [mask], (input, [meta]) => {
        const out = layer(i, input, null, meta!);
        return tf.add(out.x, out.delta);
      });
    }
    return tf.reshape(rmsNorm(x, m.weight('model.norm.weight'), c.rmsNormEps), [B, T, c.hiddenSize]) as tf.Tensor3D;
  }
  let x = embedded;
  let delta: tf.Tensor | null = null;
  for (let i = 0; i < c.numLayers; i++) ({ x, delta } = layer(i, x, delta, mask));
  if (cache) cache.length = past + T;
  return tf.reshape(addRmsNormOnly(x, delta!, m.weight('model.norm.weight'), c.rmsNormEps), [B, T, c.hiddenSize]) as tf.Tensor3D;
}

// The Llama/Mistral causal LM in tfjs: decoder, loss, KV-cached decoding; weights as tf.Variables under Hugging Face names.
import * as tf from '@tensorflow/tfjs-core';
import { checkConfig, initWeights, weightShapes, type LmConfig } from './config.ts';
import { kernels } from './kernels.ts';
import * as ops from './ops.ts';
import { RowBlockCache, splitEmbedding, splitLinear, type RowBlocks } from './split-weights.ts';
import type { HostTensor } from './safetensors.ts';
import { PreparedTensors, type DecoderAccess, type LayerCheckpoint } from './webgpu/decoder.ts';
import { PackedBf16 } from './webgpu/bf16.ts';
import { recordingGradients } from './webgpu/engine.ts';
import { checkpointed } from './activation-checkpointing.ts';
import type { Batch, KvCache, LanguageModel, LossParts, ModelWeight } from './types.ts';

/** A LoRA adapter on one linear module: `y += scaling · B(A(dropout(x)))`, A [r, in], B [out, r] (PEFT layout). */
export interface LoraAdapter {
  a: tf.Variable;
  b: tf.Variable;
}

/** The LoRA state of a model (PEFT's single `default` adapter). */
export interface LoraSetup {
  rank: number;
  alpha: number;
  dropout: number;
  /** Module suffixes adapted, e.g. `q_proj`, `v_proj`. */
  targetModules: string[];
  /** alpha / rank. */
  scaling: number;
  /** Adapters by module name without the `.weight`, e.g. `model.layers.0.self_attn.q_proj`. */
  adapters: Map<string, LoraAdapter>;
  /** PEFT `modules_to_save`: trainable copies of whole weights, by the weight's saved name; used instead of the original. */
  saved: Map<string, tf.Variable>;
  /** Module names (saved weight names without `.weight`/`.bias`) listed in modules_to_save. */
  modulesToSave: string[];
  /** Seed of the dropout masks; advanced every training forward so masks differ between steps. */
  dropoutSeed: number;
}

/** float32's lowest finite value: what torch's `finfo(float32).min` writes into masked logits. */
export const FLOAT32_MIN = -3.4028234663852886e38;

/** Per-layer keys and values of the positions seen so far. Extended in place by `decodeStep`. */
export class LmKvCache implements KvCache {
  keys: tf.Tensor4D[] = [];   // per layer [B, nkv, S, hd]
  values: tf.Tensor4D[] = []; // per layer [B, nkv, S, hd]
  length = 0;

  keepRows(rows: number[]): void {
    this.keys = this.keys.map((t) => keepBatchRows(t, rows));
    this.values = this.values.map((t) => keepBatchRows(t, rows));
  }

  dispose(): void {
    for (const t of [...this.keys, ...this.values]) t.dispose();
    this.keys = [];
    this.values = [];
    this.length = 0;
  }
}

/** tfjs-backend-wasm 4.22's view of a tensor's values in the wasm heap, without a copy (present but not typed public). */
interface HeapViews {
  typedArrayFromHeap(t: tf.TensorInfo): Float32Array | Int32Array;
}

/**
 * Rows `rows` of a tensor along its first axis, as a new tensor; `t` is disposed. On wasm and cpu a copy through host
 * memory (each row is contiguous, and tf.gather is slow on wasm); on wasm only the kept rows are read out of the heap,
 * which halves the time of dropping finished rows from a KV cache. Elsewhere tf.gather.
 */
export function keepBatchRows<T extends tf.Tensor>(t: T, rows: number[]): T {
  const backend = tf.getBackend();
  if (backend !== 'wasm' && backend !== 'cpu') {
    const kept = tf.gather(t, rows) as T;
    t.dispose();
    return kept;
  }
  const values = backend === 'wasm' ? (tf.backend() as unknown as HeapViews).typedArrayFromHeap(t) : (t.dataSync() as Float32Array | Int32Array);
  const size = t.size / t.shape[0]!;
  const out = new (values.constructor as Float32ArrayConstructor | Int32ArrayConstructor)(rows.length * size);
  rows.forEach((r, i) => out.set(values.subarray(r * size, (r + 1) * size), i * size));
  const kept = tf.tensor(out, [rows.length, ...t.shape.slice(1)], t.dtype) as T;
  t.dispose();
  return kept;
}

/** Gradient-free identity: the pause head reads the hidden state without training the body (`.detach()`). */
export const detach = tf.customGrad((...args: Array<tf.Tensor | tf.GradSaveFunc>) => ({
  value: tf.clone(args[0] as tf.Tensor),
  gradFunc: (dy: tf.Tensor) => tf.zerosLike(dy),
})) as <T extends tf.Tensor>(x: T) => T;

/** A variable made from a temporary tensor, which is then freed (tf.variable shares its data but keeps it registered). */
export function ownedVariable(t: tf.Tensor): tf.Variable {
  const v = tf.variable(t, true);
  t.dispose();
  return v;
}

/**
 * Copies a weight map into tf.Variables, checking names and shapes against what `expected` lists. tf.Tensor values
 * are taken over: each is disposed once its variable holds the data, and on an error too, so a failed load frees
 * everything it was given and made.
 */
export function weightVariables(source: Map<string, HostTensor | tf.Tensor | PackedBf16>, expected: [string, number[]][], where: string): Map<string, ModelWeight> {
  const out = new Map<string, ModelWeight>();
  try {
    const missing = expected.filter(([n]) => !source.has(n)).map(([n]) => n);
    if (missing.length > 0) throw new Error(`${where}: missing weights ${missing.slice(0, 5).join(', ')}${missing.length > 5 ? ` and ${missing.length - 5} more` : ''}`);
    const known = new Set(expected.map(([n]) => n));
    const extra = [...source.keys()].filter((n) => !known.has(n));
    if (extra.length > 0) throw new Error(`${where}: unexpected weights ${extra.slice(0, 5).join(', ')}${extra.length > 5 ? ` and ${extra.length - 5} more` : ''}`);
    for (const [name, shape] of expected) {
      const t = source.get(name)!;
      if (t.shape.length !== shape.length || t.shape.some((d, i) => d !== shape[i])) {
        throw new Error(`${where}: weight ${name} has shape [${t.shape.join(', ')}], expected [${shape.join(', ')}]`);
      }
      // A weight packed as bfloat16 on loading (bf16-weights.ts) is kept as it is.
      out.set(name, t instanceof PackedBf16 ? t : ownedVariable(t instanceof tf.Tensor ? t : tf.tensor(t.data, t.shape, t.dtype)));
    }
    return out;
  } catch (err) {
    for (const v of out.values()) v.dispose();
    for (const t of source.values()) if (t instanceof PackedBf16) t.dispose();
    throw err;
  } finally {
    for (const t of source.values()) if (t instanceof tf.Tensor) t.dispose();
  }
}

/**
 * Materialised transposes Wᵀ of the weights the forward pass multiplies by, kept between calls so a decode step
 * neither transposes nor (on wasm) repacks a weight. An entry is valid while its variable holds the same data:
 * `assign` (optimizer steps, LoRA merges, checkpoint restores) gives a variable new data, which rebuilds the entry
 * on next use, so nothing that changes weights needs to know about this cache.
 */
export class TransposeCache {
  private readonly entries = new Map<tf.Variable, { data: object; transposed: tf.Tensor2D }>();

  /** Wᵀ [in, out] of `w` [out, in]. The tensor belongs to the cache: valid until `w` changes or the cache is cleared. */
  get(w: tf.Variable): tf.Tensor2D {
    const entry = this.entries.get(w);
    if (entry && entry.data === w.dataId) return entry.transposed;
    entry?.transposed.dispose();
    // Weights disposed since (merged LoRA adapters, dropped modules_to_save copies) take their entries with them.
    for (const [v, e] of this.entries) {
      if (!v.isDisposed) continue;
      e.transposed.dispose();
      this.entries.delete(v);
    }
    // Kept: the caller is usually inside a tidy (forward pass, gradient tape) that must not free it.
    const transposed = tf.keep(ops.transposeWeight(w));
    this.entries.set(w, { data: w.dataId, transposed });
    return transposed;
  }

  /** Frees every entry (the weights themselves are untouched). */
  clear(): void {
    for (const { transposed } of this.entries.values()) transposed.dispose();
    this.entries.clear();
  }
}

/**
 * A Llama/Mistral decoder with its LM head. `weights` holds one variable per saved tensor; the pause wrapper
 * (pause.ts) subclasses it with other names, an extended embedding and a second head.
 */
export class CausalLM implements LanguageModel {
  readonly config: LmConfig;
  readonly weights: Map<string, ModelWeight>;
  /** LoRA adapters and modules_to_save copies (lora.ts), or null. */
  lora: LoraSetup | null = null;
  /** Saved names that train (set by freeze.ts); null: every weight trains (from-scratch or full fine-tuning). */
  trainableNames: Set<string> | null = null;
  /** Prefix of the decoder's weight names: '' for a plain model, `language_model.` inside the pause wrapper. */
  readonly prefix: string;
  private rope: { cos: tf.Tensor2D; sin: tf.Tensor2D } | null = null;
  /** Prepared transposes of the weights, reused by every forward pass until a weight changes. */
  private readonly transposes = new TransposeCache();
  /** Tensors a backend's fused decoder derives from the weights and keeps (kernels.ts). */
  private readonly prepared = new PreparedTensors();
  /** Row blocks of the weights too large for one WebGPU binding (split-weights.ts). */
  private readonly rowBlocks = new RowBlockCache();
  /**
   * Activation checkpointing in training (Hugging Face's `gradient_checkpointing`): each decoder layer keeps only its
   * input for the backward pass and runs again there. Same loss and gradients, far less memory, about a third more time.
   */
  gradientCheckpointing = false;

  constructor(config: LmConfig, weights: Map<string, ModelWeight>, prefix = '') {
    checkConfig(config);
    this.config = config;
    this.weights = weights;
    this.prefix = prefix;
  }

  /** Builds a plain model from host or tf tensors named as in a Hugging Face model.safetensors; tf tensors are taken over (disposed). */
  static fromWeights(config: LmConfig, tensors: Map<string, HostTensor | tf.Tensor | PackedBf16>): CausalLM {
    const source = new Map(tensors);
    const drop = (name: string) => {
      const t = source.get(name);
      if (t instanceof tf.Tensor || t instanceof PackedBf16) t.dispose();
      source.delete(name);
    };
    // Tied checkpoints sometimes store lm_head.weight anyway (a copy of the embedding): drop it.
    if (config.tieWordEmbeddings) drop('lm_head.weight');
    // Older checkpoints store RoPE's inverse frequencies as a buffer; they are recomputed from the config.
    for (const name of [...source.keys()]) if (name.endsWith('.rotary_emb.inv_freq')) drop(name);
    return new CausalLM(config, weightVariables(source, weightShapes(config), 'model weights'));
  }

  /** Whether this is the pause wrapper (pause.ts). */
  get hasPause(): boolean {
    return false;
  }

  /** The weight under `name` as the forward pass uses it: the modules_to_save copy when LoRA made one. */
  param(name: string): ModelWeight {
    const w = this.lora?.saved.get(name) ?? this.weights.get(name);
    if (!w) throw new Error(`model has no weight ${name}`);
    return w;
  }

  /**
   * The stored weight `name` as a tf.Variable, for code that assigns or trains it: a packed bfloat16 weight
   * (bf16-weights.ts) is widened back to float32 first, and stays so.
   */
  variable(name: string): tf.Variable {
    const w = this.weights.get(name);
    if (!w) throw new Error(`model has no weight ${name}`);
    if (!(w instanceof PackedBf16)) return w;
    const v = ownedVariable(w.unpacked());
    w.dispose();
    this.weights.set(name, v);
    return v;
  }

  /** `param` for weights that are never packed (norms, embeddings, heads): a tf.Variable. */
  protected variableParam(name: string): tf.Variable {
    const w = this.param(name);
    if (w instanceof PackedBf16) throw new Error(`weight ${name} is packed as bfloat16; only decoder projections may be`);
    return w;
  }

  /** A decoder weight by its plain HF name (`model.layers.0...`), whatever the prefix: norms, embeddings, heads. */
  protected dw(local: string): tf.Variable {
    return this.variableParam(this.prefix + local);
  }

  /** Input embedding table [V(+1), H]. */
  protected embedTable(): tf.Variable {
    return this.dw('model.embed_tokens.weight');
  }

  /** Output head [V(+1), H]; the embedding table when tied. */
  protected headWeight(): tf.Variable {
    return this.config.tieWordEmbeddings ? this.embedTable() : this.dw('lm_head.weight');
  }

  /** Weight names the output head is stored under (the embedding when tied). */
  headName(): string {
    return this.prefix + (this.config.tieWordEmbeddings ? 'model.embed_tokens.weight' : 'lm_head.weight');
  }

  /** x·Wᵀ (+ b) through the prepared transpose of `weight` [out, in]; x [..., in] → [..., out]. */
  protected linear(x: tf.Tensor, weight: ModelWeight, bias?: tf.Tensor): tf.Tensor {
    // Packed only where it fits one binding (bf16-weights.ts); the products read it as it is.
    if (weight instanceof PackedBf16) return kernels().linear(x, weight, bias, () => weight.words);
    const split = this.blocksOf(weight);
    if (split) return splitLinear(x, split, bias, kernels().linear);
    return kernels().linear(x, weight, bias, () => this.transposes.get(weight));
  }

  /** Rows of an embedding table for int32 ids of any shape → [...ids.shape, H]. */
  protected embeddingRows(ids: tf.Tensor, table: tf.Variable): tf.Tensor {
    const split = this.blocksOf(table);
    return split ? splitEmbedding(ids, split) : kernels().embedding(ids, table);
  }

  /** The row blocks of a weight beyond the WebGPU binding limit, or null for every other weight. */
  protected blocksOf(weight: tf.Variable): RowBlocks | null {
    const trainable = () => [...this.trainableVariables().values()];
    const name = () => [...this.weights].find(([, v]) => v === weight)?.[0] ?? [...this.trainableVariables()].find(([, v]) => v === weight)?.[0] ?? weight.name;
    // Only a gradient being taken for the weight makes splitting wrong; inference uses any weight.
    const recording = () => (tf.engine() as unknown as { state: { gradientDepth: number } }).state.gradientDepth > 0;
    return this.rowBlocks.get(weight, name, () => recording() && trainable().includes(weight));
  }

  /** A linear module of the decoder, with its LoRA adapter when one is attached. */
  protected proj(x: tf.Tensor, module: string, training: boolean): tf.Tensor {
    const name = this.prefix + module;
    const y = this.linear(x, this.param(`${name}.weight`));
    const adapter = this.lora?.adapters.get(name);
    if (!adapter || !this.lora) return y;
    let input = x;
    if (training && this.lora.dropout > 0) input = tf.dropout(x, this.lora.dropout, undefined, this.lora.dropoutSeed++);
    const delta = this.linear(this.linear(input, adapter.a), adapter.b);
    return tf.add(y, tf.mul(delta, this.lora.scaling));
  }

  private ropeTables(): { cos: tf.Tensor2D; sin: tf.Tensor2D } {
    if (!this.rope) {
      const c = this.config;
      this.rope = tf.tidy(() => ops.ropeTables(c.headDim, c.maxPositionEmbeddings, c.ropeTheta));
      tf.keep(this.rope.cos);
      tf.keep(this.rope.sin);
    }
    return this.rope;
  }

  /**
   * Final normed hidden states [B, T, H] of `inputIds` [B, T] following `cache.length` cached positions.
   * `attentionMask` [B, cache + T] marks real tokens (1) and padding (0). Positions count real tokens only
   * (cumsum(mask) - 1, clipped at 0), as transformers' generate does, so a left-padded row computes what it
   * would unpadded. With a cache, the new keys/values are appended to it.
   */
  hidden(inputIds: tf.Tensor2D, attentionMask: tf.Tensor2D, cache: KvCache | null, training: boolean): tf.Tensor3D {
    const c = this.config;
    const [B, T] = inputIds.shape;
    const past = cache?.length ?? 0;
    if (attentionMask.shape[0] !== B || attentionMask.shape[1] !== past + T) {
      throw new Error(`attention mask has shape [${attentionMask.shape.join(', ')}], expected [${B}, ${past + T}] (cached ${past} + new ${T})`);
    }
    if (past + T > c.maxPositionEmbeddings) throw new Error(`sequence of ${past + T} tokens exceeds max_position_embeddings ${c.maxPositionEmbeddings}`);
    const fused = kernels().decoder;
    if (fused) return fused.hidden(this.decoderAccess(), inputIds, attentionMask, cache, training);
    if (cache !== null && !(cache instanceof LmKvCache)) throw new Error('decodeStep: cache was not made by this model');
    const { cos, sin } = this.ropeTables();
    const maskF = tf.cast(attentionMask, 'float32');
    const positions = tf.cast(tf.slice(tf.relu(tf.sub(tf.cumsum(maskF, 1), 1)), [0, past], [B, T]), 'int32') as tf.Tensor2D; // [B, T]
    const mask = ops.causalPaddingMask(attentionMask, T, c.slidingWindow); // [B, 1, T, S]
    let x: tf.Tensor = this.embed(inputIds); // [B, T, H]
    const heads = (t: tf.Tensor, n: number) => tf.transpose(tf.reshape(t, [B, T, n, c.headDim]), [0, 2, 1, 3]) as tf.Tensor4D;
    const layer = (i: number, x: tf.Tensor, context: tf.Tensor[]): tf.Tensor => {
      const positions = context[0] as tf.Tensor2D;
      const mask = context[1] as tf.Tensor4D;
      const p = `model.layers.${i}.`;
      const h = ops.rmsNorm(x, this.dw(`${p}input_layernorm.weight`), c.rmsNormEps);
      const q = ops.applyRope(heads(this.proj(h, `${p}self_attn.q_proj`, training), c.numHeads), cos, sin, positions); // [B, nh, T, hd]
      let k = ops.applyRope(heads(this.proj(h, `${p}self_attn.k_proj`, training), c.numKvHeads), cos, sin, positions); // [B, nkv, T, hd]
      let v = heads(this.proj(h, `${p}self_attn.v_proj`, training), c.numKvHeads); // [B, nkv, T, hd]
      if (cache) {
        if (past > 0) {
          k = tf.concat([cache.keys[i]!, k], 2);
          v = tf.concat([cache.values[i]!, v], 2);
          cache.keys[i]!.dispose();
          cache.values[i]!.dispose();
        }
        cache.keys[i] = tf.keep(k);
        cache.values[i] = tf.keep(v);
      }
      const att = ops.attention(q, k, v, mask); // [B, nh, T, hd]
      const merged = tf.reshape(tf.transpose(att, [0, 2, 1, 3]), [B, T, c.numHeads * c.headDim]);
      x = tf.add(x, this.proj(merged, `${p}self_attn.o_proj`, training));
      const h2 = ops.rmsNorm(x, this.dw(`${p}post_attention_layernorm.weight`), c.rmsNormEps);
      const mlp = ops.swiglu(this.proj(h2, `${p}mlp.gate_proj`, training), this.proj(h2, `${p}mlp.up_proj`, training));
      return tf.add(x, this.proj(mlp, `${p}mlp.down_proj`, training));
    };
    const checkpoint = this.checkpointing(cache);
    const context = [positions, mask];
    for (let i = 0; i < c.numLayers; i++) x = checkpoint ? checkpoint(i, x, context, (t, ctx) => layer(i, t, ctx)) : layer(i, x, context);
    if (cache) cache.length = past + T;
    return ops.rmsNorm(x, this.dw('model.norm.weight'), c.rmsNormEps) as tf.Tensor3D;
  }

  /**
   * Layer i's forward as activation checkpointing runs it (activation-checkpointing.ts), when it applies: training
   * with `gradientCheckpointing` on, a gradient being taken, no KV cache. Null otherwise.
   */
  private checkpointing(cache: KvCache | null): LayerCheckpoint | null {
    if (!this.gradientCheckpointing || cache !== null || !recordingGradients()) return null;
    const trainable = [...this.trainableVariables()];
    return (i, x, context, layer) => {
      const marker = `.layers.${i}.`;
      const own = trainable.filter(([name]) => name.includes(marker)).map(([, v]) => v);
      // LoRA dropout draws from a seed advanced per use: the second run must draw the first run's masks.
      const seed = this.lora?.dropoutSeed;
      return checkpointed(layer, x, context, own, () => {
        if (this.lora && seed !== undefined) this.lora.dropoutSeed = seed;
      });
    };
  }

  /** What a backend's fused decoder reads from this model (kernels.ts). */
  private decoderAccess(): DecoderAccess {
    return {
      checkpoint: this.checkpointing(null),
      config: this.config,
      embed: (ids) => this.embed(ids),
      weight: (local) => this.dw(local),
      projWeight: (module) => this.param(`${this.prefix}${module}.weight`),
      proj: (x, module, training) => this.proj(x, module, training),
      hasAdapter: (module) => this.lora?.adapters.has(this.prefix + module) ?? false,
      ropeTables: () => this.ropeTables(),
      trainable: () => new Set(this.trainableVariables().values()),
      prepared: this.prepared,
    };
  }

  /** Token embeddings [B, T, H]. */
  protected embed(inputIds: tf.Tensor2D): tf.Tensor3D {
    return this.embeddingRows(inputIds, this.embedTable()) as tf.Tensor3D;
  }

  /** LM logits [..., V] of hidden states. */
  logitsOf(hidden: tf.Tensor): tf.Tensor {
    return this.linear(hidden, this.headWeight());
  }

  /** Logits [B, T, V] of a full forward pass (no cache); the mask defaults to all ones. */
  forward(inputIds: tf.Tensor2D, attentionMask?: tf.Tensor2D): tf.Tensor3D {
    return tf.tidy(() => {
      const mask = attentionMask ?? tf.onesLike(inputIds);
      return this.logitsOf(this.hidden(inputIds, mask, null, false)) as tf.Tensor3D;
    });
  }

  /** Log-probabilities [..., V] of the next token from hidden states (the pause wrapper combines its two heads). */
  logProbsOf(hidden: tf.Tensor): tf.Tensor {
    return kernels().logSoftmax(this.logitsOf(hidden));
  }

  /** Mean next-token cross-entropy over the labels that count (labels are unshifted, as in HF). */
  lossParts(batch: Batch, opts: { training: boolean }): LossParts {
    const [B, T] = batch.inputIds.shape;
    const hidden = this.hidden(batch.inputIds, batch.attentionMask, null, opts.training);
    // The last position predicts nothing: drop it before the (largest) head matmul.
    const logits = this.logitsOf(tf.slice(hidden, [0, 0, 0], [B, T - 1, -1])); // [B, T-1, V]
    const labels = tf.reshape(tf.slice(batch.labels, [0, 1], [B, T - 1]), [-1]) as tf.Tensor1D;
    const { sum, count } = kernels().crossEntropySum(tf.reshape(logits, [B * (T - 1), -1]) as tf.Tensor2D, labels);
    // A batch without a counted label gives 0 rather than HF's NaN, so one empty batch cannot poison training.
    return { loss: tf.div(sum, tf.maximum(count, 1)) as tf.Scalar };
  }

  newKvCache(capacity: number): KvCache {
    return kernels().decoder?.newCache(this.config, capacity) ?? new LmKvCache();
  }

  decodeStep(inputIds: tf.Tensor2D, attentionMask: tf.Tensor2D, cache: KvCache | null): { logProbs: tf.Tensor2D; cache: KvCache } {
    const kv = cache ?? this.newKvCache(attentionMask.shape[1]);
    const logProbs = tf.tidy(() => {
      const [B, T] = inputIds.shape;
      const hidden = this.hidden(inputIds, attentionMask, kv, false);
      // A one-token step's hidden state is its last position already: no slice (a copy) needed.
      const last = T === 1 ? hidden : tf.slice(hidden, [0, T - 1, 0], [B, 1, -1]);
      return tf.reshape(this.logProbsOf(last), [B, -1]) as tf.Tensor2D;
    });
    return { logProbs, cache: kv };
  }

  trainableVariables(): Map<string, tf.Variable> {
    // Defined in freeze.ts terms: without a configuration every stored weight trains.
    const out = new Map<string, tf.Variable>();
    if (this.lora) {
      for (const [name, v] of this.lora.saved) out.set(peftSavedCopyName(name), v);
      for (const [module, { a, b }] of this.lora.adapters) {
        out.set(`base_model.model.${module}.lora_A.default.weight`, a);
        out.set(`base_model.model.${module}.lora_B.default.weight`, b);
      }
      return new Map([...out.entries()].sort(([x], [y]) => (x < y ? -1 : x > y ? 1 : 0)));
    }
    for (const [name, v] of this.weights) {
      if (this.trainableNames !== null && !this.trainableNames.has(name)) continue;
      // Packing takes only frozen weights, and freezing widens a packed weight that is to train (freeze.ts).
      if (v instanceof PackedBf16) throw new Error(`weight ${name} trains but is packed as bfloat16`);
      out.set(name, v);
    }
    return out;
  }

  dispose(): void {
    for (const v of this.weights.values()) v.dispose();
    if (this.lora) {
      for (const v of this.lora.saved.values()) v.dispose();
      for (const { a, b } of this.lora.adapters.values()) {
        a.dispose();
        b.dispose();
      }
      this.lora = null;
    }
    this.rope?.cos.dispose();
    this.rope?.sin.dispose();
    this.rope = null;
    this.dropDerived();
  }

  /** Frees the tensors derived from the weights (transposes, stacks, row blocks); they are made again on next use. */
  dropDerived(): void {
    this.transposes.clear();
    this.prepared.clear();
    this.rowBlocks.clear();
  }
}

/** PEFT's in-memory name of a modules_to_save copy of weight `name` (e.g. `lm_head.weight`). */
export function peftSavedCopyName(name: string): string {
  const dot = name.lastIndexOf('.');
  return `base_model.model.${name.slice(0, dot)}.modules_to_save.default${name.slice(dot)}`;
}

/** A fresh from-scratch model (HF init, deterministic in `seed`). */
export function createModel(cfg: LmConfig, seed: number): CausalLM {
  return CausalLM.fromWeights(cfg, initWeights(cfg, seed));
}

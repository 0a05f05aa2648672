// The typed model config (Llama/Mistral), its mapping to and from Hugging Face config.json, size presets and seeded init.
import type { HostTensor } from './safetensors.ts';

/** The pause token fields of a pause-wrapped model (absent on a plain causal LM). */
export interface PauseConfig {
  /** Id of `<|pause|>`; always the original vocabulary size (the embedding's new row). */
  tokenId: number;
  /** Text of the pause token. Default `<|pause|>`. */
  token: string;
}

/** Architecture of a Llama-family decoder; every field mirrors a Hugging Face config.json key. */
export interface LmConfig {
  /** `model_type`: which HF class the folder loads as. Default `llama`. */
  modelType: 'llama' | 'mistral';
  /** `vocab_size`: rows of the embedding table, without the pause token. */
  vocabSize: number;
  /** `hidden_size` H: width of the residual stream. */
  hiddenSize: number;
  /** `intermediate_size`: width of the SwiGLU MLP. */
  intermediateSize: number;
  /** `num_hidden_layers`: decoder blocks. */
  numLayers: number;
  /** `num_attention_heads`: query heads. */
  numHeads: number;
  /** `num_key_value_heads`: key/value heads (GQA); default numHeads. */
  numKvHeads: number;
  /** `head_dim`: width of one head; default hiddenSize / numHeads. */
  headDim: number;
  /** `rope_theta` (or `rope_parameters.rope_theta`): RoPE base. Default 10000. */
  ropeTheta: number;
  /** `rms_norm_eps`: RMSNorm epsilon. Default 1e-6 (HF's Llama default; Mistral's is also 1e-6). */
  rmsNormEps: number;
  /** `tie_word_embeddings`: the LM head reuses the input embedding (no `lm_head.weight` stored). Default false. */
  tieWordEmbeddings: boolean;
  /** `max_position_embeddings`: longest sequence the RoPE tables cover. */
  maxPositionEmbeddings: number;
  /**
   * `sliding_window` (Mistral): a query at position i sees keys at positions j with i − W < j ≤ i, counted in the
   * padded sequence as transformers does. Undefined (the default, and `null` in config.json): every earlier position.
   */
  slidingWindow?: number;
  /** `initializer_range`: std of the normal init of linear and embedding weights. Default 0.02. */
  initializerRange: number;
  /** `bos_token_id`, or null. */
  bosId: number | null;
  /** `eos_token_id` (the first one when HF lists several), or null. */
  eosId: number | null;
  /** `pad_token_id`, or null (HF's default: batches then pad with eos and mask). */
  padId: number | null;
  /** Set once the pause surgery was applied (`pause_token_id` / `pause_token` in config.json). */
  pause?: PauseConfig;
  /** The config.json this came from, so keys we do not model round-trip unchanged. */
  hf?: Record<string, unknown>;
}

export const DEFAULT_PAUSE_TOKEN = '<|pause|>';

/** A problem with a config.json, naming the file and key. */
export class ConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ConfigError';
  }
}

function num(json: Record<string, unknown>, key: string, where: string, fallback?: number): number {
  const v = json[key];
  if (v === undefined || v === null) {
    if (fallback !== undefined) return fallback;
    throw new ConfigError(`${where}: missing required key "${key}"`);
  }
  if (typeof v !== 'number' || !Number.isFinite(v)) throw new ConfigError(`${where}: "${key}" must be a number, got ${JSON.stringify(v)}`);
  return v;
}

function tokenId(json: Record<string, unknown>, key: string, where: string): number | null {
  const v = json[key];
  if (v === undefined || v === null) return null;
  if (Array.isArray(v)) return v.length > 0 && typeof v[0] === 'number' ? v[0] : null;
  if (typeof v !== 'number') throw new ConfigError(`${where}: "${key}" must be a token id, got ${JSON.stringify(v)}`);
  return v;
}

/**
 * Reads a Llama or Mistral config.json. Unsupported architecture features (biases, RoPE scaling) are errors rather
 * than silently wrong numbers. Mistral's `sliding_window` is applied in the attention mask (Llama ignores the key, as
 * transformers' LlamaConfig does).
 */
export function fromHfConfig(json: unknown, where = 'config.json'): LmConfig {
  if (typeof json !== 'object' || json === null || Array.isArray(json)) throw new ConfigError(`${where}: not a JSON object`);
  const j = json as Record<string, unknown>;
  const modelType = j.model_type ?? 'llama';
  if (modelType !== 'llama' && modelType !== 'mistral') {
    throw new ConfigError(`${where}: model_type "${String(modelType)}" is not supported (expected "llama" or "mistral")`);
  }
  if (j.attention_bias === true || j.mlp_bias === true) throw new ConfigError(`${where}: attention_bias/mlp_bias are not supported`);
  if (j.hidden_act !== undefined && j.hidden_act !== 'silu') throw new ConfigError(`${where}: hidden_act "${String(j.hidden_act)}" is not supported (expected "silu")`);
  const rope = (j.rope_parameters ?? j.rope_scaling ?? null) as Record<string, unknown> | null;
  const ropeType = rope?.rope_type ?? rope?.type ?? 'default';
  if (ropeType !== 'default') throw new ConfigError(`${where}: rope_type "${String(ropeType)}" is not supported (only "default")`);
  const hiddenSize = num(j, 'hidden_size', where);
  const numHeads = num(j, 'num_attention_heads', where);
  const maxPositionEmbeddings = num(j, 'max_position_embeddings', where, 2048);
  const sliding = modelType === 'mistral' && j.sliding_window !== undefined && j.sliding_window !== null ? num(j, 'sliding_window', where) : undefined;
  const ropeTheta = typeof rope?.rope_theta === 'number' ? rope.rope_theta : num(j, 'rope_theta', where, 10000);
  const cfg: LmConfig = {
    modelType,
    vocabSize: num(j, 'vocab_size', where),
    hiddenSize,
    intermediateSize: num(j, 'intermediate_size', where),
    numLayers: num(j, 'num_hidden_layers', where),
    numHeads,
    numKvHeads: num(j, 'num_key_value_heads', where, numHeads),
    headDim: num(j, 'head_dim', where, hiddenSize / numHeads),
    ropeTheta,
    rmsNormEps: num(j, 'rms_norm_eps', where, 1e-6),
    tieWordEmbeddings: j.tie_word_embeddings === true,
    maxPositionEmbeddings,
    initializerRange: num(j, 'initializer_range', where, 0.02),
    bosId: tokenId(j, 'bos_token_id', where),
    eosId: tokenId(j, 'eos_token_id', where),
    padId: tokenId(j, 'pad_token_id', where),
    hf: structuredClone(j),
  };
  if (sliding !== undefined) cfg.slidingWindow = sliding;
  if (j.pause_token_id !== undefined && j.pause_token_id !== null) {
    const id = num(j, 'pause_token_id', where);
    if (id !== cfg.vocabSize) throw new ConfigError(`${where}: pause_token_id ${id} must equal vocab_size ${cfg.vocabSize}`);
    cfg.pause = { tokenId: id, token: typeof j.pause_token === 'string' ? j.pause_token : DEFAULT_PAUSE_TOKEN };
  }
  checkConfig(cfg, where);
  return cfg;
}

/** config.json's names of the fields checkConfig checks: its errors speak the language of the file a user edits. */
const HF_NAMES = {
  vocabSize: 'vocab_size', hiddenSize: 'hidden_size', intermediateSize: 'intermediate_size', numLayers: 'num_hidden_layers',
  numHeads: 'num_attention_heads', numKvHeads: 'num_key_value_heads', headDim: 'head_dim', maxPositionEmbeddings: 'max_position_embeddings',
  slidingWindow: 'sliding_window',
} as const;

/** Structural checks every config must pass before weights are built. */
export function checkConfig(cfg: LmConfig, where = 'config'): void {
  for (const key of ['vocabSize', 'hiddenSize', 'intermediateSize', 'numLayers', 'numHeads', 'numKvHeads', 'headDim', 'maxPositionEmbeddings'] as const) {
    if (!Number.isInteger(cfg[key]) || cfg[key] <= 0) throw new ConfigError(`${where}: ${HF_NAMES[key]} must be a positive integer, got ${cfg[key]}`);
  }
  if (cfg.numHeads % cfg.numKvHeads !== 0) {
    throw new ConfigError(`${where}: num_attention_heads ${cfg.numHeads} is not a multiple of num_key_value_heads ${cfg.numKvHeads}`);
  }
  if (cfg.headDim % 2 !== 0) throw new ConfigError(`${where}: head_dim ${cfg.headDim} must be even for RoPE`);
  if (cfg.slidingWindow !== undefined && !(Number.isInteger(cfg.slidingWindow) && cfg.slidingWindow > 0)) {
    throw new ConfigError(`${where}: sliding_window must be a positive integer, got ${cfg.slidingWindow}`);
  }
}

/**
 * The config.json document: the original keys (unknown ones included) updated with our fields, plus
 * `pause_token_id`/`pause_token` on a pause-wrapped model. `vocab_size` stays the original vocabulary.
 */
export function toHfConfig(cfg: LmConfig): Record<string, unknown> {
  const out: Record<string, unknown> = structuredClone(cfg.hf ?? {});
  const arch = cfg.modelType === 'mistral' ? 'MistralForCausalLM' : 'LlamaForCausalLM';
  out.architectures ??= [arch];
  out.model_type = cfg.modelType;
  out.vocab_size = cfg.vocabSize;
  out.hidden_size = cfg.hiddenSize;
  out.intermediate_size = cfg.intermediateSize;
  out.num_hidden_layers = cfg.numLayers;
  out.num_attention_heads = cfg.numHeads;
  out.num_key_value_heads = cfg.numKvHeads;
  out.head_dim = cfg.headDim;
  out.hidden_act ??= 'silu';
  out.max_position_embeddings = cfg.maxPositionEmbeddings;
  if (cfg.slidingWindow !== undefined) out.sliding_window = cfg.slidingWindow;
  out.initializer_range = cfg.initializerRange;
  out.rms_norm_eps = cfg.rmsNormEps;
  // transformers 5 nests theta in rope_parameters, 4.x keeps it top-level: write it where it was found.
  if (out.rope_parameters && typeof out.rope_parameters === 'object') {
    (out.rope_parameters as Record<string, unknown>).rope_theta = cfg.ropeTheta;
  } else {
    out.rope_theta = cfg.ropeTheta;
  }
  out.tie_word_embeddings = cfg.tieWordEmbeddings;
  out.bos_token_id = cfg.bosId;
  // Keep a list of eos ids when the original had one and its first entry is still ours.
  const eos = out.eos_token_id;
  if (!(Array.isArray(eos) && eos[0] === cfg.eosId)) out.eos_token_id = cfg.eosId;
  out.pad_token_id = cfg.padId;
  if (cfg.pause) {
    // The weights sit under the wrapper's names (`language_model.*`): transformers must not load this folder as a
    // plain Mistral/Llama, which would silently leave every weight at random init.
    out.architectures = ['PauseClassifierWrapper'];
    out.pause_token_id = cfg.pause.tokenId;
    out.pause_token = cfg.pause.token;
  } else {
    delete out.pause_token_id;
    delete out.pause_token;
  }
  return out;
}

/** The shape of a from-scratch model; vocabulary and special ids come from the tokenizer. */
export interface SizePreset {
  numLayers: number;
  hiddenSize: number;
  numHeads: number;
  numKvHeads: number;
  intermediateSize: number;
}

/**
 * From-scratch sizes. `tiny` matches the parity fixtures' shape (fast enough for tests), `small` trains a
 * GSM8K demo on a CPU in minutes, `medium` wants a GPU.
 */
export const PRESETS = {
  tiny: { numLayers: 2, hiddenSize: 64, numHeads: 4, numKvHeads: 2, intermediateSize: 176 },
  small: { numLayers: 4, hiddenSize: 128, numHeads: 4, numKvHeads: 4, intermediateSize: 512 },
  medium: { numLayers: 8, hiddenSize: 512, numHeads: 8, numKvHeads: 8, intermediateSize: 2048 },
} as const satisfies Record<string, SizePreset>;

export type PresetName = keyof typeof PRESETS;

/** Special-token facts a preset config needs from the tokenizer. */
export interface VocabInfo {
  vocabSize: number;
  bosId: number | null;
  eosId: number | null;
  padId: number | null;
}

/** A full config for a from-scratch model of a preset size (Llama layout, untied head, θ = 10000). */
export function presetConfig(name: string, vocab: VocabInfo, maxPositionEmbeddings = 1024): LmConfig {
  const size = (PRESETS as Record<string, SizePreset>)[name];
  if (!size) throw new ConfigError(`unknown model size preset "${name}" (expected one of ${Object.keys(PRESETS).join(', ')})`);
  const cfg: LmConfig = {
    modelType: 'llama',
    vocabSize: vocab.vocabSize,
    hiddenSize: size.hiddenSize,
    intermediateSize: size.intermediateSize,
    numLayers: size.numLayers,
    numHeads: size.numHeads,
    numKvHeads: size.numKvHeads,
    headDim: size.hiddenSize / size.numHeads,
    ropeTheta: 10000,
    rmsNormEps: 1e-6,
    tieWordEmbeddings: false,
    maxPositionEmbeddings,
    initializerRange: 0.02,
    bosId: vocab.bosId,
    eosId: vocab.eosId,
    padId: vocab.padId,
  };
  checkConfig(cfg, `preset ${name}`);
  return cfg;
}

/** HF names and shapes of a plain causal LM's weights, in a stable order. */
export function weightShapes(cfg: LmConfig): [string, number[]][] {
  const H = cfg.hiddenSize;
  const out: [string, number[]][] = [['model.embed_tokens.weight', [cfg.vocabSize, H]]];
  for (let i = 0; i < cfg.numLayers; i++) {
    const p = `model.layers.${i}.`;
    out.push(
      [`${p}self_attn.q_proj.weight`, [cfg.numHeads * cfg.headDim, H]],
      [`${p}self_attn.k_proj.weight`, [cfg.numKvHeads * cfg.headDim, H]],
      [`${p}self_attn.v_proj.weight`, [cfg.numKvHeads * cfg.headDim, H]],
      [`${p}self_attn.o_proj.weight`, [H, cfg.numHeads * cfg.headDim]],
      [`${p}mlp.gate_proj.weight`, [cfg.intermediateSize, H]],
      [`${p}mlp.up_proj.weight`, [cfg.intermediateSize, H]],
      [`${p}mlp.down_proj.weight`, [H, cfg.intermediateSize]],
      [`${p}input_layernorm.weight`, [H]],
      [`${p}post_attention_layernorm.weight`, [H]],
    );
  }
  out.push(['model.norm.weight', [H]]);
  if (!cfg.tieWordEmbeddings) out.push(['lm_head.weight', [cfg.vocabSize, H]]);
  return out;
}

/**
 * A seeded source of standard normals (xoshiro128** + Box-Muller): the same seed gives the same weights on
 * every machine and backend, which tf.randomNormal does not promise.
 */
export class SeededRandom {
  private s: Uint32Array;
  private spare: number | null = null;

  constructor(seed: number) {
    // splitmix32 spreads a small integer seed over the 128-bit state.
    this.s = new Uint32Array(4);
    let x = (seed >>> 0) ^ 0x9e3779b9;
    for (let i = 0; i < 4; i++) {
      x = (x + 0x9e3779b9) >>> 0;
      let z = x;
      z = Math.imul(z ^ (z >>> 16), 0x85ebca6b) >>> 0;
      z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35) >>> 0;
      this.s[i] = (z ^ (z >>> 16)) >>> 0;
    }
  }

  /** Uniform in [0, 1). */
  uniform(): number {
    const s = this.s;
    const result = Math.imul(rotl(Math.imul(s[1], 5), 7), 9) >>> 0;
    const t = (s[1] << 9) >>> 0;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 11);
    return result / 4294967296;
  }

  normal(): number {
    if (this.spare !== null) {
      const v = this.spare;
      this.spare = null;
      return v;
    }
    const u = 1 - this.uniform();
    const r = Math.sqrt(-2 * Math.log(u));
    const a = 2 * Math.PI * this.uniform();
    this.spare = r * Math.sin(a);
    return r * Math.cos(a);
  }

  normalArray(n: number, std: number, mean = 0): Float32Array {
    const out = new Float32Array(n);
    for (let i = 0; i < n; i++) out[i] = mean + std * this.normal();
    return out;
  }

  uniformArray(n: number, low: number, high: number): Float32Array {
    const out = new Float32Array(n);
    for (let i = 0; i < n; i++) out[i] = low + (high - low) * this.uniform();
    return out;
  }
}

function rotl(x: number, k: number): number {
  return ((x << k) | (x >>> (32 - k))) >>> 0;
}

/**
 * Weights of a fresh model as Hugging Face initialises them (`_init_weights`): linear and embedding weights
 * from N(0, initializerRange), RMSNorm weights ones. Deterministic in `seed`.
 */
export function initWeights(cfg: LmConfig, seed: number): Map<string, HostTensor> {
  checkConfig(cfg);
  const rng = new SeededRandom(seed);
  const out = new Map<string, HostTensor>();
  for (const [name, shape] of weightShapes(cfg)) {
    const n = shape.reduce((a, b) => a * b, 1);
    const data = name.endsWith('norm.weight') ? new Float32Array(n).fill(1) : rng.normalArray(n, cfg.initializerRange);
    // nn.Embedding(padding_idx=pad) keeps the padding row at zero, as HF's init does.
    if (name === 'model.embed_tokens.weight' && cfg.padId !== null && cfg.padId < cfg.vocabSize) data.fill(0, cfg.padId * shape[1]!, (cfg.padId + 1) * shape[1]!);
    out.set(name, { dtype: 'float32', shape, data });
  }
  return out;
}

// Stage kind `init_model`: a causal LM from a Hugging Face checkpoint folder or from scratch, saved as a Hugging Face folder with its tokenizer.
import path from 'node:path';
import type { JsonValue } from '../runtime/json.ts';
import type { StageContext, StageKind, StageResult } from './kind.ts';
import { readModelConfig } from './lm/memory-estimate.ts';

export interface InitModelParams {
  path: string | null;
  preset: string;
  overrides: Record<string, JsonValue>;
  tokenizer: string | null;
  seed: number;
}

export const INIT_MODEL: StageKind<InitModelParams> = {
  name: 'init_model',
  version: 2,
  description:
    'A Llama/Mistral causal LM as a Hugging Face folder (config.json, model.safetensors, tokenizer.json): loaded from a ' +
    'checkpoint folder, or built from scratch from a size preset with Hugging Face\'s seeded initialisation.',
  params: {
    type: 'object',
    properties: {
      path: {
        type: ['string', 'null'],
        description: 'Hugging Face checkpoint folder (config.json, model.safetensors or shards, tokenizer.json), relative to the workspace; null builds a model from scratch.',
        default: null,
      },
      preset: {
        type: 'string',
        enum: ['tiny', 'small', 'medium'],
        description: 'Size of a from-scratch model: tiny (2 layers, width 64, for tests), small (4 layers, width 128, a CPU demo), medium (8 layers, width 512, wants a GPU). Ignored with `path`.',
        default: 'small',
      },
      overrides: {
        type: 'object',
        description: 'config.json keys that replace the preset\'s, e.g. {"num_hidden_layers": 6, "max_position_embeddings": 2048}. Ignored with `path`.',
        // The keys a from-scratch model's config honours, so a misspelt one is an error in `check`, not a silent no-op.
        properties: {
          model_type: { enum: ['llama', 'mistral'], description: 'llama, or mistral (which honours sliding_window).' },
          vocab_size: { type: 'integer', minimum: 1, description: 'Embedding rows; at least the tokenizer\'s ids.' },
          hidden_size: { type: 'integer', minimum: 1, description: 'Width of the residual stream.' },
          intermediate_size: { type: 'integer', minimum: 1, description: 'Width of the SwiGLU MLP.' },
          num_hidden_layers: { type: 'integer', minimum: 1, description: 'Decoder layers.' },
          num_attention_heads: { type: 'integer', minimum: 1, description: 'Query heads.' },
          num_key_value_heads: { type: 'integer', minimum: 1, description: 'Key/value heads (grouped-query attention); divides num_attention_heads.' },
          head_dim: { type: 'integer', minimum: 2, description: 'Values per head (even, for RoPE); default hidden_size / num_attention_heads.' },
          max_position_embeddings: { type: 'integer', minimum: 1, description: 'Longest sequence, prompt and answer together.' },
          sliding_window: { type: ['integer', 'null'], minimum: 1, description: 'Mistral\'s attention window; null for none.' },
          rope_theta: { type: 'number', exclusiveMinimum: 0, description: 'RoPE base.' },
          rms_norm_eps: { type: 'number', exclusiveMinimum: 0, description: 'RMSNorm epsilon.' },
          initializer_range: { type: 'number', minimum: 0, description: 'Standard deviation of the initial weights.' },
          tie_word_embeddings: { type: 'boolean', description: 'Share the embedding with the LM head.' },
          bos_token_id: { type: ['integer', 'null'], minimum: 0, description: 'Beginning-of-sequence id.' },
          eos_token_id: { type: ['integer', 'null'], minimum: 0, description: 'End-of-sequence id.' },
          pad_token_id: { type: ['integer', 'null'], minimum: 0, description: 'Padding id.' },
        },
        additionalProperties: false,
        default: {},
      },
      tokenizer: {
        type: ['string', 'null'],
        description: 'tokenizer.json (or a folder holding one), relative to the workspace; null: the checkpoint folder\'s own, or the built-in character tokenizer for a from-scratch model.',
        default: null,
      },
      seed: { type: 'integer', minimum: 0, description: 'Seed of the from-scratch initialisation.', default: 42 },
    },
    additionalProperties: false,
  },
  inputs: {},
  sources: ['stages/init-model.ts', 'stages/lm'],
  workspaceFiles: (p) => [p.path, p.tokenizer].filter((f): f is string => f !== null),
  // A checkpoint's own config.json gives the shape (a from-scratch preset needs its tokenizer: unknown until it runs).
  plannedModelConfig: (p, _inputs, workspace) => (p.path === null ? undefined : readModelConfig(path.join(workspace, p.path))),

  async run(ctx: StageContext<InitModelParams>): Promise<StageResult> {
    const p = ctx.params;
    const { refuseBeyondWasmMemory, startBackend } = await import('./lm/stage-support.ts');
    const { builtinTokenizer, loadTokenizer } = await import('./lm/tokenizer.ts');
    const { fromHfConfig, initWeights, presetConfig, toHfConfig } = await import('./lm/config.ts');
    const { CausalLM } = await import('./lm/model.ts');
    const { loadModel, saveModel } = await import('./lm/model-io.ts');
    const ran = await startBackend(ctx);
    const resolve = (file: string) => path.resolve(ctx.workspace, file);

    let model;
    let tokenizer;
    if (p.path !== null) {
      const dir = resolve(p.path);
      tokenizer = await loadTokenizer(p.tokenizer !== null ? resolve(p.tokenizer) : dir);
      refuseBeyondWasmMemory(ran, readModelConfig(dir), { forward: false }, { verb: 'load' });
      model = await loadModel(dir, { log: ctx.log });
      if (tokenizer.vocabSize > model.config.vocabSize) {
        const from = p.tokenizer ?? `${p.path}/tokenizer.json`;
        model.dispose();
        throw new Error(`init_model: the tokenizer ${from} has ${tokenizer.vocabSize} ids but the checkpoint ${p.path} has ` +
          `${model.config.vocabSize} embedding rows: give the tokenizer the checkpoint was trained with`);
      }
      ctx.log(`init_model: loaded ${dir}`);
    } else {
      tokenizer = p.tokenizer !== null ? await loadTokenizer(resolve(p.tokenizer)) : builtinTokenizer();
      const base = toHfConfig(presetConfig(p.preset, tokenizer));
      const config = fromHfConfig({ ...base, ...p.overrides }, 'init_model overrides');
      if (tokenizer.vocabSize > config.vocabSize) {
        throw new Error(`init_model: the tokenizer has ${tokenizer.vocabSize} ids but vocab_size is ${config.vocabSize}`);
      }
      refuseBeyondWasmMemory(ran, toHfConfig(config), { forward: false }, { verb: 'build' });
      model = CausalLM.fromWeights(config, initWeights(config, p.seed));
      ctx.log(`init_model: ${p.preset} model from scratch, seed ${p.seed}`);
    }
    try {
      await saveModel(model, tokenizer, ctx.outDir);
      const c = model.config;
      const parameters = [...model.weights.values()].reduce((n, v) => n + v.size, 0);
      return {
        metrics: {
          source: p.path ?? `preset ${p.preset}`,
          parameters,
          model_type: c.modelType,
          vocab_size: c.vocabSize,
          hidden_size: c.hiddenSize,
          num_layers: c.numLayers,
          pause_token_id: c.pause?.tokenId ?? null,
          ...ran,
        },
      };
    } finally {
      model.dispose();
    }
  },
};

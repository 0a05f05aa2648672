// Stage kind `add_pause_token`: the pause surgery (extended embedding, grown LM head, pause head) on a model folder.
import type { StageContext, StageKind, StageResult } from './kind.ts';
import { readModelConfig } from './lm/memory-estimate.ts';

export interface AddPauseTokenParams {
  token: string;
  seed: number;
}

export const ADD_PAUSE_TOKEN: StageKind<AddPauseTokenParams> = {
  name: 'add_pause_token',
  version: 3,
  description:
    'Wraps a model with the pause token as the original PauseClassifierWrapper: `<|pause|>` added to the tokenizer at ' +
    'id V, a new embedding row drawn from N(0, var(embedding)), the LM head grown by one (masked) row and untied, ' +
    'and a fresh pause head Linear(H → 2). Saved under the original wrapper\'s tensor names. A model stored in ' +
    'bfloat16 gets its new weights in bfloat16 too, as the original, and is saved as BF16.',
  params: {
    type: 'object',
    properties: {
      token: { type: 'string', minLength: 1, description: 'Text of the pause token added to the tokenizer.', default: '<|pause|>' },
      seed: { type: 'integer', minimum: 0, description: 'Seed of the new embedding row and the pause head\'s initialisation.', default: 42 },
    },
    additionalProperties: false,
  },
  inputs: {
    model: { description: 'Model folder to wrap (init_model or sft); LoRA adapters must be merged first.' },
  },
  sources: ['stages/add-pause-token.ts', 'stages/lm'],

  // One more token: its id is the vocabulary's size at most (one row more, which no estimate notices).
  plannedModelConfig: (_p, inputs) => {
    const model = inputs.model?.[0];
    return model && { ...model, pause_token_id: model.vocab_size };
  },

  async run(ctx: StageContext<AddPauseTokenParams>): Promise<StageResult> {
    const p = ctx.params;
    const { openModelFolder, refuseBeyondWasmMemory, startBackend } = await import('./lm/stage-support.ts');
    const { addPauseToken } = await import('./lm/pause.ts');
    const { saveModel } = await import('./lm/model-io.ts');
    const { storedDtypes } = await import('./lm/safetensors.ts');
    const ran = await startBackend(ctx);
    const source = ctx.inputs.model![0]!;
    refuseBeyondWasmMemory(ran, readModelConfig(source.dir), { forward: false }, { verb: 'add the pause token to' });
    const { model, tokenizer } = await openModelFolder(source.dir, ctx.log);
    try {
      if (model.config.pause) {
        throw new Error(`add_pause_token: ${source.stage} already has the pause token ${model.config.pause.token} (id ${model.config.pause.tokenId}): ` +
          'give it to sft or evaluate as it is');
      }
      if (model.lora) throw new Error(`add_pause_token: ${source.stage} holds LoRA adapters; train it with lora.merge = true first`);
      // The original loads the model in bfloat16 and creates the pause row and head in it: a BF16 folder stays BF16.
      const dtypes = storedDtypes(source.dir);
      const bfloat16 = dtypes?.size === 1 && dtypes.has('BF16');
      const wrapped = await addPauseToken(model, p.seed, { token: p.token, log: ctx.log, bfloat16 });
      try {
        const withPause = tokenizer.withPauseToken(p.token);
        await saveModel(wrapped, withPause, ctx.outDir);
        return { metrics: { pause_token: p.token, pause_token_id: withPause.pauseId, vocab_size: withPause.vocabSize, ...ran } };
      } finally {
        wrapped.dispose();
      }
    } finally {
      model.dispose();
    }
  },
};

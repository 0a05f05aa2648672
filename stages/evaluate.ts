// Stage kind `evaluate`: greedy generation on the test split, GSM8K answer accuracy, validation loss and pause statistics.
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { JsonValue } from '../runtime/json.ts';
import type { StageContext, StageKind, StageResult } from './kind.ts';
import { modelStageResources, readModelConfig } from './lm/memory-estimate.ts';

export interface EvaluateParams {
  max_new_tokens: number;
  max_length: number;
  max_length_counts: 'row' | 'padded_batch';
  batch_size: number;
  limit: number | null;
  temperature: number;
  seed: number;
  loss_max_length: number;
}

/** File of per-example results in the artifact folder. */
export const TEST_RESULTS = 'test_results.json';

/** The sft metrics `report` reads through an evaluate artifact (stages/data/report-table.ts `TrainingInfo`). */
const TRAINING_KEYS = ['train_loss_curve', 'eval_loss_curve', 'eval_loss', 'trainable', 'backend', 'device'] as const;

export const EVALUATE: StageKind<EvaluateParams> = {
  name: 'evaluate',
  version: 3,
  tableMetrics: ['accuracy', 'accuracy_std', 'n', 'eval_loss', 'avg_pauses', 'invalid', 'backend'],
  description:
    'Generates answers for the test split (greedy, left-padded batches, KV cache), scores them as the reference: the ' +
    'number after `####` must equal the reference answer\'s. Also the loss on the validation split and the pauses per ' +
    'answer. Writes test_results.json.',
  params: {
    type: 'object',
    properties: {
      max_new_tokens: { type: 'integer', minimum: 1, description: 'Most tokens generated per answer, pauses included.', default: 512 },
      max_length: { type: 'integer', minimum: 2, description: 'Most tokens per row, prompt included (the reference\'s generation max_length).', default: 1024 },
      max_length_counts: {
        enum: ['row', 'padded_batch'],
        description: 'What max_length counts besides the generated tokens: `row`, the row\'s own prompt, so batching never ' +
          'changes an answer; `padded_batch`, the left-padded batch width, as transformers\' generate did for the seed.',
        default: 'row',
      },
      batch_size: { type: 'integer', minimum: 1, description: 'Prompts generated together, and rows per batch of the validation loss.', default: 8 },
      limit: { type: ['integer', 'null'], minimum: 1, description: 'Evaluate only the first N test rows (quick runs); null: all.', default: null },
      temperature: { type: 'number', minimum: 0, description: '0 decodes greedily as the reference; above 0 samples from softmax(log-probs / temperature).', default: 0 },
      seed: { type: 'integer', minimum: 0, description: 'Seed of the sampling (unused when greedy).', default: 42 },
      loss_max_length: { type: 'integer', minimum: 2, description: 'Longest validation sequence for the loss, in tokens, as sft\'s max_length.', default: 600 },
    },
    additionalProperties: false,
  },
  inputs: {
    model: { description: 'Model folder to evaluate (init_model, add_pause_token or sft).' },
    data: { description: 'Dataset folder: test.jsonl is answered, validation.jsonl gives the eval loss.' },
  },
  resources: (p, inputs) =>
    modelStageResources(inputs?.model?.[0]?.dir, { batch: p.batch_size, seq: Math.max(p.max_length, p.loss_max_length), training: false }, { verb: 'evaluate' }),
  sources: ['stages/evaluate.ts', 'stages/lm', 'stages/data/answer.ts', 'stages/data/dataset.ts'],

  async run(ctx: StageContext<EvaluateParams>): Promise<StageResult> {
    const p = ctx.params;
    const { checkDataPauseToken, fitLength, openModelFolder, refuseBeyondWasmMemory, startBackend } = await import('./lm/stage-support.ts');
    const { generateAnswers } = await import('./lm/generate.ts');
    const { encodeTrainingExample, padIdOf, responseTemplateIds } = await import('./lm/collate.ts');
    const { evaluateLoss } = await import('./lm/trainer.ts');
    const { readDataset } = await import('./data/dataset.ts');
    const { extractAnswer, INVALID_ANSWER, isCorrect, meanStd } = await import('./data/answer.ts');
    const ran = await startBackend(ctx);
    const modelRef = ctx.inputs.model![0]!;
    const dataRef = ctx.inputs.data![0]!;
    const { splits, info } = await readDataset(dataRef.dir);
    const test = p.limit === null ? splits.test : splits.test.slice(0, p.limit);
    if (test.length === 0) throw new Error(`evaluate: the test split of ${dataRef.stage} is empty`);
    refuseBeyondWasmMemory(ran, readModelConfig(modelRef.dir), { forward: true }, { verb: 'evaluate' });
    const { model, tokenizer } = await openModelFolder(modelRef.dir, ctx.log);
    try {
      checkDataPauseToken(info.pause_token, dataRef.stage, tokenizer, modelRef.stage);
      const { packFrozenWeights, packingFrozenWeights } = await import('./lm/bf16-weights.ts');
      if (packingFrozenWeights()) await packFrozenWeights(model, ctx.log, { inference: true });
      const rows = await generateAnswers(model, tokenizer, test.map((r) => r.question), {
        batchSize: p.batch_size,
        maxNewTokens: p.max_new_tokens,
        maxLength: p.max_length,
        maxLengthCountsPadding: p.max_length_counts === 'padded_batch',
        contextLength: model.config.maxPositionEmbeddings,
        temperature: p.temperature,
        seed: p.seed,
        onBatch: (done, total) => ctx.progress({ step: done, total, message: 'answers' }),
        // The rows of test.jsonl are one per line: this names the file and line (as the input, once run-kind rewrites it).
        rowName: (i) => `${path.join(dataRef.dir, 'test.jsonl')}:${i + 1}`,
      });
      // Scored as invalid (transformers' generate raised a ValueError for such a batch); said, so a too small max_length
      // does not pass for a bad model.
      const noRoom = rows.filter((r) => !r.hadRoom).length;
      if (noRoom > 0) {
        const line = `evaluate: ${noRoom} of ${rows.length} test prompts fill max_length ${p.max_length} and get no answer ` +
          `(scored as invalid); raise max_length`;
        ctx.log(line);
        ctx.notice?.(`${ctx.name}: ${line.slice('evaluate: '.length)}`);
      }
      const results = test.map((ex, i) => {
        const row = rows[i]!;
        return {
          question: ex.question,
          generated_text: row.text,
          generated_text_with_special: row.textWithSpecial,
          predicted_output: extractAnswer(row.text),
          ground_truth: extractAnswer(ex.answer),
          correct: isCorrect(row.text, ex.answer),
          pauses: row.pauses,
          stopped_at_eos: row.stoppedAtEos,
        };
      });
      await writeFile(path.join(ctx.outDir, TEST_RESULTS), JSON.stringify(results, null, 2) + '\n');
      const accuracy = meanStd(results.map((r) => (r.correct ? 1 : 0)));

      let evalLoss: number | null = null;
      if (splits.validation.length > 0) {
        const templateIds = responseTemplateIds(tokenizer);
        const lossLength = fitLength(p.loss_max_length, model, 'loss_max_length', ctx.log);
        const encoded = splits.validation.map((r) => encodeTrainingExample(tokenizer, r, templateIds, lossLength));
        evalLoss = (await evaluateLoss(model, encoded, p.batch_size, padIdOf(tokenizer))).loss;
      }
      const avgPauses = results.reduce((n, r) => n + r.pauses, 0) / results.length;
      ctx.log(`evaluate: accuracy ${accuracy.mean.toFixed(4)} (± ${accuracy.std.toFixed(4)}) on ${accuracy.n} test rows; ` +
        `eval loss ${evalLoss === null ? 'n/a (no validation rows)' : evalLoss.toFixed(4)}; ${avgPauses.toFixed(2)} pauses per answer`);
      return {
        metrics: {
          accuracy: accuracy.mean,
          accuracy_std: accuracy.std,
          n: accuracy.n,
          eval_loss: evalLoss,
          // Which rows gave the loss: losses on different data (with pauses or without) are not comparable.
          eval_loss_data: evalLoss === null ? null : { stage: dataRef.stage, key: dataRef.key, rows: splits.validation.length },
          avg_pauses: avgPauses,
          invalid: results.filter((r) => r.predicted_output === INVALID_ANSWER).length,
          stopped_at_eos: results.filter((r) => r.stopped_at_eos).length,
          predictions: TEST_RESULTS,
          model: { stage: modelRef.stage, key: modelRef.key },
          training: trainingInfo(modelRef.kind, modelRef.metrics),
          ...ran,
        },
      };
    } finally {
      model.dispose();
    }
  },
};

/** The evaluated model's training facts when it comes straight from `sft`, else null. */
function trainingInfo(kind: string, metrics: Record<string, JsonValue>): JsonValue {
  if (kind !== 'sft') return null;
  const out: Record<string, JsonValue> = {};
  for (const key of TRAINING_KEYS) out[key] = metrics[key] ?? null;
  return out;
}

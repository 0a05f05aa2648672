// evaluate: accuracy on a model that memorised its answers, per-example results, pause statistics, and metrics the report accepts.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { cp, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { JsonValue } from '../../runtime/json.ts';
import { ADD_PAUSE_TOKEN } from '../../stages/add-pause-token.ts';
import { checkEvaluateMetrics } from '../../stages/data/report-table.ts';
import { EVALUATE } from '../../stages/evaluate.ts';
import type { ArtifactRef, StageKind } from '../../stages/kind.ts';
import { writeDataset } from '../../stages/data/dataset.ts';
import { BACKEND_NAMES } from '../../stages/lm/backend.ts';
import { SFT, type SftTrainGroups } from '../../stages/sft.ts';
import { datasetFolder, runKind, sumRows, tinyModelFolder } from '../helpers/model-stages.ts';
import { artifactRef, removeTempDirs, tempDir, withDefaults } from './data/stage-context.ts';

const test = suite('evaluate');
test.after(removeTempDirs);

const ALL = { pause_embedding: false, pause_head: false, lm_head: false, lm_embeddings: false, all: true };

/** A tiny model trained until it gives its training answer by heart (`train` picks what trains). */
async function memorised(model: ArtifactRef, rows: { question: string; answer: string }[], train: SftTrainGroups = ALL, lr = 1e-2): Promise<ArtifactRef> {
  const data = await datasetFolder({ train: [...rows, ...rows, ...rows, ...rows], validation: rows, test: rows });
  const { ctx, result } = await runKind(SFT, {
    params: { train, batch_size: 4, max_steps: 60, lr, eval_steps: 1000, logging_steps: 20 },
    inputs: { model: [model], data: [data] },
  });
  return artifactRef('tuned', 'sft', ctx.outDir, { key: 'sft-key', metrics: result.metrics as Record<string, JsonValue> });
}

test('the defaults decode greedily in batches of 8 on the whole test split, each row\'s max_length counting its own prompt', () => {
  assert.equal(withDefaults(EVALUATE), { max_new_tokens: 512, max_length: 1024, max_length_counts: 'row', batch_size: 8, limit: null, temperature: 0, seed: 42, loss_max_length: 600 });
});

test('accuracy, its std, the per-example results and metrics that the report accepts', async () => {
  // Every training answer is 2 (a tiny model learns that in a few steps); the third test row expects 9.
  const rows = [{ question: '1+1?', answer: '#### 2' }, { question: '0+2?', answer: '#### 2' }];
  const model = await memorised(await tinyModelFolder(), rows);
  const data = await datasetFolder({ train: [], validation: rows, test: [...rows, { question: '4+5?', answer: 'so\n#### 9' }, { question: '2+0?', answer: '#### 2' }] });
  const { ctx, result } = await runKind(EVALUATE, { params: { max_new_tokens: 12, batch_size: 2, limit: 3 }, inputs: { model: [model], data: [data] } });
  const m = result.metrics!;
  assert.is(m.accuracy, 2 / 3);
  assert.ok(Math.abs((m.accuracy_std as number) - Math.sqrt(2) / 3) < 1e-12);
  assert.is(m.n, 3);
  assert.is(m.avg_pauses, 0);
  assert.is(typeof m.eval_loss, 'number');
  assert.equal(m.eval_loss_data, { stage: 'data', key: 'k', rows: 2 });
  assert.equal(m.model, { stage: 'tuned', key: 'sft-key' });
  assert.equal((m.training as Record<string, JsonValue>).trainable, model.metrics.trainable);
  // Where it ran, per row of `show` and the report: the backend and what ran the kernels, for this stage and its training.
  // (A machine with a Vulkan driver, even Mesa's software one, runs them on webgpu.)
  assert.ok((BACKEND_NAMES as readonly JsonValue[]).includes(m.backend!), String(m.backend));
  if (m.backend === 'wasm') assert.match(m.device as string, /^wasm \((no )?SIMD, \d+ threads?\)$/);
  else assert.ok(typeof m.device === 'string' && m.device.length > 0);
  assert.equal([(m.training as Record<string, JsonValue>).backend, (m.training as Record<string, JsonValue>).device], [model.metrics.backend, model.metrics.device]);
  assert.is(model.metrics.backend, m.backend);
  assert.is(checkEvaluateMetrics(artifactRef('eval', 'evaluate', ctx.outDir, { metrics: m })), null);
  const results = JSON.parse(await readFile(path.join(ctx.outDir, 'test_results.json'), 'utf8'));
  assert.equal(results.map((r: Record<string, JsonValue>) => [r.generated_text, r.predicted_output, r.ground_truth, r.correct]), [
    ['#### 2', '2', '2', true],
    ['#### 2', '2', '2', true],
    ['#### 2', '2', '9', false],
  ]);
});

test('pauses are counted per answer and removed from the text that is scored', async () => {
  const { ctx: wrap } = await runKind(ADD_PAUSE_TOKEN, { inputs: { model: [await tinyModelFolder()] } });
  const P = '<|pause|>';
  const rows = [{ question: '1+1?', answer: `${P}#### 2` }, { question: '0+2?', answer: `${P}#### 2` }];
  // The pause head reads a detached hidden state, so it learns slowly while the body moves: a second short run
  // trains only the head on the settled body, as chained sft stages would.
  const body = await memorised(artifactRef('wrapped', 'add_pause_token', wrap.outDir), rows);
  const model = await memorised(body, rows, { ...ALL, all: false, pause_head: true }, 5e-2);
  const data = await datasetFolder({ train: [], validation: [], test: rows.map((r) => ({ ...r, answer: r.answer.replaceAll(P, '') })) });
  const { ctx, result } = await runKind(EVALUATE, { params: { max_new_tokens: 12 }, inputs: { model: [model], data: [data] } });
  assert.is(result.metrics!.avg_pauses, 1);
  assert.is(result.metrics!.accuracy, 1);
  assert.is(result.metrics!.eval_loss, null);
  assert.is(result.metrics!.eval_loss_data, null);
  const results = JSON.parse(await readFile(path.join(ctx.outDir, 'test_results.json'), 'utf8'));
  assert.equal(results.map((r: Record<string, JsonValue>) => [r.generated_text, r.generated_text_with_special, r.pauses]), [
    ['#### 2', `${P}#### 2</s>`, 1],
    ['#### 2', `${P}#### 2</s>`, 1],
  ]);
});

test('only the generated answer is scored: a `#### n` in the question is never the prediction', async () => {
  // The original searched the decoded prompt and answer together, so this row would have scored as correct there.
  const rows = [{ question: 'Is it #### 9?', answer: '#### 9' }];
  const data = await datasetFolder({ train: [], validation: [], test: rows });
  const { ctx, result } = await runKind(EVALUATE, { params: { max_new_tokens: 8 }, inputs: { model: [await tinyModelFolder()], data: [data] } });
  const [row] = JSON.parse(await readFile(path.join(ctx.outDir, 'test_results.json'), 'utf8')) as Record<string, JsonValue>[];
  assert.not.match(row!.generated_text as string, '####');
  assert.equal([row!.predicted_output, row!.ground_truth, row!.correct], ['[invalid]', '9', false]);
  assert.is(result.metrics!.accuracy, 0);
});

test('an empty test split is an error naming the dataset stage', async () => {
  const data = await datasetFolder({ train: [], validation: [], test: [] });
  await runKind(EVALUATE, { inputs: { model: [await tinyModelFolder()], data: [data] } }).then(
    () => assert.unreachable(),
    (err) => assert.match(err.message, /evaluate: the test split of data is empty/),
  );
});

test('data whose pauses are written with another text than the model\'s pause token is refused (sft and evaluate)', async () => {
  const { ctx } = await runKind(ADD_PAUSE_TOKEN, { inputs: { model: [await tinyModelFolder()] } });
  const model = artifactRef('surgery', 'add_pause_token', ctx.outDir);
  const rows = [{ question: '1+1?', answer: '1+1=<pause>2\n#### 2' }];
  const dir = await tempDir('other-pauses');
  await writeDataset(dir, { train: rows, validation: rows, test: rows }, { source: 'inject_pauses of data', seed: 42, extra: { pause_token: '<pause>' } });
  const data = artifactRef('paused', 'inject_pauses', dir);
  const expected = 'the rows of paused hold pauses written <pause>, but the pause token of surgery is <|pause|>: ' +
    'give inject_pauses the token that add_pause_token added (its `pause_token` and `token` params)';
  for (const kind of [EVALUATE, SFT] as StageKind<unknown>[]) {
    await runKind(kind, { inputs: { model: [model], data: [data] } }).then(() => assert.unreachable(), (err) => assert.is(err.message, expected, kind.name));
  }
});

test('a test question too long for the model is named by its row before any answer is generated', async () => {
  // The tiny model holds 128 positions; each character is a token, the prompt adds 25 and the BOS one.
  const long = { question: 'x'.repeat(200), answer: '#### 1' };
  const data = await datasetFolder({ train: [], validation: [], test: [...sumRows(1), long, long] });
  await runKind(EVALUATE, { params: { batch_size: 1 }, inputs: { model: [await tinyModelFolder()], data: [data] } }).then(
    () => assert.unreachable(),
    (err) => assert.is(err.message, `${path.join(data.dir, 'test.jsonl')}:2: the prompt has 226 tokens, more than the model's 128 positions (and 1 more question)`),
  );
});

test('prompts that fill max_length get no answer, scored as invalid, and the log says how many', async () => {
  // 60 characters of question make an 86-token prompt: no room within max_length 70; the short ones have some.
  const long = { question: 'x'.repeat(60), answer: '#### 1' };
  const data = await datasetFolder({ train: [], validation: [], test: [...sumRows(2), long] });
  const { ctx, result } = await runKind(EVALUATE, { params: { max_length: 70, max_new_tokens: 4 }, inputs: { model: [await tinyModelFolder()], data: [data] } });
  assert.equal(ctx.logs.filter((l) => l.includes('max_length')), ['evaluate: 1 of 3 test prompts fill max_length 70 and get no answer (scored as invalid); raise max_length']);
  const rows = JSON.parse(await readFile(path.join(ctx.outDir, 'test_results.json'), 'utf8')) as { generated_text: string }[];
  assert.is(rows[2]!.generated_text, '');
  assert.ok((result.metrics!.invalid as number) >= 1);
});

test('a model folder whose tokenizer has more ids than the embedding has rows is refused before anything runs', async () => {
  // What a folder assembled by hand or by an `sh` step can hold: another model's tokenizer beside the weights.
  const model = await tinyModelFolder();
  const dir = await tempDir('foreign-tokenizer');
  await cp(model.dir, dir, { recursive: true });
  const tokenizer = JSON.parse(await readFile(path.join(dir, 'tokenizer.json'), 'utf8'));
  tokenizer.added_tokens.push({ id: 150, content: '<extra>', single_word: false, lstrip: false, rstrip: false, normalized: false, special: true });
  await writeFile(path.join(dir, 'tokenizer.json'), JSON.stringify(tokenizer));
  const data = await datasetFolder({ train: [], validation: [], test: sumRows(2) });
  await runKind(EVALUATE, { inputs: { model: [{ ...model, dir }], data: [data] } }).then(
    () => assert.unreachable(),
    (err) => assert.is(err.message, `${dir}: tokenizer.json has 151 ids but the model's embedding only 100 rows: the tokenizer is not the model's`),
  );
});

test.run();

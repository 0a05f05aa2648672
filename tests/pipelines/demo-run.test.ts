// pipelines/demo.pipe end to end through the real stage kinds, shrunk to seconds: the wiring a full run relies on.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import type { JsonValue } from '../../runtime/json.ts';
import { SILENT_REPORTER } from '../../runtime/progress.ts';
import { compareMetrics } from '../../runtime/diff-load.ts';
import { planLoaded, runSession } from '../../runtime/session.ts';
import { STAGE_KINDS } from '../../stages/index.ts';
import { loadProjectPipeline } from './pipeline-files.ts';

const test = suite('demo.pipe run');

let cacheDir = '';
test.before(async () => {
  cacheDir = await mkdtemp(path.join(os.tmpdir(), 'pausepipe-demo-run-'));
});
test.after(async () => {
  await rm(cacheDir, { recursive: true, force: true });
});

/** Params that make each kind of the demo take a moment: a handful of rows, two updates, two answers. */
const SHRINK: Record<string, Record<string, JsonValue>> = {
  synthetic_math: { train: 16, validation: 4, test: 2 },
  sft: { batch_size: 4, max_steps: 2, eval_steps: 2, save_steps: 2 },
  evaluate: { max_new_tokens: 4, batch_size: 2 },
};

test('the shrunk demo runs every stage and its report has a row for step 1, each variant and the baseline', async () => {
  const pipeline = await loadProjectPipeline('demo.pipe');
  for (const s of pipeline.stages) Object.assign(s.params, SHRINK[s.kind] ?? {});
  const session = await planLoaded(pipeline, STAGE_KINDS, cacheDir);
  const result = await runSession(session, { jobs: 2, gpus: 0, keepGoing: false, reporter: SILENT_REPORTER });
  const failed = result.outcomes.filter((o) => o.status !== 'ran').map((o) => `${o.name}: ${o.status} ${o.error ?? ''}`);
  assert.equal(failed, []);
  assert.is(result.counts.ran, pipeline.stages.length);
  const report = result.outcomes.find((o) => o.name === 'report')!;
  const rows = (report.metrics!.rows as Record<string, JsonValue>[]).map((r) => [r.label, r.role, r.trainable, r.lora]);
  assert.equal(rows, [
    ['step1 (start)', 'start', ['all'], false],
    ['pause=embed+head, lora=false', 'run', ['pauseEmbedding', 'pauseHead'], false],
    ['pause=embed+head, lora=true', 'run', ['pauseEmbedding', 'pauseHead'], true],
    ['pause=embed, lora=false', 'run', ['pauseEmbedding'], false],
    ['pause=embed, lora=true', 'run', ['pauseEmbedding'], true],
    ['pause=head, lora=false', 'run', ['pauseHead'], false],
    ['pause=head, lora=true', 'run', ['pauseHead'], true],
    ['baseline=no pauses', 'baseline', [], true],
  ]);
});

test('a second plan finds nothing stale; one variant\'s new learning rate makes exactly its training, evaluation and the report stale', async () => {
  const shrunk = async () => {
    const pipeline = await loadProjectPipeline('demo.pipe');
    for (const s of pipeline.stages) Object.assign(s.params, SHRINK[s.kind] ?? {});
    return pipeline;
  };
  const again = await planLoaded(await shrunk(), STAGE_KINDS, cacheDir);
  assert.equal(again.plan.stages.filter((s) => s.status !== 'fresh').map((s) => s.name), []);

  const edited = await shrunk();
  const variant = edited.stages.find((s) => s.name === 'warm[pause=head,lora=true]')!;
  variant.params.lr = 0.02;
  const plan = (await planLoaded(edited, STAGE_KINDS, cacheDir)).plan;
  assert.equal(plan.stages.filter((s) => s.status !== 'fresh').map((s) => [s.name, s.reasons]), [
    ['warm[pause=head,lora=true]', ['param lr: 0.01 → 0.02']],
    ['eval[pause=head,lora=true]', ['upstream warm[pause=head,lora=true] stale']],
    ['report', ['upstream eval[pause=head,lora=true] stale']],
  ]);
});

test('after the README\'s learning-rate edit and a run, diff shows that variant\'s evaluation changed, and only it', async () => {
  const pipeline = await loadProjectPipeline('demo.pipe');
  for (const s of pipeline.stages) Object.assign(s.params, SHRINK[s.kind] ?? {});
  pipeline.stages.find((s) => s.name === 'warm[pause=head,lora=true]')!.params.lr = 0.02;
  const session = await planLoaded(pipeline, STAGE_KINDS, cacheDir);
  const result = await runSession(session, { jobs: 2, gpus: 0, keepGoing: false, reporter: SILENT_REPORTER });
  assert.equal(result.outcomes.filter((o) => o.status === 'ran').map((o) => o.name), ['warm[pause=head,lora=true]', 'eval[pause=head,lora=true]', 'report']);
  const compared = await compareMetrics({ pipeline, kinds: STAGE_KINDS }, undefined, { cacheDir, all: true, everyMetric: false });
  if (typeof compared === 'string' || 'invalid' in compared) throw new Error(String(compared));
  const { diff } = compared;
  assert.is(diff.before, 'before');
  const changed = diff.rows.filter((r) => r.before !== r.now);
  // The shrunk run's two test answers may score the same; its validation loss moves with the learning rate.
  assert.equal([...new Set(changed.map((r) => r.name))], ['warm[pause=head,lora=true]', 'eval[pause=head,lora=true]']);
  assert.ok(changed.some((r) => r.name === 'eval[pause=head,lora=true]' && r.metric === 'eval_loss' && r.delta !== null && r.delta !== 0));
  const accuracy = diff.rows.find((r) => r.name === 'eval[pause=head,lora=true]' && r.metric === 'accuracy')!;
  assert.is(typeof accuracy.before, 'number');
  assert.is(typeof accuracy.now, 'number');
  assert.is(accuracy.delta, Number(((accuracy.now as number) - (accuracy.before as number)).toPrecision(6)));
});

test.run();

// A report over a matrix where some variants fail: under --keep-going it is written from the others, marked partial,
// kept under a key of its own, found again when the same variants fail again, and replaced once they all finish.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { existsSync } from 'node:fs';
import { readdir, readFile, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { ArtifactStore } from '../../cache/store.ts';
import { runMain } from '../helpers/capture.ts';
import { tempWorkspace } from '../helpers/runner.ts';

/**
 * Four variants of train → eval feeding a report, and a stage reading the report. A train fails while `fail-train-LR`
 * exists in the workspace and an eval while `fail-eval-LR` does: files no key holds, so the keys stay the same when
 * they go. Each eval writes the metrics `evaluate` would (accuracy lr / 10).
 */
const PIPE = `
for each lr in [1, 2, 3, 4] {
  stage train = sh { command: ["sh", "-c", "if [ -e fail-train-\${lr} ]; then echo 'loss is NaN at step 7' >&2; exit 3; fi"] }
  stage eval = sh(model: train) { command: ["sh", "-c", "if [ -e fail-eval-\${lr} ]; then exit 4; fi; printf '{\\"accuracy\\":0.\${lr},\\"accuracy_std\\":0.5,\\"n\\":10,\\"eval_loss\\":null,\\"avg_pauses\\":0,\\"predictions\\":\\"test_results.json\\",\\"model\\":{\\"stage\\":\\"train[lr=\${lr}]\\",\\"key\\":\\"k\\"},\\"training\\":null}' > \\"$PAUSEPIPE_OUT/metrics.json\\""] }
}
stage table = report(runs: eval[*]) { title: "Sweep" }
stage after = sh(table: table) { command: ["true"] }
`;

interface RunJson {
  exitCode: number;
  stages: { name: string; key: string | null; status: string; error: string | null; partial?: { inputs: number; missing: { stage: string; status: string; reason: string }[] } }[];
}

async function run(file: string, ...args: string[]): Promise<RunJson> {
  const r = await runMain(['run', file, '--json', ...args]);
  return JSON.parse(r.out) as RunJson;
}

const statuses = (r: RunJson) => Object.fromEntries(r.stages.map((s) => [s.name, s.error === null ? s.status : `${s.status}: ${s.error}`]));
const table = (r: RunJson) => r.stages.find((s) => s.name === 'table')!;

/** The Markdown table of a report.md: its lines starting with `|`. */
const tableLines = (md: string) => md.split('\n').filter((l) => l.startsWith('|'));

test('under --keep-going a report is written without the failed variants, under a partial key found again on a rerun', async () => {
  const ws = await tempWorkspace('pausepipe-partial-');
  const file = path.join(ws, 'm.pipe');
  await writeFile(file, PIPE);
  const planned = JSON.parse((await runMain(['plan', file, '--json'])).out) as { stages: { name: string; key: string }[] };
  const fullKey = planned.stages.find((s) => s.name === 'table')!.key;
  await writeFile(path.join(ws, 'fail-train-2'), '');
  await writeFile(path.join(ws, 'fail-eval-3'), '');

  // Without --keep-going nothing changes: the run starts nothing after the failure, and the report is skipped.
  const stopped = await run(file, '--jobs', '1');
  assert.is(stopped.exitCode, 1);
  assert.equal(statuses(stopped), {
    'train[lr=1]': 'ran', 'train[lr=2]': 'failed: command failed with exit code 3', 'train[lr=3]': 'skipped: not started after a failure',
    'train[lr=4]': 'skipped: not started after a failure', 'eval[lr=1]': 'ran', 'eval[lr=2]': 'skipped: upstream train[lr=2] failed',
    'eval[lr=3]': 'skipped: not started after a failure', 'eval[lr=4]': 'skipped: not started after a failure',
    table: 'skipped: upstream eval[lr=2] skipped', after: 'skipped: upstream table skipped',
  });

  const first = await run(file, '--keep-going', '--jobs', '1');
  assert.is(first.exitCode, 1);
  assert.equal(statuses(first), {
    'train[lr=1]': 'cached', 'train[lr=2]': 'failed: command failed with exit code 3', 'train[lr=3]': 'ran', 'train[lr=4]': 'ran',
    'eval[lr=1]': 'cached', 'eval[lr=2]': 'skipped: upstream train[lr=2] failed', 'eval[lr=3]': 'failed: command failed with exit code 4',
    'eval[lr=4]': 'ran', table: 'ran', after: 'skipped: upstream table partial: a partial result feeds no stage',
  });
  const partial = table(first);
  assert.equal(partial.partial, {
    inputs: 4,
    missing: [
      { stage: 'eval[lr=2]', status: 'skipped', reason: 'upstream train[lr=2] failed' },
      { stage: 'eval[lr=3]', status: 'failed', reason: 'command failed with exit code 4' },
    ],
  });
  assert.is.not(partial.key, fullKey);
  const store = new ArtifactStore(path.join(ws, '.pausepipe'));
  assert.not.ok(store.has(fullKey));
  const artifacts = store.artifactsDir(partial.key!);
  const md = await readFile(path.join(artifacts, 'report.md'), 'utf8');
  assert.is(md.split('\n')[2], '**partial: 2 of 4 variants missing**: they failed or were skipped in the run that wrote this report. ' +
    'They are the last rows of the table, without numbers, and are left out of the summary, the charts and the files; a run where they finish writes the full report.');
  assert.equal(tableLines(md), [
    '| variant | trainable | LoRA | test accuracy | std | eval loss | avg pauses |',
    '|---|---|:---:|:---:|:---:|:---:|:---:|',
    '| lr=1 | - | - | 0.100 | 0.500 | - | 0.00 |',
    '| lr=4 | - | - | **0.400** | 0.500 | - | 0.00 |',
    '| lr=2 | - | - | skipped: upstream train[lr=2] failed | - | - | - |',
    '| lr=3 | - | - | failed: command failed with exit code 4 | - | - | - |',
  ]);
  // export gives the partial result only when asked, and says it is partial.
  const dest = path.join(ws, 'shared');
  const refused = await runMain(['export', file, 'table', dest]);
  assert.is(refused.code, 1);
  assert.is(refused.err, `pausepipe export: table is not computed (partial in its last run: 2 of 4 inputs missing (eval[lr=2] skipped, eval[lr=3] failed)); ` +
    `run it first: pausepipe run ${path.relative(process.cwd(), file)} table, or export its partial result: pausepipe export ${path.relative(process.cwd(), file)} table ${dest} --partial\n`);
  const exported = await runMain(['export', file, 'table', dest, '--partial']);
  assert.is(exported.out, `exported table (partial in its last run: 2 of 4 inputs missing (eval[lr=2] skipped, eval[lr=3] failed)): 5 file(s) to ${dest}\n`);
  assert.is(await readFile(path.join(dest, 'report.md'), 'utf8'), md);
  const csv = (await readFile(path.join(artifacts, 'report.csv'), 'utf8')).trimEnd().split('\r\n').map((l) => l.split(','));
  const columns = ['label', 'stage', 'variant.lr', 'accuracy', 'status', 'reason'].map((c) => csv[0]!.indexOf(c));
  assert.equal(csv.map((row) => columns.map((i) => row[i])), [
    ['label', 'stage', 'variant.lr', 'accuracy', 'status', 'reason'],
    ['lr=1', 'eval[lr=1]', '1', '0.1', 'finished', ''],
    ['lr=4', 'eval[lr=4]', '4', '0.4', 'finished', ''],
    ['lr=2', 'eval[lr=2]', '2', '', 'skipped', 'upstream train[lr=2] failed'],
    ['lr=3', 'eval[lr=3]', '3', '', 'failed', 'command failed with exit code 4'],
  ]);
  const manifest = store.readManifest(partial.key!)!;
  assert.is(manifest.metrics.partial, 'partial: 2 of 4 variants missing');
  assert.equal(manifest.metrics.missing, [
    { label: 'lr=2', stage: 'eval[lr=2]', role: 'run', variant: { lr: 2 }, status: 'skipped', reason: 'upstream train[lr=2] failed' },
    { label: 'lr=3', stage: 'eval[lr=3]', role: 'run', variant: { lr: 3 }, status: 'failed', reason: 'command failed with exit code 4' },
  ]);
  assert.equal(Object.keys(manifest.missing!), ['runs']);
  assert.equal(manifest.missingInputs!.runs!.map((m) => [m.stage, m.status]), [['eval[lr=2]', 'skipped'], ['eval[lr=3]', 'failed']]);
  // verify recomputes the key from the manifest: the missing inputs' keys are part of it.
  const verified = await runMain(['verify', file]);
  assert.is(verified.code, 0, verified.err);
  assert.match(verified.out, 'cache OK: 6 entries verified');
  // The HTML marks the rows, and its charts hold only the variants that finished.
  const html = await readFile(path.join(artifacts, 'report.html'), 'utf8');
  assert.match(html, '<p class="partial"><strong>partial: 2 of 4 variants missing</strong>');
  assert.match(html, '<tr class="run missing failed"><td>lr=3</td>');
  assert.not.match(await readFile(path.join(artifacts, 'accuracy.svg'), 'utf8'), 'lr=3');

  // plan and show say the report was partial; the text run says so after its counts, and its table has the rows.
  const plan = await runMain(['plan', file]);
  assert.ok(plan.out.split('\n').includes('stale  table: partial in its last run: 2 of 4 inputs missing (eval[lr=2] skipped, eval[lr=3] failed)'), plan.out);
  const shown = await runMain(['show', file, 'table']);
  assert.ok(shown.err.includes(`  table: partial in its last run: 2 of 4 inputs missing (eval[lr=2] skipped, eval[lr=3] failed) (its result: ${path.relative(process.cwd(), artifacts)})`), shown.err);

  const log = await runMain(['log', file, 'table']);
  assert.is(log.code, 0);
  assert.is(log.err, 'table: partial in its last run: 2 of 4 inputs missing (eval[lr=2] skipped, eval[lr=3] failed); the log of that partial result:\n');
  assert.match(log.out, 'report: partial: 2 of 4 variants missing\n');

  // The same variants failing again: the partial report is found, not written again.
  const again = await runMain(['run', file, '--keep-going']);
  assert.is(again.code, 1);
  const lines = again.out.split('\n');
  assert.is(lines[0]!.replace(/ in .*$/, ''), 'ran 0, cached 6, failed 2, skipped 2');
  assert.is(lines[1], 'table is partial: 2 of 4 inputs missing (eval[lr=2] skipped: upstream train[lr=2] failed; eval[lr=3] failed: command failed with exit code 4)');
  assert.equal(lines.slice(3, 9).map((l) => l.split(/\s{2,}/).slice(0, 3)), [
    ['stage', 'lr', 'accuracy'], ['-----', '--', '-'.repeat('failed: command failed with exit code 4'.length)], ['eval', '1', '0.1'],
    ['eval', '2', 'skipped: upstream train[lr=2] failed'], ['eval', '3', 'failed: command failed with exit code 4'], ['eval', '4', '0.4'],
  ]);
  assert.ok(lines.includes(`table (partial): ${path.relative(process.cwd(), path.join(artifacts, 'report.md'))}`), again.out);
  assert.is(store.readManifest(partial.key!)!.timings.finishedAt, manifest.timings.finishedAt);

  // Everything finishes: the full report, under the key a run without failures always had; nothing says partial.
  await rm(path.join(ws, 'fail-train-2'));
  await rm(path.join(ws, 'fail-eval-3'));
  const full = await run(file, '--keep-going');
  assert.is(full.exitCode, 0);
  assert.is(table(full).status, 'ran');
  assert.is(table(full).key, fullKey);
  assert.is(table(full).partial, undefined);
  assert.is(statuses(full).after, 'ran');
  const fullMd = await readFile(path.join(store.artifactsDir(fullKey), 'report.md'), 'utf8');
  assert.not.match(fullMd, 'partial');
  assert.is(tableLines(fullMd).length, 6);
  assert.not.match(await readFile(path.join(store.artifactsDir(fullKey), 'report.csv'), 'utf8'), 'status');
  assert.is(store.readManifest(fullKey)!.missing, undefined);
  assert.not.ok(existsSync(path.join(store.scratchDir(fullKey), 'partial-run.json')));
  assert.is((await runMain(['plan', file])).out.trim().split('\n').at(-1), '0 stale, 10 fresh');
});

test('a run registers the partial key it computes or finds as in use, as its planned keys, and lets it go at its end', async () => {
  const ws = await tempWorkspace('pausepipe-partial-');
  const file = path.join(ws, 'm.pipe');
  await writeFile(file, PIPE);
  await writeFile(path.join(ws, 'fail-train-2'), '');
  // Each registration's keys, as the runs make them (a gc of another pipeline keeps every registered key).
  const registered: string[][] = [];
  const register = ArtifactStore.prototype.registerUse;
  ArtifactStore.prototype.registerUse = function (this: ArtifactStore, keys: Iterable<string>) {
    registered.push([...keys]);
    return register.call(this, keys);
  };
  try {
    const computed = await run(file, '--keep-going', '--jobs', '1');
    const partialKey = table(computed).key!;
    assert.ok(table(computed).partial);
    assert.ok(registered.some((keys) => keys.includes(partialKey)), JSON.stringify(registered));
    registered.length = 0;
    const found = await run(file, '--keep-going', '--jobs', '1');
    assert.is(table(found).status, 'cached');
    assert.is(table(found).key, partialKey);
    assert.ok(registered.some((keys) => keys.includes(partialKey)), JSON.stringify(registered));
  } finally {
    ArtifactStore.prototype.registerUse = register;
  }
  assert.equal((await readdir(path.join(ws, '.pausepipe', 'uses'))).filter((n) => n.endsWith('.lock')), []);
});

test.run();

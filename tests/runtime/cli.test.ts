// The CLI run in-process on small pipelines: no-op re-runs, exact re-run sets and reasons, outs, show, dag, gc, export.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { chmod, mkdir, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { spawn } from 'node:child_process';
import path from 'node:path';
import { BACKEND_FLAG_VALUES, planLines } from '../../runtime/cli.ts';
import { STATUS_COLORS } from '../../runtime/dag.ts';
import { BACKEND_NAMES } from '../../stages/lm/backend.ts';
import { EXTRA_KINDS_ENV } from '../../runtime/kinds.ts';
import { loadChecked, planLoaded, runStagesOf } from '../../runtime/session.ts';
import { runMain, type Ran } from '../helpers/capture.ts';
import { withEnv } from '../helpers/env.ts';
import { BIN, PROJECT_ROOT, tempWorkspace, TEST_KINDS } from '../helpers/runner.ts';

process.env[EXTRA_KINDS_ENV] = TEST_KINDS;

const MATRIX = `
stage prep = sh {
  command: "echo prep >> count.txt; echo 10 > $PAUSEPIPE_OUT/base.txt"
  shell: true
}
for each model in ["s", "l"], lr in [1, 2, 3] where not (model == "l" and lr == 3) {
  stage train = sh(base: prep) {
    command: "echo $PAUSEPIPE_STAGE >> count.txt; echo '{\\"loss\\": \${lr / 4}, \\"size\\": \\"\${model}\\"}' > $PAUSEPIPE_OUT/metrics.json"
    shell: true
    env: { SEED: if model == "s" and lr == 2 then 7 else 1 }
  }
}
stage table = sh(runs: train[*]) {
  command: "echo table >> count.txt; mkdir -p out; cat $(echo $PAUSEPIPE_INPUT_RUNS | tr ':' ' ' | sed 's|\\\\([^ ]*\\\\)|\\\\1/metrics.json|g') > out/table.txt"
  shell: true
  outs: ["out/table.txt"]
}
`;

const pp = (...args: string[]): Promise<Ran> => runMain(args);

async function workspace(text = MATRIX): Promise<{ ws: string; file: string }> {
  const ws = await tempWorkspace('pausepipe-cli-');
  const file = path.join(ws, 'matrix.pipe');
  await writeFile(file, text);
  return { ws, file };
}

async function countLines(ws: string): Promise<string[]> {
  return (await readFile(path.join(ws, 'count.txt'), 'utf8')).split('\n').filter(Boolean);
}

interface RunJson {
  exitCode: number;
  counts: Record<string, number>;
  stages: { name: string; status: string; error: string | null; restored: string[] }[];
}

async function runJson(file: string, ...flags: string[]): Promise<RunJson> {
  const r = await pp('run', file, '--json', ...flags);
  return JSON.parse(r.out) as RunJson;
}

const ranNames = (r: RunJson) => r.stages.filter((s) => s.status === 'ran').map((s) => s.name);

test('a second run executes zero stages', async () => {
  const { ws, file } = await workspace();
  const first = await runJson(file);
  assert.is(first.exitCode, 0);
  assert.equal(first.counts, { ran: 7, cached: 0, failed: 0, skipped: 0, aborted: 0 });
  const second = await runJson(file);
  assert.equal(second.counts, { ran: 0, cached: 7, failed: 0, skipped: 0, aborted: 0 });
  assert.is((await countLines(ws)).length, 7);
});

test('changing one parameter re-runs exactly that stage and its descendants, and plan says why', async () => {
  const { ws, file } = await workspace();
  await runJson(file);
  await writeFile(file, MATRIX.replace('then 7 else 1', 'then 8 else 1'));
  const plan = await pp('plan', file);
  assert.is(plan.code, 0);
  assert.is(plan.out, [
    'stale  train[model=s,lr=2]: param env.SEED: 7 → 8',
    'stale  table: upstream train[model=s,lr=2] stale',
    '2 stale, 5 fresh',
    '',
  ].join('\n'));
  const rerun = await runJson(file);
  assert.equal(ranNames(rerun), ['train[model=s,lr=2]', 'table']);
  assert.equal((await countLines(ws)).slice(7), ['train[model=s,lr=2]', 'table']);
  assert.is((await pp('plan', file)).out, '0 stale, 7 fresh\n');

  // Back to 7 is a cache hit; the next change is then described against 7, the value last used.
  await writeFile(file, MATRIX);
  assert.equal((await runJson(file)).counts.ran, 0);
  await writeFile(file, MATRIX.replace('then 7 else 1', 'then 9 else 1'));
  assert.match((await pp('plan', file)).out, 'stale  train[model=s,lr=2]: param env.SEED: 7 → 9\n');
});

test('a change that leads to a key already cached is fresh, and plan still says what changed', async () => {
  const text = `
for each lr in [0.01, 0.02], w in ["head", "all"] {
  stage warm = sh { command: ["true"], env: { LR: lr, W: w } }
  stage score = sh(model: warm) { command: ["true"] }
}
`;
  const { file } = await workspace(text);
  await runJson(file);
  assert.is((await pp('plan', file)).out, '0 stale, 8 fresh\n');
  await writeFile(file, text.replace('LR: lr', 'LR: if w == "head" then lr * 2 else lr'));
  const plan = await pp('plan', file);
  assert.is(plan.out, [
    'fresh  warm[lr=0.01,w=head]: param env.LR: 0.01 → 0.02 (already in the cache)',
    'stale  warm[lr=0.02,w=head]: param env.LR: 0.02 → 0.04',
    'fresh  score[lr=0.01,w=head]: input model changed (already in the cache)',
    'stale  score[lr=0.02,w=head]: upstream warm[lr=0.02,w=head] stale',
    '2 stale, 6 fresh',
    '',
  ].join('\n'));
  const json = JSON.parse((await pp('plan', file, '--json')).out) as { stages: { name: string; status: string; reasons: string[] }[] };
  const warm = json.stages.find((s) => s.name === 'warm[lr=0.01,w=head]')!;
  assert.equal([warm.status, warm.reasons], ['fresh', ['param env.LR: 0.01 → 0.02']]);
  await runJson(file);
  assert.is((await pp('plan', file)).out, '0 stale, 8 fresh\n');
});

test('a stage to run again brings how long it took last time, for the ETA; cached ones are done', async () => {
  const { file } = await workspace();
  await runJson(file);
  await writeFile(file, MATRIX.replace('then 7 else 1', 'then 8 else 1'));
  const loaded = await loadChecked(file, (t) => assert.unreachable(t));
  const session = await planLoaded(loaded!.pipeline, loaded!.kinds);
  const took = (name: string) => session.store.readManifest(session.previous[name]!.key)!.timings.seconds;
  const stages = runStagesOf(session);
  assert.equal(stages.filter((s) => !s.fresh), [
    { name: 'train[model=s,lr=2]', group: 'train', kind: 'sh', fresh: false, inputs: ['prep'], lastSeconds: took('train[model=s,lr=2]') },
    { name: 'table', group: 'table', kind: 'sh', fresh: false, inputs: ['train[model=s,lr=1]', 'train[model=s,lr=2]', 'train[model=s,lr=3]', 'train[model=l,lr=1]', 'train[model=l,lr=2]'],
      lastSeconds: took('table') },
  ]);
  assert.ok(stages.filter((s) => s.fresh).every((s) => s.lastSeconds === undefined), 'a cached stage needs no estimate');
  assert.ok(took('table') > 0);
});

test('variants sharing a key: one computes, the other waits for it and says so, never "another run"', async () => {
  const { ws, file } = await workspace('for each b in [1, 2] {\n  stage t = sh { command: "sleep 0.5; echo t >> count.txt", shell: true }\n}\n');
  const r = await pp('run', file, '--jobs', '2');
  assert.is(r.code, 0, r.err);
  assert.equal(await countLines(ws), ['t']);
  // Both start at once; whichever takes the key's lock first computes it.
  const computed = /start   (t\[b=\d\])/.exec(r.err)?.[1];
  const other = computed === 't[b=1]' ? 't[b=2]' : 't[b=1]';
  assert.match(r.err, `waiting ${other}: same key as ${computed}, which this run is computing\n`);
  assert.match(r.err, `cached  ${other}: same key as ${computed}: computed once`);
  assert.not.match(r.err, 'another run');
});

test('the example matrix: a 2×3 for each with a where filter, upstream, downstream and a collecting stage', async () => {
  const { ws, file } = await workspace(await readFile(path.join(PROJECT_ROOT, 'pipelines', 'examples', 'matrix.pipe'), 'utf8'));
  const r = await runJson(file);
  assert.is(r.exitCode, 0);
  assert.equal(r.stages.map((s) => s.name), [
    'prep',
    'train[model=small,lr=0.1]', 'train[model=small,lr=0.2]', 'train[model=small,lr=0.4]',
    'train[model=large,lr=0.1]', 'train[model=large,lr=0.2]',
    'score[model=small,lr=0.1]', 'score[model=small,lr=0.2]', 'score[model=small,lr=0.4]',
    'score[model=large,lr=0.1]', 'score[model=large,lr=0.2]',
    'summary',
  ]);
  assert.is((await pp('show', file, '--stage', 'score', '--csv')).out, [
    'stage,model,lr,loss,weights',
    'score,small,0.1,1.9802,505',
    'score,small,0.2,0.9901,1010',
    'score,small,0.4,0.495,2020',
    'score,large,0.1,0.9901,1010',
    'score,large,0.2,0.495,2020',
    '',
  ].join('\n'));
  assert.is((await readFile(path.join(ws, 'results', 'matrix.jsonl'), 'utf8')).split('\n').filter(Boolean).length, 5);
});

test('sh outs deleted from the workspace are restored from the cache without running', async () => {
  const { ws, file } = await workspace();
  await runJson(file);
  const table = path.join(ws, 'out', 'table.txt');
  const content = await readFile(table, 'utf8');
  assert.is(content.split('\n').filter(Boolean).length, 5);
  await rm(path.join(ws, 'out'), { recursive: true });
  const r = await runJson(file);
  assert.equal(r.counts.ran, 0);
  assert.equal(r.stages.find((s) => s.name === 'table')!.restored, ['out/table.txt']);
  assert.is(await readFile(table, 'utf8'), content);
});

test('restored outs and exported files get the modes of new files (executable kept); the cache keeps its own read-only', async () => {
  const { ws, file } = await workspace(`stage w = sh {
  command: ["sh", "-c", "mkdir -p res; echo a > res/a.txt; echo 'echo hi' > res/run.sh; chmod +x res/run.sh; echo '{}' > $PAUSEPIPE_OUT/metrics.json"]
  outs: ["res"]
}
`);
  const umask = process.umask(0o027);
  try {
    const modes = async (dir: string) => Object.fromEntries(await Promise.all((await readdir(dir, { recursive: true })).sort()
      .map(async (rel) => [rel, ((await stat(path.join(dir, rel))).mode & 0o777).toString(8)])));
    await runJson(file);
    const computed = await modes(path.join(ws, 'res'));
    assert.equal(computed, { 'a.txt': '640', 'run.sh': '750' });
    await rm(path.join(ws, 'res'), { recursive: true });
    assert.equal((await runJson(file)).stages[0]!.restored, ['res/a.txt', 'res/run.sh']);
    assert.equal(await modes(path.join(ws, 'res')), computed);
    assert.is(((await stat(path.join(ws, 'res'))).mode & 0o777).toString(8), '750');
    await writeFile(path.join(ws, 'res/a.txt'), 'edited');

    const exported = path.join(ws, 'exported');
    assert.is((await pp('export', file, 'w', exported)).code, 0);
    assert.equal(await modes(exported), { 'metrics.json': '640', outs: '750', 'outs/res': '750', 'outs/res/a.txt': '640', 'outs/res/run.sh': '750' });

    assert.equal((await runJson(file)).stages[0]!.restored, ['res/a.txt']);
    const artifacts = (await readdir(path.join(ws, '.pausepipe', 'objects'), { recursive: true, withFileTypes: true }))
      .filter((e) => e.isFile() && e.parentPath.includes(`${path.sep}artifacts`));
    const writable = await Promise.all(artifacts.map(async (e) => (await stat(path.join(e.parentPath, e.name))).mode & 0o222));
    assert.equal([artifacts.length, writable.filter((w) => w !== 0)], [3, []]);
  } finally {
    process.umask(umask);
  }
});

test('show prints one row per variant: loop variables, then metrics', async () => {
  const { file } = await workspace();
  await runJson(file);
  const r = await pp('show', file);
  assert.is(r.out, [
    'stage  model  lr  loss  size',
    '-----  -----  --  ----  ----',
    'train  s      1   0.25  s',
    'train  s      2   0.5   s',
    'train  s      3   0.75  s',
    'train  l      1   0.25  l',
    'train  l      2   0.5   l',
    '',
  ].join('\n'));
  assert.is((await pp('show', file, '--stage', 'train', '--csv')).out.split('\n')[2], 'train,s,2,0.5,s');
  assert.is((await pp('show', file, '--md')).out.split('\n').slice(0, 3).join('\n'), '| stage | model | lr | loss | size |\n| --- | --- | --- | --- | --- |\n| train | s | 1 | 0.25 | s |');
  assert.is((await pp('show', file, '--stage', 'nope')).code, 2);
});

test('show prints one table per loop stage with its own columns; --all adds the shared stages', async () => {
  const { file } = await workspace(`
stage base = sh { command: "echo '{\\"rows\\": 3}' > $PAUSEPIPE_OUT/metrics.json", shell: true }
for each lr in [1, 2] {
  stage fit = sh(base: base) { command: "echo '{\\"loss\\": \${lr / 4}}' > $PAUSEPIPE_OUT/metrics.json", shell: true }
  stage score = sh(model: fit) { command: "echo '{\\"acc\\": \${lr / 10}}' > $PAUSEPIPE_OUT/metrics.json", shell: true }
}
`);
  await runJson(file);
  assert.is((await pp('show', file)).out, [
    'stage  lr  loss',
    '-----  --  ----',
    'fit    1   0.25',
    'fit    2   0.5',
    '',
    'stage  lr  acc',
    '-----  --  ---',
    'score  1   0.1',
    'score  2   0.2',
    '',
  ].join('\n'));
  assert.is((await pp('show', file, '--all', '--md')).out.split('\n').slice(0, 4).join('\n'), '| stage | rows |\n| --- | --- |\n| base | 3 |\n');
  assert.is((await pp('show', file, '--csv')).out.split('\n')[0], 'stage,lr,loss,acc');
});

test('a metric named like a loop variable is headed metric.NAME in the run\'s table, show, --md and --csv', async () => {
  const { file } = await workspace(`
for each s in [1, 2] {
  stage fit = sh { command: "echo '{\\"s\\": \${s * 10}, \\"v\\": 2}' > $PAUSEPIPE_OUT/metrics.json", shell: true }
}
`);
  const table = [
    'stage  s  metric.s  v',
    '-----  -  --------  -',
    'fit    1  10        2',
    'fit    2  20        2',
    '',
  ].join('\n');
  assert.is((await pp('run', file)).out.split('\n').slice(2).join('\n'), table);
  assert.is((await pp('show', file)).out, table);
  assert.is((await pp('show', file, '--md')).out.split('\n')[0], '| stage | s | metric.s | v |');
  assert.is((await pp('show', file, '--csv')).out, 'stage,s,metric.s,v\nfit,1,10,2\nfit,2,20,2\n');
  const json = JSON.parse((await pp('show', file, '--json')).out) as { variant: object; metrics: object }[];
  assert.equal([json[0]!.variant, json[0]!.metrics], [{ s: 1 }, { s: 10, v: 2 }]);
});

test('show on a computed pipeline without loops says --all shows its stages instead of "no results yet"', async () => {
  const { file } = await workspace(`stage base = sh { command: "echo '{\\"rows\\": 3}' > $PAUSEPIPE_OUT/metrics.json", shell: true }\n`);
  await runJson(file);
  const r = await pp('show', file);
  assert.is(r.out, '');
  assert.is(r.err, 'no variants to show (stages in `for each` loops); --all shows the other stages too\n');
  assert.is(r.code, 0);
  assert.is((await pp('show', file, '--all')).out.split('\n')[2], 'base   3');
});

test('show before a run suggests the run that computes what it looked at: same targets, overrides and cache folder', async () => {
  const { ws, file } = await workspace(`let scale = 1\nfor each lr in [1, 2] {\n  stage train = sh { command: ["true"], env: { S: scale } }\n}\n`);
  const cache = path.join(ws, 'other cache');
  const r = await pp('show', file, 'train', '-p', 'scale=2', '--cache-dir', cache);
  assert.is(r.code, 0);
  assert.is(r.err, `no results yet\n2 stage(s) not computed yet: pausepipe run ${path.relative(process.cwd(), file)} train -p scale=2 --cache-dir '${cache}'\n`);
});

test('show and export say a damaged entry is damaged, what computes it again and what removes it, not "not computed"', async () => {
  const { ws, file } = await workspace(`for each lr in [1, 2] {
  stage fit = sh { command: "echo '{\\"loss\\": \${lr}}' > $PAUSEPIPE_OUT/metrics.json", shell: true }
}
`);
  await runJson(file);
  const objects = path.join(ws, '.pausepipe', 'objects');
  const metricsFiles = (await readdir(objects, { recursive: true })).filter((p) => p.endsWith(path.join('artifacts', 'metrics.json')));
  const damaged = (await Promise.all(metricsFiles.map(async (p) => [p, await readFile(path.join(objects, p), 'utf8')] as const)))
    .find(([, text]) => JSON.parse(text).loss === 1)![0];
  await chmod(path.join(objects, damaged), 0o644);
  await writeFile(path.join(objects, damaged), '{"loss": 0}\n');
  const rel = path.relative(process.cwd(), file);
  const problem = 'output metrics.json has changed since it was committed';

  assert.equal(await pp('show', file), {
    code: 0,
    out: 'stage  lr  loss\n-----  --  ----\nfit    2   2\n',
    err: `1 stage(s) with a damaged cache entry: fit[lr=1] (${problem}); \`pausepipe run ${rel}\` computes them again, \`pausepipe verify ${rel} --repair\` removes them\n`,
  });
  assert.equal(await pp('export', file, 'fit[lr=1]', path.join(ws, 'exported')), {
    code: 1,
    out: '',
    err: `pausepipe export: the cache entry of fit[lr=1] is damaged (${problem}); \`pausepipe run ${rel} 'fit[lr=1]'\` computes it again, \`pausepipe verify ${rel} --repair\` removes it\n`,
  });
  assert.equal((await runJson(file)).counts.ran, 1);
  assert.is((await pp('show', file)).err, '');
});

test('show of a stage whose kind keeps its metrics out of the table says where they are, not that there are none', async () => {
  const { file } = await workspace([
    'stage data = synthetic_math { train: 4, validation: 2, test: 2 }',
    'stage paused = inject_pauses(data: data) { n_random_pauses: 1 }',
    '',
  ].join('\n'));
  assert.is((await pp('run', file)).code, 0);
  assert.equal(await pp('show', file, '--stage', 'paused'),
    { code: 0, out: '', err: 'the selected stages are computed; their kind shows none of their metrics in this table: --csv or --json shows them\n' });
  assert.is((await pp('show', file, '--stage', 'paused', '--csv')).out, 'stage,pause_token\npaused,<|pause|>\n');
});

test('show --stage naming no stage is a usage error that says what exists', async () => {
  const { file } = await workspace();
  const r = await pp('show', file, '--stage', 'trian');
  assert.equal([r.code, r.out, r.err.split('\n')[0]], [2, '', `pausepipe show: no stage \`trian\` in ${file}; did you mean \`train\`?`]);
});

test('dag --format mermaid prints the graph with input names on the edges', async () => {
  const { file } = await workspace(`
stage prep = sh { command: ["true"] }
for each lr in [1, 2] {
  stage train = sh(base: prep) { command: ["true"] }
}
stage table = sh(runs: train[*]) { command: ["true"] }
`);
  const r = await pp('dag', file, '--format', 'mermaid');
  assert.is(r.out, [
    'flowchart TD',
    '  n0["prep"]',
    '  n1["train[lr=1]"]',
    '  n2["train[lr=2]"]',
    '  n3["table"]',
    '  n0 -->|"base"| n1',
    '  n0 -->|"base"| n2',
    '  n1 -->|"runs"| n3',
    '  n2 -->|"runs"| n3',
    '',
  ].join('\n'));
  assert.match((await pp('dag', file, '--format', 'dot')).out, '"loop:train":t:e -> "table" [label="runs (all 2)"];');
});

test('dag with targets draws the targets and the stages they need, as run would run them', async () => {
  const { file } = await workspace(`
stage prep = sh { command: ["true"] }
for each lr in [1, 2] {
  stage train = sh(base: prep) { command: ["true"] }
}
stage table = sh(runs: train[*]) { command: ["true"] }
`);
  assert.is((await pp('dag', file, 'train[lr=2]')).out, [
    'flowchart TD',
    '  n0["prep"]',
    '  n1["train[lr=2]"]',
    '  n0 -->|"base"| n1',
    '',
  ].join('\n'));
  const dot = (await pp('dag', file, 'train[lr=2]', '--format', 'dot')).out;
  assert.equal(dot.split('\n').filter((l) => l.includes(' -> ') || l.includes('label="for each')).map((l) => l.trim()), [
    'label="for each lr (1 variant)"; style="rounded,dashed"; color="#888888"; fontname="Helvetica"; fontsize=11;',
    '"prep" -> "loop:train":t:w [label="base"];',
  ]);
  const none = await pp('dag', file, 'trian');
  assert.equal([none.code, none.out], [2, '']);
  assert.match(none.err, 'pausepipe dag: no stage `trian`');
});

test('dag --format svg draws the graph coloured by what the cache holds', async () => {
  const { file } = await workspace(`
stage prep = sh { command: ["true"] }
for each lr in [1, 2] {
  stage train = sh(base: prep) { command: ["true"] }
}
`);
  const before = await pp('dag', file, '--format', 'svg');
  assert.is(before.code, 0);
  assert.ok(before.out.startsWith('<?xml'));
  assert.is(before.out.match(/fill="#ffe3a3"/g)!.length, 4); // 3 stale stages and the legend
  await pp('run', file, '--json');
  const after = await pp('dag', file, '--format', 'svg');
  assert.is(after.out.match(/fill="#d5efd5"/g)!.length, 4); // 3 fresh stages and the legend
  const bad = await pp('dag', file, '--format', 'png');
  assert.is(bad.code, 2);
  assert.match(bad.err, '--format must be one of mermaid, dot, svg, got png');
});

test('dag fills a stage whose last run failed apart from the stale stages waiting for it, and its legend says so', async () => {
  const { file } = await workspace(`
for each x in [1, 2] {
  stage fit = sh { command: ["sh", "-c", "exit \${x - 1}"] }
  stage score = sh(model: fit) { command: ["true"] }
}
`);
  const fresh = (await pp('dag', file, '--format', 'dot')).out;
  assert.not.ok(fresh.includes('failed last run'));
  await pp('run', file, '--json', '--keep-going');
  const dot = (await pp('dag', file, '--format', 'dot')).out;
  const fills = (table: string) => [...new RegExp(`"loop:${table}" .*`).exec(dot)![0].matchAll(/<TD PORT="r\d" BGCOLOR="([^"]+)"/g)].map((m) => m[1]);
  assert.equal(fills('fit'), [STATUS_COLORS.fresh, STATUS_COLORS.failed]);
  assert.equal(fills('score'), [STATUS_COLORS.fresh, STATUS_COLORS.stale]);
  assert.ok(dot.includes(`<TD BGCOLOR="${STATUS_COLORS.failed}">failed last run (runs next)</TD>`));
});

/** Two variants feeding a report, the second failing: under --keep-going the report is written partial. */
const PARTIAL_SWEEP = `
for each x in [1, 2] {
  stage fit = sh { command: ["sh", "-c", "exit \${x - 1}"] }
  stage score = sh(model: fit) { command: ["sh", "-c", "printf '{\\"accuracy\\":0.5,\\"accuracy_std\\":0.5,\\"n\\":10,\\"eval_loss\\":null,\\"avg_pauses\\":0,\\"predictions\\":\\"p.json\\",\\"model\\":{\\"stage\\":\\"fit\\",\\"key\\":\\"k\\"},\\"training\\":null}' > \\"$PAUSEPIPE_OUT/metrics.json\\""] }
}
stage table = report(runs: score[*]) { title: "T" }
`;

test('dag fills a report whose last run was partial apart from plain stale stages, and its legend says so', async () => {
  const { file } = await workspace(PARTIAL_SWEEP);
  assert.not.ok((await pp('dag', file, '--format', 'dot')).out.includes('partial'));
  const run = JSON.parse((await pp('run', file, '--json', '--keep-going')).out) as { stages: { name: string; partial?: unknown }[] };
  assert.ok(run.stages.find((st) => st.name === 'table')!.partial);
  const dot = (await pp('dag', file, '--format', 'dot')).out;
  assert.match(dot, `"table" [label="table\\n(report)", fillcolor="${STATUS_COLORS.partial}"];`);
  assert.ok(dot.includes(`<TD BGCOLOR="${STATUS_COLORS.partial}">partial last run (runs next)</TD><TD BGCOLOR="${STATUS_COLORS.failed}">failed last run (runs next)</TD>`));
});

test('warmup.pipe as SVG is a readable picture: its 18 variants are rows, not 18 boxes side by side', async () => {
  const r = await pp('dag', path.join(PROJECT_ROOT, 'pipelines/warmup.pipe'), '--format', 'svg');
  assert.is(r.code, 0);
  const [, width, height] = /<svg width="(\d+)pt" height="(\d+)pt"/.exec(r.out)!.map(Number);
  // The one-box-per-stage layout was 6,497 pt (about 8,700 px) wide and 488 pt high.
  assert.ok(width! <= 1300 && height! <= 800, `${width} × ${height} pt`);
});

test('an invalid pipeline exits 2 with located diagnostics; check passes a valid one', async () => {
  const { file } = await workspace('stage a = shh { command: ["true"] }\n');
  const r = await pp('run', file);
  assert.is(r.code, 2);
  assert.match(r.err, /matrix\.pipe:1:\d+: error\[E_UNKNOWN_KIND\]/);
  assert.is((await pp('check', file)).code, 2);
  const ok = await workspace();
  assert.equal(await pp('check', ok.file), { code: 0, out: 'ok: 7 stages\n', err: '' });
});

test('check and run report a syntax error with the mistakes of the other statements, and a broken stage is no unknown input', async () => {
  const { file } = await workspace('stage prep = sh { command: }\nstage use = sh(data: prep) { command: ["true"], shell: "yes" }\n');
  const checked = await pp('check', file);
  assert.equal([checked.code, checked.out], [2, '']);
  assert.equal(checked.err.split('\n').filter((l) => l.includes('error[')), [
    `${file}:1:28: error[E_PARSE]: expected a value, found \`}\``,
    `${file}:2:56: error[E_PARAM_TYPE]: param \`shell\` must be boolean, got string "yes"`,
  ]);
  const ran = await pp('run', file);
  assert.equal([ran.code, ran.err], [2, checked.err]);
});

test('check refuses two variants writing one out, with the error run fails them with', async () => {
  const { file } = await workspace('for each v in [1, 2] { stage w = sh { command: "echo ${v} > out.txt", shell: true, outs: ["out.txt"] } }\n');
  const ran = await pp('run', file);
  assert.equal([ran.code, ran.err.split('\n').filter((l) => l.startsWith('failed w'))], [1, [
    'failed w[v=1]: out out.txt is also written by w[v=2]',
    'failed w[v=2]: out out.txt is also written by w[v=1]',
  ]]);
  const checked = await pp('check', file);
  assert.equal([checked.code, checked.out], [2, '']);
  const at = `${file}:1:30: error[E_UNSAFE_OUT]: `;
  assert.equal(checked.err.split('\n').filter((l) => l.includes('error[')), [
    `${at}w[v=1]: out out.txt is also written by w[v=2]`,
    `${at}w[v=2]: out out.txt is also written by w[v=1]`,
  ]);
  assert.match(checked.err, 'note: give each stage an out path of its own (in a loop, put the loop variables in it)');
});

test('check warns of a dep missing from the workspace with the path it looked for; the run fails naming that path', async () => {
  const { ws } = await workspace();
  const file = path.join(ws, 'pipes', 'prep.pipe');
  await mkdir(path.dirname(file));
  await writeFile(file, 'stage prep = sh {\n  command: ["true"]\n  deps: ["raw.csv"]\n}\n');
  await writeFile(path.join(ws, 'pipes', 'raw.csv'), 'a,b\n');
  const check = await pp('check', file);
  assert.equal([check.code, check.out], [0, 'ok: 1 stage, 1 warning(s)\n']);
  assert.match(check.err, `warning[E_MISSING_DEP]: dep \`raw.csv\` does not exist: looked for ${path.join(ws, 'raw.csv')}\n`);
  assert.match(check.err, '= note: did you mean `pipes/raw.csv`, the file beside the .pipe file?');
  const run = await runJson(file);
  assert.equal(run.stages.map((s) => s.error), [`file raw.csv missing (looked for ${path.join(ws, 'raw.csv')})`]);
});

test('check finds a report baseline that names no input and reference rows that match no variant, or one twice, before anything trains', async () => {
  const { file } = await workspace([
    'for each x in [1, 2] {',
    '  stage e = sh { command: ["true"] }',
    '}',
    'stage r = report(runs: e[*]) {',
    '  baseline: "x=3"',
    '  reference: { name: "orig", rows: [{ match: { x: 1 }, accuracy: 0.5 }, { match: { x: 5 }, accuracy: 0.1 }, { match: { x: 1 } }] }',
    '}',
    '',
  ].join('\n'));
  const checked = await pp('check', file);
  assert.is(checked.code, 2);
  const heads = checked.err.split('\n').filter((l) => /^\S+:\d+:\d+: /.test(l) || l.startsWith('  = note')).map((l) => l.replace(/^.*?matrix\.pipe:/, ''));
  assert.equal(heads, [
    '5:13: error[E_PARAM_VALUE]: baseline "x=3" is none of the inputs: give a stage name or a variant label',
    '  = note: the inputs: e[x=1], e[x=2]',
    '6:82: warning[E_PARAM_VALUE]: reference row {"x":5} matches no variant: its numbers would not be shown',
    '6:118: error[E_PARAM_VALUE]: reference rows {"x":1} and {"x":1} both match e[x=1]; make their `match` tell them apart',
  ]);
  // A variant label and a stage name are both baselines the report can find.
  for (const baseline of ['x=2', 'e[x=1]']) {
    await writeFile(file, (await readFile(file, 'utf8')).replace(/baseline: "[^"]*"/, `baseline: "${baseline}"`).replace(', { match: { x: 5 }, accuracy: 0.1 }, { match: { x: 1 } }', ''));
    assert.equal(await pp('check', file), { code: 0, out: 'ok: 3 stages\n', err: '' }, baseline);
  }
});

test('a failure is told once: its log tail leaves out the message already shown and Dawn\'s notes on its limits', async () => {
  const dawn = 'Warning: maxDynamicUniformBuffersPerPipelineLayout artificially reduced from 1000000 to 16 to fit dynamic offset allocation limit.';
  const { file } = await workspace(`stage bad = sh { command: ["sh", "-c", "echo '${dawn}' >&2; echo reading; exit 3"] }\n`);
  const ran = await pp('run', file);
  assert.is(ran.code, 1);
  const block = ran.err.slice(ran.err.indexOf('failed bad:')).split('\n').filter((l) => !l.startsWith('  full log: ') && l !== '');
  assert.equal(block, ['failed bad: command failed with exit code 3', `  | $ sh -c "echo '${dawn}' >&2; echo reading; exit 3"`, '  | reading']);
});

test('a worker\'s failure is told once too: its stack stays in the log file, its message of several lines is not repeated', async () => {
  const { ws, file } = await workspace('stage data = gsm8k { path: "mine" }\n');
  await mkdir(path.join(ws, 'mine'));
  for (const split of ['train', 'test']) await writeFile(path.join(ws, 'mine', `${split}.jsonl`), '{"question": "q", "answer": "a\\n#### 1"}\n{bad\n');
  const ran = await pp('run', file);
  assert.is(ran.code, 1);
  const block = ran.err.slice(ran.err.indexOf('failed data:')).split('\n').filter((l) => l !== '');
  assert.equal(block.slice(0, -1), [
    'failed data: GSM8K in mine has 2 bad row(s):',
    "  mine/train.jsonl:2: not valid JSON (Expected property name or '}' in JSON at position 1)",
    "  mine/test.jsonl:2: not valid JSON (Expected property name or '}' in JSON at position 1)",
  ]);
  const log = await readFile(block.at(-1)!.replace('  full log: ', ''), 'utf8');
  assert.match(log, /^DataError: GSM8K in mine has 2 bad row\(s\):\n.*\n.*\n    at /);
});

test('exit codes: 1 when a stage fails; --keep-going still runs what does not depend on it', async () => {
  const text = `
stage bad = sh { command: ["sh", "-c", "exit 3"] }
stage after = sh(up: bad) { command: ["true"] }
stage other = count { counter: "count.txt", value: 1 }
`;
  const { ws, file } = await workspace(text);
  const stopped = await pp('run', file, '--jobs', '1');
  assert.is(stopped.code, 1);
  assert.match(stopped.err, 'failed bad: command failed with exit code 3');
  const going = await runJson(file, '--keep-going', '--jobs', '1');
  assert.is(going.exitCode, 1);
  assert.equal(going.stages.map((s) => [s.name, s.status, s.error]), [
    ['bad', 'failed', 'command failed with exit code 3'],
    ['after', 'skipped', 'upstream bad failed'],
    ['other', 'ran', null],
  ]);
  assert.equal(await countLines(ws), ['other']);
});

test('a stage that failed is no "new stage": plan and show say how its last run ended and where its log is, until it runs again', async () => {
  const text = `
let code = 3
for each x in [1, 2] {
  stage s = sh { command: if x == 2 then "echo boom >&2; exit \${code}" else "echo '{\\"x\\": \${x}}' > $PAUSEPIPE_OUT/metrics.json", shell: true }
}
`;
  const { file } = await workspace(text);
  assert.is((await pp('run', file, '--keep-going')).code, 1);
  const plan = await pp('plan', file);
  assert.is(plan.out, 'stale  s[x=2]: failed in its last run: command failed with exit code 3\n1 stale, 1 fresh\n');
  const show = await pp('show', file);
  const log = /\(log: (.*)\)$/m.exec(show.err)?.[1] ?? '';
  assert.is(show.err.replace(log, '<log>'), `1 stage(s) not computed yet: pausepipe run ${path.relative(process.cwd(), file)}\n  s[x=2]: failed in its last run: command failed with exit code 3 (log: <log>)\n`);
  assert.match(await readFile(log, 'utf8'), 'boom');
  // Another key (code 0 passes): what changed since the failed attempt; the failed key keeps its record.
  const other = await pp('plan', file, '-p', 'code=0');
  assert.is(other.out, 'stale  s[x=2]: param command: "echo boom >&2; exit 3" → "echo boom >&2; exit 0" (-p code=0)\n1 stale, 1 fresh\n');
  assert.is((await pp('run', file, '-p', 'code=0')).code, 0);
  assert.equal((await pp('show', file, '-p', 'code=0')).err, '');
  // Back to the failed key: what changed since the last success, then how the last attempt at this key ended.
  assert.is((await pp('plan', file)).out,
    'stale  s[x=2]: param command: "echo boom >&2; exit 0" → "echo boom >&2; exit 3"; failed in its last run: command failed with exit code 3\n1 stale, 1 fresh\n');
});

test('a stage edited after a run that left no result for it (failed, partial) says what changed since that run', async () => {
  const { file } = await workspace(PARTIAL_SWEEP);
  assert.is((await pp('run', file, '--keep-going')).code, 1);
  const edit = async (from: string, to: string) => writeFile(file, (await readFile(file, 'utf8')).replace(from, to));
  await edit('title: "T"', 'title: "U"');
  await edit('exit ${x - 1}', 'exit $((${x} - 1))');
  assert.is((await pp('plan', file)).out, [
    'stale  fit[x=1]: param command: ["sh","-c","exit 0"] → ["sh","-c","exit $((1 - 1))"]',
    'stale  fit[x=2]: param command: ["sh","-c","exit 1"] → ["sh","-c","exit $((2 - 1))"]',
    'stale  score[x=1]: upstream fit[x=1] stale',
    'stale  score[x=2]: new stage',
    'stale  table: param title: "T" → "U"; upstream score[x=1] stale; upstream score[x=2] stale',
    '5 stale, 0 fresh',
    '',
  ].join('\n'));
  // Once the stages have results, the attempts are forgotten: changes are said against the results.
  await edit('exit $((${x} - 1))', 'exit 0');
  assert.is((await pp('run', file)).code, 0);
  await edit('title: "U"', 'title: "V"');
  assert.is((await pp('plan', file)).out, 'stale  table: param title: "U" → "V"\n1 stale, 4 fresh\n');
});

test('a stage with a Slurm job that a killed run left is no "new stage": plan says the job a run will collect', async () => {
  const { file } = await workspace('stage s = sh { command: ["true"] }\n');
  const loaded = await loadChecked(file, (t) => assert.unreachable(t));
  const session = await planLoaded(loaded!.pipeline, loaded!.kinds);
  const key = session.plan.stages[0]!.key!;
  const jobDir = path.join(session.store.scratchDir(key), 'slurm-job');
  await mkdir(jobDir, { recursive: true });
  await writeFile(path.join(jobDir, 'record.json'), JSON.stringify({ token: 'abc', jobId: '77', host: 'login1', pid: 4242, submittedAt: '2026-11-28T12:00:00.000Z' }));
  assert.is((await pp('plan', file)).out, 'stale  s: submitted to Slurm as job 77 by an earlier run: a run collects its result\n1 stale, 0 fresh\n');
});

test('export copies a stage\'s artifacts out of the cache; gc keeps only what the pipeline uses', async () => {
  const { ws, file } = await workspace();
  await runJson(file);
  const target = path.join(ws, 'exported');
  const ex = await pp('export', 'train[model=s,lr=2]', target, '--pipeline', file);
  assert.is(ex.code, 0, ex.err);
  assert.equal(JSON.parse(await readFile(path.join(target, 'metrics.json'), 'utf8')), { loss: 0.5, size: 's' });
  const several = await pp('export', 'train', path.join(ws, 'x'), '--pipeline', file);
  assert.equal([several.code, several.err.split('\n')[0]], [2, 'pausepipe export: `train` selects 5 variants; name one, e.g. `train[model=s,lr=1]`']);
  // A selector that comes down to one variant exports it; one naming nothing says what exists.
  const bySelector = path.join(ws, 'by-selector');
  assert.is((await pp('export', file, 'train[lr=3]', bySelector)).code, 0);
  assert.equal(JSON.parse(await readFile(path.join(bySelector, 'metrics.json'), 'utf8')), { loss: 0.75, size: 's' });
  const none = await pp('export', file, 'trian', path.join(ws, 'x'));
  assert.equal([none.code, none.err.split('\n')[0]], [2, `pausepipe export: no stage \`trian\` in ${file}; did you mean \`train\`?`]);
  // The pipeline first, as run, plan and show take it.
  const second = path.join(ws, 'exported-too');
  assert.is((await pp('export', file, 'train[model=s,lr=2]', second)).code, 0);
  assert.equal(await readdir(second), await readdir(target));
  // A file where the folder should go is named as such, not as mkdir's EEXIST.
  await writeFile(path.join(ws, 'a-file'), 'x');
  assert.equal(await pp('export', file, 'train[model=s,lr=2]', path.join(ws, 'a-file')),
    { code: 1, out: '', err: `pausepipe export: ${path.join(ws, 'a-file')} is a file; give a new or empty folder\n` });
  assert.equal(await pp('export', file, 'train[model=s,lr=2]', path.join(ws, 'a-file', 'sub')),
    { code: 1, out: '', err: `pausepipe export: ${path.join(ws, 'a-file')} is a file, so ${path.join(ws, 'a-file', 'sub')} cannot be made; give a new or empty folder\n` });
  const missing = await pp('export', 'train[model=s,lr=2]', path.join(ws, 'y'));
  assert.is(missing.code, 2);
  assert.match(missing.err, 'which pipeline? export FILE STAGE FOLDER (or add --pipeline FILE)');
  assert.match((await pp('export', file, 'train[model=s,lr=2]', path.join(ws, 'z'), '--pipeline', file)).err, 'give the pipeline once');

  await writeFile(file, MATRIX.replace('then 7 else 1', 'then 8 else 1'));
  await runJson(file);
  const gc = await pp('gc', file);
  assert.is(gc.code, 0);
  assert.match(gc.out, 'removed 2 entries');
  const objects = (await readdir(path.join(ws, '.pausepipe', 'objects'), { recursive: true })).filter((p) => p.endsWith('manifest.json'));
  assert.is(objects.length, 7);
  assert.equal(await pp('verify', file), { code: 0, out: `cache OK: 7 entries verified in ${path.join(ws, '.pausepipe')}\n`, err: '' });
});

test('export and gc take -p as run does: export copies the result of the overridden pipeline, gc keeps its entries', async () => {
  const { ws, file } = await workspace(`
let scale = 1
for each k in [1, 2] {
  stage m = sh { command: "echo '{\\"v\\": \${k * scale}}' > $PAUSEPIPE_OUT/metrics.json", shell: true }
}
`);
  await runJson(file);
  await runJson(file, '-p', 'scale=5');
  const exported = path.join(ws, 'exported');
  const ex = await pp('export', file, 'm[k=2]', exported, '-p', 'scale=5');
  assert.is(ex.code, 0, ex.err);
  assert.equal(JSON.parse(await readFile(path.join(exported, 'metrics.json'), 'utf8')), { v: 10 });
  const notRun = await pp('export', file, 'm[k=2]', path.join(ws, 'x'), '-p', 'scale=9');
  assert.is(notRun.code, 1);
  assert.match(notRun.err, /; run it first: pausepipe run \S+matrix\.pipe 'm\[k=2\]' -p scale=9\n$/);
  const typo = await pp('export', file, 'm[k=2]', path.join(ws, 'x'), '-p', 'sacle=5');
  assert.is(typo.code, 2);
  assert.match(typo.err, 'error[E_OVERRIDE]: -p sacle=5: the pipeline has no top-level let `sacle`');

  const keysOf = async (...flags: string[]) => {
    const plan = JSON.parse((await pp('plan', file, '--json', ...flags)).out) as { stages: { name: string; key: string }[] };
    return plan.stages.map((st) => [st.key, st.name] as const);
  };
  const unscaled = await keysOf();
  const scaled = await keysOf('-p', 'scale=5');
  const root = path.join(ws, '.pausepipe');
  const dry = await pp('gc', file, '-p', 'scale=5', '--dry-run');
  assert.is(dry.out, [
    ...[...unscaled].sort().map(([key, name]) => `would remove ${key} (${name})`),
    `${root}: would remove 2 entries (0.0 MB), 0 leftover(s); kept 2`,
    '',
  ].join('\n'));
  assert.match((await pp('gc', file, '-p', 'scale=5')).out, `${root}: removed 2 entries (`);
  const left = (await readdir(path.join(root, 'objects'), { recursive: true })).filter((p) => p.endsWith('manifest.json')).map((p) => path.basename(path.dirname(p)));
  assert.equal(left.sort(), scaled.map(([key]) => key).sort());
});

test('every option a command\'s usage names is described in its help', async () => {
  for (const command of ['run', 'plan', 'show', 'diff', 'dag', 'check', 'watch', 'gc', 'verify', 'export', 'log', 'exec', 'kinds', 'backends', 'lsp']) {
    const [usage, ...help] = (await pp(command, '--help')).out.split('\n');
    const undescribed = [...new Set(usage!.match(/--[a-z-]+/g) ?? [])].filter((o) => !help.some((line) => new RegExp(`(^| )${o}\\b`).test(line)));
    assert.equal(undescribed, [], `pausepipe ${command} --help`);
  }
});

test('help, kinds and usage errors', async () => {
  const help = (await pp('--help')).out;
  assert.match(help, '  run       run the stale stages of a pipeline');
  assert.match(help, '  backends  which tensor backends start here, the GPU adapter, what auto picks');
  assert.match(help, "  PAUSEPIPE_ATTENTION         rows (default) or lanes: the training attention kernels on WebGPU");
  assert.match((await pp('run', '--help')).out, 'usage: pausepipe run FILE [TARGET...] [-p NAME=VALUE]... [--force] [--jobs N]');
  // kinds reads no cache: its help offers no --cache-dir (it still accepts one, as every command does).
  const kindsHelp = (await pp('kinds', '--help')).out;
  assert.is(kindsHelp.split('\n')[0], 'usage: pausepipe kinds [NAME] [--md]');
  assert.not.match(kindsHelp, '--cache-dir');
  const kinds = await pp('kinds');
  assert.match(kinds.out, 'sh (version 1)');
  assert.match(kinds.out, '    shell: boolean = false');
  const md = (await pp('kinds', '--md')).out;
  assert.match(md, '| `command` | string \\| string[] | required |');
  // Keys inside an object param get rows of their own, as strictly checked as params.
  assert.match(md, '| `train.all` | boolean | `false` | Every weight (from-scratch training or full fine-tuning); not with LoRA. |');
  assert.match(md, '| `overrides.num_hidden_layers` | integer |  | Decoder layers. |');
  assert.match(kinds.out, '    lora.r: integer = 16');
  const bad = await pp('run', 'x.pipe', '--jobs', '0');
  assert.is(bad.code, 2);
  assert.match(bad.err, '--jobs needs a whole number ≥ 1, got 0');
  assert.is((await pp('frobnicate')).code, 2);
  const typo = await pp('run', 'x.pipe', '--backend', 'webpgu');
  assert.is(typo.code, 2);
  assert.match(typo.err, '--backend must be one of tensorflow, webgpu, wasm, cpu, auto, got webpgu');
  assert.equal([...BACKEND_FLAG_VALUES], [...BACKEND_NAMES, 'auto']);
  // Option mistakes in this tool's words: the closest real option, a missing or unwanted value.
  const firstLine = async (...args: string[]) => {
    const r = await pp(...args);
    return [r.code, r.err.split('\n')[0]];
  };
  assert.equal(await firstLine('run', 'x.pipe', '--forse'), [2, "pausepipe run: unknown option --forse; did you mean `--force`? (a positional argument starting with '-' goes after '--')"]);
  assert.equal(await firstLine('dag', 'x.pipe', '--format'), [2, 'pausepipe dag: --format needs a value']);
  assert.equal(await firstLine('plan', 'x.pipe', '-p'), [2, 'pausepipe plan: -p (--param) needs a value']);
  assert.equal(await firstLine('show', 'x.pipe', '--json=yes'), [2, 'pausepipe show: --json takes no value']);
});

test('a bad GPU kernel variable stops run before any stage, naming each variable; nothing is computed', async () => {
  const { ws, file } = await workspace();
  const r = await withEnv('PAUSEPIPE_ATTENTION', 'lane', () => withEnv('PAUSEPIPE_DECODE_LOOKAHEAD', '65', () => withEnv('PAUSEPIPE_GPU_MEMORY_MIB', '80GB', () => pp('run', file))));
  assert.is(r.code, 2);
  assert.is(r.err, "pausepipe run: PAUSEPIPE_ATTENTION must be rows or lanes, got 'lane'\n" +
    "pausepipe run: PAUSEPIPE_DECODE_LOOKAHEAD must be a whole number from 0 to 64, got '65'\n" +
    "pausepipe run: PAUSEPIPE_GPU_MEMORY_MIB must be a whole number of MiB, got '80GB'\n");
  assert.is(r.out, '');
  await readFile(path.join(ws, 'count.txt')).then(() => assert.unreachable('a stage ran'), (err: NodeJS.ErrnoException) => assert.is(err.code, 'ENOENT'));
});


test('a reader that closes the pipe early (`plan | head`) ends the command without a stack trace', async () => {
  // 1,600 stages: the plan's JSON is far longer than a pipe's 64 KiB buffer, so writes go on after the reader left.
  const { file } = await workspace([
    'for each a in range(0, 40), b in range(0, 40) {',
    '  stage s = sh { command: "echo ${a} ${b} and some words to make each plan line longer than a hundred characters", shell: true }',
    '}',
    '',
  ].join('\n'));
  const child = spawn(process.execPath, [BIN, 'plan', file, '--json'], {
    stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, PAUSEPIPE_KINDS: TEST_KINDS },
  });
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => { stderr += d.toString(); });
  child.stdout.once('data', () => child.stdout.destroy());
  const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
  assert.equal({ code, stderr }, { code: 0, stderr: '' });
});

test('plan says once for the variants of a stage that share their reasons, from five of them on', () => {
  const stage = (name: string, status: 'stale' | 'fresh', reasons: string[]) => ({ name, status, key: name, reasons });
  const lines = planLines({
    stages: [
      stage('prep', 'stale', ['new stage']),
      ...[1, 2, 3, 4, 5].map((v) => stage(`train[v=${v}]`, 'stale', ['new stage'])),
      ...[1, 2, 3, 4].map((v) => stage(`eval[v=${v}]`, 'stale', ['new stage'])),
      stage('eval[v=5]', 'stale', ['same key as eval[v=1]: computed once']),
      ...[1, 2, 3, 4, 5].map((v) => stage(`score[v=${v}]`, 'fresh', [])),
      stage('table', 'stale', ['new stage']),
    ],
    counts: { stale: 12, fresh: 5, error: 0 },
  });
  assert.equal(lines, [
    'stale  prep: new stage',
    'stale  train[v=1] and 4 more variants of train: new stage',
    'stale  eval[v=1]: new stage', 'stale  eval[v=2]: new stage', 'stale  eval[v=3]: new stage', 'stale  eval[v=4]: new stage',
    'stale  eval[v=5]: same key as eval[v=1]: computed once',
    'stale  table: new stage',
  ]);
});

test('a run with many failures tells three in full and the others by error, once each', async () => {
  const { file } = await workspace([
    'for each v in range(1, 7) {',
    '  stage e = sh { command: "echo no data for ${v} >&2; exit ${if v == 6 then 4 else 3}", shell: true }',
    '}',
    '',
  ].join('\n'));
  const ran = await pp('run', file, '--keep-going', '--jobs', '1');
  assert.is(ran.code, 1);
  const summary = ran.err.split('\n').filter((l) => !/^(start|done|failed) {2}/.test(l) && !l.startsWith('  full log: '));
  assert.equal(summary.filter(Boolean), [
    'failed e[v=1]: command failed with exit code 3', '  | $ echo no data for 1 >&2; exit 3', '  | no data for 1',
    'failed e[v=2]: command failed with exit code 3', '  | $ echo no data for 2 >&2; exit 3', '  | no data for 2',
    'failed e[v=3]: command failed with exit code 3', '  | $ echo no data for 3 >&2; exit 3', '  | no data for 3',
    'failed e[v=4] and 1 more: command failed with exit code 3',
    'failed e[v=6]: command failed with exit code 4',
    `  each failure with its log: pausepipe show ${path.relative(process.cwd(), file)}`,
  ]);
});

test.run();

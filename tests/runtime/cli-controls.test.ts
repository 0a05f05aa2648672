// The researcher's everyday controls through the CLI: targets, --force, -p overrides, diff, backend notices, small commands.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { existsSync } from 'node:fs';
import { mkdir, readdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { execa } from 'execa';
import { EXTRA_KINDS_ENV } from '../../runtime/kinds.ts';
import { PAUSEPIPE_VERSION } from '../../runtime/version.ts';
import { runMain } from '../helpers/capture.ts';
import { tempWorkspace, TEST_KINDS } from '../helpers/runner.ts';
import { screen } from '../helpers/terminal.ts';

process.env[EXTRA_KINDS_ENV] = TEST_KINDS;

/** A prep stage, a 2 × 2 matrix of train and score, and a collecting stage; every execution appends to count.txt. */
const MATRIX = `
let scale = 100
let opts = { WIDTH: 2, DEPTH: 1 }
stage prep = count { counter: "count.txt", value: 1 }
for each model in ["s", "l"], lr in [0.1, 0.2] {
  stage train = count(up: prep) { counter: "count.txt", value: lr * (if model == "s" then 1 else 10) }
  stage score = count(up: train) { counter: "count.txt", value: scale * lr * (if model == "s" then 1 else 2) }
}
stage table = sh(runs: score[*]) { command: ["sh", "-c", "echo table >> count.txt"], env: opts }
`;

const pp = runMain;

async function workspace(text = MATRIX): Promise<{ ws: string; file: string }> {
  const ws = await tempWorkspace('pausepipe-controls-');
  const file = path.join(ws, 'm.pipe');
  await writeFile(file, text);
  return { ws, file };
}

async function counted(ws: string): Promise<string[]> {
  return (await readFile(path.join(ws, 'count.txt'), 'utf8').catch(() => '')).split('\n').filter(Boolean);
}

/** Stage name → status of a `run --json`. */
async function run(file: string, ...args: string[]): Promise<Record<string, string>> {
  const r = await pp(['run', file, '--json', ...args]);
  const parsed = JSON.parse(r.out) as { stages: { name: string; status: string }[] };
  return Object.fromEntries(parsed.stages.map((s) => [s.name, s.status]));
}

async function manifests(ws: string): Promise<{ stage: string; overrides?: Record<string, unknown>; timings: { finishedAt: string } }[]> {
  const objects = path.join(ws, '.pausepipe', 'objects');
  const files = (await readdir(objects, { recursive: true })).filter((f) => f.endsWith('manifest.json'));
  return Promise.all(files.map(async (f) => JSON.parse(await readFile(path.join(objects, f), 'utf8'))));
}

test('run with targets runs those stages and what they need, nothing else; plan and show take the same targets', async () => {
  const { ws, file } = await workspace();
  const plan = await pp(['plan', file, 'score[model=s]']);
  assert.is(plan.out, [
    'stale  prep: new stage',
    'stale  train[model=s,lr=0.1]: new stage',
    'stale  train[model=s,lr=0.2]: new stage',
    'stale  score[model=s,lr=0.1]: new stage',
    'stale  score[model=s,lr=0.2]: new stage',
    '5 stale, 0 fresh',
    '',
  ].join('\n'));
  assert.equal(await run(file, 'score[model=s]'), {
    prep: 'ran', 'train[model=s,lr=0.1]': 'ran', 'train[model=s,lr=0.2]': 'ran', 'score[model=s,lr=0.1]': 'ran', 'score[model=s,lr=0.2]': 'ran',
  });
  // A generated name, a selector on a value written as JSON, and all variants of a declared name.
  assert.equal(await run(file, 'train[model=l,lr=0.1]', 'score[lr=2e-1]'), {
    prep: 'cached', 'train[model=s,lr=0.2]': 'cached', 'train[model=l,lr=0.1]': 'ran', 'train[model=l,lr=0.2]': 'ran',
    'score[model=s,lr=0.2]': 'cached', 'score[model=l,lr=0.2]': 'ran',
  });
  assert.equal((await counted(ws)).length, 8);
  const shown = await pp(['show', file, 'score[lr=0.2]', 'prep']);
  assert.is(shown.out, [
    'stage  value',
    '-----  -----',
    'prep   1',
    '',
    'stage  model  lr   value',
    '-----  -----  ---  -----',
    'score  s      0.2  20',
    'score  l      0.2  40',
    '',
  ].join('\n'));
  assert.equal(Object.values(await run(file, 'score[*]')).filter((s) => s === 'ran'), ['ran']);
});

test('a target that selects nothing is a usage error that says what exists', async () => {
  const { file } = await workspace();
  const cases: [string, string][] = [
    ['scroe', `pausepipe run: no stage \`scroe\` in ${file}; did you mean \`score\`?`],
    ['zzz', `pausepipe run: no stage \`zzz\` in ${file}; its stages: prep, train, score, table`],
    ['score[lr=0.3]', 'pausepipe run: `score[lr=0.3]` matches no variant: `lr` takes 0.1, 0.2'],
    ['score[rate=1]', 'pausepipe run: `score[rate=1]`: `rate` is not a loop variable of `score`; its variables: model, lr'],
    ['prep[x=1]', 'pausepipe run: `prep` is not declared in a `for each`, so it has no variants to select: write `prep`'],
  ];
  for (const [target, message] of cases) {
    const r = await pp(['run', file, target]);
    assert.is(r.code, 2, target);
    assert.is(r.err.split('\n')[0], message);
  }
});

test('--force re-runs the named stages and everything downstream, replacing their entries; the cache stays verified', async () => {
  const { ws, file } = await workspace();
  await run(file);
  const before = new Map((await manifests(ws)).map((m) => [m.stage, m.timings.finishedAt]));
  const plan = await pp(['plan', file, 'train[model=s,lr=0.1]', '--force']);
  assert.is(plan.out, [
    'stale  train[model=s,lr=0.1]: forced (--force)',
    'stale  score[model=s,lr=0.1]: upstream train[model=s,lr=0.1] re-runs (--force)',
    'stale  table: upstream score[model=s,lr=0.1] re-runs (--force)',
    '3 stale, 7 fresh',
    '',
  ].join('\n'));
  const forced = await run(file, 'train[model=s,lr=0.1]', '--force');
  assert.equal(Object.entries(forced).filter(([, s]) => s === 'ran').map(([n]) => n), ['train[model=s,lr=0.1]', 'score[model=s,lr=0.1]', 'table']);
  assert.equal((await counted(ws)).slice(10), ['train[model=s,lr=0.1]', 'score[model=s,lr=0.1]', 'table']);
  const after = await manifests(ws);
  assert.is(after.length, 10, 'one entry per key: the forced ones were replaced, not duplicated');
  const changed = after.filter((m) => m.timings.finishedAt !== before.get(m.stage)).map((m) => m.stage).sort();
  assert.equal(changed, ['score[model=s,lr=0.1]', 'table', 'train[model=s,lr=0.1]']);
  assert.equal(await pp(['verify', file]), { code: 0, out: `cache OK: 10 entries verified in ${path.join(ws, '.pausepipe')}\n`, err: '' });
  assert.equal(Object.values(await run(file, '--force')).filter((s) => s !== 'ran'), []);
  assert.equal(Object.values(await run(file)).filter((s) => s !== 'cached'), []);
});

test('-p overrides a let (or one key of an object let); plan names it in the reasons; manifests record it', async () => {
  const { ws, file } = await workspace();
  await run(file);
  const plan = await pp(['plan', file, '-p', 'scale=1e3', '-p', 'opts.WIDTH=3']);
  assert.is(plan.code, 0, plan.err);
  assert.is(plan.out, [
    'stale  score[model=s,lr=0.1]: param value: 10 → 100 (-p scale=1e3)',
    'stale  score[model=s,lr=0.2]: param value: 20 → 200 (-p scale=1e3)',
    'stale  score[model=l,lr=0.1]: param value: 20 → 200 (-p scale=1e3)',
    'stale  score[model=l,lr=0.2]: param value: 40 → 400 (-p scale=1e3)',
    'stale  table: param env.WIDTH: 2 → 3 (-p opts.WIDTH=3); upstream score[model=s,lr=0.1] stale; upstream score[model=s,lr=0.2] stale; ' +
      'upstream score[model=l,lr=0.1] stale; upstream score[model=l,lr=0.2] stale',
    '5 stale, 5 fresh',
    '',
  ].join('\n'));
  const json = JSON.parse((await pp(['plan', file, '-p', 'scale=1e3', '--json'])).out) as { overrides: unknown };
  assert.equal(json.overrides, { scale: 1000 });
  await run(file, '-p', 'scale=1e3', 'score[model=s,lr=0.1]');
  const recorded = (await manifests(ws)).filter((m) => m.overrides).map((m) => [m.stage, m.overrides]);
  assert.equal(recorded, [['score[model=s,lr=0.1]', { scale: 1000 }]]);
  assert.is((await pp(['show', file, 'score[model=s,lr=0.1]', '-p', 'scale=1e3', '--csv'])).out, 'stage,model,lr,value\nscore,s,0.1,100\n');
});

test('a -p that names no let, a missing key, or is malformed is an error before anything runs', async () => {
  const { ws, file } = await workspace();
  const unknown = await pp(['run', file, '-p', 'scael=2']);
  assert.is(unknown.code, 2);
  assert.is(unknown.err, [
    'error[E_OVERRIDE]: -p scael=2: the pipeline has no top-level let `scael`',
    '  = note: did you mean `scale`?',
    '  = note: its top-level lets: scale, opts',
    '',
    '1 error',
    '',
  ].join('\n'));
  const key = await pp(['check', file, '-p', 'opts.WIDHT=3']);
  assert.is(key.code, 2);
  assert.match(key.err, 'm.pipe:3:5: error[E_OVERRIDE]: -p opts.WIDHT=3: `opts` has no key `WIDHT`; did you mean `WIDTH`? (its keys: WIDTH, DEPTH)');
  // A value of the wrong type is an error where the let is used; a note says the value came from -p, and which.
  const typed = await pp(['check', file, '-p', 'scale="big"', '-p', 'opts.DEPTH=2']);
  assert.is(typed.code, 2);
  assert.equal(typed.err.split('\n').filter((l) => l.includes('command line')), ['  = note: the value comes from the command line: -p scale="big"']);
  assert.match(typed.err, 'm.pipe:7:65: error[E_EXPR_TYPE]: `*` needs two numbers, got string and number');
  const malformed = await pp(['plan', file, '-p', '=3']);
  assert.is(malformed.code, 2);
  assert.match(malformed.err, 'pausepipe plan: -p =3: expected NAME=VALUE or NAME.KEY=VALUE');
  const unclosed = await pp(['run', file, '-p', 'opts={WIDTH: 3']);
  assert.equal([unclosed.code, unclosed.err.split('\n')[0]],
    [2, 'pausepipe run: -p opts={WIDTH: 3: the value looks like an object but is not one: expected `}`, found the end of the file']);
  assert.is(existsSync(path.join(ws, 'count.txt')), false);
});

test('diff: a variant\'s metric now against the pipeline at a git revision, and against the results the last run replaced', async () => {
  const { ws, file } = await workspace();
  const git = (...args: string[]) => execa('git', ['-c', 'user.name=t', '-c', 'user.email=t@t', ...args], { cwd: ws });
  await git('init', '-q');
  await git('add', 'm.pipe');
  await git('commit', '-qm', 'matrix');
  await run(file);
  // The README's kind of edit: one variant gets its own value.
  await writeFile(file, MATRIX.replace('value: scale * lr', 'value: if model == "l" and lr == 0.2 then 7 else scale * lr'));
  const notRun = await pp(['diff', file, 'HEAD', '-p', 'scale=100']);
  assert.is(notRun.out, [
    '0 of 7 stages changed between HEAD and now',
    'not in the cache now: score[model=l,lr=0.2]',
    '',
  ].join('\n'));
  assert.is(notRun.err, `1 stage(s) not computed yet: pausepipe run ${path.relative(process.cwd(), file)} -p scale=100\n`);
  await run(file);
  const expected = [
    'stage                  metric  HEAD  now  change',
    '---------------------  ------  ----  ---  ------',
    'score[model=l,lr=0.2]  value   40    7    -33',
    '1 of 8 stages changed between HEAD and now',
    '',
  ];
  assert.is((await pp(['diff', file, 'HEAD'])).out, expected.join('\n'));
  assert.is((await pp(['diff', file])).out, [
    'stage                  metric  before  now  change',
    '---------------------  ------  ------  ---  ------',
    'score[model=l,lr=0.2]  value   40      7    -33',
    '1 of 8 stages changed between before the last run and now',
    '',
  ].join('\n'));
  assert.is((await pp(['diff', file, 'HEAD', '--md'])).out, [
    '| stage | metric | HEAD | now | change |',
    '| --- | --- | --- | --- | --- |',
    '| score[model=l,lr=0.2] | value | 40 | 7 | -33 |',
    '',
    '1 of 8 stages changed between HEAD and now',
    '',
  ].join('\n'));
  const json = JSON.parse((await pp(['diff', file, 'HEAD', '--json'])).out) as { rows: unknown[] };
  assert.equal(json.rows, [{ name: 'score[model=l,lr=0.2]', metric: 'value', before: 40, now: 7, delta: -33 }]);
  const bad = await pp(['diff', file, 'no-such-rev']);
  assert.is(bad.code, 2);
  assert.match(bad.err, `pausepipe diff: unknown git revision \`no-such-rev\` in ${ws}`);
});

test('diff compares only the stages both sides have: variants one side lacks are listed below the table, and one dropped runs ago never comes back', async () => {
  const { ws, file } = await workspace(`
let scale = 1
for each k in [1, 2, 3] {
  stage m = count { counter: "count.txt", value: k * scale }
}
`);
  const git = (...args: string[]) => execa('git', ['-c', 'user.name=t', '-c', 'user.email=t@t', ...args], { cwd: ws });
  await git('init', '-q');
  await git('add', 'm.pipe');
  await git('commit', '-qm', 'three values');
  const source = await readFile(file, 'utf8');
  const withValues = (values: string) => writeFile(file, source.replace('[1, 2, 3]', values));
  await run(file);
  // The drop changes no key; the run after it must still start from two stages, not the three the state once saw.
  await withValues('[1, 2]');
  await run(file);
  await run(file, '-p', 'scale=5');
  assert.is((await pp(['diff', file, '-p', 'scale=5'])).out, [
    'stage   metric  before  now  change',
    '------  ------  ------  ---  ------',
    'm[k=1]  value   1       5    +4',
    'm[k=2]  value   2       10   +8',
    '2 of 2 stages changed between before the last run and now',
    '',
  ].join('\n'));
  assert.is((await pp(['diff', file])).out, '0 of 2 stages changed between before the last run and now\n');
  assert.is((await pp(['diff', file, 'HEAD'])).out, '0 of 2 stages changed between HEAD and now\nonly at HEAD: m[k=3]\n');
  const json = JSON.parse((await pp(['diff', file, 'HEAD', '-p', 'scale=5', '--json'])).out) as { rows: { name: string }[]; compared: number; onlyIn: unknown };
  // -p applies at HEAD too: m[k=1] and m[k=2] have the same keys on both sides.
  assert.equal(json.rows, []);
  assert.is(json.compared, 2);
  assert.equal(json.onlyIn, { before: ['m[k=3]'], now: [] });
  // A variant the last run itself dropped was in the pipeline it started from: listed, not compared.
  await withValues('[1]');
  await run(file, '-p', 'scale=7');
  assert.is((await pp(['diff', file, '-p', 'scale=7'])).out, [
    'stage   metric  before  now  change',
    '------  ------  ------  ---  ------',
    'm[k=1]  value   5       7    +2',
    '1 of 1 stage changed between before the last run and now',
    'only before the last run: m[k=2]',
    '',
  ].join('\n'));
  await withValues('[1, 4]');
  await run(file);
  assert.is((await pp(['diff', file, 'HEAD'])).out, '0 of 1 stage changed between HEAD and now\nonly at HEAD: m[k=2], m[k=3]\nonly now: m[k=4]\n');
});

test('diff at a revision reads an include git has no history of (outside the repository) from the disk', async () => {
  const shared = path.join(await tempWorkspace('pausepipe-shared-'), 'shared.pipe');
  await writeFile(shared, 'let base = 2\n');
  const { ws, file } = await workspace(`
include "${shared}"
let scale = 1
for each k in [1, 2] {
  stage m = count { counter: "count.txt", value: k * scale * base }
}
`);
  const git = (...args: string[]) => execa('git', ['-c', 'user.name=t', '-c', 'user.email=t@t', ...args], { cwd: ws });
  await git('init', '-q');
  await git('add', 'm.pipe');
  await git('commit', '-qm', 'with a shared include');
  await run(file);
  await writeFile(file, (await readFile(file, 'utf8')).replace('scale = 1', 'scale = 3'));
  await run(file);
  const r = await pp(['diff', file, 'HEAD']);
  assert.equal([r.code, r.err], [0, '']);
  assert.is(r.out, [
    'stage   metric  HEAD  now  change',
    '------  ------  ----  ---  ------',
    'm[k=1]  value   2     6    +4',
    'm[k=2]  value   4     12   +8',
    '2 of 2 stages changed between HEAD and now',
    '',
  ].join('\n'));
});

test('diff REV -p applies the overrides on both sides: only the edit since REV shows, not the override', async () => {
  const { ws, file } = await workspace(`
let scale = 1
let offset = 0
for each k in [1, 2] {
  stage m = count { counter: "count.txt", value: k * scale + offset }
}
`);
  const git = (...args: string[]) => execa('git', ['-c', 'user.name=t', '-c', 'user.email=t@t', ...args], { cwd: ws });
  await git('init', '-q');
  await git('add', 'm.pipe');
  await git('commit', '-qm', 'offset 0');
  await run(file, '-p', 'scale=10');
  await writeFile(file, (await readFile(file, 'utf8')).replace('offset = 0', 'offset = 1'));
  await run(file, '-p', 'scale=10');
  assert.is((await pp(['diff', file, 'HEAD', '-p', 'scale=10'])).out, [
    'stage   metric  HEAD  now  change',
    '------  ------  ----  ---  ------',
    'm[k=1]  value   10    11   +1',
    'm[k=2]  value   20    21   +1',
    '2 of 2 stages changed between HEAD and now',
    '',
  ].join('\n'));
  // A let the revision does not have yet: the pipeline there cannot take the override.
  await writeFile(file, (await readFile(file, 'utf8')).replace('let offset = 1', 'let offset = 1\nlet extra = 0'));
  const missing = await pp(['diff', file, 'HEAD', '-p', 'extra=1']);
  assert.is(missing.code, 2);
  assert.match(missing.err, 'the pipeline at HEAD does not load:');
  assert.match(missing.err, 'E_OVERRIDE');
});

test('diff before the last run: a variant that failed then was in the pipeline, not in the cache, not added since', async () => {
  const { ws, file } = await workspace(`
for each k in [1, 2, 3] {
  stage m = sh { command: ["sh", "-c", "test \${k} != 3 || test -e ok.txt || exit 1; echo '{\\"v\\": \${k}}' > $PAUSEPIPE_OUT/metrics.json"] }
}
`);
  assert.equal(await run(file, '--keep-going'), { 'm[k=1]': 'ran', 'm[k=2]': 'ran', 'm[k=3]': 'failed' });
  await writeFile(path.join(ws, 'ok.txt'), '');
  assert.equal(await run(file), { 'm[k=1]': 'cached', 'm[k=2]': 'cached', 'm[k=3]': 'ran' });
  assert.is((await pp(['diff', file])).out, [
    '0 of 2 stages changed between before the last run and now',
    'not in the cache before the last run: m[k=3]',
    '',
  ].join('\n'));
});

test('diff REV follows a pipeline file git sees renamed since, reading it and its includes under the old name', async () => {
  const { ws, file } = await workspace(`
include "common.pipe"
for each k in [1, 2] {
  stage m = count { counter: "count.txt", value: k * scale }
}
`);
  await writeFile(path.join(ws, 'common.pipe'), 'let scale = 1\n');
  const git = (...args: string[]) => execa('git', ['-c', 'user.name=t', '-c', 'user.email=t@t', ...args], { cwd: ws });
  await git('init', '-q');
  await git('add', '.');
  await git('commit', '-qm', 'm.pipe');
  await run(file);
  await mkdir(path.join(ws, 'exp'));
  await git('mv', 'm.pipe', 'exp/moved.pipe');
  const moved = path.join(ws, 'exp', 'moved.pipe');
  await writeFile(moved, (await readFile(moved, 'utf8')).replace('"common.pipe"', '"../common.pipe"'));
  await git('add', 'exp/moved.pipe');
  await writeFile(path.join(ws, 'common.pipe'), 'let scale = 2\n');
  await run(moved);
  assert.is((await pp(['diff', moved, 'HEAD'])).out, [
    'stage   metric  HEAD  now  change',
    '------  ------  ----  ---  ------',
    'm[k=1]  value   1     2    +1',
    'm[k=2]  value   2     4    +2',
    '2 of 2 stages changed between HEAD and now',
    `the pipeline at HEAD is ${path.relative(process.cwd(), file)}, renamed since`,
    '',
  ].join('\n'));
  const copy = path.join(ws, 'exp', 'copy.pipe');
  await writeFile(copy, await readFile(moved, 'utf8'));
  const untracked = await pp(['diff', copy, 'HEAD']);
  assert.is(untracked.code, 2);
  assert.match(untracked.err, `pausepipe diff: ${path.relative(process.cwd(), copy)} does not exist at HEAD, nor a file git sees renamed to it since`);
});

test('a run of some targets keeps the whole pipeline as what the next run starts from', async () => {
  const { file } = await workspace(`
let scale = 1
for each k in [1, 2] {
  stage m = count { counter: "count.txt", value: k * scale }
}
`);
  await run(file);
  await run(file, 'm[k=1]', '-p', 'scale=5');
  await run(file, '-p', 'scale=5');
  assert.is((await pp(['diff', file, '-p', 'scale=5'])).out, [
    'stage   metric  before  now  change',
    '------  ------  ------  ---  ------',
    'm[k=2]  value   2       10   +8',
    '1 of 2 stages changed between before the last run and now',
    '',
  ].join('\n'));
});

test('the backend a run uses is said once however many stages say it, also on a live terminal', async () => {
  const { file } = await workspace(`
for each i in [1, 2, 3] {
  stage fit = count { counter: "count.txt", value: i, notice: "backend: wasm (SIMD, 1 thread)" }
}
stage other = count { counter: "count.txt", notice: "backend fallback: webgpu backend unavailable: no GPU adapter found; using wasm" }
`);
  const r = await pp(['run', file, '--jobs', '1']);
  assert.is(r.code, 0, r.err);
  assert.equal(r.err.split('\n').filter((l) => l.startsWith('backend')), [
    'backend: wasm (SIMD, 1 thread)',
    'backend fallback: webgpu backend unavailable: no GPU adapter found; using wasm',
  ]);
  const { file: again } = await workspace(`stage fit = count { counter: "count.txt", notice: "backend: wasm (SIMD, 1 thread)" }\n`);
  const tty = await pp(['run', again], { tty: true });
  assert.ok(screen(tty.err).includes('backend: wasm (SIMD, 1 thread)'), tty.err);
});

test('Ctrl-C on a terminal: the "interrupting" line stays on the screen under the live block', async () => {
  const { ws, file } = await workspace(`stage hold = hold { pidfile: "hold.pid", until: "release" }\n`);
  const running = pp(['run', file], { tty: true });
  const until = Date.now() + 20000;
  while (!existsSync(path.join(ws, 'hold.pid'))) {
    if (Date.now() > until) throw new Error('the stage did not start');
    await new Promise((r) => setTimeout(r, 50));
  }
  process.emit('SIGINT');
  const r = await running;
  assert.is(r.code, 130);
  const shown = screen(r.err);
  assert.ok(shown.includes('interrupting: stopping running stages (Ctrl-C again to quit at once)'), shown.join('\n'));
  assert.ok(shown.includes('aborted hold: interrupted'), shown.join('\n'));
});

test('on a narrow terminal show continues the table below instead of letting lines wrap through numbers', async () => {
  const { file } = await workspace(`
for each lr in [0.1, 0.25] {
  stage fit = sh { command: ["sh", "-c", "echo '{\\"accuracy\\": 0.815, \\"accuracy_std\\": 0.388, \\"eval_loss\\": 0.99273}' > $PAUSEPIPE_OUT/metrics.json"], env: { LR: lr } }
}
`);
  await run(file);
  assert.is((await pp(['show', file], { stdoutColumns: 31 })).out, [
    'stage  lr    accuracy',
    '-----  ----  --------',
    'fit    0.1   0.815',
    'fit    0.25  0.815',
    '',
    'stage  lr    accuracy_std',
    '-----  ----  ------------',
    'fit    0.1   0.388',
    'fit    0.25  0.388',
    '',
    'stage  lr    eval_loss',
    '-----  ----  ---------',
    'fit    0.1   0.99273',
    'fit    0.25  0.99273',
    '',
  ].join('\n'));
  assert.is((await pp(['show', file])).out.split('\n')[0], 'stage  lr    accuracy  accuracy_std  eval_loss');
});

test('--version, "did you mean" for a mistyped command, kinds NAME, and --cache-dir accepted by every command', async () => {
  assert.equal(await pp(['--version']), { code: 0, out: `pausepipe ${PAUSEPIPE_VERSION}\n`, err: '' });
  const typo = await pp(['rnu', 'x.pipe']);
  assert.is(typo.code, 2);
  assert.is(typo.err.split('\n')[0], 'pausepipe: unknown command `rnu`; did you mean `run`?');
  const one = await pp(['kinds', 'count']);
  assert.is(one.out.split('\n')[0], 'count (version 1)');
  assert.not.match(one.out, 'hold (version');
  assert.match((await pp(['kinds', 'sh', '--md'])).out, '## `sh` (version 1)');
  const unknown = await pp(['kinds', 'conut']);
  assert.is(unknown.code, 2);
  assert.match(unknown.err, 'pausepipe kinds: no stage kind `conut`; did you mean `count`?');
  const { ws, file } = await workspace();
  const cache = path.join(ws, 'elsewhere');
  for (const args of [['run', file], ['plan', file], ['show', file], ['dag', file], ['check', file], ['kinds'], ['diff', file], ['verify', file], ['gc', file]]) {
    const r = await pp([...args, '--cache-dir', cache]);
    assert.not.match(r.err, 'unknown option', args.join(' '));
  }
  assert.ok(existsSync(path.join(cache, 'objects')));
  assert.is(existsSync(path.join(ws, '.pausepipe')), false);
});

test.run();

// `pausepipe watch` as a person uses it: the real process, files edited, made and deleted under it, Ctrl-C.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { existsSync, readFileSync } from 'node:fs';
import { mkdir, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { cli, tempWorkspace } from '../helpers/runner.ts';
import { alive, killSpawned, spawnBin, waitFor } from '../helpers/processes.ts';

test.after(killSpawned);

async function lines(file: string): Promise<string[]> {
  return (await readFile(file, 'utf8').catch(() => '')).split('\n').filter(Boolean);
}

test('watch re-runs only the stage whose file changed, and says why', async () => {
  const ws = await tempWorkspace('pausepipe-watch-');
  const file = path.join(ws, 'w.pipe');
  await writeFile(path.join(ws, 'a.txt'), 'a1');
  await writeFile(path.join(ws, 'b.txt'), 'b1');
  await writeFile(file, `
stage a = sh { command: "echo a >> count.txt", shell: true, deps: ["a.txt"] }
stage b = sh { command: "echo b >> count.txt", shell: true, deps: ["b.txt"] }
`);
  const watch = spawnBin(['watch', file], ws);
  const watching = () => watch.output().split('\n').filter((l) => l.startsWith('watching ')).length;
  await waitFor('the first run', () => watching() === 1);
  assert.equal((await lines(path.join(ws, 'count.txt'))).sort(), ['a', 'b']);
  await writeFile(path.join(ws, 'b.txt'), 'b2');
  await waitFor('the re-run', () => watching() === 2);
  assert.equal(await lines(path.join(ws, 'count.txt')).then((l) => l.slice(2)), ['b']);
  assert.match(watch.output(), 'changed: b.txt');
  // Why it re-runs, as `plan` would say it.
  assert.match(watch.output(), 'changed: b.txt\nstale  b: file b.txt changed\n');
  watch.proc.kill('SIGINT');
  assert.is((await watch.proc).exitCode, 130);
});

test('watch keeps seeing a declared file that is deleted and made again, and one whose folder is made later', async () => {
  const ws = await tempWorkspace('pausepipe-watch-');
  const file = path.join(ws, 'w.pipe');
  await writeFile(file, 'stage a = sh { command: "cat data/in.txt >> count.txt", shell: true, deps: ["data/in.txt"] }\n');
  const watch = spawnBin(['watch', file], ws);
  const watching = () => watch.output().split('\n').filter((l) => l.startsWith('watching ')).length;
  await waitFor('the first run (its file missing)', () => watching() === 1);
  assert.match(watch.output(), 'data/in.txt');
  await mkdir(path.join(ws, 'data'));
  await writeFile(path.join(ws, 'data', 'in.txt'), 'x\n');
  await waitFor('the run once the file exists', () => existsSync(path.join(ws, 'count.txt')));
  await waitFor('the watch after it', () => watching() === 2);
  await rm(path.join(ws, 'data', 'in.txt'));
  await waitFor('the run once the file is gone', () => watching() === 3);
  await writeFile(path.join(ws, 'data', 'in.txt'), 'y\n');
  await waitFor('the run once the file is back', () => watching() === 4);
  assert.equal(await lines(path.join(ws, 'count.txt')), ['x', 'y']);
  watch.proc.kill('SIGINT');
  assert.is((await watch.proc).exitCode, 130);
  assert.not.match(watch.output().split('stopping')[1] ?? '', 'watching', 'nothing is said to be watched after stopping');
});

test('watch started on an include with an error runs once the include is fixed', async () => {
  const ws = await tempWorkspace('pausepipe-watch-');
  const file = path.join(ws, 'w.pipe');
  await writeFile(path.join(ws, 'common.pipe'), 'let word = \n');
  await writeFile(file, 'include "common.pipe"\nstage a = sh { command: "echo ${word} >> count.txt", shell: true }\n');
  const watch = spawnBin(['watch', file], ws);
  await waitFor('the error', () => watch.output().includes('waiting for a change'));
  assert.match(watch.output(), 'common.pipe');
  await writeFile(path.join(ws, 'common.pipe'), 'let word = "fixed"\n');
  await waitFor('the run', () => watch.output().includes('watching '));
  assert.equal(await lines(path.join(ws, 'count.txt')), ['fixed']);
  watch.proc.kill('SIGINT');
  assert.is((await watch.proc).exitCode, 130);
});

test('watch started on an include missing with its folder runs once both are made', async () => {
  const ws = await tempWorkspace('pausepipe-watch-');
  const file = path.join(ws, 'w.pipe');
  await writeFile(file, 'include "sub/extra.pipe"\nstage a = sh { command: "echo ${word} >> count.txt", shell: true }\n');
  const watch = spawnBin(['watch', file], ws);
  await waitFor('the error', () => watch.output().includes('waiting for a change'));
  assert.match(watch.output(), 'E_INCLUDE_NOT_FOUND');
  await mkdir(path.join(ws, 'sub'));
  await writeFile(path.join(ws, 'sub', 'extra.pipe'), 'let word = "made"\n');
  await waitFor('the run', () => watch.output().includes('watching '));
  assert.match(watch.output(), 'changed: sub/extra.pipe\n', watch.output());
  assert.equal(await lines(path.join(ws, 'count.txt')), ['made']);
  watch.proc.kill('SIGINT');
  assert.is((await watch.proc).exitCode, 130);
});

test('watch re-runs a stage whose declared folder changes anywhere inside, and not for a .git folder in it', async () => {
  const ws = await tempWorkspace('pausepipe-watch-');
  const file = path.join(ws, 'w.pipe');
  await mkdir(path.join(ws, 'data', 'nested'), { recursive: true });
  await writeFile(path.join(ws, 'data', 'nested', 'in.txt'), 'x\n');
  await writeFile(file, 'stage a = sh { command: "cat data/nested/in.txt >> count.txt", shell: true, deps: ["data"] }\n');
  const watch = spawnBin(['watch', file], ws);
  const watching = () => watch.output().split('\n').filter((l) => l.startsWith('watching ')).length;
  await waitFor('the first run', () => watching() === 1);
  await mkdir(path.join(ws, 'data', '.git'));
  await writeFile(path.join(ws, 'data', '.git', 'HEAD'), 'ref\n');
  await writeFile(path.join(ws, 'data', 'nested', 'in.txt'), 'y\n');
  await waitFor('the re-run', () => watching() === 2);
  assert.match(watch.output(), 'changed: data/nested/in.txt\nstale  a: file data changed\n', watch.output());
  assert.equal(await lines(path.join(ws, 'count.txt')), ['x', 'y']);
  watch.proc.kill('SIGINT');
  assert.is((await watch.proc).exitCode, 130);
});

test('watch does not re-plan when a stage writes its out folder, where a downstream stage reads a declared file', async () => {
  const ws = await tempWorkspace('pausepipe-watch-');
  const file = path.join(ws, 'w.pipe');
  await writeFile(path.join(ws, 'a.txt'), 'a1\n');
  await writeFile(file, `
stage gen = sh { command: "mkdir -p gen && cat a.txt > gen/x.txt", shell: true, deps: ["a.txt"], outs: ["gen"] }
stage use = sh(g: gen) { command: "cat gen/x.txt >> count.txt", shell: true, deps: ["gen/x.txt"] }
`);
  const watch = spawnBin(['watch', file], ws);
  const watching = () => watch.output().split('\n').filter((l) => l.startsWith('watching ')).length;
  await waitFor('the first run', () => watching() === 1);
  await writeFile(path.join(ws, 'a.txt'), 'a2\n');
  await waitFor('the run after the edit', () => watch.output().includes('changed: a.txt') && watching() === 2);
  assert.equal(watch.output().split('\n').filter((l) => l.startsWith('changed: ')), ['changed: a.txt'], watch.output());
  assert.equal(await lines(path.join(ws, 'count.txt')), ['a1', 'a2']);
  watch.proc.kill('SIGINT');
  assert.is((await watch.proc).exitCode, 130);
});

test('watch of a stage that reads the whole workspace, with the cache in it, runs once per edit', async () => {
  const ws = await tempWorkspace('pausepipe-watch-');
  const file = path.join(ws, 'w.pipe');
  await writeFile(path.join(ws, 'a.txt'), 'a1\n');
  await writeFile(file, 'stage all = sh { command: "cat a.txt > $PAUSEPIPE_OUT/a.txt", shell: true, deps: ["."] }\n');
  const watch = spawnBin(['watch', file, '--cache-dir', 'cache'], ws);
  const watching = () => watch.output().split('\n').filter((l) => l.startsWith('watching ')).length;
  await waitFor('the first run', () => watching() === 1);
  await writeFile(path.join(ws, 'a.txt'), 'a2\n');
  await waitFor('the run after the edit', () => watch.output().includes('changed: a.txt') && watching() === 2);
  assert.equal(watch.output().split('\n').filter((l) => l.startsWith('changed: ')), ['changed: a.txt'], watch.output());
  assert.match(watch.output(), 'changed: a.txt\nstale  all: file . changed\n');
  watch.proc.kill('SIGINT');
  assert.is((await watch.proc).exitCode, 130);
});

test('an edit during a run stops the stages it replaces at once, lets the others finish, then runs the new plan', async () => {
  const ws = await tempWorkspace('pausepipe-watch-');
  const file = path.join(ws, 'w.pipe');
  const pipe = (word: string) => `
stage held = hold { pidfile: "${word}.pid", until: "release" }
for each v in ["x"] {
  stage other = hold { pidfile: "other.pid", until: "release-other" }
}
stage after = count(up: held) { counter: "count.txt" }
`;
  await writeFile(file, pipe('one'));
  const watch = spawnBin(['watch', file, '--jobs', '2'], ws);
  await waitFor('both stages to start', () => existsSync(path.join(ws, 'one.pid')) && existsSync(path.join(ws, 'other.pid')));
  const replaced = Number(readFileSync(path.join(ws, 'one.pid'), 'utf8'));
  await writeFile(file, pipe('two'));
  await waitFor('the replaced stage to stop', () => watch.output().includes('aborted held'));
  assert.match(watch.output(), 'changed during the run: w.pipe; stopping held, after, which it replaces: the rest of the run goes on, then the new plan runs\n');
  assert.match(watch.output(), 'aborted held: replaced by the change to w.pipe');
  assert.match(watch.output(), 'skipped after: replaced by the change to w.pipe');
  await waitFor('its worker to end', () => !alive(replaced));
  assert.not.match(watch.output(), /(aborted|skipped|done) +other/, 'the stage the edit left alone goes on');
  await writeFile(path.join(ws, 'release-other'), '');
  await waitFor('the new plan to start', () => existsSync(path.join(ws, 'two.pid')));
  // No results table for the replaced run: it would be read as the new pipeline's.
  assert.match(watch.output(), /\nran 1, cached 0, skipped 1, interrupted 1 in [^\n]+\nwatching 1 file\(s\) \(Ctrl-C to stop\)\nchanged: w.pipe\n/);
  assert.match(watch.output(), 'watching 1 file(s) (Ctrl-C to stop)\nchanged: w.pipe\nstale  held: param pidfile: "one.pid" → "two.pid"\nstale  after: new stage\n', watch.output());
  await writeFile(path.join(ws, 'release'), '');
  await waitFor('the new plan to end', () => watch.output().split('\n').filter((l) => l.startsWith('watching ')).length === 2);
  const counted = await lines(path.join(ws, 'count.txt'));
  // The first two started at once, in either order.
  assert.equal([...counted.slice(0, 2).sort(), ...counted.slice(2)], ['held', 'other[v=x]', 'held', 'after']);
  assert.match(watch.output(), /stage +v +released\n[- ]+\nother +x +true\n/, 'the new plan\'s run shows its table');
  watch.proc.kill('SIGINT');
  assert.is((await watch.proc).exitCode, 130);
});

test('stages an edit adds during a run join it: they start once their inputs are done and a slot is free, and the summary counts them', async () => {
  const ws = await tempWorkspace('pausepipe-watch-');
  const file = path.join(ws, 'w.pipe');
  const pipe = (values: string) => `
stage held = hold { pidfile: "held.pid", until: "release" }
for each v in [${values}] {
  stage c = count { counter: "count.txt", value: v }
  stage d = count(up: held) { counter: "count.txt", value: v }
}
`;
  await writeFile(file, pipe('1'));
  const watch = spawnBin(['watch', file, '--jobs', '2'], ws);
  await waitFor('the first stages to run', () => existsSync(path.join(ws, 'held.pid')) && watch.output().includes('done    c[v=1]'));
  await writeFile(file, pipe('1, 2'));
  await waitFor('the new variant to run', () => watch.output().includes('done    c[v=2]'));
  assert.match(watch.output(), 'changed during the run: w.pipe; adding c[v=2], d[v=2] to the run: the run goes on, then the new plan runs\n', watch.output());
  // While held still holds: the new stage that reads it waits for it.
  assert.equal((await lines(path.join(ws, 'count.txt'))).sort(), ['c[v=1]', 'c[v=2]', 'held']);
  await writeFile(path.join(ws, 'release'), '');
  await waitFor('the run to end', () => watch.output().includes('up to date'));
  assert.equal((await lines(path.join(ws, 'count.txt'))).slice(3).sort(), ['d[v=1]', 'd[v=2]']);
  // The results table has the rows of the stages that joined.
  assert.match(watch.output(), /\nran 5, cached 0 in [^\n]+\n\nstage +v +value\n[- ]+\nc +1 +1\nc +2 +2\n\nstage +v +value\n[- ]+\nd +1 +1\nd +2 +2\n/);
  assert.match(watch.output(), 'watching 1 file(s) (Ctrl-C to stop)\nchanged: w.pipe\nup to date (5 fresh)\n');
  watch.proc.kill('SIGINT');
  assert.is((await watch.proc).exitCode, 130);
});

test('a stage of a plugin kind the run did not use joins it; a kind no plugin has is an error and the run goes on', async () => {
  const ws = await tempWorkspace('pausepipe-watch-');
  const file = path.join(ws, 'w.pipe');
  // `hold` and `count` are both kinds of the PAUSEPIPE_KINDS plugin (tests/runtime/fixtures/test-kinds.ts); the run
  // starts with `hold` alone.
  const held = 'stage held = hold { pidfile: "held.pid", until: "release" }\n';
  await writeFile(file, held);
  const watch = spawnBin(['watch', file], ws);
  await waitFor('the run to start', () => existsSync(path.join(ws, 'held.pid')));
  await writeFile(file, `${held}stage c = count { counter: "count.txt", value: 1 }\n`);
  await waitFor('the new stage to run', () => watch.output().includes('done    c'));
  assert.match(watch.output(), 'changed during the run: w.pipe; adding c to the run: the run goes on, then the new plan runs\n');
  // It ran while held still holds.
  assert.equal((await lines(path.join(ws, 'count.txt'))).sort(), ['c', 'held']);
  await writeFile(file, `${held}stage c = count { counter: "count.txt", value: 1 }\nstage x = no_such_kind {}\n`);
  await waitFor('the review of the unknown kind', () => watch.output().includes('the pipeline has errors: the run goes on'));
  assert.match(watch.output(), 'unknown stage kind `no_such_kind`');
  assert.match(watch.output(), 'changed during the run: w.pipe; the pipeline has errors: the run goes on\n');
  await writeFile(path.join(ws, 'release'), '');
  await waitFor('the run to end', () => watch.output().includes('the pipeline has errors; waiting for a change'));
  assert.match(watch.output(), /\nran 2, cached 0 in /);
  watch.proc.kill('SIGINT');
  assert.is((await watch.proc).exitCode, 130);
});

test('an edit during a run that has errors, or replaces nothing, is said and the run goes on', async () => {
  const ws = await tempWorkspace('pausepipe-watch-');
  const file = path.join(ws, 'w.pipe');
  const held = 'stage held = hold { pidfile: "held.pid", until: "release" }\n';
  await writeFile(file, held);
  const watch = spawnBin(['watch', file], ws);
  await waitFor('the stage to start', () => existsSync(path.join(ws, 'held.pid')));
  await writeFile(file, `${held}stage broken = \n`);
  await waitFor('the errors', () => watch.output().includes('the run goes on'));
  assert.match(watch.output(), 'w.pipe:3:1: error[E_PARSE]: expected a name, found the end of the file');
  assert.match(watch.output(), 'changed during the run: w.pipe; the pipeline has errors: the run goes on\n');
  await writeFile(file, `# a comment\n${held}`);
  await waitFor('the second review', () => watch.output().includes('replaces none'));
  assert.match(watch.output(), 'changed during the run: w.pipe; it replaces none of the stages still to finish: the run goes on, then the new plan runs\n');
  await writeFile(path.join(ws, 'release'), '');
  await waitFor('the plan after the run', () => watch.output().includes('up to date'));
  assert.match(watch.output(), 'done    held');
  assert.match(watch.output(), 'watching 1 file(s) (Ctrl-C to stop)\nchanged: w.pipe\nup to date (1 fresh)\n');
  watch.proc.kill('SIGINT');
  assert.is((await watch.proc).exitCode, 130);
});

test('a stage that failed is not tried again at an unrelated change, which says so once; a change to it tries it again', async () => {
  const ws = await tempWorkspace('pausepipe-watch-');
  const file = path.join(ws, 'w.pipe');
  await writeFile(path.join(ws, 'title.txt'), 'one\n');
  const pipe = (code: number) => `
stage train = sh { command: "echo train >> count.txt; exit ${code}", shell: true }
stage report = sh(t: train) { command: "cat title.txt >> count.txt", shell: true, deps: ["title.txt"] }
stage title = sh { command: "cat title.txt >> count.txt", shell: true, deps: ["title.txt"] }
`;
  await writeFile(file, pipe(3));
  const watch = spawnBin(['watch', file, '--keep-going'], ws);
  const watching = () => watch.output().split('\n').filter((l) => l.startsWith('watching ')).length;
  await waitFor('the first run', () => watching() === 1);
  assert.match(watch.output(), 'failed train: command failed with exit code 3');
  await writeFile(path.join(ws, 'title.txt'), 'two\n');
  await waitFor('the run after the edit', () => watching() === 2);
  assert.match(watch.output(), [
    'changed: title.txt',
    'stale  title: file title.txt changed',
    'not retried: train failed last run (command failed with exit code 3); change it or its inputs, or run `pausepipe run w.pipe`',
    'waiting for it: report',
  ].join('\n'));
  assert.match(watch.output(), /\nran 1, cached 0 in [^\n]+\nwatching 2 file\(s\) \(Ctrl-C to stop\)\n$/);
  assert.equal((await lines(path.join(ws, 'count.txt'))).sort(), ['one', 'train', 'two']);
  // Its key changes: it runs, and what waited for it.
  await writeFile(file, pipe(0));
  await waitFor('the run after the fix', () => watching() === 3);
  assert.match(watch.output(), 'changed: w.pipe\nstale  train: param command: "echo train >> count.txt; exit 3" → "echo train >> count.txt; exit 0"\nstale  report: new stage\n');
  assert.equal((await lines(path.join(ws, 'count.txt'))).slice(3), ['train', 'two']);
  assert.equal(watch.output().split('\n').filter((l) => l.startsWith('not retried')).length, 1, 'said once');
  watch.proc.kill('SIGINT');
  assert.is((await watch.proc).exitCode, 130);
});

test('a failure of an earlier run is held back when watch starts; r and Enter tries it again, and what waits for it', async () => {
  const ws = await tempWorkspace('pausepipe-watch-');
  const file = path.join(ws, 'w.pipe');
  // It fails until the disk has room again: the file `room` is no input of it, so only a retry runs it again.
  await writeFile(file, `
stage train = sh { command: "echo train >> count.txt; [ -f room ]", shell: true }
stage report = sh(t: train) { command: "echo report >> count.txt", shell: true }
`);
  const ran = await cli(['run', file], ws);
  assert.is(ran.exitCode, 1);
  const watch = spawnBin(['watch', file], ws, 'pipe');
  const watching = () => watch.output().split('\n').filter((l) => l.startsWith('watching ')).length;
  await waitFor('the start', () => watching() === 1);
  assert.is(watch.output(), [
    'not retried: train failed last run (command failed with exit code 1); change it or its inputs, type r and Enter to retry, or run `pausepipe run w.pipe`',
    'waiting for it: report',
    'watching 1 file(s) (Ctrl-C to stop)',
    '',
  ].join('\n'));
  assert.equal(await lines(path.join(ws, 'count.txt')), ['train'], 'not run again at the start');
  await writeFile(path.join(ws, 'room'), '');
  watch.proc.stdin!.write('r\n');
  await waitFor('the retry', () => watching() === 2);
  assert.match(watch.output(), 'watching 1 file(s) (Ctrl-C to stop)\nretrying: train\nstale  train: ');
  assert.match(watch.output(), /\nran 2, cached 0 in [^\n]+\nwatching 1 file\(s\) \(Ctrl-C to stop\)\n$/);
  assert.equal(await lines(path.join(ws, 'count.txt')), ['train', 'train', 'report']);
  // Nothing failed now: another r plans and finds it all done.
  watch.proc.stdin!.write('r\n');
  await waitFor('the second retry', () => watching() === 3);
  assert.match(watch.output(), /\nretrying: no stage failed last run\nup to date \(2 fresh\)\nwatching 1 file\(s\) \(Ctrl-C to stop\)\n$/);
  watch.proc.kill('SIGINT');
  assert.is((await watch.proc).exitCode, 130);
});

test('r and Enter during a run retries once the run ends', async () => {
  const ws = await tempWorkspace('pausepipe-watch-');
  const file = path.join(ws, 'w.pipe');
  const train = 'stage train = sh { command: "echo train >> count.txt; [ -f room ]", shell: true }\n';
  await writeFile(file, train);
  assert.is((await cli(['run', file], ws)).exitCode, 1);
  await writeFile(file, `${train}stage held = hold { pidfile: "held.pid", until: "release" }\n`);
  const watch = spawnBin(['watch', file], ws, 'pipe');
  await waitFor('the run to start', () => existsSync(path.join(ws, 'held.pid')));
  await writeFile(path.join(ws, 'room'), '');
  watch.proc.stdin!.write('r\n');
  await waitFor('the retry to be said', () => watch.output().includes('retrying the failed stages once the run ends'));
  assert.equal(await lines(path.join(ws, 'count.txt')), ['train', 'held'], 'not during the run');
  await writeFile(path.join(ws, 'release'), '');
  await waitFor('the retry', () => watch.output().split('\n').filter((l) => l.startsWith('watching ')).length === 2);
  assert.match(watch.output(), /\nwatching 1 file\(s\) \(Ctrl-C to stop\)\nretrying: train\nstale  train: [^\n]+\n/);
  assert.equal(await lines(path.join(ws, 'count.txt')), ['train', 'held', 'train']);
  watch.proc.kill('SIGINT');
  assert.is((await watch.proc).exitCode, 130);
});

test('under --keep-going an edit of the report with a variant held back writes the report again, partial, without retrying it', async () => {
  const ws = await tempWorkspace('pausepipe-watch-');
  const file = path.join(ws, 'w.pipe');
  const metrics = (lr: string) => `printf '{"accuracy":0.${lr},"accuracy_std":0.5,"n":10,"eval_loss":null,"avg_pauses":0,"predictions":"p.json","model":{"stage":"train","key":"k"},"training":null}' > $PAUSEPIPE_OUT/metrics.json`;
  const pipe = (title: string) => `
for each lr in [1, 2] {
  stage train = sh { command: "echo train \${lr} >> count.txt; [ \${lr} = 1 ]", shell: true }
  stage eval = sh(model: train) { command: ${JSON.stringify(metrics('${lr}'))}, shell: true }
}
stage table = report(runs: eval[*]) { title: "${title}" }
`;
  await writeFile(file, pipe('One'));
  const watch = spawnBin(['watch', file, '--keep-going'], ws);
  const watching = () => watch.output().split('\n').filter((l) => l.startsWith('watching ')).length;
  await waitFor('the first run', () => watching() === 1);
  assert.match(watch.output(), 'done    table');
  await writeFile(file, pipe('Two'));
  await waitFor('the run after the edit', () => watching() === 2);
  const after = watch.output().slice(watch.output().indexOf('changed: w.pipe'));
  assert.match(after, [
    'not retried: train[lr=2] failed last run (command failed with exit code 1); change it or its inputs, or run `pausepipe run w.pipe`',
    'waiting for it: eval[lr=2]',
  ].join('\n'));
  assert.match(after, 'table is partial: 1 of 2 inputs missing (eval[lr=2] skipped: upstream train[lr=2] failed)');
  assert.match(after, /\nran 1, cached 2, failed 1, skipped 1 in /);
  // Its failure is said once, in the `not retried` line, not again at the run's end.
  assert.not.match(after, 'failed train[lr=2]:');
  // Each variant trained once (the two at once, in either order), the held one not again.
  assert.equal((await lines(path.join(ws, 'count.txt'))).sort(), ['train 1', 'train 2']);
  const md = (await readdir(path.join(ws, '.pausepipe', 'objects'), { recursive: true })).filter((f) => f.endsWith('report.md'));
  const titles = await Promise.all(md.map(async (f) => (await readFile(path.join(ws, '.pausepipe', 'objects', f), 'utf8')).split('\n')[0]));
  assert.equal(titles.sort(), ['# One', '# Two']);
  watch.proc.kill('SIGINT');
  assert.is((await watch.proc).exitCode, 130);
});

test('SIGTERM during a watched run stops its stages as `run` does, says so, and leaves the cache clean', async () => {
  const ws = await tempWorkspace('pausepipe-watch-');
  const file = path.join(ws, 'w.pipe');
  await writeFile(file, 'stage held = hold { pidfile: "held.pid", until: "release" }\n');
  const watch = spawnBin(['watch', file], ws);
  await waitFor('the stage to start', () => existsSync(path.join(ws, 'held.pid')));
  const worker = Number(readFileSync(path.join(ws, 'held.pid'), 'utf8'));
  watch.proc.kill('SIGTERM');
  assert.is((await watch.proc).exitCode, 143);
  assert.match(watch.output(), 'interrupting (SIGTERM): stopping running stages (Ctrl-C again to quit at once)\naborted held: interrupted');
  assert.not.ok(alive(worker));
  const cache = path.join(ws, '.pausepipe');
  assert.equal([...await readdir(path.join(cache, 'locks')), ...await readdir(path.join(cache, 'tmp')), ...await readdir(path.join(cache, 'uses'))], []);
});

test.run();

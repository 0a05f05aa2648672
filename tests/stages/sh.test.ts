// The `sh` stage kind: commands, environment, outs, metrics, progress lines, failures and restoring outs.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { existsSync } from 'node:fs';
import { chmod, mkdir, mkdtemp, readdir, readFile, rm, stat, symlink, writeFile } from 'node:fs/promises';
import os, { hostname } from 'node:os';
import path from 'node:path';
import { digestFile, FileHasher, FileMissingError } from '../../cache/file-hash.ts';
import { sha256 } from '../../runtime/hash.ts';
import { deadPid } from '../cache/fixtures.ts';
import type { ArtifactRef, Progress, StageContext } from '../../stages/kind.ts';
import { inputEnvName, SH, type ShParams } from '../../stages/sh.ts';
import { tempWorkspace } from '../helpers/runner.ts';

const NODE = process.execPath;

interface Made {
  ctx: StageContext<ShParams>;
  logs: string[];
  progress: Progress[];
}

async function context(params: Partial<ShParams>, inputs: Record<string, ArtifactRef[]> = {}): Promise<Made> {
  const workspace = await tempWorkspace('pausepipe-sh-');
  const outDir = path.join(workspace, '.out');
  await mkdir(outDir);
  const logs: string[] = [];
  const progress: Progress[] = [];
  const ctx: StageContext<ShParams> = {
    name: 'step[a=1]', key: 'k'.repeat(8), variant: { a: 1 }, inputs, outDir,
    scratchDir: path.join(workspace, '.scratch'), workspace,
    params: { command: ['true'], shell: false, deps: [], outs: [], env: {}, cwd: '.', cpus: 1, gpus: 0, ...params },
    log: (l) => logs.push(l), progress: (p) => progress.push(p), signal: new AbortController().signal,
  };
  return { ctx, logs, progress };
}

test('an argument list runs without a shell, sees PAUSEPIPE_OUT and its env, and metrics.json becomes the metrics', async () => {
  const script = `const fs=require('fs');fs.writeFileSync(process.env.PAUSEPIPE_OUT+'/metrics.json',JSON.stringify({acc:0.5,tag:process.env.TAG}));console.log('stage '+process.env.PAUSEPIPE_STAGE+' $HOME')`;
  const { ctx, logs } = await context({ command: [NODE, '-e', script], env: { TAG: 'x' } });
  const result = await SH.run(ctx);
  assert.equal(result, { metrics: { acc: 0.5, tag: 'x' } });
  assert.ok(logs.includes('stage step[a=1] $HOME'), logs.join('\n'));
});

test('an empty or cut metrics.json (a full disk) fails naming the file; one that is no object says so', async () => {
  const reason = async (content: string) => {
    const { ctx } = await context({ command: ['sh', '-c', `printf '%s' '${content}' > "$PAUSEPIPE_OUT/metrics.json"`] });
    return SH.run(ctx).then(() => 'ran', (e: Error) => e.message);
  };
  assert.equal(await Promise.all(['', '{"acc": 0.', '[1]'].map(reason)), [
    'sh: $PAUSEPIPE_OUT/metrics.json is not valid JSON (Unexpected end of JSON input)',
    'sh: $PAUSEPIPE_OUT/metrics.json is not valid JSON (Unterminated fractional number in JSON at position 10)',
    'sh: $PAUSEPIPE_OUT/metrics.json must hold a JSON object',
  ]);
});

test('a string command needs shell: true', async () => {
  const { ctx } = await context({ command: 'echo hi' });
  try {
    await SH.run(ctx);
    assert.unreachable('should have thrown');
  } catch (e) {
    assert.is((e as Error).message, 'sh: `command` is a string but `shell` is false; give an argument list, or set `shell: true`');
  }
});

test('with shell: true the string runs in the shell (pipes work)', async () => {
  const { ctx, logs } = await context({ command: 'echo one two | wc -w', shell: true });
  await SH.run(ctx);
  assert.is(logs.at(-1)?.trim(), '2');
});

test('a non-zero exit fails the stage with the exit code, and its output is in the log', async () => {
  const { ctx, logs } = await context({ command: [NODE, '-e', "console.error('bad thing');process.exit(3)"] });
  try {
    await SH.run(ctx);
    assert.unreachable('should have thrown');
  } catch (e) {
    assert.is((e as Error).message, 'command failed with exit code 3');
  }
  assert.ok(logs.includes('bad thing'));
});

test('a program that does not exist is named', async () => {
  const { ctx } = await context({ command: ['no-such-program-pausepipe', '--flag'] });
  try {
    await SH.run(ctx);
    assert.unreachable('should have thrown');
  } catch (e) {
    assert.is((e as Error).message, 'sh: program not found: no-such-program-pausepipe (a shell command line needs `shell: true`)');
  }
});

test('pausepipe:progress lines become progress reports, not log lines', async () => {
  const { ctx, logs, progress } = await context({
    command: [NODE, '-e', "console.log('pausepipe:progress 3/10 loss 1.5');console.log('pausepipe:progress 4')"],
  });
  await SH.run(ctx);
  assert.equal(progress, [{ step: 3, total: 10, message: 'loss 1.5' }, { step: 4, total: undefined, message: undefined }]);
  assert.not.ok(logs.some((l) => l.startsWith('pausepipe:progress')));
});

test('outs are copied under outs/ in the artifacts; a missing out fails the stage', async () => {
  const write = "const fs=require('fs');fs.mkdirSync('res/sub',{recursive:true});fs.writeFileSync('res/sub/a.txt','A');fs.writeFileSync('one.txt','1')";
  const { ctx } = await context({ command: [NODE, '-e', write], outs: ['res', 'one.txt'] });
  await SH.run(ctx);
  assert.is(await readFile(path.join(ctx.outDir, 'outs/res/sub/a.txt'), 'utf8'), 'A');
  assert.is(await readFile(path.join(ctx.outDir, 'outs/one.txt'), 'utf8'), '1');

  const missing = await context({ command: ['true'], outs: ['never.txt'] });
  try {
    await SH.run(missing.ctx);
    assert.unreachable('should have thrown');
  } catch (e) {
    assert.is((e as Error).message, 'sh: the command did not write its out `never.txt`');
  }
});

test('an earlier out is out of the command\'s sight while it runs, and comes back when the command does not replace it', async () => {
  const { ctx } = await context({ command: [NODE, '-e', "process.exit(require('fs').existsSync('old.txt')?5:0)"], outs: ['old.txt'] });
  await writeFile(path.join(ctx.workspace, 'old.txt'), 'stale');
  try {
    await SH.run(ctx);
    assert.unreachable('the out is not rewritten, so the stage must fail');
  } catch (e) {
    assert.is((e as Error).message, 'sh: the command did not write its out `old.txt`');
  }
  assert.is(await readFile(path.join(ctx.workspace, 'old.txt'), 'utf8'), 'stale');
  assert.is(existsSync(path.join(ctx.workspace, 'old.txt.pausepipe-previous')), false);
});

test('a failing command loses nothing: what it half wrote goes and the earlier out comes back; a success replaces it', async () => {
  const write = (content: string, code: number) => [NODE, '-e', `require('fs').writeFileSync('data.csv',${JSON.stringify(content)});process.exit(${code})`];
  const failing = await context({ command: write('half', 3), outs: ['data.csv'] });
  await writeFile(path.join(failing.ctx.workspace, 'data.csv'), 'the raw data');
  try {
    await SH.run(failing.ctx);
    assert.unreachable('exit 3 fails');
  } catch (e) {
    assert.is((e as Error).message, 'command failed with exit code 3');
  }
  assert.is(await readFile(path.join(failing.ctx.workspace, 'data.csv'), 'utf8'), 'the raw data');
  const working = { ...failing.ctx, params: { ...failing.ctx.params, command: write('new', 0) } };
  await SH.run(working);
  assert.is(await readFile(path.join(failing.ctx.workspace, 'data.csv'), 'utf8'), 'new');
  assert.is(existsSync(path.join(failing.ctx.workspace, 'data.csv.pausepipe-previous')), false);
});

test('an out set aside by a killed run is put back before the next run sets it aside again', async () => {
  const { ctx } = await context({ command: ['false'], outs: ['model.bin'] });
  await writeFile(path.join(ctx.workspace, 'model.bin.pausepipe-previous'), 'last good');
  await SH.run(ctx).catch(() => undefined);
  assert.is(await readFile(path.join(ctx.workspace, 'model.bin'), 'utf8'), 'last good');
  assert.is(existsSync(path.join(ctx.workspace, 'model.bin.pausepipe-previous')), false);
});

test('beside a copy set aside by a killed run, the out is that run\'s half-written one: the copy is kept, the out goes', async () => {
  const { ctx } = await context({ command: ['false'], outs: ['model.bin'] });
  await writeFile(path.join(ctx.workspace, 'model.bin.pausepipe-previous'), 'last good');
  await writeFile(path.join(ctx.workspace, 'model.bin'), 'half written');
  await SH.run(ctx).catch(() => undefined);
  assert.is(await readFile(path.join(ctx.workspace, 'model.bin'), 'utf8'), 'last good');
  assert.is(existsSync(path.join(ctx.workspace, 'model.bin.pausepipe-previous')), false);
});

test('an out through a symbolic link to a folder outside the workspace is refused at run and restore, touching nothing there', async () => {
  const { ctx } = await context({ command: ['true'], outs: ['linkdir/victim.txt'] });
  const outside = await mkdtemp(path.join(os.tmpdir(), 'pausepipe-outside-'));
  try {
    await writeFile(path.join(outside, 'victim.txt'), 'precious');
    await symlink(outside, path.join(ctx.workspace, 'linkdir'));
    const refused = new RegExp(`^sh: out \`linkdir/victim\.txt\` is refused: it leads outside the workspace through a symbolic link \\(to ${outside}/victim\\.txt\\)$`);
    await SH.run(ctx).then(() => assert.unreachable('ran'), (e: Error) => assert.match(e.message, refused));
    const restoreCtx = {
      name: ctx.name, params: ctx.params, workspace: ctx.workspace, artifactsDir: ctx.outDir,
      outputs: [{ path: 'outs/linkdir/victim.txt', size: 4, sha256: 'f'.repeat(64) }], hashFile: async () => undefined,
    };
    await SH.restore!(restoreCtx).then(() => assert.unreachable('restored'), (e: Error) => assert.match(e.message, refused));
    assert.is(await readFile(path.join(outside, 'victim.txt'), 'utf8'), 'precious');
  } finally {
    await rm(outside, { recursive: true, force: true });
  }
});

test('an out outside the workspace is refused', async () => {
  const { ctx } = await context({ command: ['true'], outs: ['../elsewhere.txt'] });
  try {
    await SH.run(ctx);
    assert.unreachable('should have thrown');
  } catch (e) {
    assert.match((e as Error).message, /^sh: out `\.\.\/elsewhere\.txt` is refused: it is outside the workspace /);
  }
});

test('inputs arrive as PAUSEPIPE_INPUT_<NAME> (folders joined by the path delimiter) and PAUSEPIPE_INPUTS_JSON', async () => {
  const ref = (stage: string, dir: string): ArtifactRef => ({ stage, key: 'f'.repeat(8), kind: 'sh', dir, variant: { lr: 1 }, params: {}, metrics: { acc: 1 } });
  const script = "const fs=require('fs');fs.writeFileSync(process.env.PAUSEPIPE_OUT+'/env.txt',process.env.PAUSEPIPE_INPUT_TRAIN_RUNS+'\\n'+fs.readFileSync(process.env.PAUSEPIPE_INPUTS_JSON,'utf8'))";
  const { ctx } = await context({ command: [NODE, '-e', script] }, { 'train-runs': [ref('t[lr=1]', '/a'), ref('t[lr=2]', '/b')] });
  await SH.run(ctx);
  const [joined, ...json] = (await readFile(path.join(ctx.outDir, 'env.txt'), 'utf8')).split('\n');
  assert.is(joined, ['/a', '/b'].join(path.delimiter));
  const described = JSON.parse(json.join('\n')) as Record<string, { stage: string; variant: unknown }[]>;
  assert.equal(described['train-runs']!.map((r) => [r.stage, r.variant]), [['t[lr=1]', { lr: 1 }], ['t[lr=2]', { lr: 1 }]]);
  assert.is(inputEnvName('train-runs'), 'PAUSEPIPE_INPUT_TRAIN_RUNS');
});

test('each input also arrives as PAUSEPIPE_INPUT_<NAME>_LIST: a file naming its folders, one per line', async () => {
  const ref = (stage: string, dir: string): ArtifactRef => ({ stage, key: 'f'.repeat(8), kind: 'sh', dir, variant: {}, params: {}, metrics: {} });
  const script = "const fs=require('fs');const e=process.env;fs.writeFileSync(e.PAUSEPIPE_OUT+'/lists.json',JSON.stringify(" +
    "[e.PAUSEPIPE_INPUT_TRAIN_RUNS_LIST,fs.readFileSync(e.PAUSEPIPE_INPUT_TRAIN_RUNS_LIST,'utf8'),fs.readFileSync(e.PAUSEPIPE_INPUT_DATA_LIST,'utf8')]))";
  const { ctx, logs } = await context({ command: [NODE, '-e', script] }, { 'train-runs': [ref('t[lr=1]', '/a b'), ref('t[lr=2]', '/c')], data: [ref('d', '/d')] });
  await SH.run(ctx);
  assert.equal(JSON.parse(await readFile(path.join(ctx.outDir, 'lists.json'), 'utf8')), [
    path.join(ctx.scratchDir, 'input-lists', 'PAUSEPIPE_INPUT_TRAIN_RUNS.txt'), '/a b\n/c\n', '/d\n',
  ]);
  assert.equal(logs.filter((l) => l.startsWith('sh: $')), []);
});

test('an input of thousands of folders, past Linux\'s 128 KiB for one variable, still starts the command: its list has them all', async () => {
  const dirs = Array.from({ length: 3000 }, (_, i) => `/cache/objects/${String(i).padStart(64, '0')}/artifacts`);
  const refs = dirs.map((dir, i): ArtifactRef => ({ stage: `t[i=${i}]`, key: 'f'.repeat(8), kind: 'sh', dir, variant: { i }, params: {}, metrics: {} }));
  const small: ArtifactRef[] = [{ stage: 'd', key: 'f'.repeat(8), kind: 'sh', dir: '/d', variant: {}, params: {}, metrics: {} }];
  const script = "const fs=require('fs');const e=process.env;fs.writeFileSync(e.PAUSEPIPE_OUT+'/seen.json',JSON.stringify(" +
    "[e.PAUSEPIPE_INPUT_RUNS===undefined,fs.readFileSync(e.PAUSEPIPE_INPUT_RUNS_LIST,'utf8'),e.PAUSEPIPE_INPUT_DATA]))";
  const notices: string[] = [];
  const { ctx, logs } = await context({ command: [NODE, '-e', script] }, { runs: refs, data: small });
  await SH.run({ ...ctx, notice: (line) => notices.push(line) });
  assert.equal(JSON.parse(await readFile(path.join(ctx.outDir, 'seen.json'), 'utf8')), [true, dirs.map((d) => `${d}\n`).join(''), '/d']);
  const said = "sh: $PAUSEPIPE_INPUT_RUNS is not set: its 3000 folders (264 KiB) pass Linux's limit on one environment variable (128 KiB); " +
    'the command reads them from the file $PAUSEPIPE_INPUT_RUNS_LIST, one per line';
  assert.equal(logs.filter((l) => l.startsWith('sh: $')), [said]);
  assert.equal(notices, [`step[a=1]: ${said}`]);
});

test('restore puts back deleted or changed outs and leaves identical ones alone', async () => {
  const write = "const fs=require('fs');fs.mkdirSync('res',{recursive:true});fs.writeFileSync('res/a.txt','A');fs.writeFileSync('res/b.txt','B');fs.writeFileSync('one.txt','1')";
  const { ctx } = await context({ command: [NODE, '-e', write], outs: ['res', 'one.txt'] });
  await SH.run(ctx);
  const hasher = new FileHasher(path.join(ctx.workspace, '.stat.json'));
  const outputs = await Promise.all(['outs/one.txt', 'outs/res/a.txt', 'outs/res/b.txt'].map(async (p) => ({
    path: p, size: 1, sha256: await hasher.hash(path.join(ctx.outDir, p)),
  })));
  const hashFile = (abs: string) => hasher.hash(abs).catch((e: unknown) => {
    if (e instanceof FileMissingError) return undefined;
    throw e;
  });
  const restoreCtx = { name: ctx.name, params: ctx.params, workspace: ctx.workspace, artifactsDir: ctx.outDir, outputs, hashFile };

  assert.equal(await SH.restore!(restoreCtx), []);
  await rm(path.join(ctx.workspace, 'one.txt'));
  await writeFile(path.join(ctx.workspace, 'res/b.txt'), 'changed');
  assert.equal(await SH.restore!(restoreCtx), ['res/b.txt', 'one.txt']);
  assert.is(await readFile(path.join(ctx.workspace, 'one.txt'), 'utf8'), '1');
  assert.is(await readFile(path.join(ctx.workspace, 'res/b.txt'), 'utf8'), 'B');
  await rm(path.join(ctx.workspace, 'res'), { recursive: true });
  assert.equal(await SH.restore!(restoreCtx), ['res/a.txt', 'res/b.txt']);
});

test('restore of a folder out of thousands of files puts each back exactly, in the manifest\'s order, with its mode', async () => {
  const write = "const fs=require('fs');for(let i=0;i<2000;i++){fs.mkdirSync('res/'+(i%9),{recursive:true});fs.writeFileSync('res/'+(i%9)+'/p'+i+'.txt','part '+i)}" +
    ";fs.writeFileSync('res/big.bin',Buffer.alloc((8<<20)+5,7));fs.writeFileSync('res/run.sh','#!/bin/sh\\n',{mode:0o755})";
  const { ctx } = await context({ command: [NODE, '-e', write], outs: ['res'] });
  await SH.run(ctx);
  const stored = (await readdir(path.join(ctx.outDir, 'outs'), { recursive: true })).map((p) => `outs/${p}`);
  const outputs = [];
  for (const p of stored.sort()) {
    const full = path.join(ctx.outDir, p);
    if ((await stat(full)).isFile()) outputs.push({ path: p, ...(await digestFile(full)) });
  }
  assert.is(outputs.length, 2002);
  const hasher = new FileHasher(path.join(ctx.workspace, '.stat.json'));
  const hashFile = (abs: string) => hasher.hash(abs).catch(() => undefined);
  const restoreCtx = { name: ctx.name, params: ctx.params, workspace: ctx.workspace, artifactsDir: ctx.outDir, outputs, hashFile };
  await rm(path.join(ctx.workspace, 'res'), { recursive: true });
  // A folder where a file belongs gives way to the file.
  await mkdir(path.join(ctx.workspace, 'res/3/p3.txt'), { recursive: true });
  assert.equal(await SH.restore!(restoreCtx), outputs.map((o) => o.path.slice('outs/'.length)));
  for (const o of outputs) {
    const restored = path.join(ctx.workspace, o.path.slice('outs/'.length));
    assert.is((await digestFile(restored)).sha256, o.sha256, o.path);
  }
  const mode = async (rel: string) => (await stat(path.join(ctx.workspace, rel))).mode & 0o777;
  assert.is(await mode('res/run.sh'), 0o777 & ~process.umask());
  assert.is(await mode('res/big.bin'), 0o666 & ~process.umask());
  assert.is(await mode('res/0/p0.txt'), 0o666 & ~process.umask());
  assert.equal(await SH.restore!(restoreCtx), []);
});

test('restore never puts damaged cache bytes into the workspace, and keeps the user\'s file until a good copy is in place', async () => {
  const { ctx } = await context({ command: [NODE, '-e', "require('fs').writeFileSync('one.txt','1')"], outs: ['one.txt'] });
  await SH.run(ctx);
  const hasher = new FileHasher(path.join(ctx.workspace, '.stat.json'));
  const outputs = [{ path: 'outs/one.txt', size: 1, sha256: await hasher.hash(path.join(ctx.outDir, 'outs/one.txt')) }];
  await writeFile(path.join(ctx.workspace, 'one.txt'), 'edited by the user');
  const stored = path.join(ctx.outDir, 'outs/one.txt');
  await chmod(stored, 0o644);
  await writeFile(stored, '2');
  const restoreCtx = { name: ctx.name, params: ctx.params, workspace: ctx.workspace, artifactsDir: ctx.outDir, outputs, hashFile: async () => undefined };
  await SH.restore!(restoreCtx).then(() => assert.unreachable('restored damaged bytes'), (e: Error) => {
    assert.is(e.message, "the cache's copy of outs/one.txt does not match its manifest (damaged cache entry; `pausepipe verify --repair` removes it)");
  });
  assert.is(await readFile(path.join(ctx.workspace, 'one.txt'), 'utf8'), 'edited by the user');
  assert.equal((await readdir(ctx.workspace)).filter((n) => n.includes('pausepipe-restore')), []);
});

test('copies a restore killed mid-copy left beside the outs go when the next run takes the out\'s abandoned lock', async () => {
  const write = "const fs=require('fs');fs.mkdirSync('res/sub',{recursive:true});fs.writeFileSync('res/sub/a.txt','A');fs.writeFileSync('one.txt','1')";
  const { ctx } = await context({ command: [NODE, '-e', write], outs: ['res', 'one.txt'] });
  await SH.run(ctx);
  const leftovers = ['one.txt.pausepipe-restore-0123abcd', 'res/sub/a.txt.pausepipe-restore-89abcdef'];
  const kept = ['one.txt.pausepipe-restore-notmine', 'other.txt.pausepipe-restore-0123abcd'];
  for (const f of [...leftovers, ...kept]) await writeFile(path.join(ctx.workspace, f), 'half');
  const outputs = [{ path: 'outs/one.txt', size: 1, sha256: await digestFile(path.join(ctx.outDir, 'outs/one.txt')).then((d) => d.sha256) }];
  const restoreCtx = { name: ctx.name, params: { ...ctx.params, outs: ['one.txt'] }, workspace: ctx.workspace, artifactsDir: ctx.outDir, outputs, hashFile: async () => undefined };
  const present = () => [...leftovers, ...kept].filter((f) => existsSync(path.join(ctx.workspace, f)));

  // A live lock's copies belong to a restore still running; none is touched.
  await SH.restore!(restoreCtx);
  assert.equal(present(), [...leftovers, ...kept]);
  // The run killed mid-copy left its lock behind: its copies go, of the file out and inside the folder out.
  for (const out of ['one.txt', 'res']) {
    const lock = path.join(ctx.workspace, `.pausepipe-out-${sha256(out).slice(0, 16)}.lock`);
    await writeFile(lock, JSON.stringify({ out, pid: deadPid(), hostname: hostname(), startedAt: '2025-01-01T00:00:00.000Z', nonce: 'deadbeef' }));
  }
  await SH.restore!(restoreCtx);
  assert.equal(present(), [...leftovers.slice(1), ...kept]);
  await SH.run(ctx);
  assert.equal(present(), kept);
});

/**
 * The kind's own check-time problems for params in a fresh workspace holding `files`, where stages write `outputs`; with
 * `withNotes` each message with its notes below it.
 */
async function checkProblems(params: Partial<ShParams>, inputs: string[] = [], files: string[] = [], outputs: string[] = [], withNotes = false): Promise<string[]> {
  const workspace = await tempWorkspace('pausepipe-sh-check-');
  for (const f of files) {
    await mkdir(path.dirname(path.join(workspace, f)), { recursive: true });
    await writeFile(path.join(workspace, f), '');
  }
  const full: ShParams = { command: ['true'], shell: false, deps: [], outs: [], env: {}, cwd: '.', cpus: 1, gpus: 0, ...params };
  const file = path.join(workspace, 'pipelines', 'main.pipe');
  const problems = SH.check!(full, { workspace, inputs, pipelineFiles: [file], file, outputs, upstream: {} });
  if (withNotes) return problems.map((p) => [p.message, ...(p.notes ?? [])].join('\n').replaceAll(workspace, '<ws>'));
  return problems.map((p) => `${p.severity ?? 'error'} ${p.code} ${p.param?.join('.') ?? p.input} ${p.message}`)
    .map((line) => line.replaceAll(workspace, '<ws>'));
}

test('check refuses outs that would replace a dep, the pipeline, the workspace markers or the cache', async () => {
  assert.equal(await checkProblems({ deps: ['data/raw.csv'], outs: ['data/raw.csv'] }, [], ['data/raw.csv']), [
    'error E_UNSAFE_OUT outs.0 out `data/raw.csv` is the dep `data/raw.csv` of this stage: the command would replace what it reads',
  ]);
  assert.equal(await checkProblems({ deps: ['data/raw.csv'], outs: ['data'] }, [], ['data/raw.csv']), [
    'error E_UNSAFE_OUT outs.0 out `data` holds the dep `data/raw.csv` of this stage: the command would replace what it reads',
  ]);
  assert.equal(await checkProblems({ deps: ['src'], outs: ['src/gen.py'] }, [], ['src/main.py']), [
    'error E_UNSAFE_OUT outs.0 out `src/gen.py` lies in the dep `src` of this stage: each run would change the dep, so the stage would never be fresh',
  ]);
  assert.equal(await checkProblems({ outs: ['pipelines', 'package.json', '.pausepipe', '.git/config', '.', './results/../.pausepipe/objects'] }), [
    'error E_UNSAFE_OUT outs.0 out `pipelines` holds the pipeline file `pipelines/main.pipe`',
    'error E_UNSAFE_OUT outs.1 out `package.json` is refused: it is or lies in `package.json`, which marks the workspace',
    'error E_UNSAFE_OUT outs.2 out `.pausepipe` is refused: it is or lies in `.pausepipe`, which is the cache',
    'error E_UNSAFE_OUT outs.3 out `.git/config` is refused: it is or lies in `.git`, which is version control',
    'error E_UNSAFE_OUT outs.4 out `.` is refused: it is the workspace itself',
    'error E_UNSAFE_OUT outs.5 out `./results/../.pausepipe/objects` is refused: it is or lies in `.pausepipe`, which is the cache',
  ]);
  assert.equal(await checkProblems({ deps: ['data/raw.csv'], outs: ['data/prep.csv', 'results'] }, [], ['data/raw.csv']), []);
});

test('check warns of a dep that does not exist and no stage writes, saying the absolute path and where deps resolve from', async () => {
  const params = { deps: ['raw.csv', 'data/there.csv', 'build/model.bin'] };
  const files = ['pipelines/raw.csv', 'data/there.csv'];
  assert.equal(await checkProblems(params, [], files, ['build']), ['warning E_MISSING_DEP deps.0 dep `raw.csv` does not exist: looked for <ws>/raw.csv']);
  assert.equal(await checkProblems(params, [], files, ['build'], true), [[
    'dep `raw.csv` does not exist: looked for <ws>/raw.csv',
    'deps resolve from the workspace <ws> : the nearest folder at or above the entry .pipe file that holds package.json, .git or .pausepipe',
    'did you mean `pipelines/raw.csv`, the file beside the .pipe file?',
  ].join('\n')]);
});

test('check refuses two inputs that would arrive as one environment variable', async () => {
  assert.equal(await checkProblems({}, ['data', 'DATA', 'train-runs', 'train_runs', 'other']), [
    'error E_DUPLICATE_INPUT DATA inputs `data` and `DATA` both arrive as $PAUSEPIPE_INPUT_DATA: one would be lost',
    'error E_DUPLICATE_INPUT train_runs inputs `train-runs` and `train_runs` both arrive as $PAUSEPIPE_INPUT_TRAIN_RUNS: one would be lost',
  ]);
  // An input's list file arrives as <NAME>_LIST: a second input named so would take its place, in either order.
  assert.equal(await checkProblems({}, ['runs', 'runs_list', 'seeds-list', 'seeds', 'runs_list_list']), [
    'error E_DUPLICATE_INPUT runs_list inputs `runs` and `runs_list` both arrive as $PAUSEPIPE_INPUT_RUNS_LIST: one would be lost',
    'error E_DUPLICATE_INPUT seeds inputs `seeds-list` and `seeds` both arrive as $PAUSEPIPE_INPUT_SEEDS_LIST: one would be lost',
    'error E_DUPLICATE_INPUT runs_list_list inputs `runs_list` and `runs_list_list` both arrive as $PAUSEPIPE_INPUT_RUNS_LIST_LIST: one would be lost',
  ]);
});

test.run();

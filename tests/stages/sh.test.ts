// The `sh` stage kind: commands, environment, outs, metrics, progress lines, failures and restoring outs.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { FileHasher, FileMissingError } from '../../cache/file-hash.ts';
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

test('outs left over from an earlier run are deleted before the command runs', async () => {
  const { ctx } = await context({ command: [NODE, '-e', "process.exit(require('fs').existsSync('old.txt')?5:0)"], outs: ['old.txt'] });
  await writeFile(path.join(ctx.workspace, 'old.txt'), 'stale');
  try {
    await SH.run(ctx);
    assert.unreachable('the out is not rewritten, so the stage must fail');
  } catch (e) {
    assert.is((e as Error).message, 'sh: the command did not write its out `old.txt`');
  }
});

test('an out outside the workspace is refused', async () => {
  const { ctx } = await context({ command: ['true'], outs: ['../elsewhere.txt'] });
  try {
    await SH.run(ctx);
    assert.unreachable('should have thrown');
  } catch (e) {
    assert.match((e as Error).message, /^sh: out `\.\.\/elsewhere\.txt` is outside the workspace /);
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

test.run();

// `pausepipe exec`: one stage run from a job description, as a Slurm job runs it (the real bin, as a process).
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { execa } from 'execa';
import { slurmJobGpus } from '../../runtime/exec.ts';
import { JobFiles, readResult } from '../../runtime/job-protocol.ts';
import { BIN, tempWorkspace } from '../helpers/runner.ts';

async function describe(command: string) {
  const ws = await tempWorkspace('pausepipe-exec-');
  const scratchDir = path.join(ws, 'cache', 'scratch', 'abc123');
  const files = new JobFiles(scratchDir);
  await mkdir(files.dir, { recursive: true });
  const request = {
    type: 'run', name: 'prep', key: 'abc123', kind: 'sh', variant: {}, inputs: {}, outDir: files.out, scratchDir, workspace: ws,
    params: { command, shell: true, deps: [], outs: [], env: {}, cwd: '.', cpus: 1, gpus: 0 },
  };
  await writeFile(files.description, JSON.stringify({ token: 'feed01', request }));
  return { ws, files };
}

test('runs the stage: artifacts in the job\'s out folder, log and progress lines on stdout, the result beside the description', async () => {
  const { files } = await describe('echo hello; echo "pausepipe:progress 1/2 half"; echo 42 > $PAUSEPIPE_OUT/x.txt; echo \'{"v": 1}\' > $PAUSEPIPE_OUT/metrics.json');
  // A requeued job's first attempt left this; it must not pass for this attempt's output.
  await mkdir(files.out, { recursive: true });
  await writeFile(path.join(files.out, 'stale.txt'), 'old');
  const r = await execa(process.execPath, [BIN, 'exec', files.description], { reject: false });
  assert.is(r.exitCode, 0, r.stderr);
  const lines = r.stdout.split('\n');
  assert.ok(lines.includes('hello'), r.stdout);
  assert.ok(lines.includes('pausepipe:job-progress {"step":1,"total":2,"message":"half"}'), r.stdout);
  assert.equal(readResult(files.result), { token: 'feed01', status: 'done', metrics: { v: 1 } });
  assert.is(await readFile(path.join(files.out, 'x.txt'), 'utf8'), '42\n');
  assert.is(await readFile(path.join(files.out, 'stale.txt'), 'utf8').catch(() => 'gone'), 'gone');
});

test('a failing stage leaves a failed result with its message and exits 1', async () => {
  const { files } = await describe('echo about to fail; exit 3');
  const r = await execa(process.execPath, [BIN, 'exec', files.description], { reject: false });
  assert.is(r.exitCode, 1);
  assert.ok(r.stdout.split('\n').includes('about to fail'), r.stdout);
  assert.equal(readResult(files.result), { token: 'feed01', status: 'failed', message: 'command failed with exit code 3' });
});

test('SIGTERM (scancel, a time limit) stops the stage and exits 143', async () => {
  const { files } = await describe('echo started; sleep 60');
  const sub = execa(process.execPath, [BIN, 'exec', files.description], { reject: false, buffer: true });
  let seen = '';
  await new Promise<void>((resolve) => {
    sub.stdout!.on('data', (chunk: Buffer) => {
      seen += chunk.toString();
      if (seen.includes('started\n')) resolve();
    });
  });
  sub.kill('SIGTERM');
  const r = await sub;
  assert.is(r.exitCode, 143, r.stdout);
  assert.equal(readResult(files.result), { token: 'feed01', status: 'failed', message: 'stopped by SIGTERM' });
});

test('in a Slurm job with GPUs the stage is pinned to them as a local worker is', async () => {
  const { files } = await describe('echo "$CUDA_VISIBLE_DEVICES $PAUSEPIPE_GPU" > $PAUSEPIPE_OUT/gpus.txt');
  const r = await execa(process.execPath, [BIN, 'exec', files.description], { reject: false, env: { SLURM_JOB_ID: '77', CUDA_VISIBLE_DEVICES: '2,3' } });
  assert.is(r.exitCode, 0, r.stdout);
  assert.is(await readFile(path.join(files.out, 'gpus.txt'), 'utf8'), '2,3 2\n');
  assert.equal(slurmJobGpus({ SLURM_JOB_ID: '1', CUDA_VISIBLE_DEVICES: '' }), undefined);
  assert.equal(slurmJobGpus({ CUDA_VISIBLE_DEVICES: '0' }), undefined);
});

test('a file that is not a job description is a clear error', async () => {
  const ws = await tempWorkspace('pausepipe-exec-');
  await writeFile(path.join(ws, 'x.json'), '{"token": 1}');
  const r = await execa(process.execPath, [BIN, 'exec', path.join(ws, 'x.json')], { reject: false });
  assert.is(r.exitCode, 1);
  assert.is(r.stderr, `pausepipe exec: ${path.join(ws, 'x.json')} is not a pausepipe job description ({"token": ..., "request": {"type": "run", ...}})`);
});

test.run();

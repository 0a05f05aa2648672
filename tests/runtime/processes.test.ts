// The real `pausepipe` process: SIGKILL and Ctrl-C mid-stage, two runners on one cache (`watch`: watch.test.ts).
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { existsSync, readFileSync } from 'node:fs';
import { mkdir, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { hostname } from 'node:os';
import path from 'node:path';
import { cli, tempWorkspace } from '../helpers/runner.ts';
import { alive, killSpawned, spawnBin, waitFor } from '../helpers/processes.ts';

test.after(killSpawned);

async function lines(file: string): Promise<string[]> {
  return (await readFile(file, 'utf8').catch(() => '')).split('\n').filter(Boolean);
}

const HOLD_PIPE = `
stage hold = hold { pidfile: "hold.pid", until: "release" }
stage after = count(up: hold) { counter: "count.txt", value: 1 }
`;

async function holdWorkspace(): Promise<{ ws: string; file: string }> {
  const ws = await tempWorkspace('pausepipe-proc-');
  const file = path.join(ws, 'p.pipe');
  await writeFile(file, HOLD_PIPE);
  return { ws, file };
}

test('a runner SIGKILLed mid-stage takes its worker with it; the rerun completes and verify is clean', async () => {
  const { ws, file } = await holdWorkspace();
  const run = spawnBin(['run', file], ws);
  await waitFor('the stage to start', () => existsSync(path.join(ws, 'hold.pid')));
  const worker = Number(readFileSync(path.join(ws, 'hold.pid'), 'utf8'));
  run.proc.kill('SIGKILL');
  await run.proc;
  await waitFor('the orphaned worker to exit', () => !alive(worker), 5000);
  await writeFile(path.join(ws, 'release'), '');
  const rerun = await cli(['run', file], ws);
  assert.is(rerun.exitCode, 0, rerun.stderr);
  assert.equal(await lines(path.join(ws, 'count.txt')), ['hold', 'hold', 'after']);
  const verify = await cli(['verify', file], ws);
  assert.is(verify.exitCode, 0, verify.stdout);
  assert.match(verify.stdout, 'cache OK: 2 entries verified');
});

test('an sh command orphaned by a SIGKILLed runner is ended by the next run of its stage before it runs again', async () => {
  const ws = await tempWorkspace('pausepipe-proc-');
  const file = path.join(ws, 'p.pipe');
  await writeFile(file, `stage slow = sh {
  command: "if [ -f second ]; then echo ok > $PAUSEPIPE_OUT/x; else sleep 60 & echo $! > sleeper.pid; wait; fi"
  shell: true
}
`);
  const run = spawnBin(['run', file], ws);
  const pidFile = path.join(ws, 'sleeper.pid');
  // The shell creates the file before it writes the id: wait for the whole line.
  await waitFor('the command to start', () => existsSync(pidFile) && /^\d+\n$/.test(readFileSync(pidFile, 'utf8')));
  const sleeper = Number(readFileSync(pidFile, 'utf8'));
  run.proc.kill('SIGKILL');
  await run.proc;
  assert.ok(alive(sleeper), 'the command outlives a SIGKILLed runner');
  await writeFile(path.join(ws, 'second'), '');
  const rerun = await cli(['run', file], ws);
  assert.is(rerun.exitCode, 0, rerun.stderr);
  assert.not.ok(alive(sleeper), 'the rerun ended the orphaned command');
});

test('Ctrl-C stops the running stage, commits nothing, exits 130, and leaves the cache clean', async () => {
  const { ws, file } = await holdWorkspace();
  const run = spawnBin(['run', file], ws);
  await waitFor('the stage to start', () => existsSync(path.join(ws, 'hold.pid')));
  const worker = Number(readFileSync(path.join(ws, 'hold.pid'), 'utf8'));
  run.proc.kill('SIGINT');
  const result = await run.proc;
  assert.is(result.exitCode, 130, run.output());
  assert.match(run.output(), 'interrupting: stopping running stages');
  assert.not.ok(alive(worker));
  const plan = await cli(['plan', file], ws);
  assert.match(plan.stdout, '2 stale, 0 fresh');
  const verify = await cli(['verify', file], ws);
  assert.match(verify.stdout, 'cache OK: 0 entries verified');
});

test('two runners on one cache compute each key once; the waiting one names whom it waits for', async () => {
  const { ws, file } = await holdWorkspace();
  const a = spawnBin(['run', file], ws);
  await waitFor('runner A to start the stage', () => existsSync(path.join(ws, 'hold.pid')));
  const b = spawnBin(['run', file], ws);
  await waitFor('runner B to wait', () => b.output().includes('waiting hold: computed by pid '));
  assert.match(b.output(), `waiting hold: computed by pid ${a.proc.pid} on `);
  await writeFile(path.join(ws, 'release'), '');
  const [ra, rb] = await Promise.all([a.proc, b.proc]);
  assert.is(ra.exitCode, 0, a.output());
  assert.is(rb.exitCode, 0, b.output());
  assert.match(b.output(), 'cached  hold: computed by another run');
  const counted = await lines(path.join(ws, 'count.txt'));
  assert.equal(counted.sort(), ['after', 'hold']);
});

test('log prints a stage\'s log while a run computes it, follows it to the end, then reads it from the cache; a failed attempt\'s too', async () => {
  const ws = await tempWorkspace('pausepipe-log-');
  const file = path.join(ws, 'l.pipe');
  await writeFile(file, [
    'stage s = sh { command: "echo first; touch started; while [ ! -f release ]; do sleep 0.05; done; echo second", shell: true }',
    'stage bad = sh { command: "echo oops >&2; exit 4", shell: true }',
    'stage after = sh(up: bad) { command: ["true"] }',
    '',
  ].join('\n'));
  const run = spawnBin(['run', file, '--keep-going'], ws);
  await waitFor('the command to start', () => existsSync(path.join(ws, 'started')));
  const command = '$ echo first; touch started; while [ ! -f release ]; do sleep 0.05; done; echo second';
  assert.match((await cli(['plan', file], ws)).stdout, new RegExp(`^stale  s: being computed now by pid \\d+ on ${hostname()} since `));
  const now = await cli(['log', file, 's'], ws);
  assert.equal([now.exitCode, now.stdout, now.stderr], [0, `${command}\nfirst`, 's: a run is computing it; `--follow` prints the rest as it comes']);
  const follow = spawnBin(['log', file, 's', '--follow'], ws);
  await waitFor('the follower to print the first line', () => follow.output().includes('first'));
  await writeFile(path.join(ws, 'release'), '');
  const followed = await follow.proc;
  assert.equal([followed.exitCode, followed.all], [0, `${command}\nfirst\nsecond\ns: done`]);
  assert.is((await run.proc).exitCode, 1, run.output());
  const cached = await cli(['log', file, 's'], ws);
  assert.equal([cached.exitCode, cached.stdout, cached.stderr], [0, `${command}\nfirst\nsecond`, '']);
  const failed = await cli(['log', file, 'bad'], ws);
  assert.equal([failed.exitCode, failed.stderr], [0, 'bad: failed in its last run: command failed with exit code 4']);
  assert.match(failed.stdout, '$ echo oops >&2; exit 4\noops\npausepipe: command failed with exit code 4');
  const never = await cli(['log', file, 'after'], ws);
  assert.equal([never.exitCode, never.stderr], [1, 'pausepipe log: after has no log here yet (new stage); run it: pausepipe run l.pipe after']);
});

test('log prints the log of a Slurm job no run follows (its runner was killed), without progress lines, and follows it to its end', async () => {
  const ws = await tempWorkspace('pausepipe-log-');
  const file = path.join(ws, 'j.pipe');
  await writeFile(file, 'stage s = sh { command: ["true"] }\n');
  const key = (JSON.parse((await cli(['plan', file, '--json'], ws)).stdout) as { stages: { key: string }[] }).stages[0]!.key;
  // What a killed Slurm run leaves: the record of its submission and the job's own log, which the node still writes.
  const job = path.join(ws, '.pausepipe', 'scratch', key, 'slurm-job');
  await mkdir(job, { recursive: true });
  await writeFile(path.join(job, 'record.json'), JSON.stringify({ token: 't', jobId: '4242', host: 'login1', pid: 1, submittedAt: '2026-11-28T00:00:00Z' }));
  await writeFile(path.join(job, 'job.log'), '$ true\npausepipe:job-progress {"step":1,"total":2}\nstep one\n');
  assert.match((await cli(['plan', file], ws)).stdout, 'stale  s: submitted to Slurm as job 4242 by an earlier run: a run collects its result');
  const now = await cli(['log', file, 's'], ws);
  assert.equal([now.exitCode, now.stdout, now.stderr], [0, '$ true\nstep one', [
    's: Slurm job 4242, submitted by an earlier run that no longer follows it; its log on the shared filesystem:',
    's: the Slurm job 4242 goes on; `--follow` prints the rest as it comes',
  ].join('\n')]);
  const follow = spawnBin(['log', file, 's', '--follow'], ws);
  await waitFor('the follower to print the first lines', () => follow.output().includes('step one'));
  await writeFile(path.join(job, 'job.log'), '$ true\npausepipe:job-progress {"step":1,"total":2}\nstep one\npausepipe:job-progress {"step":2,"total":2}\nstep two\n');
  await writeFile(path.join(job, 'result.json'), JSON.stringify({ token: 't', status: 'done', metrics: {} }));
  const followed = await follow.proc;
  assert.equal([followed.exitCode, followed.all], [0, [
    's: Slurm job 4242, submitted by an earlier run that no longer follows it; its log on the shared filesystem:',
    '$ true', 'step one', 'step two',
    's: the job ended; a run collects its result: pausepipe run j.pipe s',
  ].join('\n')]);
});

test('two runs that write one workspace out take turns: each caches its own bytes', async () => {
  const ws = await tempWorkspace('pausepipe-outs-');
  const file = path.join(ws, 'w.pipe');
  // Each command holds on until the file `release` exists.
  await writeFile(file, 'let v = "first"\nstage w = sh { command: "mkdir -p out && echo ${v} > out/w.txt && while [ ! -f release ]; do sleep 0.05; done", shell: true, outs: ["out/w.txt"] }\n');
  const out = path.join(ws, 'out', 'w.txt');
  const first = spawnBin(['run', file], ws);
  await waitFor('the first command to write', () => existsSync(out) && readFileSync(out, 'utf8') === 'first\n');
  const second = spawnBin(['run', file, '-p', 'v="second"'], ws);
  await waitFor('the second run to wait', () => second.output().includes('sh: waiting for out out/w.txt, which pid '));
  await writeFile(path.join(ws, 'release'), '');
  const [a, b] = await Promise.all([first.proc, second.proc]);
  assert.equal([a.exitCode, b.exitCode], [0, 0], `${first.output()}\n${second.output()}`);
  // Each run's entry, restored into the workspace, holds what its own command wrote.
  for (const [args, expected] of [[[], 'first\n'], [['-p', 'v="second"'], 'second\n']] as const) {
    await rm(out);
    const restore = await cli(['run', file, ...args], ws);
    assert.is(restore.exitCode, 0, restore.stderr);
    assert.is(readFileSync(out, 'utf8'), expected);
  }
  assert.equal((await readdir(ws)).filter((n) => n.startsWith('.pausepipe-out-')), [], 'no out lock stays');
});

test('a command left writing an out by a runner killed with SIGKILL is ended by the next run that writes or restores that out, whatever its key', async () => {
  const ws = await tempWorkspace('pausepipe-outs-');
  const file = path.join(ws, 'w.pipe');
  await writeFile(file, 'let v = "v1"\nlet s = 0\nstage w = sh { command: "mkdir -p out && echo ${v}-partial > out/w.txt && sleep ${s} && echo ${v} > out/w.txt", shell: true, outs: ["out/w.txt"] }\n');
  const out = path.join(ws, 'out', 'w.txt');
  assert.is((await cli(['run', file], ws)).exitCode, 0);
  const killed = spawnBin(['run', file, '-p', 'v="v2"', '-p', 's=3'], ws);
  await waitFor('the other command to write', () => existsSync(out) && readFileSync(out, 'utf8') === 'v2-partial\n');
  killed.proc.kill('SIGKILL');
  await killed.proc;
  const restore = await cli(['run', file], ws);
  assert.is(restore.exitCode, 0, restore.stderr);
  assert.match(restore.stderr, 'restored out/w.txt');
  // The orphan would have written `v2` after its 3 s sleep.
  await new Promise((r) => setTimeout(r, 3500));
  assert.is(readFileSync(out, 'utf8'), 'v1\n');
});

test.run();

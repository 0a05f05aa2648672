// `pausepipe run --executor slurm` against a real one-node Slurm: same results as a local run, faults, a killed runner.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { copyFile, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { ResultPromise } from 'execa';
import { readRecord } from '../../../../runtime/job-protocol.ts';
import { cli, PROJECT_ROOT, tempWorkspace } from '../../../helpers/runner.ts';
import { killSpawned, spawnBin, waitFor as waitUntil, type Spawned } from '../../../helpers/processes.ts';
import { cancelJobsUnder, finishedJobs, jobsByName, lastJobId, withSlurm } from '../../../helpers/slurm.ts';

test.after(killSpawned);

interface StageJson {
  name: string;
  key: string | null;
  status: string;
  error: string | null;
  metrics: Record<string, unknown> | null;
}
interface RunJson {
  exitCode: number;
  counts: Record<string, number>;
  stages: StageJson[];
}

/** What a test started, so that a failing test leaves no runner and no job behind. */
const started = { workspaces: [] as string[], runners: [] as ResultPromise[] };

test.after.each(() => {
  for (const runner of started.runners) if (runner.exitCode === null && runner.signalCode === null) runner.kill('SIGKILL');
  for (const ws of started.workspaces) cancelJobsUnder(ws);
  started.runners = [];
  started.workspaces = [];
});

/** A workspace whose settings make the runner look at the queue twice a second (the default is every 2 s). */
async function workspace(pipe: string, executor: Record<string, unknown> = {}): Promise<{ ws: string; file: string }> {
  const ws = await tempWorkspace('pausepipe-slurm-');
  started.workspaces.push(ws);
  await writeFile(path.join(ws, 'package.json'), JSON.stringify({ private: true, pausepipe: { executor: { pollSeconds: 0.5, ...executor } } }));
  const file = path.join(ws, 'p.pipe');
  await writeFile(file, pipe);
  return { ws, file };
}

function spawnRun(file: string, cwd: string, extra: string[] = []): Spawned {
  const run = spawnBin(['run', file, '--executor', 'slurm', ...extra], cwd);
  started.runners.push(run.proc);
  return run;
}

/** Slurm takes its time under load: a minute, polled every 100 ms. */
const waitFor = (what: string, check: () => boolean, ms = 60_000) => waitUntil(what, check, ms, 100);

/** The one node of the test cluster (.ci/slurm-cluster.sh names it after this machine). */
const NODE = execFileSync('hostname', ['-s'], { encoding: 'utf8' }).trim();

function json(stdout: string): RunJson {
  return JSON.parse(stdout) as RunJson;
}

/** What must be equal between a local and a Slurm run: per stage, its status, key and metrics. */
function results(r: RunJson): Record<string, [string, string | null, unknown]> {
  return Object.fromEntries(r.stages.map((s) => [s.name, [s.status, s.key, s.metrics]]));
}

/** Every output file's hash of every committed entry, by key. */
function outputHashes(ws: string, keys: string[]): Record<string, unknown> {
  return Object.fromEntries(keys.map((k) => {
    const manifest = JSON.parse(readFileSync(path.join(ws, '.pausepipe', 'objects', k.slice(0, 2), k, 'manifest.json'), 'utf8')) as { outputs: unknown };
    return [k, manifest.outputs];
  }));
}

/** The key's Slurm job record in the cache's scratch folder (the first key that has one). */
function recordedJobId(ws: string): string | undefined {
  const scratch = path.join(ws, '.pausepipe', 'scratch');
  for (const key of existsSync(scratch) ? readdirSync(scratch) : []) {
    const id = readRecord(path.join(scratch, key, 'slurm-job', 'record.json'))?.jobId;
    if (id !== undefined) return id;
  }
  return undefined;
}

/** tmp/ and locks/ of the cache: empty after a clean stop. */
function leftovers(ws: string): string[] {
  return ['tmp', 'locks'].flatMap((d) => {
    const dir = path.join(ws, '.pausepipe', d);
    return existsSync(dir) ? readdirSync(dir).map((n) => `${d}/${n}`) : [];
  });
}

withSlurm(test)('the matrix example gives the same keys, metrics and workspace output through Slurm as locally; a second run submits nothing', async () => {
  const local = await workspace('');
  const cluster = await workspace('');
  for (const { ws } of [local, cluster]) await copyFile(path.join(PROJECT_ROOT, 'pipelines', 'examples', 'matrix.pipe'), path.join(ws, 'matrix.pipe'));
  const since = lastJobId();
  const [a, b] = await Promise.all([
    cli(['run', 'matrix.pipe', '--json'], local.ws),
    cli(['run', 'matrix.pipe', '--json', '--executor', 'slurm'], cluster.ws),
  ]);
  assert.is(a.exitCode, 0, a.stderr);
  assert.is(b.exitCode, 0, b.stderr);
  assert.equal(json(b.stdout).counts, { ran: 12, cached: 0, failed: 0, skipped: 0, aborted: 0 });
  assert.equal(results(json(b.stdout)), results(json(a.stdout)));
  const keys = json(a.stdout).stages.map((s) => s.key!);
  assert.equal(outputHashes(cluster.ws, keys), outputHashes(local.ws, keys));
  assert.is(await readFile(path.join(cluster.ws, 'results', 'matrix.jsonl'), 'utf8'), await readFile(path.join(local.ws, 'results', 'matrix.jsonl'), 'utf8'));
  // One job per stage, named after it.
  const jobs = jobsByName(since);
  assert.equal(Object.keys(jobs).sort(), json(b.stdout).stages.map((s) => s.name).sort());
  assert.ok(Object.values(jobs).every((ids) => ids.length === 1), JSON.stringify(jobs));

  const before = lastJobId();
  const again = await cli(['run', 'matrix.pipe', '--json', '--executor', 'slurm'], cluster.ws);
  assert.equal(json(again.stdout).counts, { ran: 0, cached: 12, failed: 0, skipped: 0, aborted: 0 });
  assert.is(lastJobId(), before);
});

const MODEL_PIPE = `
stage data = synthetic_math { train: 32, validation: 8, test: 2, seed: 3 }
stage base = init_model { preset: "tiny", overrides: { max_position_embeddings: 128 }, seed: 1 }
stage train = sft(model: base, data: data) {
  train: { all: true }, max_steps: 3, batch_size: 8, lr: 0.003, max_length: 96, eval_steps: 3, save_steps: 2, logging_steps: 1
}
stage eval = evaluate(model: train, data: data) { max_new_tokens: 6, batch_size: 2, max_length: 96, loss_max_length: 96 }
`;

withSlurm(test)('a small model pipeline trains and evaluates to the same metrics and model files through Slurm as locally', async () => {
  const local = await workspace(MODEL_PIPE);
  const cluster = await workspace(MODEL_PIPE);
  const [a, b] = await Promise.all([
    cli(['run', local.file, '--json', '--backend', 'wasm'], local.ws),
    cli(['run', cluster.file, '--json', '--backend', 'wasm', '--executor', 'slurm'], cluster.ws),
  ]);
  assert.is(a.exitCode, 0, a.stderr);
  assert.is(b.exitCode, 0, b.stderr);
  assert.equal(json(b.stdout).counts.ran, 4);
  assert.equal(results(json(b.stdout)), results(json(a.stdout)));
  const keys = json(a.stdout).stages.map((s) => s.key!);
  assert.equal(outputHashes(cluster.ws, keys), outputHashes(local.ws, keys));
  // A job's notices reach the runner's terminal once per run, as locally: two model stages run, one line.
  const again = await cli(['run', cluster.file, 'train', '--force', '--backend', 'wasm', '--executor', 'slurm'], cluster.ws);
  assert.is(again.exitCode, 0, again.stderr);
  assert.match(again.stdout, /^ran 2, cached 2 in /m, again.stdout);
  assert.equal(again.stderr.split('\n').filter((l) => l.startsWith('backend')), ['backend: wasm (SIMD, 1 thread)']);
});

withSlurm(test)('Ctrl-C cancels the running job (scancel) and leaves the cache clean', async () => {
  const { ws, file } = await workspace(`
stage hold = hold { pidfile: "hold.pid", until: "release" }
stage after = count(up: hold) { counter: "count.txt", value: 1 }
`);
  const run = spawnRun(file, ws);
  await waitFor('the job to start', () => existsSync(path.join(ws, 'hold.pid')));
  const id = recordedJobId(ws)!;
  run.proc.kill('SIGINT');
  const r = await run.proc;
  assert.is(r.exitCode, 130, run.output());
  assert.match(run.output(), /interrupting: stopping running stages and cancelling their Slurm jobs/);
  await waitFor('the completion log to show the cancelled job', () => finishedJobs().some((j) => String(j.id) === id), 20_000);
  assert.equal(finishedJobs().filter((j) => String(j.id) === id).map((j) => j.state), ['CANCELLED']);
  assert.equal(leftovers(ws), []);
  assert.is((await cli(['verify'], ws)).stdout.split('\n').at(-1)!.startsWith('cache OK: 0 entries'), true);
  assert.equal((await readFile(path.join(ws, 'count.txt'), 'utf8')).split('\n').filter(Boolean), ['hold']);
});

withSlurm(test)('a failing job, and one killed for its memory, fail their stages with the Slurm state and the log tail; --keep-going runs the rest', async () => {
  const { ws, file } = await workspace(`
stage bad = sh { command: "echo going to fail; exit 3", shell: true }
stage after_bad = count(up: bad) { counter: "count.txt", value: 1 }
stage big = sh { command: ["node", "-e", "const a = []; for (let i = 0; i < 40; i++) a.push(Buffer.alloc(25e6, 1)); setTimeout(() => 0, 20000)"] }
stage good = count { counter: "count.txt", value: 7 }
`, { stages: { big: { mem: '300M' } } });
  const r = await cli(['run', file, '--executor', 'slurm', '--keep-going'], ws);
  assert.is(r.exitCode, 1, r.stderr);
  assert.match(r.stdout, /^ran 1, cached 0, failed 2, skipped 1 in /m);
  // The log ends as a local run's does: the command's output, no stack of the runner's frames after it. The message
  // and the log's last line name the node the job ran on.
  assert.match(r.stderr, new RegExp(`^failed bad: command failed with exit code 3 \\(Slurm job \\d+ ended FAILED on ${NODE}: the job exited with an error; exit code 1\\)\n(  \\| .*\n)*  \\| going to fail\n  \\| pausepipe: Slurm job \\d+ FAILED \\(NonZeroExitCode\\) on ${NODE}\n`, 'm'));
  assert.match(r.stderr, new RegExp(`^failed big: Slurm job \\d+ ended FAILED on ${NODE}: .* \\(out of memory: raise \`mem\` in the executor settings\\)\n(  \\| .*\n)*  \\| .*Exceeded job memory limit`, 'm'));
  assert.match(r.stderr, /^skipped after_bad: upstream bad failed  \[\d\/4 stages[^\]]*\]$/m);
  assert.equal((await readFile(path.join(ws, 'count.txt'), 'utf8')).split('\n').filter(Boolean), ['good']);
  assert.equal(leftovers(ws), []);
});

withSlurm(test)('a flag sbatch refuses names the settings behind it; a job that cannot open its log says the node may not see the cache', async () => {
  const { ws, file } = await workspace(`
stage refused = sh { command: "echo never", shell: true }
stage lost = sh { command: "echo never", shell: true }
`, { kinds: { sh: { time: '10' } }, stages: { refused: { partition: 'nope' }, lost: { sbatch: ['--output=/nonexistent/pausepipe/job.log'] } } });
  const r = await cli(['run', file, '--executor', 'slurm', '--keep-going'], ws);
  assert.is(r.exitCode, 1, r.stderr);
  assert.ok(r.stderr.includes([
    'failed refused: sbatch refused the job: sbatch: error: invalid partition specified: nope',
    'sbatch: error: Batch job submission failed: Invalid partition name specified',
    'the stage\'s settings in package.json: executor.kinds.sh.time = "10", executor.stages.refused.partition = "nope"',
    '',
  ].join('\n')), r.stderr);
  const log = `${ws}/.pausepipe/scratch/[0-9a-f]{64}/slurm-job/job.log`;
  assert.match(r.stderr, new RegExp(`^failed lost: Slurm job \\d+ ended FAILED on ${NODE}: Slurm could not start the job on its node \\(JobLaunchFailure\\); it wrote no log \\(${log}\\): the node may not see the cache at that path \\(the cache and the workspace must be on a filesystem every node shares\\)$`, 'm'));
  assert.equal(leftovers(ws), []);
});

withSlurm(test)('the node dies: a job Slurm does not requeue fails its stage with NODE_FAIL, a requeued one goes on', async () => {
  const { ws, file } = await workspace(`
stage lost = hold { pidfile: "lost.pid", until: "release", counter: "count.txt" }
stage kept = hold { pidfile: "kept.pid", until: "release", counter: "count.txt" }
`, { stages: { lost: { sbatch: ['--no-requeue'] } } });
  const run = spawnRun(file, ws, ['--keep-going']);
  await waitFor('both jobs to run', () => existsSync(path.join(ws, 'lost.pid')) && existsSync(path.join(ws, 'kept.pid')));
  try {
    execFileSync('scontrol', ['update', `NodeName=${NODE}`, 'State=DOWN', 'Reason=pausepipe-test']);
    await waitFor('the runner to see kept requeued', () => /requeued kept: Slurm job \d+ is PENDING/.test(run.output()), 30_000);
  } finally {
    // The node may be back already (ReturnToService=2 returns it when slurmd registers): then RESUME is refused.
    try {
      execFileSync('scontrol', ['update', `NodeName=${NODE}`, 'State=RESUME'], { stdio: 'ignore' });
    } catch {
      // Back already.
    }
    await waitFor('the node to be back', () => /idle|mix|alloc/.test(execFileSync('sinfo', ['-h', '--format=%t'], { encoding: 'utf8' })), 30_000);
  }
  await writeFile(path.join(ws, 'release'), '');
  const kept = /requeued kept: Slurm job (\d+)/.exec(run.output())![1]!;
  await waitFor('the killed runs to release their CPUs', () => /CPUAlloc=0\b/.test(execFileSync('scontrol', ['show', 'node'], { encoding: 'utf8' })), 30_000);
  // slurmd revokes the first run's credential with a time in whole seconds and refuses any launch of the job whose
  // credential is not newer ("Job credential revoked": the job then ends FAILED). Slurm's own begin-time delay after
  // a requeue avoids that; starting it at once needs the next second first.
  await new Promise((r) => setTimeout(r, 2000));
  execFileSync('scontrol', ['update', `JobId=${kept}`, 'StartTime=now']);
  const r = await run.proc;
  assert.is(r.exitCode, 1, run.output());
  assert.match(run.output(), new RegExp(`^failed lost: Slurm job \\d+ ended NODE_FAIL on ${NODE}: the node running the job failed; reason NodeDown$`, 'm'));
  assert.match(run.output(), /^ran 1, cached 0, failed 1 in /m, run.output());
  assert.equal((await readFile(path.join(ws, 'count.txt'), 'utf8')).split('\n').filter(Boolean).sort(), ['kept', 'kept', 'lost']);
});

withSlurm(test)('a runner killed with SIGKILL and started again adopts its jobs, finished or running, and submits none twice', async () => {
  const { ws, file } = await workspace(`
stage quick = hold { pidfile: "quick.pid", until: "release_quick" }
stage slow = hold { pidfile: "slow.pid", until: "release_slow" }
stage after = count(up: slow) { counter: "count.txt", value: 1 }
`);
  const since = lastJobId();
  const first = spawnRun(file, ws);
  await waitFor('both jobs to run', () => existsSync(path.join(ws, 'quick.pid')) && existsSync(path.join(ws, 'slow.pid')));
  first.proc.kill('SIGKILL');
  await first.proc;
  // A gc of another pipeline meanwhile keeps the running jobs' folders: each job registered its key as in use.
  await writeFile(path.join(ws, 'other.pipe'), 'stage other = count { counter: "other.txt", value: 1 }\n');
  const gc = await cli(['gc', 'other.pipe'], ws);
  assert.is(gc.exitCode, 0, gc.stderr);
  assert.is(readdirSync(path.join(ws, '.pausepipe', 'scratch')).filter((k) => existsSync(path.join(ws, '.pausepipe', 'scratch', k, 'slurm-job', 'record.json'))).length, 2, gc.stdout);
  // quick finishes while no runner watches; slow is still running when the next runner starts.
  await writeFile(path.join(ws, 'release_quick'), '');
  await waitFor('quick to complete', () => (jobsByName(since).quick ?? []).length === 1, 30_000);
  const second = spawnRun(file, ws);
  await waitFor('the second runner to adopt slow', () => /adopted slow: Slurm job \d+/.test(second.output()));
  await writeFile(path.join(ws, 'release_slow'), '');
  const r = await second.proc;
  assert.is(r.exitCode, 0, second.output());
  assert.match(second.output(), /adopted quick: Slurm job \d+, submitted by an earlier run/);
  assert.match(String(r.stdout), /^ran 3, cached 0 in /m);
  const jobs = jobsByName(since);
  assert.equal(Object.keys(jobs).sort(), ['after', 'quick', 'slow']);
  assert.ok(Object.values(jobs).every((ids) => ids.length === 1), JSON.stringify(jobs));
  assert.equal((await readFile(path.join(ws, 'count.txt'), 'utf8')).split('\n').filter(Boolean).sort(), ['after', 'quick', 'slow']);
});

withSlurm(test)('a local run after a Slurm runner killed with SIGKILL collects its jobs instead of computing their stages again', async () => {
  const { ws, file } = await workspace(`
stage slow = hold { pidfile: "slow.pid", until: "release" }
stage after = count(up: slow) { counter: "count.txt", value: 1 }
`);
  const since = lastJobId();
  const first = spawnRun(file, ws);
  await waitFor('the job to run', () => existsSync(path.join(ws, 'slow.pid')));
  const id = recordedJobId(ws)!;
  first.proc.kill('SIGKILL');
  await first.proc;
  // No --executor: the workspace's settings say local.
  const local = spawnBin(['run', file], ws);
  started.runners.push(local.proc);
  await waitFor('the local run to adopt slow', () => local.output().includes(`adopted slow: Slurm job ${id}, submitted by an earlier run (to compute it here instead: scancel ${id}, then run again)`));
  await writeFile(path.join(ws, 'release'), '');
  const r = await local.proc;
  assert.is(r.exitCode, 0, local.output());
  assert.match(String(r.stdout), /^ran 2, cached 0 in /m);
  // slow ran once, in its Slurm job; after ran here.
  assert.equal((await readFile(path.join(ws, 'count.txt'), 'utf8')).split('\n').filter(Boolean), ['slow', 'after']);
  assert.equal(jobsByName(since), { slow: [Number(id)] });
  assert.equal(leftovers(ws), []);
});

withSlurm(test)('a requeued job starts again in the same job and finds what the first attempt kept in the scratch folder', async () => {
  const { ws, file } = await workspace(`
stage resume = sh {
  command: "if [ -f $PAUSEPIPE_SCRATCH/ckpt ]; then echo resumed from $(cat $PAUSEPIPE_SCRATCH/ckpt); echo '{\\"attempt\\": 2}' > $PAUSEPIPE_OUT/metrics.json; else echo 5 > $PAUSEPIPE_SCRATCH/ckpt; echo saved; sleep 120; fi"
  shell: true
}
`);
  const since = lastJobId();
  const run = spawnRun(file, ws);
  await waitFor('the first attempt to save', () => run.output().includes('submitted resume as Slurm job') &&
    readdirSync(path.join(ws, '.pausepipe', 'scratch')).some((k) => existsSync(path.join(ws, '.pausepipe', 'scratch', k, 'ckpt'))));
  const id = recordedJobId(ws)!;
  execFileSync('scontrol', ['requeue', id]);
  // Slurm holds a requeued job back for about two minutes; the test lets it start again at once.
  await waitFor('the runner to say the job was requeued', () => new RegExp(`requeued resume: Slurm job ${id} is PENDING`).test(run.output()), 30_000);
  // Started again before its first run has released the node, Slurm kills it ("Job credential revoked").
  await waitFor('the first run to release its CPU', () => /CPUAlloc=0\b/.test(execFileSync('scontrol', ['show', 'node'], { encoding: 'utf8' })), 30_000);
  execFileSync('scontrol', ['update', `JobId=${id}`, 'StartTime=now']);
  const r = await run.proc;
  assert.is(r.exitCode, 0, run.output());
  const stage = json((await cli(['run', file, '--json', '--executor', 'slurm'], ws)).stdout).stages[0]!;
  assert.equal([stage.status, stage.metrics], ['cached', { attempt: 2 }]);
  const log = readFileSync(path.join(ws, '.pausepipe', 'objects', stage.key!.slice(0, 2), stage.key!, 'log.txt'), 'utf8');
  assert.ok(log.includes('\nsaved\n') && log.includes('\nresumed from 5\n'), log);
  assert.equal(jobsByName(since), { resume: [Number(id)] });
});

test.run();

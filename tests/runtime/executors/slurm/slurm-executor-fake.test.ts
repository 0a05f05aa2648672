// The Slurm executor against a stand-in for Slurm's commands: the order of submissions, what the runner hears of a job.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { mkdir, writeFile } from 'node:fs/promises';
import type { Executor, StageEvents } from '../../../../runtime/executors/executor.ts';
import { JobFiles, writeJsonFile } from '../../../../runtime/job-protocol.ts';
import { slurmExecutor } from '../../../../runtime/executors/slurm/slurm-executor.ts';
import { DEFAULT_EXECUTOR, type ExecutorSettings } from '../../../../runtime/settings.ts';
import { fakeJob, FakeSlurm } from '../../../helpers/fake-slurm.ts';
import { tempWorkspace } from '../../../helpers/runner.ts';

const SETTINGS: ExecutorSettings = { ...DEFAULT_EXECUTOR, type: 'slurm', pollSeconds: 0.01 };

function events(lines: string[] = []): StageEvents {
  return { log: (line) => lines.push(line), progress: () => undefined, notice: () => undefined };
}

test('jobs are submitted in the order the runner hands the stages over, even when an earlier one is slower to prepare', async () => {
  const root = await tempWorkspace('pausepipe-fake-slurm-');
  let answer!: (gpus: boolean) => void;
  // The first stage wants a GPU, so its submission waits for sinfo; the two after it want none.
  const slurm = new FakeSlurm({ gpus: new Promise((resolve) => (answer = resolve)) });
  const executor = slurmExecutor({ settings: SETTINGS, client: slurm });
  const signal = new AbortController().signal;
  const jobs = [await fakeJob(root, 'train', { cpu: 1, gpu: 1 }), await fakeJob(root, 'eval'), await fakeJob(root, 'report')];
  const runs = jobs.map((job) => executor.run(job, events(), signal));
  // sinfo answers once the others were submitted, had they not waited (or after half a second: then they did).
  const started = Date.now();
  while (slurm.submitted.length < 2 && Date.now() - started < 500) await new Promise((r) => setTimeout(r, 10));
  answer(true);
  assert.equal(await Promise.all(runs), [{}, {}, {}]);
  assert.equal(slurm.submitted, ['train', 'eval', 'report']);
});

test('the runner hears when a job waits and when it runs (again after a requeue), and the log names its node', async () => {
  const root = await tempWorkspace('pausepipe-fake-slurm-');
  const slurm = new FakeSlurm({ node: 'gpu07', startedAt: 1_000, life: () => ['PENDING', 'RUNNING', 'PENDING', 'PENDING', 'RUNNING', 'COMPLETED'] });
  const executor = slurmExecutor({ settings: SETTINGS, client: slurm });
  const lines: string[] = [];
  const told: string[] = [];
  const job = await fakeJob(root, 'train');
  await executor.run(job, { ...events(lines), jobState: (state, at) => told.push(`${state}${at === undefined ? '' : ` since ${at}`}`) }, new AbortController().signal);
  assert.equal(told, ['queued', 'running since 1000', 'queued', 'running since 1000']);
  assert.equal(lines.filter((l) => l.startsWith('pausepipe: Slurm job')), [
    'pausepipe: Slurm job 101 PENDING',
    'pausepipe: Slurm job 101 RUNNING on gpu07',
    'pausepipe: Slurm job 101 PENDING',
    'pausepipe: Slurm job 101 RUNNING on gpu07',
    'pausepipe: Slurm job 101 COMPLETED on gpu07',
  ]);
});

test('a job that ran between two looks at the queue is said to have run, from the start Slurm gives', async () => {
  const root = await tempWorkspace('pausepipe-fake-slurm-');
  const slurm = new FakeSlurm({ startedAt: 2_000, life: () => ['PENDING', 'COMPLETED'] });
  const told: string[] = [];
  const job = await fakeJob(root, 'quick');
  await slurmExecutor({ settings: SETTINGS, client: slurm }).run(job, { ...events(), jobState: (state, at) => told.push(`${state} ${at}`) }, new AbortController().signal);
  assert.equal(told, ['queued undefined', 'running 2000']);
});

test('a run on this machine that adopts a job frees the stage\'s slots; under Slurm the job keeps them; others run here', async () => {
  const root = await tempWorkspace('pausepipe-fake-slurm-');
  const slurm = new FakeSlurm({ life: () => ['RUNNING', 'COMPLETED'] });
  const ranHere: string[] = [];
  const here: Executor = {
    async run(job) {
      ranHere.push(job.request.name);
      return {};
    },
  };
  /** A stage whose key has the job an earlier (killed) Slurm run submitted, and its result once it ends. */
  const orphan = async (name: string) => {
    const job = await fakeJob(root, name);
    const files = new JobFiles(job.request.scratchDir);
    const jobId = slurm.existing(name, ['RUNNING', 'COMPLETED']);
    // The job's artifacts, as it left them.
    await mkdir(files.out, { recursive: true });
    await writeJsonFile(files.record, { token: 'ab12', jobId, host: 'login1', pid: 1, submittedAt: '2026-01-01T00:00:00.000Z' });
    await writeFile(files.result, JSON.stringify({ token: 'ab12', status: 'done', metrics: { adopted: true } }));
    return job;
  };
  const released: string[] = [];
  const tell = (name: string) => ({ ...events(), releaseSlots: () => released.push(name) });
  const signal = new AbortController().signal;
  const local = slurmExecutor({ settings: SETTINGS, client: slurm, otherwise: here });
  assert.equal(await local.run(await orphan('slow'), tell('slow'), signal), { adopted: true });
  assert.equal(await local.run(await fakeJob(root, 'fresh'), tell('fresh'), signal), {});
  const cluster = slurmExecutor({ settings: SETTINGS, client: slurm });
  assert.equal(await cluster.run(await orphan('again'), tell('again'), signal), { adopted: true });
  assert.equal([released, ranHere, slurm.submitted], [['slow'], ['fresh'], []]);
});

test('a model stage on CPUs asks for its host-memory estimate, unless its settings name a mem or it gets a GPU', async () => {
  const root = await tempWorkspace('pausepipe-fake-slurm-');
  const slurm = new FakeSlurm({ gpus: Promise.resolve(false) });
  const settings: ExecutorSettings = { ...SETTINGS, stages: { sized: { mem: '2G' }, pinned: { gpus: 1 } } };
  const executor = slurmExecutor({ settings, client: slurm });
  const signal = new AbortController().signal;
  const model = { cpu: 1, gpu: 1, gpuMemoryMiB: 900, hostMemoryMiB: 4608 };
  for (const name of ['estimated', 'sized', 'pinned']) await executor.run(await fakeJob(root, name, model), events(), signal);
  await executor.run(await fakeJob(root, 'shell'), events(), signal);
  assert.equal(Object.fromEntries(slurm.flags), {
    estimated: ['--cpus-per-task=1', '--mem=4608M'],
    sized: ['--cpus-per-task=1', '--mem=2G'],
    pinned: ['--cpus-per-task=1', '--gres=gpu:1'],
    shell: ['--cpus-per-task=1'],
  });
});

test('when sbatch refuses a memory the estimate asked for, the error says where it came from and what to set', async () => {
  const root = await tempWorkspace('pausepipe-fake-slurm-');
  const refusal = 'sbatch: error: Memory specification can not be satisfied';
  const slurm = new FakeSlurm({ gpus: Promise.resolve(false), refuse: refusal });
  const executor = slurmExecutor({ settings: SETTINGS, client: slurm });
  const job = await fakeJob(root, 'big', { cpu: 1, gpu: 1, hostMemoryMiB: 70_000 });
  const error = await executor.run(job, events(), new AbortController().signal).then(() => undefined, (e: Error) => e.message);
  assert.equal(error, `${refusal}\n--mem=70000M is the stage's memory estimate; set \`mem\` in the executor settings to ask for another amount`);
});

test.run();

// The executor seam: GPU pinning of workers and in-process commands, and an executor that only sees serialised jobs.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { FileHasher } from '../../cache/file-hash.ts';
import { ArtifactStore } from '../../cache/store.ts';
import { gpuSlotsLine } from '../../runtime/cli.ts';
import { executePlan, type ExecuteOptions } from '../../runtime/execute.ts';
import type { Executor, StageJob } from '../../runtime/executors/executor.ts';
import { localWorkerExecutor } from '../../runtime/executors/local-worker.ts';
import { computeKeys, type KeyedStage } from '../../runtime/keys.ts';
import { EXTRA_KINDS_ENV } from '../../runtime/kinds.ts';
import type { Pipeline } from '../../runtime/pipeline.ts';
import { planPipeline } from '../../runtime/plan.ts';
import { SILENT_REPORTER } from '../../runtime/progress.ts';
import type { Session } from '../../runtime/session.ts';
import type { StageKind } from '../../stages/kind.ts';
import { STAGE_KINDS as BUILT_IN } from '../../stages/index.ts';
import { cli, instance, pipelineOf, tempWorkspace, TEST_KINDS } from '../helpers/runner.ts';
import { STAGE_KINDS as TEST_ONLY } from './fixtures/test-kinds.ts';

process.env[EXTRA_KINDS_ENV] = TEST_KINDS;
const KINDS: Record<string, StageKind> = { ...BUILT_IN, ...TEST_ONLY };
const SH = { shell: true, deps: [], outs: [], env: {}, cwd: '.', cpus: 1 };

async function run(p: Pipeline, extra: Partial<ExecuteOptions>) {
  const store = new ArtifactStore(path.join(p.workspace, '.pausepipe'));
  const hasher = new FileHasher(path.join(p.workspace, '.pausepipe', 'stat-cache.json'));
  const keys = await computeKeys(p, KINDS, hasher);
  const result = await executePlan({
    pipeline: p, kinds: KINDS, store, keys, plan: planPipeline(p, keys, (k) => store.has(k), {}), hasher,
    jobs: 4, gpus: 0, keepGoing: false, reporter: SILENT_REPORTER, ...extra,
  });
  return { store, keys, result };
}

test('with 2 GPUs each worker and each sh command sees only the GPU it was placed on', async () => {
  const ws = await tempWorkspace('pausepipe-exec-');
  const p = pipelineOf(ws, [
    instance('a', 'gpu_env', { tag: 'a' }),
    instance('b', 'gpu_env', { tag: 'b' }),
    instance('cmd', 'sh', { ...SH, gpus: 1, command: 'echo "$CUDA_VISIBLE_DEVICES $PAUSEPIPE_GPU" > "$PAUSEPIPE_OUT/env.txt"' }),
  ]);
  // Device ids as the runner's own CUDA_VISIBLE_DEVICES=4,7 would give them; two stages may share a GPU.
  const { store, keys, result } = await run(p, { gpus: 2, gpuDeviceIds: ['4', '7'], stagesPerGpu: 2 });
  assert.equal(result.outcomes.map((o) => [o.name, o.status, o.metrics ?? null]), [
    ['a', 'ran', { cuda: '4', gpu: '4' }],
    ['b', 'ran', { cuda: '7', gpu: '7' }],
    ['cmd', 'ran', {}],
  ]);
  assert.is(await readFile(path.join(store.artifactsDir((keys.get('cmd') as KeyedStage).key), 'env.txt'), 'utf8'), '4 4\n');
});

test('a run with GPU stages says first which GPUs it pins to and how stages share them', async () => {
  const ws = await tempWorkspace('pausepipe-exec-');
  const file = path.join(ws, 'p.pipe');
  await writeFile(file, 'let t = "a"\nstage a = gpu_env { tag: t }\nstage b = sh { command: ["true"] }\n');
  const first = async (args: string[], env: Record<string, string>) => {
    const r = await cli(['run', file, ...args, '--force'], ws, env);
    assert.is(r.exitCode, 0, r.stderr);
    const lines = r.stderr.split('\n');
    // The stages' own lines come in whichever order their locks are taken: only the GPUs line has a place (the first).
    return lines.some((l) => l.startsWith('GPUs')) ? lines[0] : 'no GPUs line';
  };
  assert.is(await first(['--gpus', '2', '--stages-per-gpu', '2', '--jobs', '1'], { CUDA_VISIBLE_DEVICES: '4,7' }),
    'GPUs 4, 7: up to 2 one-GPU stages on each (--stages-per-gpu 2); --jobs 1 runs at most 1 at once (a GPU stage takes a CPU slot too)');
  assert.is(await first(['--gpus', '1', '--jobs', '2'], { PAUSEPIPE_GPU_MEMORY_MIB: '24576' }),
    'GPUs 0: 24576 MiB each (PAUSEPIPE_GPU_MEMORY_MIB): model stages share one while their memory estimates fit');
  assert.is(await first(['--gpus', '0'], {}), 'no GPUs line');
  // Only stale stages count: with the GPU stage cached, nothing is said about GPUs.
  assert.is(await first(['b', '--gpus', '1', '--stages-per-gpu', '1'], {}), 'no GPUs line');
});

test('without a known GPU memory or --stages-per-gpu the GPUs line says each stage holds a GPU alone, and how to share', () => {
  const session = {
    plan: { stages: [{ name: 'a', status: 'stale' }] },
    pipeline: { stages: [{ name: 'a', kind: 'gpu_env', params: { tag: 'a' } }] },
    kinds: KINDS,
  } as unknown as Session;
  assert.is(gpuSlotsLine(session, { jobs: 8, gpus: 4 }, {}),
    'GPUs 0, 1, 2, 3: one stage on each (their memory unknown: PAUSEPIPE_GPU_MEMORY_MIB or --stages-per-gpu N lets stages share one)');
  assert.is(gpuSlotsLine(session, { jobs: 8, gpus: 2, gpuMemoryMiB: 81559 }, {}), 'GPUs 0, 1: 81559 MiB each (nvidia-smi): model stages share one while their memory estimates fit');
  assert.is(gpuSlotsLine(session, { jobs: 8, gpus: 0 }, {}), undefined);
});

test('a stage asking for more GPUs than the run has runs on all of them, alone, and the run and its log say so', async () => {
  const ws = await tempWorkspace('pausepipe-exec-');
  const cmd = (n: number) => instance(`big${n}`, 'sh', { ...SH, gpus: 3, command: `echo "$CUDA_VISIBLE_DEVICES" > "$PAUSEPIPE_OUT/env.txt"; echo ${n}` });
  const notes: string[] = [];
  const { store, keys, result } = await run(pipelineOf(ws, [cmd(1), cmd(2)]), {
    gpus: 2, gpuDeviceIds: ['4', '7'], reporter: { ...SILENT_REPORTER, note: (text: string) => notes.push(text) },
  });
  assert.equal(result.outcomes.map((o) => [o.name, o.status]), [['big1', 'ran'], ['big2', 'ran']]);
  assert.equal(notes, ['big1 asks for 3 GPUs, but this run has 2: it runs on all 2, alone', 'big2 asks for 3 GPUs, but this run has 2: it runs on all 2, alone']);
  const key = (keys.get('big1') as KeyedStage).key;
  assert.is(await readFile(path.join(store.artifactsDir(key), 'env.txt'), 'utf8'), '4,7\n');
  const log = await readFile(path.join(store.entryDir(key), store.readManifest(key)!.log), 'utf8');
  assert.is(log.split('\n')[0], 'big1 asks for 3 GPUs, but this run has 2: it runs on all 2, alone');
});

test('without GPUs a GPU stage gets no pinning', async () => {
  const ws = await tempWorkspace('pausepipe-exec-');
  const { result } = await run(pipelineOf(ws, [instance('a', 'gpu_env', { tag: 'a' })]), {});
  assert.equal(result.outcomes[0]!.metrics, { cuda: process.env.CUDA_VISIBLE_DEVICES ?? null, gpu: process.env.PAUSEPIPE_GPU ?? null });
});

test('an executor that only sees the job as JSON (as a cluster job would) runs stages, and its log lines reach the entry', async () => {
  const ws = await tempWorkspace('pausepipe-exec-');
  const seen: string[] = [];
  const worker = localWorkerExecutor();
  const remote: Executor = {
    async run(job, events, signal) {
      const copy = JSON.parse(JSON.stringify(job)) as StageJob;
      assert.equal(copy, job);
      seen.push(`${copy.request.name} ${copy.request.kind} cpu ${copy.resources.cpu ?? 1}`);
      events.log(`submitted ${copy.request.name}`);
      return worker.run(copy, events, signal);
    },
  };
  const p = pipelineOf(ws, [
    instance('a', 'count', { counter: 'count.txt', value: 1 }),
    instance('b', 'count', { counter: 'count.txt', value: 2 }, { inputs: { up: 'a' } }),
  ]);
  const { store, keys, result } = await run(p, { executor: remote });
  assert.equal(result.outcomes.map((o) => [o.name, o.status]), [['a', 'ran'], ['b', 'ran']]);
  assert.equal(seen, ['a count cpu 1', 'b count cpu 1']);
  const b = (keys.get('b') as KeyedStage).key;
  const log = await readFile(path.join(store.entryDir(b), store.readManifest(b)!.log), 'utf8');
  // The run's facts cross the JSON boundary with the job, as a remote executor must carry them.
  assert.equal(log.split('\n').filter(Boolean), ['submitted b', 'counted b', 'run: {"pipeline":"test.pipe","overrides":{}}']);
});

test('a worker killed by SIGKILL while the kernel counted an out-of-memory kill is said to have run out of memory, with what to do', async () => {
  const ws = await tempWorkspace('pausepipe-exec-');
  const failure = async (counts: number[]) => {
    const worker = localWorkerExecutor({ oomKills: () => counts.shift() });
    const { result } = await run(pipelineOf(ws, [instance('big', 'crash', { signal: 'SIGKILL' })]), { executor: worker });
    return result.outcomes[0]!.error;
  };
  assert.is(await failure([4, 5]), 'worker process died (killed by SIGKILL): the kernel\'s out-of-memory killer ended a process while this stage ' +
    'ran, most likely this one: memory ran out (the machine\'s, or a container\'s or job\'s limit); run fewer stages at once (--jobs) or smaller ones');
  // Killed by someone else, or where the kernel keeps no count: nothing is guessed.
  assert.is(await failure([4, 4]), 'worker process died (killed by SIGKILL)');
  assert.is(await failure([]), 'worker process died (killed by SIGKILL)');
});

test('pausepipe run --gpus 1 --stages-per-gpu 2 runs two GPU stages on the GPU its own CUDA_VISIBLE_DEVICES names', async () => {
  const ws = await tempWorkspace('pausepipe-exec-');
  const file = path.join(ws, 'p.pipe');
  await writeFile(file, 'stage a = gpu_env { tag: "a" }\nstage b = gpu_env { tag: "b" }\n');
  const r = await cli(['run', file, '--gpus', '1', '--stages-per-gpu', '2', '--json'], ws, { CUDA_VISIBLE_DEVICES: '3' });
  assert.is(r.exitCode, 0, r.stderr);
  const stages = (JSON.parse(r.stdout) as { stages: { name: string; metrics: unknown }[] }).stages;
  assert.equal(stages.map((x) => [x.name, x.metrics]), [['a', { cuda: '3', gpu: '3' }], ['b', { cuda: '3', gpu: '3' }]]);
  const bad = await cli(['run', file, '--stages-per-gpu', '0'], ws);
  assert.equal([bad.exitCode, bad.stderr.split('\n')[0]], [2, 'pausepipe run: --stages-per-gpu needs a whole number ≥ 1, got 0']);
});

test('pausepipe run --gpus 0 shows every stage no GPU: workers and commands get CUDA_VISIBLE_DEVICES empty and PAUSEPIPE_GPU=none', async () => {
  const ws = await tempWorkspace('pausepipe-exec-');
  const file = path.join(ws, 'p.pipe');
  await writeFile(file, 'stage a = gpu_env { tag: "a" }\nstage cmd = sh { command: "echo \\"[$CUDA_VISIBLE_DEVICES] $PAUSEPIPE_GPU\\" > seen.txt", shell: true }\n');
  const r = await cli(['run', file, '--gpus', '0', '--json'], ws, { CUDA_VISIBLE_DEVICES: '0,1' });
  assert.is(r.exitCode, 0, r.stderr);
  const stages = (JSON.parse(r.stdout) as { stages: { name: string; metrics: unknown }[] }).stages;
  assert.equal(stages.map((x) => [x.name, x.metrics]), [['a', { cuda: '', gpu: 'none' }], ['cmd', {}]]);
  assert.is(await readFile(path.join(ws, 'seen.txt'), 'utf8'), '[] none\n');
  // Without --gpus, a run on a machine whose GPUs nobody counts (no nvidia-smi) leaves the environment as it is.
  const plain = await cli(['run', file, '--force', '--json'], ws, { CUDA_VISIBLE_DEVICES: '' });
  assert.equal((JSON.parse(plain.stdout) as { stages: { metrics: unknown }[] }).stages[0]!.metrics, { cuda: '', gpu: process.env.PAUSEPIPE_GPU ?? null });
});

test('pausepipe run --gpus N past the runner\'s CUDA_VISIBLE_DEVICES stops before anything runs; --gpus takes digits only', async () => {
  const ws = await tempWorkspace('pausepipe-exec-');
  const file = path.join(ws, 'p.pipe');
  await writeFile(file, 'stage a = gpu_env { tag: "a" }\n');
  const r = await cli(['run', file, '--gpus', '4'], ws, { CUDA_VISIBLE_DEVICES: '2,3' });
  assert.equal([r.exitCode, r.stdout, r.stderr], [2, '', "pausepipe run: --gpus 4, but CUDA_VISIBLE_DEVICES='2,3' leaves 2 GPUs to this run: give --gpus 2 or fewer (--stages-per-gpu N runs N stages on each), or widen CUDA_VISIBLE_DEVICES"]);
  const w = await cli(['watch', file, '--gpus', '1'], ws, { CUDA_VISIBLE_DEVICES: '' });
  assert.equal([w.exitCode, w.stderr], [2, "pausepipe watch: --gpus 1, but CUDA_VISIBLE_DEVICES='' leaves no GPU to this run: give --gpus 0, or widen CUDA_VISIBLE_DEVICES"]);
  // Number() read '' as 0 and '0x4' as 4.
  for (const bad of ['', '0x4', '1e1']) {
    const b = await cli(['run', file, `--gpus=${bad}`], ws);
    assert.equal([b.exitCode, b.stderr.split('\n')[0]], [2, `pausepipe run: --gpus needs a whole number ≥ 0, got ${bad}`]);
  }
  const ok = await cli(['run', file, '--gpus', '2', '--json'], ws, { CUDA_VISIBLE_DEVICES: '2,3' });
  assert.is(ok.exitCode, 0, ok.stderr);
  assert.equal((JSON.parse(ok.stdout) as { stages: { metrics: unknown }[] }).stages.map((x) => x.metrics), [{ cuda: '2', gpu: '2' }]);
});

test.run();

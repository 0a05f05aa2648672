// The executor: dependency order, isolated workers, failures that fail only their downstream, slots, commits.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { existsSync, readFileSync } from 'node:fs';
import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { FileHasher } from '../../cache/file-hash.ts';
import { ArtifactStore } from '../../cache/store.ts';
import { executePlan, Slots, StageJoins, StageStops } from '../../runtime/execute.ts';
import type { Executor } from '../../runtime/executors/executor.ts';
import { localExecutor } from '../../runtime/executors/local.ts';
import type { JsonValue } from '../../runtime/json.ts';
import { computeKeys, type KeyedStage } from '../../runtime/keys.ts';
import { EXTRA_KINDS_ENV } from '../../runtime/kinds.ts';
import type { Pipeline } from '../../runtime/pipeline.ts';
import { planPipeline } from '../../runtime/plan.ts';
import { SILENT_REPORTER } from '../../runtime/progress.ts';
import type { Progress, StageKind } from '../../stages/kind.ts';
import { STAGE_KINDS as BUILT_IN } from '../../stages/index.ts';
import { waitFor } from '../helpers/processes.ts';
import { instance, pipelineOf, tempWorkspace, TEST_KINDS } from '../helpers/runner.ts';
import { STAGE_KINDS as TEST_ONLY } from './fixtures/test-kinds.ts';

// Workers load kinds by name from the same variable the runner reads.
process.env[EXTRA_KINDS_ENV] = TEST_KINDS;
const KINDS: Record<string, StageKind> = { ...BUILT_IN, ...TEST_ONLY };

async function runOnce(p: Pipeline, opts: { keepGoing?: boolean; jobs?: number; overrides?: Record<string, JsonValue>; stops?: StageStops; joins?: StageJoins } = {}) {
  const store = new ArtifactStore(path.join(p.workspace, '.pausepipe'));
  const hasher = new FileHasher(path.join(p.workspace, '.pausepipe', 'stat-cache.json'));
  const keys = await computeKeys(p, KINDS, hasher);
  const plan = planPipeline(p, keys, (k) => store.has(k), {});
  const result = await executePlan({
    pipeline: p, kinds: KINDS, store, keys, plan, hasher, jobs: opts.jobs ?? 2, gpus: 0,
    keepGoing: opts.keepGoing ?? false, reporter: SILENT_REPORTER, ...(opts.overrides ? { overrides: opts.overrides } : {}), stops: opts.stops, joins: opts.joins,
  });
  return { store, keys, result, statuses: result.outcomes.map((o) => [o.name, o.status, o.error ?? null]) };
}

/** runOnce with an executor of the test's own. */
async function runOnceWith(p: Pipeline, opts: { jobs: number; executor: Executor }) {
  const store = new ArtifactStore(path.join(p.workspace, '.pausepipe'));
  const hasher = new FileHasher(path.join(p.workspace, '.pausepipe', 'stat-cache.json'));
  const keys = await computeKeys(p, KINDS, hasher);
  const plan = planPipeline(p, keys, (k) => store.has(k), {});
  const result = await executePlan({ pipeline: p, kinds: KINDS, store, keys, plan, hasher, jobs: opts.jobs, gpus: 0, keepGoing: false, reporter: SILENT_REPORTER, executor: opts.executor });
  return { result, statuses: result.outcomes.map((o) => [o.name, o.status, o.error ?? null]) };
}

async function counted(ws: string): Promise<string[]> {
  return (await readFile(path.join(ws, 'count.txt'), 'utf8').catch(() => '')).split('\n').filter(Boolean).sort();
}

test('a stage failing on a file of its input names the input and the upstream stage, not the cache folder', async () => {
  const ws = await tempWorkspace('pausepipe-exec-');
  const p = pipelineOf(ws, [
    instance('a', 'count', { counter: 'count.txt', value: 1 }),
    instance('ok', 'read_input', { file: 'value.txt' }, { inputs: { up: 'a' } }),
    instance('bad', 'read_input', { file: 'nope.txt' }, { inputs: { up: 'a' } }),
  ]);
  const { statuses, result } = await runOnce(p, { keepGoing: true });
  assert.equal(statuses, [['a', 'ran', null], ['ok', 'ran', null], ['bad', 'failed', 'input `up` (stage `a`): nope.txt: missing']]);
  // The log file keeps the full path and the worker's stack, for whoever wants to look at the folder; the tail the
  // terminal shows has neither frames nor the message twice.
  const failed = result.outcomes[2]!;
  const log = await readFile(failed.logPath!, 'utf8');
  assert.match(log, `${path.sep}artifacts${path.sep}nope.txt: missing\n    at `);
  assert.equal(failed.logTail!.filter((line) => line.includes('nope.txt') || /^\s+at /.test(line)), ['pausepipe: input `up` (stage `a`): nope.txt: missing']);
});

test('stages run in dependency order in workers, results are committed, and a second run computes nothing', async () => {
  const ws = await tempWorkspace('pausepipe-exec-');
  const p = pipelineOf(ws, [
    instance('a', 'count', { counter: 'count.txt', value: 1 }),
    instance('b', 'count', { counter: 'count.txt', value: 2 }, { inputs: { up: 'a' } }),
    instance('c', 'sh', { command: ['sh', '-c', 'cat "$PAUSEPIPE_INPUT_UP/value.txt" > "$PAUSEPIPE_OUT/seen.txt"'], shell: false, deps: [], outs: [], env: {}, cwd: '.', cpus: 1, gpus: 0 }, { inputs: { up: 'b' } }),
  ]);
  const first = await runOnce(p, { overrides: { lr: 0.5 } });
  assert.equal(first.statuses, [['a', 'ran', null], ['b', 'ran', null], ['c', 'ran', null]]);
  assert.equal(await counted(ws), ['a', 'b']);
  const c = (first.keys.get('c') as KeyedStage).key;
  assert.is(await readFile(path.join(first.store.artifactsDir(c), 'seen.txt'), 'utf8'), '2');
  const manifest = first.store.readManifest((first.keys.get('b') as KeyedStage).key)!;
  assert.equal([manifest.stage, manifest.metrics, manifest.outputs.map((o) => o.path)], ['b', { value: 2 }, ['value.txt']]);
  const log = await readFile(path.join(first.store.entryDir((first.keys.get('b') as KeyedStage).key), manifest.log), 'utf8');
  assert.match(log, 'counted b');
  // The worker's context knows the run: the pipeline file and the overrides (the report prints them).
  assert.match(log, 'run: {"pipeline":"test.pipe","overrides":{"lr":0.5}}');

  const second = await runOnce(p);
  assert.equal(second.statuses, [['a', 'cached', null], ['b', 'cached', null], ['c', 'cached', null]]);
  assert.equal(await counted(ws), ['a', 'b']);
});

test('with --keep-going a crashed worker fails only its downstream; the cache stays clean', async () => {
  const ws = await tempWorkspace('pausepipe-exec-');
  const p = pipelineOf(ws, [
    instance('boom', 'crash', { code: 3 }),
    instance('after', 'count', { counter: 'count.txt', value: 1 }, { inputs: { up: 'boom' } }),
    instance('other', 'count', { counter: 'count.txt', value: 2 }),
  ]);
  const { result, statuses, store, keys } = await runOnce(p, { keepGoing: true });
  assert.equal(statuses, [
    ['boom', 'failed', 'worker process died (exit code 3)'],
    ['after', 'skipped', 'upstream boom failed'],
    ['other', 'ran', null],
  ]);
  assert.ok(result.outcomes[0]!.logTail!.includes('about to crash'));
  assert.is(await readFile(result.outcomes[0]!.logPath!, 'utf8').then((t) => t.includes('about to crash')), true);
  assert.equal(await counted(ws), ['other']);
  assert.is(store.has((keys.get('boom') as KeyedStage).key), false);
  assert.equal(await store.verify(), []);
});

test('without --keep-going nothing new starts after a failure', async () => {
  const ws = await tempWorkspace('pausepipe-exec-');
  const p = pipelineOf(ws, [
    instance('boom', 'sh', { command: ['sh', '-c', 'echo broken; exit 4'], shell: false, deps: [], outs: [], env: {}, cwd: '.', cpus: 1, gpus: 0 }),
    instance('a', 'count', { counter: 'count.txt', value: 1 }),
    instance('b', 'count', { counter: 'count.txt', value: 2 }),
  ]);
  const { result, statuses } = await runOnce(p, { jobs: 1 });
  assert.equal(statuses, [
    ['boom', 'failed', 'command failed with exit code 4'],
    ['a', 'skipped', 'not started after a failure'],
    ['b', 'skipped', 'not started after a failure'],
  ]);
  assert.equal(result.outcomes[0]!.logTail, ['$ sh -c "echo broken; exit 4"', 'broken', 'pausepipe: command failed with exit code 4']);
  assert.equal(await counted(ws), []);
});

test('stages stopped during a run: a running one ends uncommitted, one not started is skipped, both with the reason; the others go on', async () => {
  const ws = await tempWorkspace('pausepipe-exec-');
  const p = pipelineOf(ws, [
    instance('hold', 'hold', { pidfile: 'hold.pid', until: 'release', counter: 'count.txt' }),
    instance('after', 'count', { counter: 'count.txt', value: 1 }, { inputs: { up: 'hold' } }),
    instance('later', 'count', { counter: 'count.txt', value: 2 }),
    instance('other', 'count', { counter: 'count.txt', value: 3 }),
  ]);
  const stops = new StageStops();
  const running = runOnce(p, { jobs: 1, stops });
  await waitFor('the held stage to start', () => existsSync(path.join(ws, 'hold.pid')));
  assert.equal(stops.stop(['hold', 'after', 'later', 'gone'], 'replaced by a change'), ['hold', 'after', 'later']);
  const { store, keys, statuses } = await running;
  assert.equal(statuses, [
    ['hold', 'aborted', 'replaced by a change'],
    ['after', 'skipped', 'replaced by a change'],
    ['later', 'skipped', 'replaced by a change'],
    ['other', 'ran', null],
  ]);
  assert.equal(await counted(ws), ['hold', 'other']);
  assert.equal(store.keys(), [(keys.get('other') as KeyedStage).key]);
  assert.equal(stops.stop(['other'], 'too late'), [], 'a stage that has ended is not stopped');
});

test('stages asked to stop before the run starts are skipped as it starts, with the reason', async () => {
  const ws = await tempWorkspace('pausepipe-exec-');
  const p = pipelineOf(ws, [
    instance('early', 'count', { counter: 'count.txt', value: 1 }),
    instance('kept', 'count', { counter: 'count.txt', value: 2 }),
  ]);
  const stops = new StageStops();
  assert.equal(stops.stop(['early'], 'replaced by a change'), ['early']);
  assert.equal(stops.stop(['early'], 'asked twice'), [], 'a stage is stopped once, for the first reason');
  const { statuses } = await runOnce(p, { stops });
  assert.equal(statuses, [['early', 'skipped', 'replaced by a change'], ['kept', 'ran', null]]);
  assert.equal(await counted(ws), ['kept']);
});

test('stages that join a run are computed and committed as its own, one reading a running stage after it, and counted', async () => {
  const ws = await tempWorkspace('pausepipe-exec-');
  const hold = instance('hold', 'hold', { pidfile: 'hold.pid', until: 'release', counter: 'count.txt' });
  const p = pipelineOf(ws, [hold]);
  const joins = new StageJoins();
  const added = [
    instance('after', 'count', { counter: 'count.txt', value: 1 }, { inputs: { up: 'hold' } }),
    instance('side', 'count', { counter: 'count.txt', value: 2 }),
  ];
  const bigger = pipelineOf(ws, [hold, ...added]);
  const keys = await computeKeys(bigger, KINDS, new FileHasher(path.join(ws, '.pausepipe', 'stat-cache.json')));
  const joining = { stages: added, keys, plan: planPipeline(bigger, keys, () => false, {}).stages.slice(1), progress: [] };
  assert.equal(joins.join(joining), [], 'before the run starts');
  const running = runOnce(p, { jobs: 2, joins });
  await waitFor('the held stage to start', () => existsSync(path.join(ws, 'hold.pid')));
  assert.equal(joins.join(joining), ['after', 'side']);
  assert.throws(() => joins.join(joining), /has the name of one it has: after, side/);
  await waitFor('side to run while hold holds', () => existsSync(path.join(ws, 'count.txt')) && readFileSync(path.join(ws, 'count.txt'), 'utf8').includes('side'));
  assert.equal(await counted(ws), ['hold', 'side']);
  await writeFile(path.join(ws, 'release'), '');
  const { store, result, statuses } = await running;
  assert.equal(statuses, [['hold', 'ran', null], ['after', 'ran', null], ['side', 'ran', null]]);
  assert.equal(result.counts.ran, 3);
  assert.equal(store.keys().sort(), ['hold', 'after', 'side'].map((n) => (keys.get(n) as KeyedStage).key).sort());
  assert.equal(joins.join(joining), [], 'after the run ended');
});

test('a worker forwards progress over IPC, throttled but always with the last step', async () => {
  const ws = await tempWorkspace('pausepipe-exec-');
  const p = pipelineOf(ws, [instance('s', 'steps', { steps: 50 })]);
  const store = new ArtifactStore(path.join(ws, '.pausepipe'));
  const hasher = new FileHasher(path.join(ws, '.pausepipe', 'stat-cache.json'));
  const keys = await computeKeys(p, KINDS, hasher);
  const events: string[] = [];
  const reporter = {
    ...SILENT_REPORTER,
    start: (n: string) => events.push(`start ${n}`),
    progress: (n: string, pr: Progress) => events.push(`${n} ${pr.step}/${pr.total} ${pr.message}`),
    finish: (n: string, st: string) => events.push(`${st} ${n}`),
  };
  const result = await executePlan({
    pipeline: p, kinds: KINDS, store, keys, plan: planPipeline(p, keys, () => false, {}), hasher, jobs: 1, gpus: 0, keepGoing: false, reporter,
  });
  assert.equal(events, ['start s', 's 1/50 step 1', 's 50/50 step 50', 'ran s']);
  assert.equal(result.outcomes[0]!.metrics, { steps: 50 });
});

test('an interrupted run tells the reporter before it skips what is left, so no ETA follows', async () => {
  const ws = await tempWorkspace('pausepipe-exec-');
  const p = pipelineOf(ws, [instance('s', 'steps', { steps: 5 })]);
  const store = new ArtifactStore(path.join(ws, '.pausepipe'));
  const hasher = new FileHasher(path.join(ws, '.pausepipe', 'stat-cache.json'));
  const keys = await computeKeys(p, KINDS, hasher);
  const events: string[] = [];
  const reporter = { ...SILENT_REPORTER, interrupted: () => events.push('interrupted'), finish: (n: string, st: string, d?: string) => events.push(`${st} ${n}: ${d}`) };
  const stop = new AbortController();
  stop.abort();
  const result = await executePlan({
    pipeline: p, kinds: KINDS, store, keys, plan: planPipeline(p, keys, () => false, {}), hasher, jobs: 1, gpus: 0, keepGoing: false, reporter,
    signal: stop.signal,
  });
  assert.equal(events, ['interrupted', 'skipped s: run interrupted']);
  assert.is(result.interrupted, true);
});

test('a run without a GPU starts model stages while their memory estimates fit the memory free, and says so once', async () => {
  const ws = await tempWorkspace('pausepipe-exec-');
  // gpu_env asks for a GPU, so without one it runs on the CPU: here each estimates 3 GiB of host memory.
  const kinds = { ...KINDS, gpu_env: { ...KINDS.gpu_env!, resources: () => ({ cpu: 1, gpu: 1, hostMemoryMiB: 3072 }) } };
  const p = pipelineOf(ws, ['a', 'b', 'c'].map((tag) => instance(tag, 'gpu_env', { tag })));
  const store = new ArtifactStore(path.join(ws, '.pausepipe'));
  const hasher = new FileHasher(path.join(ws, '.pausepipe', 'stat-cache.json'));
  const keys = await computeKeys(p, kinds, hasher);
  const events: string[] = [];
  const reporter = { ...SILENT_REPORTER, start: (n: string) => events.push(`start ${n}`), finish: (n: string) => events.push(`end ${n}`), note: (line: string) => events.push(line) };
  await executePlan({
    pipeline: p, kinds, store, keys, plan: planPipeline(p, keys, () => false, {}), hasher, jobs: 3, gpus: 0, hostMemoryMiB: 7000, keepGoing: false, reporter,
  });
  assert.equal(events.filter((e) => e.includes('memory')), [
    'c waits for memory: without a GPU, model stages start while their memory estimates (3.0 GiB for c) fit the 6.8 GiB free when the run began, so fewer run at once than --jobs allows',
  ]);
  // Two fit in 7,000 MiB: c starts once one of them has ended.
  const firstEnd = Math.min(events.indexOf('end a'), events.indexOf('end b'));
  assert.ok(events.indexOf('start c') > firstEnd, events.join('; '));
});

test('stages ready at once reach the executor in the scheduler\'s order, though the first is slower to check its inputs', async () => {
  const ws = await tempWorkspace('pausepipe-exec-');
  const ups = [instance('up1', 'count', { counter: 'count.txt', value: 1 }), instance('up2', 'count', { counter: 'count.txt', value: 2 })];
  await runOnce(pipelineOf(ws, ups));
  // Both inputs are cached now: a and b are ready in the same step, a first (the pipeline's order).
  const p = pipelineOf(ws, [...ups, instance('a', 'count', { counter: 'count.txt', value: 3 }, { inputs: { up: 'up1' } }), instance('b', 'count', { counter: 'count.txt', value: 4 }, { inputs: { up: 'up2' } })]);
  const store = new ArtifactStore(path.join(ws, '.pausepipe'));
  const files = new FileHasher(path.join(ws, '.pausepipe', 'stat-cache.json'));
  const keys = await computeKeys(p, KINDS, files);
  const up1 = (keys.get('up1') as KeyedStage).key;
  const handed: string[] = [];
  // a's input is hashed only once b has reached the executor, had it not waited (or after half a second: then it did).
  let reached!: () => void;
  const bReached = new Promise<void>((resolve) => (reached = resolve));
  const hasher = {
    hash: async (file: string) => {
      if (file.includes(up1)) await Promise.race([bReached, new Promise((r) => setTimeout(r, 500))]);
      return files.hash(file);
    },
  };
  const local = localExecutor(KINDS);
  const executor: Executor = {
    run(job, events, signal) {
      handed.push(job.request.name);
      if (job.request.name === 'b') reached();
      return local.run(job, events, signal);
    },
  };
  const result = await executePlan({
    pipeline: p, kinds: KINDS, store, keys, plan: planPipeline(p, keys, (k) => store.has(k), {}), hasher, jobs: 2, gpus: 0,
    keepGoing: false, reporter: SILENT_REPORTER, executor,
  });
  assert.equal(result.outcomes.map((o) => o.status), ['cached', 'cached', 'ran', 'ran']);
  assert.equal(handed, ['a', 'b']);
});

test('a stage that only waits for a job elsewhere gives its slot back: with --jobs 1 three adopted jobs are followed at once', async () => {
  const ws = await tempWorkspace('pausepipe-exec-');
  const p = pipelineOf(ws, ['a', 'b', 'c'].map((n, i) => instance(n, 'count', { counter: 'count.txt', value: i })));
  const events: string[] = [];
  let all!: () => void;
  const allFollowed = new Promise<void>((resolve) => (all = resolve));
  const executor: Executor = {
    async run(job, stage) {
      events.push(`follow ${job.request.name}`);
      stage.releaseSlots?.();
      if (events.length === 3) all();
      // Each job ends once all three are followed (or after 2 s: then they were not).
      await Promise.race([allFollowed, new Promise((r) => setTimeout(r, 2000))]);
      events.push(`end ${job.request.name}`);
      return {};
    },
  };
  const { statuses } = await runOnceWith(p, { jobs: 1, executor });
  assert.equal(statuses, [['a', 'ran', null], ['b', 'ran', null], ['c', 'ran', null]]);
  assert.equal(events.slice(0, 3), ['follow a', 'follow b', 'follow c']);
});

test('slots: a GPU stage takes a GPU slot, or a CPU slot when there is none; oversized requests are clamped', () => {
  const kind = (cpu: number | undefined, gpu: number | undefined) => ({ resources: () => ({ cpu, gpu }) }) as unknown as StageKind;
  assert.equal(new Slots(4, 1).request(kind(undefined, 1), {}), { cpu: 0, gpu: 1 });
  assert.equal(new Slots(4, 0).request(kind(undefined, 1), {}), { cpu: 1, gpu: 0 });
  assert.equal(new Slots(2, 0).request(kind(8, undefined), {}), { cpu: 2, gpu: 0 });
  const slots = new Slots(2, 1);
  assert.ok(slots.take({ cpu: 2, gpu: 0 }));
  assert.not.ok(slots.take({ cpu: 1, gpu: 0 }));
  assert.ok(slots.take({ cpu: 0, gpu: 1 }));
  slots.give({ cpu: 1, gpu: 0 });
  assert.ok(slots.take({ cpu: 1, gpu: 0 }));
});

test.run();

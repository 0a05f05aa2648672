// The pure scheduler: start order, slots, GPU sharing and pinning, failures, stops and hits, without a process.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import type { Resources } from '../../stages/kind.ts';
import { Scheduler, Slots, type ScheduledStage } from '../../runtime/schedule.ts';
import { simulate } from '../helpers/schedule.ts';

const CPU: Resources = { cpu: 1 };
const MODEL: Resources = { cpu: 1, gpu: 1 };

function stage(name: string, upstream: string[] = [], extra: Partial<ScheduledStage> = {}): ScheduledStage {
  return { name, upstream, status: 'stale', resources: () => CPU, ...extra };
}

/** The demo's shape, with 3 variants: data and base → step1 → pause_model → warm[v] → eval[v] → report, plus the baseline. */
function demoShape(): ScheduledStage[] {
  const variants = ['v1', 'v2', 'v3'];
  const model = { resources: () => MODEL };
  return [
    stage('data'), stage('base'),
    stage('step1', ['base', 'data'], model), stage('eval_step1', ['step1', 'data'], model),
    stage('paused', ['data', 'base']), stage('pause_model', ['step1']),
    ...variants.map((v) => stage(`warm[${v}]`, ['pause_model', 'paused'], model)),
    ...variants.map((v) => stage(`eval[${v}]`, [`warm[${v}]`, 'paused'], model)),
    stage('more', ['step1', 'data'], model), stage('eval_baseline', ['more', 'data'], model),
    stage('report', [...variants.map((v) => `eval[${v}]`), 'eval_baseline']),
  ];
}

test('depth first: with 2 slots each variant is evaluated as soon as its warm-up ends, before the next warm-up starts', () => {
  const minutes: Record<string, number> = { data: 1, base: 1, step1: 3, paused: 1, pause_model: 1, more: 3 };
  const { starts } = simulate(demoShape(), { cpu: 2 }, (n) => minutes[n] ?? (n.startsWith('warm') ? 4 : 2));
  assert.equal(starts, [
    'data@0', 'base@0',
    'step1@1', 'paused@1',
    // step1 ends at 4: eval_step1, pause_model and more are all at depth 2; the pipeline's order breaks the tie.
    'eval_step1@4', 'pause_model@4',
    'warm[v1]@5', 'warm[v2]@6',
    // warm[v1] ends at 9: its eval (depth 4) goes before warm[v3] (depth 3), and so on down each chain.
    'eval[v1]@9', 'eval[v2]@10', 'warm[v3]@11', 'more@12', 'eval[v3]@15', 'eval_baseline@15', 'report@17',
  ]);
});

test('a hit to check again waits for its recomputed upstream: runs when it ran, is a hit when it failed or was a hit', () => {
  const stages = [
    stage('up'), stage('down', ['up'], { status: 'fresh', recheck: true }), stage('other', [], { status: 'fresh' }),
  ];
  const grant = { cpu: 1, gpu: 0, gpuIds: [] };
  const ran = new Scheduler(stages, { cpu: 1, gpus: 0, keepGoing: false });
  assert.equal(ran.next(), [{ type: 'hit', name: 'other' }, { type: 'run', name: 'up', grant }]);
  ran.finished('up', 'ran');
  assert.equal(ran.next(), [{ type: 'run', name: 'down', grant }]);
  const failed = new Scheduler(stages, { cpu: 1, gpus: 0, keepGoing: true });
  failed.next();
  failed.finished('up', 'failed');
  assert.equal(failed.next(), [{ type: 'hit', name: 'down' }]);
});

test('a dropped stage is skipped with the reason before it starts, what depends on it after it; the others go on', () => {
  const stages = [stage('a'), stage('b'), stage('b2', ['b']), stage('c', ['a'])];
  const grant = { cpu: 1, gpu: 0, gpuIds: [] };
  const s = new Scheduler(stages, { cpu: 1, gpus: 0, keepGoing: false });
  assert.equal(s.next(), [{ type: 'run', name: 'a', grant }]);
  s.drop('b', 'replaced');
  s.drop('a', 'replaced, but it runs: the caller stops it');
  assert.equal(s.next(), [{ type: 'skip', name: 'b', reason: 'replaced' }, { type: 'skip', name: 'b2', reason: 'upstream b skipped' }]);
  s.finished('a', 'ran');
  assert.equal(s.next(), [{ type: 'run', name: 'c', grant }]);
  s.finished('c', 'ran');
  assert.ok(s.done);
  assert.equal(['a', 'b', 'b2', 'c'].map((n) => s.statusOf(n)), ['ran', 'skipped', 'skipped', 'ran']);
});

test('added stages join a running run: a hit settles at once, a stage starts when a slot frees, one reading a running stage waits for it', () => {
  const grant = { cpu: 1, gpu: 0, gpuIds: [] };
  const s = new Scheduler([stage('train'), stage('eval', ['train']), stage('side')], { cpu: 2, gpus: 0, keepGoing: false });
  assert.equal(s.next(), [{ type: 'run', name: 'train', grant }, { type: 'run', name: 'side', grant }]);
  assert.ok(s.add([stage('data2', [], { status: 'fresh' }), stage('train2', ['data2']), stage('eval2', ['train', 'train2'])]));
  assert.equal(s.next(), [{ type: 'hit', name: 'data2' }], 'no slot is free: train2 waits');
  s.finished('side', 'ran');
  assert.equal(s.next(), [{ type: 'run', name: 'train2', grant }]);
  s.finished('train2', 'ran');
  assert.equal(s.next(), [], 'eval2 waits for the run\'s train');
  s.finished('train', 'ran');
  // Deepest first, as in any run: eval2 reads train2, which reads data2.
  assert.equal(s.next(), [{ type: 'run', name: 'eval2', grant }, { type: 'run', name: 'eval', grant }]);
  s.finished('eval', 'ran');
  assert.not.ok(s.done, 'an added stage still runs');
  s.finished('eval2', 'ran');
  assert.equal([s.next(), s.done], [[], true]);
  assert.not.ok(s.add([stage('late')]), 'a run that has ended takes nothing');
});

test('added stages are refused once the run starts nothing new, and checked before any is taken', () => {
  const s = new Scheduler([stage('a'), stage('b')], { cpu: 1, gpus: 0, keepGoing: false });
  s.next();
  assert.throws(() => s.add([stage('c', ['a']), stage('d', ['missing'])]), /d needs missing, which does not come before it/);
  assert.throws(() => s.add([stage('b')]), /b is there twice/);
  s.finished('a', 'failed');
  assert.not.ok(s.add([stage('c', ['a'])]), 'after a failure without --keep-going');
  assert.equal(s.next(), [{ type: 'skip', name: 'b', reason: 'not started after a failure' }]);
  assert.equal([s.done, s.statusOf('c')], [true, undefined]);
  const interrupted = new Scheduler([stage('a')], { cpu: 1, gpus: 0, keepGoing: true });
  interrupted.next();
  interrupted.interrupt();
  assert.not.ok(interrupted.add([stage('c')]), 'after an interrupt');
});

test('without --keep-going a failure starts nothing more; what already runs finishes', () => {
  const stages = [stage('a'), stage('b'), stage('a2', ['a']), stage('c')];
  const r = simulate(stages, { cpu: 2 }, (n) => (n === 'b' ? 3 : 1), (n) => (n === 'a' ? 'failed' : 'ran'));
  assert.equal(r.decisions, ['run a', 'run b', 'skip a2', 'skip c']);
  assert.equal(r.statuses, { a: 'failed', b: 'ran', a2: 'skipped', c: 'skipped' });
});

test('with --keep-going a failure skips only what depends on it, naming the broken upstream', () => {
  const stages = [stage('a'), stage('a2', ['a']), stage('a3', ['a2']), stage('c')];
  const s = new Scheduler(stages, { cpu: 1, gpus: 0, keepGoing: true });
  assert.equal(s.next(), [{ type: 'run', name: 'a', grant: { cpu: 1, gpu: 0, gpuIds: [] } }]);
  s.finished('a', 'failed');
  assert.equal(s.next(), [
    { type: 'skip', name: 'a2', reason: 'upstream a failed' },
    { type: 'skip', name: 'a3', reason: 'upstream a2 skipped' },
    { type: 'run', name: 'c', grant: { cpu: 1, gpu: 0, gpuIds: [] } },
  ]);
  s.finished('c', 'ran');
  assert.equal(s.next(), []);
  assert.ok(s.done);
});

test('with --keep-going a stage taking partial inputs waits for every upstream, then runs without the broken ones; what reads it is skipped', () => {
  const grant = { cpu: 1, gpu: 0, gpuIds: [] };
  const stages = [
    stage('train[a]'), stage('train[b]'), stage('train[c]'),
    stage('eval[a]', ['train[a]']), stage('eval[b]', ['train[b]']), stage('eval[c]', ['train[c]']),
    stage('report', ['eval[a]', 'eval[b]', 'eval[c]'], { partialInputs: true }),
    stage('after', ['report']),
  ];
  const s = new Scheduler(stages, { cpu: 1, gpus: 0, keepGoing: true });
  assert.equal(s.next(), [{ type: 'run', name: 'train[a]', grant }]);
  s.finished('train[a]', 'ran');
  assert.equal(s.next(), [{ type: 'run', name: 'eval[a]', grant }]);
  s.finished('eval[a]', 'ran');
  assert.equal(s.next(), [{ type: 'run', name: 'train[b]', grant }]);
  s.finished('train[b]', 'failed');
  // eval[c] still runs after this: the report waits for it rather than being skipped for eval[b].
  assert.equal(s.next(), [{ type: 'skip', name: 'eval[b]', reason: 'upstream train[b] failed' }, { type: 'run', name: 'train[c]', grant }]);
  s.finished('train[c]', 'ran');
  assert.equal(s.next(), [{ type: 'run', name: 'eval[c]', grant }]);
  s.finished('eval[c]', 'failed');
  assert.equal(s.next(), [{ type: 'run', name: 'report', grant, missing: ['eval[b]', 'eval[c]'] }]);
  s.finished('report', 'ran');
  assert.equal(s.next(), [{ type: 'skip', name: 'after', reason: 'upstream report partial: a partial result feeds no stage' }]);
  assert.ok(s.done);
  assert.equal([s.statusOf('report'), s.isPartial('report'), s.isPartial('eval[a]')], ['ran', true, false]);
});

test('a stage taking partial inputs is skipped as any other when none of its inputs finished, or without --keep-going', () => {
  const stages = [stage('e1'), stage('e2'), stage('report', ['e1', 'e2'], { partialInputs: true })];
  const none = simulate(stages, { cpu: 2, keepGoing: true }, () => 1, () => 'failed');
  assert.equal(none.decisions, ['run e1', 'run e2', 'skip report']);
  const one = simulate(stages, { cpu: 2, keepGoing: true }, () => 1, (n) => (n === 'e2' ? 'failed' : 'ran'));
  assert.equal(one.decisions, ['run e1', 'run e2', 'run report']);
  const stopping = simulate(stages, { cpu: 2, keepGoing: false }, () => 1, (n) => (n === 'e2' ? 'failed' : 'ran'));
  assert.equal(stopping.decisions, ['run e1', 'run e2', 'skip report']);
  const s = new Scheduler(stages, { cpu: 2, gpus: 0, keepGoing: true });
  s.next();
  s.finished('e1', 'failed');
  s.finished('e2', 'failed');
  assert.equal(s.next(), [{ type: 'skip', name: 'report', reason: 'upstream e1 failed' }]);
  const complete = new Scheduler(stages, { cpu: 2, gpus: 0, keepGoing: true });
  complete.next();
  complete.finished('e1', 'ran');
  complete.finished('e2', 'cached');
  // Every input finished: an ordinary run, no `missing`.
  assert.equal(complete.next(), [{ type: 'run', name: 'report', grant: { cpu: 1, gpu: 0, gpuIds: [] } }]);
});

test('an interrupt lets the running stages end and skips the rest as interrupted', () => {
  const s = new Scheduler([stage('a'), stage('b'), stage('c', ['a'])], { cpu: 1, gpus: 0, keepGoing: true });
  assert.equal(s.next().map((d) => `${d.type} ${d.name}`), ['run a']);
  s.interrupt();
  assert.equal(s.next(), []);
  s.finished('a', 'aborted');
  assert.equal(s.next(), [
    { type: 'skip', name: 'c', reason: 'upstream a aborted' },
    { type: 'skip', name: 'b', reason: 'run interrupted' },
  ]);
  assert.ok(s.done);
});

test('hits take no slot and settle at once, restores are waited for, and a stage that cannot run fails with its reasons', () => {
  const stages = [
    stage('hit', [], { status: 'fresh' }),
    stage('outs', [], { status: 'fresh', restore: true }),
    stage('uses', ['hit', 'outs']),
    stage('nokey', [], { status: 'error', reasons: ['file x missing'] }),
  ];
  const s = new Scheduler(stages, { cpu: 1, gpus: 0, keepGoing: true });
  assert.equal(s.next(), [
    { type: 'hit', name: 'hit' },
    { type: 'restore', name: 'outs' },
    { type: 'fail', name: 'nokey', reason: 'file x missing' },
  ]);
  s.finished('outs', 'cached');
  assert.equal(s.next(), [{ type: 'run', name: 'uses', grant: { cpu: 1, gpu: 0, gpuIds: [] } }]);
  s.finished('uses', 'ran');
  assert.equal([s.next(), s.done, s.statusOf('nokey'), s.statusOf('hit')], [[], true, 'failed', 'cached']);
});

test('a stage that cannot run stops a run without --keep-going before anything starts', () => {
  const r = simulate([stage('a'), stage('nokey', [], { status: 'error', reasons: ['file x missing'] })], { cpu: 2 });
  assert.equal(r.decisions, ['fail nokey', 'skip a']);
});

test('GPU stages with memory estimates share a GPU while they fit; the fourth waits for a free share', () => {
  const small = { resources: () => ({ cpu: 1, gpu: 1, gpuMemoryMiB: 5000 }) };
  const stages = ['s1', 's2', 's3', 's4'].map((n) => stage(n, [], small));
  const r = simulate(stages, { cpu: 8, gpus: 1, gpuMemoryMiB: 16000 }, (n) => (n === 's2' ? 1 : 2));
  assert.equal(r.starts, ['s1@0', 's2@0', 's3@0', 's4@1']);
  assert.equal(r.decisions.slice(0, 3), ['run s1 gpu0', 'run s2 gpu0', 'run s3 gpu0']);
});

test('two GPUs: stages spread over idle GPUs first, then share; a stage without an estimate waits for an idle GPU', () => {
  const small = { resources: () => ({ cpu: 1, gpu: 1, gpuMemoryMiB: 4000 }) };
  const whole = { resources: () => ({ cpu: 1, gpu: 1 }) };
  const stages = [stage('a', [], small), stage('b', [], small), stage('c', [], small), stage('big', [], whole)];
  const r = simulate(stages, { cpu: 8, gpus: 2, gpuMemoryMiB: 10000 }, (n) => (n === 'a' ? 1 : 3));
  assert.equal(r.decisions, ['run a gpu0', 'run b gpu1', 'run c gpu0', 'run big gpu1']);
  assert.equal(r.starts, ['a@0', 'b@0', 'c@0', 'big@3']);
});

test('--stages-per-gpu overrides the estimates: N stages share a GPU whether or not they declare memory', () => {
  const whole = { resources: () => ({ cpu: 1, gpu: 1 }) };
  const huge = { resources: () => ({ cpu: 1, gpu: 1, gpuMemoryMiB: 90000 }) };
  const stages = [stage('a', [], whole), stage('b', [], huge), stage('c', [], whole)];
  const r = simulate(stages, { cpu: 8, gpus: 1, gpuMemoryMiB: 16000, stagesPerGpu: 2 });
  assert.equal(r.starts, ['a@0', 'b@0', 'c@1']);
  assert.equal(simulate(stages, { cpu: 8, gpus: 1, gpuMemoryMiB: 16000, stagesPerGpu: 1 }).starts, ['a@0', 'b@1', 'c@2']);
});

test('a training stage that will checkpoint on this GPU shares it by its checkpointed estimate; one that fits keeps its own', () => {
  const slots = new Slots(8, 1, { gpuMemoryMiB: 80_000 });
  assert.equal(slots.fit({ cpu: 1, gpu: 1, gpuMemoryMiB: 120_000, gpuMemoryCheckpointedMiB: 30_000 }), { cpu: 1, gpu: 1, gpuMemoryMiB: 30_000 });
  assert.equal(slots.fit({ cpu: 1, gpu: 1, gpuMemoryMiB: 50_000, gpuMemoryCheckpointedMiB: 30_000 }), { cpu: 1, gpu: 1, gpuMemoryMiB: 50_000 });
  assert.equal(slots.fit({ cpu: 1, gpu: 1, gpuMemoryMiB: 200_000, gpuMemoryCheckpointedMiB: 90_000 }), { cpu: 1, gpu: 1 });
  const seed = { resources: () => ({ cpu: 1, gpu: 1, gpuMemoryMiB: 120_000, gpuMemoryCheckpointedMiB: 30_000 }) };
  const r = simulate(['a', 'b', 'c'].map((n) => stage(n, [], seed)), { cpu: 8, gpus: 1, gpuMemoryMiB: 80_000 });
  assert.equal(r.starts, ['a@0', 'b@0', 'c@1']);
});

test('perGpu and inHostMemory say how many stages of a request the slots start at once, as take places them (plan\'s figures)', () => {
  const startable = (slots: Slots, r: ReturnType<Slots['fit']>) => {
    let n = 0;
    while (slots.take(r)) n++;
    return n;
  };
  const cases: [ConstructorParameters<typeof Slots>[2], Resources][] = [
    [{ gpuMemoryMiB: 143_771 }, { cpu: 1, gpu: 1, gpuMemoryMiB: 254_591, gpuMemoryCheckpointedMiB: 47_033 }],
    [{ gpuMemoryMiB: 143_771 }, { cpu: 1, gpu: 1, gpuMemoryMiB: 45_264 }],
    [{ gpuMemoryMiB: 100_000 }, { cpu: 1, gpu: 1, gpuMemoryMiB: 40_000 }],
    [{ gpuMemoryMiB: 143_771 }, { cpu: 1, gpu: 1, gpuMemoryMiB: 200_000 }],
    [{}, { cpu: 1, gpu: 1, gpuMemoryMiB: 1000 }],
    [{ stagesPerGpu: 5 }, { cpu: 1, gpu: 1 }],
  ];
  assert.equal(cases.map(([sharing, r]) => new Slots(64, 1, sharing).perGpu(new Slots(64, 1, sharing).fit(r))), [3, 3, 2, 1, 1, 5]);
  for (const [sharing, r] of cases) {
    const slots = new Slots(64, 1, sharing);
    assert.is(startable(slots, slots.fit(r)), slots.perGpu(slots.fit(r)));
  }
  const host = new Slots(64, 0, { hostMemoryMiB: 10_240 });
  const request = host.fit({ cpu: 1, gpu: 1, hostMemoryMiB: 4608 });
  assert.is(host.inHostMemory(request), 2);
  assert.is(startable(host, request), 2);
  // Larger than the memory: it runs, alone.
  assert.is(new Slots(64, 0, { hostMemoryMiB: 1000 }).inHostMemory(new Slots(64, 0, { hostMemoryMiB: 1000 }).fit({ cpu: 1, hostMemoryMiB: 4608 })), 1);
  assert.is(new Slots(64, 0).inHostMemory(new Slots(64, 0).fit({ cpu: 1, hostMemoryMiB: 4608 })), undefined);
});

test('slots: an estimate beyond the GPU or an unknown GPU memory means a GPU of its own; CPU slots still bound sharing', () => {
  assert.equal(new Slots(4, 1, { gpuMemoryMiB: 8000 }).fit({ gpu: 1, gpuMemoryMiB: 9000 }), { cpu: 0, gpu: 1 });
  assert.equal(new Slots(4, 1).fit({ gpu: 1, gpuMemoryMiB: 1000 }), { cpu: 0, gpu: 1 });
  assert.equal(new Slots(4, 1, { gpuMemoryMiB: 8000 }).fit({ cpu: 1, gpu: 1, gpuMemoryMiB: 1000 }), { cpu: 1, gpu: 1, gpuMemoryMiB: 1000 });
  const slots = new Slots(1, 1, { gpuMemoryMiB: 8000 });
  const first = slots.take({ cpu: 1, gpu: 1, gpuMemoryMiB: 1000 });
  assert.equal(first, { cpu: 1, gpu: 1, gpuMemoryMiB: 1000, gpuIds: [0] });
  assert.is(slots.take({ cpu: 1, gpu: 1, gpuMemoryMiB: 1000 }), undefined);
  slots.give(first!);
  assert.equal(slots.take({ cpu: 0, gpu: 1 }), { cpu: 0, gpu: 1, gpuIds: [0] });
});

test('a multi-GPU stage takes whole idle GPUs, the lowest indices first', () => {
  const s = new Slots(8, 3, { gpuMemoryMiB: 8000 });
  assert.equal(s.take({ cpu: 1, gpu: 1, gpuMemoryMiB: 100 })?.gpuIds, [0]);
  assert.equal(s.take({ cpu: 1, gpu: 2 })?.gpuIds, [1, 2]);
  assert.is(s.take({ cpu: 1, gpu: 1 }), undefined);
  assert.equal(s.take({ cpu: 1, gpu: 1, gpuMemoryMiB: 100 })?.gpuIds, [0]);
});

test('a stage waiting for idle GPUs is not overtaken by later one-GPU stages that keep the GPUs busy; CPU stages still start', () => {
  const one = { resources: () => MODEL };
  const two = { resources: () => ({ cpu: 1, gpu: 2 }) };
  const stages = [stage('s0', [], one), stage('big', [], two), ...['s1', 's2', 's3', 's4'].map((n) => stage(n, [], one)), stage('cpu')];
  // Before, big started last (s0@0 s1@0 s2@0 s3@1 s4@1 big@2): every GPU that freed went to the next one-GPU stage.
  const r = simulate(stages, { cpu: 8, gpus: 2, stagesPerGpu: 2 }, (n) => (n === 's0' ? 2 : 1));
  assert.equal(r.decisions, ['run s0 gpu0', 'run cpu', 'run big gpu0+1', 'run s1 gpu0', 'run s2 gpu1', 'run s3 gpu0', 'run s4 gpu1']);
  assert.equal(r.starts, ['s0@0', 'cpu@0', 'big@2', 's1@3', 's2@3', 's3@3', 's4@3']);
  // By memory: a stage without an estimate waits for its own GPU rather than for every sharing stage to be done.
  const small = { resources: () => ({ cpu: 1, gpu: 1, gpuMemoryMiB: 4000 }) };
  const whole = [stage('a', [], small), stage('alone', [], one), stage('b', [], small), stage('c', [], small)];
  assert.equal(simulate(whole, { cpu: 8, gpus: 1, gpuMemoryMiB: 10000 }, (n) => (n === 'a' ? 1 : 2)).starts, ['a@0', 'alone@1', 'b@3', 'c@3']);
});

test('without a GPU, model stages start while their host memory estimates fit the memory free; on a GPU they do not count', () => {
  const model = (mib: number) => ({ resources: () => ({ cpu: 1, gpu: 1, gpuMemoryMiB: 2000, hostMemoryMiB: mib }) });
  const stages = [stage('a', [], model(1800)), stage('b', [], model(1800)), stage('c', [], model(1800)), stage('d', [], model(300)), stage('cpu')];
  // --jobs 4 on 4 GiB free: two 1.8 GiB stages at once; d waits behind c rather than overtake it; a CPU stage starts.
  const r = simulate(stages, { cpu: 4, gpus: 0, hostMemoryMiB: 4096 });
  assert.equal(r.starts, ['a@0', 'b@0', 'cpu@0', 'c@1', 'd@1']);
  // What the run says once: the first stage held back for memory alone while a CPU slot was free.
  const s = new Scheduler(stages, { cpu: 4, gpus: 0, hostMemoryMiB: 4096, keepGoing: false });
  assert.equal(s.next().map((d) => d.name), ['a', 'b', 'cpu']);
  assert.equal(s.waitingForMemory, { name: 'c', hostMemoryMiB: 1800 });
  s.finished('a', 'ran');
  assert.equal(s.next().map((d) => d.name), ['c', 'd']);
  assert.is(s.waitingForMemory, undefined);
  // Without a count of memory, --jobs alone decides.
  assert.equal(simulate(stages, { cpu: 4, gpus: 0 }).starts, ['a@0', 'b@0', 'c@0', 'd@0', 'cpu@1']);
  // On a GPU the model is in GPU memory: host memory does not hold them back.
  assert.equal(simulate(stages, { cpu: 4, gpus: 1, gpuMemoryMiB: 8000, hostMemoryMiB: 4096 }).starts, ['a@0', 'b@0', 'c@0', 'd@0', 'cpu@1']);
});

test('slots: a stage estimating more host memory than is free runs alone; one without an estimate is not counted', () => {
  const slots = new Slots(4, 0, { hostMemoryMiB: 4096 });
  assert.equal(slots.fit({ cpu: 1, gpu: 1, hostMemoryMiB: 9000 }), { cpu: 1, gpu: 0, hostMemoryMiB: 4096 });
  assert.equal(slots.fit({ cpu: 1 }), { cpu: 1, gpu: 0 });
  const big = slots.take(slots.fit({ cpu: 1, gpu: 1, hostMemoryMiB: 9000 }));
  assert.equal(big, { cpu: 1, gpu: 0, hostMemoryMiB: 4096, gpuIds: [] });
  assert.is(slots.take({ cpu: 1, gpu: 0, hostMemoryMiB: 1 }), undefined);
  assert.equal(slots.take({ cpu: 1, gpu: 0 }), { cpu: 1, gpu: 0, gpuIds: [] });
  slots.give(big!);
  assert.equal(slots.take({ cpu: 1, gpu: 0, hostMemoryMiB: 4096 }), { cpu: 1, gpu: 0, hostMemoryMiB: 4096, gpuIds: [] });
});

test('a running stage that releases its slots lets the next one start, and gives nothing back twice when it ends', () => {
  const grant = { cpu: 1, gpu: 0, gpuIds: [] };
  const s = new Scheduler([stage('adopted', [], { resources: () => MODEL }), stage('b'), stage('c')], { cpu: 1, gpus: 1, keepGoing: false });
  assert.equal(s.next(), [{ type: 'run', name: 'adopted', grant: { cpu: 1, gpu: 1, gpuIds: [0] } }]);
  s.release('adopted');
  assert.equal(s.next(), [{ type: 'run', name: 'b', grant }]);
  s.finished('adopted', 'ran');
  // Had the adopted stage's slot come back again when it ended, c would start now.
  assert.equal(s.next(), []);
  s.finished('b', 'ran');
  assert.equal(s.next(), [{ type: 'run', name: 'c', grant }]);
});

test('a stage listed before one of its upstreams is refused (stages come in topological order)', () => {
  assert.throws(() => new Scheduler([stage('b', ['a']), stage('a')], { cpu: 1, gpus: 0, keepGoing: false }), /b needs a/);
});

test.run();

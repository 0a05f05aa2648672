// Planning is pure: from keys, cache contents and the last run's state to fresh/stale with human reasons.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { stageKey, type KeyIngredients } from '../../runtime/hash.ts';
import type { StageKeys } from '../../runtime/keys.ts';
import { formatChange, paramChanges, planPipeline, type PreviousState } from '../../runtime/plan.ts';
import { instance, pipelineOf } from '../helpers/runner.ts';

function keyed(ing: KeyIngredients) {
  return { key: stageKey(ing), ingredients: ing };
}

const DATA: KeyIngredients = { kind: 'gsm8k', kindVersion: 1, params: { path: 'd' }, inputs: {}, files: { 'data/train.jsonl': 'aa' } };
const warmIng = (lr: number, dataKey: string, version = 2): KeyIngredients => ({
  kind: 'sft', kindVersion: version, params: { lr, train: { embed: true } }, inputs: { data: [dataKey] }, files: {},
});

const pipeline = pipelineOf('/ws', [
  instance('data', 'gsm8k', { path: 'd' }),
  instance('warm', 'sft', { lr: 1e-4 }, { inputs: { data: 'data' } }),
  instance('eval', 'evaluate', {}, { inputs: { model: 'warm' } }),
]);

function keysOf(data: KeyIngredients, warm: KeyIngredients): StageKeys {
  const d = keyed(data);
  const w = keyed(warm);
  const e = keyed({ kind: 'evaluate', kindVersion: 1, params: {}, inputs: { model: [w.key] }, files: {} });
  return new Map([['data', d], ['warm', w], ['eval', e]]);
}

function previousOf(keys: StageKeys): PreviousState {
  return Object.fromEntries([...keys].map(([n, k]) => [n, k as { key: string; ingredients: KeyIngredients }]));
}

test('without a previous run every stage is a new stage', () => {
  const plan = planPipeline(pipeline, keysOf(DATA, warmIng(5e-5, keyed(DATA).key)), () => false, {});
  assert.equal(plan.stages.map((s) => [s.name, s.status, s.reasons]), [
    ['data', 'stale', ['new stage']], ['warm', 'stale', ['new stage']], ['eval', 'stale', ['new stage']],
  ]);
  assert.equal(plan.counts, { fresh: 0, stale: 3, error: 0 });
});

test('a changed parameter makes the stage and its descendants stale, each with its reason', () => {
  const before = keysOf(DATA, warmIng(5e-5, keyed(DATA).key));
  const after = keysOf(DATA, warmIng(1e-4, keyed(DATA).key));
  const cached = new Set([...before.values()].map((k) => (k as { key: string }).key));
  const plan = planPipeline(pipeline, after, (k) => cached.has(k), previousOf(before));
  assert.equal(plan.stages.map((s) => [s.name, s.status, s.reasons]), [
    ['data', 'fresh', []],
    ['warm', 'stale', ['param lr: 5e-5 → 1e-4']],
    ['eval', 'stale', ['upstream warm stale']],
  ]);
});

test('a changed file and a bumped kind version are named', () => {
  const before = keysOf(DATA, warmIng(5e-5, keyed(DATA).key));
  const data2 = { ...DATA, files: { 'data/train.jsonl': 'bb' } };
  const after = keysOf(data2, warmIng(5e-5, keyed(data2).key, 3));
  const plan = planPipeline(pipeline, after, () => false, previousOf(before));
  assert.equal(plan.stages.map((s) => s.reasons), [
    ['file data/train.jsonl changed'],
    ['kind sft version 2 → 3', 'upstream data stale'],
    ['upstream warm stale'],
  ]);
});

test('a changed workspace folder (`deps: ["."]`) is named `.`', () => {
  const whole = { ...DATA, files: { '': 'aa' } };
  const before = keysOf(whole, warmIng(5e-5, keyed(whole).key));
  const edited = { ...DATA, files: { '': 'bb' } };
  const plan = planPipeline(pipeline, keysOf(edited, warmIng(5e-5, keyed(edited).key)), () => false, previousOf(before));
  assert.equal(plan.stages[0]!.reasons, ['file . changed']);
});

test('an upstream that is fresh but differs from last time reads as a changed input', () => {
  const before = keysOf(DATA, warmIng(5e-5, 'old-data-key'));
  const after = keysOf(DATA, warmIng(5e-5, keyed(DATA).key));
  const dataKey = keyed(DATA).key;
  const plan = planPipeline(pipeline, after, (k) => k === dataKey, previousOf(before));
  assert.equal(plan.stages[1]!.reasons, ['input data changed']);
});

test('identical ingredients that are not cached (deleted by gc, or failed last time) say so', () => {
  const keys = keysOf(DATA, warmIng(5e-5, keyed(DATA).key));
  const plan = planPipeline(pipeline, keys, () => false, previousOf(keys));
  assert.equal(plan.stages.map((s) => s.reasons), [['not in cache'], ['not in cache'], ['not in cache']]);
});

test('two stages with one key: the first computes it, the second says it reuses it', () => {
  const twins = pipelineOf('/ws', [instance('step1', 'gsm8k', { path: 'd' }), instance('baseline[epochs=1]', 'gsm8k', { path: 'd' })]);
  const k = keyed(DATA);
  const plan = planPipeline(twins, new Map([['step1', k], ['baseline[epochs=1]', k]]), () => false, {});
  assert.equal(plan.stages.map((s) => [s.name, s.reasons]), [
    ['step1', ['new stage']],
    ['baseline[epochs=1]', ['same key as step1: computed once']],
  ]);
});

test('a change that leads to a cached key is fresh, with what changed since the last run', () => {
  const before = keysOf(DATA, warmIng(5e-5, keyed(DATA).key));
  const after = keysOf(DATA, warmIng(1e-4, keyed(DATA).key));
  const plan = planPipeline(pipeline, after, () => true, previousOf(before));
  assert.equal(plan.stages.map((s) => [s.name, s.status, s.reasons]), [
    ['data', 'fresh', []],
    ['warm', 'fresh', ['param lr: 5e-5 → 1e-4']],
    ['eval', 'fresh', ['input model changed']],
  ]);
  assert.equal(plan.counts, { fresh: 3, stale: 0, error: 0 });
});

test('a renamed stage whose key is cached is fresh without reasons', () => {
  const keys = keysOf(DATA, warmIng(5e-5, keyed(DATA).key));
  const renamed = pipelineOf('/ws', [instance('dataset', 'gsm8k', { path: 'd' })]);
  const plan = planPipeline(renamed, new Map([['dataset', keys.get('data')!]]), () => true, {});
  assert.equal(plan.stages, [{ name: 'dataset', status: 'fresh', key: keyed(DATA).key, reasons: [] }]);
});

/** A report over `eval[v=1..n]`, each eval with `lr` as its only ingredient. */
function matrixOf(n: number, lr: number): { pipeline: ReturnType<typeof pipelineOf>; keys: StageKeys } {
  const evals = Array.from({ length: n }, (_, i) => `eval[v=${i + 1}]`);
  const keys: StageKeys = new Map(evals.map((name, i) => [name, keyed({ kind: 'evaluate', kindVersion: 1, params: { lr, v: i }, inputs: {}, files: {} })]));
  const runs = evals.map((name) => (keys.get(name) as { key: string }).key);
  keys.set('table', keyed({ kind: 'report', kindVersion: 6, params: {}, inputs: { runs }, files: {} }));
  const stages = [...evals.map((name) => instance(name, 'evaluate', { lr })), instance('table', 'report', {}, { inputs: { runs: evals } })];
  return { pipeline: pipelineOf('/ws', stages), keys };
}

test('a report over many stale variants names the first three and counts the others', () => {
  const before = matrixOf(240, 0.1);
  const after = matrixOf(240, 0.2);
  const plan = planPipeline(after.pipeline, after.keys, () => false, previousOf(before.keys));
  assert.equal(plan.stages.at(-1)!.reasons, [
    'upstream eval[v=1] stale', 'upstream eval[v=2] stale', 'upstream eval[v=3] stale', '237 more upstream stages stale',
  ]);
  const forced = planPipeline(after.pipeline, after.keys, () => true, previousOf(after.keys), { forced: new Set(after.keys.keys()) });
  assert.equal(forced.stages.at(-1)!.reasons, ['forced (--force)']);
  const fromEvals = planPipeline(after.pipeline, after.keys, () => true, {}, { forced: new Set([...after.keys.keys()].filter((n) => n !== 'table')) });
  assert.equal(fromEvals.stages.at(-1)!.reasons, [
    'upstream eval[v=1] re-runs (--force)', 'upstream eval[v=2] re-runs (--force)', 'upstream eval[v=3] re-runs (--force)',
    '237 more upstream stages re-run (--force)',
  ]);
});

test('four stale upstream stages are each named', () => {
  const before = matrixOf(4, 0.1);
  const after = matrixOf(4, 0.2);
  const plan = planPipeline(after.pipeline, after.keys, () => false, previousOf(before.keys));
  assert.equal(plan.stages.at(-1)!.reasons, [1, 2, 3, 4].map((v) => `upstream eval[v=${v}] stale`));
});

test('a stage without a key is an error, and so are its users', () => {
  const keys: StageKeys = new Map([
    ['data', { error: 'file data/train.jsonl missing' }],
    ['warm', { error: 'upstream data has no key' }],
    ['eval', { error: 'upstream warm has no key' }],
  ]);
  const plan = planPipeline(pipeline, keys, () => false, {});
  assert.equal(plan.stages.map((s) => [s.status, s.reasons[0]]), [
    ['error', 'file data/train.jsonl missing'], ['error', 'upstream data has no key'], ['error', 'upstream warm has no key'],
  ]);
  assert.equal(plan.counts, { fresh: 0, stale: 0, error: 3 });
});

test('parameter changes go into nested objects with dotted names', () => {
  assert.equal(paramChanges(
    { lr: 5e-5, train: { embed: true, head: false }, tag: 'a', gone: 1 },
    { lr: 5e-5, train: { embed: false, head: false, lora: true }, tag: 'b', cols: ['x'] },
  ), [
    'param cols: added',
    'param gone: removed',
    'param tag: "a" → "b"',
    'param train.embed: true → false',
    'param train.lora: added',
  ]);
});

test('long values show the window where they start to differ', () => {
  const a = `run ${'x'.repeat(80)} --lr 0.1 --steps 10`;
  const b = `run ${'x'.repeat(80)} --lr 0.2 --steps 10`;
  assert.is(formatChange(a, b), `…${'x'.repeat(12)} --lr 0.1 --steps 10" → …${'x'.repeat(12)} --lr 0.2 --steps 10"`);
  assert.is(formatChange(0.00005, 100), '5e-5 → 100');
});

test.run();

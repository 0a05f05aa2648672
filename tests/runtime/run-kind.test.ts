// runtime/run-kind.ts: errors naming an upstream stage's cache folder name the input and its stage instead; a result the manifest cannot store as returned fails the stage.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import type { ArtifactRef } from '../../stages/kind.ts';
import { checkedResult, nameInputFolders, runStageKind } from '../../runtime/run-kind.ts';

const ref = (stage: string, dir: string): ArtifactRef => ({ stage, key: 'k', kind: 'count', dir, variant: {}, params: {}, metrics: {} });

test('a path inside an input\'s folder, and the folder itself, become the input\'s and its stage\'s names', () => {
  const inputs = { data: [ref('paused', '/c/objects/ab/abc/artifacts')] };
  assert.is(nameInputFolders('/c/objects/ab/abc/artifacts/train.jsonl: missing', inputs), 'input `data` (stage `paused`): train.jsonl: missing');
  assert.is(nameInputFolders('The dataset in /c/objects/ab/abc/artifacts has 1 bad row(s)', inputs), 'The dataset in input `data` (stage `paused`) has 1 bad row(s)');
  assert.is(nameInputFolders('open \'/c/objects/ab/abc/artifacts/sub/x.json\'', inputs), 'open \'input `data` (stage `paused`): sub/x.json\'');
});

test('one stage given as two inputs names both; each stage of a collection is named; other paths stay', () => {
  const base = ref('base', '/c/o/1/artifacts');
  assert.is(nameInputFolders('/c/o/1/artifacts/train.jsonl: missing', { model: [base], data: [base] }), 'inputs `model` and `data` (stage `base`): train.jsonl: missing');
  const evals = { results: [ref('eval[a=1]', '/c/o/2/artifacts'), ref('eval[a=2]', '/c/o/3/artifacts')] };
  assert.is(nameInputFolders('/c/o/3/artifacts/m.json: bad; /c/o/2/artifacts/m.json: bad', evals),
    'input `results` (stage `eval[a=2]`): m.json: bad; input `results` (stage `eval[a=1]`): m.json: bad');
  // A folder whose name merely starts like an input's is not that input's.
  assert.is(nameInputFolders('/c/o/1/artifactsX/y: missing', { data: [base] }), '/c/o/1/artifactsX/y: missing');
  assert.is(nameInputFolders('no path here', { data: [base] }), 'no path here');
});

function refusal(result: unknown): string {
  try {
    checkedResult('mine', result);
  } catch (err) {
    return (err as Error).message;
  }
  return 'accepted';
}

test('metrics JSON would change or drop are refused with the metric named, instead of stored as null or left out', () => {
  const store = 'give finite numbers, strings, booleans, null, lists and plain objects';
  assert.is(refusal({ metrics: { acc: Number.NaN } }), `stage kind \`mine\`: run() returned a metric the manifest cannot store: metrics.acc is NaN, which JSON cannot represent; ${store}`);
  assert.is(refusal({ metrics: { per_task: { gsm8k: Infinity } } }),
    `stage kind \`mine\`: run() returned a metric the manifest cannot store: metrics.per_task.gsm8k is Infinity, which JSON cannot represent; ${store}`);
  assert.is(refusal({ metrics: { f: () => 1 } }), `stage kind \`mine\`: run() returned a metric the manifest cannot store: metrics.f is a function, not a JSON value; ${store}`);
  assert.is(refusal({ metrics: { n: 10n } }), `stage kind \`mine\`: run() returned a metric the manifest cannot store: metrics.n is a bigint, not a JSON value; ${store}`);
  assert.is(refusal({ metrics: { at: new Date(0) } }), `stage kind \`mine\`: run() returned a metric the manifest cannot store: metrics.at is a Date, not a plain object; ${store}`);
});

test('metrics beside `metrics`, or a result or metrics of the wrong type, are refused saying what to return', () => {
  assert.is(refusal({ accuracy: 0.5 }), 'stage kind `mine`: run() returned `accuracy` beside `metrics`; metrics go inside it: return { metrics: { accuracy: … } }');
  assert.is(refusal(null), 'stage kind `mine`: run() resolved to null; return { metrics: { … } }');
  assert.is(refusal([1]), 'stage kind `mine`: run() resolved to an array; return { metrics: { … } }');
  assert.is(refusal({ metrics: [1, 2] }), 'stage kind `mine`: run() returned metrics that are an array, not an object from metric name to value');
});

test('JSON metrics are returned as they are; nothing returned, or no metrics, means none', async () => {
  const result = { metrics: { acc: 0.5, curve: [{ step: 1, loss: null }], name: 'x', ok: true } };
  assert.is(checkedResult('mine', result), result);
  assert.equal(checkedResult('mine', undefined), {});
  assert.equal(checkedResult('mine', {}), {});
  const ctx = { inputs: {} } as unknown as Parameters<typeof runStageKind>[1];
  await runStageKind({ name: 'mine', run: async () => ({ metrics: { acc: Number.NaN } }) } as unknown as Parameters<typeof runStageKind>[0], ctx).then(
    () => assert.unreachable('a NaN metric was accepted'),
    (err: Error) => assert.match(err.message, 'metrics.acc is NaN'),
  );
});

test('a fault inside WebAssembly, as the wasm backend ends when its memory runs out in its C++ code, says what it most likely means', async () => {
  const ctx = { inputs: {} } as unknown as Parameters<typeof runStageKind>[1];
  const faulting = { name: 'mine', run: async () => { throw new WebAssembly.RuntimeError('memory access out of bounds'); } };
  await runStageKind(faulting as unknown as Parameters<typeof runStageKind>[0], ctx).then(
    () => assert.unreachable('the fault was lost'),
    (err: Error) => assert.is(err.message, 'memory access out of bounds (a fault inside WebAssembly: on the wasm backend, most often its memory ' +
      'running out, which is at most 4 GiB in a process whatever the machine has; a GPU backend has no such limit, and a smaller model, ' +
      'batch or sequence length needs less)'),
  );
  const plain = { name: 'mine', run: async () => { throw new Error('memory access out of bounds'); } };
  await runStageKind(plain as unknown as Parameters<typeof runStageKind>[0], ctx).then(
    () => assert.unreachable('the error was lost'),
    (err: Error) => assert.is(err.message, 'memory access out of bounds', 'an ordinary error is left as it is'),
  );
});

test.run();

// runtime/run-kind.ts: errors naming an upstream stage's cache folder name the input and its stage instead.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import type { ArtifactRef } from '../../stages/kind.ts';
import { nameInputFolders } from '../../runtime/run-kind.ts';

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

test.run();

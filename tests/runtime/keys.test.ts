// The Hashed phase: keys from params, upstream keys and workspace file contents.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { FileHasher } from '../../cache/file-hash.ts';
import { computeKeys, isKeyed, type KeyedStage } from '../../runtime/keys.ts';
import { STAGE_KINDS } from '../../stages/index.ts';
import { instance, pipelineOf, tempWorkspace } from '../helpers/runner.ts';

const sh = (command: string[], extra: Record<string, unknown> = {}) =>
  ({ command, shell: false, deps: [], outs: [], env: {}, cwd: '.', cpus: 1, gpus: 0, ...extra }) as never;

async function setup() {
  const ws = await tempWorkspace('pausepipe-keys-');
  await mkdir(path.join(ws, 'data'));
  await writeFile(path.join(ws, 'data', 'train.jsonl'), '{"q": 1}\n');
  return { ws, hasher: new FileHasher(path.join(ws, '.pausepipe', 'stat-cache.json')) };
}

test('deps are hashed by content under their workspace-relative path, and upstream keys feed the inputs', async () => {
  const { ws, hasher } = await setup();
  const p = pipelineOf(ws, [
    instance('prep', 'sh', sh(['true'], { deps: ['./data/train.jsonl'] })),
    instance('use', 'sh', sh(['true']), { inputs: { prep: 'prep' } }),
  ]);
  const keys = await computeKeys(p, STAGE_KINDS, hasher);
  const prep = keys.get('prep') as KeyedStage;
  assert.equal(Object.keys(prep.ingredients.files), ['data/train.jsonl']);
  assert.equal((keys.get('use') as KeyedStage).ingredients.inputs, { prep: [prep.key] });

  await writeFile(path.join(ws, 'data', 'train.jsonl'), '{"q": 2}\n');
  const again = await computeKeys(p, STAGE_KINDS, hasher);
  assert.is.not((again.get('prep') as KeyedStage).key, prep.key);
  assert.is.not((again.get('use') as KeyedStage).key, (keys.get('use') as KeyedStage).key);
});

test('the key does not depend on the stage name', async () => {
  const { ws, hasher } = await setup();
  const a = await computeKeys(pipelineOf(ws, [instance('a', 'sh', sh(['echo', '1']))]), STAGE_KINDS, hasher);
  const b = await computeKeys(pipelineOf(ws, [instance('b', 'sh', sh(['echo', '1']))]), STAGE_KINDS, hasher);
  assert.is((a.get('a') as KeyedStage).key, (b.get('b') as KeyedStage).key);
});

test('a dep written by an upstream stage (its out) is covered by that stage\'s key, not hashed', async () => {
  const { ws, hasher } = await setup();
  const p = pipelineOf(ws, [
    instance('make', 'sh', sh(['true'], { outs: ['build'] })),
    instance('use', 'sh', sh(['true'], { deps: ['build/model.bin', 'data/train.jsonl'] }), { inputs: { make: 'make' } }),
  ]);
  const keys = await computeKeys(p, STAGE_KINDS, hasher);
  assert.equal(Object.keys((keys.get('use') as KeyedStage).ingredients.files), ['data/train.jsonl']);
});

test('a missing dep leaves the stage and its users without a key, naming the absolute path it looked for, with a hint when another stage writes it', async () => {
  const { ws, hasher } = await setup();
  const p = pipelineOf(ws, [
    instance('make', 'sh', sh(['true'], { outs: ['build/model.bin'] })),
    instance('use', 'sh', sh(['true'], { deps: ['build/model.bin'] })),
    instance('after', 'sh', sh(['true']), { inputs: { x: 'use' } }),
    instance('alone', 'sh', sh(['true'], { deps: ['nope.txt'] })),
  ]);
  const keys = await computeKeys(p, STAGE_KINDS, hasher);
  assert.ok(isKeyed(keys.get('make')));
  assert.equal(keys.get('use'), { error: `file build/model.bin missing (looked for ${path.join(ws, 'build/model.bin')}; written by make: make it an input of this stage)` });
  assert.equal(keys.get('after'), { error: 'upstream use has no key' });
  assert.equal(keys.get('alone'), { error: `file nope.txt missing (looked for ${path.join(ws, 'nope.txt')})` });
});

test('a missing dataset folder says what to put where, through the kind\'s hint', async () => {
  const { ws, hasher } = await setup();
  const p = pipelineOf(ws, [instance('data', 'gsm8k', { path: 'nowhere/gsm8k', val_fraction: 0.1, seed: 42 } as never)]);
  const keys = await computeKeys(p, STAGE_KINDS, hasher);
  const error = (keys.get('data') as { error: string }).error.split('\n');
  assert.equal(error.slice(0, 2), [
    `file nowhere/gsm8k missing (looked for ${path.join(ws, 'nowhere/gsm8k')})`,
    `GSM8K not found: train.jsonl and test.jsonl missing in nowhere/gsm8k (${path.join(ws, 'nowhere/gsm8k')}).`,
  ]);
});

test('two stages writing the same workspace path cannot run', async () => {
  const { ws, hasher } = await setup();
  const p = pipelineOf(ws, [
    instance('w[a=1]', 'sh', sh(['true'], { outs: ['res.txt'] })),
    instance('w[a=2]', 'sh', sh(['true'], { outs: ['./res.txt'] })),
  ]);
  const keys = await computeKeys(p, STAGE_KINDS, hasher);
  assert.equal(keys.get('w[a=1]'), { error: 'out res.txt is also written by w[a=2]' });
  assert.equal(keys.get('w[a=2]'), { error: 'out res.txt is also written by w[a=1]' });
});

test.run();

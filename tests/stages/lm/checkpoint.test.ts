// The resume format: round trip, only complete checkpoints are ever loaded, old and half-written ones are cleaned up.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { loadLatestCheckpoint, saveCheckpoint, type Checkpoint } from '../../../stages/lm/checkpoint.ts';

function checkpoint(step: number): Checkpoint {
  return {
    state: { loop: { step, curve: [[1, 2.5]] }, fingerprint: 'abc' },
    weights: new Map([['lm_head.weight', { dtype: 'float32', shape: [2, 2], data: Float32Array.of(step, 2, 3, 4) }]]),
    optimizer: { step, expAvg: new Map([['lm_head.weight', Float32Array.of(0.1, 0.2, 0.3, step)]]), expAvgSq: new Map([['lm_head.weight', Float32Array.of(1, 2, 3, 4)]]) },
    best: step > 2 ? new Map([['lm_head.weight', { dtype: 'float32', shape: [2, 2], data: Float32Array.of(9, 8, 7, 6) }]]) : null,
  };
}

async function withDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await mkdtemp(path.join(tmpdir(), 'pausepipe-ckpt-'));
  try {
    await fn(dir);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

test('an empty scratch folder has no checkpoint', () => withDir(async (dir) => {
  assert.is(await loadLatestCheckpoint(dir), null);
}));

test('the latest checkpoint loads back exactly and older ones are removed', () => withDir(async (dir) => {
  await saveCheckpoint(dir, 2, checkpoint(2));
  await saveCheckpoint(dir, 4, checkpoint(4));
  assert.equal((await readdir(dir)).sort(), ['checkpoint-000004', 'latest.json']);
  assert.equal(JSON.parse(await readFile(path.join(dir, 'latest.json'), 'utf8')), { checkpoint: 'checkpoint-000004' });
  const got = (await loadLatestCheckpoint(dir))!;
  const want = checkpoint(4);
  assert.equal(got.state, want.state);
  assert.equal(got.weights, want.weights);
  assert.equal(got.optimizer, want.optimizer);
  assert.equal(got.best, want.best);
}));

test('a half-written checkpoint of a killed run is never loaded and is cleaned up by the next save', () => withDir(async (dir) => {
  await saveCheckpoint(dir, 2, checkpoint(2));
  // What a kill during the write of step 4 leaves: a temporary folder with part of the files.
  const partial = path.join(dir, 'checkpoint-000004.tmp-99999');
  await mkdir(partial);
  await writeFile(path.join(partial, 'trainable.safetensors'), 'trunc');
  assert.is((await loadLatestCheckpoint(dir))!.optimizer.step, 2);
  await saveCheckpoint(dir, 4, checkpoint(4));
  assert.equal((await readdir(dir)).sort(), ['checkpoint-000004', 'latest.json']);
}));

test('a save that fails part way (a full disk) removes what it wrote and keeps the previous checkpoint', () => withDir(async (dir) => {
  await saveCheckpoint(dir, 2, checkpoint(2));
  // The state is written last: its failure comes after the weights and the optimizer's moments are on disk.
  const unwritable = { ...checkpoint(4), state: { step: 4n } as unknown as Checkpoint['state'] };
  await saveCheckpoint(dir, 4, unwritable).then(() => assert.unreachable(), (err) => assert.match(err.message, /BigInt/));
  assert.equal((await readdir(dir)).sort(), ['checkpoint-000002', 'latest.json']);
  assert.is((await loadLatestCheckpoint(dir))!.optimizer.step, 2);
}));

test('a damaged latest.json is an error naming the file', () => withDir(async (dir) => {
  await writeFile(path.join(dir, 'latest.json'), '{"checkpoint": 12}');
  await loadLatestCheckpoint(dir).then(() => assert.unreachable(), (err) => assert.match(err.message, /latest\.json: expected \{"checkpoint": "checkpoint-NNNNNN"\}/));
}));

test.run();

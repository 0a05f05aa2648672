// Test helpers for the Hugging Face parity fixtures in ../shared/fixtures/hf: paths, expected tensors, fixture models.
import * as tf from '@tensorflow/tfjs-core';
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { fromHfConfig, type LmConfig } from '../../stages/lm/config.ts';
import { readTensor } from '../../stages/lm/backend.ts';
import { CausalLM } from '../../stages/lm/model.ts';
import { PauseLM } from '../../stages/lm/pause.ts';
import { readModelWeights, readSafetensors, type HostTensor } from '../../stages/lm/safetensors.ts';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
export const FIXTURES = path.resolve(ROOT, '../shared/fixtures/hf');
export const FIXTURES_PRESENT = existsSync(FIXTURES);
/** Registers a test that needs the fixtures: skipped (and said so) where ../shared is absent. */
export { withShared as withFixtures } from './requires.ts';

export async function readJson<T = Record<string, unknown>>(file: string): Promise<T> {
  return JSON.parse(await readFile(file, 'utf8')) as T;
}

/** One row of trainable-counts.json: an unfreezing variant and what PEFT trains for it. */
export interface TrainableCountsVariant {
  pause_embedding: boolean;
  pause_head: boolean;
  lm: 'none' | 'lm_head' | 'lm_head+embed';
  lora: boolean;
  trainable: number;
  total: number;
  trainable_names: string[];
}

/** The 18 variants of trainable-counts.json. */
export function trainableCounts(): Promise<TrainableCountsVariant[]> {
  return readJson<TrainableCountsVariant[]>(path.join(FIXTURES, 'trainable-counts.json'));
}

/** The tensors of `<fixture>/expected.safetensors`. */
export async function expectedTensors(fixture: string): Promise<Map<string, HostTensor>> {
  return (await readSafetensors(path.join(FIXTURES, fixture, 'expected.safetensors'))).tensors;
}

export function toTf<T extends tf.Tensor = tf.Tensor>(h: HostTensor): T {
  return tf.tensor(h.data, h.shape, h.dtype) as T;
}

export async function fixtureConfig(fixture: string): Promise<LmConfig> {
  return fromHfConfig(await readJson(path.join(FIXTURES, fixture, 'config.json')));
}

/** A plain fixture model (`mistral-tiny`, `llama-tiny-tied`). */
export async function fixtureModel(fixture: string): Promise<CausalLM> {
  return CausalLM.fromWeights(await fixtureConfig(fixture), await readModelWeights(path.join(FIXTURES, fixture)));
}

/** The pause-wrapper fixture: mistral-tiny's config plus the pause token, the wrapper's saved state dict. */
export async function pauseFixtureModel(): Promise<PauseLM> {
  const json = await readJson(path.join(FIXTURES, 'mistral-tiny', 'config.json'));
  const config = fromHfConfig({ ...json, pause_token_id: 512 });
  return PauseLM.fromPauseWeights(config, (await readSafetensors(path.join(FIXTURES, 'pause-wrapper', 'model.safetensors'))).tensors);
}

/** Largest |a − b| over the indices `keep` accepts (all by default). */
export function maxDiff(a: ArrayLike<number>, b: ArrayLike<number>, keep: (i: number) => boolean = () => true): number {
  if (a.length !== b.length) throw new Error(`length ${a.length} vs ${b.length}`);
  let m = 0;
  for (let i = 0; i < a.length; i++) if (keep(i)) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
}

export function relDiff(a: number, b: number): number {
  return Math.abs(a - b) / Math.abs(b);
}

/** Greedy decoding with a full forward pass per step (no cache), as the fixtures were made; reads the host once a step. */
export async function greedyFull(step: (ids: tf.Tensor2D) => tf.Tensor, prompt: number[], steps: number): Promise<number[]> {
  const ids = [...prompt];
  for (let s = 0; s < steps; s++) {
    const next = tf.tidy(() => {
      const scores = step(tf.tensor2d(ids, [1, ids.length], 'int32')); // [1, T, V]
      const V = scores.shape[2]!;
      return tf.argMax(tf.reshape(tf.slice(scores, [0, ids.length - 1, 0], [1, 1, V]), [V]));
    });
    ids.push((await readTensor(next))[0]!);
    next.dispose();
  }
  return ids;
}

/** Greedy decoding through `decodeStep` and the KV cache. */
export async function greedyCached(model: CausalLM, prompt: number[], steps: number): Promise<number[]> {
  const ids = [...prompt];
  let cache = null;
  let input = tf.tensor2d(prompt, [1, prompt.length], 'int32');
  for (let s = 0; s < steps; s++) {
    const mask = tf.ones([1, ids.length], 'int32') as tf.Tensor2D;
    const out = model.decodeStep(input, mask, cache);
    cache = out.cache;
    const best = tf.argMax(out.logProbs, 1);
    const next = (await readTensor(best))[0]!;
    tf.dispose([best, out.logProbs, mask, input]);
    ids.push(next);
    input = tf.tensor2d([next], [1, 1], 'int32');
  }
  input.dispose();
  cache?.dispose();
  return ids;
}

/** The values of a tensor computed by `f` (inside a tidy), read without a synchronous read; the tensor is freed. */
export async function valuesOf(f: () => tf.Tensor): Promise<Float32Array | Int32Array> {
  const t = tf.tidy(f);
  try {
    return await readTensor(t);
  } finally {
    t.dispose();
  }
}

/** The first value of the scalar computed by `f`. */
export async function scalarOf(f: () => tf.Tensor): Promise<number> {
  return (await valuesOf(f))[0]!;
}

/** Asserts that `run` rejects with a message matching `pattern` (uvu's assert has no async throws). */
export async function rejectsWith(run: () => Promise<unknown>, pattern: RegExp): Promise<void> {
  let error: unknown = null;
  try {
    await run();
  } catch (err) {
    error = err;
  }
  if (!(error instanceof Error)) throw new Error(`expected a rejection matching ${pattern}, but it resolved`);
  if (!pattern.test(error.message)) throw new Error(`rejection "${error.message}" does not match ${pattern}`);
}

/** Central finite difference of `loss` (evaluated in float32) in coordinate `i` of variable `v`; restores `v`. */
export function finiteDiff(v: tf.Variable, i: number, loss: () => number, eps = 1e-2): number {
  const base = v.dataSync().slice();
  const at = (delta: number) => {
    const data = base.slice();
    data[i] = data[i]! + delta;
    const t = tf.tensor(data, v.shape);
    v.assign(t);
    t.dispose();
    return loss();
  };
  const d = (at(eps) - at(-eps)) / (2 * eps);
  const t = tf.tensor(base, v.shape);
  v.assign(t);
  t.dispose();
  return d;
}

/** Indices of the `n` largest |values| (the coordinates a gradient check learns most from). */
export function largestIndices(values: ArrayLike<number>, n: number): number[] {
  return Array.from({ length: values.length }, (_, i) => i).sort((x, y) => Math.abs(values[y]!) - Math.abs(values[x]!)).slice(0, n);
}

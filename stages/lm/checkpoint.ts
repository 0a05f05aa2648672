// Training checkpoints in a scratch folder, written atomically, so a killed run resumes exactly where it stopped.
import { mkdir, readdir, readFile, rename, rm } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import path from 'node:path';
import type { JsonValue } from '../../runtime/json.ts';
import type { AdamWState } from './optimizer.ts';
import { readSafetensors, writeJsonFile, writeSafetensors, type HostTensor } from './safetensors.ts';

/**
 * Layout of `<scratch>/`:
 *   latest.json                 {"checkpoint": "checkpoint-000120"}, replaced by rename after the folder is complete
 *   checkpoint-000120/
 *     state.json                trainer state (step, data position, curves, best eval loss, fingerprint)
 *     trainable.safetensors     the trainable weights by saved name
 *     optimizer.safetensors     `exp_avg.<name>` and `exp_avg_sq.<name>`; the step count is in state.json
 *     best.safetensors          trainable weights at the best eval loss so far (absent before the first eval)
 * A folder is written under a temporary name and renamed into place, and latest.json only ever names complete
 * folders, so a kill at any moment leaves the previous checkpoint usable.
 */
const LATEST = 'latest.json';
const STATE = 'state.json';
const TRAINABLE = 'trainable.safetensors';
const OPTIMIZER = 'optimizer.safetensors';
const BEST = 'best.safetensors';
const EXP_AVG = 'exp_avg.';
const EXP_AVG_SQ = 'exp_avg_sq.';

export interface Checkpoint {
  /** The trainer's own state; opaque here beyond being JSON. */
  state: { [key: string]: JsonValue };
  weights: Map<string, HostTensor>;
  optimizer: AdamWState;
  best: Map<string, HostTensor> | null;
}

function folderName(step: number): string {
  return `checkpoint-${String(step).padStart(6, '0')}`;
}

function flat(data: Float32Array): HostTensor {
  return { dtype: 'float32', shape: [data.length], data };
}

/** Writes a checkpoint for `step` into `dir`, points latest.json at it, then removes older ones. */
export async function saveCheckpoint(dir: string, step: number, ckpt: Checkpoint): Promise<void> {
  await mkdir(dir, { recursive: true });
  const name = folderName(step);
  const tmp = path.join(dir, `${name}.tmp-${process.pid}`);
  await rm(tmp, { recursive: true, force: true });
  await mkdir(tmp);
  const moments = new Map<string, HostTensor>();
  for (const [n, m] of ckpt.optimizer.expAvg) moments.set(EXP_AVG + n, flat(m));
  for (const [n, v] of ckpt.optimizer.expAvgSq) moments.set(EXP_AVG_SQ + n, flat(v));
  try {
    await writeSafetensors(path.join(tmp, TRAINABLE), ckpt.weights);
    await writeSafetensors(path.join(tmp, OPTIMIZER), moments, { step: String(ckpt.optimizer.step) });
    if (ckpt.best) await writeSafetensors(path.join(tmp, BEST), ckpt.best);
    await writeJsonFile(path.join(tmp, STATE), ckpt.state);
  } catch (error) {
    // A full disk: the part written goes at once (a 7B's optimizer state is tens of GB), the previous checkpoint stays.
    await rm(tmp, { recursive: true, force: true });
    throw inCheckpoint(error, step, ckpt);
  }
  const final = path.join(dir, name);
  // A folder of this step left by a run killed between rename and latest.json: the new one replaces it.
  await rm(final, { recursive: true, force: true });
  await rename(tmp, final);
  await writeJsonFile(path.join(dir, LATEST), { checkpoint: name });
  for (const entry of await readdir(dir)) {
    if (entry.startsWith('checkpoint-') && entry !== name) await rm(path.join(dir, entry), { recursive: true, force: true });
  }
}

/**
 * A failed write (a full disk above all) said as the checkpoint's: its step and its size in all, since the file named
 * is one of several and the part written is gone by the time the disk is measured. Node's `code` is kept.
 */
function inCheckpoint(error: unknown, step: number, ckpt: Checkpoint): unknown {
  if (!(error instanceof Error) || !('code' in error)) return error;
  const tensors = [...ckpt.weights.values(), ...(ckpt.best?.values() ?? [])];
  const moments = [...ckpt.optimizer.expAvg.values(), ...ckpt.optimizer.expAvgSq.values()];
  const bytes = 4 * (tensors.reduce((n, t) => n + t.data.length, 0) + moments.reduce((n, m) => n + m.length, 0));
  const size = bytes >= 1e9 ? `${(bytes / 1e9).toFixed(1)} GB` : `${(bytes / 1e6).toFixed(1)} MB`;
  return Object.assign(new Error(`saving the training checkpoint of step ${step} (${size} in all): ${error.message}`, { cause: error }), { code: error.code });
}

/** The checkpoint latest.json names, or null when `dir` holds none. Damaged files are an error naming the file. */
export async function loadLatestCheckpoint(dir: string): Promise<Checkpoint | null> {
  const latestFile = path.join(dir, LATEST);
  if (!existsSync(latestFile)) return null;
  const latest = await readJson(latestFile);
  const name = (latest as { checkpoint?: unknown }).checkpoint;
  if (typeof name !== 'string' || !/^checkpoint-\d+$/.test(name)) throw new Error(`${latestFile}: expected {"checkpoint": "checkpoint-NNNNNN"}`);
  const folder = path.join(dir, name);
  const state = await readJson(path.join(folder, STATE));
  if (typeof state !== 'object' || state === null || Array.isArray(state)) throw new Error(`${path.join(folder, STATE)}: expected a JSON object`);
  const weights = (await readSafetensors(path.join(folder, TRAINABLE))).tensors;
  const opt = await readSafetensors(path.join(folder, OPTIMIZER));
  const step = Number(opt.metadata?.step);
  if (!Number.isInteger(step)) throw new Error(`${path.join(folder, OPTIMIZER)}: metadata has no optimizer step`);
  const expAvg = new Map<string, Float32Array>();
  const expAvgSq = new Map<string, Float32Array>();
  for (const [n, t] of opt.tensors) {
    const target = n.startsWith(EXP_AVG_SQ) ? expAvgSq : n.startsWith(EXP_AVG) ? expAvg : null;
    if (!target || !(t.data instanceof Float32Array)) throw new Error(`${path.join(folder, OPTIMIZER)}: unexpected tensor '${n}'`);
    target.set(n.slice(target === expAvgSq ? EXP_AVG_SQ.length : EXP_AVG.length), t.data);
  }
  const bestFile = path.join(folder, BEST);
  const best = existsSync(bestFile) ? (await readSafetensors(bestFile)).tensors : null;
  return { state: state as Checkpoint['state'], weights, optimizer: { step, expAvg, expAvgSq }, best };
}

/** Removes every checkpoint in `dir` (latest.json first, so no half-removed folder is ever named). */
export async function discardCheckpoints(dir: string): Promise<void> {
  await rm(path.join(dir, LATEST), { force: true });
  for (const entry of await readdir(dir).catch(() => [] as string[])) {
    if (entry.startsWith('checkpoint-')) await rm(path.join(dir, entry), { recursive: true, force: true });
  }
}

async function readJson(file: string): Promise<unknown> {
  try {
    return JSON.parse(await readFile(file, 'utf8'));
  } catch (err) {
    throw new Error(`${file}: unreadable checkpoint file (${(err as Error).message})`);
  }
}

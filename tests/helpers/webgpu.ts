// Tests of the WebGPU path: registered where a WebGPU adapter exists (Mesa's lavapipe in CI), skipped and said so elsewhere.
import * as tf from '@tensorflow/tfjs-core';
import type { Test } from 'uvu';
import { initBackend } from '../../stages/lm/backend.ts';

/** Why webgpu cannot run here, or null when it can. Probed once per process. */
async function probe(): Promise<string | null> {
  const before = tf.getBackend() as string | undefined;
  const info = await initBackend('webgpu');
  // Leave the process on the backend it had: suites that set none must not find themselves on the GPU.
  if (before && before !== tf.getBackend()) await tf.setBackend(before);
  return info.name === 'webgpu' ? null : (info.notice ?? `the backend picked was ${info.name}`);
}

export const WEBGPU_MISSING = await probe();

let noted = false;

/**
 * The suite's own `test` where a WebGPU adapter exists, else its `skip` (uvu counts the test as skipped, and the
 * reason is printed once as a `skip:` line). Under CI=true a missing adapter is an error: CI installs lavapipe.
 */
export function withWebgpu<T>(test: Test<T>): Test<T> | Test<T>['skip'] {
  if (WEBGPU_MISSING === null) return test;
  if (process.env.CI === 'true') throw new Error(`CI must test the WebGPU path, but ${WEBGPU_MISSING}`);
  if (!noted) {
    noted = true;
    console.log(`skip: no WebGPU adapter (${WEBGPU_MISSING}); run eval "$(bash ../shared/tools/software-gpu.sh)" for Mesa's lavapipe`);
  }
  return test.skip;
}

/** Makes webgpu the active backend (call from a suite's `before`; other suites switch to wasm in theirs). */
export async function useWebgpu(): Promise<void> {
  if (WEBGPU_MISSING === null) await initBackend('webgpu');
}

/** The values of a tensor (read asynchronously: WebGPU has no synchronous read). */
export async function values(t: tf.Tensor): Promise<Float32Array | Int32Array> {
  return (await t.data()) as Float32Array | Int32Array;
}

/** Largest |a − b| over the indices `keep` accepts (all by default). */
export function maxDiff(a: ArrayLike<number>, b: ArrayLike<number>, keep: (i: number) => boolean = () => true): number {
  if (a.length !== b.length) throw new Error(`length ${a.length} vs ${b.length}`);
  let m = 0;
  for (let i = 0; i < a.length; i++) if (keep(i)) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
}

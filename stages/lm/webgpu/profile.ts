// GPU time of every program a function dispatches, by name: tfjs's programs and this project's alike, read from the timestamp queries tfjs's own profiler uses.
import { submitPending, webgpuBackend } from './engine.ts';

export interface KernelTime {
  /** tfjs's program class (`MatMulPackedProgram`) or this project's pipeline key (`attention-64-32`). */
  name: string;
  /** GPU milliseconds over all its dispatches. */
  ms: number;
  dispatches: number;
}

/**
 * Runs `fn` with every dispatch timed on the GPU: each runs alone in a pass whose start and end write timestamps,
 * read back before the next (so `fn` runs far slower than usual: profile one step, time others). Kernels come
 * sorted by time, most first. Replayed decode steps (decode-graph.ts) are not timed; turn them off to profile
 * decoding. Needs the adapter's `timestamp-query` feature (Mesa's lavapipe has it too).
 */
export async function profileGpu<T>(fn: () => T | Promise<T>): Promise<{ result: T; kernels: KernelTime[]; totalMs: number }> {
  const backend = webgpuBackend();
  if (!backend.supportTimestampQuery) throw new Error('profileGpu: this adapter has no timestamp-query feature');
  if (backend.activeTimers) throw new Error('profileGpu: programs are being timed already (tf.profile?)');
  const timers: Array<{ name: string; query: Promise<number> }> = [];
  // Pending commands first: their time must not land on the first timed program.
  submitPending();
  backend.activeTimers = timers;
  let result: T;
  try {
    result = await fn();
  } finally {
    backend.activeTimers = null;
  }
  const times = await Promise.all(timers.map((t) => t.query));
  const byName = new Map<string, KernelTime>();
  timers.forEach(({ name }, i) => {
    const k = byName.get(name) ?? { name, ms: 0, dispatches: 0 };
    k.ms += times[i]!;
    k.dispatches += 1;
    byName.set(name, k);
  });
  const kernels = [...byName.values()].sort((a, b) => b.ms - a.ms);
  return { result, kernels, totalMs: times.reduce((a, b) => a + b, 0) };
}

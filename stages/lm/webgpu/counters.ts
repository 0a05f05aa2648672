// Counts GPU kernel dispatches and host reads while a function runs, for regression tests and the bench's kernel line.
/// <reference types="@webgpu/types" />
import { tapMethod, webgpuBackend } from './engine.ts';

export interface GpuWork {
  /** Compute dispatches recorded: tfjs's own programs and this project's alike. */
  dispatches: number;
  /** Buffers read back to the host (every tfjs `data()` of a GPU tensor is one). */
  reads: number;
  /** Bind groups made: one per dispatch through tfjs, none for a replayed decode step (decode-graph.ts). */
  bindGroups: number;
}

/**
 * Runs `fn` and counts what it asked of the GPU. Dispatches and bind groups are counted on the WebGPU classes
 * themselves, so no path can bypass the count (tfjs's programs and engine.ts's alike); reads are counted on the backend's one
 * read-back routine. `fn` gets the running counts, so a caller can difference consecutive steps. Not re-entrant.
 */
export async function countGpuWork<T>(fn: (running: Readonly<GpuWork>) => T | Promise<T>): Promise<{ result: T } & GpuWork> {
  const work: GpuWork = { dispatches: 0, reads: 0, bindGroups: 0 };
  const untaps = [
    tapMethod(GPUComputePassEncoder.prototype, 'dispatchWorkgroups', () => work.dispatches++),
    tapMethod(GPUDevice.prototype, 'createBindGroup', () => work.bindGroups++),
    tapMethod(webgpuBackend(), 'getBufferData', () => work.reads++),
  ];
  try {
    const result = await fn(work);
    return { result, ...work };
  } finally {
    for (const untap of untaps.reverse()) untap();
  }
}

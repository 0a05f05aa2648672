// Counts GPU kernel dispatches and host reads while a function runs, for regression tests and the bench's kernel line.
/// <reference types="@webgpu/types" />
import { webgpuBackend } from './engine.ts';

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
  const backend = webgpuBackend();
  const proto = GPUComputePassEncoder.prototype;
  const dispatch = proto.dispatchWorkgroups;
  const read = backend.getBufferData;
  const device = GPUDevice.prototype;
  const bind = device.createBindGroup;
  const work: GpuWork = { dispatches: 0, reads: 0, bindGroups: 0 };
  device.createBindGroup = function (this: GPUDevice, ...args: Parameters<GPUDevice['createBindGroup']>) {
    work.bindGroups++;
    return bind.apply(this, args);
  };
  proto.dispatchWorkgroups = function (this: GPUComputePassEncoder, ...args: Parameters<GPUComputePassEncoder['dispatchWorkgroups']>) {
    work.dispatches++;
    return dispatch.apply(this, args);
  };
  backend.getBufferData = function (this: typeof backend, buffer: GPUBuffer) {
    work.reads++;
    return read.call(this, buffer);
  };
  try {
    const result = await fn(work);
    return { result, ...work };
  } finally {
    proto.dispatchWorkgroups = dispatch;
    device.createBindGroup = bind;
    // The backend's own method lives on its prototype: removing the wrapper restores it.
    delete (backend as Partial<typeof backend>).getBufferData;
  }
}

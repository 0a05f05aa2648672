// Counts WebGPU kernel dispatches and host reads for the bench's `kernels:` line (same technique as the kernel tests' counter).
/// <reference types="@webgpu/types" />
import * as tf from '@tensorflow/tfjs-core';

/** What the GPU was asked to do. */
export interface GpuWork {
  /** Compute dispatches recorded, tfjs's own programs and custom ones alike. */
  dispatches: number;
  /** Buffers read back to the host (every `data()` of a GPU tensor is one). */
  reads: number;
}

interface ReadingBackend {
  getBufferData(buffer: GPUBuffer): Promise<ArrayBuffer>;
}

/**
 * A running count from `start()` until `stop()`: dispatches are counted on the compute pass encoder's prototype (no
 * path can bypass it), reads on the backend's one read-back routine. `snapshot()` gives the totals so far, so a
 * caller can difference consecutive decode steps. One at a time.
 */
export class GpuWorkCounter {
  private work: GpuWork = { dispatches: 0, reads: 0 };
  private restore: (() => void) | null = null;

  start(): void {
    if (tf.getBackend() !== 'webgpu') throw new Error(`counting GPU work needs the webgpu backend, the active one is ${tf.getBackend()}`);
    const work = (this.work = { dispatches: 0, reads: 0 });
    const proto = GPUComputePassEncoder.prototype;
    const dispatch = proto.dispatchWorkgroups;
    const backend = tf.backend() as unknown as ReadingBackend;
    const read = backend.getBufferData;
    proto.dispatchWorkgroups = function (this: GPUComputePassEncoder, ...args: Parameters<GPUComputePassEncoder['dispatchWorkgroups']>) {
      work.dispatches++;
      return dispatch.apply(this, args);
    };
    backend.getBufferData = function (this: ReadingBackend, buffer: GPUBuffer) {
      work.reads++;
      return read.call(this, buffer);
    };
    this.restore = () => {
      proto.dispatchWorkgroups = dispatch;
      // The backend's own method lives on its prototype: deleting the wrapper restores it.
      delete (backend as Partial<ReadingBackend>).getBufferData;
    };
  }

  snapshot(): GpuWork {
    return { ...this.work };
  }

  stop(): GpuWork {
    this.restore?.();
    this.restore = null;
    return this.snapshot();
  }
}

/** Runs `fn` and counts what it asked of the GPU. */
export async function countGpuWork<T>(fn: () => T | Promise<T>): Promise<{ result: T } & GpuWork> {
  const counter = new GpuWorkCounter();
  counter.start();
  try {
    const result = await fn();
    return { result, ...counter.stop() };
  } finally {
    counter.stop();
  }
}

// Turns WebGPU's silent failures (out of memory, validation, device loss) into an error that stops the step that caused them.
/// <reference types="@webgpu/types" />
import * as tf from '@tensorflow/tfjs-core';

/** What went wrong on the device, as WebGPU classifies it. */
export type GpuFailure = 'out-of-memory' | 'validation' | 'internal' | 'device-lost';

/**
 * A WebGPU error raised by work a step submitted. WebGPU reports these asynchronously and otherwise carries on: a
 * buffer that could not be allocated is an invalid object, every command using it is skipped, and reading an output
 * back yields whatever its buffer held, so a training step would print a loss computed from nothing. This error stops the step instead.
 */
export class GpuError extends Error {
  readonly failure: GpuFailure;

  constructor(failure: GpuFailure, message: string) {
    super(message);
    this.name = 'GpuError';
    this.failure = failure;
  }
}

/** Bytes of the GPU buffers created on a device so far (tfjs reuses freed buffers, so this counts new requests only). */
interface Allocations {
  count: number;
  bytes: number;
  largest: number;
}

interface DeviceState {
  allocations: Allocations;
  lost: GPUDeviceLostInfo | null;
}

const states = new WeakMap<GPUDevice, DeviceState>();

/**
 * Watches a device once: counts the buffers it creates (so an out-of-memory error can say what was asked for; Dawn's
 * message names no size) and records its loss. Wrapping createBuffer costs a few additions per new buffer.
 */
function stateOf(device: GPUDevice): DeviceState {
  const known = states.get(device);
  if (known) return known;
  const s: DeviceState = { allocations: { count: 0, bytes: 0, largest: 0 }, lost: null };
  const create = device.createBuffer.bind(device);
  device.createBuffer = (descriptor: GPUBufferDescriptor): GPUBuffer => {
    s.allocations.count++;
    s.allocations.bytes += descriptor.size;
    s.allocations.largest = Math.max(s.allocations.largest, descriptor.size);
    return create(descriptor);
  };
  void device.lost.then((info) => {
    s.lost = info;
  });
  states.set(device, s);
  return s;
}

/** A byte count in the unit a reader compares with the GPU's size. */
export function formatBytes(bytes: number): string {
  if (bytes >= 2 ** 30) return `${(bytes / 2 ** 30).toFixed(2)} GiB`;
  if (bytes >= 2 ** 20) return `${(bytes / 2 ** 20).toFixed(1)} MiB`;
  return `${bytes} bytes`;
}

/** The scopes a watch opens, innermost last: each error lands in the innermost scope whose filter matches it. */
const FILTERS: GPUErrorFilter[] = ['internal', 'out-of-memory', 'validation'];

/**
 * Error scopes around the device work of a training step or decode steps. `check` collects what the device reported
 * for everything since the last check (awaiting the scopes, which Dawn resolves with the queue: no extra read of a
 * tensor) and throws a GpuError naming `what`; `close` ends the watch. A no-op off WebGPU.
 * Scopes are a stack per device: a watch must not interleave with another one opened by concurrent async work.
 */
export class GpuWatch {
  private readonly device: GPUDevice | null;
  private readonly state: DeviceState | null;
  private since: Allocations;
  private open = false;

  constructor(private readonly what: string) {
    this.device = tf.getBackend() === 'webgpu' ? (tf.backend() as unknown as { device: GPUDevice }).device : null;
    this.state = this.device ? stateOf(this.device) : null;
    this.since = { ...(this.state?.allocations ?? { count: 0, bytes: 0, largest: 0 }) };
    this.push();
  }

  private push(): void {
    if (!this.device) return;
    for (const filter of FILTERS) this.device.pushErrorScope(filter);
    this.open = true;
  }

  /** Pops this watch's scopes; the first error reported, if any, or the device's loss. */
  private async pop(): Promise<GPUError | null> {
    if (!this.device || !this.open) return null;
    this.open = false;
    const popped = FILTERS.map(() => this.device!.popErrorScope());
    const errors = await Promise.all(popped);
    // Popped innermost first: validation, out of memory, internal. Out of memory is the cause of the validation
    // errors that follow it (commands using the buffer that was never made), so it is the one to report.
    return errors[1] ?? errors[0] ?? errors[2] ?? null;
  }

  /** Throws a GpuError when the device reported an error since the last check (`where`: e.g. `step 3`); then watches on. */
  async check(where?: string): Promise<void> {
    const error = await this.pop();
    this.fail(error, where);
    this.push();
  }

  /** Ends the watch, throwing as `check` does. */
  async close(where?: string): Promise<void> {
    this.fail(await this.pop(), where);
  }

  private fail(error: GPUError | null, where: string | undefined): void {
    const at = where ? `${this.what} (${where})` : this.what;
    const lost = this.state?.lost;
    if (lost) throw new GpuError('device-lost', `webgpu device lost during ${at}: ${lost.message || lost.reason}`);
    if (!error) {
      if (this.state) this.since = { ...this.state.allocations };
      return;
    }
    const message = error.message.trim();
    if (error instanceof GPUOutOfMemoryError) throw new GpuError('out-of-memory', `webgpu out of memory in ${at}: ${message}; ${this.memoryReport()}`);
    if (error instanceof GPUValidationError) throw new GpuError('validation', `webgpu validation error in ${at}: ${message}`);
    throw new GpuError('internal', `webgpu internal error in ${at}: ${message}`);
  }

  /** What was asked of the device since the last check, what tfjs held, and the device's limits. */
  private memoryReport(): string {
    const now = this.state!.allocations;
    const count = now.count - this.since.count;
    const bytes = now.bytes - this.since.bytes;
    const limits = this.device!.limits;
    const memory = tf.memory();
    return `${count} new GPU buffer${count === 1 ? '' : 's'} of ${formatBytes(bytes)} were asked for (the largest buffer so far ${formatBytes(now.largest)}), ` +
      `while tfjs held ${formatBytes(memory.numBytes)} in ${memory.numTensors} tensors; the device's limits: maxBufferSize ` +
      `${formatBytes(limits.maxBufferSize)}, maxStorageBufferBindingSize ${formatBytes(limits.maxStorageBufferBindingSize)} ` +
      '(WebGPU does not report the GPU memory size); a smaller batch, micro-batches or gradient_checkpointing need less';
  }
}

/** Runs `fn` (device work, ending in a host read) under a GpuWatch: a device error becomes the error `fn` ends with. */
export async function watchGpu<T>(what: string, fn: () => Promise<T>): Promise<T> {
  const watch = new GpuWatch(what);
  let result: T;
  try {
    result = await fn();
  } catch (err) {
    // A failed read of an invalid buffer is a symptom: the device's own error, when there is one, names the cause.
    await watch.close();
    throw err;
  }
  await watch.close();
  return result;
}

// Runs hand-written WGSL programs on tfjs-backend-webgpu's device, in its command stream, with several outputs per dispatch.
/// <reference types="@webgpu/types" />
import * as tf from '@tensorflow/tfjs-core';

/**
 * The parts of tfjs-backend-webgpu's WebGPUBackend (4.22) this engine uses. They are public members of the class
 * but absent from its typings' stable surface, so they are named here in one place.
 */
export interface WebGpuBackendInternals {
  device: GPUDevice;
  queue: GPUQueue;
  commandEncoder: GPUCommandEncoder | null;
  computePassEncoder: GPUComputePassEncoder | null;
  dispatchCountInPass: number;
  commandQueueOwnedIds: WeakSet<object>;
  uniformPendingDisposal: GPUBuffer[];
  bufferManager: {
    acquireBuffer(size: number, usage: number): GPUBuffer;
    /** Released buffers kept for reuse, by exact size and usage. */
    freeBuffers: Map<string, GPUBuffer[]>;
    numFreeBuffers: number;
    numBytesAllocated: number;
  };
  tensorMap: { get(dataId: object): { resource: unknown; values: unknown; dtype: string } };
  ensureCommandEncoderReady(): void;
  endComputePassEncoder(): void;
  submitQueue(): void;
  uploadToGPU(dataId: object): void;
  makeTensorInfo(shape: number[], dtype: tf.DataType): tf.TensorInfo;
  disposeData(dataId: object): boolean;
  incRef(dataId: object): void;
  getBufferData(buffer: GPUBuffer): Promise<ArrayBuffer>;
  /** Set while tfjs times programs (tf.profile, or profile.ts): each program then runs in its own timed pass. */
  activeTimers: Array<{ name: string; query: Promise<number> }> | null;
  supportTimestampQuery: boolean;
  querySet: GPUQuerySet | null;
  querySetCount: number;
  /** Resolves the query set's two timestamps (written by the pass just ended) into milliseconds; submits. */
  getQueryTime(): Promise<number>;
}

/** The active backend's internals; throws when tfjs is not on webgpu. */
export function webgpuBackend(): WebGpuBackendInternals {
  if (tf.getBackend() !== 'webgpu') throw new Error(`webgpu kernels need the webgpu backend, the active one is ${tf.getBackend()}`);
  return tf.backend() as unknown as WebGpuBackendInternals;
}

/**
 * Whether the adapter runs shaders on the CPU (Mesa's llvmpipe, SwiftShader). Those JIT each shader with LLVM at its
 * first dispatch, where loops over a head's values fully unrolled by their constant bounds take minutes to compile;
 * kernels then bound the same loops by a uniform holding the same number. GPUs keep the constant bounds, which let
 * their compilers unroll and keep per-row arrays in registers.
 */
export function cpuAdapter(): boolean {
  const info = (webgpuBackend() as unknown as { adapterInfo?: { architecture?: string } }).adapterInfo;
  return info?.architecture === 'software' || info?.architecture === 'swiftshader';
}

/**
 * A process-wide choice (which product, which attention kernels) that a call can force for its own length: until
 * `fn` returns, or, when it returns a promise, until that settles. While an async call is pending, everything else
 * in the process sees the forced choice too: for tests and benches that run one thing at a time.
 */
export class ForcedChoice<C> {
  private forced: C | null = null;

  get current(): C | null {
    return this.forced;
  }

  during<T>(choice: C, fn: () => T): T {
    const saved = this.forced;
    this.forced = choice;
    const restore = () => {
      this.forced = saved;
    };
    let result: T;
    try {
      result = fn();
    } catch (err) {
      restore();
      throw err;
    }
    if (result instanceof Promise) return result.finally(restore) as T;
    restore();
    return result;
  }
}

/** Whether tfjs is recording operations for a gradient right now (inside tf.grad / variableGrads, outside a kernel). */
export function recordingGradients(): boolean {
  const state = (tf.engine() as unknown as { state: { gradientDepth: number; kernelDepth: number } }).state;
  return state.gradientDepth > 0 && state.kernelDepth === 0;
}

/**
 * A scalar passed to a program in its uniform buffer, declared in the same order in the WGSL `Params` struct.
 * `position: true` marks the decode position (the KV cache's length before the step): a replayed decode step
 * (decode-graph.ts) writes the step's own position there.
 */
export type Uniform = { u32: number; position?: true } | { i32: number } | { f32: number };

export interface Dispatch {
  /** Names the pipeline in the cache: everything the WGSL text depends on (shape constants, flags) must be in it. */
  key: string;
  /** The whole WGSL module; bindings in the order outputs, inputs, then `params` (see `bindings`). */
  wgsl: () => string;
  /** Read-only storage inputs. */
  inputs: tf.TensorInfo[];
  /** New outputs to allocate, or existing tensors the program writes into (read_write, in place). */
  outputs: Array<{ shape: number[]; dtype: 'float32' | 'int32' } | { into: tf.TensorInfo }>;
  uniforms?: Uniform[];
  /** Workgroups to launch; each dimension at most 65535 (`grid` spreads a long 1-D count over two). */
  workgroups: [number, number, number];
}

type Binding = { name: string; type: 'f32' | 'i32' | 'u32' | 'atomic<u32>' | 'vec4<f32>' | 'vec2<u32>'; write: boolean };

/**
 * The WGSL declarations of a program's buffers in the engine's binding order: outputs (read_write), inputs
 * (read), then a `params: Params` uniform when `params` lists fields. Keeps each kernel's text and its dispatch
 * in agreement without counting binding numbers by hand.
 */
export function bindings(outputs: Array<[string, Binding['type']]>, inputs: Array<[string, Binding['type']]>, params: Array<[string, 'u32' | 'i32' | 'f32']> = []): string {
  const all: Binding[] = [
    ...outputs.map(([name, type]) => ({ name, type, write: true })),
    ...inputs.map(([name, type]) => ({ name, type, write: false })),
  ];
  const lines = all.map((b, i) => `@group(0) @binding(${i}) var<storage, ${b.write ? 'read_write' : 'read'}> ${b.name}: array<${b.type}>;`);
  if (params.length > 0) {
    lines.push(`struct Params { ${params.map(([n, t]) => `${n}: ${t},`).join(' ')} };`);
    lines.push(`@group(0) @binding(${all.length}) var<uniform> params: Params;`);
  }
  return lines.join('\n');
}

/** Workgroup counts for `count` workgroups of a 1-D job, folded into x and y so neither passes 65535. */
export function grid(count: number): [number, number, number] {
  if (count <= 65535) return [Math.max(count, 1), 1, 1];
  const y = Math.ceil(count / 65535);
  return [Math.ceil(count / y), y, 1];
}

/** WGSL for the flat workgroup index of a `grid` launch (needs `wid` and `nwg` builtins in scope). */
export const FLAT_WORKGROUP = 'wid.x + wid.y * nwg.x';

const MAIN_BUILTINS = '@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32';

/**
 * The opening of `main` for a `grid` launch of ceil(count / wg) workgroups, one invocation per element: `idx` is the
 * element, invocations past `params.count` return. The kernel's body and closing brace follow.
 */
export function perElementMain(wg: number): string {
  return `@compute @workgroup_size(${wg})
fn main(${MAIN_BUILTINS}) {
  let idx = (${FLAT_WORKGROUP}) * ${wg}u + lid;
  if (idx >= params.count) { return; }`;
}

/**
 * The opening of `main` for a `grid` launch of one workgroup of `wg` invocations per row: `row` is the row, `lid` the
 * invocation within it, workgroups past `params.rows` return. The kernel's body and closing brace follow.
 */
export function perRowMain(wg: number): string {
  return `@compute @workgroup_size(${wg})
fn main(${MAIN_BUILTINS}) {
  let row = ${FLAT_WORKGROUP};
  if (row >= params.rows) { return; }`;
}

const pipelines = new WeakMap<GPUDevice, Map<string, GPUComputePipeline>>();
/** Shader errors Dawn reports asynchronously, thrown at the next dispatch so they name the program. */
const compileErrors: string[] = [];

function pipelineFor(device: GPUDevice, d: Dispatch): GPUComputePipeline {
  let cache = pipelines.get(device);
  if (!cache) {
    cache = new Map();
    pipelines.set(device, cache);
  }
  let pipeline = cache.get(d.key);
  if (!pipeline) {
    device.pushErrorScope('validation');
    const module = device.createShaderModule({ code: d.wgsl(), label: d.key });
    pipeline = device.createComputePipeline({ layout: 'auto', compute: { module, entryPoint: 'main' }, label: d.key });
    void device.popErrorScope().then((err) => {
      if (err) compileErrors.push(`webgpu program ${d.key}: ${err.message}`);
    });
    cache.set(d.key, pipeline);
  }
  return pipeline;
}

const layouts = new WeakMap<GPUComputePipeline, GPUBindGroupLayout>();

/** A pipeline's bind group layout, asked of Dawn once (each call makes a new object: some µs a dispatch). */
export function layoutOf(pipeline: GPUComputePipeline): GPUBindGroupLayout {
  let layout = layouts.get(pipeline);
  if (!layout) {
    layout = pipeline.getBindGroupLayout(0);
    layouts.set(pipeline, layout);
  }
  return layout;
}

/** The GPU buffer behind a tensor, uploading host values first (small tensors may live on the host). */
export function gpuBuffer(t: tf.TensorInfo): GPUBuffer {
  return bufferOf(webgpuBackend(), t);
}

function bufferOf(backend: WebGpuBackendInternals, t: tf.TensorInfo): GPUBuffer {
  backend.uploadToGPU(t.dataId);
  const resource = backend.tensorMap.get(t.dataId).resource;
  if (!(resource instanceof GPUBuffer)) throw new Error('webgpu kernels: a tensor is not held in a GPU buffer');
  return resource;
}

/** Bytes of a program's uniform struct: scalars are 4-byte aligned; 16-byte sizes satisfy every binding minimum. */
export function uniformBytes(values: Uniform[]): number {
  return Math.max(16, Math.ceil((values.length * 4) / 16) * 16);
}

/** Writes `values` into `data` from byte `offset` on, in the layout of their WGSL `Params` struct. */
export function writeUniforms(data: ArrayBuffer, offset: number, values: Uniform[]): void {
  const view = new DataView(data, offset, values.length * 4);
  values.forEach((v, i) => {
    if ('u32' in v) view.setUint32(4 * i, v.u32, true);
    else if ('i32' in v) view.setInt32(4 * i, v.i32, true);
    else view.setFloat32(4 * i, v.f32, true);
  });
}

function uniformBuffer(backend: WebGpuBackendInternals, values: Uniform[]): GPUBuffer {
  const size = uniformBytes(values);
  const data = new ArrayBuffer(size);
  writeUniforms(data, 0, values);
  const buffer = backend.bufferManager.acquireBuffer(size, GPUBufferUsage.COPY_DST | GPUBufferUsage.UNIFORM);
  backend.queue.writeBuffer(buffer, 0, data, 0, size);
  // Released to the pool by the backend once the commands using it are submitted.
  backend.uniformPendingDisposal.push(buffer);
  return buffer;
}

/**
 * Records one dispatch into the backend's open compute pass, as its own programs do (same batching and submit
 * rule), and returns the outputs as TensorInfos owned by the caller. Tensors bound by a recorded but unsubmitted
 * command are marked so the backend defers freeing their buffers until the submit.
 */
export function run(d: Dispatch): tf.TensorInfo[] {
  if (compileErrors.length > 0) throw new Error(compileErrors.splice(0).join('\n'));
  const backend = webgpuBackend();
  const outputs = d.outputs.map((o) => ('into' in o ? o.into : backend.makeTensorInfo(o.shape, o.dtype)));
  const bound = [...outputs, ...d.inputs];
  const buffers = bound.map((t) => bufferOf(backend, t));
  const pipeline = pipelineFor(backend.device, d);
  if (recording) record(recording, backend, d, pipeline, buffers, bound);
  const entries: GPUBindGroupEntry[] = buffers.map((buffer, i) => ({ binding: i, resource: { buffer } }));
  if (d.uniforms && d.uniforms.length > 0) entries.push({ binding: buffers.length, resource: { buffer: uniformBuffer(backend, d.uniforms) } });
  const bindGroup = backend.device.createBindGroup({ layout: layoutOf(pipeline), entries });
  for (const t of bound) backend.commandQueueOwnedIds.add(t.dataId);
  // Values cached on the host after a read would go stale once a program writes the buffer in place.
  for (const o of d.outputs) if ('into' in o) backend.tensorMap.get(o.into.dataId).values = null;
  backend.ensureCommandEncoderReady();
  if (backend.activeTimers && backend.supportTimestampQuery) {
    timedDispatch(backend, d, pipeline, bindGroup);
    return outputs;
  }
  if (!backend.computePassEncoder) backend.computePassEncoder = backend.commandEncoder!.beginComputePass();
  const pass = backend.computePassEncoder;
  pass.setPipeline(pipeline);
  pass.setBindGroup(0, bindGroup);
  pass.dispatchWorkgroups(...d.workgroups);
  backend.dispatchCountInPass++;
  if (tf.env().getNumber('WEBGPU_DEFERRED_SUBMIT_BATCH_SIZE') <= backend.dispatchCountInPass) {
    backend.endComputePassEncoder();
    backend.submitQueue();
  }
  return outputs;
}

/**
 * While tfjs times programs, a dispatch runs as tfjs's own do then: alone in a pass whose start and end write the
 * backend's two timestamps, resolved and read at once, under the program's key (profile.ts reads them).
 */
function timedDispatch(backend: WebGpuBackendInternals, d: Dispatch, pipeline: GPUComputePipeline, bindGroup: GPUBindGroup): void {
  backend.endComputePassEncoder();
  backend.querySet ??= backend.device.createQuerySet({ type: 'timestamp', count: backend.querySetCount });
  const pass = backend.commandEncoder!.beginComputePass({ timestampWrites: { querySet: backend.querySet, beginningOfPassWriteIndex: 0, endOfPassWriteIndex: 1 } });
  pass.setPipeline(pipeline);
  pass.setBindGroup(0, bindGroup);
  pass.dispatchWorkgroups(...d.workgroups);
  pass.end();
  backend.activeTimers!.push({ name: d.key, query: backend.getQueryTime() });
}

/** `run` from outside a kernel function: the outputs as tensors tracked by the engine (freed by tidy/dispose). */
export function runToTensors(d: Dispatch): tf.Tensor[] {
  return run(d).map((info) => tf.engine().makeTensorFromTensorInfo(info));
}

/**
 * Destroys the buffers tfjs keeps for reuse (a freed tensor's buffer waits in a pool for a request of exactly its size)
 * and returns their bytes. After large tensors whose sizes will not recur are freed (float32 weights replaced by packed
 * ones), the pool would hold their memory for the rest of the process. Only buffers of submitted work reach the pool;
 * WebGPU frees a destroyed buffer's memory once the work already submitted with it completes.
 */
export function releasePooledBuffers(): number {
  // Tensors freed since the last submit reach the pool at the next one: submit, so they are released too.
  submitPending();
  const manager = webgpuBackend().bufferManager;
  let bytes = 0;
  for (const buffers of manager.freeBuffers.values()) {
    for (const buffer of buffers) {
      bytes += buffer.size;
      buffer.destroy();
    }
    // The keys stay: tfjs stops pooling altogether once the map is empty.
    buffers.length = 0;
  }
  manager.numFreeBuffers = 0;
  manager.numBytesAllocated -= bytes;
  return bytes;
}

/** A new tensor whose GPU buffer is allocated but not initialised (for programs and copies that fill all of it). */
export function emptyTensor(shape: number[], dtype: 'float32' | 'int32'): tf.Tensor {
  const backend = webgpuBackend();
  const info = backend.makeTensorInfo(shape, dtype);
  bufferOf(backend, info);
  return tf.engine().makeTensorFromTensorInfo(info);
}

/**
 * Submits the commands recorded but not yet submitted, if any. queue.writeBuffer reaches the GPU before such
 * commands, and a timer would count their time: either must come after them.
 */
export function submitPending(): void {
  const backend = webgpuBackend();
  if (!backend.commandEncoder) return;
  backend.endComputePassEncoder();
  backend.submitQueue();
}

/**
 * Calls `onCall` before every call of `target[method]` until the returned function puts the method back. On a
 * WebGPU class's prototype it sees every object's calls, whoever makes them (tfjs or this engine). Nest LIFO.
 */
export function tapMethod<T extends object>(target: T, method: keyof T & string, onCall: () => void): () => void {
  const slot = target as Record<string, unknown>;
  const original = slot[method] as (...args: unknown[]) => unknown;
  slot[method] = function (this: unknown, ...args: unknown[]) {
    onCall();
    return original.apply(this, args);
  };
  return () => {
    slot[method] = original;
  };
}

/**
 * Runs `pipeline` once, as one workgroup, with `buffers` bound in order on `device` (outside tfjs's command stream:
 * for probes, not the model's work) and returns the first `bytes` of buffers[0], which needs COPY_SRC usage.
 */
export async function dispatchOnceAndRead(device: GPUDevice, pipeline: GPUComputePipeline, buffers: GPUBuffer[], bytes: number): Promise<ArrayBuffer> {
  const read = device.createBuffer({ size: bytes, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
  try {
    const entries = buffers.map((buffer, binding) => ({ binding, resource: { buffer } }));
    const encoder = device.createCommandEncoder();
    const pass = encoder.beginComputePass();
    pass.setPipeline(pipeline);
    pass.setBindGroup(0, device.createBindGroup({ layout: pipeline.getBindGroupLayout(0), entries }));
    pass.dispatchWorkgroups(1);
    pass.end();
    encoder.copyBufferToBuffer(buffers[0]!, 0, read, 0, bytes);
    device.queue.submit([encoder.finish()]);
    await read.mapAsync(GPUMapMode.READ);
    const data = read.getMappedRange().slice(0);
    read.unmap();
    return data;
  } finally {
    read.destroy();
  }
}

/** One buffer-to-buffer copy in the backend's command stream (between compute passes); not a kernel dispatch. */
export function copyBuffer(from: tf.TensorInfo, fromElement: number, to: tf.TensorInfo, toElement: number, elements: number): void {
  const backend = webgpuBackend();
  if (recording) recording.foreign++;
  const src = bufferOf(backend, from);
  const dst = bufferOf(backend, to);
  backend.commandQueueOwnedIds.add(from.dataId);
  backend.commandQueueOwnedIds.add(to.dataId);
  backend.tensorMap.get(to.dataId).values = null;
  backend.ensureCommandEncoderReady();
  backend.endComputePassEncoder();
  backend.commandEncoder!.copyBufferToBuffer(src, fromElement * 4, dst, toElement * 4, elements * 4);
}

/** Zeroes `elements` values of a tensor from `element` on, in the command stream. */
export function clearBuffer(t: tf.TensorInfo, element: number, elements: number): void {
  const backend = webgpuBackend();
  if (recording) recording.foreign++;
  const buffer = bufferOf(backend, t);
  backend.commandQueueOwnedIds.add(t.dataId);
  backend.tensorMap.get(t.dataId).values = null;
  backend.ensureCommandEncoderReady();
  backend.endComputePassEncoder();
  backend.commandEncoder!.clearBuffer(buffer, element * 4, elements * 4);
}

/** A dispatch as `captureDispatches` saw it: what dispatching it again, on the same buffers, needs. */
export interface RecordedDispatch {
  key: string;
  pipeline: GPUComputePipeline;
  /** Bound buffers in binding order (outputs, then inputs); the uniforms, if any, come after them. */
  buffers: GPUBuffer[];
  uniforms: Uniform[];
  workgroups: [number, number, number];
}

/** The tensor data a capture keeps alive, released together by `releaseCaptured`. */
export type CapturedData = object[];

interface Recording {
  dispatches: RecordedDispatch[];
  held: Set<object>;
  /** Commands recorded outside `run` while capturing: tfjs's own programs, buffer copies and clears. */
  foreign: number;
}

let recording: Recording | null = null;

function record(r: Recording, backend: WebGpuBackendInternals, d: Dispatch, pipeline: GPUComputePipeline, buffers: GPUBuffer[], tensors: tf.TensorInfo[]): void {
  r.dispatches.push({ key: d.key, pipeline, buffers, uniforms: d.uniforms ?? [], workgroups: d.workgroups });
  // One more reference on every bound buffer: freeing a tensor after the step must not hand its buffer to another.
  for (const t of tensors) {
    if (r.held.has(t.dataId)) continue;
    r.held.add(t.dataId);
    backend.incRef(t.dataId);
  }
}

/**
 * Runs `fn` (which dispatches as usual) and records every dispatch `run` makes, holding the buffers they bind so
 * they stay valid after `fn`'s tensors are freed. `foreign` counts commands that could not be recorded (tfjs's own
 * programs, copies): a capture with any is not replayable. Not re-entrant; release the data with `releaseCaptured`.
 */
export function captureDispatches<T>(fn: () => T): { result: T; dispatches: RecordedDispatch[]; held: CapturedData; foreign: number } {
  if (recording) throw new Error('captureDispatches: already capturing');
  let total = 0;
  const untap = tapMethod(GPUComputePassEncoder.prototype, 'dispatchWorkgroups', () => total++);
  const r: Recording = { dispatches: [], held: new Set(), foreign: 0 };
  recording = r;
  try {
    const result = fn();
    return { result, dispatches: r.dispatches, held: [...r.held], foreign: r.foreign + total - r.dispatches.length };
  } catch (err) {
    releaseCaptured([...r.held]);
    throw err;
  } finally {
    recording = null;
    untap();
  }
}

/** Drops a capture's references: each buffer returns to tfjs's pool once its tensor is gone too. */
export function releaseCaptured(held: CapturedData): void {
  const backend = webgpuBackend();
  for (const dataId of held) backend.disposeData(dataId);
}

// Picks and initialises the tfjs backend once per process: tfjs-node(-gpu) if installed, WebGPU on a hardware GPU adapter (pinned by PAUSEPIPE_GPU), else wasm, else cpu.
import * as tf from '@tensorflow/tfjs-core';
import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { NO_GPU } from '../../runtime/gpus.ts';
import { checkSubgroups, requestSubgroups } from './webgpu/subgroups.ts';

export type BackendName = 'tensorflow' | 'webgpu' | 'wasm' | 'cpu';

export interface BackendInfo {
  name: BackendName;
  /** One line for the user when the backend asked for (or a better one) could not be used. */
  notice?: string;
  /** What runs the kernels, e.g. `wasm (SIMD, 1 thread)` or the GPU adapter's description. */
  device?: string;
}

export const BACKEND_NAMES: readonly BackendName[] = ['tensorflow', 'webgpu', 'wasm', 'cpu'];

/** A backend that could not start: why, in a few words; `missing` when that is the machine's normal state (no GPU, optional packages not installed). */
class Unavailable extends Error {
  constructor(message: string, readonly missing = false) {
    super(message);
  }
}

const require = createRequire(import.meta.url);

/**
 * Imports an optional dependency by a name TypeScript does not resolve, so the build passes where
 * `npm install --omit=optional` left it out (callers check it is installed first).
 */
function importOptional(name: string): Promise<unknown> {
  return import(name);
}

/** One attempt per backend per process: a failed GPU probe is not repeated. */
const attempts = new Map<BackendName, Promise<string>>();
const settled = new Map<string, Promise<BackendInfo>>();

/**
 * Makes `preferred` (or the best available backend) the active tfjs backend. Idempotent: the same
 * preference returns the same answer; another preference switches the active backend. A backend that
 * is asked for but unavailable gives a one-line `notice` and the next one in the order is used.
 */
export function initBackend(preferred?: string): Promise<BackendInfo> {
  const key = preferred ?? 'auto';
  let pending = settled.get(key);
  if (!pending) {
    pending = registerGradients().then(() => choose(preferred));
    settled.set(key, pending);
  }
  return pending.then(async (info) => {
    if (tf.getBackend() !== info.name) await tf.setBackend(info.name);
    return info;
  });
}

let gradients: Promise<unknown> | null = null;

/**
 * tfjs-core's CommonJS build registers no gradient functions (tf.grad of tf.sum fails with "gradient function not
 * found"); its ES module `register_all_gradients` does, but Node cannot load that module tree (extensionless
 * imports). `npm run build` bundles it into one file (scripts/bundle-gradients.mjs); importing it registers tfjs's
 * own gradients on the shared engine in ~20 ms, where the `@tensorflow/tfjs` union bundle took ~1 s and 200 MB.
 */
function registerGradients(): Promise<unknown> {
  gradients ??= (async () => {
    const file = GRADIENT_BUNDLES.map((rel) => new URL(rel, import.meta.url)).find((url) => existsSync(url));
    if (!file) throw new Error('the tfjs gradient bundle (dist/vendor/tfjs-gradients.js) is missing: run `npm run build` in the project');
    return import(file.href);
  })();
  return gradients;
}

/** Where the bundle lies relative to this module: run from the sources (stages/lm) or from dist/stages/lm. */
const GRADIENT_BUNDLES = ['../../dist/vendor/tfjs-gradients.js', '../../vendor/tfjs-gradients.js'];

async function choose(preferred: string | undefined): Promise<BackendInfo> {
  const notices: string[] = [];
  let order: BackendName[] = [...BACKEND_NAMES];
  if (preferred !== undefined && preferred !== 'auto') {
    const asked = preferred as BackendName;
    if (!BACKEND_NAMES.includes(asked)) {
      notices.push(`unknown backend '${preferred}' (expected one of ${BACKEND_NAMES.join(', ')}, auto)`);
    } else {
      // The asked one first, then the usual order below it (a CPU request never climbs to a GPU).
      order = [asked, ...BACKEND_NAMES.slice(BACKEND_NAMES.indexOf(asked) + 1)];
    }
  }
  for (const name of order) {
    const explicit = name === preferred;
    try {
      const started = await attempt(name, explicit);
      if (!(await tf.setBackend(name))) throw new Unavailable('tfjs could not initialise it');
      const fellBack = notices.length > 0 ? `${notices.join('; ')}; using ${name}` : undefined;
      const notice = [fellBack, started.notice].filter(Boolean).join('; ');
      return notice ? { name, device: started.device, notice } : { name, device: started.device };
    } catch (err) {
      // Optional packages the user never installed are the normal case unless that backend was asked for.
      const quiet = !explicit && err instanceof Unavailable && err.missing;
      if (!quiet) notices.push(`${name} backend unavailable: ${reason(err)}`);
    }
  }
  throw new Error(`no tfjs backend could start: ${notices.join('; ')}`);
}

/** One backend as `pausepipe backends` reports it: what runs its kernels when it starts, or why it does not. */
export interface BackendSurvey {
  name: BackendName;
  device?: string;
  notice?: string;
  unavailable?: string;
}

/**
 * Tries every backend as if asked for by name (a software adapter included), then asks for the `auto` one: what this
 * machine offers and what a run would use. Leaves the auto backend active.
 */
export async function surveyBackends(): Promise<{ backends: BackendSurvey[]; auto: BackendInfo }> {
  await registerGradients();
  const backends: BackendSurvey[] = [];
  for (const name of BACKEND_NAMES) {
    try {
      const started = await attempt(name, true);
      backends.push(started.notice ? { name, device: started.device, notice: started.notice } : { name, device: started.device });
    } catch (err) {
      backends.push({ name, unavailable: reason(err) });
    }
  }
  return { backends, auto: await initBackend() };
}

function reason(err: unknown): string {
  const text = err instanceof Error ? err.message : String(err);
  return text.split('\n')[0] ?? text;
}

/** A started backend: what runs its kernels, and a line for the user when it is not what they would expect. */
interface Started {
  device: string;
  notice?: string;
}

function attempt(name: BackendName, explicit: boolean): Promise<Started> {
  if (name === 'webgpu') return startWebgpu(explicit);
  let p = attempts.get(name);
  if (!p) {
    p = STARTERS[name]();
    attempts.set(name, p);
  }
  return p.then((device) => ({ device }));
}

const STARTERS: Record<Exclude<BackendName, 'webgpu'>, () => Promise<string>> = {
  async tensorflow() {
    for (const pkg of ['@tensorflow/tfjs-node-gpu', '@tensorflow/tfjs-node']) {
      try {
        require.resolve(pkg);
      } catch {
        continue;
      }
      // Importing registers the 'tensorflow' backend on the shared tfjs-core instance; TensorFlow itself honours
      // CUDA_VISIBLE_DEVICES, which is how the runner pins a worker to its GPU.
      await import(pkg);
      if (!tf.findBackendFactory('tensorflow')) throw new Unavailable(`${pkg} loaded but registered no backend (tfjs-core version mismatch?)`);
      return pkg;
    }
    throw new Unavailable('neither @tensorflow/tfjs-node-gpu nor @tensorflow/tfjs-node is installed', true);
  },

  async wasm() {
    const wasm = await import('@tensorflow/tfjs-backend-wasm');
    // Node has no fetch for file paths: point the loader at the package's own .wasm files on disk.
    const dist = path.join(path.dirname(require.resolve('@tensorflow/tfjs-backend-wasm/package.json')), 'dist') + path.sep;
    wasm.setWasmPaths(dist);
    if (!(await tf.setBackend('wasm'))) throw new Unavailable('the wasm module failed to load');
    guardWasmAllocations((tf.backend() as unknown as { wasm: WasmModule }).wasm);
    const simd = tf.env().getBool('WASM_HAS_SIMD_SUPPORT');
    return `wasm (${simd ? 'SIMD' : 'no SIMD'}, ${wasm.getThreadsCount()} thread${wasm.getThreadsCount() === 1 ? '' : 's'})`;
  },

  async cpu() {
    await import('@tensorflow/tfjs-backend-cpu');
    return 'cpu (JavaScript)';
  },
};

/** The part of tfjs-backend-wasm's Emscripten module through which it allocates every tensor buffer. */
export interface WasmModule {
  _malloc(bytes: number): number;
  _free(at: number): void;
  HEAPU8: Uint8Array;
}

/** A tensor buffer the wasm backend's memory could not hold. */
export class WasmOutOfMemory extends Error {
  constructor(bytes: number, heapBytes: number) {
    const gib = (n: number) => `${(n / 2 ** 30).toFixed(2)} GiB`;
    super(`out of memory on the wasm backend: a tensor of ${gib(bytes)} did not fit in its memory, which has grown to ` +
      `${gib(heapBytes)} of the 4 GiB a process can address, whatever the machine has: a GPU backend (webgpu, or ` +
      '@tensorflow/tfjs-node) has no such limit; otherwise a smaller model, batch or sequence length needs less');
    this.name = 'WasmOutOfMemory';
  }
}

/**
 * Makes the wasm backend throw WasmOutOfMemory where an allocation fails. tfjs-backend-wasm takes malloc's 0 as an
 * address (the tensor then overlays the start of memory: other data is overwritten, or the next kernel faults with
 * "memory access out of bounds"), and passes sizes of 4 GiB or more to a 32-bit malloc, which wraps them.
 */
export function guardWasmAllocations(module: WasmModule): void {
  // Emscripten's first `_malloc` is a stub that puts the exported function in its place at its first call, which
  // would drop a wrapper put there before: call it once first.
  module._free(module._malloc(0));
  const malloc = module._malloc;
  module._malloc = (bytes: number) => {
    if (bytes >= 2 ** 32) throw new WasmOutOfMemory(bytes, module.HEAPU8.length);
    const at = malloc(bytes);
    if (at === 0 && bytes > 0) throw new WasmOutOfMemory(bytes, module.HEAPU8.length);
    return at;
  };
}

/** The subset of Dawn's `navigator.gpu` and adapter objects used here. */
interface GpuLike {
  requestAdapter(opts?: object): Promise<AdapterLike | null>;
}
interface AdapterLike {
  info?: { vendor?: string; architecture?: string; device?: string; description?: string; isFallbackAdapter?: boolean };
  isFallbackAdapter?: boolean;
  features?: Iterable<string>;
  limits: { maxStorageBufferBindingSize: number; maxBufferSize: number };
}
type Dawn = { create(flags: string[]): GpuLike; globals: object };

/** The adapter Dawn gives this process, found once: its name, whether it is a software rasteriser, a pinning notice. */
interface Probe extends AdapterSummary {
  gpu: GpuLike;
  notice?: string;
}

/** What the probed adapter offers: enough to choose backends in tests and to record in a GPU run's log. */
export interface AdapterSummary {
  name: string;
  software: boolean;
  limits: GpuLimits;
  /** The optional WebGPU features the adapter offers (shader-f16, subgroups, timestamp-query, ...), sorted. */
  features: string[];
}

/** Buffer limits of the adapter: one tensor's bytes must stay within both. */
export interface GpuLimits {
  maxStorageBufferBindingSize: number;
  maxBufferSize: number;
}

/** Names of CPU rasterisers that present themselves as GPU adapters (Mesa's lavapipe/llvmpipe, Google's SwiftShader). */
const SOFTWARE_ADAPTER = /llvmpipe|lavapipe|swiftshader/i;

let probing: Promise<Probe> | null = null;
let webgpuStarted: Promise<void> | null = null;

/**
 * WebGPU through Dawn. `auto` takes it only on a hardware adapter: a software one (llvmpipe, SwiftShader, or any that
 * Dawn marks as a fallback adapter) is many times slower than wasm, so it is used only when asked for by name.
 */
async function startWebgpu(explicit: boolean): Promise<Started> {
  probing ??= probeWebgpu();
  const probe = await probing;
  if (probe.software && !explicit) throw new Unavailable(`only a software adapter (${probe.name}) was found; ask for it with --backend webgpu`, true);
  webgpuStarted ??= registerWebgpu(probe);
  await webgpuStarted;
  const notices = [probe.notice];
  if (probe.software) notices.push(`webgpu runs on the software adapter ${probe.name}: correct but slow, and never picked by auto`);
  const notice = notices.filter(Boolean).join('; ');
  return notice ? { device: `webgpu: ${probe.name}`, notice } : { device: `webgpu: ${probe.name}` };
}

async function probeWebgpu(): Promise<Probe> {
  if (process.env.PAUSEPIPE_GPU?.trim() === NO_GPU) throw new Unavailable('this process was given no GPU (--gpus 0)', true);
  try {
    require.resolve('@tensorflow/tfjs-backend-webgpu');
    require.resolve('webgpu');
  } catch {
    throw new Unavailable('packages webgpu and @tensorflow/tfjs-backend-webgpu are not installed', true);
  }
  // A machine without a GPU is the usual case: auto says nothing about it, a request by name says why.
  if (!vulkanLoaderPresent()) throw new Unavailable('no GPU driver found (libvulkan.so.1 is missing)', true);
  const dawn = (await importOptional('webgpu')) as Dawn;
  Object.assign(globalThis, dawn.globals);
  const names = await adapterNames(dawn);
  if (names.length === 0) throw new Unavailable('no GPU adapter found', true);
  const pin = process.env.PAUSEPIPE_GPU;
  const { flags, notice } = pin === undefined || pin.trim() === '' ? { flags: [], notice: undefined } : pickAdapter(names, pin);
  const gpu = dawn.create(flags);
  // Probe before registering the backend, so a machine without a GPU never sees a failed tfjs init.
  const adapter = await gpu.requestAdapter({ powerPreference: 'high-performance' });
  if (!adapter) throw new Unavailable('no GPU adapter found', true);
  const info = adapter.info ?? {};
  // Dawn answers a request with the first adapter of its list that matches the flag (any, without one).
  const name = flags.length > 0 ? flags[0]!.slice('adapter='.length) : names[0]!;
  const software = info.isFallbackAdapter === true || adapter.isFallbackAdapter === true || SOFTWARE_ADAPTER.test(`${name} ${info.device} ${info.description}`);
  const limits = { maxStorageBufferBindingSize: adapter.limits.maxStorageBufferBindingSize, maxBufferSize: adapter.limits.maxBufferSize };
  const features = [...(adapter.features ?? [])].sort();
  const probe: Probe = { gpu, name, software, limits, features };
  return notice ? { ...probe, notice } : probe;
}

/**
 * Dawn's flags that make `requestAdapter` return adapter number `pin` (PAUSEPIPE_GPU, set by the runner per worker
 * with --gpus N beside CUDA_VISIBLE_DEVICES, which tfjs-node-gpu honours and the NVIDIA Vulkan driver ignores).
 * WebGPU returns one adapter per request; Dawn's node binding takes an `adapter=NAME` flag (the first adapter whose
 * name contains NAME). `names` is Dawn's enumeration order, discrete GPUs first and CPU adapters last, which is the
 * order nvidia-smi counts hardware GPUs in. GPUs that share a name (eight identical cards) cannot be told apart by
 * name: the first of them is used and the notice says so.
 */
export function pickAdapter(names: string[], pin: string): { flags: string[]; notice?: string } {
  const index = Number(pin.trim());
  // The runner passes CUDA_VISIBLE_DEVICES's entries on, which may be UUIDs: WebGPU shows no UUID to match them by.
  if (!/^\d+$/.test(pin.trim()) || !Number.isSafeInteger(index)) {
    return { flags: [], notice: `PAUSEPIPE_GPU=${pin} is not a GPU index (0, 1, ...) and Dawn cannot select an adapter by UUID, so this process runs on its first adapter` };
  }
  if (index >= names.length) {
    throw new Unavailable(`PAUSEPIPE_GPU=${index}, but Dawn finds ${names.length} adapter${names.length === 1 ? '' : 's'}${names.length ? ` (${names.join(', ')})` : ''}`);
  }
  const name = names[index]!;
  const used = names.findIndex((n) => n.includes(name));
  if (used === index) return { flags: [`adapter=${name}`] };
  return {
    flags: [`adapter=${name}`],
    notice: `PAUSEPIPE_GPU=${index}: Dawn selects adapters by name and adapter ${used} is also '${names[used]}', so this process runs on ` +
      `adapter ${used}; give each worker only its own GPU (e.g. Slurm --gpus-per-task with ConstrainDevices=yes, or one container per GPU)`,
  };
}

/** Every adapter Dawn's node binding can pick, by name, in its order (empty when there is none). */
async function adapterNames(dawn: Dawn): Promise<string[]> {
  const gpu = dawn.create(['adapter=\u0001pausepipe: list the adapters']);
  try {
    await gpu.requestAdapter({ powerPreference: 'high-performance' });
    return [];
  } catch (err) {
    const text = err instanceof Error ? err.message : String(err);
    return [...text.matchAll(/^ \* backend: '[^']*', name: '(.*)'$/gm)].map((m) => m[1]!);
  }
}

/** Hands the probed adapter to tfjs-backend-webgpu, which requests its device from `navigator.gpu`. */
async function registerWebgpu(probe: Probe): Promise<void> {
  const g = globalThis as Record<string, unknown>;
  const nav = (g.navigator ?? {}) as Record<string, unknown>;
  Object.defineProperty(nav, 'gpu', { value: probe.gpu, configurable: true });
  if (!g.navigator) g.navigator = nav;
  // The backend constructs OffscreenCanvas objects for pixel uploads; no canvas exists in Node.
  if (typeof g.OffscreenCanvas === 'undefined') {
    g.OffscreenCanvas = class {
      constructor(public width: number, public height: number) {}
      getContext(): null {
        return null;
      }
    };
  }
  requestSubgroups(probe.gpu as unknown as GPU);
  await importOptional('@tensorflow/tfjs-backend-webgpu');
  if (!(await tf.setBackend('webgpu'))) throw new Unavailable('tfjs could not create a WebGPU device');
  await checkSubgroups();
}

/**
 * The WebGPU adapter this process would use, without making it the active backend: its name, whether it is a
 * software adapter, and its buffer limits; null when there is none. Tests use it to decide which backends to run on.
 */
export async function webgpuAdapter(): Promise<AdapterSummary | null> {
  probing ??= probeWebgpu();
  try {
    const { name, software, limits, features } = await probing;
    return { name, software, limits, features };
  } catch {
    return null;
  }
}

/**
 * Dawn reaches the GPU through Vulkan on Linux; without the loader it prints a native warning and finds no
 * adapter, so look for the library first and stay silent on the usual GPU-less machine.
 */
function vulkanLoaderPresent(): boolean {
  if (process.platform !== 'linux') return true;
  const dirs = [...(process.env.LD_LIBRARY_PATH ?? '').split(':').filter(Boolean),
    '/usr/lib/x86_64-linux-gnu', '/usr/lib/aarch64-linux-gnu', '/usr/lib64', '/usr/lib', '/usr/local/lib', '/lib/x86_64-linux-gnu', '/lib64'];
  if (dirs.some((d) => existsSync(path.join(d, 'libvulkan.so.1')))) return true;
  try {
    return readFileSync('/etc/ld.so.cache').includes('libvulkan.so.1');
  } catch {
    return false;
  }
}

/** The values of a tensor without a synchronous read (which WebGPU forbids). */
export async function readTensor(t: tf.Tensor): Promise<Float32Array | Int32Array> {
  const data = await t.data();
  if (data instanceof Float32Array || data instanceof Int32Array) return data;
  if (data instanceof Uint8Array) return Int32Array.from(data);
  throw new Error(`readTensor: unsupported dtype ${t.dtype}`);
}

/** The parts of tfjs-backend-webgpu's backend used to place data on the GPU now rather than at first use. */
interface WebgpuBackendLike {
  uploadToGPU(dataId: object): void;
  ensureCommandEncoderReady(): void;
  endComputePassEncoder(): void;
  submitQueue(): void;
  device: { limits: GpuLimits };
}

/**
 * Puts a tensor made from host values on the device now. WebGPU keeps such values in host memory until a kernel first
 * reads them, so loading a model tensor by tensor would otherwise end with every weight in host memory at once;
 * after this the host array can be freed. A no-op elsewhere (wasm copies into its heap when the tensor is made).
 */
export function settleOnDevice(t: tf.Tensor): void {
  if (tf.getBackend() !== 'webgpu') return;
  const backend = tf.backend() as unknown as WebgpuBackendLike;
  backend.uploadToGPU(t.dataId);
  // Submitting frees the staging buffer an upload into a reused buffer goes through.
  backend.ensureCommandEncoderReady();
  backend.endComputePassEncoder();
  backend.submitQueue();
}

/** The active WebGPU device's buffer limits, or null on another backend. */
export function deviceLimits(): GpuLimits | null {
  if (tf.getBackend() !== 'webgpu') return null;
  const { limits } = (tf.backend() as unknown as WebgpuBackendLike).device;
  return { maxStorageBufferBindingSize: limits.maxStorageBufferBindingSize, maxBufferSize: limits.maxBufferSize };
}

// Picks and initialises the tfjs backend once per process: tfjs-node(-gpu) if the user installed it, WebGPU when a GPU adapter exists, else wasm, else cpu.
import * as tf from '@tensorflow/tfjs-core';
import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';

export type BackendName = 'tensorflow' | 'webgpu' | 'wasm' | 'cpu';

export interface BackendInfo {
  name: BackendName;
  /** One line for the user when the backend asked for (or a better one) could not be used. */
  notice?: string;
  /** What runs the kernels, e.g. `wasm (SIMD, 1 thread)` or the GPU adapter's description. */
  device?: string;
}

export const BACKEND_NAMES: readonly BackendName[] = ['tensorflow', 'webgpu', 'wasm', 'cpu'];

/** A backend that could not start: why, in a few words; `missing` when its optional packages are not installed. */
class Unavailable extends Error {
  constructor(message: string, readonly missing = false) {
    super(message);
  }
}

const require = createRequire(import.meta.url);

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
 * tfjs-core alone registers no gradient functions (tf.grad of tf.sum fails with "gradient function not found");
 * the @tensorflow/tfjs union bundle registers all of them on the shared tfjs-core instance when imported.
 */
function registerGradients(): Promise<unknown> {
  gradients ??= import('@tensorflow/tfjs');
  return gradients;
}

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
      const device = await attempt(name);
      if (!(await tf.setBackend(name))) throw new Unavailable('tfjs could not initialise it');
      return notices.length > 0 ? { name, device, notice: notices.join('; ') + `; using ${name}` } : { name, device };
    } catch (err) {
      // Optional packages the user never installed are the normal case unless that backend was asked for.
      const quiet = !explicit && err instanceof Unavailable && err.missing;
      if (!quiet) notices.push(`${name} backend unavailable: ${reason(err)}`);
    }
  }
  throw new Error(`no tfjs backend could start: ${notices.join('; ')}`);
}

function reason(err: unknown): string {
  const text = err instanceof Error ? err.message : String(err);
  return text.split('\n')[0] ?? text;
}

function attempt(name: BackendName): Promise<string> {
  let p = attempts.get(name);
  if (!p) {
    p = STARTERS[name]();
    attempts.set(name, p);
  }
  return p;
}

const STARTERS: Record<BackendName, () => Promise<string>> = {
  async tensorflow() {
    for (const pkg of ['@tensorflow/tfjs-node-gpu', '@tensorflow/tfjs-node']) {
      try {
        require.resolve(pkg);
      } catch {
        continue;
      }
      // Importing registers the 'tensorflow' backend on the shared tfjs-core instance.
      await import(pkg);
      if (!tf.findBackendFactory('tensorflow')) throw new Unavailable(`${pkg} loaded but registered no backend (tfjs-core version mismatch?)`);
      return pkg;
    }
    throw new Unavailable('neither @tensorflow/tfjs-node-gpu nor @tensorflow/tfjs-node is installed', true);
  },

  async webgpu() {
    try {
      require.resolve('@tensorflow/tfjs-backend-webgpu');
      require.resolve('webgpu');
    } catch {
      throw new Unavailable('packages webgpu and @tensorflow/tfjs-backend-webgpu are not installed', true);
    }
    if (!vulkanLoaderPresent()) throw new Unavailable('no GPU driver found (libvulkan.so.1 is missing)');
    const g = globalThis as Record<string, unknown>;
    if (!(g.navigator as { gpu?: unknown } | undefined)?.gpu) {
      const dawn = (await import('webgpu')) as { create(flags: string[]): GpuLike; globals: object };
      Object.assign(globalThis, dawn.globals);
      const gpu = dawn.create([]);
      // Probe before registering the backend, so a machine without a GPU never sees a failed tfjs init.
      const adapter = await gpu.requestAdapter({ powerPreference: 'high-performance' });
      if (!adapter) throw new Unavailable('no GPU adapter found');
      const nav = (g.navigator ?? {}) as Record<string, unknown>;
      Object.defineProperty(nav, 'gpu', { value: gpu, configurable: true });
      if (!g.navigator) g.navigator = nav;
    }
    // The backend constructs OffscreenCanvas objects for pixel uploads; no canvas exists in Node.
    if (typeof g.OffscreenCanvas === 'undefined') {
      g.OffscreenCanvas = class {
        constructor(public width: number, public height: number) {}
        getContext(): null {
          return null;
        }
      };
    }
    await import('@tensorflow/tfjs-backend-webgpu');
    if (!(await tf.setBackend('webgpu'))) throw new Unavailable('tfjs could not create a WebGPU device');
    const info = (tf.backend() as unknown as { adapterInfo?: { vendor?: string; architecture?: string } }).adapterInfo;
    return ['webgpu', info?.vendor, info?.architecture].filter(Boolean).join(' ');
  },

  async wasm() {
    const wasm = await import('@tensorflow/tfjs-backend-wasm');
    // Node has no fetch for file paths: point the loader at the package's own .wasm files on disk.
    const dist = path.join(path.dirname(require.resolve('@tensorflow/tfjs-backend-wasm/package.json')), 'dist') + path.sep;
    wasm.setWasmPaths(dist);
    if (!(await tf.setBackend('wasm'))) throw new Unavailable('the wasm module failed to load');
    const simd = tf.env().getBool('WASM_HAS_SIMD_SUPPORT');
    return `wasm (${simd ? 'SIMD' : 'no SIMD'}, ${wasm.getThreadsCount()} thread${wasm.getThreadsCount() === 1 ? '' : 's'})`;
  },

  async cpu() {
    await import('@tensorflow/tfjs-backend-cpu');
    return 'cpu (JavaScript)';
  },
};

interface GpuLike {
  requestAdapter(opts?: object): Promise<object | null>;
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

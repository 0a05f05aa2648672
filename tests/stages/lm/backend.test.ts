// initBackend: the automatic pick, software GPUs refused by auto, preferences and fallbacks, GPU pinning, gradients, reads.
import * as tf from '@tensorflow/tfjs-core';
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { execa } from 'execa';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { guardWasmAllocations, initBackend, pickAdapter, readTensor, WasmOutOfMemory, type BackendInfo, type WasmModule } from '../../../stages/lm/backend.ts';
import { PROJECT_ROOT, requires } from '../../helpers/requires.ts';

const backend = suite('backend');
const require = createRequire(import.meta.url);

function installed(pkg: string): boolean {
  try {
    require.resolve(pkg);
    return true;
  } catch {
    return false;
  }
}

/** Mesa's lavapipe, the software Vulkan driver CI installs (.ci/software-gpu.sh). */
const LAVAPIPE = '/usr/share/vulkan/icd.d/lvp_icd.json';
const NO_DRIVER = { VK_ICD_FILENAMES: '/nonexistent/icd.json', VK_DRIVER_FILES: '/nonexistent/icd.json' };
const ONLY_LAVAPIPE = { VK_ICD_FILENAMES: LAVAPIPE, VK_DRIVER_FILES: LAVAPIPE };
const withoutTfjsNode = requires(!installed('@tensorflow/tfjs-node') && !installed('@tensorflow/tfjs-node-gpu'), 'tfjs-node is installed here (it is the automatic pick)', backend);
const withLavapipe = requires(existsSync(LAVAPIPE) && installed('webgpu'), `no software GPU here (${LAVAPIPE}; .ci/software-gpu.sh installs it)`, backend);

/**
 * initBackend(preference) for each preference in turn, in a fresh process with `env`: each process probes its GPU
 * once, so the machine's drivers and PAUSEPIPE_GPU are set per process, as the runner's workers get them.
 */
async function inChild(env: Record<string, string>, preferences: Array<string | undefined>): Promise<BackendInfo[]> {
  const script = `const { initBackend } = await import(${JSON.stringify(`${PROJECT_ROOT}/stages/lm/backend.ts`)});
    const out = [];
    for (const p of ${JSON.stringify(preferences.map((p) => p ?? null))}) out.push(await initBackend(p ?? undefined));
    process.stdout.write('\\n' + JSON.stringify(out) + '\\n');
    process.exit(0);`;
  const { stdout } = await execa(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], {
    cwd: PROJECT_ROOT, env: { ...env, PAUSEPIPE_GPU: env.PAUSEPIPE_GPU ?? '' },
  });
  return JSON.parse(stdout.trim().split('\n').at(-1)!) as BackendInfo[];
}

withoutTfjsNode('without a GPU driver, auto picks wasm with SIMD quietly, and webgpu asked by name falls back with a one-line notice', async () => {
  const [auto, webgpu] = await inChild(NO_DRIVER, [undefined, 'webgpu']);
  assert.is(auto!.name, 'wasm');
  assert.match(auto!.device ?? '', /^wasm \(SIMD, \d+ threads?\)$/);
  assert.is(auto!.notice, undefined);
  assert.is(webgpu!.name, 'wasm');
  assert.is(webgpu!.notice, 'webgpu backend unavailable: no GPU adapter found; using wasm');
});

withLavapipe('auto never picks a software GPU: with only lavapipe it is wasm, and webgpu asked by name runs on llvmpipe with a notice', async () => {
  const [auto, webgpu] = await inChild(ONLY_LAVAPIPE, [undefined, 'webgpu']);
  assert.is(auto!.name, 'wasm');
  assert.is(auto!.notice, undefined);
  assert.is(webgpu!.name, 'webgpu');
  assert.match(webgpu!.device ?? '', /^webgpu: llvmpipe/);
  assert.match(webgpu!.notice ?? '', /^webgpu runs on the software adapter llvmpipe.*: correct but slow, and never picked by auto$/);
});

withLavapipe('PAUSEPIPE_GPU picks Dawn\'s adapter by number; a number beyond the adapters is a notice and a fallback', async () => {
  const [pinned] = await inChild({ ...ONLY_LAVAPIPE, PAUSEPIPE_GPU: '0' }, ['webgpu']);
  assert.is(pinned!.name, 'webgpu');
  assert.match(pinned!.device ?? '', /^webgpu: llvmpipe \(LLVM [\d.]+, \d+ bits\)$/);
  const [beyond] = await inChild({ ...ONLY_LAVAPIPE, PAUSEPIPE_GPU: '1' }, ['webgpu']);
  assert.is(beyond!.name, 'wasm');
  assert.match(beyond!.notice ?? '', /^webgpu backend unavailable: PAUSEPIPE_GPU=1, but Dawn finds 1 adapter \(llvmpipe \(LLVM [^)]*\)\); using wasm$/);
});

withLavapipe('PAUSEPIPE_GPU=none (a run given --gpus 0) keeps webgpu off every adapter, asked for by name too', async () => {
  const [none] = await inChild({ ...ONLY_LAVAPIPE, PAUSEPIPE_GPU: 'none' }, ['webgpu']);
  assert.equal([none!.name, none!.notice], ['wasm', 'webgpu backend unavailable: this process was given no GPU (--gpus 0); using wasm']);
});

backend('pickAdapter names the adapter to Dawn, and says when identical GPUs cannot be told apart', () => {
  assert.equal(pickAdapter(['NVIDIA A100-SXM4-80GB', 'NVIDIA H100 80GB HBM3', 'llvmpipe (LLVM 15.0.6, 256 bits)'], '1'), { flags: ['adapter=NVIDIA H100 80GB HBM3'] });
  const same = pickAdapter(['NVIDIA H200', 'NVIDIA H200'], ' 1 ');
  assert.equal(same.flags, ['adapter=NVIDIA H200']);
  assert.match(same.notice ?? '', /^PAUSEPIPE_GPU=1: Dawn selects adapters by name and adapter 0 is also 'NVIDIA H200', so this process runs on adapter 0; /);
  // A name contained in an earlier adapter's name is matched by that one first.
  assert.match(pickAdapter(['NVIDIA H100 PCIe', 'NVIDIA H100'], '1').notice ?? '', /adapter 0 is also 'NVIDIA H100 PCIe'/);
  // CUDA_VISIBLE_DEVICES may list UUIDs, which the runner passes on: Dawn's first adapter, with a notice.
  assert.equal(pickAdapter(['NVIDIA H200', 'NVIDIA H200'], 'GPU-8b1c3f1e'), {
    flags: [], notice: 'PAUSEPIPE_GPU=GPU-8b1c3f1e is not a GPU index (0, 1, ...) and Dawn cannot select an adapter by UUID, so this process runs on its first adapter' });
  assert.throws(() => pickAdapter([], '0'), /PAUSEPIPE_GPU=0, but Dawn finds 0 adapters$/);
});

backend('honours preferred cpu and switches back to wasm when asked again', async () => {
  const cpu = await initBackend('cpu');
  assert.is(cpu.name, 'cpu');
  assert.is(cpu.notice, undefined);
  assert.is(tf.getBackend(), 'cpu');
  const wasm = await initBackend('wasm');
  assert.is(wasm.name, 'wasm');
  assert.is(tf.getBackend(), 'wasm');
});

backend('is idempotent: the same preference gives the same answer', async () => {
  const a = await initBackend('wasm');
  const b = await initBackend('wasm');
  assert.equal(a, b);
  assert.is(tf.getBackend(), 'wasm');
});

withoutTfjsNode('a requested but missing tfjs-node names the package and falls back', async () => {
  const info = await initBackend('tensorflow');
  assert.ok(info.name === 'webgpu' || info.name === 'wasm', info.name);
  assert.match(info.notice ?? '', /^tensorflow backend unavailable: neither @tensorflow\/tfjs-node-gpu nor @tensorflow\/tfjs-node is installed; using (webgpu|wasm)/);
  await initBackend('wasm');
});

backend('an unknown backend name gives a notice and the automatic pick', async () => {
  const info = await initBackend('tpu');
  const auto = await initBackend();
  assert.is(info.name, auto.name);
  assert.match(info.notice ?? '', /^unknown backend 'tpu' \(expected one of tensorflow, webgpu, wasm, cpu, auto\)/);
  await initBackend('wasm');
});

backend('registers tfjs\'s gradients without the union bundle: tf.grad works on plain tfjs-core ops', async () => {
  await initBackend('wasm');
  const x = tf.tensor1d([1, 2, 3]);
  const g = tf.grad((t: tf.Tensor) => tf.sum(tf.mul(t, tf.sin(t))))(x);
  const expected = [1, 2, 3].map((v) => Math.sin(v) + v * Math.cos(v));
  const got = await readTensor(g);
  expected.forEach((e, i) => assert.ok(Math.abs(got[i]! - e) < 1e-5, `${got[i]} vs ${e}`));
  tf.dispose([x, g]);
});

backend('readTensor returns typed arrays without a synchronous read', async () => {
  await initBackend('wasm');
  const f = tf.tensor1d([1.5, -2]);
  const i = tf.tensor1d([3, 4], 'int32');
  const b = tf.tensor1d([true, false], 'bool');
  const fv = await readTensor(f);
  const iv = await readTensor(i);
  const bv = await readTensor(b);
  assert.ok(fv instanceof Float32Array);
  assert.equal(Array.from(fv), [1.5, -2]);
  assert.ok(iv instanceof Int32Array);
  assert.equal(Array.from(iv), [3, 4]);
  assert.ok(bv instanceof Int32Array);
  assert.equal(Array.from(bv), [1, 0]);
  tf.dispose([f, i, b]);
});

backend('no built source names an optional dependency in a static import, so `npm install --omit=optional` still builds', async () => {
  const { readFile, readdir } = await import('node:fs/promises');
  const path = await import('node:path');
  const optional = Object.keys((JSON.parse(await readFile(path.join(PROJECT_ROOT, 'package.json'), 'utf8')) as { optionalDependencies: Record<string, string> }).optionalDependencies);
  assert.equal(optional.sort(), ['@tensorflow/tfjs-backend-webgpu', 'webgpu']);
  // The folders tsconfig.build.json compiles.
  const { include } = JSON.parse(await readFile(path.join(PROJECT_ROOT, 'tsconfig.build.json'), 'utf8')) as { include: string[] };
  const offending: string[] = [];
  for (const dir of include) {
    for (const file of await readdir(path.join(PROJECT_ROOT, dir), { recursive: true })) {
      if (!file.endsWith('.ts')) continue;
      const text = await readFile(path.join(PROJECT_ROOT, dir, file), 'utf8');
      for (const name of optional) {
        const quoted = `['"]${name.replace(/[/.]/g, '\\$&')}['"]`;
        if (new RegExp(`(from\\s+|import\\s*\\(\\s*|import\\s+)${quoted}`).test(text)) offending.push(`${dir}/${file}: ${name}`);
      }
    }
  }
  assert.equal(offending, []);
});

const NO_LIMIT = 'a GPU backend (webgpu, or @tensorflow/tfjs-node) has no such limit; otherwise a smaller model, batch or sequence length needs less';

backend('a wasm allocation that fails, or asks 4 GiB or more, throws WasmOutOfMemory instead of handing out address 0 or a wrapped size', () => {
  const asked: number[] = [];
  // An Emscripten module: its first _malloc is a stub that puts the real function in its place.
  const module = {
    HEAPU8: new Uint8Array(3 * 2 ** 20),
    _free() {},
    _malloc(bytes: number): number {
      this._malloc = (n: number) => {
        asked.push(n);
        return n <= 1024 ? 64 : 0;
      };
      return this._malloc(bytes);
    },
  } as WasmModule;
  guardWasmAllocations(module);
  asked.length = 0;
  assert.is(module._malloc(1024), 64);
  assert.throws(() => module._malloc(2 ** 29), (err: Error) => err instanceof WasmOutOfMemory &&
    err.message === `out of memory on the wasm backend: a tensor of 0.50 GiB did not fit in its memory, which has grown to 0.00 GiB of the 4 GiB a process can address, whatever the machine has: ${NO_LIMIT}`);
  assert.throws(() => module._malloc(2 ** 32 + 4), /a tensor of 4\.00 GiB did not fit/);
  assert.equal(asked, [1024, 2 ** 29], 'a size of 4 GiB or more never reaches malloc');
});

backend('on the wasm backend, a kernel whose output needs 4 GiB or more fails with WasmOutOfMemory, and the backend goes on', async () => {
  await initBackend('wasm');
  // [32769, 32768] float32: 4 GiB and 128 KiB, which a 32-bit malloc would take for 128 KiB ("table index is out of bounds").
  assert.throws(() => tf.tidy(() => tf.matMul(tf.ones([32769, 1]), tf.ones([1, 32768]))), (err: Error) => err instanceof WasmOutOfMemory &&
    err.message.startsWith('out of memory on the wasm backend: a tensor of 4.00 GiB did not fit in its memory'));
  const after = tf.tidy(() => tf.matMul(tf.ones([2, 1]), tf.ones([1, 2])));
  assert.equal(Array.from(await after.data()), [1, 1, 1, 1]);
  after.dispose();
});

backend.run();

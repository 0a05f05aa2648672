// Runs a model test file's suites on every tfjs backend present (wasm always, webgpu when an adapter exists; CI must have one), and the WebGPU path's own suites on webgpu.
import { suite, type Test } from 'uvu';
import { initBackend, webgpuAdapter } from '../../stages/lm/backend.ts';
import { noteSkip } from './requires.ts';

export type TestBackend = 'wasm' | 'webgpu';

const adapter = await webgpuAdapter();

/** The backends the model suites run on here, and what the webgpu suites run on (a software adapter in CI). */
export const TEST_BACKENDS: readonly TestBackend[] = adapter || process.env.CI === 'true' ? ['wasm', 'webgpu'] : ['wasm'];
export const WEBGPU_ADAPTER = adapter?.name ?? null;

/**
 * Calls `register` once per backend in TEST_BACKENDS; it builds and runs the suites for that backend (name them with
 * `backendSuite`). Without an adapter the webgpu suites are left out, and the summary says so; under CI=true they
 * are registered anyway and fail in their `before` hook, so CI cannot pass without testing WebGPU.
 */
export function forEachBackend(register: (backend: TestBackend) => void): void {
  if (!TEST_BACKENDS.includes('webgpu')) noteSkip(NO_ADAPTER);
  for (const backend of TEST_BACKENDS) register(backend);
}

const NO_ADAPTER = 'no WebGPU adapter here: the model suites ran on wasm only, the WebGPU kernel suites not at all (.ci/software-gpu.sh installs one)';

/**
 * Runs a suite of the WebGPU path itself (its fused kernels, kernel counts; made with `backendSuite(name, 'webgpu')`)
 * where the webgpu suites run; elsewhere it is left out as forEachBackend leaves out their webgpu half, and under
 * CI=true it runs and fails without an adapter.
 */
export function runOnWebgpu<T>(test: Test<T>): void {
  if (TEST_BACKENDS.includes('webgpu')) test.run();
  else noteSkip(NO_ADAPTER);
}

/** A uvu suite named `NAME [BACKEND]` whose tests run with that backend active (started before its first test). */
export function backendSuite<T = Record<string, never>>(name: string, backend: TestBackend, context?: T): Test<T> {
  const test = suite<T>(`${name} [${backend}${backend === 'webgpu' && WEBGPU_ADAPTER ? `: ${WEBGPU_ADAPTER}` : ''}]`, context);
  test.before(() => useBackend(backend));
  return test;
}

/** Makes `backend` the active tfjs backend, failing (rather than falling back) when it cannot start. */
export async function useBackend(backend: TestBackend): Promise<void> {
  const info = await initBackend(backend);
  if (info.name !== backend) throw new Error(`the ${backend} suites cannot run: ${info.notice ?? `${info.name} started instead`}`);
}

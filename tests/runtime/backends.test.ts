// `pausepipe backends`: every backend tried by name, the one auto picks, the adapter, the GPU kernel variables.
import { execa } from 'execa';
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import type { BackendsReport } from '../../runtime/backends-report.ts';
import { webgpuAdapter } from '../../stages/lm/backend.ts';
import { PROJECT_ROOT } from '../helpers/runner.ts';

const CLEARED = { PAUSEPIPE_MATMUL: '', PAUSEPIPE_ATTENTION: '', PAUSEPIPE_DECODE_GRAPH: '', PAUSEPIPE_DECODE_LOOKAHEAD: '', PAUSEPIPE_FROZEN_WEIGHTS: '', PAUSEPIPE_GPU: '', PAUSEPIPE_GPU_MEMORY_MIB: '' };

function backends(args: string[], env: Record<string, string> = {}) {
  return execa(process.execPath, ['bin/pausepipe.js', 'backends', ...args], { cwd: PROJECT_ROOT, env: { ...process.env, ...CLEARED, ...env }, reject: false });
}

const nvidiaSmi = (process.env.PATH ?? '').split(':').some((dir) => existsSync(path.join(dir, 'nvidia-smi')));

const tfjsNodeInstalled = ['@tensorflow/tfjs-node-gpu', '@tensorflow/tfjs-node'].some((pkg) => {
  try {
    createRequire(import.meta.url).resolve(pkg);
    return true;
  } catch {
    return false;
  }
});

test('--json: the four backends in auto\'s order, what each runs on or why not, auto\'s pick, the adapter, the variables as set', async () => {
  const r = await backends(['--json'], { PAUSEPIPE_ATTENTION: 'lanes', PAUSEPIPE_DECODE_LOOKAHEAD: 'x', PAUSEPIPE_GPU_MEMORY_MIB: '24576' });
  assert.is(r.exitCode, 0, r.stderr);
  const report = JSON.parse(r.stdout) as BackendsReport;
  assert.equal(report.backends.map((b) => b.name), ['tensorflow', 'webgpu', 'wasm', 'cpu']);
  const byName = new Map(report.backends.map((b) => [b.name, b]));
  if (!tfjsNodeInstalled) assert.is(byName.get('tensorflow')!.unavailable, 'neither @tensorflow/tfjs-node-gpu nor @tensorflow/tfjs-node is installed');
  assert.is(byName.get('wasm')!.device, 'wasm (SIMD, 1 thread)');
  assert.is(byName.get('cpu')!.device, 'cpu (JavaScript)');
  const adapter = await webgpuAdapter();
  if (adapter) {
    assert.is(byName.get('webgpu')!.device, `webgpu: ${adapter.name}`);
    assert.equal({ ...report.adapter, subgroups: undefined }, { ...adapter, subgroups: undefined });
    // The software adapter here has subgroups of 8; a GPU's are larger. Without the feature: null.
    if (adapter.features.includes('subgroups')) assert.ok(report.adapter!.subgroups! >= 8, String(report.adapter!.subgroups));
    else assert.is(report.adapter!.subgroups, null);
    if (adapter.software) assert.match(byName.get('webgpu')!.notice!, 'never picked by auto');
  } else {
    assert.is(report.adapter, null);
    assert.ok(byName.get('webgpu')!.unavailable);
  }
  const expectedAuto = tfjsNodeInstalled ? 'tensorflow' : adapter && !adapter.software ? 'webgpu' : 'wasm';
  assert.is(report.auto.name, expectedAuto);
  assert.equal(report.gpuMemory, { mib: 24576, from: 'PAUSEPIPE_GPU_MEMORY_MIB' });
  assert.equal(report.variables, [
    { name: 'PAUSEPIPE_MATMUL', value: 'tfjs', set: false },
    { name: 'PAUSEPIPE_ATTENTION', value: 'lanes', set: true },
    { name: 'PAUSEPIPE_DECODE_GRAPH', value: 'on', set: false },
    { name: 'PAUSEPIPE_FROZEN_WEIGHTS', value: 'f32', set: false },
    { name: 'PAUSEPIPE_DECODE_LOOKAHEAD', set: true, error: "PAUSEPIPE_DECODE_LOOKAHEAD must be a whole number from 0 to 64, got 'x'" },
  ]);
});

test('the text form: a line per backend, auto\'s pick, the variables with their defaults marked', async () => {
  const r = await backends([]);
  assert.is(r.exitCode, 0, r.stderr);
  const lines = r.stdout.split('\n');
  assert.is(lines[0], 'backends, in the order auto tries them:');
  assert.ok(lines.includes('  wasm        wasm (SIMD, 1 thread)'), r.stdout);
  const adapter = await webgpuAdapter();
  if (!tfjsNodeInstalled) {
    const auto = adapter && !adapter.software ? `auto: webgpu: ${adapter.name}` : 'auto: wasm (SIMD, 1 thread)';
    assert.ok(lines.includes(auto), r.stdout);
  }
  // This machine has no nvidia-smi; a malformed setting is shown, not fatal.
  const memory = lines.find((l) => l.startsWith('memory per GPU: '));
  if (!nvidiaSmi) assert.is(memory, 'memory per GPU: unknown (no nvidia-smi; PAUSEPIPE_GPU_MEMORY_MIB sets it)');
  const bad = await backends([], { PAUSEPIPE_GPU_MEMORY_MIB: '80G' });
  assert.ok(bad.stdout.split('\n').includes("memory per GPU: invalid: PAUSEPIPE_GPU_MEMORY_MIB must be a whole number of MiB, got '80G'"), bad.stdout);
  assert.equal(lines.slice(-6), [
    'GPU kernel variables:',
    '  PAUSEPIPE_MATMUL=tfjs (default)',
    '  PAUSEPIPE_ATTENTION=rows (default)',
    '  PAUSEPIPE_DECODE_GRAPH=on (default)',
    '  PAUSEPIPE_FROZEN_WEIGHTS=f32 (default)',
    '  PAUSEPIPE_DECODE_LOOKAHEAD=1 (default)',
  ]);
  const extra = await backends(['wasm']);
  assert.is(extra.exitCode, 2);
  assert.match(extra.stderr, 'pausepipe backends: expected no arguments, got 1');
});

test.run();

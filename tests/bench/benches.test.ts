// The device check's benches on the software adapter (bench/train.bench.ts, bench/matmul.bench.ts): the flags it
// passes, the lines device-verdicts.ts reads. A bench broken here would otherwise first show on a lent GPU, at the cost
// of its minutes.
import { execa } from 'execa';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { productRatios, rates } from '../../bench/device-verdicts.ts';
import { runOnWebgpu } from '../helpers/backends.ts';
import { PROJECT_ROOT } from '../helpers/runner.ts';

const test = suite('benches [webgpu]');

/** The bench's `small` shape shrunk to one short step; the kernel variables cleared so only the flags choose. */
const SMALL = ['--backend', 'webgpu', '--shape', 'small', '--steps', '1', '--batch', '2', '--seq', '16', '--gen', '3', '--torch', 'none'];

function bench(...flags: string[]) {
  const env = { ...process.env, PAUSEPIPE_MATMUL: '', PAUSEPIPE_ATTENTION: '', PAUSEPIPE_DECODE_LOOKAHEAD: '', PAUSEPIPE_DECODE_GRAPH: '', PAUSEPIPE_FROZEN_WEIGHTS: '' };
  return execa(process.execPath, ['--import', 'tsx', 'bench/train.bench.ts', ...SMALL, ...flags], { cwd: PROJECT_ROOT, env, reject: false });
}

const line = (out: string, prefix: string) => out.split('\n').find((l) => l.startsWith(prefix)) ?? `(no ${prefix} line)`;

test('the WGSL GEMM with lanes attention: the same losses as the defaults, each run naming its kernels, the counts the kernels line gives', async () => {
  const defaults = await bench();
  const both = await bench('--matmul', 'wgsl', '--attention', 'lanes');
  assert.is(defaults.exitCode, 0, defaults.stderr);
  assert.is(both.exitCode, 0, both.stderr);
  assert.match(line(defaults.stdout, 'backend:'), /, matmul tfjs, attention rows, frozen weights f32$/);
  // The small shape's heads are 32 wide: two lanes of 16 values per row.
  assert.match(line(both.stdout, 'backend:'), /, matmul wgsl, attention lanes \(2 per row\), frozen weights f32$/);
  const losses = (out: string) => /loss ([\d.]+ → [\d.]+)/.exec(line(out, 'train:'))?.[1];
  assert.is(losses(both.stdout), losses(defaults.stdout));
  assert.ok(losses(defaults.stdout));
  // One more kernel a layer for lanes (each query row's D), K split into slices with their sums for the WGSL GEMM.
  assert.match(line(defaults.stdout, 'kernels:'), /^kernels: train 140, decode 33, reads 1\.0, bind groups 0\.0 /);
  assert.match(line(both.stdout, 'kernels:'), /^kernels: train 153, decode 33, reads 1\.0, bind groups 0\.0 /);
  for (const out of [defaults.stdout, both.stdout]) {
    const r = rates(out.split('\n'));
    assert.ok(r.train && r.decode, 'device-verdicts.ts reads the train and decode lines');
  }
});

test('an unknown --attention, --matmul or --frozen-weights is refused before anything runs, and bf16 weights off WebGPU too', async () => {
  const bad = await bench('--attention', 'flash');
  assert.is(bad.exitCode, 2);
  assert.is(bad.stderr.trim(), 'train.bench: --attention must be rows or lanes, got flash');
  const worse = await bench('--matmul', 'cuda');
  assert.is(worse.exitCode, 2);
  assert.is(worse.stderr.trim(), 'train.bench: --matmul must be tfjs or wgsl, got cuda');
  const half = await bench('--frozen-weights', 'half');
  assert.is(half.exitCode, 2);
  assert.is(half.stderr.trim(), 'train.bench: --frozen-weights must be f32 or bf16, got half');
  const onWasm = await bench('--frozen-weights', 'bf16', '--backend', 'wasm');
  assert.is(onWasm.exitCode, 2);
  assert.is(onWasm.stderr.trim(), 'train.bench: --frozen-weights bf16 needs the webgpu backend, this run has wasm');
});

test('matmul.bench: every product of the list against tfjs\'s, the same values, a ratio the verdicts read; weights packed as bfloat16 give the same bits', async () => {
  const r = await execa(process.execPath, ['--import', 'tsx', 'bench/matmul.bench.ts', '--trials', '1'], { cwd: PROJECT_ROOT, reject: false });
  assert.is(r.exitCode, 0, r.stderr);
  const lines = r.stdout.split('\n').filter((l) => l.startsWith('matmul '));
  assert.is(lines.length, 9);
  for (const l of lines) {
    const diff = Number(/max diff ([\d.e+-]+) of max \|C\|$/.exec(l)?.[1]);
    assert.ok(diff < 1e-5, l);
  }
  assert.is(productRatios(r.stdout.split('\n')).length, 9);
  // The six products whose B is a weight, again with B packed as bfloat16.
  const packed = r.stdout.split('\n').filter((l) => l.startsWith('  wgsl with B packed as bfloat16: '));
  assert.is(packed.length, 6, r.stdout);
  for (const l of packed) assert.match(l, /× the float32 B's [\d.]+ [GT]FLOP\/s\), the same bits$/);
});

runOnWebgpu(test);

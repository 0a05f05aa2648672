// bench/device-verdicts.ts: the decisions read from a device check's logs (lines in the benches' own formats).
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { rates, sections, verdicts } from '../../bench/device-verdicts.ts';

const train = (ms: number, tps: number) => `train: 3 steps, ${ms} ms a step → ${tps.toLocaleString('en-US')} tokens/s wall; 9.2 TFLOP/s = 90.0% of the roofline`;
const decode = (tps: number, ms: number) => `decode: batch 8, prompt 16, 32 tokens greedy with the KV cache, 1 step ahead of each read → prefill 9 ms, ${tps.toLocaleString('en-US')} tokens/s wall (${ms} ms a step, of which the host spends 0.31 ms queuing it)`;

const BENCH = [
  '=== matmul bench: tfjs vs wgsl (limit 90s)',
  'backend: webgpu: NVIDIA H100',
  'matmul 4096³: 4096×4096×4096 NN, 4 per read: tfjs 9.10 TFLOP/s, wgsl 18.20 TFLOP/s (2.00×; 128x128x8/8x8), max diff 1.0e-7 of max |C|',
  'matmul medium o dW = dYᵀ·X: 512×4096×512 TN, 20 per read: tfjs 4.00 TFLOP/s, wgsl 2.00 TFLOP/s (0.50×; 128x128x8/8x8, K in 16 slices), max diff 1.0e-7 of max |C|',
  '=== bench small (limit 60s)',
  train(20, 52480),
  decode(6000, 1.3),
  '=== bench medium (limit 75s)',
  train(115, 35562),
  decode(3000, 5.3),
  '=== bench medium, wgsl matmul (limit 75s)',
  train(80, 51200),
  '=== bench medium, lanes attention (limit 75s)',
  train(125, 32768),
  '=== bench small, decode graph off (limit 60s)',
  decode(2400, 3.3),
  '=== bench small, lookahead 4 (limit 60s)',
  decode(7000, 1.1),
  '=== matmul bench: other wgsl tiles (limit 120s)',
  'matmul 4096³: 4096×4096×4096 NN, 4 per read: tfjs 9.10 TFLOP/s, wgsl 18.00 TFLOP/s (1.98×; 128x128x8/8x8), max diff 1.0e-7 of max |C|',
  '  other wgsl tiles (bm x bn x bk / per invocation; +db = two copies): 128x128x16/8x8 21.60 TFLOP/s, 64x64x8/4x4 9.00 TFLOP/s, 128x128x8/8x8+db 23.40 TFLOP/s',
  '  not tried (over this GPU\'s 16384 bytes of workgroup memory): 128x128x16/8x8+db',
].join('\n');

const MISTRAL = [
  '=== bench mistral7b, 1 layer (limit 150s)',
  train(513, 9359),
  '=== bench mistral7b, 1 layer, lanes attention (limit 150s)',
  train(400, 12000),
  '=== bench mistral7b, 1 layer, bf16 frozen weights (limit 150s)',
  train(490, 9796),
  '=== bench mistral7b, 32 layers, checkpointing (limit 240s)',
  'memory: peak host RSS 1.20 GiB, GPU 41.30 GiB allocated by tfjs at its peak',
  '=== bench mistral7b, 32 layers, checkpointing, bf16 frozen weights (limit 240s)',
  'memory: peak host RSS 1.10 GiB, GPU 28.10 GiB allocated by tfjs at its peak',
].join('\n');

test('sections split a log at its `=== step (limit Ns)` lines; rates read ms a step and tokens/s, a checkpointed run\'s train line too', () => {
  const s = sections(BENCH);
  assert.equal([...s.keys()].slice(0, 3), ['matmul bench: tfjs vs wgsl', 'bench small', 'bench medium']);
  assert.equal(rates(s.get('bench small')), { train: { ms: 20, tokensPerS: 52480 }, decode: { ms: 1.3, tokensPerS: 6000 } });
  assert.equal(rates(['train (activation checkpointing; rates count model FLOPs, not the recomputed forward): 1 steps, 14802 ms a step → 2,594 tokens/s wall']).train,
    { ms: 14802, tokensPerS: 2594 });
  assert.equal(rates(undefined), { train: null, decode: null });
});

test('verdicts: each decision with its figures, and what was not measured says so', () => {
  assert.equal(verdicts(BENCH, MISTRAL), [
    'verdict products: the WGSL GEMM against tfjs\'s matmul 2×, 0.5× (faster on 1 of 2 shapes, geometric mean 1.00×)',
    'verdict medium training: tfjs 35,562 tokens/s (115 ms a step), wgsl 51,200 tokens/s (80 ms a step) (wgsl 1.44×): make wgsl the default (matMulChoice in stages/lm/webgpu/matmul.ts)',
    'verdict mistral7b layer training: tfjs 9,359 tokens/s (513 ms a step), wgsl not measured (wgsl not measured): no decision',
    'verdict medium attention: rows 35,562 tokens/s (115 ms a step), lanes 32,768 tokens/s (125 ms a step) (lanes 0.92×): keep rows',
    'verdict mistral7b layer attention: rows 9,359 tokens/s (513 ms a step), lanes 12,000 tokens/s (400 ms a step) (lanes 1.28×): make lanes the default (attentionChoice in stages/lm/webgpu/attention.ts)',
    'verdict tiles: best other tile per shape 4096³: 128x128x8/8x8+db 1.30× (against the planned tile)',
    'verdict decode replay, small: 6,000 tokens/s (1.3 ms a step) replayed, 2,400 tokens/s (3.3 ms a step) through tfjs (replay 2.54×)',
    'verdict decode replay, medium: 3,000 tokens/s (5.3 ms a step) replayed, not measured through tfjs (replay not measured)',
    'verdict frozen weights: f32 9,359 tokens/s (513 ms a step), bf16 9,796 tokens/s (490 ms a step) (bf16 1.05×); 32 layers at their GPU peak: f32 41.30 GiB, bf16 28.10 GiB: make bf16 the default (PAUSEPIPE_FROZEN_WEIGHTS in stages/lm/gpu-settings.ts)',
    'verdict decode lookahead, small: 1 ahead 6,000 tokens/s (1.3 ms a step), 4 ahead 7,000 tokens/s (1.1 ms a step) (1.18×): raise the default (PAUSEPIPE_DECODE_LOOKAHEAD in kernels.ts)',
  ]);
});

test('verdicts on a software adapter say so first and decide no default, whatever its rates', () => {
  const soft = BENCH.replace('backend: webgpu: NVIDIA H100', 'backend: webgpu: llvmpipe (LLVM 15.0.6, 256 bits), a software adapter: sizes / 16, rates meaningless');
  const lines = verdicts(soft, MISTRAL);
  assert.is(lines[0], 'verdicts from a software adapter (llvmpipe (LLVM 15.0.6, 256 bits)): the script ran; its rates decide nothing');
  assert.equal(lines.filter((l) => /make|raise|keep/.test(l)), []);
  assert.equal(lines.filter((l) => l.endsWith(': no decision (software adapter)')).length, 5);
  // What was not measured still says so.
  assert.ok(lines.includes('verdict mistral7b layer training: tfjs 9,359 tokens/s (513 ms a step), wgsl not measured (wgsl not measured): no decision'));
});

test.run();

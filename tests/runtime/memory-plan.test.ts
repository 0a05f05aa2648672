// The memory lines of `plan` and the refusals of `run`: how stale model stages would run here, by the scheduler's rules.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { Resources } from '../../stages/kind.ts';
import { cannotRunLines, describeMemory, memoryLines, runsOnWasm, stageMemory, type MemoryMachine, type MemoryPlan } from '../../runtime/memory-plan.ts';
import { cli, tempWorkspace } from '../helpers/runner.ts';

/** sft of the seed's pause-only Mistral-7B at batch 8 × 600, as its kind estimates it (tests/stages/lm/memory-estimate.test.ts). */
const SEED_SFT: Resources = { cpu: 1, gpu: 1, gpuMemoryMiB: 254_591, gpuMemoryCheckpointedMiB: 47_033, hostMemoryMiB: 4608, beyondWasm: 'the model needs at least 106.4 GiB of tensors to train' };
const H200: MemoryMachine = { cluster: false, gpus: 1, gpuMemoryMiB: 143_771, wasm: false };
const NO_GPU: MemoryMachine = { cluster: false, gpus: 0, hostMemoryMiB: 10_240, wasm: true };

const said = (r: Resources, machine: MemoryMachine) => describeMemory(stageMemory('tune', r, machine)!, machine);

test('a GPU whose memory is known: the estimate the stage takes there, checkpointing, and how many share a GPU', () => {
  assert.equal(stageMemory('tune', SEED_SFT, H200), { name: 'tune', gpuMiB: 47_033, checkpointing: true, gpuWithoutCheckpointingMiB: 254_591, perGpu: 3 });
  assert.is(said(SEED_SFT, H200), '~45.9 GiB GPU (checkpointed; 248.6 GiB without), 3 share a GPU');
  assert.is(said({ cpu: 1, gpu: 1, gpuMemoryMiB: 45_264 }, H200), '~44.2 GiB GPU, 3 share a GPU');
  assert.is(said({ cpu: 1, gpu: 1, gpuMemoryMiB: 100_000 }, H200), '~97.7 GiB GPU, holds a GPU alone');
  assert.is(said(SEED_SFT, { ...H200, gpuMemoryMiB: undefined }), '~248.6 GiB GPU, one per GPU (its memory unknown)');
  assert.is(said(SEED_SFT, { cluster: false, gpus: 2, stagesPerGpu: 4, wasm: false }), '~248.6 GiB GPU, 4 share a GPU');
});

test('beyond a GPU even checkpointed: cannot run, by its estimate (run warns); without its checkpointed estimate the advice names checkpointing', () => {
  const small: MemoryMachine = { ...H200, gpuMemoryMiB: 40_960 };
  assert.equal(stageMemory('tune', SEED_SFT, small)!.cannotRun, {
    why: 'estimated at 45.9 GiB of GPU memory even with activation checkpointing, more than the 40.0 GiB of a GPU here',
    todo: 'a smaller batch_size or max_length, or a GPU with more memory (Slurm settings); PAUSEPIPE_GPU_MEMORY_MIB if the GPU has more than nvidia-smi says',
    certain: false,
  });
  const { gpuMemoryCheckpointedMiB: _, ...unset } = SEED_SFT;
  assert.equal(stageMemory('tune', unset, small)!.cannotRun?.todo,
    'a smaller batch_size or max_length, sft: gradient_checkpointing true or unset, or a GPU with more memory (Slurm settings); PAUSEPIPE_GPU_MEMORY_MIB if the GPU has more than nvidia-smi says');
});

test('no GPU: the host estimate and how many start at once in the memory free; beyond wasm it cannot run, certainly', () => {
  const small: Resources = { cpu: 1, gpu: 1, gpuMemoryMiB: 900, hostMemoryMiB: 4608 };
  assert.is(said(small, NO_GPU), '~4.5 GiB memory without a GPU, memory for 2 at once in the 10.0 GiB free');
  assert.is(said(small, { ...NO_GPU, hostMemoryMiB: undefined }), '~4.5 GiB memory without a GPU');
  assert.equal(stageMemory('tune', SEED_SFT, NO_GPU)!.cannotRun, {
    why: SEED_SFT.beyondWasm,
    todo: 'run it on a machine with a GPU, or --executor slurm with GPUs in its settings (a GPU that nvidia-smi does not list: --backend webgpu)',
    certain: true,
  });
  assert.is(stageMemory('tune', SEED_SFT, { ...NO_GPU, gpusHidden: true })!.cannotRun?.todo, 'leave out --gpus 0 on a machine with a GPU, or --executor slurm with GPUs in its settings');
  assert.is(stageMemory('tune', SEED_SFT, { ...H200, wasm: true })!.cannotRun?.todo, 'leave --backend to auto (the GPU then runs it)');
  // tfjs-node holds the model without wasm's limit: it runs, in host memory.
  assert.is(said(SEED_SFT, { ...NO_GPU, wasm: false }), '~4.5 GiB memory without a GPU, memory for 2 at once in the 10.0 GiB free');
});

test('Slurm places the stages: only the estimates, and nothing this machine lacks refuses them', () => {
  const cluster: MemoryMachine = { cluster: true, gpus: 0, wasm: false };
  assert.is(said(SEED_SFT, cluster), '~248.6 GiB GPU (~45.9 GiB checkpointed on a smaller GPU), ~4.5 GiB memory without a GPU (Slurm places it)');
  assert.is(said({ cpu: 1, gpu: 1, gpuMemoryMiB: 3000, hostMemoryMiB: 1843 }, cluster), '~2.9 GiB GPU, ~1.8 GiB memory without a GPU (Slurm places it)');
  assert.is(stageMemory('tune', SEED_SFT, cluster)!.cannotRun, undefined);
  assert.is(stageMemory('prep', { cpu: 1 }, H200), undefined);
});

test('wasm runs the models: asked for by name, or auto without a GPU or tfjs-node', () => {
  assert.equal([
    runsOnWasm(undefined, 0, false), runsOnWasm('auto', 0, false), runsOnWasm('wasm', 1, true),
    runsOnWasm(undefined, 1, false), runsOnWasm(undefined, 0, true), runsOnWasm('webgpu', 0, false),
  ], [true, true, true, false, false, false]);
});

test('memory lines: one per declared stage and estimate, a count past three, the stages whose models come first, and refusals apart', () => {
  const variant = (bs: number) => stageMemory(`tune[bs=${bs}]`, { ...SEED_SFT, gpuMemoryCheckpointedMiB: 40_000 + bs * 1024 }, H200)!;
  const plan: MemoryPlan = {
    stages: [
      ...Array.from({ length: 20 }, (_, i) => stageMemory(`warm[v=${i}]`, SEED_SFT, H200)!),
      ...[1, 2, 3, 4, 5].map(variant),
    ],
    unknown: ['score[v=1]', 'score[v=2]'],
  };
  assert.equal(memoryLines(plan, H200), [
    'memory warm[v=0] and 19 more variants of warm: ~45.9 GiB GPU (checkpointed; 248.6 GiB without), 3 share a GPU',
    'memory tune[bs=1]: ~40.1 GiB GPU (checkpointed; 248.6 GiB without), 3 share a GPU',
    'memory tune[bs=2]: ~41.1 GiB GPU (checkpointed; 248.6 GiB without), 3 share a GPU',
    'memory tune[bs=3]: ~42.1 GiB GPU (checkpointed; 248.6 GiB without), 3 share a GPU',
    'memory 2 more variants of tune: other estimates (plan --json lists each)',
    'memory of 2 stages (score) estimated once the models they read are computed',
  ]);
  const blocked: MemoryPlan = { stages: [stageMemory('warm[v=0]', SEED_SFT, NO_GPU)!, stageMemory('warm[v=1]', SEED_SFT, NO_GPU)!], unknown: [] };
  assert.equal(memoryLines(blocked, NO_GPU), []);
  const span = { file: path.join(process.cwd(), 'main.pipe'), line: 4, column: 3, endLine: 4, endColumn: 9, offset: 0, endOffset: 0 };
  const pipeline = { stages: [{ name: 'warm[v=0]', span }] } as never;
  assert.equal(cannotRunLines(blocked, { pipeline }), [
    'main.pipe:4:3: warm[v=0] and 1 more variant of warm cannot run on this machine: the model needs at least 106.4 GiB of tensors to train',
    '  to run it: run it on a machine with a GPU, or --executor slurm with GPUs in its settings (a GPU that nvidia-smi does not list: --backend webgpu)',
  ]);
});

/** The seed's model as a config.json that an sh stage puts in the cache, a dataset, two sft variants and an evaluate. */
async function seedWorkspace(): Promise<string> {
  const dir = await tempWorkspace();
  const config = { hidden_size: 4096, intermediate_size: 14336, num_hidden_layers: 32, num_attention_heads: 32, num_key_value_heads: 8, vocab_size: 32000, tie_word_embeddings: false, pause_token_id: 32000 };
  await writeFile(path.join(dir, 'config.json'), JSON.stringify(config));
  await writeFile(path.join(dir, 'main.pipe'), [
    'stage base = sh { command: ["sh", "-c", "cp config.json \\"$PAUSEPIPE_OUT/config.json\\""], deps: ["config.json"] }',
    'stage data = synthetic_math { train: 20, validation: 4, test: 4 }',
    'stage other = sh { command: ["true"] }',
    'for each bs in [8, 16] {',
    '  stage tune = sft(model: base, data: data) { batch_size: bs, max_length: 600, train: { pause_head: true, pause_embedding: true } }',
    '}',
    'stage score = evaluate(model: base, data: data) { batch_size: 8 }',
    '',
  ].join('\n'));
  return dir;
}

test('plan and run of the seed\'s 7B: estimates once the model is there, 3 share a 140 GiB GPU; without a GPU on wasm run refuses before anything runs', async () => {
  const dir = await seedWorkspace();
  const gpu = { PAUSEPIPE_GPU_MEMORY_MIB: '143771', CUDA_VISIBLE_DEVICES: '0' };
  const before = await cli(['plan', 'main.pipe', '--gpus', '1'], dir, gpu);
  assert.is(before.exitCode, 0, before.stderr);
  assert.ok(before.stdout.split('\n').includes('memory of 3 stages (tune, score) estimated once the models they read are computed'), before.stdout);
  const prepared = await cli(['run', 'main.pipe', 'base', 'data'], dir);
  assert.is(prepared.exitCode, 0, prepared.stderr);
  const plan = await cli(['plan', 'main.pipe', '--gpus', '1'], dir, gpu);
  assert.is(plan.exitCode, 0, plan.stderr);
  assert.equal(plan.stdout.split('\n').filter((l) => l.startsWith('memory')), [
    'memory tune[bs=8]: ~45.9 GiB GPU (checkpointed; 248.6 GiB without), 3 share a GPU',
    'memory tune[bs=16]: ~57.6 GiB GPU (checkpointed; 463.0 GiB without), 2 share a GPU',
    'memory score: ~44.2 GiB GPU, 3 share a GPU',
  ]);
  const json = JSON.parse((await cli(['plan', 'main.pipe', '--gpus', '1', '--json'], dir, gpu)).stdout) as { stages: { name: string; memory?: unknown }[] };
  assert.equal(json.stages.find((s) => s.name === 'tune[bs=8]')!.memory, { gpuMiB: 47_033, checkpointing: true, gpuWithoutCheckpointingMiB: 254_591, perGpu: 3 });
  // On wasm (named, so tfjs-node on the test machine changes nothing): plan says so and exits 1, run stops with 2.
  const wasmPlan = await cli(['plan', 'main.pipe', '--gpus', '0', '--backend', 'wasm'], dir);
  assert.is(wasmPlan.exitCode, 1);
  assert.match(wasmPlan.stdout, /^main\.pipe:5:9: tune\[bs=8\] and 1 more variant of tune cannot run on this machine: the model \(7\.24 B parameters\) needs at least 106\.4 GiB/m);
  // --gpus 0 runs model stages on the CPU: they share the memory free, as without a GPU.
  const machine = JSON.parse((await cli(['plan', 'main.pipe', '--gpus', '0', '--json'], dir)).stdout).machine as { hostMemoryMiB?: unknown };
  assert.is(typeof machine.hostMemoryMiB, 'number');
  const run = await cli(['run', 'main.pipe', '--gpus', '0', '--backend', 'wasm'], dir);
  assert.is(run.exitCode, 2, run.stderr);
  assert.match(run.stderr, /^main\.pipe:7:7: score cannot run on this machine: the model \(7\.24 B parameters\) needs at least 80\.0 GiB of tensors to evaluate/m);
  assert.match(run.stderr, /^  to run it: leave out --gpus 0 on a machine with a GPU, or --executor slurm with GPUs in its settings$/m);
  assert.ok(run.stderr.endsWith('nothing was run'), run.stderr);
  // Nothing lost: the cheap stage that would have run first is still to run.
  const after = await cli(['plan', 'main.pipe', 'other'], dir);
  assert.ok(after.stdout.includes('stale  other: new stage'), after.stdout);
  // An estimate beyond the GPU is said, and the stage tried: here it fails for want of weights, not of memory.
  const tried = await cli(['run', 'main.pipe', 'score', '--gpus', '1'], dir, { ...gpu, PAUSEPIPE_GPU_MEMORY_MIB: '40960' });
  assert.is(tried.exitCode, 1, tried.stderr);
  assert.ok(tried.stderr.startsWith('main.pipe:7:7: score cannot run on this machine (by its estimate): estimated at 44.2 GiB of GPU memory, ' +
    'more than the 40.0 GiB of a GPU here\n'), tried.stderr);
  assert.match(tried.stderr, /^running them anyway: an estimate is no measurement$/m);
  assert.match(tried.stderr, /^failed score: /m);
  // The targets it does not need run.
  const other = await cli(['run', 'main.pipe', 'other', '--gpus', '0', '--backend', 'wasm'], dir);
  assert.is(other.exitCode, 0, other.stderr);
});

test('before anything runs: a checkpoint folder\'s config.json foresees the models down the chain (sft with LoRA, add_pause_token, sft, evaluate)', async () => {
  const dir = await tempWorkspace();
  await mkdir(path.join(dir, 'mistral'));
  const config = { hidden_size: 4096, intermediate_size: 14336, num_hidden_layers: 32, num_attention_heads: 32, num_key_value_heads: 8, vocab_size: 32000, tie_word_embeddings: false };
  await writeFile(path.join(dir, 'mistral', 'config.json'), JSON.stringify(config));
  await writeFile(path.join(dir, 'main.pipe'), [
    'stage base = init_model { path: "mistral" }',
    'stage data = synthetic_math { train: 20, validation: 4, test: 4 }',
    'stage step1 = sft(model: base, data: data) { batch_size: 8, max_length: 600, lora: { r: 16 }, train: { pause_embedding: false, pause_head: false } }',
    'stage pause_model = add_pause_token(model: step1) { }',
    'for each v in [1, 2, 3] {',
    '  stage warm = sft(model: pause_model, data: data) { batch_size: 8, max_length: 600, seed: v }',
    '  stage eval = evaluate(model: warm, data: data) { batch_size: 8 }',
    '}',
    'stage small = init_model { preset: "tiny" }',
    'stage eval_small = evaluate(model: small, data: data) { }',
    '',
  ].join('\n'));
  const plan = await cli(['plan', 'main.pipe', '--gpus', '1'], dir, { PAUSEPIPE_GPU_MEMORY_MIB: '143771', CUDA_VISIBLE_DEVICES: '0' });
  assert.is(plan.exitCode, 0, plan.stderr);
  assert.equal(plan.stdout.split('\n').filter((l) => l.startsWith('memory')), [
    'memory step1: ~46.0 GiB GPU (checkpointed; 248.7 GiB without), 3 share a GPU',
    'memory warm[v=1] and 2 more variants of warm: ~45.9 GiB GPU (checkpointed; 248.6 GiB without), 3 share a GPU',
    'memory eval[v=1] and 2 more variants of eval: ~44.2 GiB GPU, 3 share a GPU',
    // A from-scratch preset's shape depends on its tokenizer: known once it ran.
    'memory of 1 stage (eval_small) estimated once the models it reads are computed',
  ]);
  // On wasm the 7B stages would refuse themselves when they start: the run stops before base and data run.
  const run = await cli(['run', 'main.pipe', '--gpus', '0', '--backend', 'wasm'], dir);
  assert.is(run.exitCode, 2, run.stderr);
  assert.match(run.stderr, /^main\.pipe:3:7: step1 cannot run on this machine: the model \(7\.24 B parameters\) needs at least 106\.4 GiB of tensors to train/m);
  assert.ok(run.stderr.endsWith('nothing was run'), run.stderr);
  const after = await cli(['plan', 'main.pipe', 'base', 'data'], dir);
  assert.equal(after.stdout.split('\n'), ['stale  base: new stage', 'stale  data: new stage', '2 stale, 0 fresh']);
});

test.run();

// The GPU memory estimate of model stages: parameter counts against real checkpoints, the estimate, sft/evaluate resources.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { readFileSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { checkpointingAdvice, estimateGpuMemoryMiB, hostMemoryMiB, modelStageResources, parameterCount, PROCESS_OVERHEAD_MIB, wasmTensorFloor } from '../../../stages/lm/memory-estimate.ts';
import { EVALUATE } from '../../../stages/evaluate.ts';
import { storedDtypes, writeSafetensors } from '../../../stages/lm/safetensors.ts';
import { plannedTraining, SFT } from '../../../stages/sft.ts';
import { withEnv } from '../../helpers/env.ts';
import { FIXTURES, trainableCounts, withFixtures } from '../../helpers/hf-fixtures.ts';

const test = suite('memory-estimate');

const configOf = (name: string) => JSON.parse(readFileSync(path.join(FIXTURES, name, 'config.json'), 'utf8')) as Record<string, unknown>;

/** Elements of every tensor in a safetensors file, from its JSON header. */
function storedParameters(file: string): number {
  const bytes = readFileSync(file);
  const header = JSON.parse(bytes.subarray(8, 8 + Number(bytes.readBigUInt64LE(0))).toString('utf8')) as Record<string, { shape?: number[] }>;
  return Object.entries(header).filter(([k]) => k !== '__metadata__').reduce((n, [, t]) => n + t.shape!.reduce((a, b) => a * b, 1), 0);
}

/** Mistral-7B-v0.1's config.json, the seed's model. */
const MISTRAL_7B = {
  hidden_size: 4096, intermediate_size: 14336, num_hidden_layers: 32, num_attention_heads: 32, num_key_value_heads: 8,
  vocab_size: 32000, tie_word_embeddings: false,
};


withFixtures(test)('parameter counts from config.json equal the tensors stored in the fixture checkpoints, tied and untied', () => {
  for (const name of ['mistral-tiny', 'llama-tiny-tied']) {
    assert.is(parameterCount(configOf(name)), storedParameters(path.join(FIXTURES, name, 'model.safetensors')), name);
  }
});

withFixtures(test)('with pause_token_id the count includes the surgery, as PEFT counts the pause model', async () => {
  const total = (await trainableCounts())[0]!.total;
  assert.is(parameterCount({ ...configOf('mistral-tiny'), pause_token_id: 512 }), total);
});

test('Mistral-7B has its 7.24 B parameters, and its full training never fits an 80 GB GPU beside another stage', () => {
  assert.is(parameterCount(MISTRAL_7B), 7_241_732_096);
  assert.ok(estimateGpuMemoryMiB(MISTRAL_7B, { batch: 8, seq: 600, training: true }) > 80 * 1024);
});

test('the seed\'s pause-only Mistral-7B at batch 8 × 600 fits an H200 (141 GiB) with activation checkpointing and not without', () => {
  const seed = { ...MISTRAL_7B, pause_token_id: 32000 };
  // Pause embedding row and pause head Linear(4096 → 2) with bias.
  const trainableParams = 4096 + 2 * 4096 + 2;
  const h200 = 141 * 1024;
  const stored = estimateGpuMemoryMiB(seed, { batch: 8, seq: 600, training: true, trainableParams });
  const checkpointed = estimateGpuMemoryMiB(seed, { batch: 8, seq: 600, training: true, trainableParams, checkpointing: true });
  assert.ok(stored > h200, `${stored} MiB`);
  assert.ok(checkpointed < h200 / 2, `${checkpointed} MiB`);
  // The weights alone, 7.24 B floats with the quarter of headroom, are 33.7 GiB of it.
  assert.ok(checkpointed > (parameterCount(seed) * 4 * 1.25) / 2 ** 20);
});

withFixtures(test)('checkpointingAdvice: needed for the seed\'s pause-only Mistral-7B on an H200, with both estimates; not for a small model', () => {
  const seed = { ...MISTRAL_7B, pause_token_id: 32000 };
  const shape = { batch: 8, seq: 600, trainableParams: 4096 + 2 * 4096 + 2 };
  const advice = checkpointingAdvice(seed, shape, 143_771);
  assert.equal(advice, {
    withoutMiB: estimateGpuMemoryMiB(seed, { ...shape, training: true }),
    withMiB: estimateGpuMemoryMiB(seed, { ...shape, training: true, checkpointing: true }),
    needed: true,
  });
  // The estimate without checkpointing is the bound: one MiB more memory and it is not needed.
  assert.is(checkpointingAdvice(seed, shape, advice.withoutMiB).needed, false);
  assert.is(checkpointingAdvice(seed, shape, advice.withoutMiB - 1).needed, true);
  assert.is(checkpointingAdvice(configOf('mistral-tiny'), { batch: 8, seq: 600 }, 80 * 1024).needed, false);
});

withFixtures(test)('the estimate: overhead plus float32 tensors with a quarter of headroom, worked out for one token', () => {
  // Training, 1 token: 4 × 158,016 parameter floats (weights, gradients, 2 moments) + 2 layers × (6·64 + 3·176 +
  // 2·4·1) + 3 × 512 logit floats = 635,440 floats = 2,541,760 bytes, × 1.25 = 3.03 MiB over the overhead.
  assert.is(estimateGpuMemoryMiB(configOf('mistral-tiny'), { batch: 1, seq: 1, training: true }), PROCESS_OVERHEAD_MIB + 4);
  // Generation, 1 token: 158,016 weights + KV cache 2 layers × 2 × 2 heads × 16 + (6·64 + 3·176 + 8) + 2 × 512 = 160,088 floats.
  assert.is(estimateGpuMemoryMiB(configOf('mistral-tiny'), { batch: 1, seq: 1, training: false }), PROCESS_OVERHEAD_MIB + 1);
});

withFixtures(test)('sft and evaluate estimate from their input model folder, and hold a GPU alone without one', () => {
  const model = { model: [{ dir: path.join(FIXTURES, 'mistral-tiny') }] } as never;
  const tiny = configOf('mistral-tiny');
  const sft = SFT.resources!({ batch_size: 8, max_length: 600 } as never, model);
  // Without a `train` param, the defaults: the pause embedding trains, so gradients pass through the layers.
  const hostSft = hostMemoryMiB(tiny, { forward: true, backwardThroughLayers: true, trainableParams: 0 });
  // gradient_checkpointing unset: the run turns it on where the first estimate exceeds the GPU, so both are given. The
  // pause groups are all that train, and this model has no pause token: no weight is counted as trained.
  assert.equal(sft, {
    cpu: 1, gpu: 1, gpuMemoryMiB: estimateGpuMemoryMiB(tiny, { batch: 8, seq: 600, training: true, trainableParams: 0 }),
    gpuMemoryCheckpointedMiB: estimateGpuMemoryMiB(tiny, { batch: 8, seq: 600, training: true, checkpointing: true, trainableParams: 0 }), hostMemoryMiB: hostSft,
  });
  assert.ok(sft.gpuMemoryCheckpointedMiB! < sft.gpuMemoryMiB!);
  // Set either way, the stage does what it says: one estimate.
  const chosen = (gradient_checkpointing: boolean) => SFT.resources!({ batch_size: 8, max_length: 600, gradient_checkpointing } as never, model);
  assert.equal(chosen(false), { cpu: 1, gpu: 1, gpuMemoryMiB: sft.gpuMemoryMiB, hostMemoryMiB: hostSft });
  assert.equal(chosen(true), { cpu: 1, gpu: 1, gpuMemoryMiB: sft.gpuMemoryCheckpointedMiB, hostMemoryMiB: hostSft });
  const evaluate = EVALUATE.resources!({ batch_size: 8, max_length: 1024, loss_max_length: 600 } as never, model);
  assert.equal(evaluate, { cpu: 1, gpu: 1, gpuMemoryMiB: estimateGpuMemoryMiB(tiny, { batch: 8, seq: 1024, training: false }), hostMemoryMiB: hostMemoryMiB(tiny, { forward: true }) });
  assert.equal(SFT.resources!({ batch_size: 8, max_length: 600 } as never), { cpu: 1, gpu: 1 });
  assert.equal(modelStageResources('/nonexistent', { batch: 1, seq: 1, training: true }, { verb: 'train' }), { cpu: 1, gpu: 1 });
});

test('host memory of a worker without a GPU: its own 512 MiB, the wasm floor with 30% more, never past wasm\'s 4 GiB', () => {
  const small = { ...MISTRAL_7B, hidden_size: 1024, intermediate_size: 2816, num_hidden_layers: 8, num_attention_heads: 16, num_key_value_heads: 4, vocab_size: 512 };
  const floor = wasmTensorFloor(small, { forward: true }).bytes / 2 ** 20;
  assert.is(hostMemoryMiB(small, { forward: true }), Math.ceil(512 + 1.3 * floor));
  // The 0.09 B model of the measurements: 1.3 GiB resident to evaluate, estimated 1.8.
  assert.is((hostMemoryMiB(small, { forward: true }) / 1024).toFixed(1), '1.8');
  assert.is(hostMemoryMiB(MISTRAL_7B, { forward: true }), 512 + 4096);
});

test('what sft trains, from its params: every weight, the large groups, and whether gradients pass through the layers', () => {
  const groups = { pause_embedding: false, pause_head: false, lm_head: false, lm_embeddings: false, all: false };
  const lora = { r: 16, alpha: 32, dropout: 0, target_modules: ['q_proj'], merge: true, modules_to_save: null };
  assert.equal(plannedTraining({ train: { ...groups, all: true }, lora: null }), { all: true, lmHead: false, lmEmbeddings: false, throughLayers: true });
  assert.equal(plannedTraining({ train: { ...groups, lm_head: true, pause_head: true }, lora: null }), { all: false, lmHead: true, lmEmbeddings: false, throughLayers: false });
  assert.equal(plannedTraining({ train: { ...groups, pause_embedding: true }, lora: null }), { all: false, lmHead: false, lmEmbeddings: false, throughLayers: true });
  assert.equal(plannedTraining({ train: groups, lora: { ...lora, modules_to_save: ['lm_head', 'original_embedding'] } }), { all: false, lmHead: true, lmEmbeddings: true, throughLayers: true, lora: { r: 16, targetModules: ['q_proj'] } });
});

test('evaluate on a model stored in bfloat16 counts its projections at half size under PAUSEPIPE_FROZEN_WEIGHTS=bf16, as they are packed', async () => {
  const dir = await mkdtemp(path.join(tmpdir(), 'pausepipe-bf16-folder-'));
  try {
    const config = { hidden_size: 64, num_attention_heads: 4, num_key_value_heads: 2, num_hidden_layers: 2, intermediate_size: 176, vocab_size: 512 };
    await writeFile(path.join(dir, 'config.json'), JSON.stringify(config));
    const weight = (dtype: 'bfloat16' | 'float32') => (dtype === 'bfloat16' ? { dtype, shape: [2], data: new Uint16Array([0x3f80, 0x4000]) } : { dtype, shape: [2], data: new Float32Array([1, 2]) });
    // Two shards, as a checkpoint of Mistral-7B's size comes.
    await writeSafetensors(path.join(dir, 'a.safetensors'), new Map([['x', weight('bfloat16')]]));
    await writeSafetensors(path.join(dir, 'b.safetensors'), new Map([['y', weight('bfloat16')]]));
    await writeFile(path.join(dir, 'model.safetensors.index.json'), JSON.stringify({ weight_map: { x: 'a.safetensors', y: 'b.safetensors' } }));
    assert.equal(storedDtypes(dir), new Set(['BF16']));
    const shape = { batch: 8, seq: 1024, training: false };
    const resources = (frozen: string) => withEnv('PAUSEPIPE_FROZEN_WEIGHTS', frozen, async () => {
      const { hostMemoryMiB, ...onGpu } = EVALUATE.resources!({ batch_size: 8, max_length: 1024, loss_max_length: 600 } as never, { model: [{ dir }] } as never);
      assert.ok(hostMemoryMiB! > 0);
      return onGpu;
    });
    assert.equal(await resources('bf16'), { cpu: 1, gpu: 1, gpuMemoryMiB: estimateGpuMemoryMiB(config, { ...shape, frozenBf16: true }) });
    assert.equal(await resources('f32'), { cpu: 1, gpu: 1, gpuMemoryMiB: estimateGpuMemoryMiB(config, shape) });
    // Mistral-7B: half of its 32 × (2·4096² + 2·4096·1024 + 3·4096·14336) projection floats, 4 bytes each with the
    // quarter of headroom, is 16,640 MiB.
    assert.is(estimateGpuMemoryMiB(MISTRAL_7B, shape) - estimateGpuMemoryMiB(MISTRAL_7B, { ...shape, frozenBf16: true }), 16_640);
    // One float32 weight: not packed, so not counted as packed.
    await writeSafetensors(path.join(dir, 'b.safetensors'), new Map([['y', weight('float32')]]));
    assert.equal(storedDtypes(dir), new Set(['BF16', 'F32']));
    assert.equal(await resources('bf16'), { cpu: 1, gpu: 1, gpuMemoryMiB: estimateGpuMemoryMiB(config, shape) });
    assert.is(storedDtypes(path.join(dir, 'nothing-here')), undefined);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('the seed\'s pause-only Mistral-7B: sft counts the weights it trains (~46 GiB checkpointed), and says it cannot run on wasm', async () => {
  const dir = await mkdtemp(path.join(tmpdir(), 'seed-config-'));
  try {
    await writeFile(path.join(dir, 'config.json'), JSON.stringify({ ...MISTRAL_7B, pause_token_id: 32000 }));
    const model = { model: [{ dir }] } as never;
    const train = { pause_embedding: true, pause_head: true, lm_head: false, lm_embeddings: false, all: false };
    const r = SFT.resources!({ batch_size: 8, max_length: 600, train, lora: null } as never, model);
    assert.is(r.gpuMemoryCheckpointedMiB, 47_033);
    assert.is(r.gpuMemoryMiB, 254_591);
    assert.ok(r.beyondWasm!.startsWith('the model (7.24 B parameters) needs at least 106.4 GiB of tensors to train (27.0 GiB for float32 weights, '), r.beyondWasm);
    // LoRA r = 16 on q and v: 32 layers × 16 × ((4096 + 4096) + (4096 + 1024)) = 6,815,744 adapter weights, with the pause ones.
    const lora = SFT.resources!({ batch_size: 8, max_length: 600, train, lora: { r: 16, alpha: 32, dropout: 0, target_modules: ['q_proj', 'v_proj'], merge: true, modules_to_save: null } } as never, model);
    assert.is(lora.gpuMemoryCheckpointedMiB, estimateGpuMemoryMiB({ ...MISTRAL_7B, pause_token_id: 32000 }, { batch: 8, seq: 600, training: true, checkpointing: true, trainableParams: 6_815_744 + 3 * 4096 + 2 }));
    const evaluate = EVALUATE.resources!({ batch_size: 8, max_length: 600, loss_max_length: 600 } as never, model);
    assert.ok(evaluate.beyondWasm!.startsWith('the model (7.24 B parameters) needs at least 80.0 GiB of tensors to evaluate'), evaluate.beyondWasm);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test.run();

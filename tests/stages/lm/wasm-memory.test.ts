// Model stages on the wasm backend (4 GiB per process): a model beyond it refused before any weight loads, saying what to do.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { copyFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { ADD_PAUSE_TOKEN } from '../../../stages/add-pause-token.ts';
import { EVALUATE } from '../../../stages/evaluate.ts';
import { INIT_MODEL } from '../../../stages/init-model.ts';
import type { StageKind } from '../../../stages/kind.ts';
import { parameterCount, WASM_MEMORY_BYTES, wasmTensorFloor } from '../../../stages/lm/memory-estimate.ts';
import { SFT, type SftTrainGroups } from '../../../stages/sft.ts';
import { FIXTURES, withFixtures } from '../../helpers/hf-fixtures.ts';
import { datasetFolder, runKind, sumRows } from '../../helpers/model-stages.ts';
import { artifactRef, removeTempDirs, tempDir } from '../data/stage-context.ts';

const test = suite('wasm-memory');
test.after(removeTempDirs);

/** Mistral-7B-v0.1's config.json, the seed's model. */
const MISTRAL_7B = {
  model_type: 'mistral', hidden_size: 4096, intermediate_size: 14336, num_hidden_layers: 32, num_attention_heads: 32, num_key_value_heads: 8,
  vocab_size: 32000, max_position_embeddings: 32768, tie_word_embeddings: false, bos_token_id: 1, eos_token_id: 2,
};
/** Its projections (q, k, v, o, gate, up, down) over 32 layers, and its LM head. */
const PROJECTIONS_7B = 32 * (2 * 4096 * 4096 + 2 * 4096 * 1024 + 3 * 4096 * 14336);
const HEAD_7B = 32000 * 4096;

test('the floor: float32 weights; for a forward pass their transposed copies and the packed copies of those; more for gradients', () => {
  const weights = parameterCount(MISTRAL_7B) * 4;
  assert.equal(wasmTensorFloor(MISTRAL_7B, { forward: false }), { bytes: weights, parts: [['float32 weights', weights]] });
  const multiplied = (PROJECTIONS_7B + HEAD_7B) * 4;
  assert.equal(wasmTensorFloor(MISTRAL_7B, { forward: true }), {
    bytes: weights + 2 * multiplied,
    parts: [['float32 weights', weights], ['their transposed copies', multiplied], ['the packed copies of those that wasm\'s products keep', multiplied]],
  });
  assert.equal(wasmTensorFloor(MISTRAL_7B, { forward: true, backwardThroughLayers: true, trainableParams: 1000 }).parts.slice(3), [
    ['the packed copies of the weights the gradients pass through', multiplied],
    ['the gradients and AdamW moments of 1,000 trained weights', 12_000],
  ]);
  // The pause wrapper's LM head has one row more.
  assert.is(wasmTensorFloor({ ...MISTRAL_7B, pause_token_id: 32000 }, { forward: true }).parts[1]![1], (PROJECTIONS_7B + HEAD_7B + 4096) * 4);
  assert.is(WASM_MEMORY_BYTES, 4 * 2 ** 30 - 64 * 2 ** 10);
});

/** A model folder of Mistral-7B's config.json and a tokenizer, and no weights: a refusal must come before loading any. */
async function configOnlyFolder(config: Record<string, unknown>): Promise<string> {
  const dir = await tempDir('config-only');
  await writeFile(path.join(dir, 'config.json'), JSON.stringify(config));
  await copyFile(path.join(FIXTURES, 'tokenizer-bytelevel.json'), path.join(dir, 'tokenizer.json'));
  return dir;
}

const GPU = 'run it on a machine with a GPU (webgpu), or where @tensorflow/tfjs-node is installed (auto then uses it)';
const BEYOND = 'but the wasm backend holds at most 4 GiB in a process, whatever the machine\'s memory';

async function refusal<P>(kind: StageKind<P>, opts: Parameters<typeof runKind<P>>[1]): Promise<string> {
  try {
    await runKind(kind, { backend: 'wasm', ...opts });
  } catch (err) {
    return (err as Error).message;
  }
  return 'ran';
}

withFixtures(test)('sft, evaluate, add_pause_token and init_model refuse Mistral-7B on wasm before loading a weight, saying what to do', async () => {
  const dir = await configOnlyFolder(MISTRAL_7B);
  const model = artifactRef('base', 'init_model', dir);
  const data = await datasetFolder({ train: sumRows(4), validation: sumRows(2), test: sumRows(2) });
  const forward = '27.0 GiB for float32 weights, 26.5 GiB for their transposed copies, 26.5 GiB for the packed copies of those that wasm\'s products keep';
  const backward = '26.5 GiB for the packed copies of the weights the gradients pass through';
  const train = (groups: Partial<SftTrainGroups>) => ({ train: { pause_embedding: false, pause_head: false, lm_head: false, lm_embeddings: false, all: false, ...groups } });
  const lora = { lora: { r: 16, alpha: 32, dropout: 0.05, target_modules: ['q_proj', 'v_proj'], merge: true, modules_to_save: null } };
  assert.is(await refusal(SFT, { inputs: { model: [model], data: [data] }, params: train({ all: true }) }),
    `the model (7.24 B parameters) needs at least 187.4 GiB of tensors to train (${forward}, ${backward}, 80.9 GiB for the gradients and ` +
    `AdamW moments of 7,241,732,096 trained weights), ${BEYOND}: ${GPU}, or use a smaller model`);
  // LoRA: how many weights train is known once loaded; that gradients pass through every layer, before.
  assert.is(await refusal(SFT, { inputs: { model: [model], data: [data] }, params: { ...train({}), ...lora } }),
    `the model (7.24 B parameters) needs at least 106.4 GiB of tensors to train (${forward}, ${backward}), ${BEYOND}: ${GPU}, or use a smaller model`);
  assert.is(await refusal(SFT, { inputs: { model: [model], data: [data] }, params: train({ lm_head: true }) }),
    `the model (7.24 B parameters) needs at least 80.0 GiB of tensors to train (${forward}), ${BEYOND}: ${GPU}, or use a smaller model`);
  assert.is(await refusal(EVALUATE, { inputs: { model: [model], data: [data] } }),
    `the model (7.24 B parameters) needs at least 80.0 GiB of tensors to evaluate (${forward}), ${BEYOND}: ${GPU}, or use a smaller model`);
  assert.is(await refusal(ADD_PAUSE_TOKEN, { inputs: { model: [model] } }),
    `the model (7.24 B parameters) needs at least 27.0 GiB of tensors to add the pause token to (27.0 GiB for float32 weights), ${BEYOND}: ${GPU}, or use a smaller model`);
  assert.is(await refusal(INIT_MODEL, { params: { path: dir } }),
    `the model (7.24 B parameters) needs at least 27.0 GiB of tensors to load (27.0 GiB for float32 weights), ${BEYOND}: ${GPU}, or use a smaller model`);
});

withFixtures(test)('a model that runs forward in wasm\'s memory but cannot also train with LoRA is told to train fewer weights', async () => {
  // 0.30 B parameters: 1.1 GiB of weights and as much for each copy; LoRA's gradients add the packed copies of the weights.
  const dir = await configOnlyFolder({ ...MISTRAL_7B, hidden_size: 1536, intermediate_size: 4096, num_hidden_layers: 12, num_attention_heads: 24, num_key_value_heads: 6, vocab_size: 512 });
  const data = await datasetFolder({ train: sumRows(4), validation: sumRows(2), test: sumRows(2) });
  const message = await refusal(SFT, { inputs: { model: [artifactRef('base', 'init_model', dir)], data: [data] }, params: { lora: { r: 16, alpha: 32, dropout: 0.05, target_modules: ['q_proj', 'v_proj'], merge: true, modules_to_save: null } } });
  assert.is(message, 'the model (0.30 B parameters) needs at least 4.4 GiB of tensors to train (1.1 GiB for float32 weights, 1.1 GiB for their transposed ' +
    'copies, 1.1 GiB for the packed copies of those that wasm\'s products keep, 1.1 GiB for the packed copies of the weights the gradients pass ' +
    `through), ${BEYOND}: ${GPU}, or train fewer weights (training only lm_head or pause_head sends no gradient through the layers), or use a smaller model`);
});

test('init_model refuses a from-scratch model beyond wasm\'s memory before drawing its weights', async () => {
  const overrides = { hidden_size: 2048, intermediate_size: 8192, num_hidden_layers: 24, num_attention_heads: 16 };
  assert.is(await refusal(INIT_MODEL, { params: { preset: 'tiny', overrides } }),
    `the model (1.24 B parameters) needs at least 4.6 GiB of tensors to build (4.6 GiB for float32 weights), ${BEYOND}: ${GPU}, or use a smaller model`);
});

test.run();

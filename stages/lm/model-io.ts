// Loads and saves a model as a Hugging Face folder: config.json, model.safetensors (or shards), tokenizer, PEFT adapter.
import * as tf from '@tensorflow/tfjs-core';
import { existsSync } from 'node:fs';
import { mkdir, readFile, rm } from 'node:fs/promises';
import path from 'node:path';
import { settleOnDevice } from './backend.ts';
import { packOnLoad } from './bf16-weights.ts';
import { fromHfConfig, toHfConfig } from './config.ts';
import { ADAPTER_CONFIG, ADAPTER_WEIGHTS, hasLoraAdapter, loadLoraAdapter, saveLoraAdapter } from './lora.ts';
import { CausalLM } from './model.ts';
import { PauseLM } from './pause.ts';
import { isBfloat16Exact, modelWeightEntries, SHARD_INDEX, SINGLE_FILE, toBfloat16, writeJsonFile, writeSafetensorsLazily, type HostTensor, type LazyTensor } from './safetensors.ts';
import { JsonTokenizer } from './tokenizer.ts';
import type { ModelWeight, Tokenizer } from './types.ts';
import { PackedBf16 } from './webgpu/bf16.ts';

export interface LoadOptions {
  /** Attach the PEFT adapter found in the folder (default true). */
  adapter?: boolean;
  log?: (line: string) => void;
}

/**
 * Loads a model folder: config.json (pause-wrapped when it carries `pause_token_id`), model.safetensors or a
 * sharded index, and adapter_config.json + adapter_model.safetensors when present.
 */
export async function loadModel(dir: string, opts: LoadOptions = {}): Promise<CausalLM> {
  const log = opts.log ?? console.log;
  const cfgFile = path.join(dir, 'config.json');
  if (!existsSync(cfgFile)) throw new Error(`${dir}: no config.json (not a model folder)`);
  let json: unknown;
  try {
    json = JSON.parse(await readFile(cfgFile, 'utf8'));
  } catch (err) {
    throw new Error(`${cfgFile}: not valid JSON (${(err as Error).message})`);
  }
  const config = fromHfConfig(json, cfgFile);
  const weights = await loadWeightsToDevice(dir);
  let model: CausalLM;
  try {
    model = config.pause ? PauseLM.fromPauseWeights(config, weights) : CausalLM.fromWeights(config, weights);
  } catch (err) {
    throw new Error(`${dir}: ${(err as Error).message}`);
  }
  if ((opts.adapter ?? true) && hasLoraAdapter(dir)) await loadLoraAdapter(model, dir, log);
  return model;
}

/**
 * A folder's weights as tensors on the active backend, read and placed one at a time (shard after shard), so a
 * bfloat16 checkpoint of 14 GB becomes float32 on the GPU while the host holds at most one tensor's values; a tensor
 * read so far is freed if a later one fails.
 */
async function loadWeightsToDevice(dir: string): Promise<Map<string, tf.Tensor | PackedBf16>> {
  const out = new Map<string, tf.Tensor | PackedBf16>();
  try {
    for await (const { name, tensor } of modelWeightEntries(dir)) {
      refuseNonFinite(dir, name, tensor);
      // PAUSEPIPE_FROZEN_WEIGHTS=bf16: decoder projections of bfloat16 numbers go to the GPU packed.
      const packed = packOnLoad(name, tensor);
      if (packed) {
        out.set(name, packed);
        continue;
      }
      const t = tf.tensor(tensor.data, tensor.shape, tensor.dtype);
      settleOnDevice(t);
      out.set(name, t);
    }
    return out;
  } catch (err) {
    for (const t of out.values()) t.dispose();
    throw err;
  }
}

/**
 * A weight holding NaN or an infinity makes every output NaN, which training would report as a NaN loss ("lower the
 * learning rate") and evaluation as wrong answers: say what is wrong where it is, as the folder loads.
 */
function refuseNonFinite(dir: string, name: string, tensor: HostTensor): void {
  if (tensor.dtype !== 'float32') return;
  const data = tensor.data;
  for (let i = 0; i < data.length; i++) {
    if (Number.isFinite(data[i]!)) continue;
    let count = 0;
    for (let j = i; j < data.length; j++) if (!Number.isFinite(data[j]!)) count++;
    throw new Error(`${dir}: weight ${name} holds ${count.toLocaleString('en-US')} value${count === 1 ? '' : 's'} that ${count === 1 ? 'is' : 'are'} not finite ` +
      `(the first, at index ${i}, is ${data[i]}): the checkpoint is damaged, or was saved from a run that diverged`);
  }
}

export interface SaveOptions {
  /** Fold LoRA adapters into the saved weights (default true); false keeps them as PEFT adapter files beside the base weights. */
  mergeLora?: boolean;
}

/** The weights as they would be after merging LoRA, computed without changing the model. */
function mergedWeight(model: CausalLM, name: string, v: ModelWeight): tf.Tensor | ModelWeight {
  const lora = model.lora!;
  const copy = lora.saved.get(name);
  if (copy) return copy;
  const adapter = lora.adapters.get(name.slice(0, name.lastIndexOf('.')));
  if (!adapter || !name.endsWith('.weight')) return v;
  return tf.tidy(() => tf.add(v instanceof PackedBf16 ? v.unpacked() : v, tf.mul(tf.matMul(adapter.b, adapter.a), lora.scaling)));
}

/**
 * Writes a Hugging Face folder that `loadModel` (and transformers, for a plain model) reads back bit-for-bit:
 * config.json (with the pause token fields when wrapped), model.safetensors under the reference's names,
 * tokenizer.json + tokenizer_config.json, generation_config.json, and the PEFT adapter when LoRA is kept.
 * Stale weight or adapter files from an earlier save into the same folder are removed.
 */
export async function saveModel(model: CausalLM, tokenizer: Tokenizer | null, dir: string, opts: SaveOptions = {}): Promise<void> {
  const merge = opts.mergeLora ?? true;
  if (tokenizer) checkTokenizer(model, tokenizer);
  await mkdir(dir, { recursive: true });
  for (const stale of [SHARD_INDEX, ADAPTER_CONFIG, ADAPTER_WEIGHTS]) await rm(path.join(dir, stale), { force: true });
  // Each weight as saved (LoRA merged when asked), read from the device when needed: one in host memory at a time.
  const saved = async (name: string, v: ModelWeight): Promise<HostTensor> => {
    const t = model.lora && merge ? mergedWeight(model, name, v) : v;
    try {
      return { dtype: 'float32', shape: [...t.shape], data: (await t.data()) as Float32Array };
    } finally {
      if (t !== v && !model.lora?.saved.has(name)) t.dispose();
    }
  };
  // A model stored in bfloat16 (every value a bfloat16 number: a bfloat16 checkpoint, or `precision: "bf16"`) is saved
  // in bfloat16, as transformers saves one: the same values in half the bytes. A float32 model's first weight says no.
  let bfloat16 = true;
  for (const [name, v] of model.weights) if (!(bfloat16 = isBfloat16Exact(await saved(name, v)))) break;
  const lazy = new Map<string, LazyTensor>([...model.weights].map(([name, v]) => [name, {
    dtype: bfloat16 ? 'bfloat16' : 'float32',
    shape: [...v.shape],
    values: async () => {
      const t = await saved(name, v);
      return bfloat16 ? toBfloat16(t).data : t.data;
    },
  }]));
  await writeSafetensorsLazily(path.join(dir, SINGLE_FILE), lazy, { format: 'pt' });
  const config = toHfConfig(model.config);
  // transformers 5 names the field `dtype`, 4.x `torch_dtype`: write it where the original had it.
  if (bfloat16) config['dtype' in config ? 'dtype' : 'torch_dtype'] = 'bfloat16';
  await writeJsonFile(path.join(dir, 'config.json'), config);
  const c = model.config;
  await writeJsonFile(path.join(dir, 'generation_config.json'), { _from_model_config: true, bos_token_id: c.bosId, eos_token_id: c.eosId, pad_token_id: c.padId });
  if (model.lora && !merge) await saveLoraAdapter(model, dir);
  if (tokenizer) {
    await writeJsonFile(path.join(dir, 'tokenizer.json'), tokenizer.toJSON());
    if (tokenizer instanceof JsonTokenizer) await writeJsonFile(path.join(dir, 'tokenizer_config.json'), tokenizer.configJson());
  }
}

/** A tokenizer saved beside a model must agree with it on the pause token and fit its embedding. */
function checkTokenizer(model: CausalLM, tokenizer: Tokenizer): void {
  const pause = model.config.pause?.tokenId ?? null;
  if (pause !== tokenizer.pauseId) {
    throw new Error(`saveModel: the model's pause token id is ${pause ?? 'none'} but the tokenizer's is ${tokenizer.pauseId ?? 'none'}`);
  }
  const rows = model.config.vocabSize + (pause === null ? 0 : 1);
  if (tokenizer.vocabSize > rows) throw new Error(`saveModel: the tokenizer has ${tokenizer.vocabSize} ids but the model's embedding only ${rows} rows`);
}

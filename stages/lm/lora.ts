// LoRA with PEFT semantics: adapters on chosen linear modules, modules_to_save copies, merging, and PEFT's adapter files.
import * as tf from '@tensorflow/tfjs-core';
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { SeededRandom } from './config.ts';
import { ownedVariable, type CausalLM, type LoraSetup } from './model.ts';
import { readSafetensors, writeJsonFile, writeSafetensors, type HostTensor } from './safetensors.ts';

/** The decoder's linear modules LoRA can target (per layer). */
export const LORA_TARGETS = ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj'] as const;

export interface LoraOptions {
  /** r: rank of the update. Default 16. */
  rank?: number;
  /** lora_alpha; the update is scaled by alpha / r. Default 32. */
  alpha?: number;
  /** lora_dropout on the adapter's input while training. Default 0.05. */
  dropout?: number;
  /** Module suffixes to adapt. Default q_proj, v_proj. */
  targetModules?: string[];
  /** Weight names (saved names, e.g. `ctrl_tok_clf.weight`) that train as PEFT modules_to_save copies. */
  modulesToSave?: string[];
  /** Seed of lora_A's init and of the dropout masks. Default 0. */
  seed?: number;
}

/** The reference's LoRA settings (r = 16, alpha = 32, dropout 0.05 on q_proj and v_proj). */
export const DEFAULT_LORA = { rank: 16, alpha: 32, dropout: 0.05, targetModules: ['q_proj', 'v_proj'] } as const;

export const ADAPTER_CONFIG = 'adapter_config.json';
export const ADAPTER_WEIGHTS = 'adapter_model.safetensors';

/** Module name of a weight: its saved name without `.weight` / `.bias`. */
export function moduleOf(weightName: string): string {
  return weightName.slice(0, weightName.lastIndexOf('.'));
}

/** Names of the linear modules (without `.weight`) that `targets` select, in layer order. */
function targetModuleNames(model: CausalLM, targets: string[]): string[] {
  for (const t of targets) {
    if (!(LORA_TARGETS as readonly string[]).includes(t)) {
      throw new Error(`LoRA target module '${t}' is not supported (expected some of ${LORA_TARGETS.join(', ')})`);
    }
  }
  const out: string[] = [];
  for (let i = 0; i < model.config.numLayers; i++) {
    for (const t of LORA_TARGETS) {
      if (!targets.includes(t)) continue;
      const group = ['gate_proj', 'up_proj', 'down_proj'].includes(t) ? 'mlp' : 'self_attn';
      out.push(`${model.prefix}model.layers.${i}.${group}.${t}`);
    }
  }
  return out;
}

/**
 * Attaches fresh LoRA adapters as PEFT's get_peft_model does: lora_A from kaiming-uniform(a=√5), i.e.
 * U(±1/√in), lora_B zeros (so the model computes exactly what it did before), and a trainable copy of every
 * weight in `modulesToSave`. With LoRA, only the adapters and those copies train.
 */
export function applyLora(model: CausalLM, opts: LoraOptions = {}, log: (line: string) => void = console.log): LoraSetup {
  if (model.lora) throw new Error('applyLora: the model already has LoRA adapters (merge them first)');
  const rank = opts.rank ?? DEFAULT_LORA.rank;
  const alpha = opts.alpha ?? DEFAULT_LORA.alpha;
  const dropout = opts.dropout ?? DEFAULT_LORA.dropout;
  if (!Number.isInteger(rank) || rank < 1) throw new Error(`applyLora: rank must be a whole number >= 1, got ${rank}`);
  if (!(alpha > 0)) throw new Error(`applyLora: alpha must be > 0, got ${alpha}`);
  if (!(dropout >= 0 && dropout < 1)) throw new Error(`applyLora: dropout must be in [0, 1), got ${dropout}`);
  const targetModules = [...(opts.targetModules ?? DEFAULT_LORA.targetModules)];
  const modules = targetModuleNames(model, targetModules);
  // Checked before any tensor exists, so a refused call leaves nothing behind.
  for (const name of opts.modulesToSave ?? []) if (!model.weights.has(name)) throw new Error(`LoRA modules_to_save: the model has no weight '${name}'`);
  const rng = new SeededRandom(opts.seed ?? 0);
  const adapters = new Map<string, { a: tf.Variable; b: tf.Variable }>();
  for (const module of modules) {
    const [out, inDim] = model.weights.get(`${module}.weight`)!.shape as [number, number];
    const bound = 1 / Math.sqrt(inDim);
    adapters.set(module, {
      a: ownedVariable(tf.tensor2d(rng.uniformArray(rank * inDim, -bound, bound), [rank, inDim])),
      b: ownedVariable(tf.zeros([out, rank])),
    });
  }
  const setup = attach(model, { rank, alpha, dropout, targetModules, modulesToSave: opts.modulesToSave ?? [], seed: opts.seed ?? 0 }, adapters);
  const params = [...adapters.values()].reduce((n, { a, b }) => n + a.size + b.size, 0);
  log(`LoRA: r=${rank} alpha=${alpha} dropout=${dropout} on ${targetModules.join(', ')} (${adapters.size} modules, ${params} parameters)` +
    (setup.saved.size > 0 ? `; modules_to_save copies: ${[...setup.saved.keys()].join(', ')}` : ''));
  return setup;
}

/** Installs adapters and modules_to_save copies on the model. */
function attach(model: CausalLM, o: { rank: number; alpha: number; dropout: number; targetModules: string[]; modulesToSave: string[]; seed: number },
  adapters: Map<string, { a: tf.Variable; b: tf.Variable }>): LoraSetup {
  const saved = new Map<string, tf.Variable>();
  const modules = new Set<string>();
  for (const name of o.modulesToSave) {
    saved.set(name, tf.variable(model.variable(name), true));
    modules.add(moduleOf(name));
  }
  const setup: LoraSetup = {
    rank: o.rank, alpha: o.alpha, dropout: o.dropout, targetModules: o.targetModules, scaling: o.alpha / o.rank,
    adapters, saved, modulesToSave: [...modules], dropoutSeed: o.seed,
  };
  model.lora = setup;
  return setup;
}

/**
 * Folds the adapters into the weights (W += (alpha/r)·B·A) and the modules_to_save copies back into the
 * originals, then drops the LoRA state, as PEFT's merge_and_unload.
 */
export function mergeLora(model: CausalLM, log: (line: string) => void = console.log): void {
  const lora = model.lora;
  if (!lora) throw new Error('mergeLora: the model has no LoRA adapters');
  for (const [module, { a, b }] of lora.adapters) {
    const w = model.variable(`${module}.weight`);
    const merged = tf.tidy(() => tf.add(w, tf.mul(tf.matMul(b, a), lora.scaling)));
    w.assign(merged);
    merged.dispose();
    a.dispose();
    b.dispose();
  }
  for (const [name, copy] of lora.saved) {
    model.variable(name).assign(copy);
    copy.dispose();
  }
  model.lora = null;
  log(`LoRA merged: ${lora.adapters.size} adapters folded into the weights${lora.saved.size > 0 ? `, ${lora.saved.size} modules_to_save copies written back` : ''}`);
}

/** PEFT's saved name prefix: the wrapped model sits under `base_model.model.`. */
const PEFT_PREFIX = 'base_model.model.';

/** The adapter's tensors under the names PEFT writes into adapter_model.safetensors. */
export async function adapterTensors(model: CausalLM): Promise<Map<string, HostTensor>> {
  const lora = model.lora;
  if (!lora) throw new Error('adapterTensors: the model has no LoRA adapters');
  const out = new Map<string, HostTensor>();
  const host = async (v: tf.Variable): Promise<HostTensor> => ({ dtype: 'float32', shape: [...v.shape], data: (await v.data()) as Float32Array });
  for (const [module, { a, b }] of lora.adapters) {
    out.set(`${PEFT_PREFIX}${module}.lora_A.weight`, await host(a));
    out.set(`${PEFT_PREFIX}${module}.lora_B.weight`, await host(b));
  }
  for (const [name, copy] of lora.saved) out.set(PEFT_PREFIX + name, await host(copy));
  return out;
}

/** adapter_config.json as PEFT writes it for a causal-LM LoRA (the keys PEFT needs to load it). */
export function adapterConfig(model: CausalLM, baseModel = ''): Record<string, unknown> {
  const lora = model.lora;
  if (!lora) throw new Error('adapterConfig: the model has no LoRA adapters');
  return {
    peft_type: 'LORA',
    task_type: 'CAUSAL_LM',
    base_model_name_or_path: baseModel,
    r: lora.rank,
    lora_alpha: lora.alpha,
    lora_dropout: lora.dropout,
    target_modules: lora.targetModules,
    modules_to_save: lora.modulesToSave.length > 0 ? lora.modulesToSave : null,
    bias: 'none',
    fan_in_fan_out: false,
    inference_mode: true,
    init_lora_weights: true,
    use_rslora: false,
    use_dora: false,
    rank_pattern: {},
    alpha_pattern: {},
    layers_to_transform: null,
    layers_pattern: null,
  };
}

/** Writes adapter_config.json and adapter_model.safetensors into `dir`. */
export async function saveLoraAdapter(model: CausalLM, dir: string, baseModel = ''): Promise<void> {
  await writeSafetensors(path.join(dir, ADAPTER_WEIGHTS), await adapterTensors(model), { format: 'pt' });
  await writeJsonFile(path.join(dir, ADAPTER_CONFIG), adapterConfig(model, baseModel));
}

/** Whether `dir` holds a PEFT adapter. */
export function hasLoraAdapter(dir: string): boolean {
  return existsSync(path.join(dir, ADAPTER_CONFIG)) && existsSync(path.join(dir, ADAPTER_WEIGHTS));
}

/**
 * Attaches the PEFT LoRA adapter stored in `dir` (adapter_config.json + adapter_model.safetensors) to `model`.
 * Only plain LoRA is understood: DoRA, rsLoRA, per-module rank/alpha patterns and LoRA biases are errors.
 */
export async function loadLoraAdapter(model: CausalLM, dir: string, log: (line: string) => void = console.log): Promise<LoraSetup> {
  if (model.lora) throw new Error('loadLoraAdapter: the model already has LoRA adapters');
  const cfgFile = path.join(dir, ADAPTER_CONFIG);
  let cfg: Record<string, unknown>;
  try {
    cfg = JSON.parse(await readFile(cfgFile, 'utf8'));
  } catch (err) {
    throw new Error(`${cfgFile}: ${(err as Error).message}`);
  }
  if (cfg.peft_type !== 'LORA') throw new Error(`${cfgFile}: peft_type ${JSON.stringify(cfg.peft_type)} is not supported (only LORA)`);
  for (const key of ['use_dora', 'use_rslora', 'fan_in_fan_out'] as const) if (cfg[key] === true) throw new Error(`${cfgFile}: ${key} is not supported`);
  for (const key of ['rank_pattern', 'alpha_pattern'] as const) {
    if (cfg[key] && Object.keys(cfg[key] as object).length > 0) throw new Error(`${cfgFile}: ${key} is not supported`);
  }
  if (cfg.bias !== undefined && cfg.bias !== 'none') throw new Error(`${cfgFile}: bias "${String(cfg.bias)}" is not supported (only "none")`);
  const rank = cfg.r as number;
  const alpha = cfg.lora_alpha as number;
  const targets = cfg.target_modules;
  if (!Array.isArray(targets)) throw new Error(`${cfgFile}: target_modules must be a list of module names`);
  const { tensors } = await readSafetensors(path.join(dir, ADAPTER_WEIGHTS));
  const weightFile = path.join(dir, ADAPTER_WEIGHTS);
  const made: tf.Variable[] = [];
  const take = (name: string, shape: number[]): tf.Variable => {
    const t = tensors.get(name);
    if (!t) throw new Error(`${weightFile}: missing tensor ${name}`);
    if (t.shape.join() !== shape.join()) throw new Error(`${weightFile}: ${name} has shape [${t.shape.join(', ')}], expected [${shape.join(', ')}]`);
    tensors.delete(name);
    const v = ownedVariable(tf.tensor(t.data, t.shape, 'float32'));
    made.push(v);
    return v;
  };
  const modules = targetModuleNames(model, targets as string[]);
  // modules_to_save entries name modules by suffix (PEFT matches `key.endswith(name)`): pick the model's weights under them.
  const savedNames = ((cfg.modules_to_save as string[] | null) ?? []).flatMap((m) => {
    const hits = [...model.weights.keys()].filter((w) => moduleOf(w) === m || moduleOf(w).endsWith(`.${m}`));
    if (hits.length === 0) throw new Error(`${cfgFile}: modules_to_save entry '${m}' matches no module of the model`);
    return hits;
  });
  const adapters = new Map<string, { a: tf.Variable; b: tf.Variable }>();
  const saved = new Map<string, tf.Variable>();
  try {
    for (const module of modules) {
      const [out, inDim] = model.weights.get(`${module}.weight`)!.shape as [number, number];
      adapters.set(module, { a: take(`${PEFT_PREFIX}${module}.lora_A.weight`, [rank, inDim]), b: take(`${PEFT_PREFIX}${module}.lora_B.weight`, [out, rank]) });
    }
    for (const name of savedNames) saved.set(name, take(PEFT_PREFIX + name, [...model.weights.get(name)!.shape]));
    if (tensors.size > 0) throw new Error(`${weightFile}: tensors not used by the adapter config: ${[...tensors.keys()].slice(0, 5).join(', ')}`);
  } catch (err) {
    // A refused adapter leaves the model as it was and frees what was read.
    tf.dispose(made);
    throw err;
  }
  const setup = attach(model, { rank, alpha, dropout: (cfg.lora_dropout as number) ?? 0, targetModules: targets as string[], modulesToSave: [], seed: 0 }, adapters);
  for (const [name, v] of saved) {
    setup.saved.set(name, v);
    if (!setup.modulesToSave.includes(moduleOf(name))) setup.modulesToSave.push(moduleOf(name));
  }
  log(`LoRA adapter loaded from ${dir}: r=${rank} alpha=${alpha} on ${(targets as string[]).join(', ')} (${adapters.size} modules)`);
  return setup;
}

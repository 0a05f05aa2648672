// What trains: the four unfreezable groups (pause embedding, pause head, LM head, LM embeddings) plus LoRA, and a count table.
import { applyLora, DEFAULT_LORA, moduleOf, type LoraOptions } from './lora.ts';
import { peftSavedCopyName, type CausalLM } from './model.ts';
import { PAUSE_NAMES } from './pause.ts';
import type { ModelWeight } from './types.ts';
import { PackedBf16 } from './webgpu/bf16.ts';
import { releasePooledBuffers } from './webgpu/engine.ts';

/** The weight groups an experiment can unfreeze; everything else stays frozen. */
export const TRAINABLE_GROUPS = ['pauseEmbedding', 'pauseHead', 'lmHead', 'lmEmbeddings'] as const;
export type TrainableGroup = (typeof TRAINABLE_GROUPS)[number];

/** How a fine-tuning run trains the model. */
export interface TrainingSetup {
  /** Groups that train; `all` trains every weight (from-scratch or full fine-tuning). */
  groups: TrainableGroup[] | 'all';
  /** LoRA on top (PEFT semantics: the adapters and the groups, as modules_to_save copies, train); null/absent: none. */
  lora?: LoraOptions | null;
  /**
   * With LoRA: PEFT's modules_to_save as a config writes it, module names matched as PEFT matches them (a module
   * whose full name ends with the entry); replaces the groups' copies. Absent: the groups.
   */
  modulesToSave?: string[];
}

const GROUP_LABELS: Record<TrainableGroup | 'lora' | 'body', string> = {
  pauseEmbedding: 'pause embedding',
  pauseHead: 'pause head',
  lmHead: 'LM head',
  lmEmbeddings: 'LM embeddings',
  lora: 'LoRA adapters',
  body: 'rest of the model',
};

function requirePause(model: CausalLM, group: TrainableGroup): void {
  if (!model.hasPause) throw new Error(`trainable group '${group}' needs a pause-wrapped model (run the pause surgery first)`);
}

/** Saved weight names of one group on this model; checks the group makes sense for it. */
export function groupWeights(model: CausalLM, group: TrainableGroup): string[] {
  switch (group) {
    case 'pauseEmbedding':
      requirePause(model, group);
      return [PAUSE_NAMES.newEmbedding];
    case 'pauseHead':
      requirePause(model, group);
      return [PAUSE_NAMES.ctrlWeight, PAUSE_NAMES.ctrlBias];
    case 'lmHead':
      if (model.config.tieWordEmbeddings) {
        throw new Error("trainable group 'lmHead': the LM head is tied to the input embeddings on this model; use 'lmEmbeddings'");
      }
      return [model.headName()];
    case 'lmEmbeddings':
      return [model.hasPause ? PAUSE_NAMES.originalEmbedding : 'model.embed_tokens.weight'];
    default:
      throw new Error(`unknown trainable group '${String(group)}' (expected one of ${TRAINABLE_GROUPS.join(', ')})`);
  }
}

/**
 * Sets what `model.trainableVariables()` returns (and each variable's `trainable` flag). Without LoRA the groups'
 * weights train in place; with LoRA the adapters are attached and the groups train as modules_to_save copies,
 * the originals frozen, as PEFT does. A model that already carries the same LoRA setup (a resumed run) keeps it.
 */
export function configureTraining(model: CausalLM, setup: TrainingSetup, log: (line: string) => void = console.log): void {
  const groups = setup.groups === 'all' ? null : [...new Set(setup.groups)];
  if (groups === null && setup.lora) throw new Error("configureTraining: groups 'all' with LoRA is contradictory (LoRA freezes the base model)");
  if (setup.modulesToSave && !setup.lora) throw new Error('configureTraining: modules_to_save needs LoRA (it names PEFT copies)');
  const names = setup.modulesToSave ? moduleWeights(model, setup.modulesToSave)
    : groups === null ? [...model.weights.keys()] : groups.flatMap((g) => groupWeights(model, g));
  if (setup.lora) {
    if (model.lora) checkSameLora(model, setup.lora, names);
    else applyLora(model, { ...setup.lora, modulesToSave: names }, log);
    model.trainableNames = new Set();
  } else {
    if (model.lora) throw new Error('configureTraining: the model carries LoRA adapters; pass the LoRA settings, or merge them first (mergeLora)');
    model.trainableNames = new Set(names);
  }
  let widened = 0;
  for (const [name, w] of model.weights) {
    const trains = !model.lora && model.trainableNames.has(name);
    // A packed bfloat16 weight (bf16-weights.ts) is frozen; one that is to train becomes a variable again.
    if (w instanceof PackedBf16) {
      if (!trains) continue;
      widened++;
    }
    model.variable(name).trainable = trains;
  }
  // The packed words just freed would stay in tfjs's buffer pool (only WebGPU packs).
  if (widened > 0) releasePooledBuffers();
  const what = setup.modulesToSave ? `modules_to_save ${setup.modulesToSave.join(', ')} (${names.join(', ') || 'no weights'})`
    : groups === null ? 'all weights' : groups.length > 0 ? groups.map((g) => GROUP_LABELS[g]).join(', ') : 'no weight groups';
  log(`training: ${what}${setup.lora ? ' + LoRA' : ''}`);
}

/**
 * Saved names of the weights PEFT's modules_to_save `entries` select: a weight is selected when its module, or a
 * module containing it, has a name ending with an entry (PEFT's `key.endswith(target)`, no dot needed). An entry
 * that selects nothing is an error: PEFT would ignore it silently and train less than the config seems to say.
 */
function moduleWeights(model: CausalLM, entries: string[]): string[] {
  const modulesOf = (weight: string): string[] => {
    const parts = weight.split('.').slice(0, -1);
    return parts.map((_, i) => parts.slice(0, i + 1).join('.'));
  };
  const unmatched = entries.filter((e) => ![...model.weights.keys()].some((w) => modulesOf(w).some((m) => m.endsWith(e))));
  if (unmatched.length > 0) {
    const modules = [...new Set([...model.weights.keys()].map(moduleOf))];
    throw new Error(`modules_to_save: ${unmatched.map((e) => `'${e}'`).join(', ')} matches no module of this model ` +
      `(its modules include ${modules.filter((m) => !m.includes('.layers.')).join(', ')}, and model.layers.N.…)`);
  }
  return [...model.weights.keys()].filter((w) => modulesOf(w).some((m) => entries.some((e) => m.endsWith(e))));
}

/** The groups whose weights all train, in place or as modules_to_save copies, under the current configuration. */
export function trainedGroups(model: CausalLM): TrainableGroup[] {
  const trains = (name: string) => (model.lora ? model.lora.saved.has(name) : model.trainableNames === null || model.trainableNames.has(name));
  return TRAINABLE_GROUPS.filter((g) => {
    try {
      return groupWeights(model, g).every(trains);
    } catch {
      // A group this model does not have (no pause token, tied head).
      return false;
    }
  });
}

function checkSameLora(model: CausalLM, lora: LoraOptions, saved: string[]): void {
  const have = model.lora!;
  const want = { rank: lora.rank ?? DEFAULT_LORA.rank, alpha: lora.alpha ?? DEFAULT_LORA.alpha, targets: [...(lora.targetModules ?? DEFAULT_LORA.targetModules)].sort().join(',') };
  const got = { rank: have.rank, alpha: have.alpha, targets: [...have.targetModules].sort().join(',') };
  const savedHave = [...have.saved.keys()].sort().join(',');
  if (want.rank !== got.rank || want.alpha !== got.alpha || want.targets !== got.targets || savedHave !== [...saved].sort().join(',')) {
    throw new Error(`configureTraining: the model already carries LoRA (r=${got.rank}, alpha=${got.alpha}, ${got.targets}; copies: ${savedHave || 'none'}) ` +
      `that differs from the requested setup (r=${want.rank}, alpha=${want.alpha}, ${want.targets}; copies: ${saved.join(',') || 'none'})`);
  }
}

/** One row of the trainable-parameter table. */
export interface GroupCount {
  group: string;
  trainable: number;
  frozen: number;
}

export interface TrainableSummary {
  rows: GroupCount[];
  /** Trainable parameters (PEFT's `trainable params`). */
  trainable: number;
  /** All parameters, LoRA adapters and modules_to_save copies included (PEFT's `all params`). */
  total: number;
  /** Names of the trainable tensors, sorted: plain saved names, or PEFT's in-memory names with LoRA. */
  names: string[];
}

/** Counts trainable and frozen parameters per group, and prints the table through `log`. */
export function trainableSummary(model: CausalLM, log: (line: string) => void = console.log): TrainableSummary {
  const groupOf = new Map<string, string>();
  for (const g of TRAINABLE_GROUPS) {
    try {
      for (const n of groupWeights(model, g)) if (!groupOf.has(n)) groupOf.set(n, GROUP_LABELS[g]);
    } catch {
      // A group this model does not have (no pause token, tied head) simply has no row.
    }
  }
  const counts = new Map<string, GroupCount>();
  const add = (group: string, n: number, trains: boolean) => {
    const row = counts.get(group) ?? { group, trainable: 0, frozen: 0 };
    if (trains) row.trainable += n;
    else row.frozen += n;
    counts.set(group, row);
  };
  const trainable = model.trainableVariables();
  const trainableSet = new Set<ModelWeight>(trainable.values());
  for (const [name, v] of model.weights) add(groupOf.get(name) ?? GROUP_LABELS.body, v.size, trainableSet.has(v));
  if (model.lora) {
    for (const [name, v] of model.lora.saved) add(groupOf.get(name) ?? GROUP_LABELS.body, v.size, trainable.has(peftSavedCopyName(name)));
    for (const { a, b } of model.lora.adapters.values()) add(GROUP_LABELS.lora, a.size + b.size, true);
  }
  const order = Object.values(GROUP_LABELS);
  const rows = [...counts.values()].sort((x, y) => order.indexOf(x.group) - order.indexOf(y.group));
  const total = rows.reduce((n, r) => n + r.trainable + r.frozen, 0);
  const trainableCount = rows.reduce((n, r) => n + r.trainable, 0);
  const width = Math.max(...rows.map((r) => r.group.length), 5);
  const line = (a: string, b: string, c: string) => `${a.padEnd(width)}  ${b.padStart(12)}  ${c.padStart(12)}`;
  log(line('group', 'trainable', 'frozen'));
  for (const r of rows) log(line(r.group, r.trainable.toLocaleString('en-US'), r.frozen.toLocaleString('en-US')));
  log(line('total', trainableCount.toLocaleString('en-US'), (total - trainableCount).toLocaleString('en-US')) +
    `  (${((100 * trainableCount) / total).toFixed(2)}% of ${total.toLocaleString('en-US')} parameters)`);
  return { rows, trainable: trainableCount, total, names: [...trainable.keys()].sort() };
}

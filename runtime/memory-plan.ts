// What `plan` and `run` say before anything runs about the memory of the model stages: their estimates, how this
// machine will run them (the scheduler's own rules, through Slots), and which of them cannot run here at all.
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import type { ArtifactRef, ModelConfig, Resources, StageKind } from '../stages/kind.ts';
import { readModelConfig } from '../stages/lm/memory-estimate.ts';
import { formatLocation } from '../grammar/diagnostics.ts';
import { Committer } from './commit.ts';
import { LISTED_NAMES } from './format.ts';
import { isKeyed } from './keys.ts';
import type { StageInstance } from './pipeline.ts';
import { gpuEstimateOn, Slots } from './schedule.ts';
import type { Session } from './session.ts';

/** The machine a run would use, as far as the memory of its stages goes. */
export interface MemoryMachine {
  /** Slurm places every stage: this machine's GPUs and memory do not apply (only the estimates are said). */
  cluster: boolean;
  /** GPUs the run uses here (`--gpus`, else detected). */
  gpus: number;
  /** `--gpus 0`: stages are shown no GPU at all (not even to WebGPU). */
  gpusHidden?: boolean;
  /** Memory of each GPU (PAUSEPIPE_GPU_MEMORY_MIB, else nvidia-smi); undefined when unknown. */
  gpuMemoryMiB?: number;
  stagesPerGpu?: number;
  /** Memory free now, which model stages running without a GPU share. */
  hostMemoryMiB?: number;
  /** Model stages run on the wasm backend here: `--backend wasm`, or no GPU and no tfjs-node (`auto` then picks wasm). */
  wasm: boolean;
}

/** One stale model stage's memory, and how it runs here; figures in MiB. */
export interface StageMemory {
  name: string;
  /** The GPU memory it takes here: checkpointed where it turns activation checkpointing on. */
  gpuMiB?: number;
  /** Its estimate without activation checkpointing, where it turns checkpointing on here. */
  gpuWithoutCheckpointingMiB?: number;
  /** Under Slurm (the GPU unknown here): the estimate with the activation checkpointing it turns on on a smaller GPU. */
  gpuCheckpointedMiB?: number;
  /** It turns activation checkpointing on by itself here (its estimate without exceeds the GPU). */
  checkpointing?: boolean;
  /** How many such stages share one GPU here. */
  perGpu?: number;
  /** The memory its process takes where it runs without a GPU. */
  hostMiB?: number;
  /** How many such stages start at once in the memory free now (more wait for memory). */
  atOnce?: number;
  /**
   * Why it cannot run here. `certain`: the stage would refuse itself when it starts (wasm's 4 GiB), so `run` stops
   * before anything runs; otherwise an estimate over the GPU's memory, which `run` warns about and tries.
   */
  cannotRun?: { why: string; todo: string; certain: boolean };
}

/** The memory of a run's stale stages: those with estimates, and the model stages whose models are not computed yet. */
export interface MemoryPlan {
  stages: StageMemory[];
  /** Stages whose estimate needs an upstream result this run computes first (their model's config.json). */
  unknown: string[];
}

const require = createRequire(import.meta.url);

/** Whether tfjs-node is installed: `auto` then runs model stages on it, which has no 4 GiB limit (stages/lm/backend.ts). */
export function tfjsNodeInstalled(): boolean {
  for (const pkg of ['@tensorflow/tfjs-node-gpu', '@tensorflow/tfjs-node']) {
    try {
      require.resolve(pkg);
      return true;
    } catch {
      // not installed
    }
  }
  return false;
}

/** Whether model stages run on wasm here: asked for by name, or `auto` on a machine without a GPU or tfjs-node. */
export function runsOnWasm(backend: string | undefined, gpus: number, tfjsNode = tfjsNodeInstalled()): boolean {
  if (backend === 'wasm') return true;
  return (backend === undefined || backend === 'auto') && gpus === 0 && !tfjsNode;
}

const gib = (mib: number) => `${(mib / 1024).toFixed(1)} GiB`;

/** How a stage with these resources runs on `machine`, by the scheduler's rules; undefined for a stage with no estimate. */
export function stageMemory(name: string, r: Resources, machine: MemoryMachine): StageMemory | undefined {
  if (r.gpuMemoryMiB === undefined && r.hostMemoryMiB === undefined) return undefined;
  const m: StageMemory = { name };
  const wantsGpu = (r.gpu ?? 0) > 0;
  if (machine.cluster) {
    if (r.gpuMemoryMiB !== undefined) m.gpuMiB = r.gpuMemoryMiB;
    if (r.gpuMemoryCheckpointedMiB !== undefined) m.gpuCheckpointedMiB = r.gpuMemoryCheckpointedMiB;
    if (r.hostMemoryMiB !== undefined) m.hostMiB = r.hostMemoryMiB;
    return m;
  }
  const slots = new Slots(1, machine.gpus, { gpuMemoryMiB: machine.gpuMemoryMiB, stagesPerGpu: machine.stagesPerGpu, hostMemoryMiB: machine.hostMemoryMiB });
  const request = slots.fit(r);
  if (machine.wasm && r.beyondWasm !== undefined) {
    m.cannotRun = {
      why: r.beyondWasm, certain: true,
      todo: machine.gpus > 0 ? 'leave --backend to auto (the GPU then runs it)'
        : machine.gpusHidden ? 'leave out --gpus 0 on a machine with a GPU, or --executor slurm with GPUs in its settings'
          : 'run it on a machine with a GPU, or --executor slurm with GPUs in its settings (a GPU that nvidia-smi does not list: --backend webgpu)',
    };
  }
  if (wantsGpu && machine.gpus > 0) {
    if (r.gpuMemoryMiB === undefined) return m.cannotRun ? m : undefined;
    const estimate = gpuEstimateOn(r, machine.gpuMemoryMiB);
    m.gpuMiB = estimate.mib;
    if (estimate.checkpointed) {
      m.checkpointing = true;
      m.gpuWithoutCheckpointingMiB = r.gpuMemoryMiB;
    }
    if (machine.gpuMemoryMiB !== undefined && estimate.mib! > machine.gpuMemoryMiB) {
      m.cannotRun ??= {
        why: `estimated at ${gib(estimate.mib!)} of GPU memory${estimate.checkpointed ? ' even with activation checkpointing' : ''}, ` +
          `more than the ${gib(machine.gpuMemoryMiB)} of a GPU here`,
        todo: `a smaller batch_size or max_length${r.gpuMemoryCheckpointedMiB === undefined ? ', sft: gradient_checkpointing true or unset' : ''}, ` +
          'or a GPU with more memory (Slurm settings); PAUSEPIPE_GPU_MEMORY_MIB if the GPU has more than nvidia-smi says',
        certain: false,
      };
    } else m.perGpu = slots.perGpu(request);
  } else if (r.hostMemoryMiB !== undefined) {
    m.hostMiB = r.hostMemoryMiB;
    const atOnce = slots.inHostMemory(request);
    if (atOnce !== undefined) m.atOnce = atOnce;
  }
  return m;
}

/** `~45.9 GiB GPU (checkpointed; 248.6 GiB without), 3 share a GPU`, `~1.8 GiB memory without a GPU, memory for 12 at once in the 23.1 GiB free`. */
export function describeMemory(m: StageMemory, machine: MemoryMachine): string {
  if (m.cannotRun) return `cannot run here: ${m.cannotRun.why}`;
  if (machine.cluster) {
    const checkpointed = m.gpuCheckpointedMiB !== undefined ? ` (~${gib(m.gpuCheckpointedMiB)} checkpointed on a smaller GPU)` : '';
    const parts = [m.gpuMiB !== undefined ? `~${gib(m.gpuMiB)} GPU${checkpointed}` : undefined, m.hostMiB !== undefined ? `~${gib(m.hostMiB)} memory without a GPU` : undefined];
    return `${parts.filter(Boolean).join(', ')} (Slurm places it)`;
  }
  if (m.gpuMiB !== undefined) {
    const checkpointed = m.checkpointing ? ` (checkpointed; ${gib(m.gpuWithoutCheckpointingMiB!)} without)` : '';
    const sharing = m.perGpu! > 1 ? `${m.perGpu} share a GPU`
      : machine.gpuMemoryMiB === undefined && machine.stagesPerGpu === undefined ? 'one per GPU (its memory unknown)' : 'holds a GPU alone';
    return `~${gib(m.gpuMiB)} GPU${checkpointed}, ${sharing}`;
  }
  const atOnce = m.atOnce !== undefined && machine.hostMemoryMiB !== undefined ? `, memory for ${m.atOnce} at once in the ${gib(machine.hostMemoryMiB)} free` : '';
  return `~${gib(m.hostMiB!)} memory without a GPU${atOnce}`;
}

/**
 * The memory of the session's stale stages on `machine`: their kinds' estimates with their finished inputs at hand,
 * or, where an input is computed by this run first, with the model config its kind foresees (`plannedModelConfig`:
 * init_model from a checkpoint's config.json, then sft and add_pause_token down the chain), put in a folder of its own
 * for the estimate to read as it reads a model folder.
 */
export function memoryPlan(s: Session, machine: MemoryMachine): MemoryPlan {
  const status = new Map(s.plan.stages.map((p) => [p.name, p.status]));
  const committer = new Committer({ pipeline: s.pipeline, kinds: s.kinds, store: s.store, keys: s.keys, hasher: s.hasher });
  const plan: MemoryPlan = { stages: [], unknown: [] };
  const foreseen = new Map<string, ModelConfig | undefined>();
  let scratch: string | undefined;
  const folders = new Map<string, string>();
  /** A folder holding the config foreseen for an upstream stage (none there when unknown: no estimate). */
  const folderOf = (up: string): string => {
    let dir = folders.get(up);
    if (dir === undefined) {
      scratch ??= mkdtempSync(path.join(os.tmpdir(), 'pausepipe-plan-'));
      dir = path.join(scratch, encodeURIComponent(up));
      const config = foreseen.get(up);
      if (config !== undefined) {
        mkdirSync(dir);
        writeFileSync(path.join(dir, 'config.json'), JSON.stringify(config));
      }
      folders.set(up, dir);
    }
    return dir;
  };
  try {
    for (const st of s.pipeline.stages) {
      const kind: StageKind | undefined = s.kinds[st.kind];
      const fresh = status.get(st.name) === 'fresh';
      // In topological order: a stage's upstream configs are known (or not) before it.
      const upstreamConfigs = Object.fromEntries(Object.entries(st.inputs).map(([name, b]) => [name, b.stages.map((u) => foreseen.get(u))]));
      const key = s.keys.get(st.name);
      foreseen.set(st.name, fresh && isKeyed(key)
        ? readModelConfig(s.store.artifactsDir(key.key))
        : kind?.plannedModelConfig?.(st.params, upstreamConfigs, s.pipeline.workspace));
      if (status.get(st.name) !== 'stale' || !kind?.resources) continue;
      let inputs: Record<string, ArtifactRef[]>;
      try {
        inputs = committer.inputsOf(st);
      } catch {
        // An upstream result this run computes first: the estimate reads the config foreseen for it.
        inputs = Object.fromEntries(Object.entries(st.inputs).map(([name, b]) => [name, b.stages.map((u) => ({ stage: u, dir: folderOf(u) }) as ArtifactRef)]));
      }
      const m = stageMemory(st.name, kind.resources(st.params, inputs), machine);
      if (m) plan.stages.push(m);
      // A kind whose estimate reads its inputs (it declares the parameter: sft, evaluate) could say nothing without
      // their configs; one that does not (sh) has no estimate to wait for.
      else if (kind.resources.length >= 2 && Object.values(upstreamConfigs).flat().some((c) => c === undefined)) plan.unknown.push(st.name);
    }
  } finally {
    if (scratch !== undefined) rmSync(scratch, { recursive: true, force: true });
  }
  return plan;
}


/** Generated names are `NAME[LABEL]`, and a declared stage name holds no `[`. */
const declaredOf = (name: string) => name.split('[')[0]!;

/** Names grouped by declared stage and equal text, in order: 20 variants that need the same make one line. */
function grouped<T>(items: T[], name: (t: T) => string, text: (t: T) => string): { names: string[]; item: T }[] {
  const groups = new Map<string, { names: string[]; item: T }>();
  for (const t of items) {
    const id = `${declaredOf(name(t))}\n${text(t)}`;
    const g = groups.get(id);
    if (g) g.names.push(name(t));
    else groups.set(id, { names: [name(t)], item: t });
  }
  return [...groups.values()];
}

/** `sft[lr=1e-4] and 19 more variants of sft`. */
function named(names: string[]): string {
  return names.length === 1 ? names[0]! : `${names[0]} and ${names.length - 1} more variant${names.length === 2 ? '' : 's'} of ${declaredOf(names[0]!)}`;
}

/**
 * The `memory` lines of a plan, one per declared stage and estimate (the stages that cannot run are said apart,
 * with where they are declared), and one for the stages estimated once their models are computed.
 */
export function memoryLines(plan: MemoryPlan, machine: MemoryMachine): string[] {
  const runnable = plan.stages.filter((m) => !m.cannotRun);
  const lines = grouped(runnable, (m) => m.name, (m) => describeMemory(m, machine));
  // A matrix whose variants differ in batch size makes a line each: past a few per declared stage, a count.
  const perDeclared = new Map<string, number>();
  const out: string[] = [];
  const cut = new Map<string, number>();
  for (const g of lines) {
    const declared = declaredOf(g.names[0]!);
    const n = (perDeclared.get(declared) ?? 0) + 1;
    perDeclared.set(declared, n);
    if (n <= LISTED_NAMES) out.push(`memory ${named(g.names)}: ${describeMemory(g.item, machine)}`);
    else cut.set(declared, (cut.get(declared) ?? 0) + g.names.length);
  }
  for (const [declared, count] of cut) out.push(`memory ${count} more variants of ${declared}: other estimates (plan --json lists each)`);
  if (plan.unknown.length > 0) {
    const stages = [...new Set(plan.unknown.map(declaredOf))].join(', ');
    out.push(`memory of ${plan.unknown.length} stage${plan.unknown.length === 1 ? '' : 's'} (${stages}) estimated once the models ${plan.unknown.length === 1 ? 'it reads are' : 'they read are'} computed`);
  }
  return out;
}

/**
 * What a person reads about stages that cannot run here: `FILE:LINE:COL: NAME cannot run on this machine: WHY`
 * and what to do, once per declared stage and reason.
 */
export function cannotRunLines(plan: MemoryPlan, s: Pick<Session, 'pipeline'>): string[] {
  const byName = new Map<string, StageInstance>(s.pipeline.stages.map((st) => [st.name, st]));
  const blocked = plan.stages.filter((m) => m.cannotRun);
  return grouped(blocked, (m) => m.name, (m) => `${m.cannotRun!.why}\n${m.cannotRun!.todo}`).flatMap((g) => {
    const span = byName.get(g.names[0]!)?.span;
    const where = span ? `${formatLocation(span, process.cwd())}: ` : '';
    const c = g.item.cannotRun!;
    return [`${where}${named(g.names)} cannot run on this machine${c.certain ? '' : ' (by its estimate)'}: ${c.why}`, `  to run it: ${c.todo}`];
  });
}

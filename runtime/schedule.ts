// The pure scheduler of a run: which stages start now and which are settled, from events alone (no I/O, no processes).
import type { Resources, StageKind } from '../stages/kind.ts';
import type { JsonValue } from './json.ts';
import type { StageStatus } from './plan.ts';
import type { OutcomeStatus } from './progress.ts';

/** One stage as the scheduler sees it; stages are given in topological order. */
export interface ScheduledStage {
  name: string;
  /** Upstream stage names in input order (the first broken one is named when the stage is skipped). */
  upstream: string[];
  status: StageStatus;
  /** Why an `error` stage cannot run. */
  reasons?: string[];
  /** A fresh stage whose workspace outputs must be put back before its users start. */
  restore?: boolean;
  /**
   * A fresh stage with an upstream that is computed in this run (its entry was damaged or missing): whether the entry
   * still holds depends on the bytes that come out, so it waits for its upstream, and runs (to be checked, and
   * computed again if its inputs changed) when one of them ran.
   */
  recheck?: boolean;
  /** What it occupies while it runs; asked once, when it is ready (its inputs are then finished). */
  resources?: () => Resources;
  /**
   * Its kind takes partial inputs (`StageKind.partialInputs`): under keepGoing, once every upstream stage has settled,
   * it runs if one of them finished, without the others (the run decision names them).
   */
  partialInputs?: boolean;
}

export interface ScheduleOptions {
  /** CPU slots (`--jobs`). */
  cpu: number;
  /** GPUs on this machine (`--gpus`); 0 makes GPU stages take a CPU slot. */
  gpus: number;
  /** Memory of each GPU: stages with a `gpuMemoryMiB` estimate share a GPU while their estimates fit. */
  gpuMemoryMiB?: number;
  /** `--stages-per-gpu`: up to this many one-GPU stages share a GPU, whatever their estimates. */
  stagesPerGpu?: number;
  /** Host memory for stages that run without a GPU: those with a `hostMemoryMiB` estimate start while theirs fit. */
  hostMemoryMiB?: number;
  /** After a failure keep starting stages that do not depend on it. */
  keepGoing: boolean;
}

/**
 * The GPU memory a stage takes on a GPU of `gpuMemoryMiB` (unknown: its plain estimate): a training stage whose estimate
 * exceeds the GPU turns activation checkpointing on by itself (sft with `gradient_checkpointing` unset) and takes the
 * checkpointed one. `plan` says the same as the scheduler does through this.
 */
export function gpuEstimateOn(r: Resources, gpuMemoryMiB: number | undefined): { mib?: number; checkpointed: boolean } {
  const over = r.gpuMemoryMiB !== undefined && gpuMemoryMiB !== undefined && r.gpuMemoryMiB > gpuMemoryMiB;
  if (over && r.gpuMemoryCheckpointedMiB !== undefined) return { mib: r.gpuMemoryCheckpointedMiB, checkpointed: true };
  return { ...(r.gpuMemoryMiB === undefined ? {} : { mib: r.gpuMemoryMiB }), checkpointed: false };
}

/** A stage's demand after clamping to the machine (a request larger than the machine still runs, alone). */
export interface SlotRequest {
  cpu: number;
  gpu: number;
  /** Estimated GPU memory; present only when the stage may share its GPU by memory. */
  gpuMemoryMiB?: number;
  /** Estimated host memory; present only when the stage runs without a GPU and the run counts host memory. */
  hostMemoryMiB?: number;
}

/** What a started stage holds: its request plus the GPUs (indices 0..gpus-1) it was placed on. */
export interface Grant extends SlotRequest {
  gpuIds: number[];
}

export type Decision =
  /** Fresh and nothing to put back: settled as cached. */
  | { type: 'hit'; name: string }
  /** Fresh, but its workspace outputs must be restored; report `finished` when done. */
  | { type: 'restore'; name: string }
  /**
   * Stale and ready: compute it with what it was granted; report `finished` when done. `missing`: the upstream
   * stages that did not finish, for a stage run with partial inputs; its result is partial and feeds no stage.
   */
  | { type: 'run'; name: string; grant: Grant; missing?: string[] }
  /** Settled as skipped. */
  | { type: 'skip'; name: string; reason: string }
  /** Settled as failed without running (the plan says it cannot run). */
  | { type: 'fail'; name: string; reason: string };

/** How a started stage can end. */
export type EndStatus = Exclude<OutcomeStatus, 'skipped'>;

interface GpuState {
  stages: number;
  usedMiB: number;
  /** Held by a stage that shares with nobody. */
  exclusive: boolean;
}

/**
 * CPU slots, host memory and GPUs: a GPU holds one exclusive stage, or several sharing ones while memory or the count
 * allows; stages without a GPU that estimate their host memory start while the estimates fit.
 */
export class Slots {
  private cpuFree: number;
  private readonly gpuState: GpuState[];
  private readonly gpuMemoryMiB?: number;
  private readonly stagesPerGpu?: number;
  private readonly hostMemoryMiB?: number;
  private hostMemoryFree: number;

  constructor(readonly cpu: number, readonly gpu: number, sharing: { gpuMemoryMiB?: number; stagesPerGpu?: number; hostMemoryMiB?: number } = {}) {
    this.cpuFree = cpu;
    this.gpuState = Array.from({ length: gpu }, () => ({ stages: 0, usedMiB: 0, exclusive: false }));
    this.gpuMemoryMiB = sharing.gpuMemoryMiB;
    this.stagesPerGpu = sharing.stagesPerGpu;
    this.hostMemoryMiB = sharing.hostMemoryMiB;
    this.hostMemoryFree = sharing.hostMemoryMiB ?? 0;
  }

  /** The slots a kind's declared resources take on this machine. */
  request(kind: Pick<StageKind, 'resources'>, params: Record<string, JsonValue>): SlotRequest {
    return this.fit(kind.resources?.(params) ?? {});
  }

  fit(r: Resources): SlotRequest {
    const wantsGpu = (r.gpu ?? 0) > 0;
    // A stage larger than the memory runs, alone.
    const host = r.hostMemoryMiB !== undefined && this.hostMemoryMiB !== undefined ? { hostMemoryMiB: Math.min(r.hostMemoryMiB, this.hostMemoryMiB) } : {};
    if (wantsGpu && this.gpu === 0) return { cpu: Math.min(this.cpu, Math.max(1, r.cpu ?? 1)), gpu: 0, ...host };
    const out: SlotRequest = { cpu: Math.min(this.cpu, r.cpu ?? (wantsGpu ? 0 : 1)), gpu: Math.min(this.gpu, r.gpu ?? 0), ...(wantsGpu ? {} : host) };
    // Only a one-GPU stage with an estimate that fits a GPU shares by memory; anything else holds its GPUs alone.
    const estimate = gpuEstimateOn(r, this.gpuMemoryMiB).mib;
    if (out.gpu === 1 && estimate !== undefined && this.gpuMemoryMiB !== undefined && estimate <= this.gpuMemoryMiB) {
      out.gpuMemoryMiB = estimate;
    }
    return out;
  }

  /** How many stages of this request one idle GPU holds at once, as `take` places them (1: it holds its GPU alone). */
  perGpu(r: SlotRequest): number {
    if (!this.shares(r)) return 1;
    if (this.stagesPerGpu !== undefined) return this.stagesPerGpu;
    return Math.max(1, Math.floor((this.gpuMemoryMiB ?? 0) / r.gpuMemoryMiB!));
  }

  /** How many stages of this request start at once in the host memory the run counts; undefined when it counts none for them. */
  inHostMemory(r: SlotRequest): number | undefined {
    if (r.hostMemoryMiB === undefined || this.hostMemoryMiB === undefined) return undefined;
    return Math.max(1, Math.floor(this.hostMemoryMiB / r.hostMemoryMiB));
  }

  /** Takes the slots if they are free now; the GPUs chosen are the least loaded ones (spread first, then share). */
  take(r: SlotRequest): Grant | undefined {
    if (r.cpu > this.cpuFree || !this.hasMemoryFor(r)) return undefined;
    const gpuIds = this.placeGpus(r);
    if (gpuIds === undefined) return undefined;
    this.cpuFree -= r.cpu;
    this.hostMemoryFree -= r.hostMemoryMiB ?? 0;
    const shared = this.shares(r);
    for (const i of gpuIds) {
      const g = this.gpuState[i]!;
      g.stages++;
      g.usedMiB += r.gpuMemoryMiB ?? 0;
      g.exclusive = !shared;
    }
    return { ...r, gpuIds };
  }

  /** Gives back what `take` granted (`gpuIds` may be left out for a request without GPUs). */
  give(g: SlotRequest & { gpuIds?: number[] }): void {
    this.cpuFree += g.cpu;
    this.hostMemoryFree += g.hostMemoryMiB ?? 0;
    for (const i of g.gpuIds ?? []) {
      const s = this.gpuState[i]!;
      s.stages--;
      s.usedMiB -= g.gpuMemoryMiB ?? 0;
      if (s.stages === 0) s.exclusive = false;
    }
  }

  /** Whether host memory has room for the request now (its other slots aside). */
  hasMemoryFor(r: SlotRequest): boolean {
    return (r.hostMemoryMiB ?? 0) <= this.hostMemoryFree;
  }

  /** Whether the CPU slots have room for the request now (its memory and GPUs aside). */
  hasCpuFor(r: SlotRequest): boolean {
    return r.cpu <= this.cpuFree;
  }

  /** Whether the GPUs have room for the request now (its CPU slots aside). */
  hasGpusFor(r: SlotRequest): boolean {
    return this.placeGpus(r) !== undefined;
  }

  private shares(r: SlotRequest): boolean {
    if (r.gpu !== 1) return false;
    return (this.stagesPerGpu !== undefined && this.stagesPerGpu > 1) || (this.stagesPerGpu === undefined && r.gpuMemoryMiB !== undefined);
  }

  private placeGpus(r: SlotRequest): number[] | undefined {
    if (r.gpu === 0) return [];
    const order = this.gpuState.map((g, i) => ({ g, i })).sort((a, b) => a.g.stages - b.g.stages || a.i - b.i);
    if (!this.shares(r)) {
      const idle = order.filter(({ g }) => g.stages === 0).slice(0, r.gpu).map(({ i }) => i).sort((a, b) => a - b);
      return idle.length === r.gpu ? idle : undefined;
    }
    const fits = (g: GpuState) => {
      if (g.exclusive) return false;
      if (this.stagesPerGpu !== undefined) return g.stages < this.stagesPerGpu;
      return g.usedMiB + (r.gpuMemoryMiB ?? 0) <= (this.gpuMemoryMiB ?? 0);
    };
    const found = order.find(({ g }) => fits(g));
    return found ? [found.i] : undefined;
  }
}

/**
 * Decides, from the plan and the outcomes reported so far, what happens next. Among ready stages the deepest
 * (longest path from a source) starts first, then the pipeline's order: a started variant's chain finishes before
 * the next variant begins, so the first complete answers come early. Call `next()` after construction and after
 * every `finished()`/`interrupt()`, acting on each decision; the run is over when `done` is true.
 */
export class Scheduler {
  /** In topological order: the run's, then those `add` gave. */
  private readonly stages: ScheduledStage[];
  private readonly depth = new Map<string, number>();
  private readonly order = new Map<string, number>();
  private readonly outcome = new Map<string, OutcomeStatus>();
  private readonly granted = new Map<string, Grant | undefined>();
  private readonly requests = new Map<string, SlotRequest>();
  private readonly slots: Slots;
  private stopping = false;
  private interrupted = false;
  /** Stages not to start, with why (see `drop`). */
  private readonly dropped = new Map<string, string>();
  /** Stages ready with partial inputs: the upstream stages they run without. */
  private readonly missing = new Map<string, string[]>();
  /** Stages that ended with a partial result: what depends on them is skipped. */
  private readonly partial = new Set<string>();
  /** A stage the last `next()` held back for host memory alone (a CPU slot was free), with its estimate. */
  private heldForMemory: { name: string; hostMemoryMiB: number } | undefined;

  constructor(stages: ScheduledStage[], private readonly options: ScheduleOptions) {
    this.stages = [];
    this.place(stages);
    this.slots = new Slots(Math.max(1, options.cpu), Math.max(0, options.gpus), {
      gpuMemoryMiB: options.gpuMemoryMiB, stagesPerGpu: options.stagesPerGpu, hostMemoryMiB: options.hostMemoryMiB,
    });
  }

  /** The first stage the last `next()` did not start for host memory alone, when one was: what a run says once. */
  get waitingForMemory(): { name: string; hostMemoryMiB: number } | undefined {
    return this.heldForMemory;
  }

  /** Every stage has an outcome. */
  get done(): boolean {
    return this.outcome.size === this.stages.length;
  }

  /** How a stage ended, once it has. */
  statusOf(name: string): OutcomeStatus | undefined {
    return this.outcome.get(name);
  }

  /** Whether a stage ended with a partial result (it ran without the inputs its run decision named). */
  isPartial(name: string): boolean {
    return this.partial.has(name);
  }

  /** A started stage (`run` or `restore`) ended; its slots are free again. */
  finished(name: string, status: EndStatus): void {
    if (!this.granted.has(name) || this.outcome.has(name)) throw new Error(`scheduler: ${name} was not running`);
    const grant = this.granted.get(name);
    if (grant) this.slots.give(grant);
    this.granted.delete(name);
    if (this.missing.has(name) && (status === 'ran' || status === 'cached')) this.partial.add(name);
    this.settle(name, status);
  }

  /**
   * A started stage holds its slots no more (it only waits for work done elsewhere): they go to other stages. It is
   * still running: `finished` comes later, and gives nothing back twice.
   */
  release(name: string): void {
    const grant = this.granted.get(name);
    if (grant === undefined || this.outcome.has(name)) return;
    this.slots.give(grant);
    this.granted.set(name, undefined);
  }

  /**
   * The caller no longer wants a stage (`watch`: a change replaced it): if it has not started, it is skipped with the
   * reason, and what depends on it after it. A running one is the caller's to stop; its `finished` comes as usual.
   */
  drop(name: string, reason: string): void {
    if (!this.outcome.has(name)) this.dropped.set(name, reason);
  }

  /**
   * Stages that join the run (`watch`: a change added them), in topological order: each reads stages the scheduler
   * has or that come before it here. They are decided as the others are: hits at the next `next()`, the rest once
   * their inputs are done and slots are free (deepest first; ties go to the run's stages, then these in order).
   * Refused (false, nothing added) once the run starts nothing new: after an interrupt, or a failure without
   * --keep-going; and once it is `done`, as its caller has then ended it.
   */
  add(stages: ScheduledStage[]): boolean {
    if (this.stopping || this.done) return false;
    this.place(stages);
    return true;
  }

  /** Ctrl-C: nothing new starts; what never started is skipped once the running stages end. */
  interrupt(): void {
    this.stopping = true;
    this.interrupted = true;
  }

  next(): Decision[] {
    const decisions: Decision[] = [];
    const ready: ScheduledStage[] = [];
    for (const s of this.stages) {
      if (this.outcome.has(s.name) || this.granted.has(s.name)) continue;
      // A hit stands on its own: its upstream's fate in this run does not matter, only its workspace outputs do
      // (and, for a stage to check again, whether an upstream was computed with new bytes).
      if (s.recheck && s.status === 'fresh' && s.upstream.some((u) => !this.outcome.has(u))) continue;
      const inputsRan = s.recheck === true && s.upstream.some((u) => this.outcome.get(u) === 'ran');
      if (s.status === 'fresh' && !inputsRan) {
        if (s.restore) {
          this.granted.set(s.name, undefined);
          decisions.push({ type: 'restore', name: s.name });
        } else {
          this.settle(s.name, 'cached');
          decisions.push({ type: 'hit', name: s.name });
        }
        continue;
      }
      const dropped = this.dropped.get(s.name);
      if (dropped !== undefined) {
        this.settle(s.name, 'skipped');
        decisions.push({ type: 'skip', name: s.name, reason: dropped });
        continue;
      }
      const broken = s.upstream.filter((u) => this.isBroken(u));
      if (broken.length > 0) {
        const partial = this.partialReady(s, broken);
        if (partial === 'wait') continue;
        if (partial === 'ready') {
          if (!this.stopping) ready.push(s);
          continue;
        }
        const first = broken[0]!;
        const reason = this.partial.has(first) ? `upstream ${first} partial: a partial result feeds no stage` : `upstream ${first} ${this.outcome.get(first)}`;
        this.settle(s.name, 'skipped');
        decisions.push({ type: 'skip', name: s.name, reason });
        continue;
      }
      if (s.status === 'error') {
        this.settle(s.name, 'failed');
        decisions.push({ type: 'fail', name: s.name, reason: (s.reasons ?? []).join('; ') });
        continue;
      }
      if (this.stopping) continue;
      if (s.upstream.every((u) => this.outcome.get(u) === 'ran' || this.outcome.get(u) === 'cached')) ready.push(s);
    }
    ready.sort((a, b) => this.depth.get(b.name)! - this.depth.get(a.name)! || this.order.get(a.name)! - this.order.get(b.name)!);
    // Once a GPU stage waits for GPUs, no later one takes any: one-GPU stages that kept filling the GPUs as they
    // freed would hold a stage wanting an idle GPU (several, or one of its own) back until none of them was left.
    let gpusWaitedFor = false;
    // The same for host memory: smaller stages filling the memory as it frees would starve a larger one.
    let memoryWaitedFor = false;
    this.heldForMemory = undefined;
    for (const s of ready) {
      // A later `fail` decision in this call may have stopped the run (without --keep-going).
      if (this.stopping) break;
      const request = this.requestOf(s);
      if (gpusWaitedFor && request.gpu > 0) continue;
      if (memoryWaitedFor && request.hostMemoryMiB !== undefined) continue;
      const grant = this.slots.take(request);
      if (!grant) {
        if (request.gpu > 0 && !this.slots.hasGpusFor(request)) gpusWaitedFor = true;
        if (!this.slots.hasMemoryFor(request)) {
          memoryWaitedFor = true;
          if (this.slots.hasCpuFor(request)) this.heldForMemory ??= { name: s.name, hostMemoryMiB: request.hostMemoryMiB! };
        }
        continue;
      }
      this.granted.set(s.name, grant);
      const missing = this.missing.get(s.name);
      decisions.push({ type: 'run', name: s.name, grant, ...(missing ? { missing } : {}) });
    }
    if (this.granted.size === 0) {
      const reason = this.interrupted ? 'run interrupted' : 'not started after a failure';
      for (const s of this.stages) {
        if (this.outcome.has(s.name)) continue;
        this.settle(s.name, 'skipped');
        decisions.push({ type: 'skip', name: s.name, reason });
      }
    }
    return decisions;
  }

  /** Settled without a result this run can use: failed, skipped, interrupted, or partial. */
  private isBroken(name: string): boolean {
    const status = this.outcome.get(name);
    return status === 'failed' || status === 'skipped' || status === 'aborted' || this.partial.has(name);
  }

  /**
   * For a stage with a broken upstream: whether it runs with partial inputs (`ready`, once every upstream has settled
   * and one of them finished), still waits for its upstream (`wait`), or is skipped as any other stage (`no`).
   */
  private partialReady(s: ScheduledStage, broken: string[]): 'ready' | 'wait' | 'no' {
    if (!s.partialInputs || !this.options.keepGoing || s.status === 'error') return 'no';
    if (s.upstream.some((u) => !this.outcome.has(u))) return 'wait';
    if (!s.upstream.some((u) => !this.isBroken(u))) return 'no';
    this.missing.set(s.name, [...new Set(broken)]);
    return 'ready';
  }

  /** Appends stages given in topological order after those it has, with their depth and order; throws before any when one cannot come. */
  private place(stages: ScheduledStage[]): void {
    const depth = new Map<string, number>();
    for (const s of stages) {
      if (this.depth.has(s.name) || depth.has(s.name)) throw new Error(`scheduler: ${s.name} is there twice`);
      let d = 0;
      for (const u of s.upstream) {
        const du = this.depth.get(u) ?? depth.get(u);
        if (du === undefined) throw new Error(`scheduler: ${s.name} needs ${u}, which does not come before it`);
        d = Math.max(d, du + 1);
      }
      depth.set(s.name, d);
    }
    for (const s of stages) {
      this.depth.set(s.name, depth.get(s.name)!);
      this.order.set(s.name, this.stages.length);
      this.stages.push(s);
    }
  }

  private requestOf(s: ScheduledStage): SlotRequest {
    let r = this.requests.get(s.name);
    if (!r) {
      r = this.slots.fit(s.resources?.() ?? {});
      this.requests.set(s.name, r);
    }
    return r;
  }

  private settle(name: string, status: OutcomeStatus): void {
    this.outcome.set(name, status);
    if (status === 'failed' && !this.options.keepGoing) this.stopping = true;
  }
}

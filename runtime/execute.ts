// The Executed phase: wires the pure scheduler (schedule.ts), an executor (executors/) and the cache side (commit.ts).
import type { HeldLock } from '../cache/lock.ts';
import type { ArtifactStore, FileDigester, Manifest } from '../cache/store.ts';
import { hostname } from 'node:os';
import path from 'node:path';
import type { MissingInput, Resources, RunInfo, StageKind } from '../stages/kind.ts';
import { Committer, StageLog, upstreamCount } from './commit.ts';
import { StageFailure, type Executor, type StageEvents } from './executors/executor.ts';
import { localExecutor } from './executors/local.ts';
import { gpuDeviceIds } from './gpus.ts';
import type { JsonValue } from './json.ts';
import { partialKey, type KeyedStage, type StageKeys } from './keys.ts';
import type { Pipeline, StageInstance } from './pipeline.ts';
import type { Plan, PlannedStage } from './plan.ts';
import type { LockHolder, OutcomeStatus, Reporter, RunStage } from './progress.ts';
import { Scheduler, type Decision, type EndStatus, type Grant, type ScheduledStage } from './schedule.ts';
import type { StateRecorder } from './state.ts';
import { Turns, type Turn } from './turns.ts';
import type { RunRequest } from './worker-protocol.ts';

export { Slots } from './schedule.ts';

/** What a person chooses for a run (the CLI's flags). */
export interface RunOptions {
  /** CPU slots. */
  jobs: number;
  /** GPUs; 0 makes GPU stages take CPU slots. */
  gpus: number;
  /** `--gpus 0` given: every stage's process is shown no GPU (CUDA_VISIBLE_DEVICES empty, PAUSEPIPE_GPU=none). */
  hideGpus?: boolean;
  /** Memory of each GPU (nvidia-smi): stages with a memory estimate share a GPU while their estimates fit. */
  gpuMemoryMiB?: number;
  /** `--stages-per-gpu`: up to this many one-GPU stages share a GPU, whatever their estimates. */
  stagesPerGpu?: number;
  /** Memory free for stages that run without a GPU: those estimating theirs (model stages) start while the estimates fit. */
  hostMemoryMiB?: number;
  /** After a failure keep starting stages that do not depend on it. */
  keepGoing: boolean;
  backend?: string;
  /** Overrides of the pipeline's lets the run was asked for, recorded with the results (RunInfo). */
  overrides?: Record<string, JsonValue>;
  /** Aborting (Ctrl-C) kills running stages, aborts their pending entries and starts nothing more. */
  signal?: AbortSignal;
  /** Stops some stages while the others go on (`watch`: those a change replaced). */
  stops?: StageStops;
  /** Adds stages to the run while it goes on (`watch`: those a change added). */
  joins?: StageJoins;
  reporter: Reporter;
  /** Where stale stages compute (default: this machine, runtime/executors/local.ts). */
  executor?: Executor;
}

export interface ExecuteOptions extends RunOptions {
  pipeline: Pipeline;
  kinds: Record<string, StageKind>;
  store: ArtifactStore;
  keys: StageKeys;
  plan: Plan;
  /**
   * Hashes workspace files for restore checks, entries before they are used and inputs against their manifests (the
   * stat cache keeps a no-op re-run from reading them).
   */
  hasher: FileDigester;
  state?: StateRecorder;
  /** Manifests already read while planning, by key. */
  manifests?: Map<string, Manifest>;
  /** Device ids of GPUs 0..gpus-1 (default: from CUDA_VISIBLE_DEVICES, else the indices). */
  gpuDeviceIds?: string[];
}

export interface StageOutcome {
  name: string;
  key?: string;
  status: OutcomeStatus;
  /** Why the plan said it had to run (stale) or could not (error). */
  reasons: string[];
  seconds?: number;
  /** Failure message, or why a stage was skipped. */
  error?: string;
  /** Last lines of a failed stage's log. */
  logTail?: string[];
  /** Where the failed stage's full log was kept. */
  logPath?: string;
  metrics?: Record<string, JsonValue>;
  /** Workspace files put back from the cache. */
  restored?: string[];
  /**
   * A result made without some inputs (a `partialInputs` kind under --keep-going), stored under `key`, its partial
   * key: the upstream stages it went without, and how many it reads when complete.
   */
  partial?: { missing: MissingInput[]; inputs: number };
}

export interface RunResult {
  outcomes: StageOutcome[];
  counts: Record<OutcomeStatus, number>;
  interrupted: boolean;
}

/**
 * Stages to stop during a run, each with why, while the others go on: a running one is stopped as Ctrl-C stops it
 * (nothing committed, its outcome `aborted` with the reason), one not started yet is skipped with the reason, and what
 * depends on them is skipped. Asked before the run starts, they are stopped as it starts.
 */
export class StageStops {
  readonly reasons = new Map<string, string>();
  private listener?: (names: string[]) => string[];

  /** The stages of `names` this stops: those not yet ended (before the run starts, all those not asked before). */
  stop(names: string[], reason: string): string[] {
    const asked = names.filter((n) => !this.reasons.has(n));
    for (const n of asked) this.reasons.set(n, reason);
    return this.listener ? this.listener(asked) : asked;
  }

  /** executePlan's: it stops the stages named, returning those that had not ended. */
  listen(listener: (names: string[]) => string[]): void {
    this.listener = listener;
  }
}

/** Stages of another plan of the pipeline (`watch`: the plan after a change) that join a running run. */
export interface JoiningStages {
  /**
   * In topological order, with names the run does not have; each reads stages of the run (under the same name and key)
   * or earlier ones of these.
   */
  stages: StageInstance[];
  /** Their keys and plan, from that plan. */
  keys: StageKeys;
  plan: PlannedStage[];
  /** How the progress line counts them (runStagesOf). */
  progress: RunStage[];
}

/**
 * Stages to add to a running run: they are scheduled as its own (hits settle, the others start once their inputs are
 * done and slots are free) and counted in its outcomes; keys, locks and commits are those of any stage.
 */
export class StageJoins {
  private listener?: (joining: JoiningStages) => string[];

  /** The names that joined: all of them, or none when the run has not started, has ended or starts nothing new. */
  join(joining: JoiningStages): string[] {
    return this.listener?.(joining) ?? [];
  }

  /** executePlan's, while its run can take stages. */
  listen(listener: ((joining: JoiningStages) => string[]) | undefined): void {
    this.listener = listener;
  }
}

function errorText(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

/**
 * Run a plan: stale stages in dependency order, independent ones in parallel within the slots; cache hits
 * only get their workspace side effects restored. Never throws for a stage's failure: outcomes say what happened.
 */
export async function executePlan(o: ExecuteOptions): Promise<RunResult> {
  /** The pipeline's stages, then those that joined the run. */
  const stages = [...o.pipeline.stages];
  const planned = new Map(o.plan.stages.map((p) => [p.name, p]));
  const byName = new Map(stages.map((s) => [s.name, s]));
  const cache = new Committer(o);
  const executor = o.executor ?? localExecutor(o.kinds);
  const devices = o.gpuDeviceIds ?? gpuDeviceIds(o.gpus);
  const outcomes = new Map<string, StageOutcome>();
  /** Each stage's key as planned (a partial result is stored under another: Committer.keyOf), joined stages' too. */
  const fullKeys = new Map([...o.keys].map(([name, k]) => [name, k as KeyedStage]));
  /** The running stages' controllers, by stage name. */
  const controllers = new Map<string, AbortController>();
  const run: RunInfo = { pipeline: path.relative(o.pipeline.workspace, o.pipeline.file), overrides: o.overrides ?? {} };
  // When the run starts; a forced stage replaces an entry committed before it, not one this run made under another name.
  const runStart = new Date();
  const noticed = new Set<string>();
  /** Said once per run however many stages say it (every model stage names its backend). */
  const notice = (line: string) => {
    if (noticed.has(line)) return;
    noticed.add(line);
    o.reporter.note(line);
  };

  const resources = new Map<string, Resources>();
  /** The kind's resources with its finished inputs at hand; without them when they cannot be read (the run then says why). */
  function resourcesOf(s: StageInstance): Resources {
    let r = resources.get(s.name);
    if (!r) {
      let inputs;
      try {
        inputs = cache.inputsOf(s);
      } catch {
        inputs = undefined;
      }
      r = o.kinds[s.kind]!.resources?.(s.params, inputs) ?? {};
      resources.set(s.name, r);
    }
    return r;
  }

  const scheduled = (s: StageInstance): ScheduledStage => {
    const p = planned.get(s.name)!;
    const upstream = Object.values(s.inputs).flatMap((b) => b.stages);
    return {
      name: s.name,
      upstream,
      status: p.status,
      reasons: p.reasons,
      restore: p.status === 'fresh' && cache.needsRestore(s),
      // Its entry was computed from the bytes of an upstream entry that this run computes again (damaged or lost).
      recheck: p.status === 'fresh' && upstream.some((u) => planned.get(u)?.status !== 'fresh'),
      resources: () => resourcesOf(s),
      partialInputs: o.kinds[s.kind]?.partialInputs === true,
    };
  };
  const scheduler = new Scheduler(stages.map(scheduled), { cpu: o.jobs, gpus: o.gpus, gpuMemoryMiB: o.gpuMemoryMiB, stagesPerGpu: o.stagesPerGpu, hostMemoryMiB: o.hostMemoryMiB, keepGoing: o.keepGoing });
  /** Keys committed by this run, and by which stage: a stage sharing one finds it computed once, not by another run. */
  const committedBy = new Map<string, string>();
  /** Where this process holds the key's lock, another stage of this run that shares the key computes it. */
  const sharing = (key: string, name: string, owner: LockHolder): string | undefined => {
    if (owner.pid !== process.pid || owner.hostname !== hostname()) return undefined;
    return stages.find((x) => x.name !== name && cache.keyOf(x).key === key)?.name;
  };

  /** Records the outcome and tells the reporter; a plain cache hit is not worth a line (a no-op run of 1,000 stays quiet). */
  const record = (s: StageInstance, status: OutcomeStatus, extra: Partial<StageOutcome> = {}, note?: string) => {
    const p = planned.get(s.name);
    const missing = cache.missingOf(s);
    const partial = missing && (status === 'ran' || status === 'cached')
      ? { key: cache.keyOf(s).key, partial: { missing: Object.values(missing).flat(), inputs: upstreamCount(s) } }
      : {};
    if (partial.partial) note = [note, `partial: ${partial.partial.missing.length} of ${partial.partial.inputs} inputs missing`].filter(Boolean).join('; ');
    outcomes.set(s.name, { name: s.name, key: p?.key, status, reasons: p?.reasons ?? [], ...extra, ...partial });
    const restored = extra.restored?.length ? `restored ${extra.restored.join(', ')}` : undefined;
    const detail = extra.error ?? [note, restored].filter(Boolean).join('; ');
    if (status !== 'cached' || detail) o.reporter.finish(s.name, status, detail || undefined);
  };

  const recordHit = (s: StageInstance, restored: string[] = [], note?: string) => {
    record(s, 'cached', { restored, metrics: cache.hit(s) }, note);
  };

  /**
   * The executor gets the stages in the order the scheduler started them (deepest first, then the pipeline's), although
   * each first takes its lock and hashes its inputs, which end in any order: a cluster's queue runs jobs in the order
   * they were submitted.
   */
  const handOver = new Turns();
  /** Looks for stages to start (set once the run's loop exists): a stage that released its slots makes room. */
  let wake: () => void = () => undefined;

  /** Computes a stale stage into its pending entry and commits it; the outcome's status. */
  const compute = async (s: StageInstance, grant: Grant, ctl: AbortController, turn: Turn): Promise<EndStatus> => {
    const key = cache.keyOf(s).key;
    // With the digester, an entry whose files no longer match its manifest is replaced rather than served.
    const entry = await o.store.begin(key, {
      signal: ctl.signal, digester: o.hasher, replaceBefore: planned.get(s.name)?.forced ? runStart : undefined,
      onWait: (owner) => {
        // Another run computes it: the stages after it need not wait for that.
        turn.end();
        o.reporter.waiting(s.name, owner, sharing(key, s.name, owner));
      },
    });
    if (entry === 'cached') {
      turn.end();
      // A stage checked again after its upstream ran finds its entry still holds: a plain hit.
      const checkedAgain = planned.get(s.name)?.status === 'fresh';
      const sibling = committedBy.get(key);
      const missing = cache.missingOf(s);
      const note = checkedAgain ? undefined : sibling !== undefined ? `same key as ${sibling}: computed once`
        : missing ? 'found from an earlier run missing the same inputs' : 'computed by another run';
      await cache.notePartial(s);
      recordHit(s, await cache.restore(s), note);
      return 'cached';
    }
    const log = new StageLog(entry.logPath);
    const startedAt = new Date();
    // A request larger than the machine runs on all of it, alone: a command started for that many GPUs should know.
    const asked = resourcesOf(s).gpu ?? 0;
    if (grant.gpu > 0 && asked > grant.gpu) {
      const fewer = `${s.name} asks for ${asked} GPUs, but this run has ${grant.gpu}: it runs on all ${grant.gpu}, alone`;
      log.line(fewer);
      notice(fewer);
    }
    try {
      await cache.forgetFailure(entry);
      const inputContents = await cache.prepare(s);
      const request: RunRequest = {
        type: 'run', name: s.name, key, kind: s.kind, params: s.params, variant: s.variant, inputs: cache.inputsOf(s),
        outDir: entry.outDir, scratchDir: entry.scratchDir, workspace: o.pipeline.workspace, run,
        // Only JSON values: the job may be written to a file for a job on another machine.
        ...(cache.missingOf(s) ? { missing: cache.missingOf(s) } : {}),
        ...(o.backend !== undefined ? { backend: o.backend } : {}),
        ...(grant.gpuIds.length > 0 ? { gpus: grant.gpuIds.map((i) => devices[i]!) } : o.hideGpus ? { gpus: [] } : {}),
      };
      const events: StageEvents = {
        log: (line) => log.line(line), progress: (p) => o.reporter.progress(s.name, p), notice,
        jobState: (state, since) => o.reporter.jobState(s.name, state, since),
        releaseSlots: () => {
          scheduler.release(s.name);
          wake();
        },
      };
      await turn.ready;
      // Said when the executor gets it, so `start` lines come in the order stages are handed over (sbatch's order).
      o.reporter.start(s.name);
      const running = executor.run({ request, resources: resourcesOf(s) }, events, ctl.signal);
      turn.end();
      const metrics = await running;
      if (ctl.signal.aborted) throw new Error('interrupted');
      await log.close();
      const manifest = await cache.commit(s, entry, metrics, startedAt, inputContents);
      committedBy.set(key, s.name);
      await cache.notePartial(s);
      const recomputed = planned.get(s.name)?.status === 'fresh' ? { reasons: ['computed from bytes of an input that this run computed again with other results'] } : {};
      record(s, 'ran', { seconds: manifest.timings.seconds, metrics, ...recomputed });
      return 'ran';
    } catch (e) {
      turn.end();
      const seconds = (Date.now() - startedAt.getTime()) / 1000;
      if (e instanceof StageFailure && e.detail) log.detail(e.detail);
      log.line(`pausepipe: ${errorText(e)}`);
      await log.close().catch(() => undefined);
      // The entry's folder goes with abandon(); the scratch folder stays, so the full log is kept there.
      const { kept, noSpace } = await cache.abandon(entry, e, log.tail, ctl.signal.aborted);
      cache.noteTried(s);
      if (ctl.signal.aborted) {
        record(s, 'aborted', { seconds, error: o.stops?.reasons.get(s.name) ?? 'interrupted' });
        return 'aborted';
      }
      record(s, 'failed', { seconds, error: noSpace ?? errorText(e), logTail: log.tail, logPath: kept });
      return 'failed';
    }
  };

  /**
   * The upstream stages a stage runs without, by input name, as its kind sees them: the key each would have had, and
   * how it ended in this run (a failure's first line, why it was skipped).
   */
  const missingInputs = (s: StageInstance, without: Set<string>): Record<string, MissingInput[]> => {
    const missing: Record<string, MissingInput[]> = {};
    for (const [input, binding] of Object.entries(s.inputs)) {
      const list = binding.stages.filter((u) => without.has(u)).map((u): MissingInput => {
        const up = byName.get(u)!;
        const ended = outcomes.get(u);
        const partial = ended?.partial !== undefined;
        return {
          stage: u, key: fullKeys.get(u)!.key, kind: up.kind, variant: up.variant, params: up.params,
          status: ended?.status === 'skipped' || partial ? 'skipped' : 'failed',
          reason: partial ? 'its result is partial, and a partial result feeds no stage' : (ended?.error ?? ended?.status ?? 'did not finish').split('\n')[0]!,
        };
      });
      if (list.length > 0) missing[input] = list;
    }
    return missing;
  };

  /** Registrations of the partial keys this run computes or finds, released when the run ends. */
  const partialUses: Promise<HeldLock | undefined>[] = [];
  const runStage = async (s: StageInstance, grant: Grant, without?: string[]): Promise<EndStatus> => {
    let registered: Promise<unknown> | undefined;
    if (without !== undefined) {
      const missing = missingInputs(s, new Set(without));
      const keys = Object.fromEntries(Object.entries(missing).map(([input, list]) => [input, list.map((m) => m.key)]));
      const keyed = partialKey(fullKeys.get(s.name)!, keys);
      cache.computePartial(s, keyed, missing);
      // Registered like the run's planned keys before the entry is looked up, so a gc of another pipeline keeps it.
      // Failing to register costs only that protection: the next run would write the entry again.
      const use = o.store.registerUse([keyed.key]).catch(() => undefined);
      partialUses.push(use);
      registered = use;
    }
    const ctl = new AbortController();
    controllers.set(s.name, ctl);
    // Taken now, in the scheduler's order; ended once the executor has the stage, or when it never gets it.
    const turn = handOver.take();
    try {
      await registered;
      return await compute(s, grant, ctl, turn);
    } catch (e) {
      const status: EndStatus = ctl.signal.aborted ? 'aborted' : 'failed';
      record(s, status, { error: status === 'aborted' ? o.stops?.reasons.get(s.name) ?? 'interrupted' : errorText(e) });
      return status;
    } finally {
      turn.end();
      controllers.delete(s.name);
    }
  };

  const restoreHit = async (s: StageInstance): Promise<EndStatus> => {
    try {
      recordHit(s, await cache.restore(s));
      return 'cached';
    } catch (e) {
      record(s, 'failed', { error: `restoring its workspace outputs failed: ${errorText(e)}` });
      return 'failed';
    }
  };

  /** Whether the run said that memory holds stages back (once: the first one held). */
  let memoryWaitSaid = false;
  return new Promise<RunResult>((resolve) => {
    const act = (d: Decision) => {
      const s = byName.get(d.name)!;
      const started = (work: Promise<EndStatus>) => void work.then((status) => {
        scheduler.finished(s.name, status);
        pump();
      });
      if (d.type === 'hit') recordHit(s);
      else if (d.type === 'skip') record(s, 'skipped', { error: d.reason });
      else if (d.type === 'fail') record(s, 'failed', { error: d.reason });
      else if (d.type === 'restore') started(restoreHit(s));
      else started(runStage(s, d.grant, d.missing));
    };
    const pump = () => {
      for (const d of scheduler.next()) act(d);
      const held = scheduler.waitingForMemory;
      if (held && !memoryWaitSaid) {
        memoryWaitSaid = true;
        o.reporter.note(memoryWaitLine(held.name, held.hostMemoryMiB, o.hostMemoryMiB!));
      }
      if (scheduler.done && outcomes.size === stages.length) {
        const counts: Record<OutcomeStatus, number> = { ran: 0, cached: 0, failed: 0, skipped: 0, aborted: 0 };
        const list = stages.map((s) => outcomes.get(s.name)!);
        for (const x of list) counts[x.status]++;
        o.signal?.removeEventListener('abort', onAbort);
        o.joins?.listen(undefined);
        const result = { outcomes: list, counts, interrupted: o.signal?.aborted ?? false };
        void Promise.all(partialUses.map((use) => use.then((held) => held?.release()).catch(() => undefined))).then(() => resolve(result));
      }
    };
    const onAbort = () => {
      scheduler.interrupt();
      o.reporter.interrupted();
      for (const c of controllers.values()) c.abort();
    };
    if (o.signal?.aborted) onAbort();
    o.signal?.addEventListener('abort', onAbort, { once: true });
    const stop = (names: string[]) => {
      const stopped = names.filter((n) => byName.has(n) && !outcomes.has(n));
      for (const n of stopped) {
        scheduler.drop(n, o.stops!.reasons.get(n)!);
        controllers.get(n)?.abort();
      }
      // A stage not started yet is skipped now, not at the next stage's end.
      if (stopped.length > 0) queueMicrotask(pump);
      return stopped;
    };
    const join = (j: JoiningStages): string[] => {
      if (j.stages.some((s) => byName.has(s.name))) throw new Error(`a stage that joins the run has the name of one it has: ${j.stages.map((s) => s.name).join(', ')}`);
      // A guard only: a process loads every PAUSEPIPE_KINDS plugin once, before its first plan, so a stage of a kind it
      // lacks is an unknown-kind error at load and never reaches a join (NOTES "watch").
      if (j.stages.some((s) => o.kinds[s.kind] === undefined)) return [];
      const plans = new Map(j.plan.map((p) => [p.name, p]));
      for (const s of j.stages) planned.set(s.name, plans.get(s.name)!);
      if (!scheduler.add(j.stages.map(scheduled))) {
        for (const s of j.stages) planned.delete(s.name);
        return [];
      }
      for (const s of j.stages) {
        stages.push(s);
        byName.set(s.name, s);
      }
      cache.add(j.stages, j.keys);
      for (const s of j.stages) fullKeys.set(s.name, j.keys.get(s.name) as KeyedStage);
      o.state?.addStages(j.stages.map((s) => s.name));
      o.reporter.add(j.progress);
      // Hits settle and free slots fill now, not at the next stage's end.
      queueMicrotask(pump);
      return j.stages.map((s) => s.name);
    };
    stop([...(o.stops?.reasons.keys() ?? [])]);
    o.stops?.listen(stop);
    o.joins?.listen(join);
    wake = pump;
    pump();
  });
}

const gib = (mib: number) => `${(mib / 1024).toFixed(1)} GiB`;

/** Said once per run when a stage waits for memory although a CPU slot is free, so fewer stages than --jobs run. */
export function memoryWaitLine(name: string, hostMemoryMiB: number, freeMiB: number): string {
  return `${name} waits for memory: without a GPU, model stages start while their memory estimates (${gib(hostMemoryMiB)} for ` +
    `${name}) fit the ${gib(freeMiB)} free when the run began, so fewer run at once than --jobs allows`;
}

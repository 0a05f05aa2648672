// One pipeline file taken through load → keys → plan (→ execute): what `run`, `plan`, `show`, `watch` and `gc` share.
import path from 'node:path';
import { errorCode } from '../cache/durable.ts';
import { FileHasher } from '../cache/file-hash.ts';
import { describeOwner, type HeldLock } from '../cache/lock.ts';
import { ArtifactStore, resolveCacheRoot, STAT_CACHE, type Manifest } from '../cache/store.ts';
import { formatDiagnostics, mistakeOf, type Diagnostic } from '../grammar/diagnostics.ts';
import type { StageKind } from '../stages/kind.ts';
import { Committer, describeFailure, describePartial, lastFailure, lastPartial, type LastFailure } from './commit.ts';
import { executePlan, type RunOptions, type RunResult } from './execute.ts';
import { listSome } from './format.ts';
import { computeKeys, isKeyed, type StageKeys } from './keys.ts';
import { JobFiles, readRecord } from './job-protocol.ts';
import { loadKinds } from './kinds.ts';
import { loadPipeline, readPipeFile, type LoadOptions } from './load.ts';
import type { Pipeline } from './pipeline.ts';
import { planPipeline, type Plan, type PlannedStage, type PlanOptions, type PreviousState } from './plan.ts';
import type { RunStage } from './progress.ts';
import { readState, statePath, StateRecorder } from './state.ts';
import { isWithin, resolveReal } from './workspace-paths.ts';

export interface Session {
  pipeline: Pipeline;
  kinds: Record<string, StageKind>;
  cacheRoot: string;
  store: ArtifactStore;
  hasher: FileHasher;
  keys: StageKeys;
  plan: Plan;
  previous: PreviousState;
  /** What the last runs tried under each stage name without a full result (the state's `tried`). */
  tried: PreviousState;
  /** The pipeline's stage names at its last run, as the state file records them (undefined when unknown). */
  lastRunStages?: string[];
  /** Manifests read while planning, by key (a fresh stage's metrics need no second read). */
  manifests: Map<string, Manifest>;
  /** What is wrong with each damaged entry planning found, by key (show and export say it rather than "not computed"). */
  damage: Map<string, string>;
  /** The cache's gc generation when planning started (see ArtifactStore.gcGeneration). */
  gcGeneration: string;
  /** What planning was asked for (--force, the -p notes): a re-plan after a gc asks the same. */
  planOptions: PlanOptions;
  /** Every stage name of the pipeline when targets restricted `pipeline` to some (the state records the whole pipeline's). */
  wholePipelineStages?: string[];
}


/** Diagnostics with code frames; sources come from the pipeline, or from disk when loading failed before that. */
export function renderDiagnostics(diagnostics: Diagnostic[], sources: Record<string, string> = {}): string {
  const all = { ...sources };
  for (const d of diagnostics) {
    const file = d.span?.file;
    if (file === undefined || file in all) continue;
    // Only a .pipe file is ever shown; a missing or refused one (a bad include) is reported without a code frame.
    const text = readPipeFile(file);
    if (typeof text === 'string') all[file] = text;
  }
  return formatDiagnostics(diagnostics, all);
}

/**
 * Loads and checks a pipeline; prints its diagnostics. Undefined when it has errors (the caller exits 2). `onRead`
 * gets the .pipe files read or tried, also when there are errors (watch keeps watching the one with the error, and
 * waits for a missing include).
 */
export async function loadChecked(
  file: string,
  printErr: (text: string) => void,
  options: LoadOptions = {},
  onRead?: (files: string[]) => void,
): Promise<{ pipeline: Pipeline; kinds: Record<string, StageKind>; diagnostics: Diagnostic[] } | undefined> {
  const kinds = await loadKinds();
  const { pipeline, diagnostics, sources, unread } = await loadPipeline(path.resolve(file), kinds, options);
  onRead?.([...Object.keys(sources), ...unread]);
  await noteOverrideCauses(file, kinds, options, diagnostics);
  if (diagnostics.length > 0) printErr(renderDiagnostics(diagnostics, pipeline?.sources));
  if (!pipeline || diagnostics.some((d) => d.severity === 'error')) return undefined;
  return { pipeline, kinds, diagnostics };
}

/**
 * An error that a `-p` override causes points at the file, where the let's value is used: a note names the override.
 * Found by loading again without each override (loads take milliseconds); an error gone without it is its doing.
 */
async function noteOverrideCauses(file: string, kinds: Record<string, StageKind>, options: LoadOptions, diagnostics: Diagnostic[]): Promise<void> {
  const overrides = options.overrides ?? [];
  const errors = diagnostics.filter((d) => d.severity === 'error' && d.code !== 'E_OVERRIDE');
  if (overrides.length === 0 || errors.length === 0) return;
  for (const o of overrides) {
    const without = await loadPipeline(path.resolve(file), kinds, { ...options, overrides: overrides.filter((x) => x !== o) });
    const remaining = new Set(without.diagnostics.map(mistakeOf));
    for (const d of errors) {
      if (!remaining.has(mistakeOf(d))) d.notes = [...(d.notes ?? []), `the value comes from the command line: -p ${o.text}`];
    }
  }
}

/** Keys and plan of a loaded pipeline against its cache and the last run's state. Reads, never writes. */
export async function planLoaded(pipeline: Pipeline, kinds: Record<string, StageKind>, cacheDir?: string, options: PlanOptions = {}): Promise<Session> {
  const cacheRoot = resolveCacheRoot(pipeline.workspace, cacheDir);
  const store = new ArtifactStore(cacheRoot);
  const hasher = new FileHasher(path.join(cacheRoot, STAT_CACHE), { cacheRoot });
  const keys = await computeKeys(pipeline, kinds, hasher);
  guardCache(pipeline, kinds, cacheRoot, keys);
  const { previous, tried, lastRunStages } = await readState(statePath(cacheRoot, pipeline.file));
  return {
    pipeline, kinds, cacheRoot, store, hasher, keys, previous, tried, lastRunStages, planOptions: options,
    ...(await planKeys(pipeline, keys, store, hasher, previous, tried, options)),
  };
}

/**
 * A stage whose workspace outputs are, hold or lie in the cache would delete or overwrite it: it gets no key, so it
 * cannot run (`check` refuses the default `.pausepipe`; only here is a --cache-dir inside the workspace known).
 */
function guardCache(pipeline: Pipeline, kinds: Record<string, StageKind>, cacheRoot: string, keys: StageKeys): void {
  const cache = resolveReal(cacheRoot);
  // Outs never lead out of the workspace, and `check` refuses its `.pausepipe`: only another cache inside it can be hit.
  const workspace = resolveReal(pipeline.workspace);
  if (!isWithin(cache, workspace) || cache === path.join(workspace, '.pausepipe')) return;
  for (const s of pipeline.stages) {
    for (const out of kinds[s.kind]?.workspaceOutputs?.(s.params) ?? []) {
      const real = resolveReal(path.resolve(pipeline.workspace, out));
      if (isWithin(real, cache) || isWithin(cache, real)) {
        keys.set(s.name, { error: `out ${out} ${isWithin(real, cache) ? 'lies in' : 'holds'} the cache ${cacheRoot}: writing it would damage the cache` });
      }
    }
  }
}

/**
 * The plan for computed keys. Every entry a stage would use is checked first (manifest checksum, outputs through the
 * stat cache, inputs it was computed from): a damaged one is stale, with the damage as its reason.
 */
async function planKeys(
  pipeline: Pipeline, keys: StageKeys, store: ArtifactStore, hasher: FileHasher, previous: PreviousState, tried: PreviousState, options: PlanOptions,
) {
  // Read before any manifest: a gc that starts after this changes it, and the run then plans again.
  const gcGeneration = store.gcGeneration();
  const manifests = new Map<string, Manifest>();
  const damage = new Map<string, string>();
  const upstream = new Map<string, Manifest | undefined>();
  for (const k of keys.values()) {
    if (!isKeyed(k) || manifests.has(k.key) || damage.has(k.key)) continue;
    const entry = await store.inspect(k.key, hasher, upstream);
    if (entry.state === 'intact') manifests.set(k.key, entry.manifest);
    else if (entry.state === 'damaged') damage.set(k.key, entry.problem);
  }
  const plan = planPipeline(pipeline, keys, (key) => manifests.has(key), previous, {
    ...options,
    lastTried: (name) => tried[name],
    damaged: (key) => damage.get(key),
    lastAttempt: (key) => {
      // A run computing the key now: this one would wait for it (and take its result).
      const holder = store.liveHolder(key);
      if (holder !== undefined) return `being computed now by ${describeOwner(holder)}`;
      const failure = lastFailure(store, key);
      if (failure) return describeFailure(failure);
      const partial = lastPartial(store, key);
      if (partial) return describePartial(partial);
      // A job a killed Slurm run left (queued, running or finished): the next run, local or not, collects it.
      const job = readRecord(new JobFiles(store.scratchDir(key)).record);
      return job && `submitted to Slurm${job.jobId ? ` as job ${job.jobId}` : ''} by an earlier run: a run collects its result`;
    },
  });
  return { plan, manifests, damage, gcGeneration };
}

/**
 * How a stale stage's last attempt at its key failed, when it did (not when it was interrupted, nor when the entry is
 * only damaged): `dag` colours it, `watch` does not try it again.
 */
export function failedLastRun(s: Session, p: PlannedStage): LastFailure | undefined {
  if (p.status !== 'stale' || p.key === undefined || s.damage.has(p.key)) return undefined;
  const failure = lastFailure(s.store, p.key);
  return failure?.interrupted === false ? failure : undefined;
}

/**
 * Executes a planned session and records state and the stat cache, also when interrupted. The keys the run uses are
 * registered first, so a gc of another pipeline keeps them; a gc that ran since planning makes it plan again.
 */
export async function runSession(s: Session, o: RunOptions): Promise<RunResult> {
  const use = await s.store.init().then(() => s.store.registerUse([...s.keys.values()].filter(isKeyed).map((k) => k.key))).catch((error: unknown) => {
    o.reporter.close();
    // Even a run of cached stages writes its registration first: a bare ENOSPC on a lock's temp file says nothing.
    if (errorCode(error) !== 'ENOSPC') throw error;
    throw new Error(`the cache's disk is full: no space left on the disk of ${s.cacheRoot} to register this run (${(error as Error).message}); nothing was run`);
  });
  try {
    refuseForcingWhatOthersUse(s, use);
  } catch (error) {
    await use.release();
    o.reporter.close();
    throw error;
  }
  const stageNames = s.wholePipelineStages ?? s.pipeline.stages.map((st) => st.name);
  const state = new StateRecorder(statePath(s.cacheRoot, s.pipeline.file), { ...s.previous }, stageNames, s.lastRunStages, { ...s.tried });
  try {
    await s.store.waitForGc({ signal: o.signal, onWait: (owner) => o.reporter.note(`waiting for \`pausepipe gc\` (${describeOwner(owner)})`) })
      // Stopped while waiting: the executor, seeing the stop, starts nothing and reports the run as interrupted.
      .catch((error: unknown) => {
        if (!o.signal?.aborted) throw error;
      });
    const current = s.store.gcGeneration() === s.gcGeneration ? s : { ...s, ...(await planKeys(s.pipeline, s.keys, s.store, s.hasher, s.previous, s.tried, s.planOptions)) };
    return await executePlan({
      pipeline: current.pipeline, kinds: current.kinds, store: current.store, keys: current.keys, plan: current.plan, hasher: current.hasher,
      jobs: o.jobs, gpus: o.gpus, hideGpus: o.hideGpus, gpuMemoryMiB: o.gpuMemoryMiB, stagesPerGpu: o.stagesPerGpu, hostMemoryMiB: o.hostMemoryMiB,
      keepGoing: o.keepGoing, backend: o.backend, overrides: o.overrides, signal: o.signal, stops: o.stops, joins: o.joins,
      reporter: o.reporter, executor: o.executor, state, manifests: current.manifests,
    });
  } finally {
    // The results are committed whatever happens here: failing to save a record (a full disk) is said, not thrown.
    const saved = await Promise.allSettled([state.flush(), s.hasher.save(), use.release()]);
    for (const r of saved) if (r.status === 'rejected') o.reporter.note(`pausepipe: could not save the run's records: ${(r.reason as Error).message}`);
    o.reporter.close();
  }
}

/**
 * `--force` replaces entries; another live run reading one would fail at its commit (its input changed under it),
 * losing what it computed meanwhile. So a forced run whose keys another run uses stops before anything runs.
 */
function refuseForcingWhatOthersUse(s: Session, use: HeldLock): void {
  const forced = new Map(s.plan.stages.filter((p) => p.forced && p.key !== undefined).map((p) => [p.key!, p.name]));
  if (forced.size === 0) return;
  const others = s.store.otherUses(forced.keys(), use);
  if (others.length === 0) return;
  const lines = others.map((o) => `  ${listSome(o.keys.map((k) => forced.get(k)!))}: used by ${o.owner ? describeOwner(o.owner) : 'another run'}`);
  throw new Error(`--force would replace entries that another run uses, and that run would then fail:\n${lines.join('\n')}\n` +
    'nothing was run; run again once that run ends');
}

/**
 * The session's stages as the progress reporter counts them: cached ones are done from the start, and a stage to run
 * again brings how long it took last time (the entry of its previous key, while the cache still holds it).
 */
export function runStagesOf(s: Session): RunStage[] {
  const status = new Map(s.plan.stages.map((p) => [p.name, p.status]));
  const committer = new Committer({ pipeline: s.pipeline, kinds: s.kinds, store: s.store, keys: s.keys, hasher: s.hasher });
  return s.pipeline.stages.map((st) => {
    const fresh = status.get(st.name) === 'fresh';
    const previous = s.previous[st.name]?.key;
    const lastSeconds = fresh || previous === undefined ? undefined : s.store.readManifest(previous)?.timings.seconds;
    const kind = s.kinds[st.kind];
    const work = kind?.work && (() => {
      let inputs;
      try {
        inputs = committer.inputsOf(st);
      } catch {
        // An input not in the cache yet: the kind may know its work without them.
      }
      return kind.work!(st.params, inputs);
    });
    const inputs = [...new Set(Object.values(st.inputs).flatMap((binding) => binding.stages))];
    return { name: st.name, group: st.declaredName, kind: st.kind, fresh, inputs, ...(lastSeconds === undefined ? {} : { lastSeconds }), ...(work ? { work } : {}) };
  });
}

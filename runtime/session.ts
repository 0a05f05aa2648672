// One pipeline file taken through load → keys → plan (→ execute): what `run`, `plan`, `show`, `watch` and `gc` share.
import { readFileSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import { FileHasher } from '../cache/file-hash.ts';
import { ArtifactStore, resolveCacheRoot, type Manifest } from '../cache/store.ts';
import { formatDiagnostics, type Diagnostic } from '../grammar/diagnostics.ts';
import type { StageKind } from '../stages/kind.ts';
import { executePlan, type RunOptions, type RunResult } from './execute.ts';
import { computeKeys, type StageKeys } from './keys.ts';
import { loadKinds } from './kinds.ts';
import { loadPipeline, type LoadOptions } from './load.ts';
import type { Pipeline } from './pipeline.ts';
import { planPipeline, type Plan, type PlanOptions, type PreviousState } from './plan.ts';
import type { RunStage } from './progress.ts';
import { readState, statePath, StateRecorder } from './state.ts';

export interface Session {
  pipeline: Pipeline;
  kinds: Record<string, StageKind>;
  cacheRoot: string;
  store: ArtifactStore;
  hasher: FileHasher;
  keys: StageKeys;
  plan: Plan;
  previous: PreviousState;
  /** Manifests read while planning, by key (a fresh stage's metrics need no second read). */
  manifests: Map<string, Manifest>;
}


/** Diagnostics with code frames; sources come from the pipeline, or from disk when loading failed before that. */
export function renderDiagnostics(diagnostics: Diagnostic[], sources: Record<string, string> = {}): string {
  const all = { ...sources };
  for (const d of diagnostics) {
    const file = d.span?.file;
    if (file === undefined || file in all) continue;
    try {
      all[file] = readFileSync(file, 'utf8');
    } catch {
      // A missing file (e.g. a bad include) is reported without a code frame.
    }
  }
  return formatDiagnostics(diagnostics, all);
}

/** Loads and checks a pipeline; prints its diagnostics. Undefined when it has errors (the caller exits 2). */
export async function loadChecked(
  file: string,
  printErr: (text: string) => void,
  options: LoadOptions = {},
): Promise<{ pipeline: Pipeline; kinds: Record<string, StageKind>; diagnostics: Diagnostic[] } | undefined> {
  const kinds = await loadKinds();
  const { pipeline, diagnostics } = await loadPipeline(path.resolve(file), kinds, options);
  if (diagnostics.length > 0) printErr(renderDiagnostics(diagnostics, pipeline?.sources));
  if (!pipeline || diagnostics.some((d) => d.severity === 'error')) return undefined;
  return { pipeline, kinds, diagnostics };
}

/** Keys and plan of a loaded pipeline against its cache and the last run's state. Reads, never writes. */
export async function planLoaded(pipeline: Pipeline, kinds: Record<string, StageKind>, cacheDir?: string, options: PlanOptions = {}): Promise<Session> {
  const cacheRoot = resolveCacheRoot(pipeline.workspace, cacheDir);
  const store = new ArtifactStore(cacheRoot);
  const hasher = new FileHasher(path.join(cacheRoot, 'stat-cache.json'));
  const keys = await computeKeys(pipeline, kinds, hasher);
  const previous = await readState(statePath(cacheRoot, pipeline.file));
  const manifests = new Map<string, Manifest>();
  const isCached = (key: string) => {
    const m = store.readManifest(key);
    if (m) manifests.set(key, m);
    return m !== undefined;
  };
  const plan = planPipeline(pipeline, keys, isCached, previous, options);
  return { pipeline, kinds, cacheRoot, store, hasher, keys, plan, previous, manifests };
}

/** Executes a planned session and records state and the stat cache, also when interrupted. */
export async function runSession(s: Session, o: RunOptions): Promise<RunResult> {
  await mkdir(s.cacheRoot, { recursive: true });
  const state = new StateRecorder(statePath(s.cacheRoot, s.pipeline.file), { ...s.previous });
  try {
    return await executePlan({
      pipeline: s.pipeline, kinds: s.kinds, store: s.store, keys: s.keys, plan: s.plan, hasher: s.hasher,
      jobs: o.jobs, gpus: o.gpus, keepGoing: o.keepGoing, backend: o.backend, signal: o.signal,
      reporter: o.reporter, overrides: o.overrides, state, manifests: s.manifests,
    });
  } finally {
    o.reporter.close();
    await Promise.all([state.flush(), s.hasher.save()]);
  }
}

/** The session's stages as the progress reporter counts them (cached ones are done from the start). */
export function runStagesOf(s: Session): RunStage[] {
  const status = new Map(s.plan.stages.map((p) => [p.name, p.status]));
  return s.pipeline.stages.map((st) => ({ name: st.name, group: st.declaredName, fresh: status.get(st.name) === 'fresh' }));
}

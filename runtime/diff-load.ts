// The two sides `pausepipe diff` compares: the pipeline now, and the same file at a git revision or before the last run.
import path from 'node:path';
import type { StageKind } from '../stages/kind.ts';
import { diffMetrics, type DiffResult, type DiffStage, type MetricsSide } from './diff.ts';
import { hasherAtRevision, readAtRevision, readIncludeAtRevision, renamedSince, resolveRevision } from './git-revision.ts';
import { computeKeys, isKeyed, type StageKeys } from './keys.ts';
import { loadPipelineText } from './load.ts';
import type { Override } from './overrides.ts';
import type { Pipeline } from './pipeline.ts';
import { planLoaded, renderDiagnostics, type Session } from './session.ts';
import { readBeforeLastRun, statePath } from './state.ts';

function metricsByKey(s: Session, keys: StageKeys) {
  return (name: string) => {
    const k = keys.get(name);
    return isKeyed(k) ? s.store.readManifest(k.key)?.metrics : undefined;
  };
}

/**
 * The pipeline file (and its includes) at the revision, with the command's `-p` overrides as now (the same command
 * line on both sides), keyed with the workspace files as they were there. A pipeline file renamed since is read under
 * the name it had there, so its includes resolve as they did.
 */
async function atRevision(s: Session, kinds: Record<string, StageKind>, name: string, overrides: readonly Override[]): Promise<MetricsSide | { invalid: string } | string> {
  const rev = resolveRevision(s.pipeline.file, name);
  if (typeof rev === 'string') return rev;
  const renamed = readAtRevision(rev, s.pipeline.file) === undefined ? renamedSince(rev, s.pipeline.file) : undefined;
  const file = renamed ?? s.pipeline.file;
  const text = readAtRevision(rev, file);
  if (text === undefined) {
    return `${path.relative(process.cwd(), s.pipeline.file)} does not exist at ${name}, nor a file git sees renamed to it since (git pairs a rename once the new name is added, while most of the text is the same)`;
  }
  const loaded = loadPipelineText(text, file, kinds, (p) => readIncludeAtRevision(rev, p), { overrides });
  if (!loaded.pipeline) {
    return { invalid: `the pipeline at ${name} does not load:\n${renderDiagnostics(loaded.diagnostics, loaded.sources)}` };
  }
  const pipeline: Pipeline = loaded.pipeline;
  const keys = await computeKeys(pipeline, kinds, hasherAtRevision(rev, s.hasher));
  return { label: name, stages: pipeline.stages, metricsOf: metricsByKey(s, keys), ...(renamed ? { file: path.relative(process.cwd(), renamed) || renamed } : {}) };
}

/**
 * The keys each stage name had before the last run that changed any, with what their manifests say about them; the
 * stages the pipeline had then without a key (never computed) are on that side too, not in the cache.
 */
async function beforeLastRun(s: Session): Promise<MetricsSide | string> {
  const { keys, stages: started } = await readBeforeLastRun(statePath(s.cacheRoot, s.pipeline.file));
  if (Object.keys(keys).length === 0) {
    return `no earlier run of ${path.relative(process.cwd(), s.pipeline.file)} is recorded in ${s.cacheRoot}: compare with a git revision (pausepipe diff FILE HEAD)`;
  }
  const manifests = new Map(Object.entries(keys).map(([name, key]) => [name, s.store.readManifest(key)]));
  const now = new Map(s.pipeline.stages.map((st) => [st.name, st]));
  // A stage removed since has no instance any more; its manifest still says its kind and variant. One removed that
  // never had a key is left out: nothing says what it was.
  const stages: DiffStage[] = (started ?? Object.keys(keys)).flatMap((name) => {
    const m = manifests.get(name);
    const known = now.get(name);
    if (known) return [known];
    return m ? [{ name, kind: m.kind, variant: m.variant }] : [];
  });
  return { label: 'before', where: 'before the last run', stages, metricsOf: (name) => manifests.get(name)?.metrics };
}

/**
 * The comparison of the loaded pipeline's cached results with those at git revision `rev` (or, without it, before the
 * last run); `everyMetric` compares all scalar metrics, not only each kind's headline ones. A string is a usage problem (no repository, no such revision, nothing recorded); `invalid` a pipeline
 * that does not load at that revision.
 */
export async function compareMetrics(
  now: { pipeline: Pipeline; kinds: Record<string, StageKind> },
  rev: string | undefined,
  opts: { cacheDir?: string; all: boolean; everyMetric: boolean; overrides?: readonly Override[] },
): Promise<{ diff: DiffResult } | { invalid: string } | string> {
  const s = await planLoaded(now.pipeline, now.kinds, opts.cacheDir);
  const before = rev === undefined ? await beforeLastRun(s) : await atRevision(s, now.kinds, rev, opts.overrides ?? []);
  if (typeof before === 'string' || 'invalid' in before) return before;
  const current: MetricsSide = { label: 'now', stages: s.pipeline.stages, metricsOf: metricsByKey(s, s.keys) };
  const headline = (kind: string) => (opts.everyMetric ? undefined : now.kinds[kind]?.tableMetrics);
  return { diff: diffMetrics(before, current, { headline, includeShared: opts.all, all: opts.all }) };
}

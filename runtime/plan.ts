// The Planned phase, a pure function: which stages are fresh, which are stale and why, in words people act on.
import { formatValue, LISTED_NAMES } from './format.ts';
import type { KeyIngredients } from './hash.ts';
import type { JsonValue } from './json.ts';
import { isKeyed, type StageKeys } from './keys.ts';
import type { Pipeline } from './pipeline.ts';

/** What the last successful run recorded for a stage name. */
export interface PreviousStage {
  key: string;
  ingredients: KeyIngredients;
}
/** Stage name → its last recorded key and ingredients (runtime/state.ts keeps it on disk). */
export type PreviousState = Record<string, PreviousStage>;

/** fresh: the key is in the cache. stale: it must run. error: it has no key (a missing file) and cannot run. */
export type StageStatus = 'fresh' | 'stale' | 'error';

export interface PlannedStage {
  name: string;
  status: StageStatus;
  key?: string;
  /**
   * One line per cause for stale and error ones. Empty for fresh stages, unless the stage's key changed since the
   * last run to one already in the cache: then what changed.
   */
  reasons: string[];
  /** Re-run although its key may be cached (--force): the run replaces the entry it finds. */
  forced?: boolean;
}

export interface Plan {
  stages: PlannedStage[];
  counts: Record<StageStatus, number>;
}

function isObject(v: JsonValue | undefined): v is { [key: string]: JsonValue } {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

function sameJson(a: JsonValue | undefined, b: JsonValue | undefined): boolean {
  if (a === b) return true;
  if (Array.isArray(a) && Array.isArray(b)) return a.length === b.length && a.every((x, i) => sameJson(x, b[i]));
  if (isObject(a) && isObject(b)) {
    const ka = Object.keys(a);
    return ka.length === Object.keys(b).length && ka.every((k) => k in b && sameJson(a[k], b[k]));
  }
  return false;
}

/** Longest side of a change shown in a reason; long values are cut to a window around the first difference. */
const CHANGE_WIDTH = 60;
/** Characters kept before the first difference, so the reader sees where in the value it is. */
const CHANGE_CONTEXT = 20;

/** `5e-5 → 1e-4`; two long values that share a prefix show only the part where they start to differ. */
export function formatChange(a: JsonValue, b: JsonValue): string {
  const ta = formatValue(a, Infinity);
  const tb = formatValue(b, Infinity);
  if (ta.length <= CHANGE_WIDTH && tb.length <= CHANGE_WIDTH) return `${ta} → ${tb}`;
  let d = 0;
  while (d < ta.length && ta[d] === tb[d]) d++;
  const start = Math.max(0, d - CHANGE_CONTEXT);
  const cut = (t: string) => `${start > 0 ? '…' : ''}${t.slice(start, start + CHANGE_WIDTH)}${t.length > start + CHANGE_WIDTH ? '…' : ''}`;
  return `${cut(ta)} → ${cut(tb)}`;
}

/** One changed parameter: its dotted path (`lora.r`) and what happened to it (`added`, `16 → 8`). */
export interface ParamChange {
  path: string;
  change: string;
}

/** The parameters that differ; objects are compared key by key, anything else as a whole. */
export function diffParams(before: Record<string, JsonValue>, after: Record<string, JsonValue>, prefix = ''): ParamChange[] {
  const changes: ParamChange[] = [];
  const names = [...new Set([...Object.keys(before), ...Object.keys(after)])].sort();
  for (const k of names) {
    const a = before[k];
    const b = after[k];
    const path = `${prefix}${k}`;
    if (!(k in before)) changes.push({ path, change: 'added' });
    else if (!(k in after)) changes.push({ path, change: 'removed' });
    else if (isObject(a) && isObject(b)) changes.push(...diffParams(a, b, `${path}.`));
    else if (!sameJson(a, b)) changes.push({ path, change: formatChange(a!, b!) });
  }
  return changes;
}

/** `param lr: 5e-5 → 1e-4`, `param train.lora: added`. */
export function paramChanges(before: Record<string, JsonValue>, after: Record<string, JsonValue>): string[] {
  return diffParams(before, after).map((c) => `param ${c.path}: ${c.change}`);
}

/** What a run adds to planning beyond the file and the cache. */
export interface PlanOptions {
  /** Stages re-run although cached (--force); everything downstream of them re-runs too. */
  forced?: Set<string>;
  /** Text appended to a changed parameter's reason, e.g. the command-line override that set it. */
  paramNote?(stage: string, paramPath: string): string | undefined;
  /** Why the cache's entry of a key cannot be used (damaged), when it is there but not cached. */
  damaged?(key: string): string | undefined;
  /**
   * Where an attempt at a key that is not cached stands, when one left a trace: a run computing it now, `failed in its
   * last run: …`, `interrupted in its last run`, or a Slurm job submitted for it.
   */
  lastAttempt?(key: string): string | undefined;
  /**
   * What the last run tried under a stage's name when it ended without a full result (failed, interrupted, partial):
   * newer than `previous`, so what changed is said against it.
   */
  lastTried?(name: string): PreviousStage | undefined;
}

/** What differs from the ingredients the last run recorded under the stage's name; empty when nothing does. */
function changes(
  stage: Pipeline['stages'][number],
  now: KeyIngredients,
  was: KeyIngredients,
  isStale: (name: string) => boolean,
  paramNote: PlanOptions['paramNote'],
): string[] {
  const reasons: string[] = [];
  if (was.kind !== now.kind) reasons.push(`kind ${was.kind} → ${now.kind}`);
  else if (was.kindVersion !== now.kindVersion) reasons.push(`kind ${now.kind} version ${was.kindVersion} → ${now.kindVersion}`);
  for (const c of diffParams(was.params, now.params)) {
    const note = paramNote?.(stage.name, c.path);
    reasons.push(`param ${c.path}: ${c.change}${note ? ` ${note}` : ''}`);
  }
  for (const name of [...new Set([...Object.keys(was.inputs), ...Object.keys(now.inputs)])].sort()) {
    if (!(name in was.inputs)) reasons.push(`input ${name} added`);
    else if (!(name in now.inputs)) reasons.push(`input ${name} removed`);
    else if (!sameJson(was.inputs[name]!, now.inputs[name]!)) {
      const staleUps = (stage.inputs[name]?.stages ?? []).filter(isStale);
      if (staleUps.length > 0) reasons.push(...upstreamReasons(staleUps, 'stale', 'stale'));
      else reasons.push(`input ${name} changed`);
    }
  }
  for (const file of [...new Set([...Object.keys(was.files), ...Object.keys(now.files)])].sort()) {
    // The workspace itself (`deps: ["."]`) is recorded as the empty path.
    const shown = file === '' ? '.' : file;
    if (!(file in was.files)) reasons.push(`file ${shown} added`);
    else if (!(file in now.files)) reasons.push(`file ${shown} removed`);
    else if (was.files[file] !== now.files[file]) reasons.push(`file ${shown} changed`);
  }
  // A plugin kind's own source files (built-in kinds have none: their version stands for their code).
  const wasCode = was.code ?? {};
  const nowCode = now.code ?? {};
  for (const file of [...new Set([...Object.keys(wasCode), ...Object.keys(nowCode)])].sort()) {
    if (!(file in wasCode)) reasons.push(`code of kind ${now.kind}: ${file} added`);
    else if (!(file in nowCode)) reasons.push(`code of kind ${now.kind}: ${file} removed`);
    else if (wasCode[file] !== nowCode[file]) reasons.push(`code of kind ${now.kind}: ${file} changed`);
  }
  return reasons;
}

function staleReasons(
  stage: Pipeline['stages'][number],
  now: KeyIngredients,
  before: PreviousStage | undefined,
  isStale: (name: string) => boolean,
  paramNote: PlanOptions['paramNote'],
): string[] {
  if (!before) return ['new stage'];
  const reasons = changes(stage, now, before.ingredients, isStale, paramNote);
  return reasons.length > 0 ? reasons : ['not in cache'];
}

/** A stage tried before is no "new stage": its changes since the last success, then where the attempt stands. */
function withAttempt(reasons: string[], attempt: string | undefined): string[] {
  if (attempt === undefined) return reasons;
  return [...reasons.filter((r) => r !== 'new stage' && r !== 'not in cache'), attempt];
}

/** Why --force re-runs a cached stage: named itself, or downstream of a stage that re-runs. */
function forcedReasons(stage: Pipeline['stages'][number], named: Set<string>, forced: Set<string>): string[] {
  if (named.has(stage.name)) return ['forced (--force)'];
  const ups = [...new Set(Object.values(stage.inputs).flatMap((b) => b.stages).filter((u) => forced.has(u)))];
  return upstreamReasons(ups, 're-runs (--force)', 're-run (--force)');
}

/**
 * `upstream eval[a] stale`, one reason per upstream stage; past `LISTED_NAMES + 1` of them (a report over a whole
 * matrix), the first ones and then how many more: 240 reasons made one line of 12,000 characters.
 */
function upstreamReasons(ups: string[], what: string, whatMany: string): string[] {
  if (ups.length <= LISTED_NAMES + 1) return ups.map((u) => `upstream ${u} ${what}`);
  return [...ups.slice(0, LISTED_NAMES).map((u) => `upstream ${u} ${what}`), `${ups.length - LISTED_NAMES} more upstream stages ${whatMany}`];
}

/**
 * Plan a run. A stage whose key is cached is fresh whatever its name was before (a renamed stage is a hit);
 * otherwise the reasons compare its ingredients with what the last run recorded under its name.
 */
export function planPipeline(
  pipeline: Pipeline,
  keys: StageKeys,
  isCached: (key: string) => boolean,
  previous: PreviousState,
  options: PlanOptions = {},
): Plan {
  const damaged = options.damaged ?? (() => undefined);
  const named = options.forced ?? new Set<string>();
  // Topological order: a stage's inputs are decided before it.
  const forced = new Set<string>();
  for (const s of pipeline.stages) {
    if (named.has(s.name) || Object.values(s.inputs).some((b) => b.stages.some((u) => forced.has(u)))) forced.add(s.name);
  }
  const status = new Map<string, StageStatus>();
  const stages: PlannedStage[] = [];
  const counts: Record<StageStatus, number> = { fresh: 0, stale: 0, error: 0 };
  // Stages with identical ingredients share one key: the first stale one computes it, the others reuse it.
  const firstWithKey = new Map<string, string>();
  const isStale = (name: string) => status.get(name) === 'stale';
  for (const s of pipeline.stages) {
    const k = keys.get(s.name);
    let planned: PlannedStage;
    if (!isKeyed(k)) {
      planned = { name: s.name, status: 'error', reasons: [k?.error ?? 'no key'] };
    } else if (forced.has(s.name)) {
      const twin = firstWithKey.get(k.key);
      if (twin === undefined) firstWithKey.set(k.key, s.name);
      const reasons = twin !== undefined ? [`same key as ${twin}: computed once`] : forcedReasons(s, named, forced);
      planned = { name: s.name, status: 'stale', key: k.key, reasons, forced: true };
    } else if (isCached(k.key)) {
      // A change that leads to a key another variant (or an earlier run) computed is still worth saying.
      const before = options.lastTried?.(s.name) ?? previous[s.name];
      const reasons = before && before.key !== k.key ? changes(s, k.ingredients, before.ingredients, isStale, options.paramNote) : [];
      planned = { name: s.name, status: 'fresh', key: k.key, reasons };
    } else {
      const twin = firstWithKey.get(k.key);
      const damage = damaged(k.key);
      const attempt = options.lastAttempt?.(k.key);
      // Changed since the last attempt without a result, when it tried another key; else since the last result.
      const tried = options.lastTried?.(s.name);
      const since = tried !== undefined && tried.key !== k.key ? tried : previous[s.name];
      const reasons = twin !== undefined
        ? [`same key as ${twin}: computed once`]
        : damage !== undefined ? [`cache entry damaged (${damage}): computed again`]
          : withAttempt(staleReasons(s, k.ingredients, since, isStale, options.paramNote), attempt);
      if (twin === undefined) firstWithKey.set(k.key, s.name);
      planned = { name: s.name, status: 'stale', key: k.key, reasons };
    }
    status.set(s.name, planned.status);
    counts[planned.status]++;
    stages.push(planned);
  }
  return { stages, counts };
}

// The Planned phase, a pure function: which stages are fresh, which are stale and why, in words people act on.
import { formatValue } from './format.ts';
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
  /** Empty for fresh stages; one line per cause for stale and error ones. */
  reasons: string[];
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

/** `param lr: 5e-5 → 1e-4`, `param train.lora: added`; objects are compared key by key, anything else as a whole. */
export function paramChanges(before: Record<string, JsonValue>, after: Record<string, JsonValue>, prefix = ''): string[] {
  const lines: string[] = [];
  const names = [...new Set([...Object.keys(before), ...Object.keys(after)])].sort();
  for (const k of names) {
    const a = before[k];
    const b = after[k];
    const label = `${prefix}${k}`;
    if (!(k in before)) lines.push(`param ${label}: added`);
    else if (!(k in after)) lines.push(`param ${label}: removed`);
    else if (isObject(a) && isObject(b)) lines.push(...paramChanges(a, b, `${label}.`));
    else if (!sameJson(a, b)) lines.push(`param ${label}: ${formatChange(a!, b!)}`);
  }
  return lines;
}

function staleReasons(
  stage: Pipeline['stages'][number],
  now: KeyIngredients,
  before: PreviousStage | undefined,
  isStale: (name: string) => boolean,
): string[] {
  if (!before) return ['new stage'];
  const was = before.ingredients;
  const reasons: string[] = [];
  if (was.kind !== now.kind) reasons.push(`kind ${was.kind} → ${now.kind}`);
  else if (was.kindVersion !== now.kindVersion) reasons.push(`kind ${now.kind} version ${was.kindVersion} → ${now.kindVersion}`);
  reasons.push(...paramChanges(was.params, now.params));
  for (const name of [...new Set([...Object.keys(was.inputs), ...Object.keys(now.inputs)])].sort()) {
    if (!(name in was.inputs)) reasons.push(`input ${name} added`);
    else if (!(name in now.inputs)) reasons.push(`input ${name} removed`);
    else if (!sameJson(was.inputs[name]!, now.inputs[name]!)) {
      const staleUps = (stage.inputs[name]?.stages ?? []).filter(isStale);
      if (staleUps.length > 0) reasons.push(...staleUps.map((up) => `upstream ${up} stale`));
      else reasons.push(`input ${name} changed`);
    }
  }
  for (const file of [...new Set([...Object.keys(was.files), ...Object.keys(now.files)])].sort()) {
    if (!(file in was.files)) reasons.push(`file ${file} added`);
    else if (!(file in now.files)) reasons.push(`file ${file} removed`);
    else if (was.files[file] !== now.files[file]) reasons.push(`file ${file} changed`);
  }
  return reasons.length > 0 ? reasons : ['not in cache'];
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
  /** Why the cache's entry of a key cannot be used (damaged), when it is there but not cached. */
  damaged: (key: string) => string | undefined = () => undefined,
): Plan {
  const status = new Map<string, StageStatus>();
  const stages: PlannedStage[] = [];
  const counts: Record<StageStatus, number> = { fresh: 0, stale: 0, error: 0 };
  // Stages with identical ingredients share one key: the first stale one computes it, the others reuse it.
  const firstWithKey = new Map<string, string>();
  for (const s of pipeline.stages) {
    const k = keys.get(s.name);
    let planned: PlannedStage;
    if (!isKeyed(k)) {
      planned = { name: s.name, status: 'error', reasons: [k?.error ?? 'no key'] };
    } else if (isCached(k.key)) {
      planned = { name: s.name, status: 'fresh', key: k.key, reasons: [] };
    } else {
      const twin = firstWithKey.get(k.key);
      const damage = damaged(k.key);
      const reasons = twin !== undefined
        ? [`same key as ${twin}: computed once`]
        : damage !== undefined ? [`cache entry damaged (${damage}): computed again`]
          : staleReasons(s, k.ingredients, previous[s.name], (n) => status.get(n) === 'stale');
      if (twin === undefined) firstWithKey.set(k.key, s.name);
      planned = { name: s.name, status: 'stale', key: k.key, reasons };
    }
    status.set(s.name, planned.status);
    counts[planned.status]++;
    stages.push(planned);
  }
  return { stages, counts };
}

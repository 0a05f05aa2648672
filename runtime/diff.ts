// `pausepipe diff`: every variant's metrics now against the same pipeline at a git revision or before the last run, with deltas.
import { formatNumber } from './format.ts';
import type { JsonValue } from './json.ts';
import type { StageInstance } from './pipeline.ts';
import { renderGrid, type Scalar } from './show.ts';

/** What the comparison needs of a stage: its generated name, kind (for its headline metrics) and loop variables. */
export type DiffStage = Pick<StageInstance, 'name' | 'kind' | 'variant'>;

/** One side of the comparison: the stages as they stand there and the metrics of the computed ones. */
export interface MetricsSide {
  /** Column heading: `now`, a git revision such as `HEAD`, or `before`. */
  label: string;
  stages: DiffStage[];
  /** undefined for a stage whose key is not in the cache (or has none). */
  metricsOf(name: string): Record<string, JsonValue> | undefined;
}

export interface DiffRow {
  /** Generated stage name, e.g. `eval[pause=head,lora=true]`. */
  name: string;
  metric: string;
  /** undefined where that side has no value (the stage is not computed there, or it lacks the metric). */
  before?: Scalar;
  now?: Scalar;
  /** now − before when both are numbers, else null. */
  delta: number | null;
}

export interface DiffResult {
  before: string;
  now: string;
  rows: DiffRow[];
  /** Stages compared: computed on both sides (and inside loops, unless --all). */
  compared: number;
  /** Stages of each side whose results are not in the cache. */
  notComputed: { before: string[]; now: string[] };
}

export interface DiffOptions {
  /** The metrics a kind shows people (its tableMetrics); undefined: every scalar metric. */
  headline?(kind: string): string[] | undefined;
  /** Also stages outside `for each` loops. */
  includeShared: boolean;
  /** Also metrics that did not change. */
  all: boolean;
}

function isScalar(v: JsonValue | undefined): v is Scalar {
  return v === null || (v !== undefined && typeof v !== 'object');
}

/** The difference as people read it: the float noise of a subtraction (0.05000000000000004) rounded away. */
function delta(a: Scalar | undefined, b: Scalar | undefined): number | null {
  return typeof a === 'number' && typeof b === 'number' ? Number((b - a).toPrecision(6)) : null;
}

/** Rows for every stage of either side, in the current pipeline's order, then the stages only the other side has. */
export function diffMetrics(before: MetricsSide, now: MetricsSide, opts: DiffOptions): DiffResult {
  const nowStages = now.stages;
  const beforeStages = new Map(before.stages.map((s) => [s.name, s]));
  const names = [...nowStages, ...before.stages.filter((s) => !nowStages.some((n) => n.name === s.name))];
  const rows: DiffRow[] = [];
  const notComputed = { before: [] as string[], now: [] as string[] };
  let compared = 0;
  for (const s of names) {
    if (!opts.includeShared && Object.keys(s.variant).length === 0) continue;
    const inNow = nowStages.includes(s);
    const a = beforeStages.has(s.name) ? before.metricsOf(s.name) : undefined;
    const b = inNow ? now.metricsOf(s.name) : undefined;
    if (beforeStages.has(s.name) && a === undefined) notComputed.before.push(s.name);
    if (inNow && b === undefined) notComputed.now.push(s.name);
    // A stage not computed on a side it exists on is listed apart; rows are for values, and for variants added or removed.
    if ((beforeStages.has(s.name) && a === undefined) || (inNow && b === undefined)) continue;
    if (a !== undefined && b !== undefined) compared++;
    const chosen = opts.headline?.(s.kind);
    const metrics = chosen ?? [...new Set([...Object.keys(a ?? {}), ...Object.keys(b ?? {})])];
    for (const metric of metrics) {
      const x = a?.[metric];
      const y = b?.[metric];
      if (!isScalar(x) && !isScalar(y)) continue;
      const before = isScalar(x) ? x : undefined;
      const nowValue = isScalar(y) ? y : undefined;
      if (!opts.all && before === nowValue) continue;
      rows.push({ name: s.name, metric, ...(before === undefined ? {} : { before }), ...(nowValue === undefined ? {} : { now: nowValue }), delta: delta(before, nowValue) });
    }
  }
  return { before: before.label, now: now.label, rows, compared, notComputed };
}

function shown(v: Scalar | undefined): string {
  if (v === undefined) return '-';
  if (typeof v === 'number') return formatNumber(Number(v.toPrecision(6)));
  return typeof v === 'string' ? v : JSON.stringify(v);
}

function shownDelta(d: number | null): string {
  if (d === null) return '';
  return d > 0 ? `+${formatNumber(d)}` : formatNumber(d);
}

/** Text (aligned, within `width` columns when given) or Markdown; JSON is the DiffResult itself. */
export function renderDiff(r: DiffResult, format: 'text' | 'md' | 'json', width?: number): string {
  if (format === 'json') return `${JSON.stringify(r, null, 2)}\n`;
  const lines: string[] = [];
  if (r.rows.length > 0) {
    const grid = [['stage', 'metric', r.before, r.now, 'change'], ...r.rows.map((x) => [x.name, x.metric, shown(x.before), shown(x.now), shownDelta(x.delta)])];
    lines.push(renderGrid(grid, format, { width, keyColumns: 2 }).trimEnd());
  }
  const changed = new Set(r.rows.filter((x) => x.before !== x.now).map((x) => x.name)).size;
  lines.push(`${changed} of ${r.compared} stage${r.compared === 1 ? '' : 's'} changed between ${r.before} and ${r.now}`);
  for (const side of ['before', 'now'] as const) {
    const missing = r.notComputed[side];
    if (missing.length > 0) lines.push(`not in the cache ${side === 'before' ? `at ${r.before}` : 'now'}: ${missing.length > 3 ? `${missing.slice(0, 3).join(', ')} and ${missing.length - 3} more` : missing.join(', ')}`);
  }
  return `${lines.join(format === 'md' ? '\n\n' : '\n')}\n`;
}

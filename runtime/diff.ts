// `pausepipe diff`: every variant's metrics now against the same pipeline at a git revision or before the last run, with deltas.
import { formatMetric, listSome } from './format.ts';
import type { JsonValue } from './json.ts';
import type { StageInstance } from './pipeline.ts';
import { renderGrid, type Scalar } from './show.ts';

/** What the comparison needs of a stage: its generated name, kind (for its headline metrics) and loop variables. */
export type DiffStage = Pick<StageInstance, 'name' | 'kind' | 'variant'>;

/** One side of the comparison: the stages as they stand there and the metrics of the computed ones. */
export interface MetricsSide {
  /** Column heading: `now`, a git revision such as `HEAD`, or `before`. */
  label: string;
  /** How sentences name the side when not `at LABEL`: `before the last run`. */
  where?: string;
  /** The pipeline file there, when it had another name (renamed since). */
  file?: string;
  stages: DiffStage[];
  /** undefined for a stage whose key is not in the cache (or has none). */
  metricsOf(name: string): Record<string, JsonValue> | undefined;
}

export interface DiffRow {
  /** Generated stage name, e.g. `eval[pause=head,lora=true]`. */
  name: string;
  metric: string;
  /** undefined where that side's result lacks the metric. */
  before?: Scalar;
  now?: Scalar;
  /** now − before when both are numbers, else null. */
  delta: number | null;
}

export interface DiffResult {
  before: string;
  now: string;
  /** How sentences name the before side when not by its heading: `before the last run`. */
  beforeWhere?: string;
  /** The pipeline file on the before side, when it had another name there (renamed since). */
  beforeFile?: string;
  rows: DiffRow[];
  /** Stages compared: on both sides and computed there (and inside loops, unless --all). */
  compared: number;
  /** Stages only that side's pipeline has: variants removed (before) or added (now) since. */
  onlyIn: { before: string[]; now: string[] };
  /** Stages of both sides whose results are not in the cache on that side. */
  notComputed: { before: string[]; now: string[] };
  /** Stages outside `for each` loops left out (none with --all): what a pipeline without loops is made of. */
  outsideLoops: number;
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

/** The difference as people read it: the float noise of a subtraction (0.05000000000000004) rounded away; counts exact. */
function delta(a: Scalar | undefined, b: Scalar | undefined): number | null {
  if (typeof a !== 'number' || typeof b !== 'number') return null;
  return Number.isSafeInteger(a) && Number.isSafeInteger(b) ? b - a : Number((b - a).toPrecision(6));
}

/**
 * Rows for the stages both sides have and computed, in the current pipeline's order; a stage only one side has (a
 * variant added or removed) or not computed on a side is listed apart, never as a change.
 */
export function diffMetrics(before: MetricsSide, now: MetricsSide, opts: DiffOptions): DiffResult {
  const inScope = (s: DiffStage) => opts.includeShared || Object.keys(s.variant).length > 0;
  const nowNames = new Set(now.stages.map((s) => s.name));
  const beforeNames = new Set(before.stages.map((s) => s.name));
  const onlyIn = {
    before: before.stages.filter((s) => inScope(s) && !nowNames.has(s.name)).map((s) => s.name),
    now: now.stages.filter((s) => inScope(s) && !beforeNames.has(s.name)).map((s) => s.name),
  };
  const rows: DiffRow[] = [];
  const notComputed = { before: [] as string[], now: [] as string[] };
  let compared = 0;
  for (const s of now.stages.filter((x) => inScope(x) && beforeNames.has(x.name))) {
    const a = before.metricsOf(s.name);
    const b = now.metricsOf(s.name);
    if (a === undefined) notComputed.before.push(s.name);
    if (b === undefined) notComputed.now.push(s.name);
    if (a === undefined || b === undefined) continue;
    compared++;
    const chosen = opts.headline?.(s.kind);
    const metrics = chosen ?? [...new Set([...Object.keys(a), ...Object.keys(b)])];
    for (const metric of metrics) {
      const x = a[metric];
      const y = b[metric];
      if (!isScalar(x) && !isScalar(y)) continue;
      const before = isScalar(x) ? x : undefined;
      const nowValue = isScalar(y) ? y : undefined;
      if (!opts.all && before === nowValue) continue;
      rows.push({ name: s.name, metric, ...(before === undefined ? {} : { before }), ...(nowValue === undefined ? {} : { now: nowValue }), delta: delta(before, nowValue) });
    }
  }
  const outsideLoops = new Set([...before.stages, ...now.stages].filter((s) => !inScope(s)).map((s) => s.name)).size;
  return { before: before.label, now: now.label, ...(before.where === undefined ? {} : { beforeWhere: before.where }),
    ...(before.file === undefined ? {} : { beforeFile: before.file }), rows, compared, onlyIn, notComputed, outsideLoops };
}

function shown(v: Scalar | undefined): string {
  if (v === undefined) return '-';
  if (typeof v === 'number') return formatMetric(v);
  return typeof v === 'string' ? v : JSON.stringify(v);
}

function shownDelta(d: number | null): string {
  if (d === null) return '';
  return d > 0 ? `+${formatMetric(d)}` : formatMetric(d);
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
  const between = `between ${r.beforeWhere ?? r.before} and now`;
  if (r.compared > 0) lines.push(`${changed} of ${r.compared} stage${r.compared === 1 ? '' : 's'} changed ${between}`);
  else if (r.outsideLoops > 0 && [r.onlyIn, r.notComputed].every((x) => x.before.length + x.now.length === 0)) {
    lines.push(`nothing to compare ${between}: no stage is in a \`for each\` loop; --all compares the ${r.outsideLoops} other stage${r.outsideLoops === 1 ? '' : 's'}`);
  } else lines.push(`nothing to compare ${between}: no stage has results on both sides`);
  if (r.beforeFile !== undefined) lines.push(`the pipeline ${r.beforeWhere ?? `at ${r.before}`} is ${r.beforeFile}, renamed since`);
  for (const side of ['before', 'now'] as const) {
    const where = side === 'now' ? 'now' : r.beforeWhere ?? `at ${r.before}`;
    if (r.onlyIn[side].length > 0) lines.push(`only ${where}: ${listSome(r.onlyIn[side])}`);
    if (r.notComputed[side].length > 0) lines.push(`not in the cache ${where}: ${listSome(r.notComputed[side])}`);
  }
  return `${lines.join(format === 'md' ? '\n\n' : '\n')}\n`;
}

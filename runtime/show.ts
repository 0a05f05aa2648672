// The results tables of `show`: one row per computed variant, loop variables then scalar metrics, one table per declared stage.
import { formatMetric, markdownText } from './format.ts';
import type { JsonValue } from './json.ts';
import type { Pipeline } from './pipeline.ts';

export type Scalar = string | number | boolean | null;

export interface ResultRow {
  /** Declared stage name (the loop variables say which variant). */
  stage: string;
  /** Generated name. */
  name: string;
  variant: Record<string, JsonValue>;
  metrics: Record<string, Scalar>;
  /** A variant a partial result went without: how it ended (`failed: …`), shown instead of its metrics. */
  missing?: string;
}

export interface ResultTable {
  variables: string[];
  metrics: string[];
  rows: ResultRow[];
}

export type TableFormat = 'text' | 'csv' | 'md' | 'json';

function isScalar(v: JsonValue): v is Scalar {
  return v === null || typeof v !== 'object';
}

function union(into: string[], names: Iterable<string>): void {
  for (const n of names) if (!into.includes(n)) into.push(n);
}

/**
 * Rows in pipeline order for the stages that have scalar metrics; `metricsOf` returns undefined for a stage
 * that is not computed. `stage` keeps the instances of one declared stage (or one generated name); without it
 * only the variants of `for each` stages count, unless `includeShared` asks for the stages outside loops too.
 * `headline` narrows a kind's columns to the metrics it names (the kind's `tableMetrics`), in that order.
 * `missing` gives, for a stage without metrics that a partial result went without, how it ended: it gets a row saying so.
 */
export function buildResultTable(
  pipeline: Pipeline,
  metricsOf: (name: string) => Record<string, JsonValue> | undefined,
  stage?: string,
  includeShared = false,
  headline?: (kind: string) => string[] | undefined,
  missing?: (name: string) => string | undefined,
): { table: ResultTable; notComputed: string[] } {
  const table: ResultTable = { variables: [], metrics: [], rows: [] };
  const notComputed: string[] = [];
  for (const s of pipeline.stages) {
    if (stage !== undefined && s.declaredName !== stage && s.name !== stage) continue;
    if (stage === undefined && !includeShared && Object.keys(s.variant).length === 0) continue;
    const all = metricsOf(s.name);
    const ended = all === undefined ? missing?.(s.name) : undefined;
    if (ended !== undefined) {
      union(table.variables, Object.keys(s.variant));
      table.rows.push({ stage: s.declaredName, name: s.name, variant: s.variant, metrics: {}, missing: ended });
      continue;
    }
    if (all === undefined) {
      notComputed.push(s.name);
      continue;
    }
    const chosen = headline?.(s.kind);
    const entries = chosen ? chosen.filter((m) => m in all).map((m) => [m, all[m]!] as [string, JsonValue]) : Object.entries(all);
    const metrics = Object.fromEntries(entries.filter((e): e is [string, Scalar] => isScalar(e[1])));
    if (Object.keys(metrics).length === 0) continue;
    union(table.variables, Object.keys(s.variant));
    union(table.metrics, Object.keys(metrics));
    table.rows.push({ stage: s.declaredName, name: s.name, variant: s.variant, metrics });
  }
  return { table, notComputed };
}

/** Six significant digits (counts in full) for people; CSV and JSON keep full precision. */
function shown(v: JsonValue | undefined, exact: boolean): string {
  if (v === undefined) return exact ? '' : '-';
  if (typeof v === 'number') return exact ? String(v) : formatMetric(v);
  if (typeof v === 'string') return v;
  return JSON.stringify(v);
}

/**
 * A metric named like a loop variable (or `stage`) is headed `metric.NAME`, so no two columns share a name (pandas
 * would read them as `n` and `n.1`); every other header stays the metric's own name.
 */
function metricHeaders(t: ResultTable): string[] {
  const taken = new Set(['stage', ...t.variables]);
  return t.metrics.map((m) => (taken.has(m) ? `metric.${m}` : m));
}

function cells(t: ResultTable, exact: boolean): string[][] {
  const header = ['stage', ...t.variables, ...metricHeaders(t)];
  const body = t.rows.map((r) => [
    r.stage,
    ...t.variables.map((v) => shown(r.variant[v], exact)),
    // A missing variant says how it ended where its first metric would be.
    ...t.metrics.map((m, i) => (r.missing !== undefined && i === 0 ? r.missing : shown(r.metrics[m], exact))),
  ]);
  return [header, ...body];
}

function csvField(text: string): string {
  return /[",\n\r]/.test(text) ? `"${text.replace(/"/g, '""')}"` : text;
}

/** The rows of one declared stage with only the columns they use, so each stage reads as its own table. */
function byStage(t: ResultTable): ResultTable[] {
  const groups = new Map<string, ResultRow[]>();
  for (const r of t.rows) groups.set(r.stage, [...(groups.get(r.stage) ?? []), r]);
  return [...groups.values()].map((rows) => {
    const group: ResultTable = { variables: [], metrics: [], rows };
    for (const r of rows) {
      union(group.variables, Object.keys(r.variant));
      union(group.metrics, Object.keys(r.metrics));
    }
    // Only missing rows: one column to say how they ended.
    if (group.metrics.length === 0) group.metrics.push('result');
    return group;
  });
}

/**
 * JSON and CSV keep one flat table for scripts; text and Markdown print one table per declared stage. `width` (a
 * terminal's columns) makes a wide text table continue below, its stage and variable columns repeated.
 */
export function renderTable(t: ResultTable, format: TableFormat, width?: number): string {
  if (format === 'json') return `${JSON.stringify(t.rows, null, 2)}\n`;
  if (format === 'csv') return cells(t, true).map((row) => row.map(csvField).join(',')).join('\n') + '\n';
  return byStage(t).map((group) => renderGrid(cells(group, false), format, { width, keyColumns: 1 + group.variables.length })).join('\n');
}

const GAP = '  ';

export interface GridOptions {
  /** Most characters per line (text only); a wider table is cut into column blocks, never through a cell. */
  width?: number;
  /** Leading columns that say which row it is: repeated in every block. */
  keyColumns?: number;
}

/** First row is the header. Markdown as is; text aligned, in blocks of columns that fit `width`. */
export function renderGrid(grid: string[][], format: 'text' | 'md', opts: GridOptions = {}): string {
  if (format === 'md') {
    const line = (row: string[]) => `| ${row.map(markdownText).join(' | ')} |`;
    return [line(grid[0]!), line(grid[0]!.map(() => '---')), ...grid.slice(1).map(line)].join('\n') + '\n';
  }
  const widths = grid[0]!.map((_, i) => Math.max(...grid.map((row) => row[i]!.length)));
  const keys = Math.min(opts.keyColumns ?? 0, widths.length);
  const span = (cols: number[]) => cols.reduce((n, c) => n + widths[c]!, 0) + GAP.length * Math.max(0, cols.length - 1);
  const rest = widths.map((_, i) => i).slice(keys);
  const blocks: number[][] = [];
  let current: number[] = [];
  for (const c of rest) {
    const keyed = [...widths.keys()].slice(0, keys);
    if (current.length > 0 && opts.width !== undefined && span([...keyed, ...current, c]) > opts.width) {
      blocks.push(current);
      current = [];
    }
    current.push(c);
  }
  blocks.push(current);
  const render = (cols: number[]) => {
    const line = (row: string[]) => cols.map((c) => row[c]!.padEnd(widths[c]!)).join(GAP).trimEnd();
    return [line(grid[0]!), line(widths.map((w) => '-'.repeat(w))), ...grid.slice(1).map(line)].join('\n') + '\n';
  };
  return blocks.map((b) => render([...[...widths.keys()].slice(0, keys), ...b])).join('\n');
}

// The results table of the `report` kind: rows from `evaluate` artifacts, rendered as Markdown, CSV and HTML.
import path from 'node:path';
import { listSome, markdownText } from '../../runtime/format.ts';
import type { JsonValue } from '../../runtime/json.ts';
import type { ArtifactRef, MissingInput } from '../kind.ts';

/** The trainable-parameter facts `sft` records. */
export interface TrainableInfo {
  groups: string[];
  lora: boolean;
  trainable_params: number;
  total_params: number;
  /** An explicit PEFT modules_to_save list (a seed config written out), when sft got one; null or absent otherwise. */
  modules_to_save?: string[] | null;
}

/** `training` metric of an evaluate artifact: the evaluated model's sft metrics (a key sft lacked is null). */
export interface TrainingInfo {
  train_loss_curve: [number, number][] | null;
  eval_loss_curve: [number, number][] | null;
  eval_loss: number | null;
  trainable: TrainableInfo | null;
  backend?: JsonValue;
}

/** The metrics `evaluate` writes, as the report reads them. */
export interface EvaluateMetrics {
  accuracy: number;
  accuracy_std: number;
  n: number;
  eval_loss: number | null;
  /** The data stage whose validation split gave `eval_loss`; absent in metrics of evaluate version 1. */
  eval_loss_data?: { stage: string; key: string; rows: number } | null;
  avg_pauses: number;
  /** Path of test_results.json relative to the evaluate artifact folder. */
  predictions: string;
  model: { stage: string; key: string };
  training: TrainingInfo | null;
  /** The backend that ran the evaluation, when the evaluate kind records it. */
  backend?: JsonValue;
}

/** Where a row comes from: the model the variants start from, a variant, or a model trained without pauses. */
export type RowRole = 'start' | 'run' | 'baseline';

/** One line of the table; also the report's metrics (as JSON). */
export interface ReportRow {
  label: string;
  /** The evaluate stage the row comes from. */
  stage: string;
  role: RowRole;
  /** Loop variables of the evaluate stage. */
  variant: Record<string, JsonValue>;
  trainable: string[] | null;
  lora: boolean | null;
  trainable_params: number | null;
  total_params: number | null;
  /** The explicit modules_to_save the variant trained with (a seed config reproduced as written); null: its `train` groups. */
  modules_to_save: string[] | null;
  accuracy: number;
  accuracy_std: number;
  n: number;
  eval_loss: number | null;
  /** Name of the data stage whose validation split gave `eval_loss`; null when the metrics do not say. */
  eval_loss_data: string | null;
  /** Its key: only losses with the same key are compared. */
  eval_loss_data_key: string | null;
  eval_loss_rows: number | null;
  avg_pauses: number;
  /** Backend(s) that trained and evaluated the model, as the model stages recorded them; null when they did not. */
  backend: string | null;
  /** The pipeline's reference numbers for this row (e.g. the published ones), when it gave any. */
  reference_accuracy: number | null;
  reference_eval_loss: number | null;
  reference_note: string | null;
  /** test_results.json: relative to the workspace when inside it, else absolute. */
  predictions: string;
  model_stage: string;
  model_key: string;
  /** The model's cache folder (shown like `predictions`), or null when the cache layout is not recognised. */
  model_dir: string | null;
  /** Accuracy minus the baseline row's; null without a `baseline`. */
  delta_accuracy: number | null;
}

/** A row of a partial report: an input that did not finish in the run that wrote it, shown without numbers. */
export interface MissingRow {
  label: string;
  /** The evaluate stage the row would come from. */
  stage: string;
  role: RowRole;
  variant: Record<string, JsonValue>;
  status: MissingInput['status'];
  /** The failure's first line, or why it was skipped. */
  reason: string;
}

/** The missing inputs as rows, start first, then the variants, then the baselines (input order within each). */
export function missingRows(missing: Partial<Record<'start' | 'runs' | 'baselines', readonly MissingInput[]>>): MissingRow[] {
  const rows = (list: readonly MissingInput[] | undefined, role: RowRole): MissingRow[] => (list ?? []).map((m) => ({
    label: variantLabel(m), stage: m.stage, role, variant: m.variant, status: m.status, reason: m.reason,
  }));
  return [...rows(missing.start, 'start'), ...rows(missing.runs, 'run'), ...rows(missing.baselines, 'baseline')];
}

/** `partial: 2 of 20 variants missing`: how a partial report says so first. */
export function partialLine(present: number, missing: number): string {
  return `partial: ${missing} of ${present + missing} variants missing`;
}

/** What a missing row says where its accuracy would be: `failed: <first line>` or `skipped: upstream … failed`. */
export const missingText = (m: MissingRow): string => `${m.status}: ${m.reason}`;

export interface RowCurves {
  label: string;
  role: RowRole;
  train: [number, number][];
  eval: [number, number][];
}

/** One row of the pipeline's reference table: the loop variables it belongs to and its numbers. */
export interface ReferenceRow {
  match: Record<string, JsonValue>;
  accuracy?: number | null;
  eval_loss?: number | null;
  note?: string | null;
}

/** Numbers to show beside the measured ones, e.g. the published results the pipeline re-creates. */
export interface ReferenceTable {
  /** Column heading prefix, e.g. `original` gives `original accuracy`. */
  name: string;
  /** Where the numbers come from, shown under the table. */
  source?: string | null;
  rows: ReferenceRow[];
}

/** What is wrong with an evaluate artifact's metrics, or null; names the stage so the user can find it. */
export function checkEvaluateMetrics(ref: ArtifactRef): string | null {
  const m = ref.metrics;
  const wrong: string[] = [];
  const num = (k: string): void => {
    if (typeof m[k] !== 'number') wrong.push(`\`${k}\` must be a number`);
  };
  num('accuracy');
  num('accuracy_std');
  num('n');
  num('avg_pauses');
  if (m.eval_loss !== null && typeof m.eval_loss !== 'number') wrong.push('`eval_loss` must be a number or null');
  const data = m.eval_loss_data as Record<string, JsonValue> | null | undefined;
  if (data != null && (typeof data !== 'object' || typeof data.stage !== 'string' || typeof data.key !== 'string')) {
    wrong.push('`eval_loss_data` must be null or {stage, key, rows}');
  }
  if (typeof m.predictions !== 'string') wrong.push('`predictions` must be a path');
  const model = m.model as Record<string, JsonValue> | null | undefined;
  if (typeof model !== 'object' || model === null || typeof model.stage !== 'string' || typeof model.key !== 'string') {
    wrong.push('`model` must be {stage, key}');
  }
  const training = m.training as Record<string, JsonValue> | null | undefined;
  const listOrNull = (v: JsonValue | undefined): boolean => v === null || v === undefined || Array.isArray(v);
  const trainable = training?.trainable as Record<string, JsonValue> | null | undefined;
  if (training !== null && (typeof training !== 'object' || Array.isArray(training) || !listOrNull(training.train_loss_curve) ||
    !listOrNull(training.eval_loss_curve) || (trainable != null && (typeof trainable !== 'object' || !Array.isArray(trainable.groups))))) {
    wrong.push('`training` must be null or {train_loss_curve, eval_loss_curve, eval_loss, trainable}');
  }
  return wrong.length === 0 ? null : `${ref.stage} (kind ${ref.kind}): ${wrong.join('; ')}`;
}

const valueText = (v: JsonValue): string => (typeof v === 'string' ? v : JSON.stringify(v));

/** `embed=true, head=false` from a variant; the stage name outside a `for each`. */
export function variantLabel(ref: Pick<ArtifactRef, 'stage' | 'variant'>): string {
  const entries = Object.entries(ref.variant);
  if (entries.length === 0) return ref.stage;
  return entries.map(([k, v]) => `${k}=${valueText(v)}`).join(', ');
}

/**
 * The cache root of an artifact folder laid out as `<root>/objects/<key[0..2]>/<key>/artifacts`, or null when
 * the folder does not look like that (then model folders cannot be derived, and the table says so).
 */
export function cacheRootOf(artifactDir: string, key: string): string | null {
  const entry = path.dirname(path.resolve(artifactDir));
  const shard = path.dirname(entry);
  const objects = path.dirname(shard);
  const ok = path.basename(artifactDir) === 'artifacts' && path.basename(entry) === key &&
    path.basename(shard) === key.slice(0, 2) && path.basename(objects) === 'objects';
  return ok ? path.dirname(objects) : null;
}

export function artifactDirOf(cacheRoot: string, key: string): string {
  return path.join(cacheRoot, 'objects', key.slice(0, 2), key, 'artifacts');
}

/** A path as the report shows it: relative to the workspace when inside it, so reports stay portable. */
export function showPath(workspace: string, file: string): string {
  const rel = path.relative(workspace, file);
  return rel !== '' && !rel.startsWith('..') && !path.isAbsolute(rel) ? rel.split(path.sep).join('/') : file;
}

/** A recorded backend as text: a string as is; an object by its name and device; anything else is not a backend. */
function backendText(v: JsonValue | undefined): string | null {
  if (typeof v === 'string' && v !== '') return v;
  if (v !== null && typeof v === 'object' && !Array.isArray(v) && typeof v.name === 'string') {
    return typeof v.device === 'string' && v.device !== v.name ? `${v.name} (${v.device})` : v.name;
  }
  return null;
}

/** One backend when training and evaluation agree (or only one is known), else both. */
function rowBackend(m: EvaluateMetrics): string | null {
  const train = backendText(m.training?.backend);
  const evaluation = backendText(m.backend);
  if (train === null || evaluation === null || train === evaluation) return evaluation ?? train;
  return `train ${train}, eval ${evaluation}`;
}

const sameValue = (a: JsonValue | undefined, b: JsonValue): boolean => a !== undefined && JSON.stringify(a) === JSON.stringify(b);

/** Whether a reference row applies to a variant: every loop variable its `match` names has that value. */
export function matchesReference(variant: Record<string, JsonValue>, ref: ReferenceRow): boolean {
  return Object.entries(ref.match).every(([k, v]) => sameValue(variant[k], v));
}

/**
 * Puts each reference row's numbers on the rows whose loop variables include its `match`. Two reference rows
 * on one report row is the pipeline's mistake and an error; returns the reference rows that matched none.
 */
export function applyReference(rows: ReportRow[], reference: ReferenceTable): ReferenceRow[] {
  const owner = new Map<number, ReferenceRow>();
  const unmatched: ReferenceRow[] = [];
  for (const ref of reference.rows) {
    const hits = rows.flatMap((row, i) => (matchesReference(row.variant, ref) ? [i] : []));
    if (hits.length === 0) unmatched.push(ref);
    for (const i of hits) {
      const before = owner.get(i);
      if (before) {
        throw new Error(`report: reference rows ${JSON.stringify(before.match)} and ${JSON.stringify(ref.match)} both match ${rows[i]!.stage}; make their \`match\` tell them apart`);
      }
      owner.set(i, ref);
      rows[i]!.reference_accuracy = ref.accuracy ?? null;
      rows[i]!.reference_eval_loss = ref.eval_loss ?? null;
      rows[i]!.reference_note = ref.note ?? null;
    }
  }
  return unmatched;
}

/**
 * The points a chart can place: JSON has no NaN or Infinity, so a diverged loss written by a script arrives as null,
 * which the chart's arithmetic would read as 0, drawing the worst run as a perfect one.
 */
function finitePoints(points: readonly [number, number][]): [number, number][] {
  return points.filter(([x, y]) => Number.isFinite(x) && Number.isFinite(y));
}

export interface RowInputs {
  start: readonly ArtifactRef[];
  runs: readonly ArtifactRef[];
  baselines: readonly ArtifactRef[];
}

export function buildRows(
  inputs: RowInputs,
  workspace: string,
  baseline: string | null,
): { rows: ReportRow[]; curves: RowCurves[] } {
  const all = [...inputs.start, ...inputs.runs, ...inputs.baselines];
  const problems = all.map(checkEvaluateMetrics).filter((p): p is string => p !== null);
  if (problems.length > 0) throw new Error(`report: inputs lack the metrics evaluate writes:\n  ${problems.join('\n  ')}`);
  const rows: ReportRow[] = [];
  const curves: RowCurves[] = [];
  const add = (ref: ArtifactRef, role: RowRole): void => {
    const m = ref.metrics as unknown as EvaluateMetrics;
    const root = cacheRootOf(ref.dir, ref.key);
    // The start row is named after its model (`step1`): the evaluate stage's name says less.
    const label = role === 'start' ? `${m.model.stage} (start)` : variantLabel(ref);
    const trainable = m.training?.trainable ?? null;
    const data = m.eval_loss === null ? null : m.eval_loss_data ?? null;
    rows.push({
      label,
      stage: ref.stage,
      role,
      variant: ref.variant,
      trainable: trainable?.groups ?? null,
      lora: trainable?.lora ?? null,
      trainable_params: trainable?.trainable_params ?? null,
      total_params: trainable?.total_params ?? null,
      modules_to_save: trainable?.modules_to_save ?? null,
      accuracy: m.accuracy,
      accuracy_std: m.accuracy_std,
      n: m.n,
      eval_loss: m.eval_loss,
      eval_loss_data: data?.stage ?? null,
      eval_loss_data_key: data?.key ?? null,
      eval_loss_rows: typeof data?.rows === 'number' ? data.rows : null,
      avg_pauses: m.avg_pauses,
      backend: rowBackend(m),
      reference_accuracy: null,
      reference_eval_loss: null,
      reference_note: null,
      predictions: showPath(workspace, path.join(ref.dir, m.predictions)),
      model_stage: m.model.stage,
      model_key: m.model.key,
      model_dir: root === null ? null : showPath(workspace, artifactDirOf(root, m.model.key)),
      delta_accuracy: null,
    });
    if (m.training?.train_loss_curve) {
      curves.push({ label, role, train: finitePoints(m.training.train_loss_curve), eval: finitePoints(m.training.eval_loss_curve ?? []) });
    }
  };
  inputs.start.forEach((r) => add(r, 'start'));
  inputs.runs.forEach((r) => add(r, 'run'));
  inputs.baselines.forEach((r) => add(r, 'baseline'));
  if (baseline !== null) {
    const ref = rows.find((r) => r.stage === baseline || r.label === baseline);
    if (!ref) {
      throw new Error(`report: baseline ${JSON.stringify(baseline)} is none of the inputs; use one of: ${listSome(rows.map((r) => r.stage))}`);
    }
    for (const row of rows) row.delta_accuracy = row.accuracy - ref.accuracy;
  }
  return { rows: groupSeedsTogether(rows), curves };
}

/** The loop variable whose values are repeats of one experiment rather than different experiments. */
export const SEED_VARIABLE = 'seed';

/** What a row is apart from its seed: rows with equal keys are repeats of one variant. */
function seedlessKey(row: ReportRow): string {
  const rest = Object.entries(row.variant).filter(([k]) => k !== SEED_VARIABLE).sort(([a], [b]) => a.localeCompare(b));
  return `${row.role}\u0000${JSON.stringify(rest)}`;
}

/** The rows of one variant over its seeds sit together, in the order the first of each appears. */
function groupSeedsTogether(rows: ReportRow[]): ReportRow[] {
  if (!rows.some((r) => SEED_VARIABLE in r.variant)) return rows;
  const order = new Map<string, number>();
  rows.forEach((r, i) => {
    const k = seedlessKey(r);
    if (!order.has(k)) order.set(k, i);
  });
  return rows.map((r, i) => ({ r, i })).sort((a, b) => order.get(seedlessKey(a.r))! - order.get(seedlessKey(b.r))! || a.i - b.i).map(({ r }) => r);
}

export interface Spread {
  mean: number;
  /** Sample standard deviation (n − 1) across the seeds. */
  std: number;
  min: number;
  max: number;
}

function spread(values: number[]): Spread {
  const mean = values.reduce((a, b) => a + b, 0) / values.length;
  const std = values.length > 1 ? Math.sqrt(values.reduce((a, v) => a + (v - mean) ** 2, 0) / (values.length - 1)) : 0;
  return { mean, std, min: Math.min(...values), max: Math.max(...values) };
}

/** Repeats of one variant that differ only by their `seed` loop variable. */
export interface SeedGroup {
  /** The variant without its seed, e.g. `lr=0.1, lora=true`. */
  label: string;
  role: RowRole;
  seeds: JsonValue[];
  /** Indices into the rows. */
  members: number[];
  accuracy: Spread;
  /** Over the seeds' eval losses when every one was measured on the same data; else null. */
  eval_loss: Spread | null;
  eval_loss_data: string | null;
}

/** Groups of two or more rows that differ only by `seed`, in row order. */
export function seedGroups(rows: readonly ReportRow[]): SeedGroup[] {
  const byKey = new Map<string, number[]>();
  rows.forEach((r, i) => {
    if (!(SEED_VARIABLE in r.variant)) return;
    const k = seedlessKey(r);
    byKey.set(k, [...(byKey.get(k) ?? []), i]);
  });
  return [...byKey.values()].filter((m) => m.length > 1).map((members) => {
    const first = rows[members[0]!]!;
    const rest = Object.entries(first.variant).filter(([k]) => k !== SEED_VARIABLE);
    const losses = members.map((i) => rows[i]!.eval_loss);
    const dataKeys = new Set(members.map((i) => rows[i]!.eval_loss_data_key));
    const comparable = losses.every((l) => l !== null) && dataKeys.size === 1 && !dataKeys.has(null);
    return {
      label: rest.length > 0 ? rest.map(([k, v]) => `${k}=${valueText(v)}`).join(', ') : first.stage.replace(/\[.*$/, ''),
      role: first.role,
      seeds: members.map((i) => rows[i]!.variant[SEED_VARIABLE]!),
      members,
      accuracy: spread(members.map((i) => rows[i]!.accuracy)),
      eval_loss: comparable ? spread(losses as number[]) : null,
      eval_loss_data: comparable ? first.eval_loss_data : null,
    };
  });
}

/** Rows whose eval losses were measured on the validation split of one data stage. */
export interface LossGroup {
  data: string;
  rows: number;
  members: number[];
  /** The lowest loss among the members (all tied ones), when there are two or more to compare and not all tie. */
  lowest: number[];
}

/**
 * Eval losses grouped by the data they were measured on: a loss on answers with pauses and one on answers
 * without them are different quantities, so only members of one group are compared.
 */
export function lossGroups(rows: readonly ReportRow[]): LossGroup[] {
  const byKey = new Map<string, LossGroup>();
  rows.forEach((r, i) => {
    if (r.eval_loss === null || r.eval_loss_data_key === null) return;
    const g = byKey.get(r.eval_loss_data_key) ?? { data: r.eval_loss_data!, rows: r.eval_loss_rows ?? 0, members: [], lowest: [] };
    g.members.push(i);
    byKey.set(r.eval_loss_data_key, g);
  });
  for (const g of byKey.values()) {
    if (g.members.length < 2) continue;
    const min = Math.min(...g.members.map((i) => rows[i]!.eval_loss!));
    const lowest = g.members.filter((i) => rows[i]!.eval_loss === min);
    g.lowest = lowest.length === g.members.length ? [] : lowest;
  }
  return [...byKey.values()];
}

/**
 * Indices of the best accuracy and of the lowest eval loss within each data group (all tied rows), for bold. When
 * every row ties there is no best: none is returned.
 */
export function bestRows(rows: readonly ReportRow[]): { accuracy: Set<number>; evalLoss: Set<number> } {
  const maxAcc = Math.max(...rows.map((r) => r.accuracy));
  const best = rows.flatMap((r, i) => (r.accuracy === maxAcc ? [i] : []));
  return {
    accuracy: new Set(best.length === rows.length && rows.length > 1 ? [] : best),
    evalLoss: new Set(lossGroups(rows).flatMap((g) => g.lowest)),
  };
}

export const formatAccuracy = (v: number): string => v.toFixed(3);
export const formatLoss = (v: number | null): string => (v === null ? '-' : v.toFixed(5));
export const formatDelta = (v: number | null): string => (v === null ? '-' : `${v >= 0 ? '+' : ''}${v.toFixed(3)}`);
export const formatTrainable = (row: ReportRow): string => {
  const groups = row.trainable === null ? '-' : row.trainable.length === 0 ? 'none' : row.trainable.join(' + ');
  // A seed config reproduced as written trains what its list says, which may not be what its name promises.
  return row.modules_to_save ? `${groups} (seed config: modules_to_save ${row.modules_to_save.join(', ')})` : groups;
};
export const formatLora = (row: ReportRow): string => (row.lora === null ? '-' : row.lora ? 'yes' : 'no');
// Published numbers come with the digits their authors printed; padding them would invent precision.
const formatReference = (v: number | null): string => (v === null ? '-' : String(v));

/** Which optional columns a table has. */
export interface TableShape {
  backend: boolean;
  delta: boolean;
  /** The reference table's name (its columns' heading prefix), or null without one. */
  reference: string | null;
  lossData: boolean;
}

export function tableShape(rows: readonly ReportRow[], referenceName: string | null): TableShape {
  return {
    backend: rows.some((r) => r.backend !== null),
    delta: rows.some((r) => r.delta_accuracy !== null),
    reference: referenceName,
    lossData: rows.some((r) => r.eval_loss_data !== null),
  };
}

interface Column {
  header: string;
  numeric: boolean;
  /** Which bold set (if any) highlights this column's cells. */
  best?: 'accuracy' | 'evalLoss';
  reference?: boolean;
  cell(row: ReportRow, notes: Notes): string;
}

/** Footnotes of the reference column: each distinct note gets a number. */
class Notes {
  readonly texts: string[] = [];
  mark(note: string | null): string {
    if (note === null) return '';
    let i = this.texts.indexOf(note);
    if (i < 0) i = this.texts.push(note) - 1;
    return ` [${i + 1}]`;
  }
}

export function columns(shape: TableShape): Column[] {
  const cols: Column[] = [
    { header: 'variant', numeric: false, cell: (r) => r.label },
    { header: 'trainable', numeric: false, cell: formatTrainable },
    { header: 'LoRA', numeric: true, cell: formatLora },
  ];
  if (shape.backend) cols.push({ header: 'backend', numeric: false, cell: (r) => r.backend ?? '-' });
  cols.push({ header: 'test accuracy', numeric: true, best: 'accuracy', cell: (r) => formatAccuracy(r.accuracy) });
  if (shape.reference !== null) {
    cols.push({
      header: `${shape.reference} accuracy`, numeric: true, reference: true,
      cell: (r, notes) => formatReference(r.reference_accuracy) + notes.mark(r.reference_note),
    });
  }
  cols.push({ header: 'std', numeric: true, cell: (r) => formatAccuracy(r.accuracy_std) });
  if (shape.delta) cols.push({ header: 'Δ accuracy', numeric: true, cell: (r) => formatDelta(r.delta_accuracy) });
  cols.push({ header: 'eval loss', numeric: true, best: 'evalLoss', cell: (r) => formatLoss(r.eval_loss) });
  if (shape.reference !== null) {
    cols.push({ header: `${shape.reference} eval loss`, numeric: true, reference: true, cell: (r) => formatReference(r.reference_eval_loss) });
  }
  if (shape.lossData) cols.push({ header: 'loss on', numeric: false, cell: (r) => r.eval_loss_data ?? '-' });
  cols.push({ header: 'avg pauses', numeric: true, cell: (r) => r.avg_pauses.toFixed(2) });
  return cols;
}

/**
 * The table as text cells (no markup), its header, the bold cells and the reference footnotes. Missing rows come
 * last: their label, then `failed: …` or `skipped: …` where the accuracy would be, `-` elsewhere.
 */
export function tableCells(rows: readonly ReportRow[], shape: TableShape, missing: readonly MissingRow[] = []): { header: string[]; cells: string[][]; bold: boolean[][]; notes: string[]; cols: Column[] } {
  const cols = columns(shape);
  const best = bestRows(rows);
  const notes = new Notes();
  const cells = rows.map((r) => cols.map((c) => c.cell(r, notes)));
  const bold = rows.map((_, i) => cols.map((c) => (c.best === 'accuracy' && best.accuracy.has(i)) || (c.best === 'evalLoss' && best.evalLoss.has(i))));
  for (const m of missing) {
    cells.push(cols.map((c) => (c.header === 'variant' ? m.label : c.best === 'accuracy' ? missingText(m) : '-')));
    bold.push(cols.map(() => false));
  }
  return { header: cols.map((c) => c.header), cells, bold, notes: notes.texts, cols };
}

/** The GitHub-flavoured Markdown table, best accuracy and lowest comparable eval loss in bold, then its footnotes. */
export function markdownTable(rows: readonly ReportRow[], shape: TableShape, missing: readonly MissingRow[] = []): string {
  const t = tableCells(rows, shape, missing);
  const lines = [
    `| ${t.header.map(markdownText).join(' | ')} |`,
    `|${t.cols.map((c) => (c.numeric ? ':---:' : '---')).join('|')}|`,
    ...t.cells.map((cells, i) => `| ${cells.map((c, j) => (t.bold[i]![j] ? `**${markdownText(c)}**` : markdownText(c))).join(' | ')} |`),
  ];
  if (t.notes.length > 0) lines.push('', ...t.notes.map((n, i) => `[${i + 1}] ${n}`));
  return lines.join('\n') + '\n';
}

const CSV_COLUMNS: (keyof ReportRow)[] = [
  'label', 'stage', 'role', 'trainable', 'lora', 'trainable_params', 'total_params', 'backend', 'accuracy', 'accuracy_std', 'n',
  'eval_loss', 'eval_loss_data', 'eval_loss_rows', 'delta_accuracy', 'reference_accuracy', 'reference_eval_loss', 'avg_pauses',
  'predictions', 'model_stage', 'model_key', 'model_dir', 'modules_to_save',
];

function csvField(value: JsonValue): string {
  const text = value === null ? '' : Array.isArray(value) ? value.join('+') : String(value);
  return /[",\n\r]/.test(text) ? `"${text.replaceAll('"', '""')}"` : text;
}

/** A loop variable's value in its CSV column: as the label writes it (strings bare, lists and objects as JSON). */
const variableField = (v: JsonValue | undefined): string => csvField(v === undefined || v === null ? null : valueText(v));

/**
 * RFC 4180 CSV with full-precision numbers and the cache paths; empty fields for nulls, trainable groups and
 * modules_to_save joined by `+`. Each loop variable has a column of its own, `variant.NAME` after `role` (the
 * prefix keeps a variable such as `lora` apart from the column of that name), so a script can group and pivot by
 * it without parsing labels; a row outside that loop leaves it empty.
 */
export function csvTable(rows: readonly ReportRow[], missing: readonly MissingRow[] = []): string {
  const variables = [...new Set([...rows, ...missing].flatMap((r) => Object.keys(r.variant)))];
  const head = CSV_COLUMNS.slice(0, CSV_COLUMNS.indexOf('role') + 1);
  const tail = CSV_COLUMNS.slice(head.length);
  // Only a partial report has the two columns saying which rows are missing and why: a complete one is as it was.
  const status = missing.length > 0 ? ['status', 'reason'] : [];
  const header = [...head, ...variables.map((v) => `variant.${v}`), ...tail, ...status];
  const line = (r: ReportRow): string => [
    ...head.map((k) => csvField(r[k] as JsonValue)),
    ...variables.map((v) => variableField(r.variant[v])),
    ...tail.map((k) => csvField(r[k] as JsonValue)),
    ...(status.length > 0 ? ['finished', ''] : []),
  ].join(',');
  const missingLine = (m: MissingRow): string => [
    ...head.map((k) => csvField(k === 'label' || k === 'stage' || k === 'role' ? m[k] : null)),
    ...variables.map((v) => variableField(m.variant[v])),
    ...tail.map(() => ''),
    csvField(m.status), csvField(m.reason),
  ].join(',');
  return [header.map(csvField).join(','), ...rows.map(line), ...missing.map(missingLine)].join('\r\n') + '\r\n';
}

export function escapeHtml(text: string): string {
  return text.replaceAll('&', '&amp;').replaceAll('<', '&lt;').replaceAll('>', '&gt;').replaceAll('"', '&quot;');
}

/** The table as HTML, same cells and bold as the Markdown; rows carry their role as a class. */
export function htmlTable(rows: readonly ReportRow[], shape: TableShape, missing: readonly MissingRow[] = []): string {
  const t = tableCells(rows, shape, missing);
  const roles = [...rows.map((r) => r.role), ...missing.map((m) => `${m.role} missing ${m.status}`)];
  const body = roles.map((role, i) => {
    const tds = t.cells[i]!.map((text, j) => {
      const col = t.cols[j]!;
      const classes = [col.numeric ? 'num' : '', col.reference ? 'ref' : ''].filter(Boolean).join(' ');
      const content = escapeHtml(text);
      return `<td${classes ? ` class="${classes}"` : ''}>${t.bold[i]![j] ? `<strong>${content}</strong>` : content}</td>`;
    });
    return `<tr class="${role}">${tds.join('')}</tr>`;
  });
  const head = t.cols.map((c) => `<th${c.reference ? ' class="ref"' : ''}>${escapeHtml(c.header)}</th>`).join('');
  const notes = t.notes.length === 0 ? '' : `\n<ol class="notes">${t.notes.map((n) => `<li>${escapeHtml(n)}</li>`).join('')}</ol>`;
  return `<table class="results">\n<thead><tr>${head}</tr></thead>\n<tbody>\n${body.join('\n')}\n</tbody>\n</table>${notes}`;
}

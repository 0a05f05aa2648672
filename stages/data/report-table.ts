// The results table of the `report` kind: rows from `evaluate` artifacts, rendered as Markdown, CSV and HTML.
import path from 'node:path';
import type { JsonValue } from '../../runtime/json.ts';
import type { ArtifactRef } from '../kind.ts';

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
}

/** The metrics `evaluate` writes, as the report reads them. */
export interface EvaluateMetrics {
  accuracy: number;
  accuracy_std: number;
  n: number;
  eval_loss: number | null;
  avg_pauses: number;
  /** Path of test_results.json relative to the evaluate artifact folder. */
  predictions: string;
  model: { stage: string; key: string };
  training: TrainingInfo | null;
}

/** One line of the table; also the report's metrics (as JSON). */
export interface ReportRow {
  label: string;
  /** The evaluate stage the row comes from. */
  stage: string;
  /** `run` for the `runs` input, `baseline` for the `baselines` input. */
  role: 'run' | 'baseline';
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
  avg_pauses: number;
  /** test_results.json: relative to the workspace when inside it, else absolute. */
  predictions: string;
  model_stage: string;
  model_key: string;
  /** The model's cache folder (shown like `predictions`), or null when the cache layout is not recognised. */
  model_dir: string | null;
  /** Accuracy minus the baseline row's; null without a `baseline`. */
  delta_accuracy: number | null;
}

export interface RowCurves {
  label: string;
  train: [number, number][];
  eval: [number, number][];
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

/** `embed=true, head=false` from a variant; the stage name outside a `for each`. */
export function variantLabel(ref: Pick<ArtifactRef, 'stage' | 'variant'>): string {
  const entries = Object.entries(ref.variant);
  if (entries.length === 0) return ref.stage;
  return entries.map(([k, v]) => `${k}=${typeof v === 'string' ? v : JSON.stringify(v)}`).join(', ');
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

export function buildRows(
  runs: readonly ArtifactRef[],
  baselines: readonly ArtifactRef[],
  workspace: string,
  baseline: string | null,
): { rows: ReportRow[]; curves: RowCurves[] } {
  const problems = [...runs, ...baselines].map(checkEvaluateMetrics).filter((p): p is string => p !== null);
  if (problems.length > 0) throw new Error(`report: inputs lack the metrics evaluate writes:\n  ${problems.join('\n  ')}`);
  const rows: ReportRow[] = [];
  const curves: RowCurves[] = [];
  const add = (ref: ArtifactRef, role: ReportRow['role']): void => {
    const m = ref.metrics as unknown as EvaluateMetrics;
    const root = cacheRootOf(ref.dir, ref.key);
    const label = variantLabel(ref);
    const trainable = m.training?.trainable ?? null;
    rows.push({
      label,
      stage: ref.stage,
      role,
      trainable: trainable?.groups ?? null,
      lora: trainable?.lora ?? null,
      trainable_params: trainable?.trainable_params ?? null,
      total_params: trainable?.total_params ?? null,
      modules_to_save: trainable?.modules_to_save ?? null,
      accuracy: m.accuracy,
      accuracy_std: m.accuracy_std,
      n: m.n,
      eval_loss: m.eval_loss,
      avg_pauses: m.avg_pauses,
      predictions: showPath(workspace, path.join(ref.dir, m.predictions)),
      model_stage: m.model.stage,
      model_key: m.model.key,
      model_dir: root === null ? null : showPath(workspace, artifactDirOf(root, m.model.key)),
      delta_accuracy: null,
    });
    if (m.training?.train_loss_curve) curves.push({ label, train: m.training.train_loss_curve, eval: m.training.eval_loss_curve ?? [] });
  };
  runs.forEach((r) => add(r, 'run'));
  baselines.forEach((r) => add(r, 'baseline'));
  if (baseline !== null) {
    const ref = rows.find((r) => r.stage === baseline || r.label === baseline);
    if (!ref) {
      throw new Error(`report: baseline ${JSON.stringify(baseline)} is none of the inputs; use one of: ${rows.map((r) => r.stage).join(', ')}`);
    }
    for (const row of rows) row.delta_accuracy = row.accuracy - ref.accuracy;
  }
  return { rows, curves };
}

/** Indices of the best accuracy and of the lowest eval loss (all tied rows), for bold. */
export function bestRows(rows: readonly ReportRow[]): { accuracy: Set<number>; evalLoss: Set<number> } {
  const maxAcc = Math.max(...rows.map((r) => r.accuracy));
  const losses = rows.map((r) => r.eval_loss).filter((l): l is number => l !== null);
  const minLoss = losses.length > 0 ? Math.min(...losses) : null;
  return {
    accuracy: new Set(rows.flatMap((r, i) => (r.accuracy === maxAcc ? [i] : []))),
    evalLoss: new Set(rows.flatMap((r, i) => (minLoss !== null && r.eval_loss === minLoss ? [i] : []))),
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

/** The cells of one row as text (no Markdown/HTML markup), in the column order of `tableHeader`. */
function cells(row: ReportRow, withDelta: boolean): string[] {
  const out = [
    row.label,
    formatTrainable(row),
    formatLora(row),
    formatAccuracy(row.accuracy),
    formatAccuracy(row.accuracy_std),
    formatLoss(row.eval_loss),
    row.avg_pauses.toFixed(2),
    row.predictions,
    row.model_dir ?? `${row.model_stage} (not in a recognised cache)`,
  ];
  if (withDelta) out.splice(5, 0, formatDelta(row.delta_accuracy));
  return out;
}

export function tableHeader(withDelta: boolean): string[] {
  const out = ['variant', 'trainable', 'LoRA', 'test accuracy', 'std', 'eval loss', 'avg pauses', 'predictions', 'model'];
  if (withDelta) out.splice(5, 0, 'Δ accuracy');
  return out;
}

// Columns holding a number are centred, like the seed's table.
const NUMERIC_COLUMNS = new Set(['LoRA', 'test accuracy', 'std', 'Δ accuracy', 'eval loss', 'avg pauses']);

function escapeCell(text: string): string {
  return text.replaceAll('|', '\\|');
}

/** The GitHub-flavoured Markdown table, best accuracy and lowest eval loss in bold, paths as code. */
export function markdownTable(rows: readonly ReportRow[]): string {
  const withDelta = rows.some((r) => r.delta_accuracy !== null);
  const header = tableHeader(withDelta);
  const best = bestRows(rows);
  const lines = [
    `| ${header.join(' | ')} |`,
    `|${header.map((h) => (NUMERIC_COLUMNS.has(h) ? ':---:' : '---')).join('|')}|`,
  ];
  rows.forEach((row, i) => {
    const c = cells(row, withDelta).map(escapeCell);
    const acc = header.indexOf('test accuracy');
    const loss = header.indexOf('eval loss');
    if (best.accuracy.has(i)) c[acc] = `**${c[acc]}**`;
    if (best.evalLoss.has(i)) c[loss] = `**${c[loss]}**`;
    c[header.indexOf('predictions')] = `\`${c[header.indexOf('predictions')]}\``;
    if (row.model_dir !== null) c[header.indexOf('model')] = `\`${c[header.indexOf('model')]}\``;
    lines.push(`| ${c.join(' | ')} |`);
  });
  return lines.join('\n') + '\n';
}

const CSV_COLUMNS: (keyof ReportRow)[] = [
  'label', 'stage', 'role', 'trainable', 'lora', 'trainable_params', 'total_params', 'accuracy', 'accuracy_std', 'n',
  'eval_loss', 'delta_accuracy', 'avg_pauses', 'predictions', 'model_stage', 'model_key', 'model_dir', 'modules_to_save',
];

function csvField(value: ReportRow[keyof ReportRow]): string {
  const text = value === null ? '' : Array.isArray(value) ? value.join('+') : String(value);
  return /[",\n\r]/.test(text) ? `"${text.replaceAll('"', '""')}"` : text;
}

/** RFC 4180 CSV with full-precision numbers; empty fields for nulls, trainable groups and modules_to_save joined by `+`. */
export function csvTable(rows: readonly ReportRow[]): string {
  return [CSV_COLUMNS.join(','), ...rows.map((r) => CSV_COLUMNS.map((k) => csvField(r[k])).join(','))].join('\r\n') + '\r\n';
}

export function escapeHtml(text: string): string {
  return text.replaceAll('&', '&amp;').replaceAll('<', '&lt;').replaceAll('>', '&gt;').replaceAll('"', '&quot;');
}

/** The table as HTML, same cells and bold as the Markdown. */
export function htmlTable(rows: readonly ReportRow[]): string {
  const withDelta = rows.some((r) => r.delta_accuracy !== null);
  const header = tableHeader(withDelta);
  const best = bestRows(rows);
  const acc = header.indexOf('test accuracy');
  const loss = header.indexOf('eval loss');
  const body = rows.map((row, i) => {
    const tds = cells(row, withDelta).map((text, col) => {
      const bold = (col === acc && best.accuracy.has(i)) || (col === loss && best.evalLoss.has(i));
      const content = escapeHtml(text);
      const cls = NUMERIC_COLUMNS.has(header[col]!) ? ' class="num"' : header[col] === 'predictions' || header[col] === 'model' ? ' class="path"' : '';
      return `<td${cls}>${bold ? `<strong>${content}</strong>` : content}</td>`;
    });
    return `<tr${row.role === 'baseline' ? ' class="baseline"' : ''}>${tds.join('')}</tr>`;
  });
  return `<table>\n<thead><tr>${header.map((h) => `<th>${escapeHtml(h)}</th>`).join('')}</tr></thead>\n<tbody>\n${body.join('\n')}\n</tbody>\n</table>`;
}

// Stage kind `report`: the results table of an ablation (Markdown, CSV, self-contained HTML) with accuracy and loss charts.
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { JsonValue } from '../runtime/json.ts';
import type { StageContext, StageKind, StageResult } from './kind.ts';
import { barChartSvg, lineChartSvg, type Series } from './data/charts.ts';
import {
  bestRows,
  buildRows,
  csvTable,
  escapeHtml,
  formatAccuracy,
  formatLoss,
  htmlTable,
  markdownTable,
  type ReportRow,
  type RowCurves,
} from './data/report-table.ts';

export interface ReportParams {
  title: string;
  baseline: string | null;
}

/** Files the stage writes into its artifact folder. */
export const REPORT_FILES = ['report.md', 'report.csv', 'report.html', 'accuracy.svg', 'loss-curves.svg'] as const;

/** Single-quoted for POSIX shells: stage names hold brackets, commas and `=`. */
function shellQuote(text: string): string {
  return /^[A-Za-z0-9_./-]+$/.test(text) ? text : `'${text.replaceAll("'", `'\\''`)}'`;
}

/**
 * One `pausepipe export` line per distinct model, in table order. A stage never learns which .pipe file it runs
 * from, so the lines read it from `$PIPE`, which the text around them asks the reader to set.
 */
export function exportCommands(rows: readonly ReportRow[]): string[] {
  const stages = [...new Set(rows.map((r) => r.model_stage))];
  return stages.map((s) =>
    `pausepipe export ${shellQuote(s)} ${shellQuote(`exported/${s.replace(/[^A-Za-z0-9_.-]+/g, '-').replace(/-+$/, '')}`)} --pipeline "$PIPE"`);
}

const EXPORT_INTRO = 'Copy a model out of the cache into a folder of your choice, with PIPE set to this pipeline\'s .pipe file:';

function summary(rows: readonly ReportRow[]): string[] {
  const best = bestRows(rows);
  const names = (set: Set<number>): string => [...set].map((i) => rows[i]!.label).join('; ');
  const out = [`Best test accuracy: ${formatAccuracy(rows[[...best.accuracy][0]!]!.accuracy)} (${names(best.accuracy)}).`];
  if (best.evalLoss.size > 0) out.push(`Lowest eval loss: ${formatLoss(rows[[...best.evalLoss][0]!]!.eval_loss)} (${names(best.evalLoss)}).`);
  return out;
}

export function accuracyChart(rows: readonly ReportRow[]): string {
  const best = bestRows(rows);
  return barChartSvg(
    rows.map((r, i) => ({
      label: r.label,
      value: r.accuracy,
      // The whisker is the standard error of the mean; the per-example std of 0/1 scores is ~0.5 and says little.
      error: r.n > 0 ? r.accuracy_std / Math.sqrt(r.n) : undefined,
      highlight: best.accuracy.has(i),
    })),
    { title: 'Test accuracy per variant', axisLabel: 'test accuracy (whiskers: ± standard error)', max: 1, format: formatAccuracy },
  );
}

export function lossChart(curves: readonly RowCurves[]): string {
  const series: Series[] = curves.flatMap((c) => [
    { label: c.label, points: c.train },
    { label: c.label, points: c.eval, dashed: true },
  ]);
  return lineChartSvg(series, {
    title: 'Training loss',
    xLabel: 'step',
    yLabel: 'loss',
    note: curves.length === 0 ? 'No training curves in the inputs.' : 'solid: training loss, dashed: validation loss',
  });
}

export function markdownReport(title: string, rows: readonly ReportRow[]): string {
  return [
    `# ${title}`,
    '',
    markdownTable(rows).trimEnd(),
    '',
    summary(rows).join(' '),
    '',
    '![Test accuracy per variant](accuracy.svg)',
    '',
    '![Training loss](loss-curves.svg)',
    '',
    '## Export a model',
    '',
    EXPORT_INTRO,
    '',
    '```sh',
    ...exportCommands(rows),
    '```',
    '',
  ].join('\n');
}

// Inline SVG in HTML needs no namespace; dropping it keeps the page free of any URL at all.
const stripNamespace = (svg: string): string => svg.replace(' xmlns="http://www.w3.org/2000/svg"', '');

export function htmlReport(title: string, rows: readonly ReportRow[], accuracySvg: string, lossSvg: string): string {
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>${escapeHtml(title)}</title>
<style>
body { font-family: system-ui, sans-serif; margin: 2rem; color: #222; }
table { border-collapse: collapse; font-size: 14px; }
th, td { border: 1px solid #ccc; padding: 4px 8px; text-align: left; vertical-align: top; }
th { background: #f3f3f3; }
td.num { text-align: center; font-variant-numeric: tabular-nums; }
td.path { font-family: ui-monospace, monospace; font-size: 12px; word-break: break-all; }
tr.baseline td { background: #fafafa; font-style: italic; }
figure { margin: 1.5rem 0; overflow-x: auto; }
pre { background: #f6f6f6; padding: 0.75rem; overflow-x: auto; }
</style>
</head>
<body>
<h1>${escapeHtml(title)}</h1>
${htmlTable(rows)}
<p>${escapeHtml(summary(rows).join(' '))}</p>
<figure>
${stripNamespace(accuracySvg).trimEnd()}
</figure>
<figure>
${stripNamespace(lossSvg).trimEnd()}
</figure>
<h2>Export a model</h2>
<p>${escapeHtml(EXPORT_INTRO)}</p>
<pre>${escapeHtml(exportCommands(rows).join('\n'))}</pre>
</body>
</html>
`;
}

export const REPORT: StageKind<ReportParams> = {
  name: 'report',
  version: 3,
  description:
    'Results table of an ablation from its evaluate stages: report.md, report.csv and a self-contained report.html ' +
    'with a per-variant accuracy chart and the training-loss curves of all variants.',
  params: {
    type: 'object',
    properties: {
      title: { type: 'string', description: 'Heading of the report.', default: 'Results' },
      baseline: {
        type: ['string', 'null'],
        description: 'Stage name or variant label of the row the others are compared with (adds a Δ accuracy column); null: none.',
        default: null,
      },
    },
    additionalProperties: false,
  },
  highlights: ['report.html', 'report.md'],
  inputs: {
    runs: { description: 'The evaluate stages of the variants, e.g. `eval[*]`.', many: true },
    baselines: { description: 'Evaluate stages of models without pauses, listed after the variants.', many: true, optional: true },
  },
  sources: ['stages/report.ts', 'stages/data/report-table.ts', 'stages/data/charts.ts'],

  async run(ctx: StageContext<ReportParams>): Promise<StageResult> {
    const runs = ctx.inputs.runs ?? [];
    if (runs.length === 0) throw new Error('report: `runs` is empty; give it the evaluate stages, e.g. `runs: eval[*]`');
    const { rows, curves } = buildRows(runs, ctx.inputs.baselines ?? [], ctx.workspace, ctx.params.baseline);
    const accuracySvg = accuracyChart(rows);
    const lossSvg = lossChart(curves);
    const out = (name: (typeof REPORT_FILES)[number]): string => path.join(ctx.outDir, name);
    await writeFile(out('report.md'), markdownReport(ctx.params.title, rows));
    await writeFile(out('report.csv'), csvTable(rows));
    await writeFile(out('report.html'), htmlReport(ctx.params.title, rows, accuracySvg, lossSvg));
    await writeFile(out('accuracy.svg'), accuracySvg);
    await writeFile(out('loss-curves.svg'), lossSvg);
    ctx.log(`report: ${rows.length} rows; ${summary(rows).join(' ')}`);
    return { metrics: { rows: rows as unknown as JsonValue } };
  },
};

// Stage kind `report`: the results table of an ablation (Markdown, CSV, self-contained HTML) with provenance and charts.
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { listSome, markdownText } from '../runtime/format.ts';
import type { JsonValue } from '../runtime/json.ts';
import type { CheckContext, CheckProblem, StageContext, StageKind, StageResult } from './kind.ts';
import { barChartSvg, panelsSvg, type Bar, type Panel, type Series } from './data/charts.ts';
import { collectProvenance, provenanceLines, type Provenance } from './data/provenance.ts';
import {
  applyReference,
  artifactDirOf,
  bestRows,
  buildRows,
  cacheRootOf,
  csvTable,
  escapeHtml,
  formatAccuracy,
  formatLoss,
  htmlTable,
  lossGroups,
  markdownTable,
  matchesReference,
  missingRows,
  partialLine,
  seedGroups,
  tableShape,
  variantLabel,
  type MissingRow,
  type ReferenceTable,
  type ReportRow,
  type RowCurves,
  type SeedGroup,
  type TableShape,
} from './data/report-table.ts';

export interface ReportParams {
  title: string;
  baseline: string | null;
  reference: ReferenceTable | null;
}

/**
 * What the report would find wrong only after every variant trained: a baseline that names no input (an error then)
 * and a reference row that matches no variant or matches one that another row matches too, e.g. after a loop
 * variable was renamed or a value mistyped. The inputs' stages and loop variables are known from the pipeline.
 */
function checkReport(p: ReportParams, ctx: CheckContext): CheckProblem[] {
  const problems: CheckProblem[] = [];
  const starts = ctx.upstream.start ?? [];
  const others = [...(ctx.upstream.runs ?? []), ...(ctx.upstream.baselines ?? [])];
  if (p.baseline !== null) {
    const names = [...starts, ...others].map((u) => u.name);
    const labels = others.map((u) => variantLabel({ stage: u.name, variant: u.variant }));
    // A start row is labelled after its evaluated model (`step1 (start)`): that label is checked when the report runs.
    const startLabel = starts.length > 0 && p.baseline.endsWith(' (start)');
    if (!names.includes(p.baseline) && !labels.includes(p.baseline) && !startLabel) {
      problems.push({
        code: 'E_PARAM_VALUE', param: ['baseline'],
        message: `baseline ${JSON.stringify(p.baseline)} is none of the inputs: give a stage name or a variant label`,
        notes: [`the inputs: ${listSome(names)}`],
      });
    }
  }
  const rows = [...starts, ...others];
  const owner = new Map<string, number>();
  p.reference?.rows.forEach((ref, i) => {
    const hits = rows.filter((u) => matchesReference(u.variant, ref));
    const at = ['reference', 'rows', String(i), 'match'];
    if (hits.length === 0) {
      problems.push({ code: 'E_PARAM_VALUE', severity: 'warning', param: at, message: `reference row ${JSON.stringify(ref.match)} matches no variant: its numbers would not be shown` });
    }
    for (const hit of hits) {
      const before = owner.get(hit.name);
      if (before !== undefined) {
        problems.push({ code: 'E_PARAM_VALUE', param: at, message: `reference rows ${JSON.stringify(p.reference!.rows[before]!.match)} and ${JSON.stringify(ref.match)} both match ${hit.name}; make their \`match\` tell them apart` });
      }
      owner.set(hit.name, i);
    }
  });
  return problems;
}

/** Files the stage writes into its artifact folder. */
export const REPORT_FILES = ['report.md', 'report.csv', 'report.html', 'accuracy.svg', 'loss-curves.svg'] as const;

/** With more variants than this, each gets a small loss panel of its own: one chart of many lines is unreadable. */
export const SMALL_MULTIPLES_FROM = 7;

/** Single-quoted for POSIX shells: stage names hold brackets, commas and `=`. */
function shellQuote(text: string): string {
  return /^[A-Za-z0-9_./-]+$/.test(text) ? text : `'${text.replaceAll("'", `'\\''`)}'`;
}

/**
 * One `pausepipe export` line per distinct model, in table order, to run from the project folder. They name the
 * pipeline file of the run that wrote the report (the provenance's); a report written without one (a stage run
 * outside the runner) reads it from `$PIPE`, which its introduction then asks the reader to set.
 */
export function exportCommands(rows: readonly ReportRow[], pipeline: string | null): string[] {
  const stages = [...new Set(rows.map((r) => r.model_stage))];
  const file = pipeline === null ? '"$PIPE"' : shellQuote(pipeline);
  return stages.map((s) =>
    `pausepipe export ${shellQuote(s)} ${shellQuote(`exported/${s.replace(/[^A-Za-z0-9_.-]+/g, '-').replace(/-+$/, '')}`)} --pipeline ${file}`);
}

function exportIntro(pipeline: string | null): string {
  return pipeline === null
    ? 'Copy a model out of the cache into a folder of your choice, with PIPE set to this pipeline\'s .pipe file:'
    : 'Copy a model out of the cache into a folder of your choice, from the project folder:';
}

/** Rows a headline sentence names; beyond this many tied rows it counts the rest (the table marks them all in bold). */
export const SUMMARY_NAMES = 3;

/** The headline sentences: best accuracy, and the lowest eval loss among the rows measured on each data. */
export function summary(rows: readonly ReportRow[]): string[] {
  const best = bestRows(rows);
  const names = (idx: Iterable<number>): string => {
    const labels = [...idx].map((i) => rows[i]!.label);
    if (labels.length <= SUMMARY_NAMES) return labels.join('; ');
    return `${labels.length} rows: ${labels.slice(0, SUMMARY_NAMES).join('; ')} and ${labels.length - SUMMARY_NAMES} more, in bold in the table`;
  };
  const out = [best.accuracy.size > 0
    ? `Best test accuracy: ${formatAccuracy(rows[[...best.accuracy][0]!]!.accuracy)} (${names(best.accuracy)}).`
    : `Every row has test accuracy ${formatAccuracy(rows[0]!.accuracy)}.`];
  const groups = lossGroups(rows);
  for (const g of groups.filter((x) => x.members.length > 1)) {
    out.push(g.lowest.length > 0
      ? `Lowest eval loss on the validation split of \`${g.data}\`: ${formatLoss(rows[g.lowest[0]!]!.eval_loss)} (${names(g.lowest)}).`
      : `Every row measured on \`${g.data}\` has eval loss ${formatLoss(rows[g.members[0]!]!.eval_loss)}.`);
  }
  const alone = groups.filter((g) => g.members.length === 1).map((g) => `${rows[g.members[0]!]!.label} (on \`${g.data}\`)`);
  const unknown = rows.filter((r) => r.eval_loss !== null && r.eval_loss_data_key === null).map((r) => r.label);
  if (alone.length > 0) out.push(`Not compared, no other row was measured on the same data: ${alone.join('; ')}.`);
  if (unknown.length > 0) out.push(`Not compared, the data of the eval loss is not recorded: ${unknown.join('; ')}.`);
  return out;
}

/** What the eval loss column means, said once under the table. */
function lossNote(rows: readonly ReportRow[]): string {
  const groups = lossGroups(rows);
  const each = groups.map((g) => `\`${g.data}\` (${g.rows} rows)`).join(', ');
  return groups.length === 0
    ? 'No eval losses: the evaluated data have no validation rows.'
    : `Eval loss: the mean loss on the answers of the validation split of the data in "loss on": ${each}. ` +
      'Only losses measured on the same data are compared; a loss on answers with pauses and one on answers without them are different quantities.';
}

/** Bars: one per row, or one per group of seeds (mean, whisker ± std across seeds) when the pipeline repeats variants over seeds. */
export function accuracyChart(rows: readonly ReportRow[], groups: readonly SeedGroup[], referenceName: string | null): string {
  const best = bestRows(rows);
  const grouped = new Map(groups.flatMap((g) => g.members.map((i) => [i, g] as const)));
  const bars: Bar[] = [];
  const drawn = new Set<SeedGroup>();
  rows.forEach((r, i) => {
    const g = grouped.get(i);
    if (g) {
      if (drawn.has(g)) return;
      drawn.add(g);
      bars.push({ label: `${g.label} (${g.seeds.length} seeds)`, value: g.accuracy.mean, error: g.accuracy.std, highlight: g.members.some((m) => best.accuracy.has(m)) });
      return;
    }
    // The whisker is the standard error of the mean; the per-example std of 0/1 scores is ~0.5 and says little.
    const bar: Bar = { label: r.label, value: r.accuracy, error: r.n > 0 ? r.accuracy_std / Math.sqrt(r.n) : undefined, highlight: best.accuracy.has(i) };
    if (r.reference_accuracy !== null) bar.reference = r.reference_accuracy;
    bars.push(bar);
  });
  const whiskers = groups.length > 0 ? '± std across seeds, or ± standard error of one run' : '± standard error';
  return barChartSvg(bars, {
    title: 'Test accuracy per variant',
    axisLabel: `test accuracy (whiskers: ${whiskers})`,
    max: 1,
    format: formatAccuracy,
    ...(referenceName !== null ? { referenceName: `${referenceName} accuracy` } : {}),
  });
}

const curveSeries = (c: RowCurves): Series[] => [
  { label: c.label, points: c.train },
  { label: c.label, points: c.eval, dashed: true, markers: true },
];

/**
 * Training (solid) and validation (dots) loss. The variants' panel(s) and the models trained without pauses
 * are on panels with scales of their own: their losses are on other data and would flatten each other's curves.
 */
export function lossChart(curves: readonly RowCurves[]): string {
  const runs = curves.filter((c) => c.role === 'run');
  const others = curves.filter((c) => c.role !== 'run');
  const many = runs.length >= SMALL_MULTIPLES_FROM;
  const panels: Panel[] = many
    ? runs.map((c) => ({ title: c.label, series: curveSeries(c), scale: 'runs' }))
    : runs.length > 0 ? [{ title: 'variants', series: runs.flatMap(curveSeries), scale: 'runs' }] : [];
  if (others.length > 0) panels.push({ title: 'start and baselines (no pauses)', series: others.flatMap(curveSeries), scale: 'others' });
  return panelsSvg(panels, {
    title: 'Training and validation loss',
    xLabel: 'step',
    yLabel: 'loss',
    columns: many ? 3 : 2,
    plotWidth: many ? 240 : 380,
    plotHeight: many ? 130 : 240,
    legend: !many,
    styles: ['training loss', 'validation loss (each evaluation)'],
    ...(curves.length === 0 ? { note: 'No training curves in the inputs.' } : many ? { note: 'The variants share one scale; the start and baselines have their own.' } : {}),
  });
}

/** The seeds table: each repeated variant's mean and spread. */
function seedRows(groups: readonly SeedGroup[]): { header: string[]; rows: string[][] } {
  return {
    header: ['variant', 'seeds', 'test accuracy (mean ± std)', 'min – max', 'eval loss (mean ± std)', 'loss on'],
    rows: groups.map((g) => [
      g.label,
      g.seeds.map((s) => (typeof s === 'string' ? s : JSON.stringify(s))).join(', '),
      `${formatAccuracy(g.accuracy.mean)} ± ${formatAccuracy(g.accuracy.std)}`,
      `${formatAccuracy(g.accuracy.min)} – ${formatAccuracy(g.accuracy.max)}`,
      g.eval_loss === null ? '-' : `${formatLoss(g.eval_loss.mean)} ± ${formatLoss(g.eval_loss.std)}`,
      g.eval_loss_data ?? '-',
    ]),
  };
}

/** A row's files: where they are, and a link relative to where report.html will live in the cache (if known). */
interface RowFiles {
  label: string;
  predictions: string;
  model: string | null;
  predictionsHref: string | null;
  modelHref: string | null;
}

function rowFiles(rows: readonly ReportRow[], workspace: string, reportDir: string | null): RowFiles[] {
  const href = (shown: string): string | null =>
    reportDir === null ? null : path.relative(reportDir, path.resolve(workspace, shown)).split(path.sep).map(encodeURIComponent).join('/');
  return rows.map((r) => ({
    label: r.label,
    predictions: r.predictions,
    model: r.model_dir,
    predictionsHref: href(r.predictions),
    modelHref: r.model_dir === null ? null : href(r.model_dir),
  }));
}

export interface ReportDocument {
  title: string;
  rows: ReportRow[];
  /** Inputs that did not finish (a partial report); empty for a complete one. */
  missing: MissingRow[];
  shape: TableShape;
  reference: ReferenceTable | null;
  provenance: Provenance;
  files: RowFiles[];
}

function markdownSimpleTable(header: string[], rows: string[][]): string[] {
  return [`| ${header.map(markdownText).join(' | ')} |`, `|${header.map(() => '---').join('|')}|`, ...rows.map((r) => `| ${r.map(markdownText).join(' | ')} |`)];
}

/** What a partial report says first, after its title; nothing for a complete one. */
function partialNote(d: ReportDocument): string[] {
  if (d.missing.length === 0) return [];
  return [
    `**${partialLine(d.rows.length, d.missing.length)}**: they failed or were skipped in the run that wrote this report. ` +
      'They are the last rows of the table, without numbers, and are left out of the summary, the charts and the files; ' +
      'a run where they finish writes the full report.',
  ];
}

export function markdownReport(d: ReportDocument): string {
  const groups = seedGroups(d.rows);
  const seeds = seedRows(groups);
  const partial = partialNote(d);
  return [
    `# ${markdownText(d.title)}`,
    '',
    ...(partial.length > 0 ? [...partial, ''] : []),
    ...provenanceLines(d.provenance, d.rows.length).map(([k, v]) => `- **${k}**: ${v}`),
    '',
    markdownTable(d.rows, d.shape, d.missing).trimEnd(),
    '',
    ...(d.reference?.source ? [`${d.reference.name}: ${d.reference.source}`, ''] : []),
    lossNote(d.rows),
    '',
    summary(d.rows).join(' '),
    '',
    ...(groups.length > 0 ? ['## Across seeds', '', ...markdownSimpleTable(seeds.header, seeds.rows), ''] : []),
    '![Test accuracy per variant](accuracy.svg)',
    '',
    '![Training and validation loss](loss-curves.svg)',
    '',
    '## Files',
    '',
    ...d.files.map((f) => `- ${f.label}: predictions \`${f.predictions}\`${f.model === null ? '' : `, model \`${f.model}\``}`),
    '',
    '## Export a model',
    '',
    exportIntro(d.provenance.pipeline),
    '',
    '```sh',
    ...exportCommands(d.rows, d.provenance.pipeline),
    '```',
    '',
  ].join('\n');
}

// Inline SVG in HTML needs no namespace; dropping it keeps the page free of any URL at all.
const stripNamespace = (svg: string): string => svg.replace(' xmlns="http://www.w3.org/2000/svg"', '');

function htmlSimpleTable(cls: string, header: string[], rows: string[][]): string {
  return `<table class="${cls}">\n<thead><tr>${header.map((h) => `<th>${escapeHtml(h)}</th>`).join('')}</tr></thead>\n<tbody>\n` +
    rows.map((r) => `<tr>${r.map((c) => `<td>${escapeHtml(c)}</td>`).join('')}</tr>`).join('\n') + '\n</tbody>\n</table>';
}

/** Prose with `code` spans, as HTML. */
const prose = (text: string): string => escapeHtml(text).replace(/`([^`]+)`/g, '<code>$1</code>');

function fileLink(text: string, href: string | null, shown: string): string {
  return href === null ? `<code>${escapeHtml(shown)}</code>` : `<a href="${escapeHtml(href)}" title="${escapeHtml(shown)}">${escapeHtml(text)}</a>`;
}

export function htmlReport(d: ReportDocument, accuracySvg: string, lossSvg: string): string {
  const groups = seedGroups(d.rows);
  const seeds = seedRows(groups);
  const files = d.files.map((f) => [
    `<td>${escapeHtml(f.label)}</td>`,
    `<td>${fileLink('test_results.json', f.predictionsHref, f.predictions)}</td>`,
    `<td>${f.model === null ? '-' : fileLink('model folder', f.modelHref, f.model)}</td>`,
    `<td class="path">${escapeHtml(f.predictions)}</td>`,
  ].join(''));
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>${escapeHtml(d.title)}</title>
<style>
body { font-family: system-ui, sans-serif; margin: 2rem; color: #222; }
table { border-collapse: collapse; font-size: 14px; }
th, td { border: 1px solid #ccc; padding: 4px 8px; text-align: left; vertical-align: top; }
th { background: #f3f3f3; }
td.num { text-align: center; font-variant-numeric: tabular-nums; }
th.ref, td.ref { background: #fbf3f2; color: #7a2a20; }
td.path { font-family: ui-monospace, monospace; font-size: 12px; word-break: break-all; }
tr.baseline td, tr.start td { background: #fafafa; font-style: italic; }
dl.provenance { display: grid; grid-template-columns: max-content auto; gap: 2px 1rem; font-size: 14px; }
dl.provenance dt { font-weight: bold; }
dl.provenance dd { margin: 0; }
ol.notes { font-size: 13px; }
figure { margin: 1.5rem 0; overflow-x: auto; }
pre { background: #f6f6f6; padding: 0.75rem; overflow-x: auto; }
</style>
</head>
<body>
<h1>${escapeHtml(d.title)}</h1>
${partialNote(d).map((line) => `<p class="partial">${escapeHtml(line).replace(/\*\*(.+?)\*\*/, '<strong>$1</strong>')}</p>\n`).join('')}<dl class="provenance">
${provenanceLines(d.provenance, d.rows.length).map(([k, v]) => `<dt>${escapeHtml(k)}</dt><dd>${escapeHtml(v)}</dd>`).join('\n')}
</dl>
${htmlTable(d.rows, d.shape, d.missing)}
${d.reference?.source ? `<p class="source">${escapeHtml(`${d.reference.name}: ${d.reference.source}`)}</p>\n` : ''}<p>${prose(lossNote(d.rows))}</p>
<p class="summary">${prose(summary(d.rows).join(' '))}</p>
${groups.length > 0 ? `<h2>Across seeds</h2>\n${htmlSimpleTable('seeds', seeds.header, seeds.rows)}\n` : ''}<figure>
${stripNamespace(accuracySvg).trimEnd()}
</figure>
<figure>
${stripNamespace(lossSvg).trimEnd()}
</figure>
<details class="files">
<summary>Files of each row (in the cache)</summary>
<table>
<thead><tr><th>variant</th><th>predictions</th><th>model</th><th>path</th></tr></thead>
<tbody>
${files.map((f) => `<tr>${f}</tr>`).join('\n')}
</tbody>
</table>
</details>
<h2>Export a model</h2>
<p>${escapeHtml(exportIntro(d.provenance.pipeline))}</p>
<pre>${escapeHtml(exportCommands(d.rows, d.provenance.pipeline).join('\n'))}</pre>
</body>
</html>
`;
}

const NUMBER_OR_NULL = { type: ['number', 'null'] };

export const REPORT: StageKind<ReportParams> = {
  name: 'report',
  version: 6,
  description:
    'Results table of an ablation from its evaluate stages: report.md, report.csv and a self-contained report.html ' +
    'with the provenance of the run, a per-variant accuracy chart, training and validation loss curves, a reference ' +
    'column the pipeline gives, and the mean and spread of variants repeated over a `seed` loop variable.',
  params: {
    type: 'object',
    properties: {
      title: { type: 'string', description: 'Heading of the report.', default: 'Results' },
      baseline: {
        type: ['string', 'null'],
        description: 'Stage name or variant label of the row the others are compared with (adds a Δ accuracy column); null: none.',
        default: null,
      },
      reference: {
        type: ['object', 'null'],
        description:
          'Numbers to show beside the measured ones (e.g. published results): {name, source, rows: [{match: {loop variable: value}, ' +
          'accuracy, eval_loss, note}]}; a row applies to the variants whose loop variables include its `match`. null: none.',
        default: null,
        properties: {
          name: { type: 'string', description: 'Heading prefix of the reference columns, e.g. `original`.' },
          source: { type: ['string', 'null'], description: 'Where the numbers come from, shown under the table.' },
          rows: {
            type: 'array',
            description: 'One entry per variant the reference has numbers for.',
            items: {
              type: 'object',
              properties: {
                match: { type: 'object', description: 'Loop variables and their values, e.g. {pause: "head", lora: true}.' },
                accuracy: { ...NUMBER_OR_NULL, description: 'Reference test accuracy; null: none.' },
                eval_loss: { ...NUMBER_OR_NULL, description: 'Reference eval loss; null: none.' },
                note: { type: ['string', 'null'], description: 'A footnote on this row\'s numbers.' },
              },
              required: ['match'],
              additionalProperties: false,
            },
          },
        },
        required: ['name', 'rows'],
        additionalProperties: false,
      },
    },
    additionalProperties: false,
  },
  highlights: ['report.html', 'report.md'],
  inputs: {
    start: { description: 'The evaluate stage of the model the variants start from (e.g. step 1), shown first.', optional: true },
    runs: { description: 'The evaluate stages of the variants, e.g. `eval[*]`.', many: true },
    baselines: { description: 'Evaluate stages of models without pauses, listed after the variants.', many: true, optional: true },
  },
  sources: ['stages/report.ts', 'stages/data/report-table.ts', 'stages/data/charts.ts', 'stages/data/provenance.ts'],
  check: checkReport,
  // After failures under --keep-going, a table of the variants that finished beats no table at all.
  partialInputs: true,

  async run(ctx: StageContext<ReportParams>): Promise<StageResult> {
    const runs = ctx.inputs.runs ?? [];
    const missing = missingRows(ctx.missing ?? {});
    if (runs.length === 0 && missing.some((m) => m.role === 'run')) {
      throw new Error(`report: every variant is missing (${missing.filter((m) => m.role === 'run').map((m) => `${m.stage} ${m.status}`).join(', ')}): no table to write`);
    }
    if (runs.length === 0) throw new Error('report: `runs` is empty; give it the evaluate stages, e.g. `runs: eval[*]`');
    // A missing baseline leaves nothing to compare with: no Δ column, and the log says why.
    const lostBaseline = missing.find((m) => m.stage === ctx.params.baseline || m.label === ctx.params.baseline);
    if (lostBaseline) ctx.log(`report: the baseline ${lostBaseline.stage} is missing (${lostBaseline.status}): no Δ accuracy column`);
    const baseline = lostBaseline ? null : ctx.params.baseline;
    const { rows, curves } = buildRows({ start: ctx.inputs.start ?? [], runs, baselines: ctx.inputs.baselines ?? [] }, ctx.workspace, baseline);
    const reference = ctx.params.reference;
    if (reference !== null) {
      for (const r of applyReference(rows, reference)) ctx.log(`report: reference row ${JSON.stringify(r.match)} matches no row`);
    }
    // Links are relative to where the entry will be committed: <root>/objects/<key[0..2]>/<key>/artifacts.
    const first = runs[0]!;
    const root = cacheRootOf(first.dir, first.key);
    const document: ReportDocument = {
      title: ctx.params.title,
      rows,
      missing,
      shape: tableShape(rows, reference?.name ?? null),
      reference,
      provenance: await collectProvenance(ctx.workspace, ctx.run, rows, root),
      files: rowFiles(rows, ctx.workspace, root === null ? null : artifactDirOf(root, ctx.key)),
    };
    const accuracySvg = accuracyChart(rows, seedGroups(rows), reference?.name ?? null);
    const lossSvg = lossChart(curves);
    const out = (name: (typeof REPORT_FILES)[number]): string => path.join(ctx.outDir, name);
    await writeFile(out('report.md'), markdownReport(document));
    await writeFile(out('report.csv'), csvTable(rows, missing));
    await writeFile(out('report.html'), htmlReport(document, accuracySvg, lossSvg));
    await writeFile(out('accuracy.svg'), accuracySvg);
    await writeFile(out('loss-curves.svg'), lossSvg);
    ctx.log(`report: ${rows.length} rows; ${summary(rows).join(' ')}`);
    if (missing.length === 0) return { metrics: { rows: rows as unknown as JsonValue } };
    ctx.log(`report: ${partialLine(rows.length, missing.length)}`);
    return { metrics: { rows: rows as unknown as JsonValue, partial: partialLine(rows.length, missing.length), missing: missing as unknown as JsonValue } };
  },
};

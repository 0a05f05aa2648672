import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { execFileSync } from 'node:child_process';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { JsonValue } from '../../runtime/json.ts';
import type { ArtifactRef, MissingInput } from '../../stages/kind.ts';
import type { ReportRow } from '../../stages/data/report-table.ts';
import { exportCommands, REPORT, REPORT_FILES } from '../../stages/report.ts';
import { makeContext, removeTempDirs, tempDir } from './data/stage-context.ts';

const KEY_SHAPE = /[0-9a-f]{64}/;

interface Variant {
  variant: Record<string, JsonValue>;
  evalKey: string;
  modelKey: string;
  accuracy: number;
  std: number;
  evalLoss: number | null;
  groups: string[];
  lora: boolean;
  curve: [number, number][];
  /** The data stage whose validation split gave the loss (default `paused`). */
  lossData?: string;
  backend?: string;
}

const VARIANTS: Variant[] = [
  { variant: { embed: true, head: true }, evalKey: 'e1a0', modelKey: 'a1b2', accuracy: 0.48, std: 0.4996, evalLoss: 0.57003,
    groups: ['new_embedding', 'ctrl_tok_clf'], lora: false, curve: [[0, 2.5], [50, 1.2], [100, 0.9]] },
  { variant: { embed: true, head: false }, evalKey: 'e2b0', modelKey: 'c3d4', accuracy: 0.14, std: 0.347, evalLoss: 1.99349,
    groups: ['new_embedding'], lora: true, curve: [[0, 2.6], [50, 2.1], [100, 2.0]] },
  { variant: { embed: false, head: true }, evalKey: 'e3c0', modelKey: 'e5f6', accuracy: 0.56, std: 0.4964, evalLoss: 0.51348,
    groups: ['ctrl_tok_clf'], lora: true, curve: [[0, 2.4], [50, 1.0], [100, 0.7]] },
];

/** Evaluate artifacts in the cache layout `<ws>/.pausepipe/objects/<k[0..2]>/<k>/artifacts`, with evaluate's metrics. */
async function evaluateRefs(ws: string, variants: Variant[] = VARIANTS): Promise<ArtifactRef[]> {
  const refs: ArtifactRef[] = [];
  for (const v of variants) {
    const dir = path.join(ws, '.pausepipe/objects', v.evalKey.slice(0, 2), v.evalKey, 'artifacts');
    await mkdir(dir, { recursive: true });
    await writeFile(path.join(dir, 'test_results.json'), '[]');
    const suffix = Object.entries(v.variant).map(([k, x]) => `${k}=${x}`).join(',');
    refs.push({
      stage: `eval[${suffix}]`,
      key: v.evalKey,
      kind: 'evaluate',
      dir,
      variant: v.variant,
      params: {},
      metrics: {
        accuracy: v.accuracy,
        accuracy_std: v.std,
        n: 100,
        eval_loss: v.evalLoss,
        eval_loss_data: v.evalLoss === null ? null : { stage: v.lossData ?? 'paused', key: `key-of-${v.lossData ?? 'paused'}`, rows: 200 },
        avg_pauses: 1.5,
        ...(v.backend ? { backend: v.backend } : {}),
        predictions: 'test_results.json',
        model: { stage: `warm[${suffix}]`, key: v.modelKey },
        training: {
          train_loss_curve: v.curve,
          eval_loss_curve: [[50, v.curve[1]![1] + 0.1], [100, v.curve[2]![1] + 0.1]],
          eval_loss: v.evalLoss,
          trainable: { groups: v.groups, lora: v.lora, trainable_params: 1000, total_params: 50000 },
        },
      },
    });
  }
  return refs;
}

async function runReport(params: Record<string, JsonValue> = {}, extraInputs: Record<string, ArtifactRef[]> = {}, variants = VARIANTS) {
  const ws = await tempDir('report-ws');
  const ctx = await makeContext(REPORT, { params, workspace: ws, inputs: { runs: await evaluateRefs(ws, variants), ...extraInputs } });
  ctx.run = { pipeline: 'pipelines/pause.pipe', overrides: { lr: 0.0001, 'lora_config.r': 8 } };
  const result = await REPORT.run(ctx);
  const read = (name: string): Promise<string> => readFile(path.join(ctx.outDir, name), 'utf8');
  return { ws, ctx, result, read };
}

test('report.md starts with the provenance, then the exact table; cache paths are listed apart', async () => {
  const { read } = await runReport({ title: 'Pause warm-up' });
  const md = await read('report.md');
  const lines = md.split('\n');
  assert.is(lines[0], '# Pause warm-up');
  assert.is(lines[2], '- **pipeline**: pipelines/pause.pipe');
  assert.is(lines[3], '- **git commit**: not a git repository');
  assert.is(lines[4], '- **backend**: not recorded by the model stages');
  assert.match(lines[5]!, /^- \*\*date\*\*: \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC \(report written; cached stages keep their own dates\)$/);
  assert.match(lines[6]!, /^- \*\*pausepipe\*\*: \d+\.\d+\.\d+ \(Node\.js v\d+/);
  assert.is(lines[7], '- **overrides**: lora_config.r=8, lr=0.0001');
  const table = lines.filter((l) => l.startsWith('|'));
  assert.equal(table, [
    '| variant | trainable | LoRA | test accuracy | std | eval loss | loss on | avg pauses |',
    '|---|---|:---:|:---:|:---:|:---:|---|:---:|',
    '| embed=true, head=true | new_embedding + ctrl_tok_clf | no | 0.480 | 0.500 | 0.57003 | paused | 1.50 |',
    '| embed=true, head=false | new_embedding | yes | 0.140 | 0.347 | 1.99349 | paused | 1.50 |',
    '| embed=false, head=true | ctrl_tok_clf | yes | **0.560** | 0.496 | **0.51348** | paused | 1.50 |',
  ]);
  assert.ok(md.includes('Best test accuracy: 0.560 (embed=false, head=true). Lowest eval loss on the validation split of `paused`: 0.51348 (embed=false, head=true).'));
  assert.ok(md.includes('- embed=true, head=true: predictions `.pausepipe/objects/e1/e1a0/artifacts/test_results.json`, model `.pausepipe/objects/a1/a1b2/artifacts`\n'));
  // Export lines to run as they are: the run's pipeline file is named (one written outside a run reads $PIPE).
  assert.ok(md.includes('Copy a model out of the cache into a folder of your choice, from the project folder:\n'));
  assert.ok(md.includes(`pausepipe export 'warm[embed=true,head=true]' exported/warm-embed-true-head-true --pipeline pipelines/pause.pipe\n`));
  assert.equal(exportCommands([{ model_stage: 'warm[a=1]' }] as ReportRow[], null), [`pausepipe export 'warm[a=1]' exported/warm-a-1 --pipeline "$PIPE"`]);
  assert.equal(exportCommands([{ model_stage: 's' }] as ReportRow[], 'my pipes/x.pipe'), [`pausepipe export s exported/s --pipeline 'my pipes/x.pipe'`]);
  assert.ok(md.includes('![Test accuracy per variant](accuracy.svg)'));
});

test('report.md shows labels and the title as written: no HTML, emphasis or code span from their characters', async () => {
  const odd = VARIANTS.slice(0, 1).map((v) => ({ ...v, variant: { tag: '<b>x</b> *y* `z` a|b' } }));
  const { read } = await runReport({ title: 'Pauses <i>and</i> *stars*' }, {}, odd);
  const md = await read('report.md');
  assert.is(md.split('\n')[0], '# Pauses &lt;i>and&lt;/i> \\*stars\\*');
  assert.ok(md.includes('| tag=&lt;b>x&lt;/b> \\*y\\* \\`z\\` a\\|b | new_embedding + ctrl_tok_clf |'), md);
});

test('report.csv has one row per variant with full-precision numbers and the cache paths', async () => {
  const { read } = await runReport();
  const lines = (await read('report.csv')).split('\r\n');
  assert.is(lines[0], 'label,stage,role,variant.embed,variant.head,trainable,lora,trainable_params,total_params,backend,accuracy,accuracy_std,n,eval_loss,eval_loss_data,' +
    'eval_loss_rows,delta_accuracy,reference_accuracy,reference_eval_loss,avg_pauses,predictions,model_stage,model_key,model_dir,modules_to_save');
  assert.is(lines[1], '"embed=true, head=true","eval[embed=true,head=true]",run,true,true,new_embedding+ctrl_tok_clf,false,1000,50000,,0.48,0.4996,100,' +
    '0.57003,paused,200,,,,1.5,.pausepipe/objects/e1/e1a0/artifacts/test_results.json,"warm[embed=true,head=true]",a1b2,.pausepipe/objects/a1/a1b2/artifacts,');
  assert.is(lines.length, 5); // header, 3 rows, the empty string after the last CRLF
  assert.is(lines[4], '');
});

test('report.html is self-contained: provenance, both charts inline, no scripts, no URLs, no cache keys in the results table', async () => {
  const { read } = await runReport({}, {}, VARIANTS.map((v, i) => ({ ...v, evalKey: `${i}`.repeat(64), modelKey: `${i + 5}`.repeat(64) })));
  const html = await read('report.html');
  assert.not.match(html, /http/i);
  assert.not.match(html, /<script|<link|@import|url\(/i);
  assert.is(html.match(/<svg /g)!.length, 2);
  assert.ok(html.includes('<dt>pipeline</dt><dd>pipelines/pause.pipe</dd>'));
  assert.ok(html.includes('<dt>overrides</dt><dd>lora_config.r=8, lr=0.0001</dd>'));
  assert.ok(html.includes('Lowest eval loss on the validation split of <code>paused</code>: 0.51348'));
  assert.ok(html.includes('Test accuracy per variant</text>'));
  assert.ok(html.includes('Training and validation loss</text>'));
  const results = html.slice(html.indexOf('<table class="results">'), html.indexOf('</table>'));
  assert.not.match(results, KEY_SHAPE);
  assert.is(results.match(/<strong>/g)!.length, 2);
  assert.ok(results.includes('<td class="num"><strong>0.560</strong></td>'));
  assert.ok(results.includes('<td class="num"><strong>0.51348</strong></td>'));
  // The keys are in the files list, linked relative to where the report is committed (`test` is the context's key).
  const files = html.slice(html.indexOf('<details class="files">'));
  assert.ok(files.includes(`<a href="../../../00/${'0'.repeat(64)}/artifacts/test_results.json" title=".pausepipe/objects/00/${'0'.repeat(64)}/artifacts/test_results.json">test_results.json</a>`));
  assert.ok(files.includes(`<a href="../../../55/${'5'.repeat(64)}/artifacts" title=".pausepipe/objects/55/${'5'.repeat(64)}/artifacts">model folder</a>`));
});

test('the SVG files: bars per variant, the best highlighted; training lines and validation points per variant', async () => {
  const { read, ctx } = await runReport();
  for (const name of REPORT_FILES) assert.ok((await read(name)).length > 0, name);
  const bars = await read('accuracy.svg');
  assert.ok(bars.startsWith('<svg xmlns="http://www.w3.org/2000/svg"'));
  assert.is(bars.match(/<rect x=/g)!.length, 3);
  assert.is(bars.match(/fill="#1f5fa8"/g)!.length, 1); // only the best bar
  assert.ok(bars.includes('>embed=false, head=true</text>'));
  const lines = await read('loss-curves.svg');
  assert.is(lines.match(/<path class="series training"/g)!.length, 3);
  assert.is(lines.match(/<path class="series validation"[^>]*stroke-dasharray/g)!.length, 3);
  assert.is(lines.match(/<circle class="point validation"/g)!.length, 6); // 2 evaluations per variant
  assert.is(lines.match(/<g class="legend">/g)!.length, 3);
  assert.is(lines.match(/<g class="panel">/g)!.length, 1);
  assert.ok(lines.includes('>validation loss (each evaluation)</text>'));
  assert.ok(ctx.logs.some((l) => l.startsWith('report: 3 rows;')));
});

test('when every row ties nothing is bold, and the summary says so', async () => {
  const tied = VARIANTS.map((v) => ({ ...v, accuracy: 0, evalLoss: 7.5 }));
  const { read } = await runReport({}, {}, tied);
  const md = await read('report.md');
  assert.not.match(md.split('\n').filter((l) => l.startsWith('|')).join('\n'), '**');
  assert.ok(md.includes('Every row has test accuracy 0.000. Every row measured on `paused` has eval loss 7.50000.'));
});

test('a best value many rows share names the first three and counts the rest', async () => {
  const tied = Array.from({ length: 5 }, (_, i) => ({ ...VARIANTS[0]!, variant: { v: i }, evalKey: `e${i}00`, modelKey: `m${i}00`, accuracy: i < 4 ? 0.5 : 0.25, evalLoss: i < 4 ? 0.57003 : 0.9 }));
  const { read } = await runReport({}, {}, tied);
  const md = await read('report.md');
  assert.ok(md.includes('Best test accuracy: 0.500 (4 rows: v=0; v=1; v=2 and 1 more, in bold in the table). ' +
    'Lowest eval loss on the validation split of `paused`: 0.57003 (4 rows: v=0; v=1; v=2 and 1 more, in bold in the table).'), md);
});

test('a loss the metrics hold as null (NaN in JSON) is left out of the curve, not drawn as 0', async () => {
  const curve = [[0, 2.5], [50, null], [100, 0.9]] as unknown as [number, number][];
  const { read } = await runReport({}, {}, [{ ...VARIANTS[0]!, curve }]);
  const svg = await read('loss-curves.svg');
  const training = [...svg.matchAll(/<path class="series training" d="([^"]+)"/g)].map((m) => m[1]!.match(/[ML]/g)!.length);
  assert.equal(training, [2]);
  assert.not.match(svg, /NaN/);
});

test('a single evaluation (the last step only) is still drawn as a point', async () => {
  const one = VARIANTS.slice(0, 1).map((v) => ({ ...v }));
  const ws = await tempDir('report-one-eval');
  const refs = await evaluateRefs(ws, one);
  (refs[0]!.metrics.training as Record<string, JsonValue>).eval_loss_curve = [[100, 0.9]];
  const ctx = await makeContext(REPORT, { workspace: ws, inputs: { runs: refs } });
  await REPORT.run(ctx);
  const svg = await readFile(path.join(ctx.outDir, 'loss-curves.svg'), 'utf8');
  assert.is(svg.match(/<circle class="point validation"/g)!.length, 1);
});

test('the metrics are the table rows as JSON', async () => {
  const { result } = await runReport();
  const rows = result.metrics!.rows as Record<string, JsonValue>[];
  assert.is(rows.length, 3);
  assert.equal(rows[2], {
    label: 'embed=false, head=true', stage: 'eval[embed=false,head=true]', role: 'run', variant: { embed: false, head: true },
    trainable: ['ctrl_tok_clf'], lora: true, trainable_params: 1000, total_params: 50000, modules_to_save: null,
    accuracy: 0.56, accuracy_std: 0.4964, n: 100, eval_loss: 0.51348,
    eval_loss_data: 'paused', eval_loss_data_key: 'key-of-paused', eval_loss_rows: 200, avg_pauses: 1.5, backend: null,
    reference_accuracy: null, reference_eval_loss: null, reference_note: null,
    predictions: '.pausepipe/objects/e3/e3c0/artifacts/test_results.json',
    model_stage: 'warm[embed=false,head=true]', model_key: 'e5f6', model_dir: '.pausepipe/objects/e5/e5f6/artifacts',
    delta_accuracy: null,
  });
});

test('eval losses are compared only among rows measured on the same data, and the table says which data', async () => {
  const ws = await tempDir('report-base');
  const bases = await evaluateRefs(ws, [
    { ...VARIANTS[0]!, variant: { epochs: 1 }, evalKey: 'f9f9', modelKey: 'abab', accuracy: 0.5, evalLoss: 0.02556, lossData: 'data' },
    { ...VARIANTS[0]!, variant: { epochs: 2 }, evalKey: 'f8f8', modelKey: 'acac', accuracy: 0.52, evalLoss: null },
  ]);
  const { read, ctx } = await runReport({ baseline: 'epochs=1' }, { baselines: bases });
  const md = await read('report.md');
  const table = md.split('\n').filter((l) => l.startsWith('|'));
  assert.is(table[0], '| variant | trainable | LoRA | test accuracy | std | Δ accuracy | eval loss | loss on | avg pauses |');
  assert.is(table[4], '| embed=false, head=true | ctrl_tok_clf | yes | **0.560** | 0.496 | +0.060 | **0.51348** | paused | 1.50 |');
  // The baseline's loss is the lowest number, but on other data: not bold, not "lowest".
  assert.is(table[5], '| epochs=1 | new_embedding + ctrl_tok_clf | no | 0.500 | 0.500 | +0.000 | 0.02556 | data | 1.50 |');
  assert.is(table[6], '| epochs=2 | new_embedding + ctrl_tok_clf | no | 0.520 | 0.500 | +0.020 | - | - | 1.50 |');
  assert.ok(md.includes('Lowest eval loss on the validation split of `paused`: 0.51348 (embed=false, head=true). ' +
    'Not compared, no other row was measured on the same data: epochs=1 (on `data`).'));
  assert.ok(md.includes('Eval loss: the mean loss on the answers of the validation split of the data in "loss on": `paused` (200 rows), `data` (200 rows).'));
  const html = await read('report.html');
  assert.ok(html.includes('<tr class="baseline"><td>epochs=1</td>'));
  const svg = await read('loss-curves.svg');
  assert.is(svg.match(/<g class="panel">/g)!.length, 2); // the baselines' losses have a panel and scale of their own
  assert.ok(svg.includes('<title>start and baselines (no pauses)</title><tspan x="710" y="52">start and baselines (no pauses)</tspan>'));
  assert.ok(ctx.logs.some((l) => l.includes('Not compared')));
});

test('the start row comes first, named after its model', async () => {
  const ws = await tempDir('report-start');
  const [start] = await evaluateRefs(ws, [{ ...VARIANTS[0]!, variant: {}, evalKey: 'f7f7', modelKey: 'adad', accuracy: 0.61, evalLoss: 0.3, lossData: 'data' }]);
  start!.stage = 'eval_step1';
  (start!.metrics.model as Record<string, JsonValue>).stage = 'step1';
  const { result, read } = await runReport({}, { start: [start!] });
  const rows = result.metrics!.rows as Record<string, JsonValue>[];
  assert.equal(rows.map((r) => [r.label, r.role]), [
    ['step1 (start)', 'start'], ['embed=true, head=true', 'run'], ['embed=true, head=false', 'run'], ['embed=false, head=true', 'run'],
  ]);
  assert.ok((await read('report.html')).includes('<tr class="start"><td>step1 (start)</td>'));
});

const ORIGINAL: JsonValue = {
  name: 'original',
  source: 'seed/experiments.md (Mistral-7B)',
  rows: [
    { match: { embed: true, head: true }, accuracy: 0.48, eval_loss: 0.57003 },
    { match: { embed: false }, accuracy: 0.55, eval_loss: 0.51348, note: 'its config trained another module' },
    { match: { embed: true, head: false, lora: true }, accuracy: 0.01 },
  ],
};

test('a reference table from the pipeline is a column beside each measured one, with its notes and source', async () => {
  const { read, result, ctx } = await runReport({ reference: ORIGINAL });
  const md = await read('report.md');
  const table = md.split('\n').filter((l) => l.startsWith('|'));
  assert.equal(table, [
    '| variant | trainable | LoRA | test accuracy | original accuracy | std | eval loss | original eval loss | loss on | avg pauses |',
    '|---|---|:---:|:---:|:---:|:---:|:---:|:---:|---|:---:|',
    '| embed=true, head=true | new_embedding + ctrl_tok_clf | no | 0.480 | 0.48 | 0.500 | 0.57003 | 0.57003 | paused | 1.50 |',
    '| embed=true, head=false | new_embedding | yes | 0.140 | - | 0.347 | 1.99349 | - | paused | 1.50 |',
    '| embed=false, head=true | ctrl_tok_clf | yes | **0.560** | 0.55 [1] | 0.496 | **0.51348** | 0.51348 | paused | 1.50 |',
  ]);
  assert.ok(md.includes('\n[1] its config trained another module\n'));
  assert.ok(md.includes('\noriginal: seed/experiments.md (Mistral-7B)\n'));
  assert.is((result.metrics!.rows as Record<string, JsonValue>[])[0]!.reference_accuracy, 0.48);
  // The third reference row names a variant this run does not have (no `lora` loop variable).
  assert.equal(ctx.logs.filter((l) => l.includes('reference')), ['report: reference row {"embed":true,"head":false,"lora":true} matches no row']);
  const bars = await read('accuracy.svg');
  assert.is(bars.match(/<path class="reference"/g)!.length, 2);
  assert.ok(bars.includes('>original accuracy</text>'));
  const html = await read('report.html');
  assert.ok(html.includes('<th class="ref">original accuracy</th>'));
  assert.ok(html.includes('<td class="num ref">0.55 [1]</td>'));
});

test('two reference rows on one variant is an error naming both', async () => {
  try {
    await runReport({ reference: { name: 'x', rows: [{ match: { embed: true } }, { match: { head: true } }] } });
    assert.unreachable('should fail');
  } catch (err) {
    assert.is((err as Error).message, 'report: reference rows {"embed":true} and {"head":true} both match eval[embed=true,head=true]; make their `match` tell them apart');
  }
});

test('variants that differ only by `seed` are grouped: rows side by side, mean and spread, one bar per group', async () => {
  const seeded = [1, 2].flatMap((seed) => VARIANTS.slice(0, 2).map((v, i) => ({
    ...v, variant: { seed, embed: v.variant.embed, head: v.variant.head }, evalKey: `e${seed}${i}0`, modelKey: `m${seed}${i}0`,
    accuracy: v.accuracy + seed / 100, evalLoss: v.evalLoss! + seed / 1000,
  })));
  const { read, result } = await runReport({}, {}, seeded);
  const rows = result.metrics!.rows as Record<string, JsonValue>[];
  assert.equal(rows.map((r) => r.label), ['seed=1, embed=true, head=true', 'seed=2, embed=true, head=true', 'seed=1, embed=true, head=false', 'seed=2, embed=true, head=false']);
  const md = await read('report.md');
  const seeds = md.slice(md.indexOf('## Across seeds')).split('\n').filter((l) => l.startsWith('|'));
  assert.equal(seeds, [
    '| variant | seeds | test accuracy (mean ± std) | min – max | eval loss (mean ± std) | loss on |',
    '|---|---|---|---|---|---|',
    '| embed=true, head=true | 1, 2 | 0.495 ± 0.007 | 0.490 – 0.500 | 0.57153 ± 0.00071 | paused |',
    '| embed=true, head=false | 1, 2 | 0.155 ± 0.007 | 0.150 – 0.160 | 1.99499 ± 0.00071 | paused |',
  ]);
  const bars = await read('accuracy.svg');
  assert.is(bars.match(/<rect x=/g)!.length, 2);
  assert.ok(bars.includes('>embed=true, head=true (2 seeds)</text>'));
  assert.ok(bars.includes('whiskers: ± std across seeds, or ± standard error of one run'));
});

test('many variants get a small loss panel each, on one shared scale', async () => {
  const many = Array.from({ length: 8 }, (_, i) => ({ ...VARIANTS[i % 3]!, variant: { v: i }, evalKey: `e${i}00`, modelKey: `m${i}00` }));
  const { read } = await runReport({}, {}, many);
  const svg = await read('loss-curves.svg');
  assert.is(svg.match(/<g class="panel">/g)!.length, 8);
  assert.is(svg.match(/<g class="legend">/g), null);
  assert.ok(svg.includes('<title>v=7</title><tspan x="500" y="440">v=7</tspan>'));
  // One scale: every panel has the same y tick labels.
  const ticks = [...svg.matchAll(/<g class="panel">(.*?)<\/g>/g)].map((m) => [...m[1]!.matchAll(/text-anchor="end" fill="#444">([^<]+)</g)].map((t) => t[1]).join(','));
  assert.is(new Set(ticks).size, 1);
});

test('backends recorded by the model stages are shown per row and in the provenance', async () => {
  const mixed = VARIANTS.map((v, i) => ({ ...v, backend: i === 2 ? 'webgpu' : 'wasm' }));
  const { read } = await runReport({}, {}, mixed);
  const md = await read('report.md');
  assert.ok(md.includes('- **backend**: wasm (2 rows), webgpu (1 row): results of different backends may differ\n'));
  assert.ok(md.includes('| variant | trainable | LoRA | backend | test accuracy |'));
  assert.ok(md.includes('| embed=false, head=true | ctrl_tok_clf | yes | webgpu | **0.560** |'));
});

test('a model without training facts (not from sft) gets "-" and no curve', async () => {
  const ws = await tempDir('report-untrained');
  const refs = await evaluateRefs(ws, VARIANTS.slice(0, 2));
  refs[1]!.metrics.training = null;
  (refs[0]!.metrics.training as Record<string, JsonValue>).trainable = null;
  const ctx = await makeContext(REPORT, { workspace: ws, inputs: { runs: refs } });
  await REPORT.run(ctx);
  const md = await readFile(path.join(ctx.outDir, 'report.md'), 'utf8');
  assert.ok(md.includes('- **pipeline**: not given by the runner\n'));
  const table = md.split('\n').filter((l) => l.startsWith('|'));
  assert.ok(table[2]!.startsWith('| embed=true, head=true | - | - | **0.480** |'), table[2]);
  assert.ok(table[3]!.startsWith('| embed=true, head=false | - | - | 0.140 |'), table[3]);
  const svg = await readFile(path.join(ctx.outDir, 'loss-curves.svg'), 'utf8');
  assert.is(svg.match(/<g class="legend">/g)!.length, 1);
});

/** A missing input as the runner hands it to a report run with partial inputs. */
function missingInput(stage: string, variant: Record<string, JsonValue>, status: 'failed' | 'skipped', reason: string): MissingInput {
  return { stage, key: 'f'.repeat(64), kind: 'evaluate', variant, params: {}, status, reason };
}

test('a partial report says so first, ends its table with the missing rows, and leaves them out of the rest', async () => {
  const ws = await tempDir('report-ws');
  const ctx = await makeContext(REPORT, { params: { baseline: 'eval_base' }, workspace: ws, inputs: { runs: await evaluateRefs(ws, VARIANTS.slice(0, 2)) } });
  ctx.missing = {
    runs: [missingInput('eval[embed=false,head=true]', { embed: false, head: true }, 'failed', 'loss is NaN at step 40')],
    baselines: [missingInput('eval_base', {}, 'skipped', 'upstream base_sft failed')],
  };
  const result = await REPORT.run(ctx);
  const md = await readFile(path.join(ctx.outDir, 'report.md'), 'utf8');
  assert.ok(md.startsWith('# Results\n\n**partial: 2 of 4 variants missing**: they failed or were skipped in the run that wrote this report.'), md);
  // The baseline is missing: no Δ column, and the log says why.
  assert.equal(md.split('\n').filter((l) => l.startsWith('|')), [
    '| variant | trainable | LoRA | test accuracy | std | eval loss | loss on | avg pauses |',
    '|---|---|:---:|:---:|:---:|:---:|---|:---:|',
    '| embed=true, head=true | new_embedding + ctrl_tok_clf | no | **0.480** | 0.500 | **0.57003** | paused | 1.50 |',
    '| embed=true, head=false | new_embedding | yes | 0.140 | 0.347 | 1.99349 | paused | 1.50 |',
    '| embed=false, head=true | - | - | failed: loss is NaN at step 40 | - | - | - | - |',
    '| eval_base | - | - | skipped: upstream base_sft failed | - | - | - | - |',
  ]);
  assert.ok(ctx.logs.includes('report: the baseline eval_base is missing (skipped): no Δ accuracy column'));
  assert.ok(md.includes('Best test accuracy: 0.480 (embed=true, head=true).'));
  assert.not.ok(md.includes('embed=false, head=true: predictions'));
  assert.equal(result.metrics!.partial, 'partial: 2 of 4 variants missing');
  assert.equal((result.metrics!.rows as unknown as ReportRow[]).map((r) => r.label), ['embed=true, head=true', 'embed=true, head=false']);
  const csv = (await readFile(path.join(ctx.outDir, 'report.csv'), 'utf8')).split('\r\n');
  assert.ok(csv[0]!.endsWith(',modules_to_save,status,reason'), csv[0]);
  assert.ok(csv[1]!.endsWith(',finished,'), csv[1]);
  // Label, stage, role, the two loop variables, no numbers or paths (20 columns), status, reason.
  const empty = Array<string>(20).fill('');
  assert.is(csv[3], ['"embed=false, head=true"', '"eval[embed=false,head=true]"', 'run', 'false', 'true', ...empty, 'failed', 'loss is NaN at step 40'].join(','));
  assert.is(csv[4], ['eval_base', 'eval_base', 'baseline', '', '', ...empty, 'skipped', 'upstream base_sft failed'].join(','));
  const html = await readFile(path.join(ctx.outDir, 'report.html'), 'utf8');
  assert.match(html, '<tr class="baseline missing skipped"><td>eval_base</td>');
  assert.not.match(await readFile(path.join(ctx.outDir, 'accuracy.svg'), 'utf8'), 'embed=false, head=true');
});

test('a partial report with every variant missing fails, naming them', async () => {
  const ws = await tempDir('report-ws');
  const ctx = await makeContext(REPORT, { workspace: ws, inputs: { runs: [], start: await evaluateRefs(ws, VARIANTS.slice(0, 1)) } });
  ctx.missing = { runs: [missingInput('eval[a=1]', { a: 1 }, 'failed', 'killed'), missingInput('eval[a=2]', { a: 2 }, 'skipped', 'upstream sft[a=2] failed')] };
  const error = await REPORT.run(ctx).then(() => undefined, (e: Error) => e.message);
  assert.is(error, 'report: every variant is missing (eval[a=1] failed, eval[a=2] skipped): no table to write');
});

test('an unknown baseline names the choices', async () => {
  try {
    await runReport({ baseline: 'nope' });
    assert.unreachable('should fail');
  } catch (err) {
    assert.is((err as Error).message,
      'report: baseline "nope" is none of the inputs; use one of: eval[embed=true,head=true], eval[embed=true,head=false], eval[embed=false,head=true]');
  }
});

test('inputs without evaluate metrics are named with what they lack', async () => {
  const ws = await tempDir('report-bad');
  const ctx = await makeContext(REPORT, { workspace: ws, inputs: { runs: [{ stage: 'data', key: 'k', kind: 'gsm8k', dir: ws, variant: {}, params: {}, metrics: { counts: {} } }] } });
  try {
    await REPORT.run(ctx);
    assert.unreachable('should fail');
  } catch (err) {
    assert.is((err as Error).message, 'report: inputs lack the metrics evaluate writes:\n  data (kind gsm8k): `accuracy` must be a number; ' +
      '`accuracy_std` must be a number; `n` must be a number; `avg_pauses` must be a number; `eval_loss` must be a number or null; ' +
      '`predictions` must be a path; `model` must be {stage, key}; `training` must be null or {train_loss_curve, eval_loss_curve, eval_loss, trainable}');
  }
});

test('the git line: the cache folder in the workspace is no uncommitted change; a repository without a commit says so', async () => {
  const ws = await tempDir('report-git');
  const git = (...args: string[]) => execFileSync('git', ['-c', 'user.name=t', '-c', 'user.email=t@example.com', ...args], { cwd: ws, encoding: 'utf8' });
  git('init', '-q');
  const runs = await evaluateRefs(ws);
  const gitLine = async () => {
    const ctx = await makeContext(REPORT, { workspace: ws, inputs: { runs } });
    await REPORT.run(ctx);
    return (await readFile(path.join(ctx.outDir, 'report.md'), 'utf8')).split('\n')[3];
  };
  assert.is(await gitLine(), '- **git commit**: no commit yet');
  await writeFile(path.join(ws, 'pause.pipe'), '# the pipeline\n');
  git('add', 'pause.pipe');
  git('commit', '-q', '-m', 'pipeline');
  const commit = git('rev-parse', 'HEAD').trim().slice(0, 12);
  assert.is(await gitLine(), `- **git commit**: ${commit}, clean`);
  await writeFile(path.join(ws, 'pause.pipe'), '# the pipeline, edited\n');
  assert.is(await gitLine(), `- **git commit**: ${commit} with uncommitted changes (1 file)`);
});

test.after(removeTempDirs);


test('a baseline that names no input lists three of a matrix\'s 240 inputs and counts the rest', () => {
  const runs = Array.from({ length: 240 }, (_, i) => ({ name: `eval[v=${i}]`, variant: { v: i } }));
  const problems = REPORT.check!({ title: 'Results', baseline: 'eval[v=x]', reference: null }, {
    workspace: '/ws', inputs: ['runs'], upstream: { runs }, pipelineFiles: [], file: '/ws/m.pipe', outputs: [],
  });
  assert.equal(problems.map((p) => p.notes), [['the inputs: eval[v=0], eval[v=1], eval[v=2] and 237 more']]);
});

test('a report run with an unknown baseline lists three of its many inputs', async () => {
  const variants = Array.from({ length: 6 }, (_, i) => ({ ...VARIANTS[0]!, variant: { v: i }, evalKey: `e${i}00` }));
  try {
    await runReport({ baseline: 'nope' }, {}, variants);
    assert.unreachable('should fail');
  } catch (err) {
    assert.is((err as Error).message,
      'report: baseline "nope" is none of the inputs; use one of: eval[v=0], eval[v=1], eval[v=2] and 3 more');
  }
});

test.run();

import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { JsonValue } from '../../runtime/json.ts';
import type { ArtifactRef } from '../../stages/kind.ts';
import { REPORT, REPORT_FILES } from '../../stages/report.ts';
import { makeContext, removeTempDirs, tempDir } from './data/stage-context.ts';

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
        avg_pauses: 1.5,
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

async function runReport(params: Record<string, JsonValue> = {}, extraInputs: Record<string, ArtifactRef[]> = {}) {
  const ws = await tempDir('report-ws');
  const ctx = await makeContext(REPORT, { params, workspace: ws, inputs: { runs: await evaluateRefs(ws), ...extraInputs } });
  const result = await REPORT.run(ctx);
  const read = (name: string): Promise<string> => readFile(path.join(ctx.outDir, name), 'utf8');
  return { ws, ctx, result, read };
}

test('report.md holds the exact table for 3 variants, best accuracy and lowest eval loss in bold', async () => {
  const { read } = await runReport({ title: 'Pause warm-up' });
  const md = await read('report.md');
  const table = md.split('\n').filter((l) => l.startsWith('|'));
  assert.equal(table, [
    '| variant | trainable | LoRA | test accuracy | std | eval loss | avg pauses | predictions | model |',
    '|---|---|:---:|:---:|:---:|:---:|:---:|---|---|',
    '| embed=true, head=true | new_embedding + ctrl_tok_clf | no | 0.480 | 0.500 | 0.57003 | 1.50 | `.pausepipe/objects/e1/e1a0/artifacts/test_results.json` | `.pausepipe/objects/a1/a1b2/artifacts` |',
    '| embed=true, head=false | new_embedding | yes | 0.140 | 0.347 | 1.99349 | 1.50 | `.pausepipe/objects/e2/e2b0/artifacts/test_results.json` | `.pausepipe/objects/c3/c3d4/artifacts` |',
    '| embed=false, head=true | ctrl_tok_clf | yes | **0.560** | 0.496 | **0.51348** | 1.50 | `.pausepipe/objects/e3/e3c0/artifacts/test_results.json` | `.pausepipe/objects/e5/e5f6/artifacts` |',
  ]);
  assert.ok(md.startsWith('# Pause warm-up\n\n| variant |'));
  assert.ok(md.includes('Best test accuracy: 0.560 (embed=false, head=true). Lowest eval loss: 0.51348 (embed=false, head=true).'));
  assert.ok(md.includes(`pausepipe export 'warm[embed=true,head=true]' exported/warm-embed-true-head-true --pipeline "$PIPE"\n`));
  assert.ok(md.includes('![Test accuracy per variant](accuracy.svg)'));
});

test('report.csv has one row per variant with full-precision numbers', async () => {
  const { read } = await runReport();
  const lines = (await read('report.csv')).split('\r\n');
  assert.is(lines[0], 'label,stage,role,trainable,lora,trainable_params,total_params,accuracy,accuracy_std,n,eval_loss,delta_accuracy,avg_pauses,predictions,model_stage,model_key,model_dir,modules_to_save');
  assert.is(lines[1], '"embed=true, head=true","eval[embed=true,head=true]",run,new_embedding+ctrl_tok_clf,false,1000,50000,0.48,0.4996,100,0.57003,,1.5,.pausepipe/objects/e1/e1a0/artifacts/test_results.json,"warm[embed=true,head=true]",a1b2,.pausepipe/objects/a1/a1b2/artifacts,');
  assert.is(lines.length, 5); // header, 3 rows, the empty string after the last CRLF
  assert.is(lines[4], '');
});

test('report.html is self-contained: both charts inline, no scripts, no URLs', async () => {
  const { read } = await runReport();
  const html = await read('report.html');
  assert.not.match(html, /http/i);
  assert.not.match(html, /<script|<link|@import|url\(/i);
  assert.is(html.match(/<svg /g)!.length, 2);
  assert.ok(html.includes('Test accuracy per variant</text>'));
  assert.ok(html.includes('Training loss</text>'));
  assert.ok(html.includes('<td class="num"><strong>0.560</strong></td>'));
  assert.ok(html.includes('<td class="num"><strong>0.51348</strong></td>'));
  assert.is(html.match(/<strong>/g)!.length, 2);
});

test('the SVG files are written: bars per variant, the best highlighted; one line per curve with a legend', async () => {
  const { read, ctx } = await runReport();
  for (const name of REPORT_FILES) assert.ok((await read(name)).length > 0, name);
  const bars = await read('accuracy.svg');
  assert.ok(bars.startsWith('<svg xmlns="http://www.w3.org/2000/svg"'));
  assert.is(bars.match(/<rect x=/g)!.length, 3);
  assert.is(bars.match(/fill="#1f5fa8"/g)!.length, 1); // only the best bar
  assert.ok(bars.includes('>embed=false, head=true</text>'));
  const lines = await read('loss-curves.svg');
  assert.is(lines.match(/<path class="series" d="M[^"]*" fill="none" stroke="#/g)!.length, 6); // train + validation per variant
  assert.is(lines.match(/<g class="legend">/g)!.length, 3);
  assert.ok(lines.includes('solid: training loss, dashed: validation loss'));
  assert.ok(ctx.logs.some((l) => l.startsWith('report: 3 rows;')));
});

test('the metrics are the table rows as JSON', async () => {
  const { result } = await runReport();
  const rows = result.metrics!.rows as Record<string, JsonValue>[];
  assert.is(rows.length, 3);
  assert.equal(rows[2], {
    label: 'embed=false, head=true', stage: 'eval[embed=false,head=true]', role: 'run',
    trainable: ['ctrl_tok_clf'], lora: true, trainable_params: 1000, total_params: 50000, modules_to_save: null,
    accuracy: 0.56, accuracy_std: 0.4964, n: 100, eval_loss: 0.51348, avg_pauses: 1.5,
    predictions: '.pausepipe/objects/e3/e3c0/artifacts/test_results.json',
    model_stage: 'warm[embed=false,head=true]', model_key: 'e5f6', model_dir: '.pausepipe/objects/e5/e5f6/artifacts',
    delta_accuracy: null,
  });
});

test('a baseline adds a Δ accuracy column; baselines without eval loss show "-"', async () => {
  const ws = await tempDir('report-base');
  const [base] = await evaluateRefs(ws, [{ ...VARIANTS[0]!, variant: {}, evalKey: 'f9f9', modelKey: 'abab', accuracy: 0.5, evalLoss: null }]);
  base!.stage = 'eval_base';
  const { read } = await runReport({ baseline: 'eval_base' }, { baselines: [base!] });
  const table = (await read('report.md')).split('\n').filter((l) => l.startsWith('|'));
  assert.is(table[0], '| variant | trainable | LoRA | test accuracy | std | Δ accuracy | eval loss | avg pauses | predictions | model |');
  assert.ok(table[2]!.includes('| 0.480 | 0.500 | -0.020 | 0.57003 |'));
  assert.ok(table[4]!.includes('| **0.560** | 0.496 | +0.060 | **0.51348** |'));
  assert.ok(table[5]!.startsWith('| eval_base | new_embedding + ctrl_tok_clf | no | 0.500 | 0.500 | +0.000 | - | 1.50 |'));
});

test('a model without training facts (not from sft) gets "-" and no curve', async () => {
  const ws = await tempDir('report-untrained');
  const refs = await evaluateRefs(ws, VARIANTS.slice(0, 2));
  refs[1]!.metrics.training = null;
  (refs[0]!.metrics.training as Record<string, JsonValue>).trainable = null;
  const ctx = await makeContext(REPORT, { workspace: ws, inputs: { runs: refs } });
  await REPORT.run(ctx);
  const table = (await readFile(path.join(ctx.outDir, 'report.md'), 'utf8')).split('\n').filter((l) => l.startsWith('|'));
  assert.ok(table[2]!.startsWith('| embed=true, head=true | - | - | **0.480** |'), table[2]);
  assert.ok(table[3]!.startsWith('| embed=true, head=false | - | - | 0.140 |'), table[3]);
  const svg = await readFile(path.join(ctx.outDir, 'loss-curves.svg'), 'utf8');
  assert.is(svg.match(/<g class="legend">/g)!.length, 1);
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

test.after(removeTempDirs);

test.run();

// The pipeline graph: loops as clusters of tables (a row per variant), bundled edges, status colours, the SVG drawing.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { dagDot, dagSvg, mermaidTooLarge, renderDag, STATUS_COLORS } from '../../runtime/dag.ts';
import type { StageStatus } from '../../runtime/plan.ts';
import { instance, pipelineOf } from '../helpers/runner.ts';

const pipeline = pipelineOf('/ws', [
  instance('prep', 'sh', {}),
  instance('train[lr=1,lora=true]', 'sh', {}, { inputs: { base: 'prep' }, variant: { lr: 1, lora: true } }),
  instance('train[lr=2,lora=true]', 'sh', {}, { inputs: { base: 'prep' }, variant: { lr: 2, lora: true } }),
  instance('score[lr=1,lora=true]', 'sh', {}, { inputs: { model: 'train[lr=1,lora=true]', base: 'prep' }, variant: { lr: 1, lora: true } }),
  instance('score[lr=2,lora=true]', 'sh', {}, { inputs: { model: 'train[lr=2,lora=true]', base: 'prep' }, variant: { lr: 2, lora: true } }),
  instance('seeded[seed=7]', 'sh', {}, { variant: { seed: 7 } }),
  instance('table', 'sh', {}, { inputs: { runs: ['score[lr=1,lora=true]', 'score[lr=2,lora=true]'], one: ['seeded[seed=7]'] } }),
  instance('pick', 'sh', {}, { inputs: { best: ['score[lr=2,lora=true]'] } }),
]);

const body = (dot: string): string[] => dot.split('\n').slice(4, -2);

test('a loop is a cluster with one table per declared stage, a row per variant and a column per loop variable', () => {
  const dot = dagDot(pipeline);
  assert.equal(body(dot).slice(0, 10), [
    '  "prep" [label="prep\\n(sh)"];',
    '  "table" [label="table\\n(sh)"];',
    '  "pick" [label="pick\\n(sh)"];',
    '  subgraph cluster_loop0 {',
    '    label="for each lr, lora (2 variants)"; style="rounded,dashed"; color="#888888"; fontname="Helvetica"; fontsize=11;',
    '    "loop:train" [shape=plain, style="", label=<<TABLE BORDER="0" CELLBORDER="1" CELLSPACING="0" CELLPADDING="3">' +
      '<TR><TD PORT="t" COLSPAN="2" BGCOLOR="#eeeeee"><B>train</B> (sh)</TD></TR><TR><TD><I>lr</I></TD><TD><I>lora</I></TD></TR>' +
      '<TR><TD PORT="i0" ALIGN="LEFT">1</TD><TD PORT="o0" ALIGN="LEFT">true</TD></TR>' +
      '<TR><TD PORT="i1" ALIGN="LEFT">2</TD><TD PORT="o1" ALIGN="LEFT">true</TD></TR></TABLE>>];',
    '    "loop:score" [shape=plain, style="", label=<<TABLE BORDER="0" CELLBORDER="1" CELLSPACING="0" CELLPADDING="3">' +
      '<TR><TD PORT="t" COLSPAN="2" BGCOLOR="#eeeeee"><B>score</B> (sh)</TD></TR><TR><TD><I>lr</I></TD><TD><I>lora</I></TD></TR>' +
      '<TR><TD PORT="i0" ALIGN="LEFT">1</TD><TD PORT="o0" ALIGN="LEFT">true</TD></TR>' +
      '<TR><TD PORT="i1" ALIGN="LEFT">2</TD><TD PORT="o1" ALIGN="LEFT">true</TD></TR></TABLE>>];',
    '  }',
    '  subgraph cluster_loop1 {',
    '    label="for each seed (1 variant)"; style="rounded,dashed"; color="#888888"; fontname="Helvetica"; fontsize=11;',
  ]);
});

test('edges are bundled: a shared input is one edge to a table, variants feed each other row to row, a subset leaves from its rows', () => {
  const edges = body(dagDot(pipeline)).filter((l) => l.includes(' -> '));
  assert.equal(edges, [
    '  "prep" -> "loop:train":t:w [label="base"];',
    '  "loop:train":o0:e -> "loop:score":i0:w [label="model"];',
    '  "loop:train":o1:e -> "loop:score":i1:w;',
    '  "prep" -> "loop:score":t:w [label="base"];',
    '  "loop:score":t:e -> "table" [label="runs (all 2)"];',
    '  "loop:seeded":t:e -> "table" [label="one (all 1)"];',
    '  "loop:score":o1:e -> "pick" [label="best"];',
  ]);
});

test('two loops over the same variable are two clusters, each with its own count of variants', () => {
  const twoLoops = pipelineOf('/ws', [
    instance('a[lr=1]', 'sh', {}, { variant: { lr: 1 } }),
    instance('a[lr=2]', 'sh', {}, { variant: { lr: 2 } }),
    instance('b[lr=3]', 'sh', {}, { variant: { lr: 3 } }),
    instance('b[lr=4]', 'sh', {}, { variant: { lr: 4 } }),
    instance('b[lr=5]', 'sh', {}, { variant: { lr: 5 } }),
    instance('c[lr=3]', 'sh', {}, { inputs: { up: 'b[lr=3]' }, variant: { lr: 3 } }),
    instance('c[lr=4]', 'sh', {}, { inputs: { up: 'b[lr=4]' }, variant: { lr: 4 } }),
    instance('c[lr=5]', 'sh', {}, { inputs: { up: 'b[lr=5]' }, variant: { lr: 5 } }),
  ]);
  const clusters = body(dagDot(twoLoops)).filter((l) => l.includes('subgraph') || l.startsWith('    label=') || l.startsWith('    "loop:'));
  assert.equal(clusters.map((l) => l.replace(/ \[shape=plain.*$/, '').replace(/; style=.*$/, '')), [
    '  subgraph cluster_loop0 {',
    '    label="for each lr (2 variants)"',
    '    "loop:a"',
    '  subgraph cluster_loop1 {',
    '    label="for each lr (3 variants)"',
    '    "loop:b"',
    '    "loop:c"',
  ]);
});

test('with a plan, stages and rows are filled by status and a legend says what the colours mean', () => {
  const status = new Map<string, StageStatus>([
    ['prep', 'fresh'], ['train[lr=1,lora=true]', 'fresh'], ['train[lr=2,lora=true]', 'stale'], ['table', 'error'],
  ]);
  const dot = dagDot(pipeline, status);
  assert.ok(dot.includes(`  "prep" [label="prep\\n(sh)", fillcolor="${STATUS_COLORS.fresh}"];`));
  assert.ok(dot.includes(`  "table" [label="table\\n(sh)", fillcolor="${STATUS_COLORS.error}"];`));
  assert.ok(dot.includes(`<TR><TD PORT="i1" BGCOLOR="${STATUS_COLORS.stale}" ALIGN="LEFT">2</TD>`));
  assert.ok(dot.includes(`<TD BGCOLOR="${STATUS_COLORS.fresh}">fresh (cached)</TD><TD BGCOLOR="${STATUS_COLORS.stale}">stale (runs next)</TD>`));
  assert.not.ok(dagDot(pipeline).includes('fresh (cached)'));
});

test('the SVG is drawn in-process: one cluster per loop, a table cell per variable value', async () => {
  const svg = await dagSvg(pipeline);
  assert.ok(svg.startsWith('<?xml'));
  assert.is(svg.match(/<g id="clust\d+" class="cluster">/g)!.length, 2);
  assert.ok(svg.includes('>for each lr, lora (2 variants)</text>'));
  assert.is(svg.match(/<g id="edge\d+" class="edge">/g)!.length, 7);
});

test('Mermaid labels write the characters Mermaid would read as markup as its entity codes', async () => {
  const odd = pipelineOf('/ws', [
    instance('t[a"b]', 'sh', {}, { variant: { tag: 'a"b' } }),
    instance('t[x<y>&z]', 'sh', {}, { variant: { tag: 'x<y>&z' } }),
    instance('t[#quot;]', 'sh', {}, { variant: { tag: '#quot;' } }),
    instance('t[[br]|1]', 'sh', {}, { variant: { tag: '[br]|1' } }),
  ]);
  assert.is(await renderDag(odd, 'mermaid'), [
    'flowchart TD',
    '  n0["t[a#quot;b]"]',
    '  n1["t[x#lt;y#gt;#amp;z]"]',
    '  n2["t[#35;quot;]"]',
    '  n3["t[[br]|1]"]',
    '',
  ].join('\n'));
});

test('a Mermaid diagram past Mermaid\'s default limits says so: 240 variants of train → eval → report make 720 edges', async () => {
  const matrix = (n: number) => {
    const trains = Array.from({ length: n }, (_, i) => instance(`train[v=${i}]`, 'sh', {}, { inputs: { base: 'prep' }, variant: { v: i } }));
    const evals = trains.map((t, i) => instance(`eval[v=${i}]`, 'sh', {}, { inputs: { model: t.name }, variant: { v: i } }));
    return pipelineOf('/ws', [instance('prep', 'sh', {}), ...trains, ...evals, instance('table', 'sh', {}, { inputs: { runs: evals.map((e) => e.name) } })]);
  };
  assert.is(mermaidTooLarge(await renderDag(matrix(166), 'mermaid')), null);
  assert.is(mermaidTooLarge(await renderDag(matrix(240), 'mermaid')),
    'the diagram has 720 edges (Mermaid draws at most 500 by default): raise maxEdges/maxTextSize in the renderer\'s config, ' +
    'or use --format svg, which draws each loop as tables');
  const long = await renderDag(matrix(600), 'mermaid');
  assert.ok(mermaidTooLarge(long)!.startsWith(`the diagram has 1,800 edges (Mermaid draws at most 500 by default) and ${long.length.toLocaleString('en-US')} characters (at most 50,000): `));
});

test.run();

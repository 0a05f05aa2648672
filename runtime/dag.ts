// The pipeline graph for people: Mermaid text, Graphviz dot with loops as clusters and status colours, and SVG.
import type { JsonValue } from './json.ts';
import type { Pipeline, StageInstance } from './pipeline.ts';
import type { StageStatus } from './plan.ts';

export const DAG_FORMATS = ['mermaid', 'dot', 'svg'] as const;
export type DagFormat = (typeof DAG_FORMATS)[number];

interface Edge {
  from: string;
  to: string;
  input: string;
}

function edges(pipeline: Pipeline): Edge[] {
  return pipeline.stages.flatMap((s) =>
    Object.entries(s.inputs).flatMap(([input, b]) => b.stages.map((from) => ({ from, to: s.name, input }))),
  );
}

/**
 * Mermaid's entity codes for the characters a quoted label cannot hold as they are: `"` ends it, `<` and `>` make
 * HTML tags (`x<y>` drew `x`), `&` starts an HTML entity, and `#` starts one of these codes (`#quot;` drew `"`).
 */
const MERMAID_ENTITIES: Record<string, string> = { '#': '#35;', '"': '#quot;', '<': '#lt;', '>': '#gt;', '&': '#amp;' };

/** Mermaid: generated names hold `[`, `=` and `,`, so nodes get ids n0, n1... and quoted labels. */
function mermaid(pipeline: Pipeline): string {
  const id = new Map(pipeline.stages.map((s, i) => [s.name, `n${i}`]));
  const label = (text: string) => `"${text.replace(/[#"<>&]/g, (c) => MERMAID_ENTITIES[c]!)}"`;
  const lines = ['flowchart TD'];
  for (const s of pipeline.stages) lines.push(`  ${id.get(s.name)}[${label(s.name)}]`);
  for (const e of edges(pipeline)) lines.push(`  ${id.get(e.from)} -->|${label(e.input)}| ${id.get(e.to)}`);
  return `${lines.join('\n')}\n`;
}

/** Mermaid's defaults for `maxEdges` and `maxTextSize`: past them it draws an error instead (GitHub, mermaid.live). */
export const MERMAID_MAX_EDGES = 500;
export const MERMAID_MAX_TEXT = 50_000;

/**
 * Why Mermaid, as configured by default, would refuse this diagram, or null. The limits are secure settings a
 * diagram's own `%%{init}%%` cannot raise, so a large matrix (240 variants make 720 edges) is better drawn as svg.
 */
export function mermaidTooLarge(text: string): string | null {
  const edges = text.split('\n').filter((l) => l.includes(' -->')).length;
  const over = [
    edges > MERMAID_MAX_EDGES ? `${edges.toLocaleString('en-US')} edges (Mermaid draws at most ${MERMAID_MAX_EDGES} by default)` : null,
    text.length > MERMAID_MAX_TEXT ? `${text.length.toLocaleString('en-US')} characters (at most ${MERMAID_MAX_TEXT.toLocaleString('en-US')})` : null,
  ].filter((x): x is string => x !== null);
  if (over.length === 0) return null;
  return `the diagram has ${over.join(' and ')}: raise maxEdges/maxTextSize in the renderer's config, or use --format svg, which draws each loop as tables`;
}

/**
 * What a picture fills a stage by: the plan's status, `failed` for a stale stage whose last attempt failed, and
 * `partial` for one whose last run made only a partial result (a report missing failed variants).
 */
export type DagStatus = StageStatus | 'failed' | 'partial';

/** Fill colours: done, to run, partial in its last run (runs next), failed in its last run (runs next), cannot run. */
export const STATUS_COLORS: Record<DagStatus, string> = { fresh: '#d5efd5', stale: '#ffe3a3', partial: '#d9e7a6', failed: '#f4a259', error: '#f6c4bd' };
const STATUS_WORDS: Record<DagStatus, string> = {
  fresh: 'fresh (cached)', stale: 'stale (runs next)', partial: 'partial last run (runs next)', failed: 'failed last run (runs next)', error: 'cannot run',
};

/**
 * The stages of one declared loop stage (e.g. every `warm[...]`), drawn as one table: a row per variant, a
 * column per loop variable. Eighteen variants side by side made warmup.pipe's graph 10,000 pixels wide.
 */
interface Table {
  id: string;
  declared: string;
  kind: string;
  variables: string[];
  /** The instances, one per row, in pipeline order. */
  rows: StageInstance[];
}

/**
 * A loop: the tables of the stages declared in one `for each`. Every stage of a loop has the same variants, so a loop
 * is recognised by its variables and their values in order: two loops over `lr` with other values are two clusters
 * (two loops over the same values are drawn as one, which says nothing untrue).
 */
interface Loop {
  variables: string[];
  tables: Table[];
}

const q = (text: string): string => JSON.stringify(text);
const html = (text: string): string => text.replaceAll('&', '&amp;').replaceAll('<', '&lt;').replaceAll('>', '&gt;').replaceAll('"', '&quot;');
const valueText = (v: JsonValue | undefined): string => (typeof v === 'string' ? v : JSON.stringify(v ?? null));

function loopsOf(pipeline: Pipeline): { loops: Loop[]; tableOf: Map<string, { table: Table; row: number }> } {
  const loops = new Map<string, Loop>();
  const tables = new Map<string, Table>();
  const tableOf = new Map<string, { table: Table; row: number }>();
  for (const s of pipeline.stages) {
    const variables = Object.keys(s.variant);
    if (variables.length === 0) continue;
    let table = tables.get(s.declaredName);
    if (!table) {
      table = { id: `loop:${s.declaredName}`, declared: s.declaredName, kind: s.kind, variables, rows: [] };
      tables.set(s.declaredName, table);
    }
    tableOf.set(s.name, { table, row: table.rows.length });
    table.rows.push(s);
  }
  for (const table of tables.values()) {
    const key = JSON.stringify([table.variables, table.rows.map((r) => table.variables.map((v) => r.variant[v] ?? null))]);
    const loop = loops.get(key) ?? { variables: table.variables, tables: [] };
    loop.tables.push(table);
    loops.set(key, loop);
  }
  return { loops: [...loops.values()], tableOf };
}

function tableLabel(t: Table, status: ReadonlyMap<string, DagStatus> | undefined): string {
  const fill = (name: string): string => {
    const st = status?.get(name);
    return st ? ` BGCOLOR="${STATUS_COLORS[st]}"` : '';
  };
  const span = t.variables.length;
  const rows = t.rows.map((s, i) => {
    const cells = t.variables.map((v, j) => {
      // Edges enter a row at its first cell and leave from its last (the graph runs left to right).
      const port = [j === 0 ? `PORT="i${i}"` : '', j === span - 1 ? `PORT="o${i}"` : ''].filter(Boolean);
      const ports = j === 0 && j === span - 1 ? ` PORT="r${i}"` : port.length ? ` ${port.join(' ')}` : '';
      return `<TD${ports}${fill(s.name)} ALIGN="LEFT">${html(valueText(s.variant[v]))}</TD>`;
    });
    return `<TR>${cells.join('')}</TR>`;
  });
  const header = t.variables.map((v) => `<TD><I>${html(v)}</I></TD>`).join('');
  return `<<TABLE BORDER="0" CELLBORDER="1" CELLSPACING="0" CELLPADDING="3">` +
    `<TR><TD PORT="t" COLSPAN="${span}" BGCOLOR="#eeeeee"><B>${html(t.declared)}</B> (${html(t.kind)})</TD></TR>` +
    `<TR>${header}</TR>${rows.join('')}</TABLE>>`;
}

/**
 * Graphviz dot, left to right. Stages outside loops are boxes; each loop is a cluster holding one table per
 * declared stage. An input shared by every row of a table is one edge to its heading; per-variant inputs go
 * from row to row. With `status` (from a plan), boxes and rows are filled by status and a legend is added.
 */
export function dagDot(pipeline: Pipeline, status?: ReadonlyMap<string, DagStatus>): string {
  const { loops, tableOf } = loopsOf(pipeline);
  const lines = [
    'digraph pipeline {',
    '  rankdir=LR; compound=true; nodesep=0.2; ranksep=0.5;',
    '  node [shape=box, style="rounded,filled", fillcolor="#ffffff", fontname="Helvetica", fontsize=11];',
    '  edge [fontname="Helvetica", fontsize=9, color="#666666"];',
  ];
  for (const s of pipeline.stages) {
    if (tableOf.has(s.name)) continue;
    const st = status?.get(s.name);
    lines.push(`  ${q(s.name)} [label=${q(`${s.name}\n(${s.kind})`)}${st ? `, fillcolor=${q(STATUS_COLORS[st])}` : ''}];`);
  }
  loops.forEach((loop, i) => {
    const variants = loop.tables[0]!.rows.length;
    lines.push(`  subgraph cluster_loop${i} {`);
    lines.push(`    label=${q(`for each ${loop.variables.join(', ')} (${variants} variant${variants === 1 ? '' : 's'})`)}; style="rounded,dashed"; color="#888888"; fontname="Helvetica"; fontsize=11;`);
    for (const t of loop.tables) lines.push(`    ${q(t.id)} [shape=plain, style="", label=${tableLabel(t, status)}];`);
    lines.push('  }');
  });
  // Bundle edges by (upstream table or stage, downstream table or stage, input).
  const groups = new Map<string, Edge[]>();
  for (const e of edges(pipeline)) {
    const from = tableOf.get(e.from)?.table.id ?? e.from;
    const to = tableOf.get(e.to)?.table.id ?? e.to;
    const k = [from, to, e.input].join('\u0000');
    groups.set(k, [...(groups.get(k) ?? []), e]);
  }
  const end = (name: string, side: 'in' | 'out'): string => {
    const at = tableOf.get(name);
    if (!at) return q(name);
    const single = at.table.variables.length === 1;
    return `${q(at.table.id)}:${single ? `r${at.row}` : `${side === 'in' ? 'i' : 'o'}${at.row}`}:${side === 'in' ? 'w' : 'e'}`;
  };
  for (const group of groups.values()) {
    const { input } = group[0]!;
    const fromTable = tableOf.get(group[0]!.from)?.table;
    const toTable = tableOf.get(group[0]!.to)?.table;
    const coversFrom = fromTable !== undefined && new Set(group.map((e) => e.from)).size === fromTable.rows.length;
    const coversTo = toTable !== undefined && new Set(group.map((e) => e.to)).size === toTable.rows.length;
    if (fromTable && toTable) {
      // Row to row: the variants of one loop feed each other; the input name is said once.
      group.forEach((e, i) => lines.push(`  ${end(e.from, 'out')} -> ${end(e.to, 'in')}${i === 0 ? ` [label=${q(input)}]` : ''};`));
    } else if (toTable && coversTo) {
      lines.push(`  ${q(group[0]!.from)} -> ${q(toTable.id)}:t:w [label=${q(input)}];`);
    } else if (fromTable && coversFrom) {
      lines.push(`  ${q(fromTable.id)}:t:e -> ${q(group[0]!.to)} [label=${q(`${input} (all ${fromTable.rows.length})`)}];`);
    } else {
      for (const e of group) lines.push(`  ${end(e.from, 'out')} -> ${end(e.to, 'in')} [label=${q(input)}];`);
    }
  }
  if (status) {
    // `partial` and `failed` only where some stage is so: a picture of a pipeline that never failed stays as it was.
    const present = new Set(status.values());
    const shown = (['fresh', 'stale', 'partial', 'failed', 'error'] as const).filter((st) => (st !== 'failed' && st !== 'partial') || present.has(st));
    const legend = shown.map((s) => `<TD BGCOLOR="${STATUS_COLORS[s]}">${STATUS_WORDS[s]}</TD>`).join('');
    lines.push(`  label=<<TABLE BORDER="0" CELLBORDER="1" CELLSPACING="4" CELLPADDING="3"><TR>${legend}</TR></TABLE>>; labelloc=b; fontname="Helvetica"; fontsize=10;`);
  }
  lines.push('}');
  return `${lines.join('\n')}\n`;
}

/** The dot graph laid out and drawn by Graphviz compiled to WebAssembly (@viz-js/viz), in this process. */
export async function dagSvg(pipeline: Pipeline, status?: ReadonlyMap<string, DagStatus>): Promise<string> {
  const { instance } = await import('@viz-js/viz');
  const viz = await instance();
  return viz.renderString(dagDot(pipeline, status), { format: 'svg', engine: 'dot' });
}

export async function renderDag(pipeline: Pipeline, format: DagFormat, status?: ReadonlyMap<string, DagStatus>): Promise<string> {
  if (format === 'mermaid') return mermaid(pipeline);
  return format === 'dot' ? dagDot(pipeline, status) : dagSvg(pipeline, status);
}

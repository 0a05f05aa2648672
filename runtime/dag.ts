// The pipeline graph as text for diagram tools: Mermaid flowcharts (Markdown renders them) and Graphviz dot.
import type { Pipeline } from './pipeline.ts';

export type DagFormat = 'mermaid' | 'dot';

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

/** Mermaid: generated names hold `[`, `=` and `,`, so nodes get ids n0, n1... and quoted labels. */
function mermaid(pipeline: Pipeline): string {
  const id = new Map(pipeline.stages.map((s, i) => [s.name, `n${i}`]));
  const label = (text: string) => `"${text.replace(/"/g, '#quot;')}"`;
  const lines = ['flowchart TD'];
  for (const s of pipeline.stages) lines.push(`  ${id.get(s.name)}[${label(s.name)}]`);
  for (const e of edges(pipeline)) lines.push(`  ${id.get(e.from)} -->|${label(e.input)}| ${id.get(e.to)}`);
  return `${lines.join('\n')}\n`;
}

function dot(pipeline: Pipeline): string {
  const q = (text: string) => JSON.stringify(text);
  const lines = ['digraph pipeline {', '  node [shape=box];'];
  for (const s of pipeline.stages) lines.push(`  ${q(s.name)};`);
  for (const e of edges(pipeline)) lines.push(`  ${q(e.from)} -> ${q(e.to)} [label=${q(e.input)}];`);
  lines.push('}');
  return `${lines.join('\n')}\n`;
}

export function renderDag(pipeline: Pipeline, format: DagFormat): string {
  return format === 'dot' ? dot(pipeline) : mermaid(pipeline);
}

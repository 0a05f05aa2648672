// Seeded fuzzing of loading (parse, expand, validate) with mutations of the shipped .pipe files: no exception
// escapes, every diagnostic has file:line:col, and no case takes over 2 s of CPU. About 25 s in all.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { formatDiagnostics } from '../../grammar/diagnostics.ts';
import { loadPipelineText } from '../../runtime/load.ts';
import { STAGE_KINDS } from '../../stages/index.ts';
import { createRng } from '../../stages/data/random.ts';
import { pipeFiles } from '../pipelines/pipeline-files.ts';

/** Change the seed (or the budget) from the environment to explore further; a failure names both. */
const SEED = Number(process.env.PAUSEPIPE_FUZZ_SEED ?? 20251127);
const BUDGET_MS = Number(process.env.PAUSEPIPE_FUZZ_MS ?? 25_000);
const MAX_CASES = 5_000;
/** CPU time, not wall time: the test machine is shared, and other processes must not fail it. */
const MAX_CASE_CPU_S = 2;

/** mulberry32 (the data stages' generator), so case N is the same text on every machine. */
function generator(seed: number): () => number {
  return createRng(seed).next;
}

/** Pieces of the language, of other languages and of hostile input, inserted at random places. */
const FRAGMENTS = [
  '(', ')', '[', ']', '{', '}', '"', '${', ',', ':', '=', '+', '-', '*', '/', '%', '==', '<=', 'not ', 'and ', 'or ',
  'if ', 'then ', 'else ', 'for each x in ', ' where ', ' named "${x}" ', 'stage s = sh ', 'let ', 'in ', '\n', '\\', '\\q',
  '\uFEFF', '\u0000', 'é', '😀', '\r\n', '\t', '# comment\n', '9007199254740993', '1e999', '-0', '0.5e-3', '[*]', 'eval[*]',
  'warm[pause="embed"]', 'range(0, 1000000)', 'range(9007199254740991, 9007199254740999)', 'range(3)', 'x', 'data',
  'include "x.pipe"\n', 'include "/dev/zero"\n', 'include "/etc/passwd"\n', 'include "demo.pipe"\n', 'include "${x}"\n',
  'outs: [".pausepipe"]', 'outs: ["../escape"]', 'deps: ["a"], outs: ["a"]', 'patterns: { "(": 1 }', 'command: ["true"]',
];
/** Repeated to make nesting and size bombs. */
const REPEATED = ['(', '[', '{a: ', '- ', 'not ', 'if true then 1 else ', '"${', '1 + ', 'stage s = sh { command: ["x"] }\n'];

type Rng = () => number;
const pick = <T>(rng: Rng, list: readonly T[]): T => list[Math.floor(rng() * list.length)]!;
const at = (rng: Rng, text: string) => Math.floor(rng() * (text.length + 1));

/** One random edit of `text`. */
function mutateOnce(rng: Rng, text: string): string {
  const i = at(rng, text);
  switch (Math.floor(rng() * 8)) {
    case 0:
      return text.slice(0, i) + text.slice(i + 1 + Math.floor(rng() * 40));
    case 1: {
      const j = at(rng, text);
      return text.slice(0, j) + text.slice(i, i + 1 + Math.floor(rng() * 60)) + text.slice(j);
    }
    case 2:
    case 3:
      return text.slice(0, i) + pick(rng, FRAGMENTS) + text.slice(i);
    case 4:
      return text.slice(0, i) + pick(rng, REPEATED).repeat(pick(rng, [5, 40, 70, 300, 3000])) + text.slice(i);
    case 5:
      return text.slice(0, i);
    case 6: {
      const lines = text.split('\n');
      const a = Math.floor(rng() * lines.length);
      const b = Math.floor(rng() * lines.length);
      [lines[a], lines[b]] = [lines[b]!, lines[a]!];
      return lines.join('\n');
    }
    default:
      return text.slice(0, i) + String.fromCharCode(32 + Math.floor(rng() * 95)) + text.slice(i + 1);
  }
}

test('mutated shipped pipelines load without an exception, with located diagnostics, each in under 2 s of CPU', () => {
  const sources = pipeFiles().map((file) => ({ file, text: readFileSync(file, 'utf8') }));
  assert.ok(sources.length >= 3, 'the shipped pipelines are there');
  const rng = generator(SEED);
  const started = Date.now();
  let cases = 0;
  let slowest = { cpu: 0, index: -1 };
  const keep = (index: number, text: string) => {
    const saved = path.join(os.tmpdir(), `pausepipe-fuzz-${SEED}-${index}.pipe`);
    writeFileSync(saved, text);
    return `case ${index} of seed ${SEED}, saved as ${saved}`;
  };
  for (; cases < MAX_CASES && Date.now() - started < BUDGET_MS; cases++) {
    const { file, text: original } = pick(rng, sources);
    let text = original;
    for (let edits = 1 + Math.floor(rng() * 4); edits > 0; edits--) text = mutateOnce(rng, text);
    const before = process.cpuUsage();
    let rendered: string;
    let diagnostics;
    try {
      const result = loadPipelineText(text, file, STAGE_KINDS);
      diagnostics = result.diagnostics;
      rendered = formatDiagnostics(result.diagnostics, result.sources);
    } catch (error) {
      assert.unreachable(`${keep(cases, text)}: ${(error as Error).stack}`);
      return;
    }
    const used = process.cpuUsage(before);
    const cpu = (used.user + used.system) / 1e6;
    if (cpu > slowest.cpu) slowest = { cpu, index: cases };
    assert.ok(cpu < MAX_CASE_CPU_S, `${keep(cases, text)}: took ${cpu.toFixed(2)} s of CPU`);
    for (const d of diagnostics) {
      const span = d.span;
      const located = span !== undefined && span.file !== '' && Number.isInteger(span.line) && span.line >= 1 && Number.isInteger(span.column) && span.column >= 1;
      assert.ok(located, `${keep(cases, text)}: ${d.code} ${d.message} has no file:line:col`);
    }
    assert.ok(rendered.length > 0 || diagnostics.length === 0);
  }
  console.log(`  fuzz: ${cases} cases of seed ${SEED} in ${((Date.now() - started) / 1000).toFixed(1)} s; slowest: case ${slowest.index}, ${slowest.cpu.toFixed(2)} s of CPU`);
  assert.ok(cases >= 50, `only ${cases} cases ran in the budget`);
});

test.run();

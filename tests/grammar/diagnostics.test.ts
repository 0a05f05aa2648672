// Tests for grammar/diagnostics.ts: the formatted text, and one exact-position case for every code in the table.
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import {
  DIAGNOSTIC_CODES, diagnostic, DiagnosticSink, formatDiagnostic, formatDiagnostics, locationFrom, type SourceSpan,
} from '../../grammar/diagnostics.ts';
import { loadPipeline, loadPipelineText } from '../../runtime/load.ts';
import { parseOverride, type Override } from '../../runtime/overrides.ts';
import type { StageKind } from '../../stages/kind.ts';
import { SH } from '../../stages/sh.ts';
import { describe, expectDiagnostic, parsePipe, PREAMBLE, TEST_DIR, TEST_FILE, TEST_KINDS } from '../helpers/pipe.ts';

const format = suite('formatDiagnostic');

const SOURCE = [
  'stage data = gsm8k { path: "d" }',
  'stage base = surgery { }',
  'stage warm = stf(model: base, data: data) { }',
  'stage eval = evaluate(model: warm, data: data) { }',
].join('\n');

format('prints file:line:col, severity, code, message, a code frame and notes', () => {
  const r = parsePipe(SOURCE);
  assert.equal(r.diagnostics.length, 1, describe(r));
  assert.is(formatDiagnostic(r.diagnostics[0]!, r.sources, { cwd: TEST_DIR }), [
    'main.pipe:3:14: error[E_UNKNOWN_KIND]: unknown stage kind `stf`',
    '  2 | stage base = surgery { }',
    '> 3 | stage warm = stf(model: base, data: data) { }',
    '    |              ^^^',
    '  4 | stage eval = evaluate(model: warm, data: data) { }',
    '  = note: did you mean `sft`?',
    '  = note: known kinds: gsm8k, inject_pauses, surgery, sft, evaluate, report, sh',
  ].join('\n'));
});

format('paths outside the working folder stay absolute; a file not in sources gets no frame', () => {
  const span: SourceSpan = { file: '/elsewhere/x.pipe', line: 2, column: 3, endLine: 2, endColumn: 4, offset: 9, endOffset: 10 };
  assert.is(formatDiagnostic(diagnostic('E_LEX', 'unexpected character `@`', span), {}, { cwd: TEST_DIR }),
    '/elsewhere/x.pipe:2:3: error[E_LEX]: unexpected character `@`');
});

format('a diagnostic without a span is one line', () => {
  assert.is(formatDiagnostic(diagnostic('E_FILE_NOT_FOUND', 'cannot read x: no such file', undefined), {}),
    'error[E_FILE_NOT_FOUND]: cannot read x: no such file');
});

format('an empty span at the end of a file still gets a caret', () => {
  const r = parsePipe('let a = (1');
  assert.is(formatDiagnostic(r.diagnostics[0]!, r.sources, { cwd: TEST_DIR }), [
    'main.pipe:1:11: error[E_PARSE]: expected `)`, found the end of the file',
    '> 1 | let a = (1',
    '    |           ^',
  ].join('\n'));
});

format('formatDiagnostics separates entries by blank lines and ends with the counts', () => {
  const r = parsePipe('for each x in [] { }\nlet a = 1 / 0');
  assert.is(formatDiagnostics(r.diagnostics, r.sources, { cwd: TEST_DIR }), [
    'main.pipe:1:15: warning[E_EMPTY_MATRIX]: `x` ranges over an empty list, so the loop makes no variant',
    '> 1 | for each x in [] { }',
    '    |               ^^',
    '  2 | let a = 1 / 0',
    '',
    'main.pipe:2:9: error[E_DIVISION_BY_ZERO]: `/` by zero',
    '  1 | for each x in [] { }',
    '> 2 | let a = 1 / 0',
    '    |         ^^^^^',
    '',
    '1 error, 1 warning',
  ].join('\n'));
  assert.is(formatDiagnostics([], {}), '');
});

format('locationFrom is short in the same file and relative across files', () => {
  const at = (file: string): SourceSpan => ({ file, line: 3, column: 5, endLine: 3, endColumn: 6, offset: 0, endOffset: 1 });
  assert.is(locationFrom(at('/p/a.pipe'), '/p/a.pipe'), 'line 3:5');
  assert.is(locationFrom(at('/p/lib/b.pipe'), '/p/a.pipe'), 'lib/b.pipe:3:5');
});

format('the sink drops a repeat of one mistake but keeps different messages at one place', () => {
  const span: SourceSpan = { file: 'f', line: 1, column: 1, endLine: 1, endColumn: 2, offset: 0, endOffset: 1 };
  const sink = new DiagnosticSink();
  sink.report(diagnostic('E_MISSING_PARAM', 'needs `a`', span));
  sink.report(diagnostic('E_MISSING_PARAM', 'needs `a`', span));
  sink.report(diagnostic('E_MISSING_PARAM', 'needs `b`', span));
  assert.equal(sink.diagnostics.map((d) => d.message), ['needs `a`', 'needs `b`']);
});

format.run();

const codes = suite('diagnostic codes');

const LOOP = 'for each x in [1, 2] { stage w = sft(model: base, data: paused) { } }';

/** One case per code: [source, the code's line, column, included files (the diagnostic may be in one), kinds]. */
const CASES: Record<string, [string, number, number, Record<string, string>?, Record<string, StageKind>?]> = {
  E_LEX: ['let a = 1\nlet b = 2;', 2, 10],
  E_BAD_NUMBER: ['let a = 1\nlet b = 0x10', 2, 9],
  E_PARSE: ['stage a = gsm8k {', 1, 18],
  E_UNTERMINATED_STRING: ['stage a = gsm8k { path: "abc\n}', 1, 25],
  E_UNCLOSED_INTERPOLATION: ['let a = 1\nstage d = gsm8k { path: "data/${a" }', 2, 31],
  E_BAD_ESCAPE: ['let a = "\\d"', 1, 10],
  E_INCLUDE_NOT_FOUND: ['let a = 1\ninclude "nope.pipe"', 2, 9],
  E_INCLUDE_CYCLE: ['include "a.pipe"', 2, 9, { 'a.pipe': 'let a = 1\ninclude "main.pipe"' }],
  E_UNKNOWN_KIND: ['stage a = gsm8kk { path: "d" }', 1, 11],
  E_UNKNOWN_REFERENCE: [`${PREAMBLE}\nstage p = inject_pauses(data: dta) { }`, 4, 31],
  E_UNKNOWN_VARIABLE: ['let a = 1\nstage d = gsm8k { path: "${b}" }', 2, 28],
  E_UNKNOWN_FUNCTION: ['let a = rang(3)', 1, 9],
  E_DUPLICATE_NAME: ['include "common.pipe"\nlet lr = 1', 2, 5, { 'common.pipe': 'stage x = surgery { }\nlet lr = 2' }],
  E_DUPLICATE_PARAM: ['stage d = gsm8k {\n  path: "a"\n  path: "b"\n}', 3, 3],
  E_DUPLICATE_INPUT: [`${PREAMBLE}\nstage p = inject_pauses(data: data, data: data) { }`, 4, 37],
  E_DUPLICATE_LOOP_VAR: ['for each a in [1], b in [2], a in [3] { }', 1, 30],
  E_CYCLE: [`${PREAMBLE}\nstage a = sft(model: b, data: data) { }\nstage b = sft(model: a, data: data) { }`, 5, 22],
  E_PARAM_TYPE: [`${PREAMBLE}\nstage s = sft(model: base, data: paused) {\n  lr: "fast"\n}`, 5, 7],
  E_UNKNOWN_PARAM: [`${PREAMBLE}\nstage s = sft(model: base, data: paused) { lr: 1, epoch: 2 }`, 4, 51],
  E_MISSING_PARAM: ['stage data = gsm8k { val_fraction: 0.2 }', 1, 7],
  E_PARAM_VALUE: [`${PREAMBLE}\nstage s = sft(model: base, data: paused) { epochs: 0 }`, 4, 52],
  E_UNKNOWN_INPUT: [`${PREAMBLE}\nstage s = sft(model: base, data: paused, extra: data) { }`, 4, 42],
  E_MISSING_INPUT: [`${PREAMBLE}\nstage s = sft(model: base) { }`, 4, 7],
  E_INPUT_ARITY: [`${PREAMBLE}\n${LOOP}\nstage r = report(runs: paused) { }`, 5, 24],
  E_EXPR_TYPE: ['let a = "a" * 2', 1, 9],
  E_DIVISION_BY_ZERO: ['let n = 0\nlet a = 10 % n', 2, 9],
  E_NAME_COLLISION: [`${PREAMBLE}\nfor each x in [1, 2] named "same" { stage w = sft(model: base, data: paused) { } }`, 4, 28],
  E_LOOP_REFERENCE: [`${PREAMBLE}\n${LOOP}\nstage r = report(runs: w) { }`, 5, 24],
  E_EMPTY_SELECTION: [`${PREAMBLE}\n${LOOP}\nstage r = report(runs: w[x=3]) { }`, 5, 24],
  E_NESTED_LOOP: ['for each a in [1] {\n  for each b in [2] { }\n}', 2, 3],
  E_EMPTY_MATRIX: [`${PREAMBLE}\nfor each x in [1, 2] where x > 2 { }`, 4, 28],
  E_FILE_NOT_FOUND: ['', 0, 0],
  E_UNSAFE_OUT: ['stage s = sh { command: ["true"], outs: ["x", ".pausepipe"] }', 1, 47, undefined, { ...TEST_KINDS, sh: SH }],
  E_MISSING_DEP: ['stage s = sh { command: ["true"], deps: ["no-such-file.txt"] }', 1, 42, undefined, { ...TEST_KINDS, sh: SH }],
  E_TOO_LARGE: [`let a = 1\nlet b = [${'1,'.repeat(30_000)}]`, 2, 50_002],
  E_TOO_DEEP: [`let a = ${'('.repeat(70)}1${')'.repeat(70)}`, 1, 9 + 64],
  E_TOO_MANY_VARIANTS: ['for each a in range(0, 1000), b in range(0, 1000) { }', 1, 1],
  E_NUMBER_RANGE: ['let a = 9007199254740993', 1, 9],
  E_OVERRIDE: ['', 0, 0],
};

codes('every code in the table has a case below, and every case a code in the table', () => {
  assert.equal(Object.keys(CASES).sort(), Object.keys(DIAGNOSTIC_CODES).sort());
  for (const [code, meaning] of Object.entries(DIAGNOSTIC_CODES)) assert.ok(meaning.length > 10, `${code} needs a meaning`);
});

for (const [code, [source, line, column, files, kinds]] of Object.entries(CASES)) {
  if (code === 'E_FILE_NOT_FOUND' || code === 'E_OVERRIDE') continue;
  codes(`${code} is reported at ${line}:${column}, alone`, () => {
    const r = parsePipe(source, files, kinds);
    const got = r.diagnostics.map((d) => `${d.code} ${d.span?.line}:${d.span?.column}`);
    assert.equal(got, [`${code} ${line}:${column}`], describe(r));
    if (!files) assert.is(r.diagnostics[0]!.span!.file, TEST_FILE);
    assert.is(r.pipeline === null, r.diagnostics[0]!.severity === 'error');
  });
}

codes('E_FILE_NOT_FOUND: a missing entry file is a diagnostic, not an exception', async () => {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'pausepipe-'));
  try {
    const missing = path.join(dir, 'missing.pipe');
    const r = await loadPipeline(missing, {});
    assert.equal(r.diagnostics.map((d) => [d.code, d.message]), [['E_FILE_NOT_FOUND', `cannot read ${missing}: no such file`]]);
    assert.is(r.pipeline, null);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

codes('E_OVERRIDE: a -p naming no top-level let has no location in a file; a missing key points at the let', () => {
  const o = (text: string) => parseOverride(text) as Override;
  const text = 'let lr = 1e-3\nlet lora = { r: 16, alpha: 32 }\nfor each x in [1] { let inner = 2 }';
  const r = loadPipelineText(text, TEST_FILE, TEST_KINDS, () => undefined, { overrides: [o('lrr=1e-4'), o('lora.rank=8'), o('inner=3'), o('lr.x=1')] });
  assert.equal(r.diagnostics.map((d) => [d.code, d.span ? `${d.span.line}:${d.span.column}` : '-', d.message, d.notes ?? []]), [
    ['E_OVERRIDE', '1:5', '-p lr.x=1: `lr` is number 0.001, not an object with key `x`', []],
    ['E_OVERRIDE', '2:5', '-p lora.rank=8: `lora` has no key `rank` (its keys: r, alpha)', []],
    ['E_OVERRIDE', '-', '-p lrr=1e-4: the pipeline has no top-level let `lrr`', ['did you mean `lr`?', 'its top-level lets: lr, lora']],
    ['E_OVERRIDE', '-', '-p inner=3: the pipeline has no top-level let `inner`', ['its top-level lets: lr, lora']],
  ]);
  assert.is(r.pipeline, null);
});

codes('E_INCLUDE_CYCLE points into the file that closes the cycle and names the chain', () => {
  const [source, , , files] = CASES.E_INCLUDE_CYCLE!;
  const r = parsePipe(source, files);
  assert.equal(r.diagnostics.map((d) => [path.basename(d.span!.file), d.message]), [
    ['a.pipe', 'include cycle: main.pipe → a.pipe → main.pipe'],
  ]);
});

codes('E_DUPLICATE_NAME across an include names the other file', () => {
  const r = parsePipe('include "common.pipe"\nlet lr = 1', { 'common.pipe': 'let lr = 2' });
  const d = expectDiagnostic(r, 'E_DUPLICATE_NAME', 2, 5);
  assert.equal([d.span!.file, d.message, d.notes], [TEST_FILE, '`lr` is already defined; this let needs another name', ['first defined at common.pipe:1:5']]);
});

codes('E_EMPTY_SELECTION: collecting every variant of a loop that makes none is an error, beside the loop\'s warning', () => {
  const r = parsePipe(`${PREAMBLE}\nfor each x in [1, 2] where x > 2 { stage w = sft(model: base, data: paused) { } }\nstage r = report(runs: w[*]) { }`);
  assert.equal(r.diagnostics.map((d) => `${d.code} ${d.severity} ${d.span?.line}:${d.span?.column} ${d.message}`), [
    'E_EMPTY_MATRIX warning 4:28 the `where` filter leaves no variant',
    'E_EMPTY_SELECTION error 5:24 `w[*]` collects nothing: its loop makes no variant',
  ]);
  assert.is(r.pipeline, null);
});

codes('a stage whose parameter expression fails still has its other mistakes reported', () => {
  const r = parsePipe(`${PREAMBLE}\nstage s = sft(model: base, data: paused) {\n  lr: 1 / 0\n  epochs: "two"\n  epohcs: 2\n}`);
  assert.equal(r.diagnostics.map((d) => `${d.code} ${d.span?.line}:${d.span?.column}`), [
    'E_DIVISION_BY_ZERO 5:7', 'E_PARAM_TYPE 6:11', 'E_UNKNOWN_PARAM 7:3',
  ], describe(r));
});

codes.run();

// The editor features on half-typed text: what belongs at a position, values, includes, and where names are declared.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import path from 'node:path';
import { cursorAt } from '../../lsp/cursor.ts';
import { completionsAt, definitionAt, diagnosticsOf, hoverAt } from '../../lsp/features.ts';
import { STAGE_KINDS } from '../../stages/index.ts';

const DIR = '/virtual/ws';
const MAIN = path.join(DIR, 'main.pipe');
const COMMON = path.join(DIR, 'common.pipe');
const FILES: Record<string, string> = {
  [COMMON]: 'let warm_lr = 0.01\nstage data = synthetic_math { train: 10, bogus: 1 }\n',
  [path.join(DIR, 'clean.pipe')]: 'let batch = 8\n',
  [path.join(DIR, 'shared.pipe')]: 'include "common.pipe"\n',
};
const read = (f: string): string | undefined => FILES[f];

const at = (text: string, marker: string): number => text.indexOf(marker) + marker.length;
const labels = (text: string, marker: string): string[] => completionsAt(text, MAIN, at(text, marker), STAGE_KINDS, read).map((c) => c.label);

test('the place of a position: statement, kind, param key, value, input, reference, or nothing in comments and strings', () => {
  const text = 'stage a = sft(model: b) {\n  lr: 1\n  train: { all: true }\n}\n# stage x = \nlet s = "sf"\n';
  assert.equal(cursorAt(text, 0).place, { type: 'statement' });
  assert.equal(cursorAt(text, at(text, 'a = ')).place, { type: 'kind' });
  assert.equal(cursorAt(text, at(text, 'sft(')).place, { type: 'input', kind: 'sft', present: [] });
  assert.equal(cursorAt(text, at(text, 'model: ')).place, { type: 'reference' });
  assert.equal(cursorAt(text, at(text, '{\n')).place, { type: 'param', kind: 'sft', path: [], present: [] });
  assert.equal(cursorAt(text, at(text, 'lr: ')).place, { type: 'value', kind: 'sft', path: ['lr'] });
  assert.equal(cursorAt(text, at(text, 'train: { ')).place, { type: 'param', kind: 'sft', path: ['train'], present: [] });
  assert.equal(cursorAt(text, at(text, 'all: ')).place, { type: 'value', kind: 'sft', path: ['train', 'all'] });
  assert.equal(cursorAt(text, at(text, '# stage x = ')).place, { type: 'none' });
  assert.equal(cursorAt(text, at(text, '"s')).place, { type: 'none' });
  // A stage header left without its block does not make the next object a params block.
  const unfinished = 'stage a = sft\nlet x = { ';
  assert.equal(cursorAt(unfinished, unfinished.length).place, { type: 'none' });
});

test('values: the enum of the parameter, then the loop\'s variables, then lets in this file and its includes', () => {
  const text = 'include "common.pipe"\nlet lr = 1\nfor each seed in [1, 2] {\n  stage m = init_model { preset: t }\n}\n';
  assert.equal(labels(text, 'preset: '), ['"tiny"', '"small"', '"medium"', 'seed', 'lr', 'warm_lr', 'true', 'false', 'null', 'if', 'not']);
  assert.equal(labels(text, 'preset: t'), ['"tiny"', 'true']);
  assert.equal(labels(text, '\n'), ['stage', 'let', 'for each', 'include']);
});

test('a mistake in an included file is shown on the include, with its own location', () => {
  const text = 'include "common.pipe"\nstage m = init_model { }\n';
  const ds = diagnosticsOf(text, MAIN, STAGE_KINDS, read);
  assert.equal(ds.map((d) => [d.code, d.range, d.message.split('\n')[0]]), [
    ['E_UNKNOWN_PARAM', { start: { line: 0, character: 9 }, end: { line: 0, character: 20 } }, 'common.pipe:2:42: unknown param `bogus` for stage kind `synthetic_math`'],
  ]);
});

test('a syntax error hides no other mistake, and the stage it breaks is not reported unknown where it is used', () => {
  const text = 'stage data = synthetic_math { train: 10 }\nstage base = init_model { preset: }\nstage warm = sft(model: base, data: data) { lr: "fast" }\n';
  const range = (line: number, from: number, to: number) => ({ start: { line, character: from }, end: { line, character: to } });
  assert.equal(diagnosticsOf(text, MAIN, STAGE_KINDS, read).map((d) => [d.code, d.range, d.message]), [
    ['E_PARSE', range(1, 34, 35), 'expected a value, found `}`'],
    ['E_PARAM_TYPE', range(2, 48, 54), 'param `lr` must be number, got string "fast"'],
  ]);
  // The same broken stage in an included file: its error on the include, after this file's own.
  const broken = { ...FILES, [path.join(DIR, 'broken.pipe')]: 'stage data = synthetic_math { train: 10 }\nstage base = init_model { preset: }\n' };
  const including = 'include "broken.pipe"\nstage warm = sft(model: base, data: data) { lr: "fast" }\n';
  assert.equal(diagnosticsOf(including, MAIN, STAGE_KINDS, (f) => broken[f]).map((d) => [d.code, d.range, d.message]), [
    ['E_PARAM_TYPE', range(1, 48, 54), 'param `lr` must be number, got string "fast"'],
    ['E_PARSE', range(0, 9, 20), 'broken.pipe:2:35: expected a value, found `}`'],
  ]);
});

test('a loop variable is known only in its own loop, and a selector\'s variable is one of the selected stage\'s loop', () => {
  const text = [
    'for each seed in [1, 2] {',
    '  stage m = init_model { seed: seed }',
    '}',
    'for each lr in [0.1, 0.2], seed in [3] {',
    '  stage w = sft(model: m[seed=1]) { lr: lr }',
    '}',
    'let after = s',
    'stage r = report(runs: w[seed=3]) { }',
    '',
  ].join('\n');
  assert.equal(labels(text, 'after = s'), []);
  assert.equal(labels(text, '{ lr: '), ['lr', 'seed', 'true', 'false', 'null', 'if', 'not']);
  assert.is(definitionAt(text, MAIN, at(text, 'after = s'), read), null);
  const line = (n: number, from: number, to: number) => ({ file: MAIN, range: { start: { line: n, character: from }, end: { line: n, character: to } } });
  assert.equal(definitionAt(text, MAIN, at(text, 'seed: s'), read), line(0, 9, 13));
  assert.equal(definitionAt(text, MAIN, at(text, 'm[s'), read), line(0, 9, 13));
  assert.equal(definitionAt(text, MAIN, at(text, 'w[s'), read), line(3, 27, 31));
  assert.is(hoverAt(text, MAIN, at(text, 'w[s'), STAGE_KINDS, read)!.markdown, 'loop variable `seed` in `[3]`');
  assert.is(hoverAt(text, MAIN, at(text, 'lr: l'), STAGE_KINDS, read)!.markdown, 'loop variable `lr` in `[0.1, 0.2]`');
});

test('go to definition and hover find a loop\'s own let, not another loop\'s of the same name', () => {
  const text = [
    'let rate = 5',
    'for each a in [1] {',
    '  let rate = 0.1',
    '  stage x = sh { command: "echo ${rate}", shell: true }',
    '}',
    'for each b in [2] {',
    '  let rate = 0.2',
    '  stage y = sh { command: "echo ${rate} ${a}", shell: true }',
    '}',
    'stage z = sh { command: "echo ${rate}", shell: true }',
    '',
  ].join('\n');
  const line = (n: number, from: number, to: number) => ({ file: MAIN, range: { start: { line: n, character: from }, end: { line: n, character: to } } });
  const use = (n: number) => text.split('\n').slice(0, n).join('\n').length + 1 + text.split('\n')[n]!.indexOf('${rate}') + 3;
  assert.equal(definitionAt(text, MAIN, use(3), read), line(2, 6, 10));
  assert.equal(definitionAt(text, MAIN, use(7), read), line(6, 6, 10));
  assert.equal(definitionAt(text, MAIN, use(9), read), line(0, 4, 8));
  assert.is(hoverAt(text, MAIN, use(7), STAGE_KINDS, read)!.markdown, '`let rate = 0.2`');
  // `a` belongs to the first loop: unknown in the second.
  assert.is(definitionAt(text, MAIN, text.indexOf('${a}') + 2, read), null);
});

test('nothing is offered where a new name is declared or an operator goes, so a typed space opens no list', () => {
  const text = 'let lr = 1\nstage data = synthetic_math { train: 10 }\n';
  for (const typed of ['stage ', 'let ', 'for each ', 'for each x ', 'include ', 'stage w = sft ', 'stage w = sft(model: data) ', 'let x = 1 ', 'stage w = sft { lr: 1 ']) {
    assert.equal(labels(text + typed, typed), [], typed);
  }
  assert.equal(labels(text + 'let x = lr ', 'lr '), []);
  assert.equal(labels(text + 'let x = lr + ', '+ '), ['lr', 'true', 'false', 'null', 'if', 'not']);
});

test('a let is offered after its statement only: not in its own value, not before it', () => {
  const text = 'let a = 1\nlet t = "${a}-${}"\nstage s = sh { command: "x" }\nlet later = 2\n';
  assert.equal(labels(text, '-${'), ['a', 'true', 'false', 'null', 'if', 'not']);
});

test('in a selector: `*` and the selected stage\'s loop variables, wherever the selector stands', () => {
  const text = 'for each lr in [1, 2], lora in [true] {\n  stage w = sft { }\n}\nstage r = report(runs: w[], baselines: w[lr=1, ]) { }\n';
  assert.equal(completionsAt(text, MAIN, at(text, 'runs: w['), STAGE_KINDS, read).map((c) => [c.label, c.insertText]), [['*', '*'], ['lr', 'lr='], ['lora', 'lora=']]);
  assert.equal(labels(text, 'w[lr=1, '), ['lr', 'lora']);
});

test('the `}` of a `${…}` closes the interpolation, not the params block or loop around it', () => {
  const text = 'let tag = "lr-${1}"\nfor each lr in [1, 2] {\n  stage a = sh {\n    command: "echo ${lr}"\n    sh\n    env: { X: "${lr}" }\n  }\n  stage b = sh { command: "${l}" }\n}\n';
  assert.equal(labels(text, '    sh'), ['shell']);
  assert.equal(labels(text, '"${l'), ['lr']);
  assert.is(hoverAt(text, MAIN, at(text, 'let ta'), STAGE_KINDS, read)!.markdown, '`let tag = "lr-${1}"`');
});

test('a mistake two includes deep is shown on the include that leads to it, not on the first include', () => {
  const text = 'include "clean.pipe"\ninclude "shared.pipe"\nstage m = init_model { }\n';
  const ds = diagnosticsOf(text, MAIN, STAGE_KINDS, read);
  assert.equal(ds.map((d) => [d.code, d.range, d.message.split('\n')[0]]), [
    ['E_UNKNOWN_PARAM', { start: { line: 1, character: 9 }, end: { line: 1, character: 20 } }, 'common.pipe:2:42: unknown param `bogus` for stage kind `synthetic_math`'],
  ]);
});

test('definition and hover reach declarations in included files', () => {
  const text = 'include "common.pipe"\nstage m = sft(data: data) { lr: warm_lr }\n';
  assert.equal(definitionAt(text, MAIN, at(text, 'data: da'), read), { file: COMMON, range: { start: { line: 1, character: 6 }, end: { line: 1, character: 10 } } });
  assert.equal(definitionAt(text, MAIN, at(text, 'lr: wa'), read), { file: COMMON, range: { start: { line: 0, character: 4 }, end: { line: 0, character: 11 } } });
  assert.is(hoverAt(text, MAIN, at(text, 'data: da'), STAGE_KINDS, read)!.markdown, '`stage data = synthetic_math`');
  assert.is(hoverAt(text, MAIN, at(text, '(da'), STAGE_KINDS, read)!.markdown, '**data** (input of sft)\n\nDataset folder with train.jsonl and validation.jsonl rows {question, answer}.');
  assert.match(hoverAt(text, MAIN, at(text, '= sf'), STAGE_KINDS, read)!.markdown, /^\*\*sft\*\* \(stage kind, version \d+\)\n\nFine-tunes/);
});

test.run();

// Tests for the grammar (parser.ts, to-ast.ts through index.ts): every construct's AST and every syntax diagnostic.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import type { Expr, LetDecl, LoopDecl, StageDecl, Statement } from '../../grammar/ast.ts';
import { parsePipeText } from '../../grammar/index.ts';
import { parserInstancesCreated, pipeParser } from '../../grammar/parser.ts';
import { describe, stripSpans } from '../helpers/pipe.ts';

const parser = suite('parser');

function statements(text: string): Statement[] {
  const r = parsePipeText(text, 'main.pipe');
  assert.equal(r.diagnostics, [], describe(r));
  return r.ast!.statements;
}

/** The AST of one expression, without spans. */
function expr(text: string): unknown {
  return stripSpans((statements(`let x = ${text}`)[0] as LetDecl).value);
}

const num = (value: number) => ({ type: 'number', value });
const str = (...parts: unknown[]) => ({ type: 'string', parts });
const name = (n: string) => ({ type: 'name', name: n });
const bin = (op: string, left: unknown, right: unknown) => ({ type: 'binary', op, left, right });

parser('an include takes a plain string path', () => {
  assert.equal(stripSpans(statements('include "common.pipe"')), [{ type: 'include', path: 'common.pipe' }]);
});

parser('a let binds a name to an expression', () => {
  assert.equal(stripSpans(statements('let lr = 5e-5')), [{ type: 'let', name: 'lr', value: num(5e-5) }]);
});

parser('a stage has a name, a kind, optional named inputs and a params block', () => {
  const [plain, withInputs] = statements('stage data = gsm8k { path: "d" }\nstage s = sft(model: base, data: data) { }') as StageDecl[];
  assert.equal(stripSpans(plain), {
    type: 'stage', name: 'data', kind: 'gsm8k', inputs: [],
    params: { type: 'object', entries: [{ key: 'path', value: str('d') }] },
  });
  assert.equal(stripSpans(withInputs!.inputs), [
    { name: 'model', ref: { name: 'base', select: null } },
    { name: 'data', ref: { name: 'data', select: null } },
  ]);
});

parser('params are separated by commas and/or line breaks, and a trailing comma is fine', () => {
  const [s] = statements('stage p = k {\n  a: 1, b: true\n  c: null,\n}') as StageDecl[];
  assert.equal(stripSpans(s!.params.entries), [
    { key: 'a', value: num(1) },
    { key: 'b', value: { type: 'boolean', value: true } },
    { key: 'c', value: { type: 'null' } },
  ]);
});

parser('inputs may also be split over lines without commas', () => {
  const [s] = statements('stage s = k(\n  a: x\n  b: y\n) { }') as StageDecl[];
  assert.equal(s!.inputs.map((i) => i.name), ['a', 'b']);
});

parser('objects nest and take identifier or string keys; lists take a trailing comma', () => {
  assert.equal(expr('{ "\\n": 1, "=": 2, inner: { deep: [1, 2,] } }'), {
    type: 'object',
    entries: [
      { key: '\n', value: num(1) },
      { key: '=', value: num(2) },
      { key: 'inner', value: { type: 'object', entries: [{ key: 'deep', value: { type: 'list', items: [num(1), num(2)] } }] } },
    ],
  });
  assert.equal(expr('[]'), { type: 'list', items: [] });
});

parser('references select one stage, every variant or matching variants', () => {
  const [s] = statements('stage r = report(a: x, b: e[*], c: e[head=true, lm="none"]) { }') as StageDecl[];
  assert.equal(stripSpans(s!.inputs.map((i) => i.ref)), [
    { name: 'x', select: null },
    { name: 'e', select: { type: 'all' } },
    {
      name: 'e',
      select: {
        type: 'match',
        pairs: [
          { variable: 'head', value: { type: 'boolean', value: true } },
          { variable: 'lm', value: str('none') },
        ],
      },
    },
  ]);
});

parser('a loop has variables, an optional where, an optional label and a body of stages and lets', () => {
  const [loop] = statements([
    'for each embed in [true, false], lm in ["a", "b"]',
    '    where embed or lm == "a"',
    '    named "e=${embed}" {',
    '  let half = 0.5',
    '  stage warm = sft(model: m) { }',
    '}',
  ].join('\n')) as LoopDecl[];
  assert.equal(stripSpans(loop!.vars), [
    { name: 'embed', values: { type: 'list', items: [{ type: 'boolean', value: true }, { type: 'boolean', value: false }] } },
    { name: 'lm', values: { type: 'list', items: [str('a'), str('b')] } },
  ]);
  assert.equal(stripSpans(loop!.where), bin('or', name('embed'), bin('==', name('lm'), str('a'))));
  assert.equal(stripSpans(loop!.label), str('e=', name('embed')));
  assert.equal(loop!.body.map((s) => `${s.type} ${(s as LetDecl).name}`), ['let half', 'stage warm']);
  assert.equal([loop!.headerSpan.line, loop!.headerSpan.column, loop!.headerSpan.endLine], [1, 1, 3]);
});

parser('a nested loop parses (expansion rejects it with a clear diagnostic)', () => {
  const [loop] = statements('for each a in [1] { for each b in [2] { } }') as LoopDecl[];
  assert.equal(loop!.body[0]!.type, 'loop');
});

parser('multiplication binds tighter than addition; operators associate to the left', () => {
  assert.equal(expr('1 + 2 * 3'), bin('+', num(1), bin('*', num(2), num(3))));
  assert.equal(expr('8 - 4 - 2'), bin('-', bin('-', num(8), num(4)), num(2)));
  assert.equal(expr('(1 + 2) * 3'), bin('*', bin('+', num(1), num(2)), num(3)));
  assert.equal(expr('7 % 4 / 2'), bin('/', bin('%', num(7), num(4)), num(2)));
});

parser('unary minus applies to its operand; not binds looser than a comparison', () => {
  assert.equal(expr('-5e-5'), { type: 'unary', op: '-', operand: num(5e-5) });
  assert.equal(expr('not a == b'), { type: 'unary', op: 'not', operand: bin('==', name('a'), name('b')) });
});

parser('and binds tighter than or, comparisons tighter than and', () => {
  assert.equal(expr('a or b and c < 2'), bin('or', name('a'), bin('and', name('b'), bin('<', name('c'), num(2)))));
  for (const op of ['==', '!=', '<', '<=', '>', '>=']) assert.equal(expr(`a ${op} 1`), bin(op, name('a'), num(1)));
});

parser('if-then-else is an expression whose else branch extends to the right', () => {
  assert.equal(expr('if h then lr else lr * 2'), {
    type: 'if', condition: name('h'), then: name('lr'), else: bin('*', name('lr'), num(2)),
  });
  assert.equal(expr('1 + if a then 2 else 3'), bin('+', num(1), { type: 'if', condition: name('a'), then: num(2), else: num(3) }));
});

parser('a call takes arguments: range(a, b)', () => {
  assert.equal(expr('range(0, n)'), { type: 'call', callee: 'range', args: [num(0), name('n')] });
});

parser('strings decode escapes and keep interpolations in order', () => {
  assert.equal(expr('"a\\"b\\\\c\\nd\\te\\$f${x}-${y + 1}!"'), str('a"b\\c\nd\te$f', name('x'), '-', bin('+', name('y'), num(1)), '!'));
  assert.equal(expr('"cost: $5"'), str('cost: $5'));
  assert.equal(expr('""'), str());
});

parser('spans are 1-based with exclusive ends, on every node', () => {
  const [s] = statements('stage a = sft {\n  lr: 1 + 2\n}') as StageDecl[];
  const value = s!.params.entries[0]!.value as Expr;
  assert.equal([value.span.line, value.span.column, value.span.endLine, value.span.endColumn], [2, 7, 2, 12]);
  assert.equal([value.span.offset, value.span.endOffset], [22, 27]);
  assert.equal([s!.kindSpan.column, s!.kindSpan.endColumn, s!.nameSpan.column], [11, 14, 7]);
});

parser('a syntax error says what was expected, where', () => {
  const r = parsePipeText('stage a gsm8k { }', 'main.pipe');
  assert.is(r.ast, null);
  assert.equal(r.diagnostics.map((d) => [d.code, d.message, d.span!.line, d.span!.column]), [
    ['E_PARSE', 'expected `=`, found `gsm8k`', 1, 9],
  ]);
});

parser('a missing closing brace is reported at the end of the file, with a note at the `{` never closed', () => {
  const r = parsePipeText('stage a = k {\n  x: 1\n', 'main.pipe');
  assert.equal(r.diagnostics.map((d) => [d.code, d.message, d.span!.line, d.span!.column, d.notes]), [
    ['E_PARSE', 'expected `}`, found the end of the file', 3, 1, ['the `{` opened at 1:13 is never closed']],
  ]);
  // A loop's `{` left open under a closed params block (and a `${...}` inside it).
  const loop = parsePipeText('let d = 1\nfor each x in [1, 2] {\n  stage a = k { p: "${x}" }\n', 'main.pipe');
  assert.equal(loop.diagnostics.map((d) => [d.message, d.span!.line, d.notes]), [
    ['expected `}`, found the end of the file', 4, ['the `{` opened at 2:22 is never closed']],
  ]);
  // A params block cut short by the next statement.
  const cut = parsePipeText('stage a = k {\n  x: 1\n\nstage b = k { }', 'main.pipe');
  assert.equal(cut.diagnostics.map((d) => [d.message, d.span!.line, d.notes]), [
    ['expected `}` after `1`', 2, ['the `{` opened at 1:13 is never closed']],
  ]);
  // A `}` expected where the brace is closed later says nothing of braces.
  const closed = parsePipeText('let a = { x: 1 2 }', 'main.pipe');
  assert.equal(closed.diagnostics.map((d) => [d.message, d.notes]), [['expected `}`, found `2`', undefined]]);
});

parser('a stray token after a statement asks for a statement', () => {
  const r = parsePipeText('let a = 1 < 2 < 3', 'main.pipe');
  assert.equal(r.diagnostics.map((d) => [d.message, d.span!.column]), [
    ['expected `let`, `stage`, `for each` or `include`, found `<`', 15],
  ]);
});

parser('a missing value says "a value"; where its line ends early, the error is at that end, "after" the last token', () => {
  const r = parsePipeText('let x =\nlet y = 1', 'main.pipe');
  assert.equal(r.diagnostics.map((d) => [d.message, d.span!.line, d.span!.column]), [['expected a value after `=`', 1, 7]]);
  const sameLine = parsePipeText('let x = ]', 'main.pipe');
  assert.equal(sameLine.diagnostics.map((d) => [d.message, d.span!.line, d.span!.column]), [['expected a value, found `]`', 1, 9]]);
  // A key left without its `:` at the end of a line (a half-typed param): the recovery's follow-on errors in the
  // same statement are not shown; the next statement's own error is.
  const key = parsePipeText('stage prep = sh { oops\n  command: ["true"]\n}\nlet x = (1\nlet y = 2', 'main.pipe');
  assert.equal(key.diagnostics.map((d) => [d.message, d.span!.line, d.span!.column]), [['expected `:` after `oops`', 1, 19], ['expected `)` after `1`', 4, 10]]);
});

parser('a `//` comment gets a note that comments start with `#`; a lone or spaced `/` does not', () => {
  const r = parsePipeText('// zero\nlet a = 1 // one\nstage s = sh { } // two\nlet b = 4 / / 2', 'main.pipe');
  assert.equal(r.diagnostics.map((d) => [d.message, d.span!.line, d.span!.column, d.notes]), [
    ['expected `let`, `stage`, `for each` or `include`, found `/`', 1, 1, ['comments start with `#`, not `//`']],
    ['expected a value, found `/`', 2, 12, ['comments start with `#`, not `//`']],
    ['expected `let`, `stage`, `for each` or `include`, found `/`', 3, 18, ['comments start with `#`, not `//`']],
    ['expected a value, found `/`', 4, 13, undefined],
  ]);
});

parser('three syntax errors in three statements give three diagnostics', () => {
  const r = parsePipeText('stage a gsm8k { }\nlet ok = 1\nstage b = sft(model a) { }\nlet c = [1 2]', 'main.pipe');
  assert.equal(r.diagnostics.map((d) => `${d.code} ${d.span!.line}:${d.span!.column}`), ['E_PARSE 1:9', 'E_PARSE 3:21', 'E_PARSE 4:12']);
});

parser('includes that parsed intact are kept when the file has syntax errors', () => {
  const r = parsePipeText('include "a.pipe"\nlet x = (\ninclude "b.pipe"\ninclude "cut\ninclude "d', 'main.pipe');
  assert.is(r.ast, null);
  assert.equal(r.statements.map((i) => i.type === 'include' && [i.path, i.pathSpan.line]), [['a.pipe', 1], ['b.pipe', 3]]);
});

parser('statements a mistake touches are left out with the names they declare; a loop keeps the intact statements of its body', () => {
  const r = parsePipeText([
    'stage a = sh { command: "x" }',
    'stag b = sh { }',
    'for each x in [1] {',
    '  stage c = sh { command: }',
    '  let d = 2',
    '}',
    'let e = (1',
    'stage f = sh { command: "y" } garbage',
  ].join('\n'), 'main.pipe');
  assert.is(r.ast, null);
  assert.equal(stripSpans(r.statements.map((s) => (s.type === 'loop' ? s.body : s))), [
    { type: 'stage', name: 'a', kind: 'sh', inputs: [], params: { type: 'object', entries: [{ key: 'command', value: str('x') }] } },
    [{ type: 'let', name: 'd', value: num(2) }],
  ]);
  // `stag b = ...` is no statement, but its `b =` still declares what was meant.
  assert.equal([...r.leftOut.names], ['b', 'c', 'e', 'f']);
  assert.is(r.leftOut.anyName, false);
});

parser('recovery never skips the keyword of the next statement: a half-typed line leaves the statements after it whole', () => {
  const r = parsePipeText('stage w = sft(model: \nstage base = surgery { model: 1 }\nlet x =\nlet y = 2', 'main.pipe');
  assert.equal(r.diagnostics.map((d) => [d.message, d.span!.line, d.span!.column]), [['expected a name after `:`', 1, 20], ['expected a value after `=`', 3, 7]]);
  assert.equal(r.statements.map((s) => s.type !== 'include' && s.type !== 'loop' && s.name), ['base', 'y']);
  assert.equal([...r.leftOut.names], ['w', 'x']);
});

parser('a loop whose `for` or header is broken takes the statements up to its stray `}` with it; a keyword run into a name still declares it', () => {
  const names = (r: ReturnType<typeof parsePipeText>) => r.statements.map((s) => s.type !== 'include' && s.type !== 'loop' && s.name);
  // The loop's `{` is in a string left open: the block starts at that mistake.
  const open = parsePipeText('for each p in ["a", "b], q in [1] {\n  stage a = sh { x: p }\n  stage b = sh { y: q }\n}\nstage c = sh { }\nletd = 1', 'main.pipe');
  assert.equal(names(open), ['c']);
  assert.equal([...open.leftOut.names], ['a', 'b', 'letd', 'd']);
  // `for` mistyped: its `{` is open where the stray `}` closes it.
  const typo = parsePipeText('stage z = sh { }\nor each p in ["a"] {\n  stage a = sh { x: p }\n}\nstage c = sh { }', 'main.pipe');
  assert.equal(names(typo), ['z', 'c']);
  assert.equal([...typo.leftOut.names], ['a']);
});

parser('a left-out include is followed when its path is plain, else may declare any name; lexing errors and the builder\'s own errors leave their statement out too', () => {
  const r = parsePipeText('include "lib.pipe\nlet a = 1 @\nlet b = { k: 1 j: 2 }\nlet c = 3', 'main.pipe');
  assert.equal(r.diagnostics.map((d) => `${d.code} ${d.span!.line}:${d.span!.column}`), ['E_LEX 2:11', 'E_UNTERMINATED_STRING 1:9', 'E_PARSE 3:16']);
  assert.equal(r.ast!.statements.map((s) => s.type), ['include', 'let', 'let', 'let']);
  assert.equal(stripSpans(r.statements), [{ type: 'let', name: 'c', value: num(3) }]);
  assert.equal([...r.leftOut.names], ['a', 'b']);
  // The quote left open still names the file (the loader follows it), as does a path with junk after it.
  assert.equal(r.leftOut.includes, [{ path: 'lib.pipe', offset: 0 }]);
  assert.is(r.leftOut.anyName, false);
  const plain = parsePipeText('let c = 3\ninclude "lib.pipe" x', 'main.pipe');
  assert.equal(plain.leftOut.includes, [{ path: 'lib.pipe', offset: 10 }]);
  assert.is(plain.leftOut.anyName, false);
  // An interpolated path names no file: any name may be declared there.
  const interpolated = parsePipeText('include "${d}.pipe"\nlet c = 3', 'main.pipe');
  assert.equal(interpolated.leftOut.includes, []);
  assert.is(interpolated.leftOut.anyName, true);
});

parser('a file that parses keeps every statement', () => {
  const r = parsePipeText('let a = 1\ninclude "x.pipe"', 'main.pipe');
  assert.is(r.statements, r.ast!.statements);
  assert.equal(r.statements.map((s) => s.type), ['let', 'include']);
});

parser('two entries on one line need a comma', () => {
  const r = parsePipeText('stage a = k { x: 1 y: 2 }', 'main.pipe');
  assert.equal(r.diagnostics.map((d) => [d.code, d.message, d.span!.column]), [
    ['E_PARSE', 'expected `,` or a line break between entries', 20],
  ]);
});

parser('include paths and keys cannot interpolate', () => {
  const r = parsePipeText('include "${x}.pipe"\nlet a = { "k${x}": 1 }', 'main.pipe');
  assert.equal(r.diagnostics.map((d) => [d.code, d.message, d.span!.line, d.span!.column]), [
    ['E_PARSE', 'an include path must be a plain string, without `${...}`', 1, 12],
    ['E_PARSE', 'a key must be a plain string, without `${...}`', 2, 15],
  ]);
});

parser('an unknown escape is E_BAD_ESCAPE at the escape', () => {
  const r = parsePipeText('let a = "x\\qy"', 'main.pipe');
  assert.equal(r.diagnostics.map((d) => [d.code, d.span!.column, d.span!.endColumn]), [['E_BAD_ESCAPE', 11, 13]]);
});

parser('after a string cut by a line break, the follow-on error names it without a raw line break, and a bad escape is still reported', () => {
  const r = parsePipeText('stage a = sh {\n  out: ["x\n  command: "echo hi"\n  note: "a\\qb"\n}', 'main.pipe');
  assert.equal(r.diagnostics.map((d) => [d.code, d.message, d.span!.line, d.span!.column]), [
    ['E_UNTERMINATED_STRING', 'unterminated string: add the closing `"` (use `\\n` for a line break inside a string)', 2, 9],
    ['E_BAD_ESCAPE', 'unknown escape `\\q`; use \\" \\\\ \\n \\t or \\$', 4, 11],
    ['E_PARSE', 'expected `]` after the unterminated string', 2, 11],
  ]);
});

parser('a field read such as `cfg.lr` is one error saying the language has no member access; the rest parses', () => {
  const r = parsePipeText('for each cfg in [{ lr: 1 }] {\n  stage a = sh { command: "echo ${cfg.lr}", env: { B: c.opt.b + 1 } }\n}', 'main.pipe');
  const note = 'write each value as its own let or loop variable: `let lr = 5e-5`, or `for each lr in [...], b in [...]` with `where` to keep the combinations you want';
  assert.equal(r.diagnostics.map((d) => [d.code, d.message, d.span!.line, d.span!.column, d.span!.endColumn, d.notes]), [
    ['E_LEX', '`cfg.lr`: the language has no `.` to read a field, and no indexing', 2, 35, 41, [note]],
    ['E_LEX', '`c.opt.b`: the language has no `.` to read a field, and no indexing', 2, 55, 62, [note]],
  ]);
  assert.equal(r.ast!.statements.length, 1);
});

parser('lexing errors alone still give an AST', () => {
  const r = parsePipeText('let a = 1 @', 'main.pipe');
  assert.equal(r.diagnostics.map((d) => d.code), ['E_LEX']);
  assert.equal(r.ast!.statements.length, 1);
});

parser('one parser instance serves every call, with no state carried between calls', () => {
  const before = parserInstancesCreated();
  const bad = parsePipeText('stage', 'a.pipe');
  const good = parsePipeText('let a = 1', 'b.pipe');
  const again = parsePipeText('stage', 'c.pipe');
  assert.is(parserInstancesCreated(), before);
  assert.is(before, 1);
  assert.equal(bad.diagnostics.length, 1);
  assert.equal(good.diagnostics, []);
  assert.equal(again.diagnostics.map((d) => d.span!.file), ['c.pipe']);
  assert.ok(pipeParser.input.length > 0, 'the shared parser was the one given the tokens');
});

parser.run();

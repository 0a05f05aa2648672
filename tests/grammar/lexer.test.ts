// Tests for grammar/lexer.ts: tokens, string modes, and lexing diagnostics with exact positions.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { tokenize } from '../../grammar/lexer.ts';
import { parsePipeText } from '../../grammar/index.ts';

const lexer = suite('lexer');

function kinds(text: string): string[] {
  return tokenize(text, 'f.pipe').tokens.map((t) => `${t.tokenType.name} ${t.image}`);
}

lexer('keywords are words of their own, and longer names stay identifiers', () => {
  assert.equal(kinds('let letter stage stages for each eachx in index'), [
    'Kw_let let', 'Identifier letter', 'Kw_stage stage', 'Identifier stages', 'Kw_for for',
    'Kw_each each', 'Identifier eachx', 'Kw_in in', 'Identifier index',
  ]);
});

lexer('numbers take integers, decimals and exponents; minus is a separate token', () => {
  assert.equal(kinds('5 0.1 5e-5 1E3 .5 -2'), [
    'NumberLiteral 5', 'NumberLiteral 0.1', 'NumberLiteral 5e-5', 'NumberLiteral 1E3', 'NumberLiteral .5',
    'Minus -', 'NumberLiteral 2',
  ]);
});

lexer('two-character operators win over their one-character prefixes', () => {
  assert.equal(kinds('== != <= >= < > = + * / %'), [
    'EqEq ==', 'NotEq !=', 'LtEq <=', 'GtEq >=', 'Lt <', 'Gt >', 'Equals =', 'Plus +', 'Star *', 'Slash /', 'Percent %',
  ]);
});

lexer('comments run to the end of the line and are skipped', () => {
  assert.equal(kinds('let a = 1 # the rate\nlet b'), [
    'Kw_let let', 'Identifier a', 'Equals =', 'NumberLiteral 1', 'Kw_let let', 'Identifier b',
  ]);
});

lexer('a # inside a string is text, not a comment', () => {
  assert.equal(kinds('"a#b" # c'), ['StringStart "', 'StringText a#b', 'StringEnd "']);
});

lexer('a string splits into text, escapes and interpolations', () => {
  assert.equal(kinds('"run-${lr}\\n$x"'), [
    'StringStart "', 'StringText run-', 'InterpStart ${', 'Identifier lr', 'RCurlyNested }',
    'StringEscape \\n', 'StringText $x', 'StringEnd "',
  ]);
});

lexer('objects and strings nest inside an interpolation', () => {
  assert.equal(kinds('"a${ {"k": "}"} }b" }'), [
    'StringStart "', 'StringText a', 'InterpStart ${', 'LCurlyNested {', 'StringStart "', 'StringText k', 'StringEnd "',
    'Colon :', 'StringStart "', 'StringText }', 'StringEnd "', 'RCurlyNested }', 'RCurlyNested }', 'StringText b',
    'StringEnd "', 'RCurly }',
  ]);
});

lexer('positions are 1-based lines and columns', () => {
  const t = tokenize('let a =\n  42', 'f.pipe').tokens[3]!;
  assert.equal([t.image, t.startLine, t.startColumn, t.startOffset], ['42', 2, 3, 10]);
});

lexer('an unexpected character is E_LEX at its position, and lexing goes on', () => {
  const r = tokenize('let a = 1\nlet b = @@ 2', 'f.pipe');
  assert.equal(r.diagnostics.map((d) => [d.code, d.message, d.span!.line, d.span!.column, d.span!.endColumn]), [
    ['E_LEX', 'unexpected characters `@@`', 2, 9, 11],
  ]);
  assert.equal(r.tokens.at(-1)!.image, '2');
});

lexer('a number run into letters or digits is E_BAD_NUMBER over the whole word, and only the number goes on to the parser', () => {
  const r = tokenize('let a = 0x10\nlet b = 2.5.1 + 1e-4\nlet c = 3', 'f.pipe');
  assert.equal(r.diagnostics.map((d) => [d.code, d.message, d.span!.line, d.span!.column, d.span!.endColumn]), [
    ['E_BAD_NUMBER', '`0x10` is not a number: write numbers in decimal, e.g. 16, 0.5 or 1e-4', 1, 9, 13],
    ['E_BAD_NUMBER', '`2.5.1` is not a number: write numbers in decimal, e.g. 16, 0.5 or 1e-4', 2, 9, 14],
  ]);
  assert.equal(kinds('let a = 0x10\nlet b = 2.5.1 + 1e-4').filter((k) => k.startsWith('NumberLiteral')), ['NumberLiteral 0', 'NumberLiteral 2.5', 'NumberLiteral 1e-4']);
  // Spaced, the same characters are separate tokens the parser judges.
  assert.equal(tokenize('let a = 1 + x', 'f.pipe').diagnostics, []);
});

lexer('a `${` left open is one E_UNCLOSED_INTERPOLATION at it: the string ends at its `"` and the rest of the text lexes as written', () => {
  const text = 'let n = "a"\nstage s = sh { command: "echo ${n" }\nstage t = sh { command: "x ${n}" }';
  const r = tokenize(text, 'f.pipe');
  assert.equal(r.diagnostics.map((d) => [d.code, d.message, d.span!.line, d.span!.column, d.span!.endColumn]), [
    ['E_UNCLOSED_INTERPOLATION', '`${` is not closed: add `}` before the string\'s closing `"`', 2, 31, 34],
  ]);
  // What the parser sees: the interpolation closed, the string ended, then the line's `}` and the next line as in the text.
  const seen = r.tokens.map((t) => `${t.tokenType.name} ${t.image}`.trim());
  assert.equal(seen.slice(seen.indexOf('InterpStart ${')), [
    'InterpStart ${', 'Identifier n', 'RCurlyNested', 'StringEnd "', 'RCurly }',
    'Kw_stage stage', 'Identifier t', 'Equals =', 'Identifier sh', 'LCurly {', 'Identifier command', 'Colon :',
    'StringStart "', 'StringText x', 'InterpStart ${', 'Identifier n', 'RCurlyNested }', 'StringEnd "', 'RCurly }',
  ]);
  const t = r.tokens.find((x) => x.image === 't')!;
  assert.equal([t.startLine, t.startColumn, t.startOffset], [3, 7, text.indexOf('t = sh')]);
  // Written correctly, a string inside an interpolation is no mistake.
  assert.equal(tokenize('let a = "x ${f("y")} z"', 'f.pipe').diagnostics, []);
  // An empty one is then said to end where its `}` was supplied.
  assert.equal(parsePipeText('let x = "${"\nlet y = 1', 'f.pipe').diagnostics.map((d) => [d.code, d.message]), [
    ['E_UNCLOSED_INTERPOLATION', '`${` is not closed: add `}` before the string\'s closing `"`'],
    ['E_PARSE', 'expected a value, found the end of the `${`'],
  ]);
});

lexer('a string cut by a line break is E_UNTERMINATED_STRING and the next line lexes normally', () => {
  const r = tokenize('let a = "abc\nlet b = 2', 'f.pipe');
  assert.equal(r.diagnostics.map((d) => [d.code, d.span!.line, d.span!.column, d.span!.endColumn]), [
    ['E_UNTERMINATED_STRING', 1, 9, 13],
  ]);
  assert.equal(kinds('let a = "abc\nlet b = 2').slice(-4), ['Kw_let let', 'Identifier b', 'Equals =', 'NumberLiteral 2']);
});

lexer('a string open at the end of the file is E_UNTERMINATED_STRING and gets closed', () => {
  const r = tokenize('let a = "x${b', 'f.pipe');
  assert.equal(r.diagnostics.map((d) => [d.code, d.span!.line, d.span!.column]), [['E_UNTERMINATED_STRING', 1, 9]]);
  assert.equal(r.tokens.slice(-2).map((t) => t.tokenType.name), ['RCurly', 'StringEnd']);
});

lexer.run();

// The language's limits: each too-large or too-deep input is one located diagnostic, never a stack overflow or a hang.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { MAX_EXPRESSION_DEPTH, MAX_NESTING, MAX_SYNTAX_ERRORS, MAX_TOKENS } from '../../grammar/limits.ts';
import { MAX_COMBINATIONS, MAX_STAGES } from '../../runtime/expand.ts';
import { parsePipe, PREAMBLE } from '../helpers/pipe.ts';

const test = suite('language limits');

/** `CODE line:column message` of every diagnostic. */
function reported(text: string): string[] {
  return parsePipe(text).diagnostics.map((d) => `${d.code} ${d.span?.line}:${d.span?.column} ${d.message}`);
}

test('nesting past the limit is refused at the token that goes too deep, for every construct that nests', () => {
  const deep = MAX_NESTING + 1;
  const message = `brackets, \`if\`s and prefix operators nest more than ${MAX_NESTING} levels deep here`;
  assert.equal(reported(`let a = ${'('.repeat(deep)}1${')'.repeat(deep)}`), [`E_TOO_DEEP 1:${9 + MAX_NESTING} ${message}`]);
  assert.equal(reported(`let a = ${'['.repeat(200)}1${']'.repeat(200)}`), [`E_TOO_DEEP 1:${9 + MAX_NESTING} ${message}`]);
  assert.equal(reported(`let a = ${'{a: '.repeat(200)}1${'}'.repeat(200)}`), [`E_TOO_DEEP 1:${9 + 4 * MAX_NESTING} ${message}`]);
  assert.equal(reported(`let a = ${'- '.repeat(5000)}1`), [`E_TOO_DEEP 1:${9 + 2 * MAX_NESTING} ${message}`]);
  assert.equal(reported(`let a = ${'not '.repeat(5000)}true`), [`E_TOO_DEEP 1:${9 + 4 * MAX_NESTING} ${message}`]);
  assert.equal(reported(`let a = ${'if true then 1 else '.repeat(500)}2`), [`E_TOO_DEEP 1:${9 + 20 * MAX_NESTING} ${message}`]);
  assert.equal(reported(`let a = "${'${"'.repeat(200)}x${'"}'.repeat(200)}"`)[0]?.split(' ').slice(0, 1), ['E_TOO_DEEP']);
});

test('nesting up to the limit parses, and flat repetition is not nesting', () => {
  assert.equal(reported(`let a = ${'('.repeat(MAX_NESTING)}1${')'.repeat(MAX_NESTING)}`), []);
  assert.equal(reported(`let a = [${Array.from({ length: 500 }, () => '-1').join(', ')}]`), []);
  assert.equal(reported(`let a = {${Array.from({ length: 300 }, (_, i) => `k${i}: if true then 1 else 2`).join(', ')}}`), []);
});

test('an operator chain deeper than the expression limit is refused before evaluation could overflow', () => {
  const long = Array.from({ length: MAX_EXPRESSION_DEPTH + 1 }, () => '1').join(' + ');
  // Reported at the first node found past the limit: the second operand of the innermost `+`.
  assert.equal(reported(`let a = ${long}`), [`E_TOO_DEEP 1:13 this expression is more than ${MAX_EXPRESSION_DEPTH} levels deep (each operator of a chain counts)`]);
  assert.equal(reported(`let a = ${Array.from({ length: 400 }, () => '1').join(' + ')}`), []);
});

test('a file with more tokens than the limit is refused with the count, before it is parsed', () => {
  const r = reported(`let a = [${'1,'.repeat(MAX_TOKENS)}]`);
  // The 50,001st token: `let a = [` are four, then `1` and `,` alternate from column 10.
  assert.equal(r, [`E_TOO_LARGE 1:${10 + MAX_TOKENS - 4} the file has ${(2 * MAX_TOKENS + 5).toLocaleString('en-US')} tokens; at most 50,000 are allowed`]);
});

test('a loop with too many combinations says how many, and a million-variant matrix is refused at once', () => {
  assert.equal(reported('for each a in range(0, 1000), b in range(0, 1000) { }'), [
    `E_TOO_MANY_VARIANTS 1:1 this \`for each\` makes 1,000,000 combinations (1000 × 1000); at most ${MAX_COMBINATIONS.toLocaleString('en-US')} are allowed`,
  ]);
});

test('a pipeline over the stage limit says how many stages it would make, where it crossed the limit', () => {
  const text = `${PREAMBLE}\nfor each a in range(0, 400), b in range(0, 100) { stage w = sft(model: base, data: paused) { }\nstage e = evaluate(model: w, data: data) { } }`;
  const r = reported(text);
  assert.equal(r, [`E_TOO_MANY_VARIANTS 4:1 the pipeline makes 80,003 stages; at most ${MAX_STAGES.toLocaleString('en-US')} are allowed`]);
});

test('garbage stops after 100 syntax errors and 100 lexing errors, and the next file parses as usual', () => {
  const r = parsePipe(Array.from({ length: 5000 }, () => 'let = ;').join('\n'));
  const parse = r.diagnostics.filter((d) => d.code === 'E_PARSE');
  const lex = r.diagnostics.filter((d) => d.code === 'E_LEX');
  // The parser stops at its 100th error; each `let = ;` makes two, of which the first of its statement is shown.
  assert.equal(parse.slice(0, -1).map((d) => d.span!.line), Array.from({ length: MAX_SYNTAX_ERRORS / 2 }, (_, i) => i + 1));
  assert.is(parse.at(-1)!.message, `more than ${MAX_SYNTAX_ERRORS} syntax errors: stopped here; is this a .pipe file?`);
  assert.is(lex.length, MAX_SYNTAX_ERRORS + 1);
  assert.equal(lex.at(-1)!.notes, ['and 4,900 more lexing errors after this one, not shown']);
  assert.equal(reported(`${PREAMBLE}\nlet a = [1, 2]`), []);
});

test('whole numbers beyond 2^53 - 1 are refused where written, and range() never counts past them', () => {
  assert.equal(reported('let a = 9007199254740993\nlet b = 9007199254740991\nlet c = 1e300'), [
    'E_NUMBER_RANGE 1:9 the whole number 9007199254740993 is beyond 2^53 - 1, where doubles skip whole numbers (it would become 9007199254740992)',
  ]);
  assert.equal(reported('let big = 9007199254740991 + 1\nlet r = range(big, big + 2)'), [
    'E_NUMBER_RANGE 2:15 `range` counts only within ±(2^53 - 1), got 9007199254740992',
  ]);
});

test.run();

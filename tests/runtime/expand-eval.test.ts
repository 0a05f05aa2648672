// Tests for runtime/expand-eval.ts: what every operator computes and the type errors it reports.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import type { LetDecl } from '../../grammar/ast.ts';
import type { Diagnostic } from '../../grammar/diagnostics.ts';
import { parsePipeText } from '../../grammar/index.ts';
import { evaluate, INVALID, jsonEqual, Scope, type Value } from '../../runtime/expand-eval.ts';
import type { JsonValue } from '../../runtime/json.ts';

const evaluation = suite('evaluate');

function run(text: string, vars: Record<string, JsonValue> = {}): { value: Value; diagnostics: Diagnostic[] } {
  const parsed = parsePipeText(`let x = ${text}`, 'e.pipe');
  assert.equal(parsed.diagnostics, []);
  const scope = new Scope();
  for (const [k, v] of Object.entries(vars)) scope.set(k, v);
  const diagnostics: Diagnostic[] = [];
  const value = evaluate((parsed.ast!.statements[0] as LetDecl).value, scope, {
    report: (d) => diagnostics.push(d),
    explainUnknown: () => [],
  });
  return { value, diagnostics };
}

function value(text: string, vars?: Record<string, JsonValue>): Value {
  const r = run(text, vars);
  assert.equal(r.diagnostics, []);
  return r.value;
}

/** The one diagnostic of a failing expression: [code, message, column within `let x = ...`]. */
function failure(text: string, vars?: Record<string, JsonValue>): [string, string, number] {
  const r = run(text, vars);
  assert.ok(r.value === INVALID, `${text} should fail`);
  assert.is(r.diagnostics.length, 1, JSON.stringify(r.diagnostics));
  const d = r.diagnostics[0]!;
  return [d.code, d.message, d.span!.column];
}

evaluation('literals evaluate to JSON values', () => {
  assert.equal(value('[1, -2.5, 5e-5, "s", true, false, null, {a: {b: []}}]'), [1, -2.5, 5e-5, 's', true, false, null, { a: { b: [] } }]);
});

evaluation('arithmetic follows precedence; % is the remainder', () => {
  assert.is(value('1 + 2 * 3 - 4 / 2'), 5);
  assert.is(value('7 % 3'), 1);
  assert.is(value('-(2 + 3)'), -5);
});

evaluation('+ joins strings and lists', () => {
  assert.is(value('"a" + "b"'), 'ab');
  assert.equal(value('[1] + [2, 3]'), [1, 2, 3]);
});

evaluation('comparisons: deep equality for any values, order for numbers and strings', () => {
  assert.is(value('[1, {a: 2}] == [1, {a: 2}]'), true);
  assert.is(value('{a: 1} != {a: 1, b: 2}'), true);
  assert.is(value('1 == "1"'), false);
  assert.is(value('2 <= 2 and 3 > 2 and "a" < "b" and 1 >= 0.5'), true);
});

evaluation('and/or short-circuit, so the right side may be skipped', () => {
  assert.is(value('n != 0 and 1 / n > 2', { n: 0 }), false);
  assert.is(value('true or 1 / 0 == 1'), true);
  assert.is(value('true or 1'), true);
  assert.is(value('not false'), true);
});

evaluation('if picks a branch by a boolean condition', () => {
  assert.is(value('if h then lr else lr * 2', { h: false, lr: 0.5 }), 1);
});

evaluation('interpolation renders strings bare and other values as JSON', () => {
  assert.is(value('"${s}|${n}|${b}|${z}|${l}|${o}"', { s: 'x', n: 5e-5, b: true, z: null, l: [1, 'a'], o: { k: 1 } }),
    'x|0.00005|true|null|[1,"a"]|{"k":1}');
});

evaluation('range(a, b) counts from a up to b exclusive; range(n) from 0', () => {
  assert.equal(value('range(2, 5)'), [2, 3, 4]);
  assert.equal(value('range(3)'), [0, 1, 2]);
  assert.equal(value('range(3, 1)'), []);
});

evaluation('type errors are E_EXPR_TYPE at the whole expression', () => {
  assert.equal(failure('"a" * 2'), ['E_EXPR_TYPE', '`*` needs two numbers, got string and number', 9]);
  assert.equal(failure('"a" + 1'), ['E_EXPR_TYPE', '`+` adds two numbers, joins two strings or two lists, got string and number', 9]);
  assert.equal(failure('1 < "b"'), ['E_EXPR_TYPE', '`<` compares two numbers or two strings, got number and string', 9]);
  assert.equal(failure('1 and true'), ['E_EXPR_TYPE', '`and` needs booleans, got number', 9]);
  assert.equal(failure('false or 1'), ['E_EXPR_TYPE', '`or` needs booleans, got number', 9]);
  assert.equal(failure('-"a"'), ['E_EXPR_TYPE', '`-` needs a number, got string', 9]);
  assert.equal(failure('not 1'), ['E_EXPR_TYPE', '`not` needs a boolean, got number', 9]);
  assert.equal(failure('if 1 then 2 else 3'), ['E_EXPR_TYPE', 'the condition of `if` must be a boolean, got number', 12]);
  assert.equal(failure('range(1.5)'), ['E_EXPR_TYPE', '`range` needs whole numbers, got 1.5', 9]);
  assert.equal(failure('range(1, 2, 3)'), ['E_EXPR_TYPE', '`range` takes 1 or 2 arguments (range(end) or range(start, end)), got 3', 9]);
  assert.equal(failure('range(0, 1e9)'), ['E_EXPR_TYPE', '`range` would make 1000000000 values; at most 100000 are allowed', 9]);
  assert.equal(failure('1e308 * 10'), ['E_EXPR_TYPE', 'the number is too large to represent', 9]);
});

evaluation('division and remainder by zero are E_DIVISION_BY_ZERO', () => {
  assert.equal(failure('1 + 4 / 0'), ['E_DIVISION_BY_ZERO', '`/` by zero', 13]);
  assert.equal(failure('4 % z', { z: 0 }), ['E_DIVISION_BY_ZERO', '`%` by zero', 9]);
});

evaluation('an unknown name is E_UNKNOWN_VARIABLE with a suggestion from the scope', () => {
  const r = run('lrr * 2', { lr: 1 });
  assert.equal(r.diagnostics.map((d) => [d.code, d.message, d.span!.column, d.notes]), [
    ['E_UNKNOWN_VARIABLE', 'unknown variable `lrr`', 9, ['did you mean `lr`?']],
  ]);
});

evaluation('each `${…}` of a string says its own mistake, and the string is invalid', () => {
  const r = run('"echo ${q} ${wrod} ${lr}"', { lr: 1 });
  assert.is(r.value, INVALID);
  assert.equal(r.diagnostics.map((d) => [d.code, d.message, d.span!.column]), [
    ['E_UNKNOWN_VARIABLE', 'unknown variable `q`', 17],
    ['E_UNKNOWN_VARIABLE', 'unknown variable `wrod`', 22],
  ]);
});

evaluation('True, False and None as other languages write them suggest the literals', () => {
  const r = run('[True, False, None, NULL]');
  assert.equal(r.diagnostics.map((d) => [d.message, d.notes]), [
    ['unknown variable `True`', ['did you mean `true`?']],
    ['unknown variable `False`', ['did you mean `false`?']],
    ['unknown variable `None`', ['did you mean `null`?']],
    ['unknown variable `NULL`', ['did you mean `null`?']],
  ]);
});

evaluation('an unknown function is E_UNKNOWN_FUNCTION at its name', () => {
  const r = run('1 + rang(3)');
  assert.equal(r.diagnostics.map((d) => [d.code, d.span!.column, d.notes]), [
    ['E_UNKNOWN_FUNCTION', 13, ['did you mean `range`?', 'functions: range']],
  ]);
});

evaluation('an INVALID operand makes the result INVALID without a second report', () => {
  const r = run('(1 / 0) * "a" + nope');
  assert.ok(r.value === INVALID);
  assert.equal(r.diagnostics.map((d) => d.code), ['E_DIVISION_BY_ZERO']);
});

evaluation('jsonEqual compares deeply and ignores key order', () => {
  assert.ok(jsonEqual({ a: [1, { b: null }], c: 'x' }, { c: 'x', a: [1, { b: null }] }));
  assert.not.ok(jsonEqual([1, 2], [2, 1]));
  assert.not.ok(jsonEqual({ a: 1 }, [1]));
});

evaluation('object keys such as __proto__ become own properties', () => {
  const v = value('{"__proto__": 1}') as Record<string, JsonValue>;
  assert.ok(Object.hasOwn(v, '__proto__'));
  assert.is(Object.getPrototypeOf(v), Object.prototype);
});

evaluation.run();

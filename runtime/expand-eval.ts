// Evaluation of .pipe expressions to JSON values, reporting type errors instead of throwing.
import type { Expr, StringExpr } from '../grammar/ast.ts';
import { diagnostic, type Diagnostic, type SourceSpan } from '../grammar/diagnostics.ts';
import { didYouMean } from '../grammar/suggest.ts';
import type { JsonValue } from './json.ts';

/** The value of an expression whose mistake is already reported; anything computed from it is INVALID too. */
export const INVALID: unique symbol = Symbol('invalid');
export type Value = JsonValue | typeof INVALID;

/** The most values `range()` may produce; a typo such as range(0, 1e9) must not exhaust memory. */
const MAX_RANGE = 100_000;
const FUNCTIONS = ['range'];

/** Lets and loop variables visible to an expression; inner scopes shadow outer ones. */
export class Scope {
  private readonly vars = new Map<string, Value>();

  constructor(private readonly parent?: Scope) {}

  set(name: string, value: Value): void {
    this.vars.set(name, value);
  }

  get(name: string): Value | undefined {
    return this.vars.has(name) ? this.vars.get(name) : this.parent?.get(name);
  }

  *names(): Iterable<string> {
    yield* this.vars.keys();
    if (this.parent) yield* this.parent.names();
  }
}

export interface EvalContext {
  report(d: Diagnostic): void;
  /** Extra notes for a name that is not in scope (defined later, a stage, ...). */
  explainUnknown(name: string, use: SourceSpan): string[];
  /** A name not in scope that a statement left out for its syntax errors may declare: its value is unknown, not a mistake. */
  declaredElsewhere?(name: string): boolean;
}

export function typeName(v: JsonValue): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'list';
  return typeof v === 'object' ? 'object' : typeof v;
}

export function jsonEqual(a: JsonValue, b: JsonValue): boolean {
  if (a === b) return true;
  if (typeof a !== 'object' || typeof b !== 'object' || a === null || b === null) return false;
  if (Array.isArray(a) || Array.isArray(b)) {
    return Array.isArray(a) && Array.isArray(b) && a.length === b.length && a.every((x, i) => jsonEqual(x, b[i]!));
  }
  const ka = Object.keys(a);
  return ka.length === Object.keys(b).length && ka.every((k) => Object.hasOwn(b, k) && jsonEqual(a[k]!, b[k]!));
}

/**
 * How a value reads inside a string or a variant label: strings bare, everything else as JSON, with fractions cut to
 * 15 significant digits as most languages print doubles, so `0.1 * 3` reads `0.3`, not `0.30000000000000004`.
 * Whole numbers stay exact (up to 2^53 they have 16 digits).
 */
export function renderValue(v: JsonValue): string {
  return typeof v === 'string' ? v : JSON.stringify(v, (_key, x: unknown) => (typeof x === 'number' && !Number.isInteger(x) ? Number(x.toPrecision(15)) : x));
}

/** The literal a name most likely means when it is spelled as in another language (Python's `True` and `None`). */
function literalMeant(name: string): string | undefined {
  const lower = name.toLowerCase();
  if (lower === 'none') return 'null';
  return lower === 'true' || lower === 'false' || lower === 'null' ? lower : undefined;
}

/** An object built from entries; own properties even for keys such as `__proto__`. */
export function objectFrom(entries: Iterable<[string, JsonValue]>): { [key: string]: JsonValue } {
  return Object.fromEntries(entries) as { [key: string]: JsonValue };
}

export function evaluate(expr: Expr, scope: Scope, ctx: EvalContext): Value {
  switch (expr.type) {
    case 'number':
      return finite(expr.value, expr, ctx);
    case 'boolean':
      return expr.value;
    case 'null':
      return null;
    case 'string':
      return evaluateString(expr, scope, ctx);
    case 'list': {
      const items = expr.items.map((item) => evaluate(item, scope, ctx));
      return items.includes(INVALID) ? INVALID : (items as JsonValue[]);
    }
    case 'object': {
      const entries: [string, JsonValue][] = [];
      let ok = true;
      for (const e of expr.entries) {
        const v = evaluate(e.value, scope, ctx);
        if (v === INVALID) ok = false;
        else entries.push([e.key, v]);
      }
      return ok ? objectFrom(entries) : INVALID;
    }
    case 'name': {
      const v = scope.get(expr.name);
      if (v !== undefined) return v;
      if (ctx.declaredElsewhere?.(expr.name)) return INVALID;
      const notes = ctx.explainUnknown(expr.name, expr.span);
      const literal = literalMeant(expr.name);
      if (notes.length === 0 && literal !== undefined) notes.push(`did you mean \`${literal}\`?`);
      ctx.report(diagnostic(
        'E_UNKNOWN_VARIABLE', `unknown variable \`${expr.name}\``, expr.span,
        notes.length > 0 ? notes : didYouMean(expr.name, scope.names()),
      ));
      return INVALID;
    }
    case 'unary': {
      const v = evaluate(expr.operand, scope, ctx);
      if (v === INVALID) return INVALID;
      if (expr.op === '-' && typeof v === 'number') return -v;
      if (expr.op === 'not' && typeof v === 'boolean') return !v;
      const wants = expr.op === '-' ? 'a number' : 'a boolean';
      ctx.report(diagnostic('E_EXPR_TYPE', `\`${expr.op}\` needs ${wants}, got ${typeName(v)}`, expr.span));
      return INVALID;
    }
    case 'binary':
      return evaluateBinary(expr, scope, ctx);
    case 'if': {
      const c = evaluate(expr.condition, scope, ctx);
      if (c === INVALID) return INVALID;
      if (typeof c !== 'boolean') {
        ctx.report(diagnostic('E_EXPR_TYPE', `the condition of \`if\` must be a boolean, got ${typeName(c)}`, expr.condition.span));
        return INVALID;
      }
      return evaluate(c ? expr.then : expr.else, scope, ctx);
    }
    case 'call':
      return evaluateCall(expr, scope, ctx);
  }
}

export function evaluateString(expr: StringExpr, scope: Scope, ctx: EvalContext): string | typeof INVALID {
  let out = '';
  let ok = true;
  for (const part of expr.parts) {
    if (typeof part === 'string') {
      out += part;
      continue;
    }
    // Every `${…}` is evaluated, so each says its own mistake (they are independent, as a list's items are).
    const v = evaluate(part, scope, ctx);
    if (v === INVALID) ok = false;
    else out += renderValue(v);
  }
  return ok ? out : INVALID;
}

function evaluateBinary(expr: Extract<Expr, { type: 'binary' }>, scope: Scope, ctx: EvalContext): Value {
  const { op } = expr;
  const left = evaluate(expr.left, scope, ctx);
  if (left === INVALID) return INVALID;
  // `and`/`or` short-circuit, so `x != 0 and 1 / x > 2` is safe.
  if (op === 'and' || op === 'or') {
    if (typeof left !== 'boolean') return typeError(expr, `\`${op}\` needs booleans, got ${typeName(left)}`, ctx);
    if (op === 'and' ? !left : left) return left;
    const right = evaluate(expr.right, scope, ctx);
    if (right === INVALID) return INVALID;
    if (typeof right !== 'boolean') return typeError(expr, `\`${op}\` needs booleans, got ${typeName(right)}`, ctx);
    return right;
  }
  const right = evaluate(expr.right, scope, ctx);
  if (right === INVALID) return INVALID;
  const both = `${typeName(left)} and ${typeName(right)}`;
  switch (op) {
    case '==':
      return jsonEqual(left, right);
    case '!=':
      return !jsonEqual(left, right);
    case '<':
    case '<=':
    case '>':
    case '>=': {
      if (!((typeof left === 'number' && typeof right === 'number') || (typeof left === 'string' && typeof right === 'string'))) {
        return typeError(expr, `\`${op}\` compares two numbers or two strings, got ${both}`, ctx);
      }
      if (op === '<') return left < right;
      if (op === '<=') return left <= right;
      if (op === '>') return left > right;
      return left >= right;
    }
    case '+':
      if (typeof left === 'number' && typeof right === 'number') return finite(left + right, expr, ctx);
      if (typeof left === 'string' && typeof right === 'string') return left + right;
      if (Array.isArray(left) && Array.isArray(right)) return [...left, ...right];
      return typeError(expr, `\`+\` adds two numbers, joins two strings or two lists, got ${both}`, ctx, [
        'to put a value into a string, use interpolation: "lr=${lr}"',
      ]);
    default: {
      if (typeof left !== 'number' || typeof right !== 'number') {
        return typeError(expr, `\`${op}\` needs two numbers, got ${both}`, ctx);
      }
      if ((op === '/' || op === '%') && right === 0) {
        ctx.report(diagnostic('E_DIVISION_BY_ZERO', `\`${op}\` by zero`, expr.span));
        return INVALID;
      }
      if (op === '-') return finite(left - right, expr, ctx);
      if (op === '*') return finite(left * right, expr, ctx);
      if (op === '/') return finite(left / right, expr, ctx);
      return left % right;
    }
  }
}

/** JSON has no infinities: a number that overflows is a mistake, not a value. */
function finite(n: number, expr: Expr, ctx: EvalContext): Value {
  return Number.isFinite(n) ? n : typeError(expr, 'the number is too large to represent', ctx);
}

function typeError(expr: Expr, message: string, ctx: EvalContext, notes?: string[]): typeof INVALID {
  ctx.report(diagnostic('E_EXPR_TYPE', message, expr.span, notes));
  return INVALID;
}

function evaluateCall(expr: Extract<Expr, { type: 'call' }>, scope: Scope, ctx: EvalContext): Value {
  if (!FUNCTIONS.includes(expr.callee)) {
    ctx.report(diagnostic('E_UNKNOWN_FUNCTION', `unknown function \`${expr.callee}\``, expr.calleeSpan, [
      ...didYouMean(expr.callee, FUNCTIONS),
      `functions: ${FUNCTIONS.join(', ')}`,
    ]));
    return INVALID;
  }
  if (expr.args.length < 1 || expr.args.length > 2) {
    return typeError(expr, `\`range\` takes 1 or 2 arguments (range(end) or range(start, end)), got ${expr.args.length}`, ctx);
  }
  const args = expr.args.map((a) => evaluate(a, scope, ctx));
  if (args.includes(INVALID)) return INVALID;
  if (!args.every((a) => Number.isInteger(a))) {
    return typeError(expr, `\`range\` needs whole numbers, got ${args.map((a) => renderValue(a as JsonValue)).join(', ')}`, ctx);
  }
  // Beyond 2^53, i + 1 === i: counting up would never reach the end.
  const unsafe = args.findIndex((a) => !Number.isSafeInteger(a));
  if (unsafe !== -1) {
    ctx.report(diagnostic('E_NUMBER_RANGE', `\`range\` counts only within ±(2^53 - 1), got ${renderValue(args[unsafe] as JsonValue)}`, expr.args[unsafe]!.span));
    return INVALID;
  }
  const [start, end] = args.length === 1 ? [0, args[0] as number] : (args as number[]);
  if (end! - start! > MAX_RANGE) {
    return typeError(expr, `\`range\` would make ${end! - start!} values; at most ${MAX_RANGE} are allowed`, ctx);
  }
  const out: number[] = [];
  for (let i = start!; i < end!; i++) out.push(i);
  return out;
}

// Limits that keep checking any file fast and every recursive phase within the call stack, each a located diagnostic.
import type { IToken } from 'chevrotain';
import { subExpressions, type Expr, type Statement } from './ast.ts';
import { diagnostic, type Diagnostic } from './diagnostics.ts';
import { tokenSpan } from './lexer.ts';
import {
  Comma, Colon, For, If, InterpStart, Include, LBracket, LCurly, LParen, Let, Minus, Not, RBracket, RCurly, RParen, Stage,
  Equals, AddOp, MulOp, CompareOp, And, Or, Then, Else, In, Where,
} from './tokens.ts';

/** Largest .pipe file read, in bytes: far above any hand-written pipeline, small enough to check in well under a second. */
export const MAX_FILE_BYTES = 1 << 20;
/** Most tokens in one file; parsing costs about 10 µs of CPU per token, so this keeps a check under a second. */
export const MAX_TOKENS = 50_000;
/**
 * Most levels of brackets, `if`s and prefix operators (`-`, `not`) inside each other. The parser recurses through
 * about nine rules per level and overflowed the stack at about 130 levels of brackets.
 */
export const MAX_NESTING = 64;
/** Syntax (and, separately, lexing) errors reported per file: past this many, the file is not really a pipeline. */
export const MAX_SYNTAX_ERRORS = 100;
/** Most levels of an expression's tree (an operator chain `a + b + c` is as deep as it is long); evaluation recurses over it. */
export const MAX_EXPRESSION_DEPTH = 500;

/** Tokens after which a `-` is a prefix operator (a negation) rather than a subtraction. */
const BEFORE_OPERAND = new Set([
  LParen, LBracket, LCurly, InterpStart, Comma, Colon, Equals, AddOp, MulOp, CompareOp, And, Or, Not, If, Then, Else, In, Where,
]);
const OPENERS = new Set([LParen, LBracket, LCurly, InterpStart]);
const CLOSERS = new Set([RParen, RBracket, RCurly]);
/** Where an operand ends for good: the next item of a list, object or argument list. */
const SEPARATORS = new Set([Comma, Colon]);
/** Keywords that start a statement: nothing before them is still open. */
const STATEMENT_STARTS = new Set([Let, Stage, For, Include]);

function isA(t: IToken, types: Set<unknown>): boolean {
  return types.has(t.tokenType) || (t.tokenType.CATEGORIES ?? []).some((c) => types.has(c));
}

/**
 * Too many tokens, or nesting deeper than MAX_NESTING, before the parser sees them. Nesting is counted from above:
 * each bracket opens a level, and every `if`, `not` and prefix `-` since the last `,` or `:` of that level is counted
 * as open until the level closes, which is at least as deep as the parser will recurse.
 */
export function checkTokenLimits(tokens: readonly IToken[], file: string): Diagnostic | undefined {
  if (tokens.length > MAX_TOKENS) {
    return diagnostic('E_TOO_LARGE', `the file has ${tokens.length.toLocaleString('en-US')} tokens; at most ${MAX_TOKENS.toLocaleString('en-US')} are allowed`,
      tokenSpan(file, tokens[MAX_TOKENS]!), ['split it with `include`, or let a `for each` generate what is repeated']);
  }
  // One entry per open bracket: how many prefix operators and `if`s are open inside it.
  const levels: number[] = [0];
  let depth = 0;
  let previous: IToken | undefined;
  for (const t of tokens) {
    if (isA(t, OPENERS)) {
      levels.push(0);
      depth++;
    } else if (isA(t, CLOSERS) && levels.length > 1) {
      depth -= 1 + levels.pop()!;
    } else if (isA(t, SEPARATORS) || (levels.length === 1 && isA(t, STATEMENT_STARTS))) {
      depth -= levels[levels.length - 1]!;
      levels[levels.length - 1] = 0;
    } else if (t.tokenType === If || t.tokenType === Not || (t.tokenType === Minus && (previous === undefined || isA(previous, BEFORE_OPERAND)))) {
      levels[levels.length - 1]!++;
      depth++;
    }
    if (depth > MAX_NESTING) {
      return diagnostic('E_TOO_DEEP', `brackets, \`if\`s and prefix operators nest more than ${MAX_NESTING} levels deep here`, tokenSpan(file, t),
        ['give the inner parts names with `let`']);
    }
    previous = t;
  }
  return undefined;
}

/** The expressions a statement holds, loop bodies included. */
function statementExpressions(s: Statement): Expr[] {
  switch (s.type) {
    case 'let':
      return [s.value];
    case 'stage':
      return [s.params, ...s.inputs.flatMap((i) => (i.ref.select?.type === 'match' ? i.ref.select.pairs.map((p) => p.value) : []))];
    case 'loop':
      return [...s.vars.map((v) => v.values), ...(s.where ? [s.where] : []), ...(s.label ? [s.label] : []), ...s.body.flatMap(statementExpressions)];
    default:
      return [];
  }
}

/** The first expression tree deeper than MAX_EXPRESSION_DEPTH, reported at the node that goes one level too deep. */
export function checkExpressionDepth(statements: readonly Statement[]): Diagnostic | undefined {
  // Iterative: the tree being measured may be too deep for recursion, which is the point.
  const stack: { e: Expr; depth: number }[] = statements.flatMap(statementExpressions).map((e) => ({ e, depth: 1 }));
  while (stack.length > 0) {
    const { e, depth } = stack.pop()!;
    if (depth > MAX_EXPRESSION_DEPTH) {
      return diagnostic('E_TOO_DEEP', `this expression is more than ${MAX_EXPRESSION_DEPTH} levels deep (each operator of a chain counts)`, e.span,
        ['give parts of it names with `let`']);
    }
    for (const sub of subExpressions(e)) stack.push({ e: sub, depth: depth + 1 });
  }
  return undefined;
}

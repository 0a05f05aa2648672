// Public entry of the grammar: .pipe text → AST plus every lexing and syntax diagnostic.
import type { CstNode, IRecognitionException, IToken, TokenType } from 'chevrotain';
import type { PipeFile, Statement } from './ast.ts';
import { diagnostic, type Diagnostic, type SourceSpan } from './diagnostics.ts';
import { positionAt, tokenize, tokenSpan } from './lexer.ts';
import { For, Include, InterpStart, LCurly, LCurlyNested, Let, RCurly, RCurlyNested, Slash, Stage } from './tokens.ts';
import { checkExpressionDepth, checkTokenLimits, MAX_SYNTAX_ERRORS } from './limits.ts';
import { endsLineEarly, limitSyntaxErrors, pipeParser, TooManySyntaxErrors } from './parser.ts';
import { judgeStatements, nothingLeftOut, type LeftOut, type MistakeAt } from './partial.ts';
import { toAst } from './to-ast.ts';

export interface ParseResult {
  /** null when the text does not parse; lexing diagnostics alone still give an AST. */
  ast: PipeFile | null;
  /**
   * The statements no error of the text touches (all of the AST's when there is none): loading expands and checks
   * these, so that the mistakes of the rest of the file are reported with the syntax errors, as an editor shows them.
   */
  statements: Statement[];
  /** What the statements left out declared (partial.ts). */
  leftOut: LeftOut;
  diagnostics: Diagnostic[];
}

function errorSpan(e: IRecognitionException, file: string, text: string): SourceSpan {
  // At the end of the file the offending token is EOF, which has no position: point just past the last character.
  if (Number.isNaN(e.token.startOffset)) {
    const end = positionAt(text, text.length);
    return { file, ...end, endLine: end.line, endColumn: end.column, offset: text.length, endOffset: text.length };
  }
  // A line that ends too early is blamed where it ends (the message says "after" that token).
  const previous = (e as { previousToken?: IToken }).previousToken;
  if (endsLineEarly(previous, e.token)) return tokenSpan(file, previous!);
  return tokenSpan(file, e.token);
}

/** A note when the parser tripped over `//`: a comment written as in C or JavaScript, which reads as two divisions here. */
function commentHint(e: IRecognitionException, tokens: IToken[]): string[] | undefined {
  if (e.token.tokenType !== Slash) return undefined;
  const i = tokens.indexOf(e.token);
  const glued = (a: IToken | undefined, b: IToken | undefined) =>
    a?.tokenType === Slash && b?.tokenType === Slash && a.startOffset + 1 === b.startOffset;
  return glued(tokens[i - 1], e.token) || glued(e.token, tokens[i + 1]) ? ['comments start with `#`, not `//`'] : undefined;
}

const OPENERS = new Set<TokenType>([LCurly, LCurlyNested, InterpStart]);

/**
 * For "expected `}`": the `{` it would close, when nothing closes it up to the end of the file. The parser can only
 * say where it gave up (often the end of the file, far from the mistake); the brace left open says where to look.
 */
function unclosedBraceHint(e: IRecognitionException, tokens: IToken[]): string[] | undefined {
  if (e.name !== 'MismatchedTokenException' || !e.message.startsWith(`expected ${RCurly.LABEL}`)) return undefined;
  const at = Number.isNaN(e.token.startOffset) ? Infinity : e.token.startOffset;
  // Open `{` and `${` (which a `}` closes too), innermost last; the innermost one open at the error is the one meant.
  const open: IToken[] = [];
  let meant: IToken | undefined;
  for (const t of tokens) {
    if (meant === undefined && t.startOffset >= at) meant = open.at(-1);
    if (OPENERS.has(t.tokenType)) open.push(t);
    else if (t.tokenType === RCurly || t.tokenType === RCurlyNested) open.pop();
  }
  meant ??= open.at(-1);
  if (meant === undefined || meant.tokenType === InterpStart || !open.includes(meant)) return undefined;
  return [`the \`{\` opened at ${meant.startLine}:${meant.startColumn} is never closed`];
}

/** Keywords that can only begin a statement: the boundaries between statements, nested ones included. */
const STATEMENT_KEYWORDS = new Set<TokenType>([Let, Stage, For, Include]);

/**
 * The first syntax error of each statement. After one, the parser's recovery often trips over the rest of the same
 * statement (a `:` it no longer expects), and those errors only bury the real one; the next statement starts afresh.
 */
function firstPerStatement(errors: Diagnostic[], tokens: IToken[]): Diagnostic[] {
  const starts = tokens.filter((t) => STATEMENT_KEYWORDS.has(t.tokenType)).map((t) => t.startOffset);
  // By where the error is shown (a line that ends early is blamed where it ends, in its own statement).
  const statementOf = (e: Diagnostic) => {
    const at = e.span!.offset;
    let lo = 0;
    let hi = starts.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (starts[mid]! <= at) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  };
  const seen = new Set<number>();
  return errors.filter((e) => {
    const statement = statementOf(e);
    if (seen.has(statement)) return false;
    seen.add(statement);
    return true;
  });
}

/**
 * Where a syntax error belongs: at the last token the parser took before it, which is in the statement being parsed
 * (the token it tripped over may start the next one, as a `stage` after a params block left open).
 */
function mistakeOf(e: IRecognitionException, text: string): MistakeAt {
  const previous = (e as { previousToken?: IToken }).previousToken;
  const at = [previous, e.token].find((t) => t !== undefined && !Number.isNaN(t.startOffset));
  if (at !== undefined) return { offset: at.startOffset, line: at.startLine! };
  return { offset: text.length, line: positionAt(text, text.length).line };
}

function spanMistake(span: SourceSpan): MistakeAt {
  return { offset: span.offset, line: span.line };
}

/** One E_TOO_DEEP per top-level statement that has an expression too deep to evaluate. */
function tooDeep(statements: readonly Statement[]): Diagnostic[] {
  return statements.flatMap((s) => checkExpressionDepth([s]) ?? []);
}

/** At most MAX_SYNTAX_ERRORS of a kind, the last saying how many more there are: each one shown costs a code frame. */
function capped(ds: Diagnostic[], what: string, unreported = 0): Diagnostic[] {
  if (ds.length <= MAX_SYNTAX_ERRORS) return ds;
  const more = ds.length + unreported - MAX_SYNTAX_ERRORS;
  const kept = ds.slice(0, MAX_SYNTAX_ERRORS);
  kept.push({ ...ds[MAX_SYNTAX_ERRORS]!, notes: [`and ${more.toLocaleString('en-US')} more ${what} errors after this one, not shown`] });
  return kept;
}

export function parsePipeText(text: string, file: string): ParseResult {
  const lexed = tokenize(text, file, MAX_SYNTAX_ERRORS + 1);
  const lexing = capped(lexed.diagnostics, 'lexing', lexed.unreported);
  // Not parsed (too big, too deep for the parser's recursion, or garbage): nothing to check, and any name may be meant.
  const unparsed = (diagnostics: Diagnostic[]): ParseResult => ({ ast: null, statements: [], leftOut: { ...nothingLeftOut(), anyName: true }, diagnostics });
  const tooMuch = checkTokenLimits(lexed.tokens, file);
  if (tooMuch !== undefined) return unparsed([...lexing, tooMuch]);
  pipeParser.input = lexed.tokens;
  limitSyntaxErrors(MAX_SYNTAX_ERRORS);
  let cst: CstNode | undefined;
  try {
    cst = pipeParser.file();
  } catch (error) {
    if (!(error instanceof TooManySyntaxErrors)) throw error;
  }
  const errors = pipeParser.errors;
  const syntax = firstPerStatement(errors.map((e) => diagnostic('E_PARSE', e.message, errorSpan(e, file, text), commentHint(e, lexed.tokens) ?? unclosedBraceHint(e, lexed.tokens))), lexed.tokens);
  if (cst === undefined) {
    const last = syntax.at(-1)!;
    syntax.push(diagnostic('E_PARSE', `more than ${MAX_SYNTAX_ERRORS} syntax errors: stopped here; is this a .pipe file?`, last.span));
    return unparsed([...lexing, ...syntax]);
  }

  const mistakes = [...errors.map((e) => mistakeOf(e, text)), ...lexing.filter((d) => d.severity === 'error').map((d) => spanMistake(d.span!))];
  // Without syntax errors every node is complete and the whole file builds: the AST, and the mistakes only visible
  // there (to-ast.ts, depth) of every statement. With them only the statements they do not touch can be built.
  const whole = errors.length === 0 ? toAst(cst, file) : undefined;
  let judged = judgeStatements(cst, lexed.tokens, mistakes);
  let built = whole !== undefined && mistakes.length === 0 ? whole : toAst(cst, file, judged.kept);
  const late = whole !== undefined ? [...whole.diagnostics, ...tooDeep(whole.statements)] : [...built.diagnostics, ...tooDeep(built.statements)];
  const lateErrors = late.filter((d) => d.severity === 'error');
  if (lateErrors.length > 0) {
    judged = judgeStatements(cst, lexed.tokens, [...mistakes, ...lateErrors.map((d) => spanMistake(d.span!))]);
    built = toAst(cst, file, judged.kept);
  }
  const ast = whole === undefined ? null : { file, statements: whole.statements };
  const diagnostics = [...lexing, ...syntax, ...late];
  // Lexing errors past the cap are not located, so no statement can be said to be free of them.
  if (lexed.unreported > 0) return { ...unparsed(diagnostics), ast };
  return { ast, statements: built.statements, leftOut: judged.leftOut, diagnostics };
}

export type * from './ast.ts';

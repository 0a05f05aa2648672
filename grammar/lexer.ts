// Text → tokens, with lexing mistakes (stray characters, unterminated strings) turned into diagnostics.
import type { ILexingError, IToken, TokenType } from 'chevrotain';
import { createTokenInstance, Lexer } from './chevrotain.ts';
import { diagnostic, type Diagnostic, type SourceSpan } from './diagnostics.ts';
import {
  Identifier, InterpStart, KEYWORDS, LCurlyNested, LEXER_MODES, MODE_MAIN, NumberLiteral, RCurly, RCurlyNested, StringEnd, StringEscape,
  StringNewline, StringStart, StringText,
} from './tokens.ts';

/** Tokens that make one word with a number they touch: names, keywords and more numbers (`0x10`, `1e`, `2.5.1`). */
const GLUED = new Set<TokenType>([Identifier, NumberLiteral, ...KEYWORDS]);

const pipeLexer = new Lexer({ modes: LEXER_MODES, defaultMode: MODE_MAIN }, { positionTracking: 'full' });

export interface TokenizeResult {
  tokens: IToken[];
  diagnostics: Diagnostic[];
  /** Lexing errors found beyond those turned into diagnostics (see tokenize's `maxErrors`). */
  unreported: number;
}

/** Span of a token (chevrotain ends are inclusive; ours are exclusive). */
export function tokenSpan(file: string, t: IToken): SourceSpan {
  return {
    file,
    line: t.startLine ?? 1,
    column: t.startColumn ?? 1,
    endLine: t.endLine ?? t.startLine ?? 1,
    endColumn: (t.endColumn ?? t.startColumn ?? 0) + 1,
    offset: t.startOffset,
    endOffset: (t.endOffset ?? t.startOffset) + 1,
  };
}

/** Offsets where each line of the last text asked about starts: a file with thousands of errors is indexed once. */
let lineStarts: { text: string; starts: number[] } | undefined;

function startsOf(text: string): number[] {
  if (lineStarts?.text !== text) {
    const starts = [0];
    for (let i = text.indexOf('\n'); i !== -1; i = text.indexOf('\n', i + 1)) starts.push(i + 1);
    lineStarts = { text, starts };
  }
  return lineStarts.starts;
}

/** Line and column (1-based) of an offset. */
export function positionAt(text: string, offset: number): { line: number; column: number } {
  const starts = startsOf(text);
  // The last line start at or before the offset (a newline itself belongs to the line it ends).
  let low = 0;
  let high = starts.length - 1;
  while (low < high) {
    const mid = (low + high + 1) >> 1;
    if (starts[mid]! <= offset) low = mid;
    else high = mid - 1;
  }
  return { line: low + 1, column: offset - starts[low]! + 1 };
}

export function spanAt(file: string, text: string, offset: number, length: number): SourceSpan {
  const start = positionAt(text, offset);
  const end = positionAt(text, offset + length);
  return { file, ...start, endLine: end.line, endColumn: end.column, offset, endOffset: offset + length };
}

/** Tokens and diagnostics; only the first `maxErrors` lexing errors become diagnostics (a binary file has millions). */
export function tokenize(text: string, file: string, maxErrors = Infinity): TokenizeResult {
  const unclosed: Diagnostic[] = [];
  const lexed = withoutMemberAccess(lexClosingInterpolations(text, file, 0, unclosed), text, file, unclosed);
  const diagnostics: Diagnostic[] = lexed.errors.slice(0, maxErrors).map((e) => {
    const chars = text.slice(e.offset, e.offset + e.length);
    const what = e.length === 1 ? `character \`${chars}\`` : `characters \`${chars}\``;
    return diagnostic('E_LEX', `unexpected ${what}`, spanAt(file, text, e.offset, e.length));
  });
  diagnostics.push(...unclosed);
  const tokens = closeStrings(joinBadNumbers(lexed.tokens, text, file, diagnostics), text, file, diagnostics);
  diagnostics.push(...badEscapes(lexed.tokens, file).slice(0, maxErrors));
  return { tokens, diagnostics, unreported: Math.max(0, lexed.errors.length - maxErrors) };
}

/**
 * Lexes `text` from offset `from` (in the main mode). A `${` left open (`"echo ${name" }`) would make the string's
 * closing `"` open a string inside the interpolation, and everything after it lex as the wrong things (four or
 * five errors, none saying what is wrong): when a string that starts right inside the interpolation of a top-level
 * string runs to the end of its line (or of the file), its `"` is taken as the outer string's end instead, the `}`
 * is supplied, one diagnostic says so, and the rest of the text is lexed again from there.
 */
function lexClosingInterpolations(text: string, file: string, from: number, unclosed: Diagnostic[]): { tokens: IToken[]; errors: ILexingError[] } {
  const lexed = lexFrom(text, from);
  const tokens = lexed.tokens;
  // Open strings (their first token) and interpolations (their `${`), innermost last.
  const open: Array<{ token: IToken; interpolation: boolean }> = [];
  for (let i = 0; i < tokens.length; i++) {
    const t = tokens[i]!;
    if (t.tokenType === StringStart) {
      const depth = open.length;
      open.push({ token: t, interpolation: false });
      // A string straight inside `${` of a top-level string: see whether its line ends before it does.
      if (depth !== 2 || open[0]!.interpolation || !open[1]!.interpolation) continue;
      let j = i + 1;
      while (j < tokens.length && (tokens[j]!.tokenType === StringText || tokens[j]!.tokenType === StringEscape)) j++;
      // Cut by its line's end, or by the file's.
      if (j < tokens.length && tokens[j]!.tokenType !== StringNewline) continue;
      const interp = open[1]!.token;
      unclosed.push(diagnostic('E_UNCLOSED_INTERPOLATION', '`${` is not closed: add `}` before the string\'s closing `"`',
        spanAt(file, text, interp.startOffset, t.startOffset - interp.startOffset)));
      const at = positionAt(text, t.startOffset);
      const closeBrace = createTokenInstance(RCurlyNested, '', t.startOffset, t.startOffset, at.line, at.line, at.column, at.column);
      closeBrace.isInsertedInRecovery = true;
      const closeString = createTokenInstance(StringEnd, '"', t.startOffset, t.startOffset, at.line, at.line, at.column, at.column);
      const rest = lexClosingInterpolations(text, file, t.startOffset + 1, unclosed);
      return {
        tokens: [...tokens.slice(0, i), closeBrace, closeString, ...rest.tokens],
        errors: [...lexed.errors.filter((e) => e.offset < t.startOffset), ...rest.errors],
      };
    }
    if (t.tokenType === InterpStart || t.tokenType === LCurlyNested) open.push({ token: t, interpolation: t.tokenType === InterpStart });
    else if (t.tokenType === StringEnd || t.tokenType === RCurlyNested || t.tokenType === StringNewline) open.pop();
  }
  return lexed;
}

/** The main mode's tokens and errors of `text` from `from` on, at their places in the whole text. */
function lexFrom(text: string, from: number): { tokens: IToken[]; errors: ILexingError[] } {
  if (from === 0) return pipeLexer.tokenize(text);
  const lexed = pipeLexer.tokenize(text.slice(from));
  const base = positionAt(text, from);
  // Tokens on the slice's first line sit after the column it starts at; every line is shifted down.
  const column = (line: number | undefined, c: number | undefined) => (line === 1 ? (c ?? 1) + base.column - 1 : c);
  for (const t of lexed.tokens) {
    t.startColumn = column(t.startLine, t.startColumn)!;
    t.endColumn = column(t.endLine, t.endColumn);
    t.startOffset += from;
    if (t.endOffset !== undefined) t.endOffset += from;
    t.startLine = (t.startLine ?? 1) + base.line - 1;
    if (t.endLine !== undefined) t.endLine += base.line - 1;
  }
  const errors = lexed.errors.map((e) => ({ ...e, offset: e.offset + from }));
  return { tokens: lexed.tokens, errors };
}

/**
 * `cfg.lr` (as in JavaScript or Python) lexes as a name, a stray `.` and a name, and the parser then trips over the
 * second name: two errors, neither saying that the language has no member access. One diagnostic says so at the
 * whole access, and the parser sees only the first name (the rest of the file parses as written).
 */
function withoutMemberAccess(lexed: { tokens: IToken[]; errors: ILexingError[] }, text: string, file: string, diagnostics: Diagnostic[]): { tokens: IToken[]; errors: ILexingError[] } {
  const byStart = new Map(lexed.tokens.map((t) => [t.startOffset, t]));
  const byEnd = new Map(lexed.tokens.map((t) => [(t.endOffset ?? t.startOffset) + 1, t]));
  const fields = new Set<IToken>();
  const errors: ILexingError[] = [];
  // Each access as the name it starts with and the field it ends with (`cfg.a.b` is one access).
  const accesses: { base: IToken; last: IToken }[] = [];
  const byLast = new Map<IToken, { base: IToken; last: IToken }>();
  for (const e of lexed.errors) {
    const before = byEnd.get(e.offset);
    const field = byStart.get(e.offset + 1);
    const chained = before && byLast.get(before);
    const isName = (t: IToken | undefined) => t !== undefined && (t.tokenType === Identifier || KEYWORDS.includes(t.tokenType));
    if (text[e.offset] !== '.' || e.length !== 1 || !(chained || before?.tokenType === Identifier) || !isName(field)) {
      errors.push(e);
      continue;
    }
    fields.add(field!);
    const access = chained ?? { base: before!, last: field! };
    if (chained) byLast.delete(before!);
    else accesses.push(access);
    access.last = field!;
    byLast.set(field!, access);
  }
  for (const { base, last } of accesses) {
    const end = (last.endOffset ?? last.startOffset) + 1;
    diagnostics.push(diagnostic('E_LEX', `\`${text.slice(base.startOffset, end)}\`: the language has no \`.\` to read a field, and no indexing`,
      spanAt(file, text, base.startOffset, end - base.startOffset),
      ['write each value as its own let or loop variable: `let lr = 5e-5`, or `for each lr in [...], b in [...]` with `where` to keep the combinations you want']));
  }
  return { tokens: lexed.tokens.filter((t) => !fields.has(t)), errors };
}

/** What each escape stands for in a string. */
export const ESCAPES: Record<string, string> = { '"': '"', '\\': '\\', n: '\n', t: '\t', $: '$' };

/** Unknown escapes, found here rather than when building the AST so that a file with syntax errors reports them too. */
function badEscapes(tokens: IToken[], file: string): Diagnostic[] {
  return tokens.filter((t) => t.tokenType === StringEscape && ESCAPES[t.image.slice(1)] === undefined).map((t) =>
    diagnostic('E_BAD_ESCAPE', `unknown escape \`${t.image}\`; use \\" \\\\ \\n \\t or \\$`, tokenSpan(file, t)));
}

/**
 * A number with a name glued to it (`0x10`, `2k`, `1e`) lexes as a number then a name, and the parser would then
 * complain about the name (`expected \`:\``). Says what is wrong at the whole word instead, and keeps only the
 * number, so the parser goes on as if the value were well written.
 */
function joinBadNumbers(tokens: IToken[], text: string, file: string, diagnostics: Diagnostic[]): IToken[] {
  const out: IToken[] = [];
  for (let i = 0; i < tokens.length; i++) {
    const t = tokens[i]!;
    out.push(t);
    if (t.tokenType !== NumberLiteral) continue;
    let end = (t.endOffset ?? t.startOffset) + 1;
    // Every name or number token that starts right where the last one ended belongs to the same word.
    while (i + 1 < tokens.length && tokens[i + 1]!.startOffset === end && GLUED.has(tokens[i + 1]!.tokenType)) {
      i++;
      end = (tokens[i]!.endOffset ?? tokens[i]!.startOffset) + 1;
    }
    const word = text.slice(t.startOffset, end);
    if (word === t.image) continue;
    diagnostics.push(diagnostic('E_BAD_NUMBER', `\`${word}\` is not a number: write numbers in decimal, e.g. 16, 0.5 or 1e-4`,
      spanAt(file, text, t.startOffset, word.length)));
  }
  return out;
}

/**
 * Reports strings left open (by a line break or the end of the file) and closes those still open at the end,
 * so the parser goes on and reports only real syntax mistakes.
 */
function closeStrings(tokens: IToken[], text: string, file: string, diagnostics: Diagnostic[]): IToken[] {
  // Open strings (their first token) and open braces of interpolations (null), innermost last.
  const open: (IToken | null)[] = [];
  const unterminated = (start: IToken, endOffset: number) => {
    diagnostics.push(diagnostic(
      'E_UNTERMINATED_STRING', 'unterminated string: add the closing `"` (use `\\n` for a line break inside a string)',
      spanAt(file, text, start.startOffset, endOffset - start.startOffset),
    ));
  };
  for (const t of tokens) {
    if (t.tokenType === StringStart) open.push(t);
    else if (t.tokenType === InterpStart || t.tokenType === LCurlyNested) open.push(null);
    else if (t.tokenType === StringEnd || t.tokenType === RCurlyNested) open.pop();
    else if (t.tokenType === StringNewline) {
      const start = open.pop();
      if (start) unterminated(start, t.startOffset);
    }
  }
  if (open.length === 0) return tokens;
  const end = positionAt(text, text.length);
  const closers = open.reverse().map((start) => {
    if (start) unterminated(start, text.length);
    const type = start ? StringEnd : RCurly;
    const closer = createTokenInstance(type, '', text.length, text.length, end.line, end.line, end.column, end.column);
    closer.isInsertedInRecovery = true;
    return closer;
  });
  return [...tokens, ...closers];
}

// Text → tokens, with lexing mistakes (stray characters, unterminated strings) turned into diagnostics.
import type { IToken } from 'chevrotain';
import { createTokenInstance, Lexer } from './chevrotain.ts';
import { diagnostic, type Diagnostic, type SourceSpan } from './diagnostics.ts';
import {
  Identifier, InterpStart, KEYWORDS, LCurlyNested, LEXER_MODES, MODE_MAIN, NumberLiteral, RCurly, RCurlyNested, StringEnd, StringNewline,
  StringStart,
} from './tokens.ts';
import type { TokenType } from 'chevrotain';

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
  const lexed = pipeLexer.tokenize(text);
  const diagnostics: Diagnostic[] = lexed.errors.slice(0, maxErrors).map((e) => {
    const chars = text.slice(e.offset, e.offset + e.length);
    const what = e.length === 1 ? `character \`${chars}\`` : `characters \`${chars}\``;
    return diagnostic('E_LEX', `unexpected ${what}`, spanAt(file, text, e.offset, e.length));
  });
  const tokens = closeStrings(joinBadNumbers(lexed.tokens, text, file, diagnostics), text, file, diagnostics);
  return { tokens, diagnostics, unreported: Math.max(0, lexed.errors.length - maxErrors) };
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
    let end = (t.endOffset ?? t.startOffset) + 1;
    if (t.tokenType !== NumberLiteral) continue;
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

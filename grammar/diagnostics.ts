// Diagnostics: every user mistake becomes one of these, never an exception.
import path from 'node:path';
import { codeFrameColumns } from '@babel/code-frame';

/** 1-based line and column, like editors show them; offsets are 0-based into the file text. */
export interface SourceSpan {
  file: string;
  line: number;
  column: number;
  /** Line and column just past the last character of the span (exclusive, like endOffset). */
  endLine: number;
  endColumn: number;
  offset: number;
  endOffset: number;
}

export type Severity = 'error' | 'warning';

export interface Diagnostic {
  /** Stable code from DIAGNOSTIC_CODES, e.g. `E_UNKNOWN_KIND`. */
  code: string;
  severity: Severity;
  message: string;
  span?: SourceSpan;
  /** Extra lines, e.g. "did you mean `sft`?" or the stages of a cycle. */
  notes?: string[];
}

/** Every code a diagnostic may carry, with what it means; codes never change once released. */
export const DIAGNOSTIC_CODES = {
  E_LEX: 'a character that starts no token of the language, such as the `.` of `cfg.lr`: there is no member access or indexing',
  E_BAD_NUMBER: 'a number runs into letters or digits that make no number (`0x10`, `2k`, `1e`): numbers are decimal',
  E_PARSE: 'the text does not follow the grammar; the message says what was expected',
  E_UNTERMINATED_STRING: 'a string has no closing `"` before the end of its line',
  E_UNCLOSED_INTERPOLATION: 'a `${` in a string has no `}` before the string\'s closing `"`',
  E_BAD_ESCAPE: 'a `\\` in a string is followed by something other than `"`, `\\`, `n`, `t` or `$`',
  E_FILE_NOT_FOUND: 'the entry .pipe file cannot be read (missing, not a regular file, or over 1 MiB)',
  E_INCLUDE_NOT_FOUND: 'an included file cannot be read (missing, not a `.pipe` file, not a regular file, or over 1 MiB)',
  E_INCLUDE_CYCLE: 'files include each other in a cycle',
  E_UNKNOWN_KIND: 'a stage names a kind the registry does not have',
  E_UNKNOWN_REFERENCE: 'an input refers to a stage that is not declared',
  E_UNKNOWN_VARIABLE: 'an expression or selector uses a name that is no let or loop variable in scope',
  E_UNKNOWN_FUNCTION: 'an expression calls a function the language does not have',
  E_DUPLICATE_NAME: 'two stages or lets share one name (across included files too), or a loop variable has the name of one',
  E_DUPLICATE_PARAM: 'one key appears twice in a params block or object',
  E_DUPLICATE_INPUT: 'one input name appears twice in a stage, or two names reach a command as one environment variable',
  E_DUPLICATE_LOOP_VAR: 'one `for each` declares a variable twice',
  E_CYCLE: 'stages depend on each other in a cycle',
  E_PARAM_TYPE: 'a parameter value has the wrong JSON type for the kind\'s schema',
  E_UNKNOWN_PARAM: 'a parameter (or object key) the kind\'s schema does not declare',
  E_MISSING_PARAM: 'a parameter the kind\'s schema requires is absent',
  E_PARAM_VALUE: 'a parameter value breaks another schema rule (enum, minimum, pattern, ...)',
  E_UNKNOWN_INPUT: 'a stage names an input its kind does not declare',
  E_MISSING_INPUT: 'a stage omits an input its kind requires',
  E_INPUT_ARITY: 'a collection given to a single input, or a single stage to a collection input',
  E_EXPR_TYPE: 'an operator, condition or function got values of the wrong type',
  E_DIVISION_BY_ZERO: '`/` or `%` by zero',
  E_NAME_COLLISION: 'two variants of a loop generate the same stage name: a value listed twice, or a `named` label that leaves out a variable',
  E_LOOP_REFERENCE: 'a plain reference to a loop stage from outside its loop, or a selector on a stage outside any loop',
  E_EMPTY_SELECTION: 'a selector such as `eval[head=true]` matches no variant, or `eval[*]` collects a loop that makes none',
  E_NESTED_LOOP: 'a `for each` inside another `for each`',
  E_EMPTY_MATRIX: 'a loop generates no variant (warning)',
  E_UNSAFE_OUT: 'an `sh` out that is, holds or lies in a dep, a pipeline file, a workspace marker or the cache, leads outside the workspace, or is written by another stage too',
  E_MISSING_DEP: 'an `sh` dep that does not exist and no stage writes; deps resolve from the workspace (warning)',
  E_TOO_LARGE: 'a file with more than 50,000 tokens (the file itself may be at most 1 MiB)',
  E_TOO_DEEP: 'brackets, `if`s and prefix operators nest more than 64 levels deep, or an expression tree more than 500',
  E_TOO_MANY_VARIANTS: 'a loop makes more than 100,000 combinations, or a pipeline more than 20,000 stages',
  E_NUMBER_RANGE: 'a whole number beyond ±(2^53 - 1), which a double cannot hold exactly (it would be rounded)',
  E_OVERRIDE: 'a command-line `-p NAME=VALUE` names no top-level let, or a key its value does not have',
} as const;

export type DiagnosticCode = keyof typeof DIAGNOSTIC_CODES;

/** An error (or warning) diagnostic; the code is checked against the table at compile time. */
export function diagnostic(
  code: DiagnosticCode,
  message: string,
  span: SourceSpan | undefined,
  notes?: string[],
  severity: Severity = 'error',
): Diagnostic {
  const d: Diagnostic = { code, severity, message };
  if (span) d.span = span;
  if (notes && notes.length > 0) d.notes = notes;
  return d;
}

export function hasErrors(diagnostics: readonly Diagnostic[]): boolean {
  return diagnostics.some((d) => d.severity === 'error');
}

/** `file:line:col` as shown to users. */
export function formatLocation(span: SourceSpan, cwd?: string): string {
  return `${displayPath(span.file, cwd)}:${span.line}:${span.column}`;
}

/**
 * Where `span` is, as seen from a diagnostic in `fromFile`: `line 3:5` in the same file, else the path relative
 * to that file's folder, e.g. `common.pipe:3:5` (notes are written once, before anyone knows the terminal's cwd).
 */
export function locationFrom(span: SourceSpan, fromFile: string): string {
  if (span.file === fromFile) return `line ${span.line}:${span.column}`;
  const rel = path.isAbsolute(span.file) && path.isAbsolute(fromFile) ? path.relative(path.dirname(fromFile), span.file) : span.file;
  return `${rel}:${span.line}:${span.column}`;
}

export interface FormatOptions {
  /** Paths under this folder print relative to it (default: process.cwd()). */
  cwd?: string;
  /** Colour the code frame for a terminal. */
  color?: boolean;
}

/** Characters of a line shown in a code frame. */
const FRAME_WIDTH = 160;

function lineText(text: string, starts: number[], line: number): string {
  return text.slice(starts[line - 1], line < starts.length ? starts[line]! - 1 : text.length);
}

/** Where each line of the last text framed starts (a hundred frames of one large file split it once). */
let framedLines: { text: string; starts: number[] } | undefined;

/**
 * codeFrameColumns over the few lines the frame shows, its line numbers put back: given a whole large file, it
 * splits all of it for every frame (seconds for a hundred frames of a 1 MB file).
 */
function windowedFrame(text: string, line: number, column: number, end: { line: number; column: number }): string {
  if (framedLines?.text !== text) {
    const starts = [0];
    for (let i = text.indexOf('\n'); i !== -1; i = text.indexOf('\n', i + 1)) starts.push(i + 1);
    framedLines = { text, starts };
  }
  const { starts } = framedLines;
  const first = Math.max(1, line - 1);
  const last = Math.min(starts.length, end.line + 1);
  const shift = first - 1;
  // A long line (minified, or a megabyte of garbage) shows FRAME_WIDTH characters around the span's start.
  const from = column > FRAME_WIDTH / 2 ? column - 1 - FRAME_WIDTH / 4 : 0;
  const cut = (l: string) => `${from > 0 ? '…' : ''}${l.slice(from, from + FRAME_WIDTH)}${l.length > from + FRAME_WIDTH ? '…' : ''}`;
  const window = text.slice(starts[first - 1], last < starts.length ? starts[last]! - 1 : text.length).split('\n').map(cut).join('\n');
  const moved = (c: number, l: number) => Math.min(Math.max(1, c - from + (from > 0 ? 1 : 0)), cut(lineText(text, starts, l)).length + 1);
  const frame = codeFrameColumns(window, {
    start: { line: line - shift, column: moved(column, line) },
    end: { line: end.line - shift, column: end.line === line ? Math.max(moved(end.column, end.line), moved(column, line) + 1) : moved(end.column, end.line) },
  }, { highlightCode: false, linesAbove: 1, linesBelow: 1 });
  // Gutters read `> 12 |` and `    |` (under a marked line); widths follow the largest number shown.
  const width = String(last).length;
  return frame.split('\n').map((l) => l.replace(/^([> ]) +(\d*) \|/, (_, mark: string, n: string) =>
    `${mark} ${(n === '' ? '' : String(Number(n) + shift)).padStart(width)} |`)).join('\n');
}

/**
 * `file:line:col: error[CODE]: message`, then a code frame of the span when its file is in `sources`,
 * then one `note:` line per note.
 */
export function formatDiagnostic(d: Diagnostic, sources: Record<string, string>, opts: FormatOptions = {}): string {
  const head = `${d.severity}[${d.code}]: ${d.message}`;
  const lines = [d.span ? `${formatLocation(d.span, opts.cwd)}: ${head}` : head];
  const text = d.span ? sources[d.span.file] : undefined;
  if (d.span && text !== undefined) {
    const { line, column, endLine, endColumn } = d.span;
    // An empty span (end of file) still gets one caret.
    const end = endLine === line && endColumn <= column ? { line, column: column + 1 } : { line: endLine, column: endColumn };
    lines.push(opts.color ? codeFrameColumns(text, { start: { line, column }, end }, { highlightCode: true, linesAbove: 1, linesBelow: 1 })
      : windowedFrame(text, line, column, end));
  }
  for (const note of d.notes ?? []) lines.push(`  = note: ${note}`);
  return lines.join('\n');
}

/** Every diagnostic formatted, separated by blank lines, followed by a count line. */
export function formatDiagnostics(ds: readonly Diagnostic[], sources: Record<string, string>, opts: FormatOptions = {}): string {
  if (ds.length === 0) return '';
  const errors = ds.filter((d) => d.severity === 'error').length;
  const warnings = ds.length - errors;
  const counts = [errors > 0 ? plural(errors, 'error') : '', warnings > 0 ? plural(warnings, 'warning') : ''].filter(Boolean);
  return [...ds.map((d) => formatDiagnostic(d, sources, opts)), counts.join(', ')].join('\n\n');
}

function plural(n: number, word: string): string {
  return `${n} ${word}${n === 1 ? '' : 's'}`;
}

function displayPath(file: string, cwd = process.cwd()): string {
  if (!path.isAbsolute(file)) return file;
  const rel = path.relative(cwd, file);
  return rel !== '' && !rel.startsWith('..') && !path.isAbsolute(rel) ? rel : file;
}

/** What makes two diagnostics one mistake: the same code, place and message (their notes may differ). */
export function mistakeOf(d: Diagnostic): string {
  return `${d.code}\u0000${d.span?.file}\u0000${d.span?.offset}\u0000${d.message}`;
}

/**
 * Collects diagnostics, dropping repeats of one mistake (mistakeOf): an error in a loop body would otherwise be
 * reported once per variant.
 */
export class DiagnosticSink {
  readonly diagnostics: Diagnostic[] = [];
  private readonly seen = new Set<string>();

  report(d: Diagnostic): void {
    const key = mistakeOf(d);
    if (this.seen.has(key)) return;
    this.seen.add(key);
    this.diagnostics.push(d);
  }
}

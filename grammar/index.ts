// Public entry of the grammar: .pipe text → AST plus every lexing and syntax diagnostic.
import type { IRecognitionException } from 'chevrotain';
import type { IncludeDecl, PipeFile } from './ast.ts';
import { diagnostic, type Diagnostic, type SourceSpan } from './diagnostics.ts';
import { positionAt, tokenize, tokenSpan } from './lexer.ts';
import { pipeParser } from './parser.ts';
import { intactIncludes, toAst } from './to-ast.ts';

export interface ParseResult {
  /** null when the text does not parse; lexing diagnostics alone still give an AST. */
  ast: PipeFile | null;
  /**
   * The file's include statements: those of the AST, or when the text does not parse, those that parsed intact
   * (loading still reads them, to report every file's mistakes at once).
   */
  includes: IncludeDecl[];
  diagnostics: Diagnostic[];
}

function errorSpan(e: IRecognitionException, file: string, text: string): SourceSpan {
  // At the end of the file the offending token is EOF, which has no position: point just past the last character.
  if (Number.isNaN(e.token.startOffset)) {
    const end = positionAt(text, text.length);
    return { file, ...end, endLine: end.line, endColumn: end.column, offset: text.length, endOffset: text.length };
  }
  return tokenSpan(file, e.token);
}

export function parsePipeText(text: string, file: string): ParseResult {
  const lexed = tokenize(text, file);
  pipeParser.input = lexed.tokens;
  const cst = pipeParser.file();
  const syntax = pipeParser.errors.map((e) => diagnostic('E_PARSE', e.message, errorSpan(e, file, text)));
  const diagnostics = [...lexed.diagnostics, ...syntax];
  if (syntax.length > 0) return { ast: null, includes: intactIncludes(cst, file), diagnostics };
  const built = toAst(cst, file);
  return {
    ast: { file, statements: built.statements },
    includes: built.statements.filter((s): s is IncludeDecl => s.type === 'include'),
    diagnostics: [...diagnostics, ...built.diagnostics],
  };
}

export type * from './ast.ts';

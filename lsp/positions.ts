// Positions as the Language Server Protocol counts them, and the types the editor features share.
import type { IToken } from 'chevrotain';
import type { SourceSpan } from '../grammar/diagnostics.ts';
import type { ReadResult } from '../runtime/load.ts';

/**
 * Reads a file by absolute path: the editor's unsaved text when it has the file open, else the disk as `check` reads
 * it (readPipeFile: only regular `.pipe` files up to 1 MiB, so `include "/dev/zero"` cannot hang the server).
 */
export type ReadFile = (file: string) => ReadResult;

/** 0-based, as the protocol counts (UTF-16 code units, as JavaScript strings and the lexer do). */
export interface Position {
  line: number;
  character: number;
}

export interface Range {
  start: Position;
  end: Position;
}

export function offsetAt(text: string, p: Position): number {
  let offset = 0;
  for (let line = 0; line < p.line; line++) {
    const next = text.indexOf('\n', offset);
    if (next === -1) return text.length;
    offset = next + 1;
  }
  return Math.min(offset + p.character, text.length);
}

export function spanRange(span: SourceSpan): Range {
  return { start: { line: span.line - 1, character: span.column - 1 }, end: { line: span.endLine - 1, character: span.endColumn - 1 } };
}

export function tokenRange(t: IToken): Range {
  return {
    start: { line: (t.startLine ?? 1) - 1, character: (t.startColumn ?? 1) - 1 },
    end: { line: (t.endLine ?? t.startLine ?? 1) - 1, character: t.endColumn ?? t.startColumn ?? 1 },
  };
}

export interface Location {
  file: string;
  range: Range;
}

// Where each value of a JSON file is written: spans by JSON pointer, so a settings error can point at file:line:column.
import type { SourceSpan } from '../grammar/diagnostics.ts';
import { positionAt } from '../grammar/lexer.ts';

export interface JsonSpans {
  /** The written value at a JSON pointer (`/executor/kinds/sft/time`; `` is the whole document). */
  value: Map<string, SourceSpan>;
  /** The written key of an object member, by the member's pointer. */
  key: Map<string, SourceSpan>;
}

function escapePointer(segment: string): string {
  return segment.replace(/~/g, '~0').replace(/\//g, '~1');
}

/**
 * Spans of every value and key in `text`, which must be valid JSON (call JSON.parse first: this walker trusts the
 * syntax and only tracks positions). Duplicate keys keep their last occurrence, as JSON.parse does.
 */
export function jsonSpans(text: string, file: string): JsonSpans {
  const span = (offset: number, endOffset: number): SourceSpan => {
    const start = positionAt(text, offset);
    const end = positionAt(text, endOffset);
    return { file, line: start.line, column: start.column, endLine: end.line, endColumn: end.column, offset, endOffset };
  };

  const spans: JsonSpans = { value: new Map(), key: new Map() };
  let i = 0;
  const skipSpace = () => {
    while (i < text.length && /\s/.test(text[i]!)) i++;
  };
  const readString = (): string => {
    const start = i;
    i++;
    while (text[i] !== '"') i += text[i] === '\\' ? 2 : 1;
    i++;
    return JSON.parse(text.slice(start, i)) as string;
  };
  const value = (pointer: string): void => {
    skipSpace();
    const start = i;
    const c = text[i];
    if (c === '{') {
      i++;
      skipSpace();
      while (text[i] !== '}') {
        const keyStart = i;
        const key = readString();
        const member = `${pointer}/${escapePointer(key)}`;
        spans.key.set(member, span(keyStart, i));
        skipSpace();
        i++; // ':'
        value(member);
        skipSpace();
        if (text[i] === ',') i++;
        skipSpace();
      }
      i++;
    } else if (c === '[') {
      i++;
      skipSpace();
      for (let index = 0; text[i] !== ']'; index++) {
        value(`${pointer}/${index}`);
        skipSpace();
        if (text[i] === ',') i++;
        skipSpace();
      }
      i++;
    } else if (c === '"') {
      readString();
    } else {
      while (i < text.length && /[^\s,\]}]/.test(text[i]!)) i++;
    }
    spans.value.set(pointer, span(start, i));
  };
  value('');
  return spans;
}

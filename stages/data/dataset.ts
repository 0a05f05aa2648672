// The dataset artifact every data stage writes and `sft`/`evaluate` read: split files, row checks, dataset.json.
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { JsonValue } from '../../runtime/json.ts';
import { extractAnswer, INVALID_ANSWER } from './answer.ts';

export const SPLITS = ['train', 'validation', 'test'] as const;
export type Split = (typeof SPLITS)[number];

/** One problem; stages may add fields (they travel along unchanged). */
export interface Example {
  question: string;
  answer: string;
  [field: string]: JsonValue;
}

export type DatasetSplits = Record<Split, Example[]>;

/** Contents of `dataset.json`. */
export interface DatasetInfo {
  counts: Record<Split, number>;
  /** Where the rows came from, e.g. `gsm8k data/gsm8k` or `inject_pauses of gsm8k`. */
  source: string;
  /** Seed of the randomness that made the artifact; null when none was used. */
  seed: number | null;
  [extra: string]: JsonValue;
}

/** A bad row or file, located like an editor shows it (1-based line). */
export interface RowProblem {
  file: string;
  line: number;
  message: string;
}

/** How many problems an error message lists before summarising the rest. */
export const MAX_LISTED_PROBLEMS = 20;

/** Thrown when input data is unusable; `problems` holds every one found, the message lists the first few. */
export class DataError extends Error {
  readonly problems: RowProblem[];
  constructor(summary: string, problems: RowProblem[]) {
    super(`${summary}\n${formatProblems(problems)}`);
    this.name = 'DataError';
    this.problems = problems;
  }
}

export function formatProblems(problems: readonly RowProblem[], cap = MAX_LISTED_PROBLEMS): string {
  const lines = problems.slice(0, cap).map((p) => `  ${p.file}:${p.line}: ${p.message}`);
  if (problems.length > cap) lines.push(`  … and ${problems.length - cap} more`);
  return lines.join('\n');
}

export interface RowCheck {
  /** GSM8K rows must end with `#### <number>`; rows made by other tools need not. */
  requireFinalAnswer?: boolean;
}

/** What is wrong with one parsed row, or null when it is usable. */
export function checkExample(value: unknown, check: RowCheck = {}): string | null {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    return `expected an object {"question": string, "answer": string}, got ${describe(value)}`;
  }
  const row = value as Record<string, unknown>;
  const wrong: string[] = [];
  for (const field of ['question', 'answer']) {
    const v = row[field];
    if (v === undefined) wrong.push(`missing "${field}"`);
    else if (typeof v !== 'string') wrong.push(`"${field}" must be a string, got ${describe(v)}`);
    else if (v.trim() === '') wrong.push(`"${field}" is empty`);
  }
  if (wrong.length === 0 && check.requireFinalAnswer) {
    const final = extractAnswer(row.answer as string);
    // The original's pattern also takes `#### ,` or `#### .`: a reference without a digit that no answer should match.
    if (final === INVALID_ANSWER) wrong.push('"answer" has no final answer line `#### <number>`');
    else if (!/[0-9]/.test(final)) wrong.push('"answer" has no digit in its final answer `#### <number>`');
  }
  return wrong.length === 0 ? null : wrong.join('; ');
}

function describe(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  return typeof value === 'object' ? 'an object' : `${typeof value} ${JSON.stringify(value)}`;
}

export interface ParsedRows {
  rows: Example[];
  problems: RowProblem[];
}

/**
 * Rows of one split file: JSON lines (one object per line, blank lines skipped), or one JSON array of
 * objects as `datasets`' `to_json(lines=False)` writes. Every bad row is reported; good rows are kept.
 * `file` is only used in the problems, so pass it the way the user wrote it.
 */
export function parseRows(text: string, file: string, check: RowCheck = {}): ParsedRows {
  const start = text.search(/\S/);
  if (start !== -1 && text[start] === '[') return parseArray(text, file, check);
  const rows: Example[] = [];
  const problems: RowProblem[] = [];
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!.replace(/\r$/, '');
    if (line.trim() === '') continue;
    let value: unknown;
    try {
      value = JSON.parse(line);
    } catch (err) {
      problems.push({ file, line: i + 1, message: `not valid JSON (${oneLine(err)})` });
      continue;
    }
    const wrong = checkExample(value, check);
    if (wrong) problems.push({ file, line: i + 1, message: wrong });
    else rows.push(value as Example);
  }
  return { rows, problems };
}

function parseArray(text: string, file: string, check: RowCheck): ParsedRows {
  const rows: Example[] = [];
  const problems: RowProblem[] = [];
  const { elements, closedAtLine, trailing } = arrayElements(text);
  elements.forEach((element, i) => {
    let value: unknown;
    try {
      value = JSON.parse(element.text);
    } catch (err) {
      problems.push({ file, line: element.line, message: `row ${i + 1}: not valid JSON (${oneLine(err)})` });
      return;
    }
    const wrong = checkExample(value, check);
    if (wrong) problems.push({ file, line: element.line, message: `row ${i + 1}: ${wrong}` });
    else rows.push(value as Example);
  });
  if (closedAtLine === null) problems.push({ file, line: lineAt(text, text.length), message: 'the JSON array is not closed with `]`' });
  else if (trailing) problems.push({ file, line: closedAtLine, message: 'unexpected text after the closing `]`' });
  return { rows, problems };
}

/** JSON.parse's message on one line: V8 quotes the offending source, newlines included. */
function oneLine(err: unknown): string {
  return (err as Error).message.replace(/\s+/g, ' ').trim();
}

function lineAt(text: string, offset: number): number {
  let line = 1;
  for (let i = 0; i < offset && i < text.length; i++) if (text.charCodeAt(i) === 10) line++;
  return line;
}

/**
 * The top-level elements of a JSON array as source text with the line each starts on, found by tracking
 * strings and bracket depth only. Each element is then parsed on its own, so one broken row is reported at
 * its line and the others are still checked (JSON.parse of the whole file would stop at the first error
 * and, in Node 20, often without a position).
 */
function arrayElements(text: string): { elements: { text: string; line: number }[]; closedAtLine: number | null; trailing: boolean } {
  const elements: { text: string; line: number }[] = [];
  let line = 1;
  let depth = 0;
  let inString = false;
  let start = -1;
  let startLine = 1;
  const flush = (end: number): void => {
    // An empty element (`[a, ]`) is kept: parsing it fails, which reports the stray comma at its line.
    const body = text.slice(start, end);
    elements.push({ text: body, line: startLine + leadingNewlines(body) });
  };
  for (let i = 0; i < text.length; i++) {
    const c = text[i]!;
    if (c === '\n') line++;
    if (inString) {
      if (c === '\\') i++;
      else if (c === '"') inString = false;
      continue;
    }
    if (c === '"') inString = true;
    else if (c === '[' || c === '{') {
      depth++;
      if (depth === 1) {
        start = i + 1;
        startLine = line;
      }
    } else if (c === ']' || c === '}') {
      depth--;
      if (depth === 0) {
        if (text.slice(start, i).trim() !== '' || elements.length > 0) flush(i);
        return { elements, closedAtLine: line, trailing: text.slice(i + 1).trim() !== '' };
      }
    } else if (c === ',' && depth === 1) {
      flush(i);
      start = i + 1;
      startLine = line;
    }
  }
  if (start !== -1 && text.slice(start).trim() !== '') flush(text.length);
  return { elements, closedAtLine: null, trailing: false };
}

function leadingNewlines(body: string): number {
  const lead = /^\s*/.exec(body)![0];
  return lead.split('\n').length - 1;
}

/**
 * A data file's bytes as text: a UTF-8 byte order mark (Windows editors write one) is dropped, and bytes that are not
 * UTF-8 (a file saved as Latin-1 or Windows-1252) are problems at their lines, not characters silently replaced by `�`.
 */
export function decodeDataFile(bytes: Uint8Array, file: string): { text: string; problems: RowProblem[] } {
  try {
    return { text: new TextDecoder('utf-8', { fatal: true }).decode(bytes), problems: [] };
  } catch {
    const problems: RowProblem[] = [];
    let line = 1;
    for (let start = 0; start <= bytes.length; line++) {
      let end = bytes.indexOf(10, start);
      if (end === -1) end = bytes.length;
      const bad = firstInvalidUtf8(bytes, start, end);
      if (bad !== -1) {
        const byte = bytes[bad]!.toString(16).toUpperCase().padStart(2, '0');
        problems.push({ file, line, message: `not UTF-8 text: byte 0x${byte} at byte ${bad - start + 1} of the line (save the file as UTF-8)` });
      }
      start = end + 1;
    }
    return { text: new TextDecoder('utf-8').decode(bytes), problems };
  }
}

/** Offset of the first byte in bytes[start, end) that does not begin a well-formed UTF-8 sequence, or -1. */
function firstInvalidUtf8(bytes: Uint8Array, start: number, end: number): number {
  for (let i = start; i < end; ) {
    const b = bytes[i]!;
    if (b < 0x80) {
      i++;
      continue;
    }
    // Lead byte → continuation bytes, and the range of the first continuation (no overlong forms, surrogates or > U+10FFFF).
    let n: number;
    let low = 0x80;
    let high = 0xbf;
    if (b >= 0xc2 && b <= 0xdf) n = 1;
    else if (b >= 0xe0 && b <= 0xef) {
      n = 2;
      if (b === 0xe0) low = 0xa0;
      if (b === 0xed) high = 0x9f;
    } else if (b >= 0xf0 && b <= 0xf4) {
      n = 3;
      if (b === 0xf0) low = 0x90;
      if (b === 0xf4) high = 0x8f;
    } else return i;
    if (i + n >= end) return i;
    for (let k = 1; k <= n; k++) {
      const c = bytes[i + k]!;
      if (k === 1 ? c < low || c > high : c < 0x80 || c > 0xbf) return i;
    }
    i += n + 1;
  }
  return -1;
}

/** Reads one split file; a missing file is the caller's business (check first). */
export async function readSplitFile(file: string, shownAs: string, check: RowCheck = {}): Promise<ParsedRows> {
  const { text, problems } = decodeDataFile(await readFile(file), shownAs);
  const parsed = parseRows(text, shownAs, check);
  return { rows: parsed.rows, problems: mergeByLine(problems, parsed.problems) };
}

/** Two lists of problems of one file as one, in line order (encoding problems first on a line). */
function mergeByLine(a: RowProblem[], b: RowProblem[]): RowProblem[] {
  return a.length === 0 ? b : [...a, ...b].sort((x, y) => x.line - y.line);
}

/** Reads a dataset artifact written by `writeDataset`; throws a DataError listing every bad row. */
export async function readDataset(dir: string, required: readonly Split[] = SPLITS): Promise<{ splits: DatasetSplits; info: DatasetInfo }> {
  const problems: RowProblem[] = [];
  const splits = {} as DatasetSplits;
  for (const split of SPLITS) {
    const file = path.join(dir, `${split}.jsonl`);
    let bytes: Uint8Array;
    try {
      bytes = await readFile(file);
    } catch {
      // A split the reader does not use may be absent (sft needs no test split).
      if (!required.includes(split)) {
        splits[split] = [];
        continue;
      }
      throw new Error(`${file}: missing; this stage reads ${required.map((r) => `${r}.jsonl`).join(', ')} from the dataset folder (dataset.json optional)`);
    }
    const decoded = decodeDataFile(bytes, file);
    const parsed = parseRows(decoded.text, file);
    splits[split] = parsed.rows;
    problems.push(...mergeByLine(decoded.problems, parsed.problems));
  }
  if (problems.length > 0) throw new DataError(`The dataset in ${dir} has ${problems.length} bad row(s):`, problems);
  const infoFile = path.join(dir, 'dataset.json');
  let text: string;
  try {
    text = await readFile(infoFile, 'utf8');
  } catch (err) {
    // dataset.json only describes the rows; a folder written by an `sh` step or by hand may lack it.
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw new Error(`${infoFile}: unreadable (${(err as Error).message})`);
    const counts = { train: splits.train.length, validation: splits.validation.length, test: splits.test.length };
    return { splits, info: { counts, source: dir, seed: null } };
  }
  let info: DatasetInfo;
  try {
    info = JSON.parse(text) as DatasetInfo;
  } catch (err) {
    throw new Error(`${infoFile}: not valid JSON (${(err as Error).message})`);
  }
  return { splits, info };
}

/** Writes the three split files and dataset.json into `dir`; returns what dataset.json holds. */
export async function writeDataset(
  dir: string,
  splits: DatasetSplits,
  meta: { source: string; seed: number | null; extra?: Record<string, JsonValue> },
): Promise<DatasetInfo> {
  await mkdir(dir, { recursive: true });
  for (const split of SPLITS) {
    const body = splits[split].map((row) => JSON.stringify(row) + '\n').join('');
    await writeFile(path.join(dir, `${split}.jsonl`), body);
  }
  const info: DatasetInfo = {
    counts: { train: splits.train.length, validation: splits.validation.length, test: splits.test.length },
    source: meta.source,
    seed: meta.seed,
    ...meta.extra,
  };
  await writeFile(path.join(dir, 'dataset.json'), JSON.stringify(info, null, 2) + '\n');
  return info;
}

/**
 * The deterministic train/validation split: a seeded shuffle of the rows, then the first
 * round(n × valFraction) shuffled rows are validation and the rest train (both keep the shuffled order).
 * GSM8K: round(7473 × 0.1) = round(747.3) = 747 validation, 6726 train.
 */
export function splitTrainValidation<T>(rows: readonly T[], valFraction: number, shuffle: (items: readonly T[]) => T[]): { train: T[]; validation: T[] } {
  if (!(valFraction >= 0 && valFraction < 1)) throw new RangeError(`val_fraction must be in [0, 1), got ${valFraction}`);
  const nValidation = Math.round(rows.length * valFraction);
  const order = shuffle(rows);
  return { validation: order.slice(0, nValidation), train: order.slice(nValidation) };
}

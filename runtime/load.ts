// Loading a .pipe file: read it and its includes, parse, expand, validate; the runner's single entry to the language.
import { closeSync, constants, existsSync, fstatSync, openSync, readSync, realpathSync } from 'node:fs';
import path from 'node:path';
import type { Statement } from '../grammar/ast.ts';
import { diagnostic, hasErrors, type Diagnostic } from '../grammar/diagnostics.ts';
import { parsePipeText } from '../grammar/index.ts';
import { MAX_FILE_BYTES } from '../grammar/limits.ts';
import { nothingLeftOut } from '../grammar/partial.ts';
import type { StageKind } from '../stages/kind.ts';
import { expandPipeline } from './expand.ts';
import type { Override } from './overrides.ts';
import type { Pipeline } from './pipeline.ts';
import { validatePipeline } from './validate.ts';

export interface LoadResult {
  /** null when any diagnostic is an error. */
  pipeline: Pipeline | null;
  /** Sorted by file (entry first, then includes as read) and position; warnings included. */
  diagnostics: Diagnostic[];
  /** Every file read, by absolute path, even when pipeline is null: formatDiagnostics needs them for code frames. */
  sources: Record<string, string>;
  /** Included files that could not be read (missing or refused), by absolute path: `watch` waits for them to appear. */
  unread: string[];
}

export interface LoadOptions {
  /** The command line's `-p` values for top-level lets. */
  overrides?: readonly Override[];
}

const WORKSPACE_MARKERS = ['package.json', '.git', '.pausepipe'];

/** Nearest ancestor folder of the file holding package.json, .git or .pausepipe; else the file's own folder. */
export function findWorkspace(file: string): string {
  const start = path.dirname(path.resolve(file));
  for (let dir = start; ; dir = path.dirname(dir)) {
    if (WORKSPACE_MARKERS.some((m) => existsSync(path.join(dir, m)))) return dir;
    if (path.dirname(dir) === dir) return start;
  }
}

/** Why a file was not read as a pipeline (refused rather than missing). */
export interface ReadRefusal {
  refused: string;
}

/** A file's text for the loader: a string, undefined when it does not exist, or why it is refused. */
export type ReadResult = string | undefined | ReadRefusal;

const BOM = '\uFEFF';

/**
 * Reads a pipeline file: only a regular file whose name (and, through links, real name) ends in `.pipe`, of at most
 * MAX_FILE_BYTES. A FIFO or device would block or never end, and a code frame would print the lines of any other
 * file (`include "/etc/shadow"`). A UTF-8 byte order mark is dropped, as editors do.
 */
export function readPipeFile(file: string): ReadResult {
  let real: string;
  try {
    real = realpathSync(file);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    return { refused: `cannot read ${file}: ${(error as Error).message}` };
  }
  if (!file.endsWith('.pipe') || !real.endsWith('.pipe')) return { refused: `${file} is not a .pipe file${real === file ? '' : ` (it leads to ${real})`}` };
  let fd: number;
  try {
    // Non-blocking, so opening a FIFO returns at once and fstat below refuses it.
    fd = openSync(real, constants.O_RDONLY | constants.O_NONBLOCK);
  } catch (error) {
    return { refused: `cannot read ${file}: ${(error as Error).message}` };
  }
  try {
    const stat = fstatSync(fd);
    if (stat.isDirectory()) return { refused: `${file} is a folder, not a .pipe file` };
    if (!stat.isFile()) return { refused: `${file} is not a regular file` };
    if (stat.size > MAX_FILE_BYTES) return { refused: `${file} is ${stat.size.toLocaleString('en-US')} bytes; a .pipe file may have at most ${MAX_FILE_BYTES.toLocaleString('en-US')}` };
    // A file still growing is read only up to one byte past the limit, which is enough to refuse it.
    const buffer = Buffer.alloc(Math.min(stat.size, MAX_FILE_BYTES) + 1);
    let length = 0;
    for (let n; length < buffer.length && (n = readSync(fd, buffer, length, buffer.length - length, null)) > 0;) length += n;
    if (length > MAX_FILE_BYTES) return { refused: `${file} grew past ${MAX_FILE_BYTES.toLocaleString('en-US')} bytes while it was read` };
    const text = buffer.subarray(0, length).toString('utf8');
    return text.startsWith(BOM) ? text.slice(1) : text;
  } catch (error) {
    return { refused: `cannot read ${file}: ${(error as Error).message}` };
  } finally {
    closeSync(fd);
  }
}

function sortDiagnostics(ds: Diagnostic[], files: string[]): Diagnostic[] {
  const rank = (d: Diagnostic) => (d.span ? files.indexOf(d.span.file) : files.length);
  return ds
    .map((d, i) => ({ d, i }))
    .sort((a, b) => rank(a.d) - rank(b.d) || (a.d.span?.offset ?? 0) - (b.d.span?.offset ?? 0) || a.i - b.i)
    .map(({ d }) => d);
}

/** A stand-in for an include statement left out for a syntax error: only its path and place are used. */
function brokenInclude(includePath: string, offset: number, file: string): Statement {
  const span = { file, line: 0, column: 0, endLine: 0, endColumn: 0, offset, endOffset: offset };
  return { type: 'include', path: includePath, pathSpan: span, span };
}

/**
 * Reads the entry file from disk, then works like loadPipelineText. A missing entry file is a diagnostic
 * (E_FILE_NOT_FOUND), not an exception.
 */
export async function loadPipeline(entryFile: string, kinds: Record<string, StageKind>, options: LoadOptions = {}): Promise<LoadResult> {
  const file = path.resolve(entryFile);
  const text = readPipeFile(file);
  if (typeof text !== 'string') {
    const reason = text === undefined ? `cannot read ${file}: no such file` : text.refused;
    return { pipeline: null, diagnostics: [diagnostic('E_FILE_NOT_FOUND', reason, undefined)], sources: {}, unread: [] };
  }
  return loadPipelineText(text, file, kinds, readPipeFile, options);
}

/**
 * Parses `text` as the entry file `file` (made absolute) and everything it includes, read through `readFileFn`
 * (default: the disk; return undefined for a missing file), then expands and validates the stages.
 */
export function loadPipelineText(
  text: string,
  file: string,
  kinds: Record<string, StageKind>,
  readFileFn: (path: string) => ReadResult = readPipeFile,
  options: LoadOptions = {},
): LoadResult {
  const entry = path.resolve(file);
  const sources: Record<string, string> = { [entry]: text.startsWith(BOM) ? text.slice(1) : text };
  const unread: string[] = [];
  const diagnostics: Diagnostic[] = [];
  const statements: Statement[] = [];
  // Names declared by statements left out for mistakes in their text, in any file; an include not read may declare any.
  const leftOut = nothingLeftOut();
  const shown = (f: string) => path.relative(path.dirname(entry), f) || path.basename(f);

  // Depth first, so an included file's lets are defined where the include stands; each file is read once.
  const visit = (current: string, content: string, chain: string[]) => {
    const parsed = parsePipeText(content, current);
    diagnostics.push(...parsed.diagnostics);
    for (const name of parsed.leftOut.names) leftOut.names.add(name);
    leftOut.anyName ||= parsed.leftOut.anyName;
    // A broken include whose path can still be read is followed where it stands, as if it were right: its names are
    // then known, so the rest of the file is checked against them (its own error is already said).
    const inOrder: { s: Statement; broken: boolean }[] = [
      ...parsed.statements.map((s) => ({ s, broken: false })),
      ...parsed.leftOut.includes.map((i) => ({ s: brokenInclude(i.path, i.offset, current), broken: true })),
    ].sort((a, b) => a.s.span.offset - b.s.span.offset);
    for (const { s, broken: isBroken } of inOrder) {
      if (s.type !== 'include') {
        statements.push(s);
        continue;
      }
      const target = path.resolve(path.dirname(current), s.path);
      if (isBroken && (chain.includes(target) || typeof readFileFn(target) !== 'string')) {
        // Nothing more to say about a statement that has its error already: whatever it meant may declare any name.
        if (!Object.hasOwn(sources, target)) leftOut.anyName = true;
        continue;
      }
      if (chain.includes(target)) {
        const cycle = [...chain.slice(chain.indexOf(target)), target].map(shown).join(' → ');
        diagnostics.push(diagnostic('E_INCLUDE_CYCLE', `include cycle: ${cycle}`, s.pathSpan));
        continue;
      }
      if (Object.hasOwn(sources, target)) continue;
      const read = readFileFn(target);
      if (typeof read !== 'string') {
        const note = read === undefined ? `looked for ${target}` : read.refused;
        diagnostics.push(diagnostic('E_INCLUDE_NOT_FOUND', `cannot read included file \`${s.path}\``, s.pathSpan, [note]));
        unread.push(target);
        leftOut.anyName = true;
        continue;
      }
      const included = read.startsWith(BOM) ? read.slice(1) : read;
      sources[target] = included;
      visit(target, included, [...chain, target]);
    }
  };
  visit(entry, sources[entry]!, [entry]);

  const done = (pipeline: Pipeline | null): LoadResult => ({
    pipeline,
    diagnostics: sortDiagnostics(diagnostics, Object.keys(sources)),
    sources,
    unread,
  });
  // Statements with syntax errors are left out (grammar/partial.ts) and the rest is still checked, so that every
  // mistake is reported at once; the names the left-out ones declare keep their uses from being reported as unknown,
  // and what they may write keeps a dep from being reported missing.
  const incomplete = hasErrors(diagnostics);
  const expanded = expandPipeline(statements, options.overrides, leftOut);
  diagnostics.push(...expanded.diagnostics);
  // Validating the part of an oversized matrix that was made would only take time.
  if (expanded.diagnostics.some((d) => d.code === 'E_TOO_MANY_VARIANTS')) return done(null);
  const workspace = findWorkspace(entry);
  const validated = validatePipeline(expanded.stages, kinds, { workspace, pipelineFiles: Object.keys(sources), incomplete });
  diagnostics.push(...validated.diagnostics);
  if (hasErrors(diagnostics)) return done(null);
  return done({ file: entry, workspace, stages: validated.stages, sources });
}

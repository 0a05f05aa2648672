// Loading a .pipe file: read it and its includes, parse, expand, validate; the runner's single entry to the language.
import { existsSync, readFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import type { Statement } from '../grammar/ast.ts';
import { diagnostic, hasErrors, type Diagnostic } from '../grammar/diagnostics.ts';
import { parsePipeText } from '../grammar/index.ts';
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

function readFileOrUndefined(file: string): string | undefined {
  try {
    return readFileSync(file, 'utf8');
  } catch {
    return undefined;
  }
}

function sortDiagnostics(ds: Diagnostic[], files: string[]): Diagnostic[] {
  const rank = (d: Diagnostic) => (d.span ? files.indexOf(d.span.file) : files.length);
  return ds
    .map((d, i) => ({ d, i }))
    .sort((a, b) => rank(a.d) - rank(b.d) || (a.d.span?.offset ?? 0) - (b.d.span?.offset ?? 0) || a.i - b.i)
    .map(({ d }) => d);
}

/**
 * Reads the entry file from disk, then works like loadPipelineText. A missing entry file is a diagnostic
 * (E_FILE_NOT_FOUND), not an exception.
 */
export async function loadPipeline(entryFile: string, kinds: Record<string, StageKind>, options: LoadOptions = {}): Promise<LoadResult> {
  const file = path.resolve(entryFile);
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    const reason = (err as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : (err as Error).message;
    return { pipeline: null, diagnostics: [diagnostic('E_FILE_NOT_FOUND', `cannot read ${file}: ${reason}`, undefined)], sources: {} };
  }
  return loadPipelineText(text, file, kinds, readFileOrUndefined, options);
}

/**
 * Parses `text` as the entry file `file` (made absolute) and everything it includes, read through `readFileFn`
 * (default: the disk; return undefined for a missing file), then expands and validates the stages.
 */
export function loadPipelineText(
  text: string,
  file: string,
  kinds: Record<string, StageKind>,
  readFileFn: (path: string) => string | undefined = readFileOrUndefined,
  options: LoadOptions = {},
): LoadResult {
  const entry = path.resolve(file);
  const sources: Record<string, string> = { [entry]: text };
  const diagnostics: Diagnostic[] = [];
  const statements: Statement[] = [];
  const shown = (f: string) => path.relative(path.dirname(entry), f) || path.basename(f);

  // Depth first, so an included file's lets are defined where the include stands; each file is read once.
  const visit = (current: string, content: string, chain: string[]) => {
    const parsed = parsePipeText(content, current);
    diagnostics.push(...parsed.diagnostics);
    for (const s of parsed.ast?.statements ?? parsed.includes) {
      if (s.type !== 'include') {
        statements.push(s);
        continue;
      }
      const target = path.resolve(path.dirname(current), s.path);
      if (chain.includes(target)) {
        const cycle = [...chain.slice(chain.indexOf(target)), target].map(shown).join(' → ');
        diagnostics.push(diagnostic('E_INCLUDE_CYCLE', `include cycle: ${cycle}`, s.pathSpan));
        continue;
      }
      if (Object.hasOwn(sources, target)) continue;
      const included = readFileFn(target);
      if (included === undefined) {
        diagnostics.push(diagnostic('E_INCLUDE_NOT_FOUND', `cannot read included file \`${s.path}\``, s.pathSpan, [`looked for ${target}`]));
        continue;
      }
      sources[target] = included;
      visit(target, included, [...chain, target]);
    }
  };
  visit(entry, text, [entry]);

  const done = (pipeline: Pipeline | null): LoadResult => ({
    pipeline,
    diagnostics: sortDiagnostics(diagnostics, Object.keys(sources)),
    sources,
  });
  // Syntax errors leave the program incomplete; expanding it would report consequences, not causes.
  if (hasErrors(diagnostics)) return done(null);

  const expanded = expandPipeline(statements, options.overrides);
  diagnostics.push(...expanded.diagnostics);
  const validated = validatePipeline(expanded.stages, kinds);
  diagnostics.push(...validated.diagnostics);
  if (hasErrors(diagnostics)) return done(null);
  return done({ file: entry, workspace: findWorkspace(entry), stages: validated.stages, sources });
}

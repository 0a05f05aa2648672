// Find references and rename for stages, lets and loop variables, across a file, its includes and the files including it.
import path from 'node:path';
import type { IToken } from 'chevrotain';
import * as T from '../grammar/tokens.ts';
import { declarationsOf, loopVarsAt, namesIn, type Declarations, type NameUse } from './cursor.ts';
import { tokenRange, type Location, type Range, type ReadFile } from './positions.ts';

/** Where names are looked for: how files are read, and the .pipe files that may include the one asked about. */
export interface Project {
  readFile: ReadFile;
  /** Absolute paths: the workspace's .pipe files and the open ones. */
  files: string[];
}

/** A file as one request sees it, read and scanned once. */
interface Source {
  file: string;
  text: string;
  decls: Declarations;
  names: NameUse[];
}

/** What a name stands for: a declaration, found by its name token. `loop`: the index of its `for each` in its file. */
export interface Target {
  what: 'stage' | 'let' | 'loop variable';
  name: string;
  file: string;
  token: IToken;
  loop: number | null;
}

const sameTarget = (a: Target | null, b: Target): boolean => a !== null && a.file === b.file && a.token.startOffset === b.token.startOffset;

/** The files of one request: each read (the editor's text first) and scanned at most once. */
class Sources {
  private readonly cache = new Map<string, Source | null>();
  /** The file asked about, then the project's files by path. */
  private readonly files: string[];

  constructor(private readonly project: Project, file: string, text: string) {
    this.cache.set(file, { file, text, decls: declarationsOf(text), names: namesIn(text) });
    this.files = [file, ...project.files.filter((f) => f !== file).sort()];
  }

  get(file: string): Source | null {
    if (!this.cache.has(file)) {
      const text = this.project.readFile(file);
      this.cache.set(file, typeof text === 'string' ? { file, text, decls: declarationsOf(text), names: namesIn(text) } : null);
    }
    return this.cache.get(file)!;
  }

  /** The file and everything it includes, depth first, each once: the files whose stages and lets share names. */
  pipeline(file: string): Source[] {
    const out: Source[] = [];
    const visit = (f: string): void => {
      const source = out.some((s) => s.file === f) ? null : this.get(f);
      if (!source) return;
      out.push(source);
      for (const inc of source.decls.includes) visit(path.resolve(path.dirname(f), inc.path));
    };
    visit(file);
    return out;
  }

  /** The pipelines `file` is part of: its own, then those of the other files that include it. */
  pipelinesOf(file: string): Source[][] {
    return [file, ...this.files.filter((f) => f !== file)].map((f) => this.pipeline(f)).filter((p) => p.some((s) => s.file === file));
  }
}

/** The index of the innermost `for each` around the offset, header included. */
function loopAt(decls: Declarations, offset: number): number | null {
  for (let loop = decls.loops.length - 1; loop >= 0; loop--) {
    if (decls.loops[loop]!.start <= offset && offset <= decls.loops[loop]!.end) return loop;
  }
  return null;
}

function stageIn(pipeline: Source[], name: string): Target | null {
  for (const s of pipeline) {
    const stage = s.decls.stages.find((d) => d.name === name);
    if (stage) return { what: 'stage', name, file: s.file, token: stage.token, loop: stage.loop };
  }
  return null;
}

/**
 * What a name of `source` stands for when the file is read as part of `pipeline`: a stage is found in any of its
 * files, a loop variable or a loop's let only in its own loop, a let outside loops in any file.
 */
function resolve(source: Source, use: NameUse, pipeline: Source[]): Target | null {
  const { file, decls } = source;
  const name = use.token.image;
  const at = use.token.startOffset;
  switch (use.role) {
    case 'declaration': {
      const stage = decls.stages.find((d) => d.token.startOffset === at);
      if (stage) return { what: 'stage', name, file, token: stage.token, loop: stage.loop };
      const let_ = decls.lets.find((d) => d.token.startOffset === at);
      if (let_) return { what: 'let', name, file, token: let_.token, loop: let_.loop };
      const variable = decls.loopVars.find((d) => d.token.startOffset === at);
      return variable ? { what: 'loop variable', name, file, token: variable.token, loop: variable.loop } : null;
    }
    case 'stage':
      return stageIn(pipeline, name);
    case 'selector': {
      const stage = stageIn(pipeline, use.stage);
      const owner = pipeline.find((s) => s.file === stage?.file);
      const variable = owner?.decls.loopVars.find((v) => v.loop === stage!.loop && v.name === name);
      return variable ? { what: 'loop variable', name, file: owner!.file, token: variable.token, loop: variable.loop } : null;
    }
    case 'value': {
      const variable = loopVarsAt(decls, at).find((v) => v.name === name);
      if (variable) return { what: 'loop variable', name, file, token: variable.token, loop: variable.loop };
      const loop = loopAt(decls, at);
      const local = loop === null ? undefined : decls.lets.find((l) => l.loop === loop && l.name === name);
      if (local) return { what: 'let', name, file, token: local.token, loop };
      for (const s of pipeline) {
        const global = s.decls.lets.find((l) => l.loop === null && l.name === name);
        if (global) return { what: 'let', name, file: s.file, token: global.token, loop: null };
      }
      return null;
    }
  }
}

/** The name under the offset and what it stands for, in the file's own pipeline or else one that includes it. */
function targetAt(sources: Sources, file: string, offset: number): { use: NameUse; target: Target } | null {
  const source = sources.get(file)!;
  const use = source.names.find((n) => n.token.startOffset <= offset && offset <= n.token.endOffset! + 1);
  if (!use) return null;
  for (const pipeline of sources.pipelinesOf(file)) {
    const target = resolve(source, use, pipeline);
    if (target) return { use, target };
  }
  return null;
}

/**
 * Every name that stands for the target, its declaration first, then in the order of the text: the target's file
 * first, then the others by path.
 */
function occurrences(sources: Sources, target: Target): { file: string; token: IToken }[] {
  const found = new Map<string, { file: string; token: IToken }>();
  for (const pipeline of sources.pipelinesOf(target.file)) {
    for (const source of pipeline) {
      for (const use of source.names) {
        if (use.token.image !== target.name || found.has(`${source.file}:${use.token.startOffset}`)) continue;
        if (sameTarget(resolve(source, use, pipeline), target)) found.set(`${source.file}:${use.token.startOffset}`, { file: source.file, token: use.token });
      }
    }
  }
  const rank = (f: string): string => (f === target.file ? '' : f);
  return [...found.values()].sort((a, b) => rank(a.file).localeCompare(rank(b.file)) || a.token.startOffset - b.token.startOffset);
}

/**
 * The declaration the name at the offset stands for (go to definition, hover), with the text and declarations of
 * the file it is in; null where no stage, let or loop variable is named.
 */
export function declarationAt(text: string, file: string, offset: number, project: Project): { target: Target; text: string; decls: Declarations } | null {
  const sources = new Sources(project, file, text);
  const found = targetAt(sources, file, offset);
  const declaredIn = found && sources.get(found.target.file);
  return found && declaredIn ? { target: found.target, text: declaredIn.text, decls: declaredIn.decls } : null;
}

/** Find references: the declaration (when asked for) and every use of the stage, let or loop variable at the offset. */
export function referencesAt(text: string, file: string, offset: number, project: Project, includeDeclaration: boolean): Location[] {
  const sources = new Sources(project, file, text);
  const found = targetAt(sources, file, offset);
  if (!found) return [];
  const { target } = found;
  const isDeclaration = (o: { file: string; token: IToken }) => o.file === target.file && o.token.startOffset === target.token.startOffset;
  return occurrences(sources, target)
    .filter((o) => includeDeclaration || !isDeclaration(o))
    .map((o) => ({ file: o.file, range: tokenRange(o.token) }));
}

/** The range of the name a rename at the offset would change; null where no stage, let or loop variable is named. */
export function prepareRenameAt(text: string, file: string, offset: number, project: Project): Range | null {
  const found = targetAt(new Sources(project, file, text), file, offset);
  return found && tokenRange(found.use.token);
}

export interface Edit {
  file: string;
  range: Range;
  newText: string;
}

const KEYWORDS = new Set(T.KEYWORDS.map((k) => String(k.PATTERN)));
const NAME = new RegExp(`^(?:${(T.Identifier.PATTERN as RegExp).source})$`);

/**
 * The name that `newName` would clash with, as `check` reports E_DUPLICATE_NAME: stages and lets outside loops share
 * one namespace with every let and variable of every loop; a loop's own variables and lets clash with that namespace's
 * stages and lets outside loops, and with each other, not with another loop's.
 */
function clashOf(sources: Sources, target: Target, newName: string): Target | null {
  const global = target.what === 'stage' || target.loop === null;
  for (const pipeline of sources.pipelinesOf(target.file)) {
    for (const s of pipeline) {
      // A loop's own names clash with a global one, and with the names of the target's loop.
      const clashesInLoop = (loop: number | null) => global || (s.file === target.file && loop === target.loop);
      const candidates: Target[] = [
        ...s.decls.stages.map((d) => ({ what: 'stage' as const, name: d.name, file: s.file, token: d.token, loop: d.loop })),
        ...s.decls.lets.filter((d) => d.loop === null || clashesInLoop(d.loop)).map((d) => ({ what: 'let' as const, name: d.name, file: s.file, token: d.token, loop: d.loop })),
        ...s.decls.loopVars.filter((d) => clashesInLoop(d.loop)).map((d) => ({ what: 'loop variable' as const, name: d.name, file: s.file, token: d.token, loop: d.loop })),
      ];
      const clash = candidates.find((c) => c.name === newName && !sameTarget(c, target));
      if (clash) return clash;
    }
  }
  return null;
}

export type RenameResult = { edits: Edit[] } | { refused: string };

/** Rename: the edits that give the stage, let or loop variable at the offset a new name, or why it cannot have it. */
export function renameAt(text: string, file: string, offset: number, newName: string, project: Project): RenameResult | null {
  const sources = new Sources(project, file, text);
  const found = targetAt(sources, file, offset);
  if (!found) return null;
  const { target } = found;
  if (!NAME.test(newName)) return { refused: `\`${newName}\` is not a name: a name is a letter or \`_\`, then letters, digits and \`_\`` };
  if (KEYWORDS.has(newName)) return { refused: `\`${newName}\` is a keyword of the language` };
  const clash = clashOf(sources, target, newName);
  if (clash) {
    const where = `${path.relative(path.dirname(file), clash.file)}:${clash.token.startLine}:${clash.token.startColumn}`;
    return { refused: `cannot rename the ${target.what} \`${target.name}\` to \`${newName}\`: a ${clash.what} \`${newName}\` is already defined at ${where}` };
  }
  return { edits: occurrences(sources, target).map((o) => ({ file: o.file, range: tokenRange(o.token), newText: newName })) };
}

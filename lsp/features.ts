// The editor features as pure functions of a document's text: diagnostics, completion, hover, go to definition and the outline.
import path from 'node:path';
import type { IToken } from 'chevrotain';
import type { Diagnostic as PipeDiagnostic } from '../grammar/diagnostics.ts';
import { loadPipelineText } from '../runtime/load.ts';
import type { StageKind } from '../stages/kind.ts';
import { cursorAt, declarationsOf, isKeyToken, loopVarsAt, type Declarations } from './cursor.ts';
import { spanRange, tokenRange, type Location, type Range, type ReadFile } from './positions.ts';
import { declarationAt } from './references.ts';

export interface EditorDiagnostic {
  range: Range;
  severity: 'error' | 'warning';
  code: string;
  message: string;
}

const START: Range = { start: { line: 0, character: 0 }, end: { line: 0, character: 0 } };

/**
 * The diagnostics `pausepipe check` prints for the file, as editor diagnostics of this document. A mistake in an
 * included file is shown on the `include` that brings it in, with its own location in the message.
 */
export function diagnosticsOf(text: string, file: string, kinds: Record<string, StageKind>, readFile: ReadFile): EditorDiagnostic[] {
  const { diagnostics, sources } = loadPipelineText(text, file, kinds, readFile);
  const entry = path.resolve(file);
  const includesOf = (f: string): string[] => declarationsOf(sources[f] ?? '').includes.map((i) => path.resolve(path.dirname(f), i.path));
  // The loader reads each file once, depth first: a file belongs to the first include of this file that reaches it.
  const reaches = (from: string, target: string, seen: Set<string>): boolean => {
    if (from === target) return true;
    if (seen.has(from)) return false;
    seen.add(from);
    return includesOf(from).some((next) => reaches(next, target, seen));
  };
  const includes = declarationsOf(text).includes;
  const includeRange = (other: string): Range => {
    const seen = new Set([entry]);
    const direct = includes.find((i) => reaches(path.resolve(path.dirname(entry), i.path), other, seen)) ?? includes[0];
    return direct ? tokenRange(direct.token) : START;
  };
  return diagnostics.map((d: PipeDiagnostic) => {
    const notes = (d.notes ?? []).map((n) => `\n${n}`).join('');
    const here = d.span === undefined || d.span.file === file;
    const where = here || !d.span ? '' : `${path.relative(path.dirname(file), d.span.file)}:${d.span.line}:${d.span.column}: `;
    return {
      range: d.span === undefined ? START : here ? spanRange(d.span) : includeRange(d.span.file),
      severity: d.severity,
      code: d.code,
      message: `${where}${d.message}${notes}`,
    };
  });
}

/** A JSON Schema node, as much of it as the editor reads. */
interface SchemaNode {
  type?: string | string[];
  description?: string;
  default?: unknown;
  enum?: unknown[];
  properties?: Record<string, SchemaNode>;
  items?: SchemaNode;
}

/** The schema of the object at `path` inside a kind's params (`[]`: the params block itself). */
function objectSchemaAt(kind: StageKind, keys: string[]): SchemaNode | undefined {
  let node: SchemaNode | undefined = kind.params as SchemaNode;
  for (const k of keys) {
    node = node?.properties?.[k];
    // A list of objects (e.g. reference rows) completes the objects' keys.
    if (node?.items?.properties) node = node.items;
  }
  return node;
}

function typeText(s: SchemaNode): string {
  if (s.enum) return s.enum.map((v) => JSON.stringify(v)).join(' | ');
  const types = Array.isArray(s.type) ? s.type : s.type ? [s.type] : [];
  return types.join(' | ') || 'any';
}

/** Markdown for one parameter: its type, default and description. */
export function paramDoc(name: string, s: SchemaNode): string {
  const dflt = s.default === undefined ? 'required' : `default \`${JSON.stringify(s.default)}\``;
  return `**${name}**: \`${typeText(s)}\`, ${dflt}\n\n${s.description ?? ''}`.trimEnd();
}

export type CompletionKind = 'kind' | 'param' | 'input' | 'stage' | 'variable' | 'value' | 'keyword';

export interface Completion {
  label: string;
  kind: CompletionKind;
  insertText: string;
  /** What the typed prefix is matched against when not the label (a quoted value matches its text). */
  filterText?: string;
  detail?: string;
  documentation?: string;
}

const STATEMENT_KEYWORDS = ['stage', 'let', 'for each', 'include'];

/** Declarations of the file and of everything it includes (read once each). */
function allDeclarations(text: string, file: string, readFile: ReadFile): { file: string; text: string; decls: Declarations }[] {
  const out: { file: string; text: string; decls: Declarations }[] = [];
  const seen = new Set<string>();
  const visit = (f: string, t: string): void => {
    if (seen.has(f)) return;
    seen.add(f);
    const decls = declarationsOf(t);
    out.push({ file: f, text: t, decls });
    for (const inc of decls.includes) {
      const target = path.resolve(path.dirname(f), inc.path);
      const content = readFile(target);
      if (typeof content === 'string') visit(target, content);
    }
  };
  visit(file, text);
  return out;
}

function startsWith(label: string, prefix: string): boolean {
  return label.toLowerCase().startsWith(prefix.toLowerCase());
}

/**
 * Completions at a position, filtered by what is typed so far: kind names after `stage NAME =`, parameter names
 * (nested objects too) from the kind's JSON Schema in a params block, input names in `( )`, stage names after
 * `input:`, and lets, loop variables and enum values where a value goes.
 */
export function completionsAt(text: string, file: string, offset: number, kinds: Record<string, StageKind>, readFile: ReadFile): Completion[] {
  const { place, prefix } = cursorAt(text, offset);
  const items: Completion[] = [];
  switch (place.type) {
    case 'kind':
      for (const k of Object.values(kinds)) {
        items.push({ label: k.name, kind: 'kind', insertText: k.name, detail: `stage kind, version ${k.version}`, documentation: k.description });
      }
      break;
    case 'param': {
      const kind = kinds[place.kind];
      const schema = kind && objectSchemaAt(kind, place.path);
      for (const [name, s] of Object.entries(schema?.properties ?? {})) {
        if (place.present.includes(name)) continue;
        items.push({ label: name, kind: 'param', insertText: `${name}: `, detail: typeText(s), documentation: paramDoc(name, s) });
      }
      break;
    }
    case 'input': {
      for (const [name, spec] of Object.entries(kinds[place.kind]?.inputs ?? {})) {
        if (name === '*' || place.present.includes(name)) continue;
        const arity = spec.anyArity ? 'one stage or a collection' : spec.many ? 'a collection, e.g. `eval[*]`' : 'one stage';
        items.push({ label: name, kind: 'input', insertText: `${name}: `, detail: `${arity}${spec.optional ? ', optional' : ''}`, documentation: spec.description });
      }
      break;
    }
    case 'reference':
      for (const { decls } of allDeclarations(text, file, readFile)) {
        for (const s of decls.stages) {
          items.push({ label: s.name, kind: 'stage', insertText: s.name, detail: `stage ${s.name} = ${s.kind ?? '?'}${s.loop !== null ? ' (in a loop: NAME[*] from outside)' : ''}` });
        }
      }
      break;
    case 'selector':
      if (place.star) items.push({ label: '*', kind: 'value', insertText: '*', detail: 'every variant' });
      for (const { decls } of allDeclarations(text, file, readFile)) {
        const stage = decls.stages.find((s) => s.name === place.stage);
        if (!stage || stage.loop === null) continue;
        for (const v of decls.loopVars.filter((l) => l.loop === stage.loop)) {
          items.push({ label: v.name, kind: 'variable', insertText: `${v.name}=`, detail: `loop variable in ${v.values}` });
        }
        break;
      }
      break;
    case 'value': {
      const kind = place.kind === null ? undefined : kinds[place.kind];
      const key = place.path.at(-1);
      const parent = kind && key !== undefined ? objectSchemaAt(kind, place.path.slice(0, -1)) : undefined;
      for (const v of parent?.properties?.[key!]?.enum ?? []) {
        items.push({ label: JSON.stringify(v), kind: 'value', insertText: JSON.stringify(v), filterText: String(v), detail: `a value of ${key}` });
      }
      const files = allDeclarations(text, file, readFile);
      // Only the variables of the loop around the position are in scope (a loop never spans files).
      for (const v of loopVarsAt(files[0]!.decls, offset)) items.push({ label: v.name, kind: 'variable', insertText: v.name, detail: `loop variable in ${v.values}` });
      // A let is known after its statement: in this file the ones that end before the position (not the one being
      // written); an included file's, all of them (includes stand at the top).
      for (const [i, { decls }] of files.entries()) {
        for (const l of decls.lets) {
          if (i > 0 || l.next < offset) items.push({ label: l.name, kind: 'variable', insertText: l.name, detail: 'let' });
        }
      }
      for (const w of ['true', 'false', 'null', 'if', 'not']) items.push({ label: w, kind: 'keyword', insertText: w });
      break;
    }
    case 'statement':
      for (const w of STATEMENT_KEYWORDS) items.push({ label: w, kind: 'keyword', insertText: w });
      break;
    case 'none':
      break;
  }
  const unique = new Map(items.map((i) => [i.label, i]));
  return [...unique.values()].filter((i) => startsWith(i.filterText ?? i.label, prefix));
}

export interface Hover {
  markdown: string;
  range: Range;
}

/** What the name under the position is: a kind, a parameter, an input, a stage, a let or a loop variable. */
export function hoverAt(text: string, file: string, offset: number, kinds: Record<string, StageKind>, readFile: ReadFile): Hover | null {
  const { word, place, frames } = cursorAt(text, offset);
  if (!word) return null;
  const range = tokenRange(word);
  const name = word.image;
  const top = frames.at(-1);
  if (place.type === 'kind') {
    const k = kinds[name];
    return k ? { markdown: `**${k.name}** (stage kind, version ${k.version})\n\n${k.description}`, range } : null;
  }
  if (isKeyToken(text, word)) {
    if (top?.type === 'params') {
      const kind = kinds[top.kind];
      const s = kind && objectSchemaAt(kind, top.path)?.properties?.[name];
      return s ? { markdown: paramDoc(name, s), range } : null;
    }
    if (top?.type === 'inputs') {
      const spec = kinds[top.kind]?.inputs[name] ?? kinds[top.kind]?.inputs['*'];
      return spec ? { markdown: `**${name}** (input of ${top.kind})\n\n${spec.description}`, range } : null;
    }
    return null;
  }
  const target = definitionOf(text, file, offset, readFile);
  if (!target) return null;
  return { markdown: target.summary, range };
}


/** Where the name at the offset was declared, and a one-line summary of the declaration. */
function definitionOf(text: string, file: string, offset: number, readFile: ReadFile): (Location & { summary: string }) | null {
  const found = declarationAt(text, file, offset, { readFile, files: [] });
  if (!found) return null;
  const { target, decls } = found;
  const at = (d: { token: IToken }) => d.token.startOffset === target.token.startOffset;
  const where = { file: target.file, range: tokenRange(target.token) };
  if (target.what === 'stage') {
    const kind = decls.stages.find(at)?.kind ?? '?';
    return { ...where, summary: `\`stage ${target.name} = ${kind}\`${target.loop !== null ? ' (in a `for each`)' : ''}` };
  }
  if (target.what === 'let') {
    const decl = decls.lets.find(at)!;
    const source = found.text.slice(decl.token.startOffset - 'let '.length, decl.valueEnd).replace(/\s+/g, ' ');
    return { ...where, summary: `\`${source.length > 200 ? `${source.slice(0, 199)}…` : source}\`` };
  }
  return { ...where, summary: `loop variable \`${target.name}\` in \`${decls.loopVars.find(at)!.values}\`` };
}

/** Go to definition: a stage reference to its `stage` statement, a name to its `let` or `for each` variable. */
export function definitionAt(text: string, file: string, offset: number, readFile: ReadFile): Location | null {
  const { word, place } = cursorAt(text, offset);
  if (!word || place.type === 'kind' || isKeyToken(text, word)) return null;
  const target = definitionOf(text, file, offset, readFile);
  return target && { file: target.file, range: target.range };
}

/** One entry of the outline: a stage, a let, or a `for each` holding its stages and lets. */
export interface OutlineSymbol {
  name: string;
  kind: 'stage' | 'let' | 'loop';
  detail: string;
  /** The whole statement. */
  range: Range;
  /** The name (for a loop, its `for`). */
  selectionRange: Range;
  children: OutlineSymbol[];
}

/** The outline of a file in the order of its text, from tokens (a file that does not parse still has one). */
export function outlineOf(text: string): OutlineSymbol[] {
  const decls = declarationsOf(text);
  const span = (first: IToken, last: IToken): Range => ({ start: tokenRange(first).start, end: tokenRange(last).end });
  const entries: (OutlineSymbol & { offset: number; loop: number | null })[] = [
    ...decls.stages.map((s) => ({ name: s.name, kind: 'stage' as const, detail: s.kind ?? '', range: span(s.first, s.last), selectionRange: tokenRange(s.token), children: [], offset: s.first.startOffset, loop: s.loop })),
    ...decls.lets.map((l) => ({ name: l.name, kind: 'let' as const, detail: text.slice(l.token.endOffset! + 1, l.valueEnd).replace(/^\s*=\s*/, '').replace(/\s+/g, ' ').slice(0, 60), range: span(l.first, l.last), selectionRange: tokenRange(l.token), children: [], offset: l.first.startOffset, loop: l.loop })),
  ].sort((a, b) => a.offset - b.offset);
  const loops: OutlineSymbol[] = decls.loops.map((l, i) => ({
    name: `for each ${decls.loopVars.filter((v) => v.loop === i).map((v) => v.name).join(', ')}`,
    kind: 'loop',
    detail: '',
    range: span(l.first, l.last),
    selectionRange: tokenRange(l.first),
    children: [],
  }));
  const top: { symbol: OutlineSymbol; offset: number }[] = decls.loops.map((l, i) => ({ symbol: loops[i]!, offset: l.start }));
  for (const { offset, loop, ...symbol } of entries) {
    if (loop === null) top.push({ symbol, offset });
    else loops[loop]!.children.push(symbol);
  }
  return top.sort((a, b) => a.offset - b.offset).map((t) => t.symbol);
}

// The code of a plugin kind as part of its stages' keys: a plugin has no versions.lock.json to tell its author that
// an edit needs a version bump, so its source files are hashed instead, and an edit re-runs its stages.
import { existsSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import type { StageKind } from '../stages/kind.ts';
import { sha256 } from './hash.ts';

/** Where each plugin kind came from; built-in kinds are absent (their version lock covers their code). */
const pluginFiles = new WeakMap<StageKind, string>();
/** A plugin file's code digest, computed once per process (only the runner asks; workers never do). */
const digests = new Map<string, Record<string, string>>();

export function registerPluginKind(kind: StageKind, file: string): void {
  pluginFiles.set(kind, path.resolve(file));
}

// Static specifiers of value imports: `from '…'`, `import '…'`, `import('…')`, `require('…')`. `import type` and
// `export type` lines are skipped: they vanish when the module runs, so they cannot change a result.
const IMPORT_SPECIFIER = /(?:^|[^\w$.])(?:import|export)(?!\s+type\b)(?:[^'"`;]*?\bfrom)?\s*\(?\s*['"]([^'"]+)['"]|\brequire\s*\(\s*['"]([^'"]+)['"]/g;
const RESOLVED_EXTENSIONS = ['', '.ts', '.mts', '.cts', '.js', '.mjs', '.cjs', '.json'];

/** The file a relative specifier names, as Node or tsx would find it (`./x.js` may be `./x.ts` on disk), or null. */
function resolveLocal(from: string, specifier: string): string | null {
  const base = path.resolve(path.dirname(from), specifier);
  const candidates = [
    ...RESOLVED_EXTENSIONS.map((ext) => base + ext),
    ...(/\.[cm]?js$/.test(base) ? [base.replace(/js$/, 'ts')] : []),
    ...RESOLVED_EXTENSIONS.slice(1).map((ext) => path.join(base, `index${ext}`)),
  ];
  return candidates.find((c) => existsSync(c) && statSync(c).isFile()) ?? null;
}

/**
 * Content hashes of a plugin module and every local module it imports, through relative specifiers, named relative
 * to the plugin's folder (so moving the folder re-runs nothing). Packages (bare specifiers, node_modules) are left
 * out: their versions are the lock file's business, as for the built-in kinds.
 */
export function moduleCode(file: string): Record<string, string> {
  const root = path.dirname(file);
  const code: Record<string, string> = {};
  const seen = new Set<string>();
  const todo = [file];
  while (todo.length > 0) {
    const current = todo.pop()!;
    if (seen.has(current) || current.split(path.sep).includes('node_modules')) continue;
    seen.add(current);
    const text = readFileSync(current);
    code[path.relative(root, current).split(path.sep).join('/')] = sha256(text);
    if (current.endsWith('.json')) continue;
    for (const match of text.toString('utf8').matchAll(IMPORT_SPECIFIER)) {
      const specifier = match[1] ?? match[2]!;
      if (!specifier.startsWith('./') && !specifier.startsWith('../')) continue;
      const resolved = resolveLocal(current, specifier);
      if (resolved) todo.push(resolved);
    }
  }
  return Object.fromEntries(Object.entries(code).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
}

/** A plugin kind's code (file → content hash), or undefined for a built-in kind. */
export function kindCode(kind: StageKind): Record<string, string> | undefined {
  const file = pluginFiles.get(kind);
  if (file === undefined) return undefined;
  let code = digests.get(file);
  if (code === undefined) {
    code = moduleCode(file);
    digests.set(file, code);
  }
  return code;
}

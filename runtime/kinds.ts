// The stage kinds a run knows: the built-in registry plus modules named in $PAUSEPIPE_KINDS (tests, user plugins).
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import type { StageKind } from '../stages/kind.ts';
import { STAGE_KINDS } from '../stages/index.ts';

/**
 * Extra kinds: `PAUSEPIPE_KINDS=/abs/a.ts,/abs/b.js`, each module exporting `STAGE_KINDS: Record<string, StageKind>`.
 * The runner and its workers read the same variable, so a kind registered this way also runs isolated.
 */
export const EXTRA_KINDS_ENV = 'PAUSEPIPE_KINDS';

let loaded: Promise<Record<string, StageKind>> | undefined;

async function importModule(file: string): Promise<Record<string, StageKind>> {
  if (/\.[cm]?ts$/.test(file) && !import.meta.url.endsWith('.ts')) {
    // Running from dist: TypeScript modules need tsx's loader, registered once on demand.
    const { register } = await import('tsx/esm/api');
    register();
  }
  return kindsOfModule(await import(pathToFileURL(path.resolve(file)).href), file);
}

/**
 * A plugin module's STAGE_KINDS, checked: an object from kind name to kind (an array would register kinds named
 * `0`, `1`, …), each kind carrying its own name, a whole version and a run function.
 */
export function kindsOfModule(mod: { STAGE_KINDS?: unknown }, file: string): Record<string, StageKind> {
  const kinds = mod.STAGE_KINDS;
  if (!kinds) throw new Error(`${EXTRA_KINDS_ENV}: ${file} exports no STAGE_KINDS`);
  if (typeof kinds !== 'object' || Array.isArray(kinds)) {
    throw new Error(`${EXTRA_KINDS_ENV}: ${file}: STAGE_KINDS must be an object from kind name to kind, e.g. { my_kind: MY_KIND }, got ${Array.isArray(kinds) ? 'an array' : typeof kinds}`);
  }
  for (const [key, kind] of Object.entries(kinds as Record<string, Partial<StageKind> | null>)) {
    const problem = kind === null || typeof kind !== 'object' ? 'is not an object'
      : kind.name !== key ? `has name ${JSON.stringify(kind.name)}; the key and the name must match`
      : !Number.isInteger(kind.version) ? 'has no whole-number version'
      : typeof kind.run !== 'function' ? 'has no run function'
      : null;
    if (problem) throw new Error(`${EXTRA_KINDS_ENV}: ${file}: STAGE_KINDS.${key} ${problem}`);
  }
  return kinds as Record<string, StageKind>;
}

export function loadKinds(): Promise<Record<string, StageKind>> {
  loaded ??= (async () => {
    const files = (process.env[EXTRA_KINDS_ENV] ?? '').split(',').map((f) => f.trim()).filter(Boolean);
    const kinds = { ...STAGE_KINDS };
    for (const file of files) Object.assign(kinds, await importModule(file));
    return kinds;
  })();
  return loaded;
}

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
  const mod = (await import(pathToFileURL(path.resolve(file)).href)) as { STAGE_KINDS?: Record<string, StageKind> };
  if (!mod.STAGE_KINDS) throw new Error(`${EXTRA_KINDS_ENV}: ${file} exports no STAGE_KINDS`);
  return mod.STAGE_KINDS;
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

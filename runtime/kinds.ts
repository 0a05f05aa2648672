// The stage kinds a run knows: the built-in registry plus modules named in $PAUSEPIPE_KINDS (tests, user plugins).
import { existsSync } from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import type { StageKind } from '../stages/kind.ts';
import { STAGE_KINDS } from '../stages/index.ts';
import { registerPluginKind } from './kind-code.ts';
import { validatorFor } from './validate.ts';

/**
 * Extra kinds: `PAUSEPIPE_KINDS=/abs/a.ts,/abs/b.js`, each module exporting `STAGE_KINDS: Record<string, StageKind>`.
 * The runner and its workers read the same variable, so a kind registered this way also runs isolated.
 */
export const EXTRA_KINDS_ENV = 'PAUSEPIPE_KINDS';

/** Where each known kind comes from: `built-in`, or the plugin file that registered it. */
export type KindOrigins = Map<string, string>;

const BUILT_IN = 'built-in';

let loaded: Promise<Record<string, StageKind>> | undefined;

async function importModule(file: string): Promise<{ STAGE_KINDS?: unknown }> {
  const abs = path.resolve(file);
  if (!existsSync(abs)) {
    throw new Error(`${EXTRA_KINDS_ENV}: ${file} does not exist${abs === file ? '' : ` (looked for ${abs})`}`);
  }
  if (/\.[cm]?ts$/.test(file) && !import.meta.url.endsWith('.ts')) {
    // Running from dist: TypeScript modules need tsx's loader, registered once on demand.
    const { register } = await import('tsx/esm/api');
    register();
  }
  try {
    return await import(pathToFileURL(abs).href);
  } catch (error) {
    // A syntax error or a failing import inside the plugin: say which plugin, keep the module's own words.
    const message = error instanceof Error ? error.message : String(error);
    throw new Error(`${EXTRA_KINDS_ENV}: ${file} failed to load: ${message}`, { cause: error });
  }
}

/** Why a kind's declaration cannot work, or null: what the runner, `kinds` and the editor rely on. */
function kindProblem(key: string, kind: Partial<StageKind> | null): string | null {
  if (kind === null || typeof kind !== 'object') return 'is not an object';
  if (kind.name !== key) return `has name ${JSON.stringify(kind.name)}; the key and the name must match`;
  if (!Number.isInteger(kind.version)) return 'has no whole-number version';
  if (typeof kind.run !== 'function') return 'has no run function';
  if (typeof kind.description !== 'string' || kind.description === '') return 'has no description';
  const params = kind.params;
  if (params === null || typeof params !== 'object' || params.type !== 'object' || params.properties === null || typeof params.properties !== 'object') {
    return 'has no params schema: give { type: \'object\', properties: { … }, additionalProperties: false }';
  }
  for (const [name, prop] of Object.entries(params.properties)) {
    const description = (prop as { description?: unknown } | null)?.description;
    if (typeof description !== 'string' || description === '') return `param \`${name}\` has no description (\`pausepipe kinds\` and the editor show it)`;
  }
  try {
    validatorFor(kind as StageKind);
  } catch (error) {
    return `params is not a valid JSON Schema: ${(error as Error).message.replace(/^schema is invalid: /, '')}`;
  }
  if (kind.inputs === null || typeof kind.inputs !== 'object') return 'has no inputs (give {} for none)';
  for (const [name, spec] of Object.entries(kind.inputs)) {
    const description = (spec as { description?: unknown } | null)?.description;
    if (typeof description !== 'string' || description === '') return `input \`${name}\` has no description`;
  }
  return null;
}

/**
 * A plugin module's STAGE_KINDS, checked: an object from kind name to kind (an array would register kinds named
 * `0`, `1`, …), each kind carrying its own name, a whole version, a run function, a valid params schema and the
 * descriptions people read. `taken` holds the names already known: a plugin never replaces a built-in kind or
 * another plugin's, since both would share one name and version, and so one cache key, for different code.
 */
export function kindsOfModule(mod: { STAGE_KINDS?: unknown }, file: string, taken: KindOrigins = new Map()): Record<string, StageKind> {
  const kinds = mod.STAGE_KINDS;
  if (!kinds) throw new Error(`${EXTRA_KINDS_ENV}: ${file} exports no STAGE_KINDS`);
  if (typeof kinds !== 'object' || Array.isArray(kinds)) {
    throw new Error(`${EXTRA_KINDS_ENV}: ${file}: STAGE_KINDS must be an object from kind name to kind, e.g. { my_kind: MY_KIND }, got ${Array.isArray(kinds) ? 'an array' : typeof kinds}`);
  }
  for (const [key, kind] of Object.entries(kinds as Record<string, Partial<StageKind> | null>)) {
    const origin = taken.get(key);
    const problem = origin === BUILT_IN ? 'has the name of a built-in kind; give yours another name'
      : origin !== undefined ? `is already registered by ${origin}; give one of them another name`
      : kindProblem(key, kind);
    if (problem) throw new Error(`${EXTRA_KINDS_ENV}: ${file}: STAGE_KINDS.${key} ${problem}`);
  }
  return kinds as Record<string, StageKind>;
}

export function loadKinds(): Promise<Record<string, StageKind>> {
  loaded ??= (async () => {
    const files = (process.env[EXTRA_KINDS_ENV] ?? '').split(',').map((f) => f.trim()).filter(Boolean);
    const kinds = { ...STAGE_KINDS };
    const origins: KindOrigins = new Map(Object.keys(kinds).map((name) => [name, BUILT_IN]));
    for (const file of files) {
      for (const [name, kind] of Object.entries(kindsOfModule(await importModule(file), file, origins))) {
        kinds[name] = kind;
        origins.set(name, file);
        registerPluginKind(kind, file);
      }
    }
    return kinds;
  })();
  return loaded;
}

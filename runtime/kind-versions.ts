// Fingerprints of each stage kind's source files, recorded next to its version in stages/versions.lock.json.
// A kind's code changing while its version stays is how stale results would pass for fresh ones: the test
// tests/stages/kind-versions.test.ts catches it. Run this file (`npm run versions:update`) to re-record.
import { readdir, readFile, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import type { StageKind } from '../stages/kind.ts';
import { sha256 } from './hash.ts';

export interface LockEntry {
  version: number;
  /** Project-relative files or folders fingerprinted. */
  sources: string[];
  sha256: string;
}

export type VersionsLock = Record<string, LockEntry>;

export const LOCK_FILE = 'stages/versions.lock.json';
const UPDATE_COMMAND = 'npm run versions:update';

export function kindSources(kind: StageKind): string[] {
  return kind.sources ?? [`stages/${kind.name.replace(/_/g, '-')}.ts`];
}

async function filesUnder(root: string, rel: string): Promise<string[]> {
  const abs = path.join(root, rel);
  const st = await stat(abs).catch(() => undefined);
  if (!st) throw new Error(`source ${rel} does not exist`);
  if (!st.isDirectory()) return [rel];
  const names = (await readdir(abs)).sort();
  const nested = await Promise.all(names.map((n) => filesUnder(root, path.posix.join(rel, n))));
  return nested.flat();
}

/** sha256 over each source file's path and content; line endings normalised so a Windows checkout agrees. */
export async function fingerprint(root: string, sources: string[]): Promise<string> {
  const files = [...new Set((await Promise.all(sources.map((s) => filesUnder(root, s)))).flat())].sort();
  const parts = await Promise.all(files.map(async (f) => `${f}\0${sha256((await readFile(path.join(root, f), 'utf8')).replace(/\r\n/g, '\n'))}`));
  return sha256(parts.join('\n'));
}

export async function recordKindVersions(root: string, kinds: Record<string, StageKind>): Promise<VersionsLock> {
  const lock: VersionsLock = {};
  for (const kind of Object.values(kinds).sort((a, b) => a.name.localeCompare(b.name))) {
    const sources = kindSources(kind);
    lock[kind.name] = { version: kind.version, sources, sha256: await fingerprint(root, sources) };
  }
  return lock;
}

/** One sentence per problem, each telling the developer what to do; empty when the lock matches the code. */
export async function checkKindVersions(root: string, kinds: Record<string, StageKind>, lock: VersionsLock): Promise<string[]> {
  const problems: string[] = [];
  for (const kind of Object.values(kinds)) {
    const recorded = lock[kind.name];
    const sources = kindSources(kind);
    let print: string;
    try {
      print = await fingerprint(root, sources);
    } catch (e) {
      problems.push(`kind \`${kind.name}\`: ${(e as Error).message}; set \`sources\` on the kind to the files that decide its results`);
      continue;
    }
    if (!recorded) {
      problems.push(`kind \`${kind.name}\` (version ${kind.version}) is not in ${LOCK_FILE}: run \`${UPDATE_COMMAND}\``);
    } else if (recorded.version !== kind.version) {
      problems.push(`kind \`${kind.name}\`: version ${kind.version} is not recorded (${LOCK_FILE} has ${recorded.version}): run \`${UPDATE_COMMAND}\``);
    } else if (recorded.sha256 !== print || recorded.sources.join('\n') !== sources.join('\n')) {
      problems.push(
        `kind \`${kind.name}\`: its source (${sources.join(', ')}) changed but its version is still ${kind.version}. ` +
          `If the change can alter results, bump \`version\` in the kind (old cache entries then re-run); ` +
          `either way run \`${UPDATE_COMMAND}\` to record the new fingerprint.`,
      );
    }
  }
  for (const name of Object.keys(lock)) {
    if (!kinds[name]) problems.push(`kind \`${name}\` is in ${LOCK_FILE} but not registered in stages/index.ts: run \`${UPDATE_COMMAND}\``);
  }
  return problems;
}

const projectRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

if (process.argv[1] && import.meta.url === pathToFileURL(path.resolve(process.argv[1])).href) {
  const { STAGE_KINDS } = await import('../stages/index.ts');
  const lock = await recordKindVersions(projectRoot, STAGE_KINDS);
  await writeFile(path.join(projectRoot, LOCK_FILE), `${JSON.stringify(lock, null, 2)}\n`);
  console.log(`recorded ${Object.keys(lock).length} kind(s) in ${LOCK_FILE}`);
}

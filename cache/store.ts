// The content-addressed artifact store: atomic commits of stage results, per-key locks, gc and verify.
import { readdirSync, readFileSync } from 'node:fs';
import * as fsp from 'node:fs/promises';
import path from 'node:path';
import { sha256, stageKey } from '../runtime/hash.ts';
import type { JsonValue } from '../runtime/json.ts';
import { diskBytes, errorCode, fsyncDir, fsyncFile, randomHex, writeNewFileDurable } from './durable.ts';
import { compareCodeUnits, digestFile } from './file-hash.ts';
import { acquireLock, breakStaleLock, isStale, readLock, type HeldLock, type LockOwner } from './lock.ts';

export type { LockOwner } from './lock.ts';

export interface OutputRecord {
  /** Relative to the entry's artifacts/ folder, with `/` separators. */
  path: string;
  size: number;
  sha256: string;
}

export interface Manifest {
  formatVersion: 1;
  key: string;
  kind: string;
  kindVersion: number;
  /** Generated stage name at run time; informational, not part of the key. */
  stage: string;
  params: Record<string, JsonValue>;
  inputs: Record<string, string[]>;
  files: Record<string, string>;
  variant: Record<string, JsonValue>;
  /** Every file under artifacts/, sorted by path. */
  outputs: OutputRecord[];
  metrics: Record<string, JsonValue>;
  timings: { startedAt: string; finishedAt: string; seconds: number };
  backend?: string;
  /** The `-p` overrides of the run that computed this entry (let path → value, e.g. {"lora_config.r": 8}); absent when none. */
  overrides?: Record<string, JsonValue>;
  /** pausepipe, node, tfjs, ... */
  versions: Record<string, string>;
  /** Relative path of the log file inside the entry. */
  log: string;
}

/** What the caller supplies at commit; the store fills in the rest. */
export type ManifestFields = Omit<Manifest, 'outputs' | 'formatVersion' | 'key' | 'log'>;

export interface PendingEntry {
  key: string;
  /** Fresh empty temp folder: <root>/tmp/<key>.<pid>.<nonce>/artifacts. */
  outDir: string;
  /** <root>/scratch/<key>: survives a killed run (resume), removed after commit. */
  scratchDir: string;
  /** Where the run's log goes (inside the temp entry; exists, empty, from the start). */
  logPath: string;
  /** Hashes outputs (and makes them read-only), writes the manifest, fsyncs, renames the entry into place atomically, releases the lock. */
  commit(m: ManifestFields): Promise<Manifest>;
  /** Removes the temp folder and releases the lock; the scratch folder stays. */
  abort(): Promise<void>;
}

export interface GcResult {
  /** Keys of the committed entries removed. */
  removed: string[];
  freedBytes: number;
  /** Root-relative paths of other things removed: dead runs' temp folders, stale locks, unneeded scratch folders. */
  leftovers: string[];
}

export interface VerifyProblem {
  /** The entry concerned ('' when a leftover names none). */
  key: string;
  problem: string;
}

const ARTIFACTS = 'artifacts';
const MANIFEST = 'manifest.json';
/** SHA-256 of manifest.json's exact bytes, so verify notices an edited or bit-rotted metric. */
const MANIFEST_CHECKSUM = 'manifest.sha256';
const LOG = 'log.txt';
const KEY_PATTERN = /^[0-9a-f]{8,128}$/;
/** Temp entry folders are named <key>.<pid>.<lock nonce>, which ties them to the lock of the run that made them. */
const TEMP_NAME = /^([0-9a-f]{8,128})\.(\d+)\.([0-9a-f]+)$/;
/** Half-published lock files older than this belong to a process that died between write and link. */
const LOCK_TEMP_MAX_AGE_MS = 10 * 60 * 1000;

export interface BeginOptions {
  signal?: AbortSignal;
  onWait?: (owner: LockOwner) => void;
  /**
   * Recompute even when an entry exists, if it was committed before this moment (--force: the run's start). The new
   * entry replaces it at commit; one committed since (by this run under another name, or by another run) is used.
   */
  replaceBefore?: Date;
}

/** An entry that a forced run must recompute: committed before the moment the force applies from. */
function isReplaced(m: Manifest, before: Date | undefined): boolean {
  return before !== undefined && Date.parse(m.timings.finishedAt) < before.getTime();
}

/** Cache root: the --cache-dir flag, else $PAUSEPIPE_CACHE, else <workspace>/.pausepipe. Relative values resolve against the current folder. */
export function resolveCacheRoot(workspace: string, flag?: string): string {
  const chosen = [flag, process.env.PAUSEPIPE_CACHE].find((value) => value !== undefined && value.trim() !== '');
  return chosen === undefined ? path.join(path.resolve(workspace), '.pausepipe') : path.resolve(chosen);
}

function assertKey(key: string): void {
  if (!KEY_PATTERN.test(key)) throw new Error(`invalid cache key ${JSON.stringify(key)}: expected lowercase hex as made by stageKey()`);
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function isSafeRelativePath(p: string): boolean {
  return p !== '' && !p.startsWith('/') && !p.includes('\\') && p.split('/').every((part) => part !== '' && part !== '.' && part !== '..');
}

function isOutputRecord(value: unknown): boolean {
  return isRecord(value) && typeof value.path === 'string' && isSafeRelativePath(value.path) &&
    typeof value.size === 'number' && typeof value.sha256 === 'string';
}

/** The manifest in `text` if it is well formed and belongs to `key`, else a sentence saying what is wrong. */
export function parseManifest(text: string, key: string): Manifest | string {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (error) {
    return `manifest.json does not parse: ${(error as Error).message}`;
  }
  if (!isRecord(value)) return 'manifest.json is not a JSON object';
  if (value.formatVersion !== 1) return `manifest.json has formatVersion ${JSON.stringify(value.formatVersion)}, expected 1`;
  if (value.key !== key) return `manifest.json names key ${JSON.stringify(value.key)} but sits in the folder of ${key}`;
  for (const field of ['kind', 'stage', 'log']) {
    if (typeof value[field] !== 'string') return `manifest.json field ${field} is not a string`;
  }
  if (typeof value.kindVersion !== 'number') return 'manifest.json field kindVersion is not a number';
  for (const field of ['params', 'inputs', 'files', 'variant', 'metrics', 'timings', 'versions']) {
    if (!isRecord(value[field])) return `manifest.json field ${field} is not an object`;
  }
  if (value.backend !== undefined && typeof value.backend !== 'string') return 'manifest.json field backend is not a string';
  if (value.overrides !== undefined && !isRecord(value.overrides)) return 'manifest.json field overrides is not an object';
  if (!Array.isArray(value.outputs) || !value.outputs.every(isOutputRecord)) {
    return 'manifest.json field outputs is not a list of {path, size, sha256} with relative paths';
  }
  return value as unknown as Manifest;
}

function readdirOrEmpty(dir: string): string[] {
  try {
    return readdirSync(dir).sort(compareCodeUnits);
  } catch (error) {
    if (errorCode(error) === 'ENOENT') return [];
    throw error;
  }
}

/** Relative paths (with `/`) of everything under `root` that is not a folder. */
async function listFiles(root: string, rel = ''): Promise<string[]> {
  const found: string[] = [];
  for (const entry of await fsp.readdir(path.join(root, rel), { withFileTypes: true })) {
    const relPath = rel === '' ? entry.name : `${rel}/${entry.name}`;
    if (entry.isDirectory()) found.push(...(await listFiles(root, relPath)));
    else found.push(relPath);
  }
  return found;
}

/** Move an entry folder out of objects/ before deleting it, so no reader ever sees it half deleted; returns the bytes freed. */
async function discardEntry(root: string, dir: string): Promise<number> {
  const aside = path.join(root, 'tmp', `trash.${process.pid}.${randomHex(4)}`);
  await fsp.mkdir(path.dirname(aside), { recursive: true });
  await fsp.rename(dir, aside);
  const bytes = await diskBytes(aside);
  await fsp.rm(aside, { recursive: true, force: true });
  return bytes;
}

/**
 * Replace a symlink in the outputs by a copy of what it points to: the cache must hold the bytes
 * themselves, not a pointer that gc or the user could break later.
 */
async function materializeLink(link: string, rel: string): Promise<void> {
  let target: string;
  try {
    target = await fsp.realpath(link);
  } catch {
    throw new Error(`output ${rel} is a symbolic link to ${await fsp.readlink(link)}, which does not exist`);
  }
  const copy = `${link}.${randomHex(4)}.copy`;
  await fsp.cp(target, copy, { recursive: true, dereference: true, errorOnExist: true, force: false });
  await fsp.rm(link);
  await fsp.rename(copy, link);
}

/** Hash and flush every file under `root`; collects the folders visited so they can be flushed too. */
async function sealOutputs(root: string, folders: string[]): Promise<OutputRecord[]> {
  const outputs: OutputRecord[] = [];
  const walk = async (dir: string, rel: string): Promise<void> => {
    folders.push(dir);
    for (const name of await fsp.readdir(dir)) {
      const full = path.join(dir, name);
      const relPath = rel === '' ? name : `${rel}/${name}`;
      let stat = await fsp.lstat(full);
      if (stat.isSymbolicLink()) {
        await materializeLink(full, relPath);
        stat = await fsp.lstat(full);
      }
      if (stat.isDirectory()) {
        await walk(full, relPath);
      } else if (stat.isFile()) {
        const digest = await digestFile(full);
        // Read-only, so a downstream stage that opens an upstream file for writing fails instead of corrupting it.
        await fsp.chmod(full, stat.mode & ~0o222);
        await fsyncFile(full);
        outputs.push({ path: relPath, size: digest.size, sha256: digest.sha256 });
      } else {
        throw new Error(`output ${relPath} is neither a file nor a folder; a stage may only write files and folders`);
      }
    }
  };
  await walk(root, '');
  return outputs.sort((a, b) => compareCodeUnits(a.path, b.path));
}

/**
 * The store under one root:
 *   objects/<key[0..2]>/<key>/{manifest.json, manifest.sha256, log.txt, artifacts/}  committed entries
 *   tmp/<key>.<pid>.<nonce>/                                                         entries being written
 *   scratch/<key>/                                                                   resumable state of a run
 *   locks/<key>.lock                                                                 who is computing a key
 */
export class ArtifactStore {
  readonly root: string;

  /** root = <workspace>/.pausepipe, --cache-dir or $PAUSEPIPE_CACHE (see resolveCacheRoot). */
  constructor(root: string) {
    this.root = path.resolve(root);
  }

  /** <root>/objects/<key[0..2]>/<key>: the committed entry's folder. */
  entryDir(key: string): string {
    assertKey(key);
    return path.join(this.root, 'objects', key.slice(0, 2), key);
  }

  /** <root>/objects/<key[0..2]>/<key>/artifacts */
  artifactsDir(key: string): string {
    return path.join(this.entryDir(key), ARTIFACTS);
  }

  scratchDir(key: string): string {
    assertKey(key);
    return path.join(this.root, 'scratch', key);
  }

  lockPath(key: string): string {
    assertKey(key);
    return path.join(this.root, 'locks', `${key}.lock`);
  }

  /** A complete, committed entry exists (its manifest is in place, parses and names this key). */
  has(key: string): boolean {
    return this.readManifest(key) !== undefined;
  }

  /** The committed manifest, or undefined when there is none or it is damaged (verify() says how). */
  readManifest(key: string): Manifest | undefined {
    let text: string;
    try {
      text = readFileSync(path.join(this.entryDir(key), MANIFEST), 'utf8');
    } catch (error) {
      if (errorCode(error) === 'ENOENT' || errorCode(error) === 'ENOTDIR') return undefined;
      throw error;
    }
    const manifest = parseManifest(text, key);
    return typeof manifest === 'string' ? undefined : manifest;
  }

  /**
   * Acquire the per-key lock (waits while another live process holds it; takes over a lock whose owner died).
   * Returns 'cached' when the entry got committed by someone else meanwhile (lock released again).
   * Rejects with the signal's reason when `signal` aborts while waiting.
   */
  async begin(key: string, opts: BeginOptions = {}): Promise<PendingEntry | 'cached'> {
    const current = () => {
      const m = this.readManifest(key);
      return m !== undefined && !isReplaced(m, opts.replaceBefore);
    };
    if (current()) return 'cached';
    await fsp.mkdir(path.join(this.root, 'locks'), { recursive: true });
    const lock = await acquireLock(this.lockPath(key), opts);
    try {
      if (current()) {
        await lock.release();
        return 'cached';
      }
      // Holding the key's lock, any other temp folder of this key belongs to a run that died: clear it.
      await this.removeTempsOf(key);
      const entryTmp = path.join(this.root, 'tmp', `${key}.${process.pid}.${lock.owner.nonce}`);
      await fsp.mkdir(path.join(entryTmp, ARTIFACTS), { recursive: true });
      await fsp.writeFile(path.join(entryTmp, LOG), '', { flag: 'wx' });
      const scratchDir = this.scratchDir(key);
      await fsp.mkdir(scratchDir, { recursive: true });
      return new Pending(this, key, entryTmp, scratchDir, lock, opts.replaceBefore);
    } catch (error) {
      await lock.release();
      throw error;
    }
  }

  private async removeTempsOf(key: string): Promise<void> {
    const tmp = path.join(this.root, 'tmp');
    const mine = readdirOrEmpty(tmp).filter((name) => name.startsWith(`${key}.`));
    await Promise.all(mine.map((name) => fsp.rm(path.join(tmp, name), { recursive: true, force: true })));
  }

  /** Keys of all committed entries, sorted. */
  keys(): string[] {
    return this.entryFolders()
      .filter(({ shard, name }) => KEY_PATTERN.test(name) && name.startsWith(shard) && this.has(name))
      .map(({ name }) => name);
  }

  /** Remove entries not in `keep`, temp folders of dead runs, stale locks, and scratch folders no kept or live run needs. */
  async gc(keep: Set<string>): Promise<GcResult> {
    const removed: string[] = [];
    const leftovers: string[] = [];
    let freedBytes = 0;
    for (const { shard, name, dir } of this.entryFolders()) {
      if (keep.has(name)) continue;
      freedBytes += await discardEntry(this.root, dir);
      if (KEY_PATTERN.test(name)) removed.push(name);
      else leftovers.push(`objects/${shard}/${name}`);
    }
    for (const name of readdirOrEmpty(path.join(this.root, 'tmp'))) {
      if (!this.isLeftoverTemp(name)) continue;
      const dir = path.join(this.root, 'tmp', name);
      freedBytes += await diskBytes(dir);
      await fsp.rm(dir, { recursive: true, force: true });
      leftovers.push(`tmp/${name}`);
    }
    for (const key of readdirOrEmpty(path.join(this.root, 'scratch'))) {
      if (keep.has(key) || (KEY_PATTERN.test(key) && this.lockIsLive(key))) continue;
      const dir = path.join(this.root, 'scratch', key);
      freedBytes += await diskBytes(dir);
      await fsp.rm(dir, { recursive: true, force: true });
      leftovers.push(`scratch/${key}`);
    }
    leftovers.push(...(await this.removeStaleLocks()));
    return { removed, freedBytes, leftovers };
  }

  /** Re-hash every entry's outputs against its manifest; report damaged manifests and leftovers of dead runs. */
  async verify(): Promise<VerifyProblem[]> {
    const problems: VerifyProblem[] = [];
    for (const { shard, name, dir } of this.entryFolders()) {
      if (!KEY_PATTERN.test(name) || !name.startsWith(shard)) {
        problems.push({ key: '', problem: `objects/${shard}/${name} is not a cache entry folder` });
        continue;
      }
      for (const problem of await this.checkEntry(name, dir)) problems.push({ key: name, problem });
    }
    for (const name of readdirOrEmpty(path.join(this.root, 'tmp'))) {
      if (!this.isLeftoverTemp(name)) continue;
      problems.push({ key: TEMP_NAME.exec(name)?.[1] ?? '', problem: `tmp/${name} is left over from a run that died (gc removes it)` });
    }
    for (const name of readdirOrEmpty(path.join(this.root, 'locks'))) {
      if (!name.endsWith('.lock')) continue;
      const seen = readLock(path.join(this.root, 'locks', name));
      if (seen === undefined || !isStale(seen.owner)) continue;
      const who = seen.owner === undefined ? 'an unreadable owner' : `pid ${seen.owner.pid} on ${seen.owner.hostname}`;
      problems.push({ key: name.slice(0, -'.lock'.length), problem: `locks/${name} is held by ${who}, which is no longer running (the next run takes it over; gc removes it)` });
    }
    return problems;
  }

  /** Every folder under objects/<shard>/, valid or not. */
  private entryFolders(): { shard: string; name: string; dir: string }[] {
    const objects = path.join(this.root, 'objects');
    return readdirOrEmpty(objects).flatMap((shard) =>
      readdirOrEmpty(path.join(objects, shard)).map((name) => ({ shard, name, dir: path.join(objects, shard, name) })));
  }

  private lockIsLive(key: string): boolean {
    const seen = readLock(this.lockPath(key));
    return seen !== undefined && !isStale(seen.owner);
  }

  /** A temp folder is live only while the lock it was made under is held by a live process. */
  private isLeftoverTemp(name: string): boolean {
    const match = TEMP_NAME.exec(name);
    if (match === null) return true;
    const seen = readLock(this.lockPath(match[1]!));
    return !(seen?.owner?.nonce === match[3] && !isStale(seen.owner));
  }

  private async removeStaleLocks(): Promise<string[]> {
    const removed: string[] = [];
    const locks = path.join(this.root, 'locks');
    for (const name of readdirOrEmpty(locks)) {
      const file = path.join(locks, name);
      if (name.endsWith('.tmp')) {
        const stat = await fsp.stat(file).catch(() => undefined);
        if (stat !== undefined && Date.now() - stat.mtimeMs > LOCK_TEMP_MAX_AGE_MS) {
          await fsp.rm(file, { force: true });
          removed.push(`locks/${name}`);
        }
        continue;
      }
      // Lock files and takeover markers have the same shape and are broken the same careful way.
      const seen = readLock(file);
      if (seen !== undefined && isStale(seen.owner) && (await breakStaleLock(file, seen))) removed.push(`locks/${name}`);
    }
    return removed;
  }

  private async checkEntry(key: string, dir: string): Promise<string[]> {
    let text: string;
    try {
      text = await fsp.readFile(path.join(dir, MANIFEST), 'utf8');
    } catch (error) {
      if (errorCode(error) === 'ENOENT') return ['manifest.json is missing'];
      throw error;
    }
    const manifest = parseManifest(text, key);
    if (typeof manifest === 'string') return [manifest];
    const problems: string[] = [];
    const checksum = await fsp.readFile(path.join(dir, MANIFEST_CHECKSUM), 'utf8').catch(() => undefined);
    if (checksum?.trim() !== sha256(text)) problems.push(`manifest.json does not match ${MANIFEST_CHECKSUM} (edited or corrupted)`);
    const recomputed = stageKey(manifest);
    if (recomputed !== key) problems.push(`the manifest's kind, kindVersion, params, inputs and files hash to ${recomputed}, not to this key`);
    if (!isSafeRelativePath(manifest.log)) {
      problems.push(`manifest.json field log is not a relative path: ${JSON.stringify(manifest.log)}`);
    } else if (!(await fsp.stat(path.join(dir, manifest.log)).then((s) => s.isFile(), () => false))) {
      problems.push(`log file ${manifest.log} is missing`);
    }
    const listed = new Set<string>();
    for (const output of manifest.outputs) {
      listed.add(output.path);
      let digest: { sha256: string; size: number };
      try {
        digest = await digestFile(path.join(dir, ARTIFACTS, ...output.path.split('/')));
      } catch (error) {
        problems.push(errorCode(error) === 'ENOENT' ? `output ${output.path} is missing` : `output ${output.path} cannot be read: ${(error as Error).message}`);
        continue;
      }
      if (digest.size !== output.size || digest.sha256 !== output.sha256) {
        problems.push(`output ${output.path} has changed: now ${digest.size} bytes, sha256 ${digest.sha256}; ` +
          `the manifest says ${output.size} bytes, sha256 ${output.sha256}`);
      }
    }
    const present = await listFiles(path.join(dir, ARTIFACTS)).catch(() => [] as string[]);
    for (const rel of present) if (!listed.has(rel)) problems.push(`artifacts/${rel} is not listed in the manifest`);
    return problems;
  }
}

class Pending implements PendingEntry {
  readonly outDir: string;
  readonly logPath: string;
  private state: 'open' | 'committing' | 'done' = 'open';

  constructor(
    private readonly store: ArtifactStore,
    readonly key: string,
    private readonly entryTmp: string,
    readonly scratchDir: string,
    private readonly lock: HeldLock,
    private readonly replaceBefore?: Date,
  ) {
    this.outDir = path.join(entryTmp, ARTIFACTS);
    this.logPath = path.join(entryTmp, LOG);
  }

  async commit(m: ManifestFields): Promise<Manifest> {
    if (this.state !== 'open') throw new Error(`cache entry ${this.key} was already ${this.state === 'done' ? 'committed or aborted' : 'being committed'}`);
    this.state = 'committing';
    let manifest: Manifest;
    try {
      manifest = await this.seal(m);
      manifest = await this.moveIntoPlace(manifest);
    } catch (error) {
      // Nothing is lost: the temp entry and the lock stay, so the caller may retry or abort.
      this.state = 'open';
      throw error;
    }
    this.state = 'done';
    await fsp.rm(this.scratchDir, { recursive: true, force: true });
    await this.lock.release();
    return manifest;
  }

  async abort(): Promise<void> {
    if (this.state === 'done') return;
    if (this.state === 'committing') throw new Error(`cache entry ${this.key} is being committed and cannot be aborted`);
    this.state = 'done';
    await fsp.rm(this.entryTmp, { recursive: true, force: true });
    await this.lock.release();
  }

  /** Hash and flush outputs, then write the manifest; returns it as it will read back from disk. */
  private async seal(m: ManifestFields): Promise<Manifest> {
    const folders: string[] = [];
    const outputs = await sealOutputs(this.outDir, folders);
    await fsyncFile(this.logPath);
    const manifest: Manifest = {
      formatVersion: 1,
      key: this.key,
      kind: m.kind,
      kindVersion: m.kindVersion,
      stage: m.stage,
      params: m.params,
      inputs: m.inputs,
      files: m.files,
      variant: m.variant,
      outputs,
      metrics: m.metrics,
      timings: m.timings,
      ...(m.backend === undefined ? {} : { backend: m.backend }),
      ...(m.overrides === undefined ? {} : { overrides: m.overrides }),
      versions: m.versions,
      log: LOG,
    };
    // JSON turns NaN into null; return what readManifest will see, and refuse to commit what it would reject.
    const text = `${JSON.stringify(manifest, null, 2)}\n`;
    const parsed = parseManifest(text, this.key);
    if (typeof parsed === 'string') throw new Error(`cannot commit ${this.key}: ${parsed}`);
    await writeNewFileDurable(path.join(this.entryTmp, MANIFEST), text);
    await writeNewFileDurable(path.join(this.entryTmp, MANIFEST_CHECKSUM), `${sha256(text)}\n`);
    for (const folder of folders) await fsyncDir(folder);
    await fsyncDir(this.entryTmp);
    return parsed;
  }

  /** The commit point: one rename of the whole entry folder into objects/. */
  private async moveIntoPlace(manifest: Manifest): Promise<Manifest> {
    const final = this.store.entryDir(this.key);
    const shardDir = path.dirname(final);
    await fsp.mkdir(shardDir, { recursive: true });
    try {
      await fsp.rename(this.entryTmp, final);
    } catch (error) {
      if (errorCode(error) !== 'ENOTEMPTY' && errorCode(error) !== 'EEXIST') throw error;
      const existing = this.store.readManifest(this.key);
      if (existing !== undefined && !isReplaced(existing, this.replaceBefore)) {
        // Someone committed this key although we held its lock (it judged us dead); theirs is as good as ours.
        await fsp.rm(this.entryTmp, { recursive: true, force: true });
        return existing;
      }
      // A damaged entry (verify reports those), or one --force recomputed, is replaced; the lock guarantees nobody
      // else is doing the same. Between the two renames the key has no entry: a crash there costs a re-run, not a wrong result.
      await discardEntry(this.store.root, final);
      await fsp.rename(this.entryTmp, final);
    }
    await fsyncDir(shardDir);
    await fsyncDir(path.dirname(shardDir));
    return manifest;
  }
}

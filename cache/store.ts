// The content-addressed artifact store: atomic commits of stage results, per-key locks, integrity checks, gc and verify.
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import * as fsp from 'node:fs/promises';
import { hostname as osHostname } from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { canonicalJson, sha256, stageKey } from '../runtime/hash.ts';
import type { JsonValue } from '../runtime/json.ts';
import type { MissingInput } from '../stages/kind.ts';
import { diskBytes, errorCode, fsyncDir, fsyncFile, naming, randomHex, replaceFileDurable, writeNewFileDurable } from './durable.ts';
import { compareCodeUnits, digestFile, digestHandle, FileHasher, FileMissingError } from './file-hash.ts';
import { forEachLimited } from './pool.ts';
import { acquireLock, breakStaleLock, describeOwner, isAbandoned, readLock, type HeldLock, type LockOwner } from './lock.ts';

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
  /** A plugin kind's source files → content hash (part of the key); absent for built-in kinds. */
  code?: Record<string, string>;
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
  /**
   * Upstream key → outputsDigest() of the bytes this entry was computed from (checked against the upstream's
   * manifest before and after the stage ran). An upstream later recomputed with other bytes no longer matches.
   */
  inputContents?: Record<string, string>;
  /**
   * A partial result's inputs that did not finish: input name → their keys (`inputs` lists every key, theirs too).
   * Part of the key (runtime/keys.ts `partialKey`), so the entry is never taken for the full result. Absent for a full one.
   */
  missing?: Record<string, string[]>;
  /** Beside `missing`: those inputs' stages, how each ended in the run that made the entry, and why. */
  missingInputs?: Record<string, MissingInput[]>;
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
  /** Keys of the committed entries removed (with dryRun: that would be removed). */
  removed: string[];
  freedBytes: number;
  /** Root-relative paths of other things removed: dead runs' temp folders, stale locks, unneeded scratch folders. */
  leftovers: string[];
  /** Root-relative paths of things the cache did not write: reported, never deleted. */
  foreign: string[];
  /** Entries in the cache that `keep` names (a kept key with no entry is not one). */
  kept: number;
  /** Entries kept only because a live run (another pipeline's, perhaps) is using them. */
  inUse: number;
  /** Stopped by its signal part way: what is listed was removed, the rest stays for the next gc. */
  interrupted: boolean;
  /** Entries of stat-cache.json whose files are gone (removed entries' outputs, deleted workspace files), dropped. */
  statCachePruned: number;
}

export interface VerifyProblem {
  /** The entry concerned ('' when a leftover names none). */
  key: string;
  problem: string;
  /**
   * damage: an entry is not what its manifest says, or was computed from bytes no entry holds any more (repairable
   * by removing it). leftover: what a killed run left behind, which gc clears. foreign: a file the cache did not write.
   */
  severity: 'damage' | 'leftover' | 'foreign';
}

/** How much of a verify is done, or is to do: the files of the manifests and their bytes. */
export interface VerifyCount {
  files: number;
  bytes: number;
}

/** What the cache holds under one key. */
export type EntryState =
  | { state: 'absent' }
  | { state: 'intact'; manifest: Manifest }
  | { state: 'damaged'; problem: string };

/** Hashes a file by content; the FileHasher's stat cache makes it a stat for a file that did not change. */
export interface FileDigester {
  hash(absPath: string): Promise<string>;
  /** Learn the hash of a file just committed, so its first check is a stat rather than a read. */
  remember?(absPath: string, hash: string): Promise<void>;
}

/** The folder given as a cache holds things the cache did not write: gc, verify and run refuse to touch it. */
export class NotACacheError extends Error {
  constructor(readonly root: string, why: string) {
    super(`${root} is not a pausepipe cache: ${why}`);
    this.name = 'NotACacheError';
  }
}

const ARTIFACTS = 'artifacts';
const MANIFEST = 'manifest.json';
/** SHA-256 of manifest.json's exact bytes, so verify notices an edited or bit-rotted metric. */
const MANIFEST_CHECKSUM = 'manifest.sha256';
const LOG = 'log.txt';
/** The FileHasher's stat cache, shared by the runs of this cache (runtime/session.ts). */
export const STAT_CACHE = 'stat-cache.json';
const KEY_PATTERN = /^[0-9a-f]{8,128}$/;

/** Whether `text` has the shape of a cache key (lowercase hex, as stageKey() makes them). */
export function isCacheKey(text: string): boolean {
  return KEY_PATTERN.test(text);
}
/** Temp entry folders are named <key>.<pid>.<lock nonce>, which ties them to the lock of the run that made them. */
const TEMP_NAME = /^([0-9a-f]{8,128})\.(\d+)\.([0-9a-f]+)$/;
/** Half-published lock files older than this belong to a process that died between write and link. */
const LOCK_TEMP_MAX_AGE_MS = 10 * 60 * 1000;
/** Written when a cache is created; gc, verify and run refuse a folder without it (a --cache-dir typo must not empty a repository). */
export const CACHE_MARKER = 'pausepipe-cache.json';
/** Everything the cache writes at its root. A folder holding only these is a cache made before the marker existed. */
const ROOT_NAMES = new Set([CACHE_MARKER, 'objects', 'tmp', 'scratch', 'locks', 'state', 'uses', STAT_CACHE, 'gc-generation']);
/** Temp files of replaceFileDurable next to a root file (stat-cache.json.<pid>.<hex>.tmp). */
const ROOT_TEMP = /^(stat-cache\.json|gc-generation|pausepipe-cache\.json)\.\d+\.[0-9a-f]+\.tmp$/;
/** Folders gc moves an entry into before deleting it. */
const TRASH_NAME = /^trash\.(\d+)\.[0-9a-f]+$/;
/** What a lock folder may hold: key locks, takeover markers, gc's lock, and their half-published temp files. */
const LOCK_NAME = /^(?:[0-9a-f]{8,128}|gc)\.lock(?:\.break-[0-9a-f]{16})?(?:\.\d+\.[0-9a-f]+\.tmp)?$/;
/** A run's registration of the keys it uses (uses/<nonce>.lock), and its temp files. */
const USE_NAME = /^[0-9a-f]+\.lock(?:\.\d+\.[0-9a-f]+\.tmp)?$/;
/** How often a run waiting for gc looks again. */
const GC_POLL_MS = 200;

export interface BeginOptions {
  signal?: AbortSignal;
  onWait?: (owner: LockOwner) => void;
  /**
   * Recompute even when an entry exists, if it was committed before this moment (--force: the run's start). The new
   * entry replaces it at commit; one committed since (by this run under another name, or by another run) is used.
   */
  replaceBefore?: Date;
  /** Checks an existing entry's files against its manifest (the stat cache): a damaged one is computed anew. */
  digester?: FileDigester;
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
  if (value.inputContents !== undefined && !(isRecord(value.inputContents) && Object.values(value.inputContents).every((d) => typeof d === 'string'))) {
    return 'manifest.json field inputContents is not an object of strings';
  }
  if (value.overrides !== undefined && !isRecord(value.overrides)) return 'manifest.json field overrides is not an object';
  for (const field of ['missing', 'missingInputs']) {
    const v = value[field];
    if (v !== undefined && !(isRecord(v) && Object.values(v).every(Array.isArray))) return `manifest.json field ${field} is not an object of lists`;
  }
  if (value.code !== undefined && !(isRecord(value.code) && Object.values(value.code).every((d) => typeof d === 'string'))) {
    return 'manifest.json field code is not an object of strings';
  }
  if (!Array.isArray(value.outputs) || !value.outputs.every(isOutputRecord)) {
    return 'manifest.json field outputs is not a list of {path, size, sha256} with relative paths';
  }
  return value as unknown as Manifest;
}

/**
 * One hash over every file of an entry (path, size, content hash): what a downstream manifest records of each input
 * in inputContents, so that an upstream recomputed with other bytes is told apart from the one it was computed from.
 */
export function outputsDigest(outputs: readonly OutputRecord[]): string {
  const listed = [...outputs].sort((a, b) => compareCodeUnits(a.path, b.path)).map((o) => [o.path, o.size, o.sha256]);
  return sha256(`pausepipe-outputs-v1\n${canonicalJson(listed)}`);
}

/** The first way the files under `artifactsDir` differ from `outputs`, hashed through `digester`; undefined when none. */
async function outputsProblem(artifactsDir: string, outputs: readonly OutputRecord[], digester: FileDigester): Promise<string | undefined> {
  for (const output of outputs) {
    let hash: string;
    try {
      hash = await digester.hash(path.join(artifactsDir, ...output.path.split('/')));
    } catch (error) {
      if (error instanceof FileMissingError) return `output ${output.path} is missing`;
      return `output ${output.path} cannot be read: ${(error as Error).message}`;
    }
    if (hash !== output.sha256) return `output ${output.path} has changed since it was committed`;
  }
  return undefined;
}

function readdirOrEmpty(dir: string): string[] {
  try {
    return readdirSync(dir).sort(compareCodeUnits);
  } catch (error) {
    if (errorCode(error) === 'ENOENT') return [];
    throw error;
  }
}

/**
 * Relative paths (with `/`) of everything under `root` that is not a folder. Appended to one list: spreading a
 * folder's list into its parent's (`push(...list)`) passes every name as an argument, and overflows the stack
 * somewhere past 100,000 files.
 */
async function listFiles(root: string, rel = '', found: string[] = []): Promise<string[]> {
  for (const entry of await fsp.readdir(path.join(root, rel), { withFileTypes: true })) {
    const relPath = rel === '' ? entry.name : `${rel}/${entry.name}`;
    if (entry.isDirectory()) await listFiles(root, relPath, found);
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
 * Renames an entry folder into objects/<shard>/, making the shard first. A gc removes shards it emptied: one may go
 * between the mkdir and the rename, and is made again.
 */
async function renameIntoShard(from: string, to: string): Promise<void> {
  for (let attempt = 1; ; attempt++) {
    await fsp.mkdir(path.dirname(to), { recursive: true });
    try {
      return await fsp.rename(from, to);
    } catch (error) {
      if (errorCode(error) !== 'ENOENT' || attempt === 3 || !existsSync(from)) throw error;
    }
  }
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

/**
 * Hash and flush every file under `root`, making each read-only; collects the folders visited so they can be flushed
 * too. The files are found first, then sealed FILES_AT_ONCE at a time, each through one open handle (read, fchmod,
 * fsync): an entry of 50,000 small files spent most of its commit waiting on one fsync after another.
 */
async function sealOutputs(root: string, folders: string[]): Promise<OutputRecord[]> {
  const files: { full: string; relPath: string }[] = [];
  const walk = async (dir: string, rel: string): Promise<void> => {
    folders.push(dir);
    for (const found of await fsp.readdir(dir, { withFileTypes: true })) {
      const full = path.join(dir, found.name);
      const relPath = rel === '' ? found.name : `${rel}/${found.name}`;
      let entry: { isDirectory(): boolean; isFile(): boolean } = found;
      if (found.isSymbolicLink()) {
        await materializeLink(full, relPath);
        entry = await fsp.lstat(full);
      }
      if (entry.isDirectory()) await walk(full, relPath);
      else if (entry.isFile()) files.push({ full, relPath });
      else throw new Error(`output ${relPath} is neither a file nor a folder; a stage may only write files and folders`);
    }
  };
  await walk(root, '');
  const outputs = new Array<OutputRecord>(files.length);
  await forEachLimited(files, async ({ full, relPath }, i) => {
    outputs[i] = { path: relPath, ...(await sealFile(full)) };
  });
  return outputs.sort((a, b) => compareCodeUnits(a.path, b.path));
}

/** Hash one output, make it read-only and flush it, through one open handle. */
async function sealFile(file: string): Promise<{ size: number; sha256: string }> {
  const handle = await fsp.open(file, 'r');
  try {
    const stat = await handle.stat();
    const digest = await digestHandle(handle, stat.size);
    // Read-only, so a downstream stage that opens an upstream file for writing fails instead of corrupting it.
    await handle.chmod(stat.mode & 0o7777 & ~0o222);
    await handle.sync();
    return { size: digest.size, sha256: digest.sha256 };
  } catch (error) {
    throw naming(error, file);
  } finally {
    await handle.close();
  }
}

/**
 * The mode of a copy of a cached file given to the user (a restored out, an export): what a new file gets, 0666 less
 * the umask, executable where the cached file is. The cache keeps its own files read-only; the copies are theirs to edit.
 */
export function userFileMode(cachedMode: number): number {
  // Only read here (setting it is what is unsafe in threads); no other call tells what a new file would get.
  return (0o666 | (cachedMode & 0o111)) & ~process.umask();
}

/** Copy a cached file, or a folder of them, to `target` with the modes userFileMode gives; folders as mkdir makes them. */
export async function copyOutOfCache(source: string, target: string): Promise<void> {
  const stat = await fsp.stat(source);
  if (stat.isDirectory()) {
    await fsp.mkdir(target, { recursive: true });
    for (const name of await fsp.readdir(source)) await copyOutOfCache(path.join(source, name), path.join(target, name));
    return;
  }
  await fsp.copyFile(source, target, fsp.constants.COPYFILE_EXCL);
  await fsp.chmod(target, userFileMode(stat.mode));
}

/**
 * The store under one root:
 *   pausepipe-cache.json                                                             the marker: this folder is a cache
 *   objects/<key[0..2]>/<key>/{manifest.json, manifest.sha256, log.txt, artifacts/}  committed entries
 *   tmp/<key>.<pid>.<nonce>/                                                         entries being written
 *   scratch/<key>/                                                                   resumable state of a run
 *   locks/<key>.lock, locks/gc.lock                                                  who is computing a key, who runs gc
 *   uses/<nonce>.lock                                                                the keys each live run uses (gc keeps them)
 */
export class ArtifactStore {
  readonly root: string;
  private initialized = false;

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

  /**
   * The cache and key a scratch folder (`<root>/scratch/<key>`) belongs to, for a process that is given only the folder
   * (a Slurm job); undefined when the folder is not in a cache (no marker at the root above it).
   */
  static ofScratchDir(dir: string): { store: ArtifactStore; key: string } | undefined {
    const key = path.basename(dir);
    const root = path.dirname(path.dirname(dir));
    if (!KEY_PATTERN.test(key) || path.basename(path.dirname(dir)) !== 'scratch' || !existsSync(path.join(root, CACHE_MARKER))) return undefined;
    return { store: new ArtifactStore(root), key };
  }

  lockPath(key: string): string {
    assertKey(key);
    return path.join(this.root, 'locks', `${key}.lock`);
  }

  /**
   * 'cache': the root has the marker, or holds only what the cache writes (a cache made before the marker).
   * 'missing': nothing there yet. 'foreign': a folder (or file) with other contents.
   */
  kindOfRoot(): 'cache' | 'missing' | 'foreign' {
    let names: string[];
    try {
      names = readdirSync(this.root);
    } catch (error) {
      if (errorCode(error) === 'ENOENT') return 'missing';
      if (errorCode(error) === 'ENOTDIR') return 'foreign';
      throw error;
    }
    if (names.includes(CACHE_MARKER)) return 'cache';
    return names.every((n) => ROOT_NAMES.has(n) || ROOT_TEMP.test(n)) && names.length > 0 ? 'cache' : names.length === 0 ? 'missing' : 'foreign';
  }

  /** Throws NotACacheError unless the root is a cache (for `gc` and `verify`, which must never touch anything else). */
  assertCache(): void {
    const kind = this.kindOfRoot();
    if (kind === 'missing') throw new NotACacheError(this.root, 'it does not exist or is empty (nothing has run with this cache yet)');
    if (kind === 'foreign') throw new NotACacheError(this.root, `it holds files the cache did not write and no ${CACHE_MARKER}`);
  }

  /** Create the cache (or adopt one made before the marker existed); refuses a folder that holds anything else. */
  async init(): Promise<void> {
    if (this.initialized) return;
    if (this.kindOfRoot() === 'foreign') {
      throw new NotACacheError(this.root, `it holds files the cache did not write and no ${CACHE_MARKER}; choose a new or empty folder`);
    }
    if (existsSync(path.join(this.root, CACHE_MARKER))) {
      this.initialized = true;
      return;
    }
    await fsp.mkdir(this.root, { recursive: true });
    const marker = JSON.stringify({ pausepipeCache: 1, note: 'a pausepipe artifact cache: `pausepipe gc` and `pausepipe verify` maintain it' });
    await replaceFileDurable(path.join(this.root, CACHE_MARKER), `${marker}\n`);
    this.initialized = true;
  }

  /** A complete, committed entry exists (its manifest is in place, matches its checksum, parses and names this key). */
  has(key: string): boolean {
    return this.readManifest(key) !== undefined;
  }

  /** The committed manifest, or undefined when there is none or it is damaged (verify() says how). */
  readManifest(key: string): Manifest | undefined {
    const read = this.readManifestText(key);
    return typeof read === 'object' ? read.manifest : undefined;
  }

  /** The manifest with its checksum checked; undefined when absent, a sentence when damaged. */
  private readManifestText(key: string): { manifest: Manifest; text: string } | string | undefined {
    const dir = this.entryDir(key);
    let text: string;
    try {
      text = readFileSync(path.join(dir, MANIFEST), 'utf8');
    } catch (error) {
      if (errorCode(error) === 'ENOENT' || errorCode(error) === 'ENOTDIR') {
        return existsSync(dir) ? 'manifest.json is missing' : undefined;
      }
      return `manifest.json cannot be read: ${(naming(error, path.join(dir, MANIFEST)) as Error).message}`;
    }
    const manifest = parseManifest(text, key);
    if (typeof manifest === 'string') return manifest;
    let checksum: string | undefined;
    try {
      checksum = readFileSync(path.join(dir, MANIFEST_CHECKSUM), 'utf8');
    } catch {
      checksum = undefined;
    }
    // An edited metric or a bit flip in the manifest must not be served as a result.
    if (checksum?.trim() !== sha256(text)) return `manifest.json does not match ${MANIFEST_CHECKSUM} (edited or corrupted)`;
    return { manifest, text };
  }

  /**
   * What is under `key`, checked before it is used: the manifest against its checksum, every output against the
   * manifest through `digester` (a stat per unchanged file with the stat cache), and the bytes it was computed from
   * against its inputs' manifests. `manifests` memoizes upstream manifests across calls of one planning pass.
   */
  async inspect(key: string, digester: FileDigester, manifests = new Map<string, Manifest | undefined>()): Promise<EntryState> {
    const read = this.readManifestText(key);
    if (read === undefined) return { state: 'absent' };
    if (typeof read === 'string') return { state: 'damaged', problem: read };
    const { manifest } = read;
    const outputs = await outputsProblem(this.artifactsDir(key), manifest.outputs, digester);
    if (outputs !== undefined) return { state: 'damaged', problem: outputs };
    for (const [upKey, digest] of Object.entries(manifest.inputContents ?? {})) {
      if (!KEY_PATTERN.test(upKey)) return { state: 'damaged', problem: `inputContents names ${JSON.stringify(upKey)}, which is no cache key` };
      if (!manifests.has(upKey)) manifests.set(upKey, this.readManifest(upKey));
      const up = manifests.get(upKey);
      if (up !== undefined && outputsDigest(up.outputs) !== digest) {
        return { state: 'damaged', problem: `computed from other bytes of its input ${up.stage} (${upKey.slice(0, 12)}) than that entry holds now` };
      }
    }
    return { state: 'intact', manifest };
  }

  /**
   * Check the entries a stage is about to read (or has just read) and return what their manifests say they hold, as
   * recorded in the stage's inputContents. Throws, naming the entry and the file, when one is not what it says.
   */
  async checkInputs(keys: Iterable<string>, digester: FileDigester): Promise<Record<string, string>> {
    const contents: Record<string, string> = {};
    for (const key of keys) {
      if (key in contents) continue;
      const read = this.readManifestText(key);
      const problem = read === undefined ? 'it is not in the cache'
        : typeof read === 'string' ? read
          : await outputsProblem(this.artifactsDir(key), read.manifest.outputs, digester);
      if (problem !== undefined || typeof read !== 'object') {
        throw new Error(`input entry ${key.slice(0, 12)} is damaged: ${problem}; run \`pausepipe verify --repair\`, then run again to recompute it`);
      }
      contents[key] = outputsDigest(read.manifest.outputs);
    }
    return contents;
  }

  /**
   * Acquire the per-key lock (waits while another live process holds it; takes over a lock whose owner died).
   * Returns 'cached' when an intact entry is in place (committed by someone else meanwhile: the lock is released again).
   * With a digester, an entry whose files no longer match its manifest is removed under the lock and computed anew.
   * Rejects with the signal's reason when `signal` aborts while waiting.
   */
  async begin(key: string, opts: BeginOptions = {}): Promise<PendingEntry | 'cached'> {
    /** 'cached': an intact entry to use; 'forced': an intact one --force recomputes; 'none': absent or damaged. */
    const judge = async (): Promise<'cached' | 'forced' | 'none'> => {
      const entry = opts.digester ? await this.inspect(key, opts.digester) : undefined;
      const manifest = entry ? (entry.state === 'intact' ? entry.manifest : undefined) : this.readManifest(key);
      if (manifest === undefined) return 'none';
      return isReplaced(manifest, opts.replaceBefore) ? 'forced' : 'cached';
    };
    if ((await judge()) === 'cached') return 'cached';
    await this.init();
    await fsp.mkdir(path.join(this.root, 'locks'), { recursive: true });
    const lock = await acquireLock(this.lockPath(key), opts);
    try {
      const verdict = await judge();
      if (verdict === 'cached') {
        await lock.release();
        return 'cached';
      }
      // Holding the key's lock: a damaged entry is ours to replace (an entry --force recomputes stays until the commit
      // replaces it, so a failed forced run loses nothing), and any other temp folder of this key belongs to a run that died.
      if (verdict === 'none' && existsSync(this.entryDir(key))) await discardEntry(this.root, this.entryDir(key));
      await this.removeTempsOf(key);
      const entryTmp = path.join(this.root, 'tmp', `${key}.${process.pid}.${lock.owner.nonce}`);
      await fsp.mkdir(path.join(entryTmp, ARTIFACTS), { recursive: true });
      await fsp.writeFile(path.join(entryTmp, LOG), '', { flag: 'wx' });
      const scratchDir = this.scratchDir(key);
      await fsp.mkdir(scratchDir, { recursive: true });
      return new Pending(this, key, entryTmp, scratchDir, lock, opts.digester, opts.replaceBefore);
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
      .filter(({ shard, name }) => isEntryName(shard, name) && this.has(name))
      .map(({ name }) => name);
  }

  /**
   * Register, for the whole of a run, the keys it uses: gc keeps them even when the pipeline it was given does not
   * name them. The registration is a lease like a lock, renewed while the run lives.
   */
  async registerUse(keys: Iterable<string>): Promise<HeldLock> {
    await this.init();
    await fsp.mkdir(path.join(this.root, 'uses'), { recursive: true });
    return acquireLock(path.join(this.root, 'uses', `${randomHex(8)}.lock`), { data: { keys: [...new Set(keys)].sort() } });
  }

  /** Changes whenever a gc starts deleting and when it ends; a run that planned before a change must plan again. */
  gcGeneration(): string {
    try {
      return readFileSync(path.join(this.root, 'gc-generation'), 'utf8');
    } catch {
      return '';
    }
  }

  /** Wait while a live gc holds the cache (a run registers its keys first, so any gc starting later keeps them). */
  async waitForGc(opts: { signal?: AbortSignal; onWait?: (owner: LockOwner) => void } = {}): Promise<void> {
    const gcLock = path.join(this.root, 'locks', 'gc.lock');
    let told = false;
    for (;;) {
      const seen = readLock(gcLock);
      if (seen === undefined || isAbandoned(seen.owner)) return;
      if (!told && seen.owner !== undefined) opts.onWait?.(seen.owner);
      told = true;
      await sleep(GC_POLL_MS, undefined, { signal: opts.signal });
    }
  }

  /** The keys live runs registered (registerUse). */
  private keysInUse(): Set<string> {
    return new Set([...this.liveUses()].flatMap((use) => use.keys));
  }

  /** Each live run's registration (registerUse): its file, its owner and the keys it uses. */
  private *liveUses(): Generator<{ file: string; owner: LockOwner | undefined; keys: string[] }> {
    for (const name of readdirOrEmpty(path.join(this.root, 'uses'))) {
      if (!name.endsWith('.lock')) continue;
      const file = path.join(this.root, 'uses', name);
      const seen = readLock(file);
      if (seen === undefined || isAbandoned(seen.owner)) continue;
      const listed = (JSON.parse(seen.raw) as { keys?: unknown }).keys;
      yield { file, owner: seen.owner, keys: Array.isArray(listed) ? listed.filter((k): k is string => typeof k === 'string') : [] };
    }
  }

  /** The live runs other than the one registered as `own` that use any of `keys`: the keys each one uses, by owner. */
  otherUses(keys: Iterable<string>, own: HeldLock): { owner: LockOwner | undefined; keys: string[] }[] {
    const wanted = new Set(keys);
    const found = [];
    for (const use of this.liveUses()) {
      if (use.file === own.path) continue;
      const shared = use.keys.filter((k) => wanted.has(k));
      if (shared.length > 0) found.push({ owner: use.owner, keys: shared });
    }
    return found;
  }

  /**
   * Remove entries not in `keep` (nor used by a live run), temp folders of dead runs, stale locks, and scratch
   * folders no kept or live run needs. Only what the cache writes is ever removed; anything else is reported in
   * `foreign`. With dryRun, nothing is removed and the result says what would be. Throws NotACacheError when the
   * root is not a cache.
   */
  async gc(keep: Set<string>, opts: { dryRun?: boolean; signal?: AbortSignal; onWait?: (owner: LockOwner) => void } = {}): Promise<GcResult> {
    this.assertCache();
    const dryRun = opts.dryRun === true;
    let lock: HeldLock | undefined;
    if (!dryRun) {
      await fsp.mkdir(path.join(this.root, 'locks'), { recursive: true });
      lock = await acquireLock(path.join(this.root, 'locks', 'gc.lock'), opts);
    }
    try {
      // Published before the registrations are read: a run that registered too late to be seen sees a new generation.
      if (!dryRun) await replaceFileDurable(path.join(this.root, 'gc-generation'), randomHex(8));
      const inUse = this.keysInUse();
      const result: GcResult = { removed: [], freedBytes: 0, leftovers: [], foreign: [], kept: 0, inUse: 0, interrupted: false, statCachePruned: 0 };
      // Stopped (Ctrl-C) between two removals: the lock is released and the generation published as at any end.
      const stopped = () => (result.interrupted ||= opts.signal?.aborted === true);
      const drop = async (dir: string, rel: string, asEntry: boolean) => {
        result.freedBytes += dryRun ? await diskBytes(dir) : asEntry ? await discardEntry(this.root, dir) : await removeCounting(dir);
        if (!asEntry) result.leftovers.push(rel);
      };
      for (const { shard, name, dir } of this.entryFolders()) {
        if (!isEntryName(shard, name)) {
          result.foreign.push(`objects/${shard}/${name}`);
          continue;
        }
        if (keep.has(name)) {
          result.kept++;
          continue;
        }
        if (inUse.has(name)) {
          result.inUse++;
          continue;
        }
        if (stopped()) continue;
        await drop(dir, `objects/${shard}/${name}`, true);
        result.removed.push(name);
      }
      for (const name of readdirOrEmpty(path.join(this.root, 'tmp'))) {
        if (!TEMP_NAME.test(name) && !TRASH_NAME.test(name)) result.foreign.push(`tmp/${name}`);
        else if (this.isLeftoverTemp(name) && !stopped()) await drop(path.join(this.root, 'tmp', name), `tmp/${name}`, false);
      }
      // Shard folders the removals emptied go too (a commit that made one just before makes it again: renameIntoShard).
      if (!dryRun) for (const shard of readdirOrEmpty(path.join(this.root, 'objects'))) await fsp.rmdir(path.join(this.root, 'objects', shard)).catch(() => undefined);
      for (const key of readdirOrEmpty(path.join(this.root, 'scratch'))) {
        if (!KEY_PATTERN.test(key)) result.foreign.push(`scratch/${key}`);
        else if (!this.scratchIsNeeded(key, keep, inUse) && !stopped()) await drop(path.join(this.root, 'scratch', key), `scratch/${key}`, false);
      }
      for (const folder of ['locks', 'uses'] as const) {
        const pattern = folder === 'locks' ? LOCK_NAME : USE_NAME;
        for (const name of readdirOrEmpty(path.join(this.root, folder))) {
          if (!pattern.test(name)) result.foreign.push(`${folder}/${name}`);
          else if (await this.removeIfStale(path.join(this.root, folder, name), dryRun)) result.leftovers.push(`${folder}/${name}`);
        }
      }
      for (const name of readdirOrEmpty(this.root)) if (!ROOT_NAMES.has(name) && !ROOT_TEMP.test(name)) result.foreign.push(name);
      // Last, once the entries are gone: their files' stamps would otherwise stay in the stat cache for good. A dry run
      // counts the entries of files already gone (those of the entries it would remove are still there).
      if (!stopped()) result.statCachePruned = await new FileHasher(path.join(this.root, STAT_CACHE)).pruneMissing(dryRun);
      result.removed.sort();
      return result;
    } finally {
      // Published again at the end: a run that planned while entries were being deleted waited for this gc, and
      // must plan again against what is left.
      if (!dryRun) await replaceFileDurable(path.join(this.root, 'gc-generation'), randomHex(8)).catch(() => undefined);
      await lock?.release();
    }
  }

  /**
   * Re-read every byte of every entry against its manifest, check that each entry's inputs still hold the bytes it
   * was computed from, and list what dead runs left behind and what the cache did not write. Throws NotACacheError
   * when the root is not a cache.
   */
  async verify(opts: { onProgress?: (done: VerifyCount, total: VerifyCount) => void } = {}): Promise<VerifyProblem[]> {
    this.assertCache();
    const problems: VerifyProblem[] = [];
    const manifests = new Map<string, Manifest | undefined>();
    const folders = this.entryFolders();
    // What the manifests list, for the progress of a long check; an unreadable manifest adds nothing.
    const total: VerifyCount = { files: 0, bytes: 0 };
    const done: VerifyCount = { files: 0, bytes: 0 };
    if (opts.onProgress) {
      for (const { shard, name } of folders) {
        for (const o of (isEntryName(shard, name) ? this.readManifest(name)?.outputs : undefined) ?? []) {
          total.files++;
          total.bytes += o.size;
        }
      }
    }
    const checked = (bytes: number) => {
      done.files++;
      done.bytes += bytes;
      opts.onProgress?.(done, total);
    };
    for (const { shard, name, dir } of folders) {
      if (!isEntryName(shard, name)) {
        problems.push({ key: '', problem: `objects/${shard}/${name} is not a cache entry folder (not written by pausepipe; left alone)`, severity: 'foreign' });
        continue;
      }
      for (const problem of await this.checkEntry(name, dir, manifests, checked)) problems.push({ key: name, problem, severity: 'damage' });
    }
    for (const name of readdirOrEmpty(path.join(this.root, 'tmp'))) {
      if (!TEMP_NAME.test(name) && !TRASH_NAME.test(name)) {
        problems.push({ key: '', problem: `tmp/${name} was not written by pausepipe (left alone)`, severity: 'foreign' });
      } else if (this.isLeftoverTemp(name)) {
        problems.push({ key: TEMP_NAME.exec(name)?.[1] ?? '', problem: `tmp/${name} is left over from a run that died (gc removes it)`, severity: 'leftover' });
      }
    }
    for (const folder of ['locks', 'uses'] as const) {
      for (const name of readdirOrEmpty(path.join(this.root, folder))) {
        if (!name.endsWith('.lock')) continue;
        const seen = readLock(path.join(this.root, folder, name));
        if (seen === undefined || !isAbandoned(seen.owner)) continue;
        const who = seen.owner === undefined ? 'an unreadable owner' : describeOwner(seen.owner, Date.now());
        const key = folder === 'locks' && KEY_PATTERN.test(name.slice(0, -'.lock'.length)) ? name.slice(0, -'.lock'.length) : '';
        problems.push({ key, problem: `${folder}/${name} is held by ${who}, which is no longer running (gc removes it)`, severity: 'leftover' });
      }
    }
    return problems;
  }

  /**
   * Remove the damaged entries `verify()` found, each checked again under its key's lock (a run may have computed it
   * again since); the next run computes them again. Returns the keys removed.
   */
  async repair(problems: readonly VerifyProblem[]): Promise<string[]> {
    const damaged = [...new Set(problems.filter((p) => p.severity === 'damage' && p.key !== '').map((p) => p.key))].sort();
    const removed: string[] = [];
    for (const key of damaged) {
      const lock = await acquireLock(this.lockPath(key));
      try {
        const dir = this.entryDir(key);
        if (!existsSync(dir) || (await this.checkEntry(key, dir, new Map())).length === 0) continue;
        await discardEntry(this.root, dir);
        removed.push(key);
      } finally {
        await lock.release();
      }
    }
    return removed;
  }

  /** Every folder under objects/<shard>/, valid or not. */
  private entryFolders(): { shard: string; name: string; dir: string }[] {
    const objects = path.join(this.root, 'objects');
    return readdirOrEmpty(objects).flatMap((shard) =>
      readdirOrEmpty(path.join(objects, shard)).map((name) => ({ shard, name, dir: path.join(objects, shard, name) })));
  }

  /** Who holds the key's lock now, when a live process does (a run computing it, here or on another host). */
  liveHolder(key: string): LockOwner | undefined {
    const owner = readLock(this.lockPath(key))?.owner;
    return owner === undefined || isAbandoned(owner) ? undefined : owner;
  }

  /** The log a live run is writing for `key` now (in the temp folder made under the key's lock), if one is. */
  runningLog(key: string): string | undefined {
    const owner = this.liveHolder(key);
    if (owner === undefined) return undefined;
    const name = readdirOrEmpty(path.join(this.root, 'tmp')).find((n) => {
      const m = TEMP_NAME.exec(n);
      return m?.[1] === key && m[3] === owner.nonce;
    });
    return name === undefined ? undefined : path.join(this.root, 'tmp', name, LOG);
  }

  /**
   * A key's scratch folder is needed while a live run holds or uses the key, and, for a kept key, until its entry is
   * committed: it holds the checkpoints a resume starts from. Beside a committed entry it is what a killed --force run
   * left, unless it holds a Slurm job's record: a job still queued is adopted through it by the next run.
   */
  private scratchIsNeeded(key: string, keep: Set<string>, inUse: Set<string>): boolean {
    if (inUse.has(key) || this.liveHolder(key) !== undefined) return true;
    if (!keep.has(key)) return false;
    return this.readManifest(key) === undefined || existsSync(path.join(this.scratchDir(key), 'slurm-job'));
  }

  /** A temp folder is live only while the lock it was made under is held by a live process (trash: while its pid lives). */
  private isLeftoverTemp(name: string): boolean {
    const trash = TRASH_NAME.exec(name);
    if (trash) return isAbandoned({ pid: Number(trash[1]), hostname: osHostname(), startedAt: '', nonce: '' });
    const match = TEMP_NAME.exec(name);
    if (match === null) return false;
    const seen = readLock(this.lockPath(match[1]!));
    return !(seen?.owner?.nonce === match[3] && !isAbandoned(seen.owner));
  }

  /** Remove one lock or registration file left by a dead owner; returns whether it was (or, dry, would be) removed. */
  private async removeIfStale(file: string, dryRun: boolean): Promise<boolean> {
    if (file.endsWith('.tmp')) {
      const stat = await fsp.stat(file).catch(() => undefined);
      if (stat === undefined || Date.now() - stat.mtimeMs <= LOCK_TEMP_MAX_AGE_MS) return false;
      if (!dryRun) await fsp.rm(file, { force: true });
      return true;
    }
    // Lock files and takeover markers have the same shape and are broken the same careful way.
    const seen = readLock(file);
    if (seen === undefined || !isAbandoned(seen.owner)) return false;
    return dryRun || (await breakStaleLock(file, seen));
  }

  /** What is wrong with one entry, every byte read again; `checked` is told of each output read (its manifest size). */
  private async checkEntry(key: string, dir: string, manifests: Map<string, Manifest | undefined>, checked?: (bytes: number) => void): Promise<string[]> {
    let text: string;
    try {
      text = await fsp.readFile(path.join(dir, MANIFEST), 'utf8');
    } catch (error) {
      if (errorCode(error) === 'ENOENT') return ['manifest.json is missing'];
      return [`manifest.json cannot be read: ${(naming(error, path.join(dir, MANIFEST)) as Error).message}`];
    }
    const manifest = parseManifest(text, key);
    if (typeof manifest === 'string') return [manifest];
    const problems: string[] = [];
    const checksum = await fsp.readFile(path.join(dir, MANIFEST_CHECKSUM), 'utf8').catch(() => undefined);
    if (checksum?.trim() !== sha256(text)) problems.push(`manifest.json does not match ${MANIFEST_CHECKSUM} (edited or corrupted)`);
    const recomputed = stageKey(manifest);
    if (recomputed !== key) problems.push(`the manifest's kind, kindVersion, params, inputs${manifest.code ? ', files and code' : ' and files'} hash to ${recomputed}, not to this key`);
    if (!isSafeRelativePath(manifest.log)) {
      problems.push(`manifest.json field log is not a relative path: ${JSON.stringify(manifest.log)}`);
    } else if (!(await fsp.stat(path.join(dir, manifest.log)).then((s) => s.isFile(), () => false))) {
      problems.push(`log file ${manifest.log} is missing`);
    }
    const listed = new Set(manifest.outputs.map((o) => o.path));
    // Read FILES_AT_ONCE at a time; each output's problem lands in its place, so the report keeps the manifest's order.
    const outputProblems = new Array<string | undefined>(manifest.outputs.length);
    await forEachLimited(manifest.outputs, async (output, i) => {
      let digest: { sha256: string; size: number };
      try {
        digest = await digestFile(path.join(dir, ARTIFACTS, ...output.path.split('/')));
      } catch (error) {
        outputProblems[i] = errorCode(error) === 'ENOENT' ? `output ${output.path} is missing` : `output ${output.path} cannot be read: ${(error as Error).message}`;
        return;
      } finally {
        checked?.(output.size);
      }
      if (digest.size !== output.size || digest.sha256 !== output.sha256) {
        outputProblems[i] = `output ${output.path} has changed: now ${digest.size} bytes, sha256 ${digest.sha256}; ` +
          `the manifest says ${output.size} bytes, sha256 ${output.sha256}`;
      }
    });
    for (const problem of outputProblems) if (problem !== undefined) problems.push(problem);
    // No artifacts folder is what an entry without outputs may have; any other failure to list it is said, never
    // taken for an empty folder (a listing that overflowed once hid every unlisted file of a huge entry that way).
    const present = await listFiles(path.join(dir, ARTIFACTS)).catch((error: unknown) => {
      if (errorCode(error) !== 'ENOENT') problems.push(`artifacts/ cannot be listed: ${(error as Error).message}`);
      return [] as string[];
    });
    for (const rel of present) if (!listed.has(rel)) problems.push(`artifacts/${rel} is not listed in the manifest`);
    for (const [upKey, digest] of Object.entries(manifest.inputContents ?? {})) {
      if (!KEY_PATTERN.test(upKey)) continue;
      if (!manifests.has(upKey)) manifests.set(upKey, this.readManifest(upKey));
      const up = manifests.get(upKey);
      // An input that is gone says nothing; one that holds other bytes means this entry was built on bytes that no longer exist.
      if (up !== undefined && outputsDigest(up.outputs) !== digest) {
        problems.push(`computed from bytes of its input ${up.stage} (${upKey}) that no entry holds any more (that input was recomputed with other results)`);
      }
    }
    return problems;
  }
}

function isEntryName(shard: string, name: string): boolean {
  return KEY_PATTERN.test(name) && name.startsWith(shard) && shard.length === 2;
}

/** rm -r that returns the bytes it freed. */
async function removeCounting(dir: string): Promise<number> {
  const bytes = await diskBytes(dir);
  await fsp.rm(dir, { recursive: true, force: true });
  return bytes;
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
    private readonly digester?: FileDigester,
    private readonly replaceBefore?: Date,
  ) {
    this.outDir = path.join(entryTmp, ARTIFACTS);
    this.logPath = path.join(entryTmp, LOG);
  }

  async commit(m: ManifestFields): Promise<Manifest> {
    if (this.state !== 'open') throw new Error(`cache entry ${this.key} was already ${this.state === 'done' ? 'committed or aborted' : 'being committed'}`);
    this.state = 'committing';
    let sealed: Manifest;
    let manifest: Manifest;
    try {
      sealed = await this.seal(m);
      manifest = await this.moveIntoPlace(sealed);
    } catch (error) {
      // Nothing is lost: the temp entry and the lock stay, so the caller may retry or abort.
      this.state = 'open';
      throw error;
    }
    this.state = 'done';
    await fsp.rm(this.scratchDir, { recursive: true, force: true });
    await this.lock.release();
    // Only our own bytes were just hashed; an entry someone else committed meanwhile is checked like any other.
    if (this.digester?.remember && manifest === sealed) {
      const dir = this.store.artifactsDir(this.key);
      for (const o of manifest.outputs) await this.digester.remember(path.join(dir, ...o.path.split('/')), o.sha256).catch(() => undefined);
    }
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
      ...(m.code === undefined ? {} : { code: m.code }),
      variant: m.variant,
      outputs,
      metrics: m.metrics,
      timings: m.timings,
      ...(m.backend === undefined ? {} : { backend: m.backend }),
      ...(m.overrides === undefined ? {} : { overrides: m.overrides }),
      versions: m.versions,
      log: LOG,
      ...(m.inputContents === undefined ? {} : { inputContents: m.inputContents }),
      ...(m.missing === undefined ? {} : { missing: m.missing }),
      ...(m.missingInputs === undefined ? {} : { missingInputs: m.missingInputs }),
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
    try {
      await renameIntoShard(this.entryTmp, final);
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
      await renameIntoShard(this.entryTmp, final);
    }
    await fsyncDir(shardDir);
    await fsyncDir(path.dirname(shardDir));
    return manifest;
  }
}

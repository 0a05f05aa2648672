// Content hashes of workspace files and folders, with a stat cache so unchanged large files are not read again.
import { createHash } from 'node:crypto';
import { statSync, type BigIntStats } from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import * as fsp from 'node:fs/promises';
import path from 'node:path';
import { canonicalJson, sha256 } from '../runtime/hash.ts';
import { errorCode, naming, replaceFileDurable } from './durable.ts';

/** A file or folder a stage depends on does not exist. */
export class FileMissingError extends Error {
  readonly code = 'E_FILE_MISSING';
  constructor(readonly path: string) {
    super(`${path} does not exist`);
    this.name = 'FileMissingError';
  }
}

/** Names skipped anywhere inside a hashed folder: the cache itself and version control. */
export const IGNORED_NAMES: ReadonlySet<string> = new Set(['.pausepipe', '.git']);
/** Prefix of a folder's hash recipe, so a folder can never hash like a file with the same bytes. */
const FOLDER_FORMAT = 'pausepipe-folder-v1';
const STAT_CACHE_FORMAT = 1;
/**
 * A file modified this recently is hashed but not remembered: file systems stamp mtimes coarsely
 * (a few ms on Linux, 2 s on FAT), so a second same-size write in the same tick would keep every
 * stat field equal. Git calls this the "racily clean" problem.
 */
const RACY_WINDOW_NS = 2_000_000_000n;
/** How often a file that keeps changing under us is hashed again before giving up. */
const MAX_HASH_ATTEMPTS = 3;

/** What identifies one version of a file without reading it; all decimal strings so they survive JSON exactly. */
interface StatStamp {
  size: string;
  mtimeNs: string;
  ctimeNs: string;
  ino: string;
}

interface StatCacheFile {
  format: number;
  entries: Record<string, StatStamp & { hash: string }>;
}

/** Largest read of one file: a small file is read in one call, a large one in pieces of this size (little memory). */
const READ_CHUNK_BYTES = 1 << 20;

/**
 * SHA-256 (hex) and length of the bytes of an open file, read to its end. One read for a small file: a stream costs
 * several round trips to libuv's threads per file, which dominated entries of tens of thousands of small files.
 */
export async function digestHandle(handle: FileHandle, sizeHint: number): Promise<{ sha256: string; size: number }> {
  const hash = createHash('sha256');
  // One byte more than the size stat gave: a short read is the end of a regular file, so a small one takes one call.
  const buffer = Buffer.allocUnsafe(Math.min(Math.max(sizeHint + 1, 1), READ_CHUNK_BYTES));
  let size = 0;
  for (;;) {
    const { bytesRead } = await handle.read(buffer, 0, buffer.length, size);
    if (bytesRead === 0) break;
    hash.update(buffer.subarray(0, bytesRead));
    size += bytesRead;
    if (bytesRead < buffer.length) break;
  }
  return { sha256: hash.digest('hex'), size };
}

/** SHA-256 (hex) and length of a file's bytes, read in pieces so large files use little memory. */
export async function digestFile(file: string): Promise<{ sha256: string; size: number }> {
  let handle: FileHandle | undefined;
  try {
    handle = await fsp.open(file, 'r');
    return await digestHandle(handle, (await handle.stat()).size);
  } catch (error) {
    throw naming(error, file);
  } finally {
    await handle?.close();
  }
}

function stampOf(stat: BigIntStats): StatStamp {
  return { size: String(stat.size), mtimeNs: String(stat.mtimeNs), ctimeNs: String(stat.ctimeNs), ino: String(stat.ino) };
}

function sameStamp(a: StatStamp, b: StatStamp): boolean {
  return a.size === b.size && a.mtimeNs === b.mtimeNs && a.ctimeNs === b.ctimeNs && a.ino === b.ino;
}

async function statOrMissing(target: string): Promise<BigIntStats> {
  try {
    // Synchronous: a no-op run stats a few thousand files, and a stat is far cheaper than a promise round trip.
    return statSync(target, { bigint: true });
  } catch (error) {
    // A dangling symlink or a path through a file are as missing as an absent name.
    if (errorCode(error) === 'ENOENT' || errorCode(error) === 'ENOTDIR') throw new FileMissingError(target);
    throw error;
  }
}

/** Sort order of paths in folder hashes and manifests: by UTF-16 code unit, independent of locale. */
export function compareCodeUnits(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/**
 * Hashes files (SHA-256 of the bytes) and folders (a hash over the sorted relative paths of their
 * files and each file's hash). A file whose size, mtime, ctime and inode match the stat cache is
 * not read again.
 */
export class FileHasher {
  /** Files whose bytes were read since this hasher was made; the stat cache's hits do not count. */
  filesRead = 0;
  private entries = new Map<string, StatStamp & { hash: string }>();
  private loading: Promise<void> | undefined;
  private dirty = false;
  /** The real path of `options.cacheRoot` once it exists. */
  private cacheReal: string | undefined;

  /**
   * `cacheRoot`: the cache this hasher serves, skipped inside hashed folders as `.pausepipe` is (a `--cache-dir` in a
   * folder a stage reads would otherwise change that folder's hash with every run).
   */
  constructor(readonly statCachePath: string, private readonly options: { cacheRoot?: string } = {}) {}

  /** File: sha256 of its bytes. Folder: hash over sorted relative names and file hashes. Missing: throws FileMissingError. */
  async hash(absPath: string): Promise<string> {
    const target = path.resolve(absPath);
    await this.load();
    const stat = await statOrMissing(target);
    if (stat.isDirectory()) return this.hashFolder(target);
    if (stat.isFile()) return this.hashFile(target, stat);
    throw new Error(`${target} is neither a file nor a folder`);
  }

  /**
   * Record the hash of a file whose bytes the caller has just hashed and which nobody writes any more (a committed
   * artifact), racy window or not: the next look at it is a stat instead of a second read of the whole file.
   */
  async remember(absPath: string, hash: string): Promise<void> {
    const target = path.resolve(absPath);
    await this.load();
    this.entries.set(target, { ...stampOf(await statOrMissing(target)), hash });
    this.dirty = true;
  }

  /** Persist the stat cache atomically; a no-op when nothing new was learned. */
  async save(): Promise<void> {
    await this.load();
    if (!this.dirty) return;
    const file: StatCacheFile = { format: STAT_CACHE_FORMAT, entries: Object.fromEntries(this.entries) };
    await fsp.mkdir(path.dirname(this.statCachePath), { recursive: true });
    await replaceFileDurable(this.statCachePath, JSON.stringify(file));
    this.dirty = false;
  }

  /**
   * Forget the files that no longer exist (a gc'd entry's outputs, a deleted workspace file), and persist that unless
   * `dryRun`; returns how many were, or would be, forgotten. Without this the stat cache grows with every entry ever
   * committed. A run that loaded the stat cache before and saves it after puts back what it knew: harmless, the next
   * prune drops them again.
   */
  async pruneMissing(dryRun = false): Promise<number> {
    await this.load();
    let dropped = 0;
    for (const file of [...this.entries.keys()]) {
      try {
        // Synchronous, as in hash(): one stat per remembered file, tens of thousands for a large cache.
        statSync(file);
        continue;
      } catch (error) {
        if (errorCode(error) !== 'ENOENT' && errorCode(error) !== 'ENOTDIR') continue;
      }
      dropped++;
      if (!dryRun) this.entries.delete(file);
    }
    if (dropped > 0 && !dryRun) {
      this.dirty = true;
      await this.save();
    }
    return dropped;
  }

  private load(): Promise<void> {
    this.loading ??= this.readStatCache();
    return this.loading;
  }

  private async readStatCache(): Promise<void> {
    let text: string;
    try {
      text = await fsp.readFile(this.statCachePath, 'utf8');
    } catch (error) {
      if (errorCode(error) === 'ENOENT') return;
      throw naming(error, this.statCachePath);
    }
    // The stat cache only saves time: an unreadable or foreign one is dropped and rebuilt, never trusted.
    try {
      const parsed = JSON.parse(text) as StatCacheFile;
      if (parsed.format !== STAT_CACHE_FORMAT || typeof parsed.entries !== 'object' || parsed.entries === null) return;
      for (const [file, entry] of Object.entries(parsed.entries)) {
        const fields = [entry?.size, entry?.mtimeNs, entry?.ctimeNs, entry?.ino, entry?.hash];
        if (fields.every((field) => typeof field === 'string')) this.entries.set(file, entry);
      }
    } catch {
      this.entries.clear();
    }
  }

  private async hashFile(file: string, firstStat: BigIntStats): Promise<string> {
    let stamp = stampOf(firstStat);
    let mtimeNs = firstStat.mtimeNs;
    for (let attempt = 1; ; attempt++) {
      const known = this.entries.get(file);
      if (known && sameStamp(known, stamp)) return known.hash;
      const statTime = BigInt(Date.now()) * 1_000_000n;
      const { sha256: hash } = await digestFile(file);
      this.filesRead++;
      const after = await statOrMissing(file);
      const afterStamp = stampOf(after);
      // Equal stamps before and after the read mean the bytes we hashed are the version the stamp names.
      if (sameStamp(stamp, afterStamp)) {
        // A racy entry is not remembered, and any older entry for the path describes an older version.
        if (mtimeNs < statTime - RACY_WINDOW_NS) this.entries.set(file, { ...stamp, hash });
        else this.entries.delete(file);
        this.dirty = true;
        return hash;
      }
      if (attempt === MAX_HASH_ATTEMPTS) throw new Error(`${file} kept changing while it was being hashed`);
      stamp = afterStamp;
      mtimeNs = after.mtimeNs;
    }
  }

  /** Undefined while the cache does not exist (nothing of it to skip then). */
  private async cacheRealPath(): Promise<string | undefined> {
    if (this.cacheReal === undefined && this.options.cacheRoot !== undefined) {
      this.cacheReal = await fsp.realpath(this.options.cacheRoot).catch(() => undefined);
    }
    return this.cacheReal;
  }

  private async hashFolder(root: string): Promise<string> {
    const files: [string, string][] = [];
    await this.collectFolder(root, '', files, new Set([await fsp.realpath(root)]));
    files.sort((a, b) => compareCodeUnits(a[0], b[0]));
    return sha256(`${FOLDER_FORMAT}\n${canonicalJson(files)}`);
  }

  private async collectFolder(dir: string, rel: string, out: [string, string][], ancestors: Set<string>): Promise<void> {
    const names = (await fsp.readdir(dir)).sort(compareCodeUnits);
    for (const name of names) {
      if (IGNORED_NAMES.has(name)) continue;
      const full = path.join(dir, name);
      const relPath = rel === '' ? name : `${rel}/${name}`;
      // stat follows symlinks: a linked file or folder counts as its content, like a copy would.
      const stat = await statOrMissing(full);
      if (stat.isDirectory()) {
        const real = await fsp.realpath(full);
        if (real === (await this.cacheRealPath())) continue;
        if (ancestors.has(real)) throw new Error(`${full} links back to a folder that contains it`);
        await this.collectFolder(full, relPath, out, new Set([...ancestors, real]));
      } else if (stat.isFile()) {
        out.push([relPath, await this.hashFile(full, stat)]);
      } else {
        throw new Error(`${full} is neither a file nor a folder`);
      }
    }
  }
}

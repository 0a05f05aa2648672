// Small durable-write helpers: fsync of files and folders, atomic replace of a file, unique temp names.
import { randomBytes } from 'node:crypto';
import * as fsp from 'node:fs/promises';
import path from 'node:path';

/** Random lowercase hex, used in temp names and lock nonces. */
export function randomHex(bytes = 8): string {
  return randomBytes(bytes).toString('hex');
}

/**
 * The error with `file` in its message: calls on an open handle (read, write, fsync) fail with a bare
 * `EISDIR: illegal operation on a directory, read` or `ENOSPC: ..., write` that names nothing. The code is kept.
 */
export function naming(error: unknown, file: string): unknown {
  if (!(error instanceof Error) || error.message.includes(file)) return error;
  return Object.assign(new Error(`${error.message} (${file})`, { cause: error }), { code: errorCode(error) });
}

/** Flush a file's data to disk so a crash after this point cannot leave it short or empty. */
export async function fsyncFile(file: string): Promise<void> {
  const handle = await fsp.open(file, 'r');
  try {
    await handle.sync();
  } catch (error) {
    throw naming(error, file);
  } finally {
    await handle.close();
  }
}

/** Flush a folder's entries (creates, renames) to disk. Windows cannot open folders for fsync; it needs none. */
export async function fsyncDir(dir: string): Promise<void> {
  if (process.platform === 'win32') return;
  await fsyncFile(dir);
}

/** Write `data` to a fresh file (failing if it exists) and flush it. */
export async function writeNewFileDurable(file: string, data: string): Promise<void> {
  const handle = await fsp.open(file, 'wx');
  try {
    await handle.writeFile(data);
    await handle.sync();
  } catch (error) {
    throw naming(error, file);
  } finally {
    await handle.close();
  }
}

/** Replace `file` atomically: readers see the old or the new content, never a mix, even after a crash. */
export async function replaceFileDurable(file: string, data: string): Promise<void> {
  const tmp = `${file}.${process.pid}.${randomHex(4)}.tmp`;
  try {
    await writeNewFileDurable(tmp, data);
    await fsp.rename(tmp, file);
  } catch (error) {
    await fsp.rm(tmp, { force: true });
    throw error;
  }
  await fsyncDir(path.dirname(file));
}

/** Node's error code of a failed fs call, or undefined for other errors. */
export function errorCode(error: unknown): string | undefined {
  return error instanceof Error && 'code' in error && typeof error.code === 'string' ? error.code : undefined;
}

/** 1.5 MB, 320 kB: sizes in messages. */
function formatBytes(n: number): string {
  if (n >= 1e9) return `${(n / 1e9).toFixed(1)} GB`;
  if (n >= 1e6) return `${(n / 1e6).toFixed(1)} MB`;
  return `${Math.round(n / 1e3)} kB`;
}

/**
 * For a stage that failed because the disk is full (ENOSPC, also as a worker's message or in a command's output):
 * `no space left on the disk of /cache (the stage's outputs took 12.0 MB, its checkpoints 3.1 GB; 0 kB free): …`, so
 * a person knows where and how much, then what to do. `outDir` is what the stage wrote, `scratchDir` (when given) what
 * it keeps across attempts (training checkpoints), `place` the folder named. Undefined for any other failure.
 */
export async function noSpaceMessage(error: unknown, outDir: string, place: string, output: readonly string[] = [], scratchDir?: string): Promise<string | undefined> {
  const text = error instanceof Error ? error.message : String(error);
  const said = /\bENOSPC\b|no space left on device/i;
  const inOutput = output.some((line) => said.test(line));
  if (errorCode(error) !== 'ENOSPC' && !said.test(text) && !inOutput) return undefined;
  const written = await diskBytes(outDir).catch(() => 0);
  const kept = scratchDir === undefined ? 0 : await diskBytes(scratchDir).catch(() => 0);
  const free = await fsp.statfs(place).then((s) => formatBytes(s.bavail * s.bsize), () => 'unknown');
  const why = said.test(text) || errorCode(error) === 'ENOSPC' ? text : `${text}; its output says: No space left on device`;
  // Markers and logs aside, what a stage keeps across attempts is training checkpoints.
  const took = `the stage's outputs took ${formatBytes(written)}${kept >= 1e6 ? `, its checkpoints ${formatBytes(kept)}` : ''}`;
  return `no space left on the disk of ${place} (${took}; ${free} free): ${why}; free some (\`pausepipe gc FILE\` deletes the ` +
    'entries no pipeline named uses) or put the cache on a larger disk (--cache-dir or PAUSEPIPE_CACHE)';
}

/** Total bytes of the files under `target` (or of `target` itself); 0 when it is gone. */
export async function diskBytes(target: string): Promise<number> {
  let stat;
  try {
    stat = await fsp.lstat(target);
  } catch (error) {
    if (errorCode(error) === 'ENOENT') return 0;
    throw error;
  }
  if (!stat.isDirectory()) return stat.size;
  let total = 0;
  for (const name of await fsp.readdir(target)) total += await diskBytes(path.join(target, name));
  return total;
}

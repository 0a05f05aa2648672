// Small durable-write helpers: fsync of files and folders, atomic replace of a file, unique temp names.
import { randomBytes } from 'node:crypto';
import * as fsp from 'node:fs/promises';
import path from 'node:path';

/** Random lowercase hex, used in temp names and lock nonces. */
export function randomHex(bytes = 8): string {
  return randomBytes(bytes).toString('hex');
}

/** Flush a file's data to disk so a crash after this point cannot leave it short or empty. */
export async function fsyncFile(file: string): Promise<void> {
  const handle = await fsp.open(file, 'r');
  try {
    await handle.sync();
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

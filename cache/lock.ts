// Per-key lock files that survive crashes: exclusive creation, waiting with backoff, and safe takeover from dead owners.
import { readFileSync, readlinkSync } from 'node:fs';
import * as fsp from 'node:fs/promises';
import { hostname } from 'node:os';
import { setTimeout as sleep } from 'node:timers/promises';
import { sha256 } from '../runtime/hash.ts';
import { errorCode, randomHex, writeNewFileDurable } from './durable.ts';

/** Who holds a lock. Written into the lock file as JSON. */
export interface LockOwner {
  pid: number;
  hostname: string;
  /** ISO time the lock was taken. */
  startedAt: string;
  /** Random per lock; tells two locks of the same process apart and names its temp folder. */
  nonce: string;
  /** Linux: the owner process's start time in clock ticks, so a reused pid is not mistaken for the owner. */
  procStart?: string;
  /** Linux: the owner's pid namespace; a container sharing our hostname has pids we cannot check. */
  pidNamespace?: string;
}

/** A lock file as read from disk: its exact bytes and, when they parse, the owner. */
export interface LockSnapshot {
  raw: string;
  owner: LockOwner | undefined;
}

export interface AcquireOptions {
  signal?: AbortSignal;
  /** Called once per distinct live owner we wait for. */
  onWait?: (owner: LockOwner) => void;
}

const FIRST_DELAY_MS = 10;
const MAX_DELAY_MS = 500;

/** Field 22 of /proc/<pid>/stat (start time since boot, in ticks); undefined off Linux or when the process is gone. */
export function processStartTicks(pid: number): string | undefined {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return undefined;
  }
  // The command name (field 2) may hold spaces and parentheses; fields after its closing ')' are plain.
  const fields = text.slice(text.lastIndexOf(')') + 2).split(' ');
  return fields[19];
}

/** Like `pid:[4026531836]`; undefined off Linux. */
function pidNamespace(): string | undefined {
  try {
    return readlinkSync('/proc/self/ns/pid');
  } catch {
    return undefined;
  }
}

const OWN_PID_NAMESPACE = pidNamespace();

function parseOwner(raw: string): LockOwner | undefined {
  try {
    const value = JSON.parse(raw) as Partial<LockOwner>;
    if (typeof value.pid === 'number' && typeof value.hostname === 'string' && typeof value.nonce === 'string' && typeof value.startedAt === 'string') {
      return value as LockOwner;
    }
  } catch {
    // Falls through: an unparseable lock has no owner.
  }
  return undefined;
}

/** Read a lock file; undefined when there is none. */
export function readLock(lockPath: string): LockSnapshot | undefined {
  let raw: string;
  try {
    raw = readFileSync(lockPath, 'utf8');
  } catch (error) {
    if (errorCode(error) === 'ENOENT') return undefined;
    throw error;
  }
  return { raw, owner: parseOwner(raw) };
}

/**
 * True when the owner is certainly gone: same host and pid namespace, and its pid is dead or now belongs to
 * another process. A lock from another host or container is never stale here, since we cannot see its processes.
 * An unparseable lock counts as stale: locks are published whole (see publishFile), so garbage never belonged to a live run.
 */
export function isStale(owner: LockOwner | undefined): boolean {
  if (owner === undefined) return true;
  if (owner.hostname !== hostname()) return false;
  if (owner.pidNamespace !== undefined && owner.pidNamespace !== OWN_PID_NAMESPACE) return false;
  try {
    process.kill(owner.pid, 0);
  } catch (error) {
    // EPERM: the pid exists but belongs to another user, so it is alive.
    if (errorCode(error) === 'ESRCH') return true;
  }
  const start = owner.procStart === undefined ? undefined : processStartTicks(owner.pid);
  return start !== undefined && start !== owner.procStart;
}

/**
 * Create `target` holding `content`, or return false if it exists. The content is written and flushed
 * in a private temp file first and then hard-linked into place, so no reader ever sees a half-written lock.
 */
async function publishFile(target: string, content: string): Promise<boolean> {
  const tmp = `${target}.${process.pid}.${randomHex(4)}.tmp`;
  try {
    await writeNewFileDurable(tmp, content);
    await fsp.link(tmp, target);
    return true;
  } catch (error) {
    const code = errorCode(error);
    if (code === 'EEXIST') return false;
    if (code === 'EPERM' || code === 'ENOTSUP' || code === 'EOPNOTSUPP' || code === 'ENOSYS') {
      throw new Error(`cannot create ${target}: its file system does not support hard links (${code}); ` +
        'put the cache on another disk with --cache-dir or $PAUSEPIPE_CACHE', { cause: error });
    }
    throw error;
  } finally {
    await fsp.rm(tmp, { force: true });
  }
}

function newOwner(): LockOwner {
  const procStart = processStartTicks(process.pid);
  return {
    pid: process.pid,
    hostname: hostname(),
    startedAt: new Date().toISOString(),
    nonce: randomHex(8),
    ...(procStart === undefined ? {} : { procStart }),
    ...(OWN_PID_NAMESPACE === undefined ? {} : { pidNamespace: OWN_PID_NAMESPACE }),
  };
}

async function unlinkIfPresent(file: string): Promise<void> {
  await fsp.rm(file, { force: true });
}

/**
 * Remove the stale lock `seen` from `lockPath`, unless it has changed meanwhile. Returns true when removed.
 *
 * Two waiters may judge the same dead lock stale at once; only one may remove it, or the slower one could
 * delete the live lock the faster one created right after. So a breaker first creates a marker named
 * after the exact lock bytes (which hold a random nonce); only the marker's creator re-reads the lock and
 * removes it if still identical. A marker whose own creator died is broken the same way, recursively.
 */
export async function breakStaleLock(lockPath: string, seen: LockSnapshot): Promise<boolean> {
  const marker = `${lockPath}.break-${sha256(seen.raw).slice(0, 16)}`;
  if (!(await publishFile(marker, JSON.stringify(newOwner())))) {
    const other = readLock(marker);
    if (other !== undefined && isStale(other.owner)) await breakStaleLock(marker, other);
    return false;
  }
  try {
    const now = readLock(lockPath);
    if (now === undefined || now.raw !== seen.raw) return false;
    await unlinkIfPresent(lockPath);
    return true;
  } finally {
    await unlinkIfPresent(marker);
  }
}

/** A lock this process holds. */
export class HeldLock {
  private released = false;
  constructor(readonly path: string, readonly owner: LockOwner, private readonly raw: string) {}

  /** Remove the lock file if it is still ours; calling it twice is harmless. */
  async release(): Promise<void> {
    if (this.released) return;
    this.released = true;
    // Someone who wrongly judged us dead may hold it now; their lock is not ours to delete.
    if (readLock(this.path)?.raw === this.raw) await unlinkIfPresent(this.path);
  }
}

/**
 * Take the lock at `lockPath`: wait (polling with backoff) while a live process holds it, take it over
 * when its owner died. Rejects with the signal's reason when `signal` aborts.
 */
export async function acquireLock(lockPath: string, opts: AcquireOptions = {}): Promise<HeldLock> {
  const owner = newOwner();
  const raw = JSON.stringify(owner);
  let delay = FIRST_DELAY_MS;
  let reported: string | undefined;
  for (;;) {
    opts.signal?.throwIfAborted();
    if (await publishFile(lockPath, raw)) return new HeldLock(lockPath, owner, raw);
    const seen = readLock(lockPath);
    if (seen === undefined) continue; // released between our attempt and our look
    if (isStale(seen.owner)) {
      if (await breakStaleLock(lockPath, seen)) continue;
    } else if (seen.raw !== reported && seen.owner !== undefined) {
      reported = seen.raw;
      opts.onWait?.(seen.owner);
    }
    // Jitter keeps waiters that started together from polling in lockstep.
    try {
      await sleep(delay * (0.5 + Math.random()), undefined, { signal: opts.signal });
    } catch (error) {
      opts.signal?.throwIfAborted();
      throw error;
    }
    delay = Math.min(delay * 2, MAX_DELAY_MS);
  }
}

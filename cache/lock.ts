// Lock files that survive crashes and shared file systems: exclusive creation, leases the holder renews, safe takeover.
import { readFileSync, readlinkSync, unlinkSync } from 'node:fs';
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
  /** $SLURM_JOB_ID of the owner, so a person can tell which cluster job holds the lock. */
  slurmJobId?: string;
  /** How long the lock stays valid without a renewal; the holder renews it every third of that. */
  leaseMs?: number;
  /** ISO time of the last renewal, on the holder's clock (startedAt until the first). */
  renewedAt?: string;
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
  /** Lease of the lock we take (default LEASE_MS); tests use short ones. */
  leaseMs?: number;
  /** Extra JSON fields written beside the owner (e.g. the keys a run uses); kept on renewal. */
  data?: Record<string, unknown>;
}

const FIRST_DELAY_MS = 10;
const MAX_DELAY_MS = 500;
/**
 * A lock whose holder runs on another host (a shared file system) cannot be checked by pid: it is taken over once
 * its content has not changed for a whole lease, as timed on the waiter's own clock, so clock skew does not matter.
 */
export const LEASE_MS = 60_000;
/**
 * gc and verify look once rather than wait: they judge another host's lock by its renewal time on the holder's
 * clock, so they allow this much skew between the clocks before calling it abandoned.
 */
const CLOCK_SKEW_ALLOWANCE_MS = 10 * 60_000;

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

/** Locks this process holds, removed synchronously if it exits without releasing them (a second Ctrl-C, process.exit). */
const heldLocks = new Set<HeldLock>();
process.on('exit', () => {
  for (const lock of heldLocks) lock.releaseSync();
});

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

/** The owner runs where we cannot see its processes: another host, or another pid namespace (a container). */
function isForeign(owner: LockOwner): boolean {
  return owner.hostname !== hostname() || (owner.pidNamespace !== undefined && owner.pidNamespace !== OWN_PID_NAMESPACE);
}

function leaseOf(owner: LockOwner): number {
  return typeof owner.leaseMs === 'number' && owner.leaseMs > 0 ? owner.leaseMs : LEASE_MS;
}

/**
 * True when nobody holds the lock any more, as far as one look can tell: the owner is certainly gone (isStale),
 * or it runs on another host and has not renewed its lease for the lease plus CLOCK_SKEW_ALLOWANCE_MS.
 */
export function isAbandoned(owner: LockOwner | undefined, now = Date.now()): boolean {
  if (isStale(owner)) return true;
  if (!isForeign(owner!)) return false;
  const renewed = Date.parse(owner!.renewedAt ?? owner!.startedAt);
  return Number.isFinite(renewed) && now - renewed > leaseOf(owner!) + CLOCK_SKEW_ALLOWANCE_MS;
}

/**
 * Remembers when each version of a foreign lock was first seen, so a waiter can tell a lease that is renewed from one
 * that ran out: a version unchanged for a whole lease on our clock belongs to a holder that stopped renewing.
 */
export class LeaseWatch {
  private firstSeen = new Map<string, number>();

  constructor(private readonly now: () => number = Date.now) {}

  expired(seen: LockSnapshot): boolean {
    if (seen.owner === undefined || !isForeign(seen.owner)) return false;
    const at = this.firstSeen.get(seen.raw);
    if (at === undefined) {
      this.firstSeen.set(seen.raw, this.now());
      return false;
    }
    return this.now() - at > leaseOf(seen.owner);
  }
}

/**
 * `pid 4242 on node7 (Slurm job 991) since 2025-05-01T10:00:00.000Z`, and with `now` `, lease renewed 12 s ago`:
 * who holds a lock, for waiting lines and verify.
 */
export function describeOwner(owner: Pick<LockOwner, 'pid' | 'hostname' | 'startedAt' | 'slurmJobId' | 'renewedAt'>, now?: number): string {
  const job = owner.slurmJobId === undefined ? '' : ` (Slurm job ${owner.slurmJobId})`;
  const renewed = Date.parse(owner.renewedAt ?? owner.startedAt);
  const lease = now !== undefined && Number.isFinite(renewed) ? `, lease renewed ${Math.max(0, Math.round((now - renewed) / 1000))} s ago` : '';
  return `pid ${owner.pid} on ${owner.hostname}${job} since ${owner.startedAt}${lease}`;
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

function newOwner(leaseMs = LEASE_MS): LockOwner {
  const procStart = processStartTicks(process.pid);
  const slurmJobId = process.env.SLURM_JOB_ID;
  const startedAt = new Date().toISOString();
  return {
    pid: process.pid,
    hostname: hostname(),
    startedAt,
    nonce: randomHex(8),
    ...(procStart === undefined ? {} : { procStart }),
    ...(OWN_PID_NAMESPACE === undefined ? {} : { pidNamespace: OWN_PID_NAMESPACE }),
    ...(slurmJobId ? { slurmJobId } : {}),
    leaseMs,
    renewedAt: startedAt,
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
    if (other !== undefined && isAbandoned(other.owner)) await breakStaleLock(marker, other);
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

/** A lock this process holds; its lease is renewed in the background until release. */
export class HeldLock {
  private released = false;
  private renewal: NodeJS.Timeout | undefined;
  /** The renewal in flight: release waits for it, or the renewal's rename could bring the lock file back. */
  private renewing: Promise<void> = Promise.resolve();
  /** Set when a renewal found the lock file gone or someone else's: another process judged our lease expired. */
  lost = false;

  constructor(readonly path: string, private current: LockOwner, private readonly data: Record<string, unknown> = {}) {
    heldLocks.add(this);
    const every = Math.max(1, Math.floor(leaseOf(current) / 3));
    this.renewal = setInterval(() => {
      this.renewing = this.renewing.then(() => this.renew()).catch(() => undefined);
    }, every);
    // Renewing must never keep a finished process alive.
    this.renewal.unref();
  }

  /** The owner as last written (renewedAt moves with each renewal). */
  get owner(): LockOwner {
    return this.current;
  }

  private isOurs(snapshot: LockSnapshot | undefined): boolean {
    return snapshot?.owner?.nonce === this.current.nonce && snapshot.owner.pid === this.current.pid;
  }

  /**
   * Rewrite the lock with a new renewal time (whole, by rename, so readers never see half of it). A lock that is no
   * longer ours is left alone: recreating it could clobber the lock of whoever took it over.
   */
  private async renew(): Promise<void> {
    if (this.released || this.lost) return;
    if (!this.isOurs(readLock(this.path))) {
      this.lost = true;
      clearInterval(this.renewal);
      return;
    }
    const next = { ...this.current, renewedAt: new Date().toISOString() };
    const raw = JSON.stringify({ ...this.data, ...next });
    const tmp = `${this.path}.${process.pid}.${randomHex(4)}.tmp`;
    try {
      await writeNewFileDurable(tmp, raw);
      await fsp.rename(tmp, this.path);
      this.current = next;
    } finally {
      await fsp.rm(tmp, { force: true });
    }
  }

  /** Remove the lock file if it is still ours; calling it twice is harmless. */
  async release(): Promise<void> {
    if (this.released) return;
    this.stop();
    await this.renewing;
    // Someone who wrongly judged us dead may hold it now; their lock is not ours to delete.
    if (this.isOurs(readLock(this.path))) await unlinkIfPresent(this.path);
  }

  /** release() for the 'exit' event, where nothing asynchronous runs any more. */
  releaseSync(): void {
    if (this.released) return;
    this.stop();
    try {
      if (this.isOurs(readLock(this.path))) unlinkSync(this.path);
    } catch {
      // Exiting anyway: a lock left behind is taken over by the next run (its pid is dead).
    }
  }

  private stop(): void {
    this.released = true;
    clearInterval(this.renewal);
    heldLocks.delete(this);
  }
}

/**
 * Take the lock at `lockPath`: wait (polling with backoff) while a live process holds it, take it over when its
 * owner died (same host) or stopped renewing its lease (another host). Rejects with the signal's reason when
 * `signal` aborts.
 */
export async function acquireLock(lockPath: string, opts: AcquireOptions = {}): Promise<HeldLock> {
  const owner = newOwner(opts.leaseMs);
  const data = opts.data ?? {};
  const raw = JSON.stringify({ ...data, ...owner });
  const leases = new LeaseWatch();
  let delay = FIRST_DELAY_MS;
  let reported: string | undefined;
  for (;;) {
    opts.signal?.throwIfAborted();
    if (await publishFile(lockPath, raw)) return new HeldLock(lockPath, owner, data);
    const seen = readLock(lockPath);
    if (seen === undefined) continue; // released between our attempt and our look
    if (isAbandoned(seen.owner) || leases.expired(seen)) {
      if (await breakStaleLock(lockPath, seen)) continue;
    } else if (seen.owner !== undefined && seen.owner.nonce !== reported) {
      // Renewals rewrite the lock: one notice per holder, not per renewal.
      reported = seen.owner.nonce;
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

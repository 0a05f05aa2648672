// Tests for the lock files under the store: who counts as dead, and that breaking a dead lock never removes a live one.
import { existsSync, readFileSync } from 'node:fs';
import * as fsp from 'node:fs/promises';
import { hostname, tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { spawnSync } from 'node:child_process';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  acquireLock, breakStaleLock, describeOwner, isAbandoned, isStale, LeaseWatch, processStartTicks, readLock, type LockOwner,
} from '../../cache/lock.ts';
import { sha256 } from '../../runtime/hash.ts';
import { deadPid } from './fixtures.ts';
import { withEnv } from '../helpers/env.ts';
import { withProc } from '../helpers/requires.ts';

const test = suite('lock');

let dir = '';
test.before.each(async () => {
  dir = await fsp.mkdtemp(path.join(tmpdir(), 'pausepipe-lock-'));
});
test.after.each(async () => {
  await fsp.rm(dir, { recursive: true, force: true });
});

function deadOwner(): LockOwner {
  return { pid: deadPid(), hostname: hostname(), startedAt: '2025-01-01T00:00:00.000Z', nonce: 'deadbeef' };
}

test('a lock is stale when its pid is gone or unreadable, live for us and for other hosts', () => {
  assert.is(isStale(deadOwner()), true);
  assert.is(isStale(undefined), true);
  const me: LockOwner = { pid: process.pid, hostname: hostname(), startedAt: '', nonce: 'n' };
  assert.is(isStale(me), false);
  assert.is(isStale({ ...deadOwner(), hostname: `not-${hostname()}` }), false);
});

test('a lock from another pid namespace with our hostname (a container) is never stale', () => {
  assert.is(isStale({ ...deadOwner(), pidNamespace: 'pid:[1]' }), false);
});

withProc(test)('the start time of a live process is read on Linux and tells a reused pid apart', () => {
  const ticks = processStartTicks(process.pid);
  assert.match(ticks ?? '', /^\d+$/);
  const me: LockOwner = { pid: process.pid, hostname: hostname(), startedAt: '', nonce: 'n', procStart: ticks! };
  assert.is(isStale(me), false);
  assert.is(isStale({ ...me, procStart: `${ticks}0` }), true);
});

test('acquireLock writes the owner whole, and release removes only our own lock', async () => {
  const lockPath = path.join(dir, 'k.lock');
  const held = await acquireLock(lockPath);
  const onDisk = JSON.parse(readFileSync(lockPath, 'utf8')) as LockOwner;
  assert.equal(onDisk, held.owner);
  assert.is(onDisk.pid, process.pid);
  assert.match(onDisk.nonce, /^[0-9a-f]{16}$/);
  await fsp.writeFile(lockPath, JSON.stringify({ ...onDisk, nonce: 'someone-else' }));
  await held.release();
  assert.is(existsSync(lockPath), true);
  assert.equal(await fsp.readdir(dir), ['k.lock']);
});

test('breaking with an outdated view of a dead lock leaves the new live lock alone', async () => {
  const lockPath = path.join(dir, 'k.lock');
  await fsp.writeFile(lockPath, JSON.stringify(deadOwner()));
  const seenByBoth = readLock(lockPath)!;
  assert.is(await breakStaleLock(lockPath, seenByBoth), true);
  const winner = await acquireLock(lockPath);
  assert.is(await breakStaleLock(lockPath, seenByBoth), false);
  assert.equal(readLock(lockPath)?.owner, winner.owner);
  await winner.release();
  assert.equal(await fsp.readdir(dir), []);
});

test('a takeover marker left by a dead breaker does not block the lock forever', async () => {
  const lockPath = path.join(dir, 'k.lock');
  const deadLock = JSON.stringify(deadOwner());
  await fsp.writeFile(lockPath, deadLock);
  await fsp.writeFile(`${lockPath}.break-${sha256(deadLock).slice(0, 16)}`, JSON.stringify({ ...deadOwner(), nonce: 'cafe' }));
  const held = await acquireLock(lockPath);
  assert.is(held.owner.pid, process.pid);
  await held.release();
  assert.equal(await fsp.readdir(dir), []);
});

/** A lock as another host's runner writes it: its pid means nothing here, only its lease does. */
function foreignOwner(extra: Partial<LockOwner> = {}): LockOwner {
  return { pid: 1, hostname: `not-${hostname()}`, startedAt: new Date().toISOString(), nonce: 'f0f0', leaseMs: 60_000, renewedAt: new Date().toISOString(), ...extra };
}

test('a lock names its host, pid, Slurm job and lease, and the holder renews it in the background', () => withEnv('SLURM_JOB_ID', '4242', async () => {
  const lockPath = path.join(dir, 'k.lock');
  const held = await acquireLock(lockPath, { leaseMs: 90 });
  const first = JSON.parse(readFileSync(lockPath, 'utf8')) as LockOwner;
  assert.equal([first.pid, first.hostname, first.slurmJobId, first.leaseMs, first.renewedAt], [process.pid, hostname(), '4242', 90, first.startedAt]);
  await sleep(200);
  const later = JSON.parse(readFileSync(lockPath, 'utf8')) as LockOwner;
  assert.is(later.nonce, first.nonce);
  assert.ok(Date.parse(later.renewedAt!) > Date.parse(first.renewedAt!), `renewedAt stayed ${later.renewedAt}`);
  assert.equal(held.owner, later);
  assert.match(describeOwner(later, Date.now()), new RegExp(`^pid ${process.pid} on ${hostname()} \\(Slurm job 4242\\) since ${first.startedAt}, lease renewed \\d+ s ago$`));
  await held.release();
  assert.equal(await fsp.readdir(dir), []);
}));

test('a holder whose lock was taken over stops renewing and never writes over the new lock', async () => {
  const lockPath = path.join(dir, 'k.lock');
  const held = await acquireLock(lockPath, { leaseMs: 60 });
  const intruder = JSON.stringify(foreignOwner({ nonce: 'beef' }));
  await fsp.writeFile(lockPath, intruder);
  await sleep(150);
  assert.is(held.lost, true);
  assert.is(readFileSync(lockPath, 'utf8'), intruder);
  await held.release();
  assert.is(readFileSync(lockPath, 'utf8'), intruder);
});

test('another host\'s lock is abandoned only when its renewal is older than the lease plus the clock-skew allowance', () => {
  const now = Date.parse('2025-06-01T12:00:00.000Z');
  const at = (minutesAgo: number) => new Date(now - minutesAgo * 60_000).toISOString();
  assert.is(isAbandoned(foreignOwner({ renewedAt: at(5) }), now), false);
  assert.is(isAbandoned(foreignOwner({ renewedAt: at(12) }), now), true);
  // A lock written before leases existed counts from its start.
  assert.is(isAbandoned(foreignOwner({ renewedAt: undefined, leaseMs: undefined, startedAt: at(30) }), now), true);
  assert.is(isAbandoned({ pid: process.pid, hostname: hostname(), startedAt: at(600), nonce: 'n' }, now), false);
});

test('a waiter times another host\'s lease on its own clock: renewed versions keep it, a version unchanged for a lease expires', () => {
  let clock = 0;
  const watch = new LeaseWatch(() => clock);
  const version = (renewedAt: string) => {
    const owner = foreignOwner({ leaseMs: 1000, startedAt: '2025-01-01T00:00:00.000Z', renewedAt });
    return { raw: JSON.stringify(owner), owner };
  };
  assert.is(watch.expired(version('a')), false);
  clock = 900;
  assert.is(watch.expired(version('b')), false);
  clock = 1500;
  assert.is(watch.expired(version('b')), false);
  clock = 2000;
  assert.is(watch.expired(version('b')), true);
  const local = { raw: '{}', owner: { pid: process.pid, hostname: hostname(), startedAt: '', nonce: 'n', leaseMs: 1 } };
  watch.expired(local);
  clock = 10_000;
  assert.is(watch.expired(local), false);
});

test('acquireLock waits while another host renews its lock and takes it over once the renewals stop', async () => {
  const lockPath = path.join(dir, 'k.lock');
  // A lease far longer than the renewal period, so a busy machine delaying a renewal does not end it.
  // Whole, by rename, as a real holder renews: a half-written lock would read as garbage (stale).
  let n = 0;
  const write = async () => {
    const tmp = `${lockPath}.${n++}.tmp`;
    await fsp.writeFile(tmp, JSON.stringify(foreignOwner({ leaseMs: 1500, renewedAt: new Date().toISOString() })));
    await fsp.rename(tmp, lockPath);
  };
  await write();
  const renewing = setInterval(() => void write(), 50);
  const waiters: LockOwner[] = [];
  const acquiring = acquireLock(lockPath, { onWait: (owner) => waiters.push(owner) });
  let took = false;
  void acquiring.then(() => { took = true; });
  await sleep(900);
  assert.is(took, false, 'a renewed lease must be waited for');
  clearInterval(renewing);
  const held = await acquiring;
  assert.is(held.owner.pid, process.pid);
  assert.equal(waiters.map((w) => w.hostname), [`not-${hostname()}`]);
  await held.release();
});

test('a process that exits without releasing (a second Ctrl-C) removes its locks on the way out', () => {
  const lockPath = path.join(dir, 'k.lock');
  const script = `import { acquireLock } from ${JSON.stringify(fileURLToPath(new URL('../../cache/lock.ts', import.meta.url)))};\n` +
    `await acquireLock(${JSON.stringify(lockPath)});\nprocess.exit(130);\n`;
  const child = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { encoding: 'utf8' });
  assert.is(child.status, 130, child.stderr);
  assert.is(existsSync(lockPath), false);
});

test.run();

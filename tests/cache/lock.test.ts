// Tests for the lock files under the store: who counts as dead, and that breaking a dead lock never removes a live one.
import { existsSync, readFileSync } from 'node:fs';
import * as fsp from 'node:fs/promises';
import { hostname, tmpdir } from 'node:os';
import path from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { acquireLock, breakStaleLock, isStale, processStartTicks, readLock, type LockOwner } from '../../cache/lock.ts';
import { sha256 } from '../../runtime/hash.ts';
import { deadPid } from './fixtures.ts';
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

test.run();

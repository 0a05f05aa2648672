// Tests for ArtifactStore: commit round trips, locks between callers and processes, crash safety, gc and verify.
import { spawn } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import * as fsp from 'node:fs/promises';
import { hostname, tmpdir } from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { sha256 } from '../../runtime/hash.ts';
import { FileHasher } from '../../cache/file-hash.ts';
import { acquireLock } from '../../cache/lock.ts';
import { ArtifactStore, CACHE_MARKER, NotACacheError, outputsDigest, resolveCacheRoot, type LockOwner, type PendingEntry } from '../../cache/store.ts';
import { assertRejects, deadPid, fieldsFor, keyFor } from './fixtures.ts';
import { withProc } from '../helpers/requires.ts';

const projectRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const childScript = path.join(projectRoot, 'tests/cache/store-child.ts');

let root = '';
let store: ArtifactStore;

async function freshStore(): Promise<void> {
  root = await fsp.mkdtemp(path.join(tmpdir(), 'pausepipe-store-'));
  store = new ArtifactStore(root);
}

async function removeStore(): Promise<void> {
  await fsp.rm(root, { recursive: true, force: true });
  await fsp.rm(`${root}-computed.txt`, { force: true });
  await fsp.rm(`${root}-go`, { force: true });
  await fsp.rm(`${root}-outside.txt`, { force: true });
}

async function mustBegin(key: string): Promise<PendingEntry> {
  const entry = await store.begin(key);
  if (entry === 'cached') throw new Error(`expected to compute ${key}, got cached`);
  return entry;
}

/** Commit the stage `name` with one output file holding `content`. */
async function commitSimple(name: string, content = `out of ${name}`): Promise<string> {
  const key = keyFor(name);
  const entry = await mustBegin(key);
  await fsp.writeFile(path.join(entry.outDir, 'out.txt'), content);
  await entry.commit(fieldsFor(name));
  return key;
}

async function writeLock(key: string, owner: Partial<LockOwner>): Promise<void> {
  const full: LockOwner = { pid: deadPid(), hostname: hostname(), startedAt: '2025-01-01T00:00:00.000Z', nonce: 'feedfacecafebeef', ...owner };
  await fsp.mkdir(path.join(root, 'locks'), { recursive: true });
  await fsp.writeFile(store.lockPath(key), JSON.stringify(full));
}

const commits = suite('ArtifactStore commit');
commits.before.each(freshStore);
commits.after.each(removeStore);

commits('commit writes outputs, manifest and log that read back exactly', async () => {
  const key = keyFor('train');
  assert.is(store.has(key), false);
  assert.is(store.readManifest(key), undefined);
  const entry = await mustBegin(key);
  assert.is(entry.key, key);
  assert.equal(await fsp.readdir(entry.outDir), []);
  assert.ok(entry.outDir.startsWith(path.join(root, 'tmp', `${key}.${process.pid}.`)));
  assert.is(entry.scratchDir, path.join(root, 'scratch', key));
  await fsp.mkdir(path.join(entry.outDir, 'model'));
  await fsp.writeFile(path.join(entry.outDir, 'model', 'weights.bin'), Buffer.from([1, 2, 3]));
  await fsp.writeFile(path.join(entry.outDir, 'config.json'), '{}');
  await fsp.writeFile(entry.logPath, 'step 1\n');
  await fsp.writeFile(path.join(entry.scratchDir, 'ckpt'), 'x');
  assert.is(store.has(key), false);

  const manifest = await entry.commit(fieldsFor('train', { backend: 'cpu', variant: { embed: true } }));
  assert.equal(manifest, {
    formatVersion: 1,
    key,
    kind: 'sh',
    kindVersion: 1,
    stage: 'train',
    params: { command: 'echo train' },
    inputs: {},
    files: {},
    variant: { embed: true },
    outputs: [
      { path: 'config.json', size: 2, sha256: sha256('{}') },
      { path: 'model/weights.bin', size: 3, sha256: sha256(new Uint8Array([1, 2, 3])) },
    ],
    metrics: { accuracy: 0.5 },
    timings: { startedAt: '2025-01-01T00:00:00.000Z', finishedAt: '2025-01-01T00:00:02.000Z', seconds: 2 },
    backend: 'cpu',
    versions: { pausepipe: '0.1.0' },
    log: 'log.txt',
  });
  assert.is(store.has(key), true);
  assert.equal(store.readManifest(key), manifest);
  assert.equal(store.keys(), [key]);
  assert.is(store.artifactsDir(key), path.join(root, 'objects', key.slice(0, 2), key, 'artifacts'));
  const weights = path.join(store.artifactsDir(key), 'model', 'weights.bin');
  assert.equal(readFileSync(weights), Buffer.from([1, 2, 3]));
  assert.is((await fsp.stat(weights)).mode & 0o222, 0, 'committed outputs are read-only');
  assert.is(readFileSync(path.join(store.entryDir(key), manifest.log), 'utf8'), 'step 1\n');
  assert.equal(await fsp.readdir(path.join(root, 'tmp')), []);
  assert.is(existsSync(entry.scratchDir), false);
  assert.is(existsSync(store.lockPath(key)), false);
  assert.is(await store.begin(key), 'cached');
});

commits('an entry of thousands of files, large ones among them, lists each with its size and hash, every one read-only', async () => {
  const key = keyFor('many');
  const entry = await mustBegin(key);
  const expected: { path: string; size: number; sha256: string }[] = [];
  const put = async (rel: string, bytes: Buffer, mode = 0o644) => {
    await fsp.mkdir(path.dirname(path.join(entry.outDir, rel)), { recursive: true });
    await fsp.writeFile(path.join(entry.outDir, rel), bytes, { mode });
    expected.push({ path: rel, size: bytes.length, sha256: sha256(bytes) });
  };
  for (let i = 0; i < 3000; i++) await put(`shards/${i % 7}/part-${i}.json`, Buffer.from(`{"id": ${i}}\n`));
  // Read in pieces: one of exactly two pieces, one ending part way through its third, an empty one; an executable keeps its x bits.
  await put('big/two-pieces.bin', Buffer.alloc(2 << 20, 1));
  await put('big/odd.bin', Buffer.alloc((2 << 20) + 12345, 2));
  await put('empty.txt', Buffer.alloc(0));
  await put('bin/tool.sh', Buffer.from('#!/bin/sh\n'), 0o755);
  const manifest = await entry.commit(fieldsFor('many'));
  expected.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
  assert.equal(manifest.outputs, expected);
  const modes = new Set(expected.map((o) => statSync(path.join(store.artifactsDir(key), o.path)).mode & 0o777));
  assert.equal([...modes].sort(), [0o444, 0o555]);
  assert.equal(await store.verify(), []);
});

commits('a run that writes nothing still commits, with an empty log', async () => {
  const key = keyFor('empty');
  const entry = await mustBegin(key);
  const manifest = await entry.commit(fieldsFor('empty'));
  assert.equal(manifest.outputs, []);
  assert.is(readFileSync(path.join(store.entryDir(key), 'log.txt'), 'utf8'), '');
});

commits('a NaN metric is stored as null, and commit returns what readManifest reads', async () => {
  const key = keyFor('nan');
  const entry = await mustBegin(key);
  const manifest = await entry.commit(fieldsFor('nan', { metrics: { loss: NaN, steps: 3 } }));
  assert.equal(manifest.metrics, { loss: null, steps: 3 });
  assert.equal(store.readManifest(key), manifest);
});

commits('commit refuses fields that would make an unreadable manifest, and keeps the entry pending', async () => {
  const key = keyFor('bad');
  const entry = await mustBegin(key);
  await fsp.writeFile(path.join(entry.outDir, 'a.txt'), 'a');
  const broken = { ...fieldsFor('bad'), metrics: undefined } as unknown as ReturnType<typeof fieldsFor>;
  try {
    await entry.commit(broken);
    assert.unreachable('commit should have thrown');
  } catch (error) {
    assert.is((error as Error).message, `cannot commit ${key}: manifest.json field metrics is not an object`);
  }
  assert.is(store.has(key), false);
  assert.is(readFileSync(path.join(entry.outDir, 'a.txt'), 'utf8'), 'a');
  await entry.commit(fieldsFor('bad'));
  assert.is(store.has(key), true);
});

commits('a symlinked output is stored as a copy of its target', async () => {
  const key = keyFor('link');
  const outside = `${root}-outside.txt`;
  await fsp.writeFile(outside, 'shared bytes');
  const entry = await mustBegin(key);
  await fsp.symlink(outside, path.join(entry.outDir, 'linked.txt'));
  const manifest = await entry.commit(fieldsFor('link'));
  const stored = path.join(store.artifactsDir(key), 'linked.txt');
  assert.is((await fsp.lstat(stored)).isFile(), true);
  assert.is(readFileSync(stored, 'utf8'), 'shared bytes');
  assert.equal(manifest.outputs, [{ path: 'linked.txt', size: 12, sha256: sha256('shared bytes') }]);
});

commits('abort removes the temp folder and releases the lock, but keeps scratch for a resume', async () => {
  const key = keyFor('aborted');
  const entry = await mustBegin(key);
  await fsp.writeFile(path.join(entry.outDir, 'half.bin'), 'half');
  await fsp.writeFile(path.join(entry.scratchDir, 'ckpt'), 'step 5');
  await entry.abort();
  assert.is(existsSync(path.dirname(entry.outDir)), false);
  assert.is(existsSync(store.lockPath(key)), false);
  assert.is(store.has(key), false);
  const again = await mustBegin(key);
  assert.is(readFileSync(path.join(again.scratchDir, 'ckpt'), 'utf8'), 'step 5');
  await again.abort();
});

commits('commit after abort, and a second commit, are refused', async () => {
  const entry = await mustBegin(keyFor('twice'));
  await entry.commit(fieldsFor('twice'));
  await assertRejects(entry.commit(fieldsFor('twice')), /already committed or aborted/);
  await entry.abort();
  assert.is(store.has(keyFor('twice')), true);
});

commits('a damaged committed entry is not reused and the next commit replaces it', async () => {
  const key = await commitSimple('damaged', 'first');
  await fsp.writeFile(path.join(store.entryDir(key), 'manifest.json'), '{"formatVersion":1,');
  assert.is(store.has(key), false);
  assert.equal(store.keys(), []);
  const entry = await mustBegin(key);
  await fsp.writeFile(path.join(entry.outDir, 'out.txt'), 'second');
  await entry.commit(fieldsFor('damaged'));
  assert.is(readFileSync(path.join(store.artifactsDir(key), 'out.txt'), 'utf8'), 'second');
  assert.equal(await store.verify(), []);
});

commits('keys that are not lowercase hex are refused before touching the disk', async () => {
  assert.throws(() => store.has('../../etc'), /invalid cache key "..\/..\/etc"/);
  await assertRejects(store.begin('ABCDEF0123'), /invalid cache key/);
});

commits.run();

const locks = suite('ArtifactStore locks');
locks.before.each(freshStore);
locks.after.each(removeStore);

locks('a second begin waits for the first and then gets cached', async () => {
  const key = keyFor('shared');
  const first = await mustBegin(key);
  const owners: LockOwner[] = [];
  const second = store.begin(key, { onWait: (owner) => owners.push(owner) });
  await sleep(100);
  assert.is(owners.length, 1);
  assert.is(owners[0]!.pid, process.pid);
  assert.is(owners[0]!.hostname, hostname());
  await fsp.writeFile(path.join(first.outDir, 'out.txt'), 'x');
  await first.commit(fieldsFor('shared'));
  assert.is(await second, 'cached');
});

locks('a waiter gets the lock after the holder aborts', async () => {
  const key = keyFor('retry');
  const first = await mustBegin(key);
  const second = store.begin(key);
  await sleep(50);
  await first.abort();
  const entry = await second;
  assert.is.not(entry, 'cached');
  await (entry as PendingEntry).abort();
});

locks('waiting stops when the signal aborts', async () => {
  const key = keyFor('cancel');
  const holder = await mustBegin(key);
  const controller = new AbortController();
  const waiting = store.begin(key, { signal: controller.signal });
  await sleep(30);
  controller.abort(new Error('user pressed ctrl-c'));
  await assertRejects(waiting, /user pressed ctrl-c/);
  await holder.abort();
});

locks('a lock whose owner died is taken over', async () => {
  const key = keyFor('orphan');
  await writeLock(key, {});
  const entry = await mustBegin(key);
  const lock = JSON.parse(readFileSync(store.lockPath(key), 'utf8')) as LockOwner;
  assert.is(lock.pid, process.pid);
  await entry.abort();
});

locks('an unreadable lock is taken over', async () => {
  const key = keyFor('garbage');
  await fsp.mkdir(path.join(root, 'locks'), { recursive: true });
  await fsp.writeFile(store.lockPath(key), '');
  await (await mustBegin(key)).abort();
});

withProc(locks)('a lock naming a live pid but another process start is taken over (pid reused)', async () => {
  const key = keyFor('reused');
  await writeLock(key, { pid: process.pid, procStart: '1' });
  await (await mustBegin(key)).abort();
});

locks('a lock held by another host is waited for while its lease is fresh', async () => {
  const key = keyFor('remote');
  await writeLock(key, { pid: 1, hostname: `not-${hostname()}`, leaseMs: 60_000, renewedAt: new Date().toISOString() });
  const owners: LockOwner[] = [];
  const controller = new AbortController();
  const waiting = store.begin(key, { signal: controller.signal, onWait: (owner) => owners.push(owner) });
  await sleep(200);
  controller.abort(new Error('gave up'));
  await assertRejects(waiting, /gave up/);
  assert.equal(owners.map((owner) => owner.hostname), [`not-${hostname()}`]);
  assert.is(JSON.parse(readFileSync(store.lockPath(key), 'utf8')).hostname, `not-${hostname()}`);
});

locks('many callers meeting a dead lock compute the entry exactly once', async () => {
  const key = keyFor('crowd');
  await writeLock(key, {});
  let computed = 0;
  const results = await Promise.all(Array.from({ length: 6 }, async () => {
    const entry = await store.begin(key);
    if (entry === 'cached') return 'cached';
    computed++;
    await sleep(20);
    await fsp.writeFile(path.join(entry.outDir, 'out.txt'), 'once');
    await entry.commit(fieldsFor('crowd'));
    return 'computed';
  }));
  assert.is(computed, 1);
  assert.equal(results.sort(), ['cached', 'cached', 'cached', 'cached', 'cached', 'computed']);
  assert.equal(await fsp.readdir(path.join(root, 'locks')), []);
});

locks.run();

const maintenance = suite('ArtifactStore gc and verify');
maintenance.before.each(freshStore);
maintenance.after.each(removeStore);

maintenance('gc removes entries not kept, reports the bytes freed and counts the entries it kept', async () => {
  const kept = await commitSimple('kept');
  const a = await commitSimple('a', '12345');
  const b = await commitSimple('b', '1234567');
  const bytesOf = async (key: string): Promise<number> => {
    let total = 0;
    for (const name of ['manifest.json', 'manifest.sha256', 'log.txt', 'artifacts/out.txt']) {
      total += (await fsp.stat(path.join(store.entryDir(key), name))).size;
    }
    return total;
  };
  const expectedBytes = (await bytesOf(a)) + (await bytesOf(b));
  const result = await store.gc(new Set([kept]));
  assert.equal(result, { removed: [a, b].sort(), freedBytes: expectedBytes, leftovers: [], foreign: [], kept: 1, inUse: 0, interrupted: false, statCachePruned: 0 });
  assert.equal(store.keys(), [kept]);
  assert.is(store.has(a), false);
  assert.equal(await fsp.readdir(path.join(root, 'tmp')), []);
  // The shard folders it emptied go too; a later commit into one makes it again.
  assert.equal(await fsp.readdir(path.join(root, 'objects')), [kept.slice(0, 2)]);
  assert.is(store.has(await commitSimple('a', '12345')), true);
});

maintenance('gc drops the stat cache\'s entries of files that are gone: removed entries\' outputs, deleted workspace files', async () => {
  const statCache = path.join(root, 'stat-cache.json');
  const hasher = new FileHasher(statCache);
  const commitRemembered = async (name: string) => {
    const entry = await store.begin(keyFor(name), { digester: hasher });
    if (entry === 'cached') throw new Error('expected to compute');
    for (const f of ['a.txt', 'b.txt']) await fsp.writeFile(path.join(entry.outDir, f), `${name} ${f}`);
    return (await entry.commit(fieldsFor(name))).key;
  };
  const kept = await commitRemembered('kept');
  const dropped = await commitRemembered('dropped');
  const workspaceFile = `${root}-outside.txt`;
  await fsp.writeFile(workspaceFile, 'a dep');
  await fsp.utimes(workspaceFile, new Date(2020, 0, 1), new Date(2020, 0, 1));
  await hasher.hash(workspaceFile);
  await hasher.save();
  const remembered = () => Object.keys((JSON.parse(readFileSync(statCache, 'utf8')) as { entries: object }).entries).sort();
  const outputsOf = (key: string) => ['a.txt', 'b.txt'].map((f) => path.join(store.artifactsDir(key), f));
  assert.equal(remembered(), [...outputsOf(kept), ...outputsOf(dropped), workspaceFile].sort());

  await fsp.rm(workspaceFile);
  // A dry run counts the files already gone and writes nothing.
  assert.is((await store.gc(new Set([kept]), { dryRun: true })).statCachePruned, 1);
  assert.equal(remembered(), [...outputsOf(kept), ...outputsOf(dropped), workspaceFile].sort());
  const result = await store.gc(new Set([kept]));
  assert.equal([result.removed, result.statCachePruned], [[dropped], 3]);
  assert.equal(remembered(), outputsOf(kept).sort());
  // What is left still spares a read: the kept entry is checked by a stat.
  const again = new FileHasher(statCache);
  assert.is((await store.inspect(kept, again)).state, 'intact');
  assert.is(again.filesRead, 0);
  assert.is((await store.gc(new Set([kept]))).statCachePruned, 0);
});

maintenance('gc removes a kept key\'s scratch beside its entry (a killed --force run\'s), unless a Slurm job record is in it', async () => {
  const forced = await commitSimple('forced');
  const queued = await commitSimple('queued');
  const resumable = keyFor('resumable');
  for (const key of [forced, queued, resumable]) {
    await fsp.mkdir(store.scratchDir(key), { recursive: true });
    await fsp.writeFile(path.join(store.scratchDir(key), 'ckpt'), '1234');
  }
  await fsp.mkdir(path.join(store.scratchDir(queued), 'slurm-job'));
  const result = await store.gc(new Set([forced, queued, resumable]));
  assert.equal(result, { removed: [], freedBytes: 4, leftovers: [`scratch/${forced}`], foreign: [], kept: 2, inUse: 0, interrupted: false, statCachePruned: 0 });
  assert.equal([forced, queued, resumable].map((key) => existsSync(store.scratchDir(key))), [false, true, true]);
  assert.equal(store.keys().sort(), [forced, queued].sort());
});

maintenance('gc removes a dead run\'s temp folder, lock and unneeded scratch, but not a live run\'s', async () => {
  const dead = keyFor('dead');
  const resumable = keyFor('resumable');
  const live = keyFor('live');
  await writeLock(dead, { nonce: 'abcdef' });
  await fsp.mkdir(path.join(root, 'tmp', `${dead}.999999.abcdef`, 'artifacts'), { recursive: true });
  await fsp.writeFile(path.join(root, 'tmp', `${dead}.999999.abcdef`, 'artifacts', 'half.bin'), '123');
  await fsp.mkdir(store.scratchDir(dead), { recursive: true });
  await fsp.writeFile(path.join(store.scratchDir(dead), 'ckpt'), '12');
  await fsp.mkdir(store.scratchDir(resumable), { recursive: true });
  const running = await mustBegin(live);
  await fsp.writeFile(path.join(running.outDir, 'partial.bin'), 'p');

  const result = await store.gc(new Set([resumable]));
  assert.equal(result, {
    removed: [],
    freedBytes: 5,
    leftovers: [`tmp/${dead}.999999.abcdef`, `scratch/${dead}`, `locks/${dead}.lock`],
    foreign: [],
    // resumable is kept, but only its scratch folder exists: no entry to count.
    kept: 0,
    inUse: 0,
    interrupted: false,
    statCachePruned: 0,
  });
  assert.is(existsSync(store.scratchDir(resumable)), true);
  assert.is(readFileSync(path.join(running.outDir, 'partial.bin'), 'utf8'), 'p');
  await running.commit(fieldsFor('live'));
  assert.equal(store.keys(), [live]);
});

maintenance('verify finds nothing wrong in a healthy store', async () => {
  await commitSimple('one');
  await commitSimple('two');
  assert.equal(await store.verify(), []);
});

maintenance('verify reads an entry of more files than a stack holds arguments, and reports its progress file by file', async () => {
  // 15,000 files under a 100 KiB stack stand for ~150,000 under the default 984 KiB, where spreading the listing into
  // push() overflowed, and verify took the failed listing for an empty folder: unlisted files went unreported.
  const count = 15_000;
  const key = keyFor('huge');
  const dir = store.entryDir(key);
  const parts = path.join(dir, 'artifacts', 'outs', 'parts');
  await fsp.mkdir(parts, { recursive: true });
  const outputs = [];
  for (let i = 0; i < count; i++) {
    writeFileSync(path.join(parts, `${i}`), i === 0 ? 'x' : '');
    outputs.push({ path: `outs/parts/${i}`, size: 0, sha256: sha256('') });
  }
  outputs.sort((a, b) => (a.path < b.path ? -1 : 1));
  writeFileSync(path.join(parts, 'stray'), '');
  const manifest = { formatVersion: 1, key, ...fieldsFor('huge'), outputs, log: 'log.txt' };
  const text = `${JSON.stringify(manifest)}\n`;
  await fsp.writeFile(path.join(dir, 'manifest.json'), text);
  await fsp.writeFile(path.join(dir, 'manifest.sha256'), `${sha256(text)}\n`);
  await fsp.writeFile(path.join(dir, 'log.txt'), '');
  await fsp.writeFile(path.join(root, CACHE_MARKER), '{}');

  const child = spawn(process.execPath, ['--stack-size=100', '--import', 'tsx', path.join(projectRoot, 'tests/cache/verify-child.ts'), root], { cwd: projectRoot });
  let out = '';
  let err = '';
  child.stdout.on('data', (c: Buffer) => { out += c.toString(); });
  child.stderr.on('data', (c: Buffer) => { err += c.toString(); });
  assert.is(await new Promise((resolve) => child.on('exit', resolve)), 0, err);
  assert.equal(JSON.parse(out), {
    problems: [{
      key, severity: 'damage',
      problem: `output outs/parts/0 has changed: now 1 bytes, sha256 ${sha256('x')}; the manifest says 0 bytes, sha256 ${sha256('')}`,
    }, { key, severity: 'damage', problem: 'artifacts/outs/parts/stray is not listed in the manifest' }],
    progress: { calls: count, inOrder: true, last: { done: { files: count, bytes: 0 }, total: { files: count, bytes: 0 } } },
  }, err);
});

maintenance('verify detects one corrupted byte in an output', async () => {
  const key = await commitSimple('flip', 'abcdef');
  const file = path.join(store.artifactsDir(key), 'out.txt');
  await fsp.chmod(file, 0o644);
  await fsp.writeFile(file, 'abcdeF');
  assert.equal(await store.verify(), [{
    key,
    problem: `output out.txt has changed: now 6 bytes, sha256 ${sha256('abcdeF')}; the manifest says 6 bytes, sha256 ${sha256('abcdef')}`,
    severity: 'damage',
  }]);
});

maintenance('verify reports missing and unlisted outputs', async () => {
  const key = await commitSimple('files');
  await fsp.rm(path.join(store.artifactsDir(key), 'out.txt'));
  await fsp.writeFile(path.join(store.artifactsDir(key), 'extra.txt'), 'x');
  assert.equal(await store.verify(), [
    { key, problem: 'output out.txt is missing', severity: 'damage' },
    { key, problem: 'artifacts/extra.txt is not listed in the manifest', severity: 'damage' },
  ]);
});

maintenance('verify reports a manifest that does not parse, an edited one, and one in the wrong folder', async () => {
  const broken = await commitSimple('broken');
  const edited = await commitSimple('edited');
  const moved = await commitSimple('moved');
  await fsp.writeFile(path.join(store.entryDir(broken), 'manifest.json'), '{"formatVersion": 1');
  const editedPath = path.join(store.entryDir(edited), 'manifest.json');
  await fsp.writeFile(editedPath, readFileSync(editedPath, 'utf8').replace('"accuracy": 0.5', '"accuracy": 0.9'));
  const elsewhere = 'ab'.repeat(32);
  await fsp.mkdir(path.dirname(store.entryDir(elsewhere)), { recursive: true });
  await fsp.rename(store.entryDir(moved), store.entryDir(elsewhere));

  const problems = await store.verify();
  const byKey = new Map(problems.map((p) => [p.key, p.problem]));
  assert.is(problems.length, 3);
  assert.match(byKey.get(broken)!, /^manifest\.json does not parse: /);
  assert.is(byKey.get(edited), 'manifest.json does not match manifest.sha256 (edited or corrupted)');
  assert.is(byKey.get(elsewhere), `manifest.json names key "${moved}" but sits in the folder of ${elsewhere}`);
  assert.is(store.has(broken), false);
  // An edited manifest is not served: its metrics could be anything.
  assert.is(store.has(edited), false);
});

maintenance('verify reports a manifest whose ingredients do not hash to its key', async () => {
  const key = keyFor('forged');
  const entry = await mustBegin(key);
  await entry.commit(fieldsFor('forged', { params: { command: 'echo something else' } }));
  const problems = await store.verify();
  assert.is(problems.length, 1);
  assert.match(problems[0]!.problem, /^the manifest's kind, kindVersion, params, inputs and files hash to [0-9a-f]{64}, not to this key$/);
});

maintenance('verify reports a dead run\'s temp folder and lock but not a live one\'s', async () => {
  const dead = keyFor('dead');
  await writeLock(dead, { nonce: 'abcdef' });
  await fsp.mkdir(path.join(root, 'tmp', `${dead}.999999.abcdef`), { recursive: true });
  const running = await mustBegin(keyFor('live'));
  const problems = await store.verify();
  assert.equal(problems.map((p) => p.key), [dead, dead]);
  assert.is(problems[0]!.problem, `tmp/${dead}.999999.abcdef is left over from a run that died (gc removes it)`);
  assert.match(problems[1]!.problem, new RegExp(`^locks/${dead}\\.lock is held by pid \\d+ on ${hostname()} since 2025-01-01T00:00:00.000Z, lease renewed \\d+ s ago, which is no longer running`));
  assert.equal(problems.map((p) => p.severity), ['leftover', 'leftover']);
  await running.abort();
});

maintenance.run();

const integrity = suite('ArtifactStore integrity');
integrity.before.each(freshStore);
integrity.after.each(removeStore);

function hasher(): FileHasher {
  return new FileHasher(path.join(root, 'stat-cache.json'));
}

/** Overwrite a committed (read-only) file, as a careless user or a stage running as root would. */
async function tamper(file: string, content: string): Promise<void> {
  await fsp.chmod(file, 0o644);
  await fsp.writeFile(file, content);
}

/** Commit `name` computed from the entries `inputs`, recording what it read as the runner does. */
async function commitFrom(name: string, inputs: string[], content = `out of ${name}`): Promise<string> {
  const key = keyFor(name);
  const entry = await mustBegin(key);
  const inputContents = await store.checkInputs(inputs, hasher());
  await fsp.writeFile(path.join(entry.outDir, 'out.txt'), content);
  await entry.commit(fieldsFor(name, { inputContents }));
  return key;
}

integrity('inspect tells an intact entry from a missing one and from one with a changed output', async () => {
  const key = await commitSimple('checked', 'abc');
  assert.equal(await store.inspect(keyFor('never'), hasher()), { state: 'absent' });
  assert.is((await store.inspect(key, hasher())).state, 'intact');
  await tamper(path.join(store.artifactsDir(key), 'out.txt'), 'abd');
  assert.equal(await store.inspect(key, hasher()), { state: 'damaged', problem: 'output out.txt has changed since it was committed' });
  await fsp.rm(path.join(store.artifactsDir(key), 'out.txt'));
  assert.equal(await store.inspect(key, hasher()), { state: 'damaged', problem: 'output out.txt is missing' });
});

integrity('a committed entry is checked by a stat, not a read, once the commit taught the hasher its files', async () => {
  const h = hasher();
  const key = keyFor('taught');
  const entry = await store.begin(key, { digester: h });
  if (entry === 'cached') throw new Error('expected to compute');
  await fsp.writeFile(path.join(entry.outDir, 'out.txt'), 'x'.repeat(1000));
  await entry.commit(fieldsFor('taught'));
  assert.is((await store.inspect(key, h)).state, 'intact');
  assert.is(h.filesRead, 0);
});

integrity('begin with a digester replaces a damaged entry instead of serving it', async () => {
  const key = await commitSimple('rotten', 'good');
  await tamper(path.join(store.artifactsDir(key), 'out.txt'), 'evil');
  assert.is(await store.begin(key), 'cached', 'without a digester only the manifest is looked at');
  const entry = await store.begin(key, { digester: hasher() });
  if (entry === 'cached') throw new Error('a damaged entry was served');
  await fsp.writeFile(path.join(entry.outDir, 'out.txt'), 'good');
  await entry.commit(fieldsFor('rotten'));
  assert.is(readFileSync(path.join(store.artifactsDir(key), 'out.txt'), 'utf8'), 'good');
  assert.equal(await store.verify(), []);
});

integrity('checkInputs returns what each input holds and refuses a damaged one, naming it', async () => {
  const up = await commitSimple('up', 'bytes');
  assert.equal(await store.checkInputs([up, up], hasher()), { [up]: outputsDigest(store.readManifest(up)!.outputs) });
  await tamper(path.join(store.artifactsDir(up), 'out.txt'), 'BYTES');
  await assertRejects(store.checkInputs([up], hasher()),
    new RegExp(`^input entry ${up.slice(0, 12)} is damaged: output out\\.txt has changed since it was committed; run \`pausepipe verify --repair\``));
});

integrity('an entry computed from bytes its input no longer holds is damaged for plan and verify, and repair removes it', async () => {
  const up = await commitSimple('up', 'first result');
  const down = await commitFrom('down', [up]);
  assert.is((await store.inspect(down, hasher())).state, 'intact');
  assert.equal(store.readManifest(down)!.inputContents, { [up]: outputsDigest(store.readManifest(up)!.outputs) });
  // The input is damaged, removed, and recomputed by a step that is not bit-for-bit reproducible.
  await tamper(path.join(store.artifactsDir(up), 'out.txt'), 'first resulT');
  assert.equal(await store.repair([{ key: up, problem: 'damaged', severity: 'damage' }]), [up]);
  await commitSimple('up', 'second result');
  assert.equal(await store.inspect(down, hasher()), {
    state: 'damaged', problem: `computed from other bytes of its input up (${up.slice(0, 12)}) than that entry holds now`,
  });
  const problems = await store.verify();
  assert.equal(problems, [{
    key: down, severity: 'damage',
    problem: `computed from bytes of its input up (${up}) that no entry holds any more (that input was recomputed with other results)`,
  }]);
  assert.equal(await store.repair(problems), [down]);
  assert.equal(store.keys(), [up]);
  assert.equal(await store.verify(), []);
});

integrity('repair checks each entry again under its lock: one a run computed again since verify stays', async () => {
  const key = await commitSimple('redone', 'good');
  await tamper(path.join(store.artifactsDir(key), 'out.txt'), 'evil');
  const problems = await store.verify();
  assert.equal(problems.map((p) => p.key), [key]);
  // A run replaces the damaged entry before the repair gets to it.
  const entry = await store.begin(key, { digester: hasher() });
  if (entry === 'cached') throw new Error('a damaged entry was served');
  await fsp.writeFile(path.join(entry.outDir, 'out.txt'), 'good');
  await entry.commit(fieldsFor('redone'));
  assert.equal(await store.repair(problems), []);
  assert.is(readFileSync(path.join(store.artifactsDir(key), 'out.txt'), 'utf8'), 'good');
});

integrity.run();

const guards = suite('ArtifactStore guards');
guards.before.each(freshStore);
guards.after.each(removeStore);

guards('gc and verify refuse a folder that is not a cache and delete nothing in it', async () => {
  await fsp.mkdir(path.join(root, 'objects', 'ab'), { recursive: true });
  await fsp.writeFile(path.join(root, 'objects', 'ab', 'cdef0123'), 'a git object');
  await fsp.writeFile(path.join(root, 'HEAD'), 'ref: refs/heads/main\n');
  for (const attempt of [store.gc(new Set()), store.gc(new Set(), { dryRun: true }), store.verify()]) {
    await assertRejects(attempt, new RegExp(`^${root} is not a pausepipe cache: it holds files the cache did not write and no ${CACHE_MARKER}$`));
  }
  await assertRejects(store.begin(keyFor('x')), /is not a pausepipe cache/);
  assert.equal(await fsp.readdir(root), ['HEAD', 'objects']);
  assert.is(readFileSync(path.join(root, 'objects', 'ab', 'cdef0123'), 'utf8'), 'a git object');
  const missing = new ArtifactStore(path.join(root, 'nothing-here'));
  await assertRejects(missing.verify(), /is not a pausepipe cache: it does not exist or is empty/);
  assert.ok(new NotACacheError(root, 'why') instanceof Error);
});

guards('a cache made before the marker existed is recognised by its contents, and gets the marker on first write', async () => {
  const key = await commitSimple('old');
  await fsp.rm(path.join(root, CACHE_MARKER));
  await fsp.writeFile(path.join(root, 'stat-cache.json'), '{}');
  const legacy = new ArtifactStore(root);
  assert.is(legacy.kindOfRoot(), 'cache');
  assert.equal(await legacy.verify(), []);
  await legacy.init();
  assert.is(existsSync(path.join(root, CACHE_MARKER)), true);
  assert.equal(legacy.keys(), [key]);
});

guards('gc removes only names the cache writes and reports the rest as foreign', async () => {
  const key = await commitSimple('gone');
  await fsp.mkdir(path.join(root, 'objects', 'zz', 'not-a-key'), { recursive: true });
  await fsp.mkdir(path.join(root, 'tmp', 'my-notes'), { recursive: true });
  await fsp.writeFile(path.join(root, 'locks', 'README'), 'mine');
  await fsp.writeFile(path.join(root, 'todo.txt'), 'mine');
  const dry = await store.gc(new Set(), { dryRun: true });
  assert.equal(dry.removed, [key]);
  assert.is(store.has(key), true, 'a dry run removes nothing');
  const r = await store.gc(new Set());
  assert.equal(r.removed, [key]);
  assert.is(r.freedBytes, dry.freedBytes);
  assert.equal(r.foreign, ['objects/zz/not-a-key', 'tmp/my-notes', 'locks/README', 'todo.txt']);
  assert.is(existsSync(path.join(root, 'objects', 'zz', 'not-a-key')), true);
  assert.is(readFileSync(path.join(root, 'todo.txt'), 'utf8'), 'mine');
  assert.equal(await fsp.readdir(path.join(root, 'locks')), ['README']);
});

guards('gc keeps what a live run registered as in use, and removes it once the run is over', async () => {
  const used = await commitSimple('used');
  const unused = await commitSimple('unused');
  const use = await store.registerUse([used]);
  const during = await store.gc(new Set());
  assert.equal([during.removed, during.inUse], [[unused], 1]);
  assert.is(store.has(used), true);
  await use.release();
  assert.equal((await store.gc(new Set())).removed, [used]);
});

guards('a run waits while a live gc holds the cache, and a gc changes the generation a run planned with', async () => {
  await store.init();
  const before = store.gcGeneration();
  await fsp.mkdir(path.join(root, 'locks'), { recursive: true });
  const gcLock = await acquireLock(path.join(root, 'locks', 'gc.lock'));
  let waited = false;
  const waiting = store.waitForGc({ onWait: () => { waited = true; } }).then(() => 'done');
  assert.is(await Promise.race([waiting, sleep(300).then(() => 'still waiting')]), 'still waiting');
  await gcLock.release();
  assert.is(await waiting, 'done');
  assert.is(waited, true);
  await store.gc(new Set());
  assert.is.not(store.gcGeneration(), before);
});

guards('a gc stopped by its signal part way removes nothing more, releases its lock, and says it was stopped', async () => {
  for (let i = 0; i < 20; i++) await commitSimple(`many${i}`);
  const stop = new AbortController();
  const stopping = store.gc(new Set(), { signal: stop.signal });
  // Stopped once the first entry is gone: the gc is under way.
  const watch = () => (store.keys().length < 20 ? stop.abort() : setImmediate(watch));
  watch();
  const r = await stopping;
  assert.is(r.interrupted, true);
  assert.ok(r.removed.length > 0 && r.removed.length < 20, `${r.removed.length} removed`);
  assert.is(store.keys().length, 20 - r.removed.length);
  assert.equal(readdirSync(path.join(root, 'locks')).filter((n) => n.startsWith('gc')), []);
  const rest = await store.gc(new Set());
  assert.equal([rest.interrupted, rest.removed.length, store.keys()], [false, 20 - r.removed.length, []]);
});

guards('a gc publishes a new generation when it ends: a run that planned while it was deleting plans again', async () => {
  for (let i = 0; i < 100; i++) await commitSimple(`doomed${i}`);
  // What a run planning while some entries were deleted and others not yet would have read.
  const seen = new Set<string>();
  let polling = true;
  const poll = () => {
    const left = store.keys().length;
    if (left > 0 && left < 100) seen.add(store.gcGeneration());
    if (polling) setImmediate(poll);
  };
  poll();
  const gc = await store.gc(new Set());
  polling = false;
  assert.is(gc.removed.length, 100);
  assert.ok(seen.size > 0, 'the poll ran while entries were deleted');
  assert.not.ok(seen.has(store.gcGeneration()), 'the generation after the gc is none a run saw while it deleted');
});

guards('verify sorts findings: leftovers of a killed run are not damage', async () => {
  const dead = keyFor('dead');
  await writeLock(dead, { nonce: 'abcdef' });
  const problems = await store.verify();
  assert.equal(problems.map((p) => p.severity), ['leftover']);
});

guards.run();

const processes = suite('ArtifactStore across processes');
processes.before.each(freshStore);
processes.after.each(removeStore);

interface Child {
  exited: Promise<number | null>;
  output: () => string;
  waitFor: (line: string) => Promise<void>;
  kill: (signal: NodeJS.Signals) => void;
}

function startChild(args: string[]): Child {
  const child = spawn(process.execPath, ['--import', 'tsx', childScript, ...args], { cwd: projectRoot, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (chunk: Buffer) => { stdout += chunk.toString(); });
  child.stderr.on('data', (chunk: Buffer) => { stderr += chunk.toString(); });
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  return {
    exited,
    output: () => stdout,
    kill: (signal) => child.kill(signal),
    waitFor: async (line) => {
      const deadline = Date.now() + 30_000;
      while (!stdout.split('\n').includes(line)) {
        if (child.exitCode !== null || Date.now() > deadline) throw new Error(`child never printed ${line}; stderr:\n${stderr}`);
        await sleep(10);
      }
    },
  };
}

processes('a run killed mid-write leaves nothing that looks complete, and the next begin takes over', async () => {
  const key = keyFor('killed');
  const child = startChild(['hang', root, 'killed']);
  await child.waitFor('ready');
  child.kill('SIGKILL');
  await child.exited;

  assert.is(store.has(key), false);
  assert.equal(store.keys(), []);
  assert.is(existsSync(store.lockPath(key)), true);
  const leftovers = await fsp.readdir(path.join(root, 'tmp'));
  assert.is(leftovers.length, 1);
  assert.equal((await store.verify()).map((p) => p.problem.split(' ')[0]), [`tmp/${leftovers[0]}`, `locks/${key}.lock`]);

  const entry = await mustBegin(key);
  assert.is(readFileSync(path.join(entry.scratchDir, 'checkpoint-step-10.bin'), 'utf8'), 'step 10');
  assert.equal(await fsp.readdir(entry.outDir), []);
  // Taking the key over also clears the dead run's temp folder: only the new one is left.
  assert.equal(await fsp.readdir(path.join(root, 'tmp')), [path.basename(path.dirname(entry.outDir))]);
  await fsp.writeFile(path.join(entry.outDir, 'model.bin'), 'complete');
  await entry.commit(fieldsFor('killed'));
  assert.is(store.has(key), true);

  const result = await store.gc(new Set([key]));
  assert.equal(result.leftovers, []);
  assert.is(result.freedBytes, 0);
  assert.equal(await store.verify(), []);
});

processes('a run killed part way through committing thousands of files leaves no entry, and the next begin starts clean', async () => {
  const key = keyFor('killed-committing');
  const count = 4000;
  const child = startChild(['commit-many', root, 'killed-committing', String(count)]);
  await child.waitFor('committing');
  const [temp] = await fsp.readdir(path.join(root, 'tmp'));
  const parts = path.join(root, 'tmp', temp!, 'artifacts', 'parts');
  // Killed as soon as the commit has made some output read-only: sealing has started and cannot have finished.
  const sealedSome = () => readdirSync(parts).some((n) => (statSync(path.join(parts, n)).mode & 0o222) === 0);
  while (!sealedSome()) await sleep(1);
  child.kill('SIGKILL');
  await child.exited;
  assert.not.match(child.output(), /committed/);

  assert.is(store.has(key), false);
  assert.equal(store.keys(), []);
  assert.is(existsSync(store.entryDir(key)), false);
  const entry = await mustBegin(key);
  assert.equal(await fsp.readdir(entry.outDir), []);
  assert.equal(await fsp.readdir(path.join(root, 'tmp')), [path.basename(path.dirname(entry.outDir))]);
  await entry.abort();
});

processes('two processes racing begin() on one key compute it once', async () => {
  const key = keyFor('raced');
  // Beside the cache, not in it: a cache holds only what it writes.
  const counter = `${root}-computed.txt`;
  const go = `${root}-go`;
  const children = [startChild(['race', root, 'raced', counter, go]), startChild(['race', root, 'raced', counter, go])];
  await Promise.all(children.map((child) => child.waitFor('loaded')));
  await fsp.writeFile(go, '');
  assert.equal(await Promise.all(children.map((child) => child.exited)), [0, 0]);

  assert.is(readFileSync(counter, 'utf8').trim().split('\n').length, 1);
  assert.equal(children.map((child) => child.output().trim().split('\n').pop()).sort(), ['cached', 'computed']);
  assert.is(store.has(key), true);
  assert.equal(await store.verify(), []);
});

processes.run();

const roots = suite('resolveCacheRoot');
let savedEnv: string | undefined;
roots.before.each(() => {
  savedEnv = process.env.PAUSEPIPE_CACHE;
  delete process.env.PAUSEPIPE_CACHE;
});
roots.after.each(() => {
  if (savedEnv === undefined) delete process.env.PAUSEPIPE_CACHE;
  else process.env.PAUSEPIPE_CACHE = savedEnv;
});

roots('defaults to .pausepipe inside the workspace', () => {
  assert.is(resolveCacheRoot('/work/proj'), path.resolve('/work/proj/.pausepipe'));
});

roots('prefers $PAUSEPIPE_CACHE over the default, and the flag over both', () => {
  process.env.PAUSEPIPE_CACHE = '/scratch/cache';
  assert.is(resolveCacheRoot('/work/proj'), path.resolve('/scratch/cache'));
  assert.is(resolveCacheRoot('/work/proj', '/fast/cache'), path.resolve('/fast/cache'));
});

roots('ignores empty values and resolves relative ones against the current folder', () => {
  process.env.PAUSEPIPE_CACHE = '';
  assert.is(resolveCacheRoot('/work/proj', ' '), path.resolve('/work/proj/.pausepipe'));
  assert.is(resolveCacheRoot('/work/proj', 'cache'), path.resolve(process.cwd(), 'cache'));
});

roots.run();

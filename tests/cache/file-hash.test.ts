// Tests for FileHasher: exact content hashes, the stat cache that skips unchanged files, and folder hashes.
import { createHash } from 'node:crypto';
import * as fsp from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { FileHasher, FileMissingError } from '../../cache/file-hash.ts';
import { assertRejects } from './fixtures.ts';

const test = suite('FileHasher');

let dir = '';
const HOUR_AGO = new Date(Date.now() - 3_600_000);

test.before.each(async () => {
  dir = await fsp.mkdtemp(path.join(tmpdir(), 'pausepipe-file-hash-'));
});

test.after.each(async () => {
  await fsp.rm(dir, { recursive: true, force: true });
});

function sha(bytes: string | Buffer): string {
  return createHash('sha256').update(bytes).digest('hex');
}

/** Write a file whose mtime is an hour old, so the stat cache may remember it. */
async function writeOld(file: string, content: string, when = HOUR_AGO): Promise<void> {
  await fsp.mkdir(path.dirname(file), { recursive: true });
  await fsp.writeFile(file, content);
  await fsp.utimes(file, when, when);
}

test('hashes a file as the sha256 of its bytes', async () => {
  const file = path.join(dir, 'a.txt');
  await writeOld(file, 'hello\n');
  const hasher = new FileHasher(path.join(dir, 'stat-cache.json'));
  assert.is(await hasher.hash(file), sha('hello\n'));
});

test('streams a file larger than one read chunk', async () => {
  const file = path.join(dir, 'big.bin');
  const bytes = Buffer.alloc(3 * 1024 * 1024 + 17);
  for (let i = 0; i < bytes.length; i++) bytes[i] = (i * 31) & 0xff;
  await fsp.writeFile(file, bytes);
  const hasher = new FileHasher(path.join(dir, 'stat-cache.json'));
  assert.is(await hasher.hash(file), sha(bytes));
});

test('reads an unchanged file once, also after save() in a new hasher', async () => {
  const file = path.join(dir, 'data.jsonl');
  const statCache = path.join(dir, 'cache', 'stat-cache.json');
  await writeOld(file, '{"q":1}\n');
  const first = new FileHasher(statCache);
  const hash = await first.hash(file);
  await first.hash(file);
  assert.is(first.filesRead, 1);
  await first.save();

  const second = new FileHasher(statCache);
  assert.is(await second.hash(file), hash);
  assert.is(second.filesRead, 0);
});

test('notices a content change with the same size', async () => {
  const file = path.join(dir, 'data.jsonl');
  const statCache = path.join(dir, 'stat-cache.json');
  await writeOld(file, 'aaaa');
  const first = new FileHasher(statCache);
  assert.is(await first.hash(file), sha('aaaa'));
  await first.save();

  await fsp.writeFile(file, 'bbbb');
  const second = new FileHasher(statCache);
  assert.is(await second.hash(file), sha('bbbb'));
  assert.is(second.filesRead, 1);
});

test('notices a same-size change even when the old mtime is put back', async () => {
  const file = path.join(dir, 'data.jsonl');
  await writeOld(file, 'aaaa');
  const hasher = new FileHasher(path.join(dir, 'stat-cache.json'));
  assert.is(await hasher.hash(file), sha('aaaa'));
  await writeOld(file, 'bbbb');
  assert.is(await hasher.hash(file), sha('bbbb'));
  assert.is(hasher.filesRead, 2);
});

test('re-reads a file modified within the last seconds, since its mtime may not change on the next write', async () => {
  const file = path.join(dir, 'fresh.txt');
  await fsp.writeFile(file, 'new');
  const hasher = new FileHasher(path.join(dir, 'stat-cache.json'));
  await hasher.hash(file);
  await hasher.hash(file);
  assert.is(hasher.filesRead, 2);
});

test('throws FileMissingError naming the path of a missing file', async () => {
  const hasher = new FileHasher(path.join(dir, 'stat-cache.json'));
  const missing = path.join(dir, 'nope', 'x.txt');
  try {
    await hasher.hash(missing);
    assert.unreachable('hash() should have thrown');
  } catch (error) {
    assert.instance(error, FileMissingError);
    assert.is((error as FileMissingError).path, missing);
    assert.is((error as Error).message, `${missing} does not exist`);
  }
});

test('ignores a damaged stat cache and still hashes correctly', async () => {
  const file = path.join(dir, 'a.txt');
  const statCache = path.join(dir, 'stat-cache.json');
  await writeOld(file, 'x');
  await fsp.writeFile(statCache, '{"format":1,"entries":{');
  const hasher = new FileHasher(statCache);
  assert.is(await hasher.hash(file), sha('x'));
  await hasher.save();
  const again = new FileHasher(statCache);
  await again.hash(file);
  assert.is(again.filesRead, 0);
});

const folders = suite('FileHasher folders');

folders.before.each(async () => {
  dir = await fsp.mkdtemp(path.join(tmpdir(), 'pausepipe-folder-hash-'));
});

folders.after.each(async () => {
  await fsp.rm(dir, { recursive: true, force: true });
});

async function makeFolder(root: string, files: Record<string, string>): Promise<void> {
  for (const [rel, content] of Object.entries(files)) await writeOld(path.join(root, rel), content);
}

folders('is pinned for a known folder', async () => {
  // Equals sha256('pausepipe-folder-v1\n' + '[["a/c.txt",sha256("C")],["b.txt",sha256("B")]]'), checked with Python's hashlib.
  await makeFolder(path.join(dir, 'd'), { 'b.txt': 'B', 'a/c.txt': 'C' });
  const hasher = new FileHasher(path.join(dir, 'stat-cache.json'));
  assert.is(await hasher.hash(path.join(dir, 'd')), '076433924c4c52da995b31a4f0b6cdef5df333f5756be89e646d401631b0ec7c');
});

folders('does not depend on the order files were created in', async () => {
  await makeFolder(path.join(dir, 'one'), { 'a.txt': 'A', 'sub/b.txt': 'B', 'z.txt': 'Z' });
  await makeFolder(path.join(dir, 'two'), { 'z.txt': 'Z', 'sub/b.txt': 'B', 'a.txt': 'A' });
  const hasher = new FileHasher(path.join(dir, 'stat-cache.json'));
  assert.is(await hasher.hash(path.join(dir, 'one')), await hasher.hash(path.join(dir, 'two')));
});

folders('changes when a file is renamed, edited, added or moved into a subfolder', async () => {
  const root = path.join(dir, 'd');
  await makeFolder(root, { 'a.txt': 'A', 'b.txt': 'B' });
  const hasher = new FileHasher(path.join(dir, 'stat-cache.json'));
  const seen = new Set([await hasher.hash(root)]);
  await fsp.rename(path.join(root, 'b.txt'), path.join(root, 'c.txt'));
  seen.add(await hasher.hash(root));
  await writeOld(path.join(root, 'c.txt'), 'C');
  seen.add(await hasher.hash(root));
  await writeOld(path.join(root, 'new.txt'), '');
  seen.add(await hasher.hash(root));
  await fsp.mkdir(path.join(root, 'sub'));
  await fsp.rename(path.join(root, 'new.txt'), path.join(root, 'sub', 'new.txt'));
  seen.add(await hasher.hash(root));
  assert.is(seen.size, 5);
});

folders('skips the cache it serves inside a hashed folder, wherever the cache lives', async () => {
  const root = path.join(dir, 'd');
  await makeFolder(root, { 'a.txt': 'A' });
  const cacheRoot = path.join(root, 'my-cache');
  const before = await new FileHasher(path.join(cacheRoot, 'stat-cache.json'), { cacheRoot }).hash(root);
  await makeFolder(cacheRoot, { 'objects/x': 'y', 'stat-cache.json': '{}' });
  assert.is(await new FileHasher(path.join(cacheRoot, 'stat-cache.json'), { cacheRoot }).hash(root), before);
  assert.is.not(await new FileHasher(path.join(dir, 'stat-cache.json')).hash(root), before, 'another hasher counts the folder');
});

folders('ignores .git and .pausepipe at any depth, and nothing else', async () => {
  const root = path.join(dir, 'd');
  await makeFolder(root, { 'a.txt': 'A', 'sub/b.txt': 'B' });
  const hasher = new FileHasher(path.join(dir, 'stat-cache.json'));
  const before = await hasher.hash(root);
  await makeFolder(root, { '.git/HEAD': 'ref', '.pausepipe/objects/x': 'y', 'sub/.git/config': 'c' });
  assert.is(await hasher.hash(root), before);
  await makeFolder(root, { '.gitignore': '*.log' });
  assert.is.not(await hasher.hash(root), before);
});

folders('differs from the hash of a file with the same bytes as its listing', async () => {
  await makeFolder(path.join(dir, 'd'), { 'a.txt': 'A' });
  const hasher = new FileHasher(path.join(dir, 'stat-cache.json'));
  assert.is.not(await hasher.hash(path.join(dir, 'd')), await hasher.hash(path.join(dir, 'd', 'a.txt')));
});

folders('uses the stat cache for the files inside', async () => {
  const root = path.join(dir, 'd');
  await makeFolder(root, { 'a.txt': 'A', 'b/c.txt': 'C', 'b/d.txt': 'D' });
  const hasher = new FileHasher(path.join(dir, 'stat-cache.json'));
  const first = await hasher.hash(root);
  assert.is(hasher.filesRead, 3);
  assert.is(await hasher.hash(root), first);
  assert.is(hasher.filesRead, 3);
});

folders('hashes a symlinked file as its content and reports a dangling link as missing', async () => {
  const root = path.join(dir, 'd');
  await makeFolder(root, { 'a.txt': 'A' });
  await makeFolder(path.join(dir, 'copy'), { 'a.txt': 'A', 'link.txt': 'A' });
  await fsp.symlink(path.join(root, 'a.txt'), path.join(root, 'link.txt'));
  const hasher = new FileHasher(path.join(dir, 'stat-cache.json'));
  assert.is(await hasher.hash(root), await hasher.hash(path.join(dir, 'copy')));
  await fsp.symlink(path.join(dir, 'gone.txt'), path.join(root, 'dangling.txt'));
  try {
    await hasher.hash(root);
    assert.unreachable('hash() should have thrown');
  } catch (error) {
    assert.instance(error, FileMissingError);
    assert.is((error as FileMissingError).path, path.join(root, 'dangling.txt'));
  }
});

folders('refuses a symlink loop instead of recursing forever', async () => {
  const root = path.join(dir, 'd');
  await makeFolder(root, { 'a.txt': 'A' });
  await fsp.symlink(root, path.join(root, 'loop'));
  const hasher = new FileHasher(path.join(dir, 'stat-cache.json'));
  await assertRejects(hasher.hash(root), /links back to a folder that contains it/);
});

test.run();
folders.run();

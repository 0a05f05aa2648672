// Reading a pipeline's files as they were at a git revision: what git has, what only the disk has, what is refused.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { mkdir, symlink, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { execa } from 'execa';
import { MAX_FILE_BYTES } from '../../grammar/limits.ts';
import { readIncludeAtRevision, renamedSince, resolveRevision, type Revision } from '../../runtime/git-revision.ts';
import { tempWorkspace } from '../helpers/runner.ts';

async function repository(): Promise<{ outer: string; repo: string; rev: Revision }> {
  const outer = await tempWorkspace('pausepipe-gitrev-');
  const repo = path.join(outer, 'repo');
  await mkdir(repo);
  const git = (...args: string[]) => execa('git', ['-c', 'user.name=t', '-c', 'user.email=t@t', ...args], { cwd: repo });
  await git('init', '-q');
  await writeFile(path.join(repo, 'common.pipe'), 'let wd = 0.01\n');
  await writeFile(path.join(repo, 'notes.txt'), 'let secret = 1\n');
  await writeFile(path.join(repo, 'big.pipe'), `# ${'x'.repeat(MAX_FILE_BYTES)}\n`);
  await symlink('common.pipe', path.join(repo, 'link.pipe'));
  await writeFile(path.join(repo, '.gitignore'), 'local.pipe\n');
  await git('add', '.');
  await git('commit', '-qm', 'first');
  await writeFile(path.join(repo, 'common.pipe'), 'let wd = 0.02\n');
  await writeFile(path.join(repo, 'added.pipe'), 'let added = 1\n');
  await git('add', 'added.pipe');
  await writeFile(path.join(repo, 'local.pipe'), 'let local = 1\n');
  await writeFile(path.join(repo, 'untracked.pipe'), 'let untracked = 1\n');
  await writeFile(path.join(outer, 'outside.pipe'), 'let outside = 1\n');
  const rev = resolveRevision(path.join(repo, 'main.pipe'), 'HEAD');
  if (typeof rev === 'string') throw new Error(rev);
  return { outer, repo, rev };
}

test('an include reads as git has it at the revision; one git has no history of reads from the disk', async () => {
  const { outer, repo, rev } = await repository();
  assert.is(readIncludeAtRevision(rev, path.join(repo, 'common.pipe')), 'let wd = 0.01\n');
  assert.is(readIncludeAtRevision(rev, path.join(repo, 'link.pipe')), 'let wd = 0.01\n');
  assert.is(readIncludeAtRevision(rev, path.join(outer, 'outside.pipe')), 'let outside = 1\n');
  assert.is(readIncludeAtRevision(rev, path.join(repo, 'local.pipe')), 'let local = 1\n');
  assert.is(readIncludeAtRevision(rev, path.join(repo, 'untracked.pipe')), 'let untracked = 1\n');
  // Tracked now, absent at the revision: added since.
  assert.is(readIncludeAtRevision(rev, path.join(repo, 'added.pipe')), undefined);
  assert.is(readIncludeAtRevision(rev, path.join(repo, 'gone.pipe')), undefined);
});

test('an include at a revision is refused as on the disk: not a .pipe file, or too large', async () => {
  const { repo, rev } = await repository();
  assert.equal(readIncludeAtRevision(rev, path.join(repo, 'notes.txt')), { refused: `${path.join(repo, 'notes.txt')} is not a .pipe file` });
  assert.equal(readIncludeAtRevision(rev, path.join(repo, 'big.pipe')), {
    refused: `${path.join(repo, 'big.pipe')} is ${(MAX_FILE_BYTES + 3).toLocaleString('en-US')} bytes at HEAD; a .pipe file may have at most ${MAX_FILE_BYTES.toLocaleString('en-US')}`,
  });
});

test('a file renamed since the revision is found under its old name once git pairs the two', async () => {
  const { repo, rev } = await repository();
  const git = (...args: string[]) => execa('git', args, { cwd: repo });
  await mkdir(path.join(repo, 'sub dir'));
  await git('mv', 'notes.txt', 'sub dir/notes.pipe');
  assert.is(renamedSince(rev, path.join(repo, 'sub dir', 'notes.pipe')), path.join(repo, 'notes.txt'));
  assert.is(renamedSince(rev, path.join(repo, 'added.pipe')), undefined);
  assert.is(renamedSince(rev, path.join(repo, 'untracked.pipe')), undefined);
});

test.run();

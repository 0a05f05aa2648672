// Each stage kind's source fingerprint is recorded beside its version: code that changes results must bump it.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { StageKind } from '../../stages/kind.ts';
import { STAGE_KINDS } from '../../stages/index.ts';
import { checkKindVersions, LOCK_FILE, recordKindVersions, type VersionsLock } from '../../runtime/kind-versions.ts';
import { PROJECT_ROOT, tempWorkspace } from '../helpers/runner.ts';

test('every registered kind matches its recorded version and source fingerprint', async () => {
  const lock = JSON.parse(await readFile(path.join(PROJECT_ROOT, LOCK_FILE), 'utf8')) as VersionsLock;
  const problems = await checkKindVersions(PROJECT_ROOT, STAGE_KINDS, lock);
  assert.equal(problems, [], `\n${problems.join('\n')}`);
});

function fakeKind(version: number, sources?: string[]): StageKind {
  return {
    name: 'toy_kind', version, description: 'toy', inputs: {}, sources,
    params: { type: 'object', properties: {}, additionalProperties: false },
    run: async () => ({}),
  };
}

test('an edited source with an unchanged version asks for a bump; a bumped version asks for re-recording', async () => {
  const root = await tempWorkspace('pausepipe-versions-');
  await mkdir(path.join(root, 'stages', 'shared'), { recursive: true });
  await writeFile(path.join(root, 'stages', 'toy-kind.ts'), 'export const A = 1;\n');
  await writeFile(path.join(root, 'stages', 'shared', 'x.ts'), 'export const X = 1;\n');
  const lock = await recordKindVersions(root, { toy_kind: fakeKind(1) });
  assert.equal(lock.toy_kind!.sources, ['stages/toy-kind.ts'], 'default source is stages/<kebab name>.ts');
  assert.equal(await checkKindVersions(root, { toy_kind: fakeKind(1) }, lock), []);

  await writeFile(path.join(root, 'stages', 'toy-kind.ts'), 'export const A = 2;\n');
  assert.equal(await checkKindVersions(root, { toy_kind: fakeKind(1) }, lock), [
    'kind `toy_kind`: its source (stages/toy-kind.ts) changed but its version is still 1. If the change can alter results, ' +
      'bump `version` in the kind (old cache entries then re-run); either way run `npm run versions:update` to record the new fingerprint.',
  ]);
  assert.equal(await checkKindVersions(root, { toy_kind: fakeKind(2) }, lock), [
    'kind `toy_kind`: version 2 is not recorded (stages/versions.lock.json has 1): run `npm run versions:update`',
  ]);
});

test('folders in `sources` count every file inside; CRLF line endings fingerprint like LF', async () => {
  const root = await tempWorkspace('pausepipe-versions-');
  await mkdir(path.join(root, 'stages', 'shared'), { recursive: true });
  await writeFile(path.join(root, 'stages', 'shared', 'x.ts'), 'a\nb\n');
  const kind = fakeKind(1, ['stages/shared']);
  const lock = await recordKindVersions(root, { toy_kind: kind });
  await writeFile(path.join(root, 'stages', 'shared', 'x.ts'), 'a\r\nb\r\n');
  assert.equal(await checkKindVersions(root, { toy_kind: kind }, lock), []);
  await writeFile(path.join(root, 'stages', 'shared', 'y.ts'), 'new file');
  assert.is((await checkKindVersions(root, { toy_kind: kind }, lock)).length, 1);
});

test('a kind missing from the lock, and a lock entry without a kind, are both reported', async () => {
  const root = await tempWorkspace('pausepipe-versions-');
  await mkdir(path.join(root, 'stages'));
  await writeFile(path.join(root, 'stages', 'toy-kind.ts'), '');
  const stray: VersionsLock = { gone_kind: { version: 1, sources: ['stages/gone.ts'], sha256: '0' } };
  assert.equal(await checkKindVersions(root, { toy_kind: fakeKind(1) }, stray), [
    'kind `toy_kind` (version 1) is not in stages/versions.lock.json: run `npm run versions:update`',
    'kind `gone_kind` is in stages/versions.lock.json but not registered in stages/index.ts: run `npm run versions:update`',
  ]);
});

test.run();

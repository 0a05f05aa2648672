// cache/durable.ts noSpaceMessage: what a stage failed by a full disk says: where, what it took, what is free, what to do.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { noSpaceMessage } from '../../cache/durable.ts';

const full = Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC' });
const WHAT_TO_DO = 'free some (`pausepipe gc FILE` deletes the entries no pipeline named uses) or put the cache on a larger disk (--cache-dir or PAUSEPIPE_CACHE)';

test('a full disk names the cache, the outputs, the checkpoints kept across attempts, the space free and what to do', async () => {
  const root = await mkdtemp(path.join(os.tmpdir(), 'pausepipe-durable-'));
  const [out, scratch] = [path.join(root, 'out'), path.join(root, 'scratch')];
  await writeFile(out, Buffer.alloc(12_000));
  await writeFile(scratch, Buffer.alloc(3_100_000));
  const said = await noSpaceMessage(full, out, root, [], scratch);
  assert.match(said!, /^no space left on the disk of \S+ \(the stage's outputs took 12 kB, its checkpoints 3\.1 MB; [0-9.]+ (kB|MB|GB) free\): ENOSPC: no space left on device, write; /);
  assert.ok(said!.endsWith(WHAT_TO_DO), said);
  // Markers and logs of a few bytes are not checkpoints.
  await writeFile(scratch, 'marker');
  assert.match((await noSpaceMessage(full, out, root, [], scratch))!, /\(the stage's outputs took 12 kB; /);
  assert.is(await noSpaceMessage(new Error('no such file'), out, root, [], scratch), undefined);
  await rm(root, { recursive: true, force: true });
});

test.run();

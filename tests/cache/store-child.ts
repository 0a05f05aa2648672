// Child process for the store tests: begins a cache entry the way a real run does, so tests can kill it or race two of them.
// Usage: node --import tsx store-child.ts hang <root> <stage-name>
//        node --import tsx store-child.ts race <root> <stage-name> <counter-file> <go-file>
//        node --import tsx store-child.ts commit-many <root> <stage-name> <file-count>
import { appendFileSync, existsSync, openSync, writeSync } from 'node:fs';
import * as fsp from 'node:fs/promises';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { ArtifactStore } from '../../cache/store.ts';
import { fieldsFor, keyFor } from './fixtures.ts';

const [mode, root, name, counterFile, goFile] = process.argv.slice(2);
if (mode === undefined || root === undefined || name === undefined) throw new Error('usage: store-child.ts hang|race|commit-many <root> <stage-name> ...');
const store = new ArtifactStore(root);
const key = keyFor(name);

if (mode === 'hang') {
  const entry = await store.begin(key);
  if (entry === 'cached') throw new Error('expected to compute, got cached');
  // Half of a file, as if training were killed while saving weights.
  const fd = openSync(path.join(entry.outDir, 'model.bin'), 'w');
  writeSync(fd, Buffer.alloc(4096, 7));
  await fsp.writeFile(path.join(entry.scratchDir, 'checkpoint-step-10.bin'), 'step 10');
  await fsp.writeFile(entry.logPath, 'step 10 loss 1.5\n');
  process.stdout.write('ready\n');
  setInterval(() => {}, 1000);
} else if (mode === 'race') {
  if (counterFile === undefined || goFile === undefined) throw new Error('race needs <counter-file> <go-file>');
  process.stdout.write('loaded\n');
  while (!existsSync(goFile)) await sleep(5);
  const entry = await store.begin(key);
  if (entry === 'cached') {
    process.stdout.write('cached\n');
  } else {
    appendFileSync(counterFile, `${process.pid}\n`);
    // Long enough that the other child is surely waiting on the lock meanwhile.
    await sleep(300);
    await fsp.writeFile(path.join(entry.outDir, 'result.json'), `{"by":${process.pid}}`);
    await entry.commit(fieldsFor(name));
    process.stdout.write('computed\n');
  }
} else if (mode === 'commit-many') {
  const entry = await store.begin(key);
  if (entry === 'cached') throw new Error('expected to compute, got cached');
  const folder = path.join(entry.outDir, 'parts');
  await fsp.mkdir(folder);
  for (let i = 0; i < Number(counterFile); i++) await fsp.writeFile(path.join(folder, `${i}.txt`), `part ${i}\n`);
  // The test kills this process once it sees the first output made read-only, i.e. part way through the commit.
  process.stdout.write('committing\n');
  await entry.commit(fieldsFor(name));
  process.stdout.write('committed\n');
} else {
  throw new Error(`unknown mode ${mode}`);
}

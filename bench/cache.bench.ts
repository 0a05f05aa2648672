// Cache benchmark at scale: commit, restore and verify of one `sh` entry whose out is a folder of N small files.
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { FileHasher } from '../cache/file-hash.ts';
import { ArtifactStore, type ManifestFields } from '../cache/store.ts';
import { stageKey } from '../runtime/hash.ts';
import { SH, type ShParams } from '../stages/sh.ts';

/**
 * What the first helper on this work measured for 50,000 files on this project's 2-core machine, before and after its
 * changes (that branch was lost; NOTES.md "Cache at scale" has the figures of this one). Comparison points, not goals.
 */
const EARLIER_50K = { commit: { before: 55, after: 7.5 }, restore: { before: 71, after: 27.5 } };

const { values } = parseArgs({ options: { files: { type: 'string', default: '50000' }, dir: { type: 'string' } } });
const files = Number(values.files);
if (!Number.isInteger(files) || files < 1) {
  console.error(`cache.bench: --files must be a whole number above 0, got ${values.files}`);
  process.exit(2);
}

function seconds(from: bigint): number {
  return Number(process.hrtime.bigint() - from) / 1e9;
}

function row(label: string, value: number, earlier?: { before: number; after: number }): string {
  // Only at the size they were measured at: a scaled figure would pass for a measurement.
  const compare = earlier === undefined || files !== 50_000 ? '' : `   (earlier helper at 50,000: ${earlier.before} s before, ${earlier.after} s after)`;
  return `${label.padEnd(40)}${value.toFixed(2).padStart(8)} s${compare}`;
}

const OUT = 'data/shards';
const params: ShParams = { command: ['true'], shell: false, deps: [], outs: [OUT], env: {}, cwd: '.', cpus: 1, gpus: 0 };
const ingredients = { kind: 'sh', kindVersion: SH.version, params: { ...params, files }, inputs: {}, files: {} };
const key = stageKey(ingredients);
const fields: ManifestFields = {
  ...ingredients, stage: 'shards', variant: {}, metrics: {},
  timings: { startedAt: new Date().toISOString(), finishedAt: new Date().toISOString(), seconds: 0 }, versions: {},
};

// --dir puts the workspace on another disk (the default is the system's temp folder).
const ws = await mkdtemp(path.join(values.dir ?? os.tmpdir(), 'pausepipe-cache-bench-'));
try {
  const root = path.join(ws, '.pausepipe');
  const store = new ArtifactStore(root);
  const hasher = new FileHasher(path.join(root, 'stat-cache.json'), { cacheRoot: root });
  const entry = await store.begin(key, { digester: hasher });
  if (entry === 'cached') throw new Error('a fresh cache holds the entry already');
  // What a command leaves in $PAUSEPIPE_OUT: one folder of small files (sh copies an out under outs/).
  const folder = path.join(entry.outDir, 'outs', OUT);
  await mkdir(folder, { recursive: true });
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < files; i++) await writeFile(path.join(folder, `part-${String(i).padStart(6, '0')}.json`), `{"id": ${i}}\n`);
  const tWrite = seconds(t0);

  const t1 = process.hrtime.bigint();
  const manifest = await entry.commit(fields);
  await hasher.save();
  const tCommit = seconds(t1);

  const t2 = process.hrtime.bigint();
  const restored = await SH.restore!({
    name: 'shards', params, workspace: ws, artifactsDir: store.artifactsDir(key), outputs: manifest.outputs,
    hashFile: (abs) => hasher.hash(abs).catch(() => undefined),
  });
  await hasher.save();
  const tRestore = seconds(t2);
  if (restored.length !== files) throw new Error(`restored ${restored.length} files, expected ${files}`);

  const t3 = process.hrtime.bigint();
  const problems = await store.verify();
  const tVerify = seconds(t3);
  if (problems.length > 0) throw new Error(`verify found problems: ${problems[0]!.problem}`);

  console.log(`cache benchmark: one sh entry whose out is a folder of ${files.toLocaleString('en-US')} small files, in ${ws}`);
  console.log(row('write the files (the command, not timed)', tWrite));
  console.log(row('commit (hash, seal, rename, stat cache)', tCommit, EARLIER_50K.commit));
  console.log(row('restore into an empty workspace', tRestore, EARLIER_50K.restore));
  console.log(row('verify (re-read every byte)', tVerify));
} finally {
  await rm(ws, { recursive: true, force: true });
}

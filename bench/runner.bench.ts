// Runner benchmark: a 10×10×10 `for each` of sh stages; parse+expand+plan time and a no-op re-run through the bin.
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtemp, readdir, rm, stat, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { FileHasher } from '../cache/file-hash.ts';
import { ArtifactStore } from '../cache/store.ts';
import { computeKeys } from '../runtime/keys.ts';
import { loadKinds } from '../runtime/kinds.ts';
import { loadPipeline } from '../runtime/load.ts';
import { planPipeline } from '../runtime/plan.ts';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const BIN = path.join(ROOT, 'bin', 'pausepipe.js');
const PLAN_GOAL_S = 1;
const NOOP_GOAL_S = 2;
const NOOP_REPEATS = 3;

const PIPE = `
stage data = sh {
  command: "mkdir -p outs && cp data.txt outs/copy.txt"
  shell: true
  deps: ["data.txt"]
  outs: ["outs/copy.txt"]
}
for each a in range(0, 10), b in range(0, 10), c in range(0, 10) {
  stage cell = sh(data: data) {
    command: "echo \${a}\${b}\${c} > outs/\${a}-\${b}-\${c}.txt"
    shell: true
    deps: ["data.txt"]
    outs: ["outs/\${a}-\${b}-\${c}.txt"]
    env: { A: a, B: b, C: c }
  }
}
`;

async function newestMtime(dir: string): Promise<number> {
  let newest = 0;
  for (const e of await readdir(dir, { withFileTypes: true })) {
    const full = path.join(dir, e.name);
    if (e.isDirectory()) newest = Math.max(newest, await newestMtime(full));
    else if (e.name.endsWith('.ts')) newest = Math.max(newest, (await stat(full)).mtimeMs);
  }
  return newest;
}

/** The no-op timing is meant for the compiled CLI (what users run); rebuild dist/ when a source is newer. */
async function ensureDist(): Promise<void> {
  const cli = path.join(ROOT, 'dist', 'runtime', 'cli.js');
  const built = await stat(cli).then((s) => s.mtimeMs, () => 0);
  const newest = Math.max(...(await Promise.all(['grammar', 'runtime', 'stages', 'cache'].map((d) => newestMtime(path.join(ROOT, d))))));
  if (built >= newest) return;
  console.log('building dist/ (npm run build)…');
  // Type errors elsewhere still emit JavaScript; the bin's own freshness check decides whether dist is used.
  spawnSync(process.execPath, [path.join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', path.join(ROOT, 'tsconfig.build.json')], { stdio: 'inherit' });
}

function seconds(from: bigint): number {
  return Number(process.hrtime.bigint() - from) / 1e9;
}

function runBin(args: string[], cwd: string): number {
  const t = process.hrtime.bigint();
  execFileSync(process.execPath, [BIN, ...args], { cwd, stdio: ['ignore', 'ignore', 'inherit'] });
  return seconds(t);
}

function row(label: string, value: number, goal?: number): string {
  const g = goal === undefined ? '' : `   goal < ${goal} s: ${value < goal ? 'met' : 'MISSED'}`;
  return `${label.padEnd(52)}${value.toFixed(3).padStart(8)} s${g}`;
}

const ws = await mkdtemp(path.join(os.tmpdir(), 'pausepipe-bench-'));
try {
  await writeFile(path.join(ws, 'package.json'), '{"private": true}\n');
  await writeFile(path.join(ws, 'data.txt'), 'x'.repeat(1 << 20));
  const file = path.join(ws, 'matrix.pipe');
  await writeFile(file, PIPE);
  await ensureDist();

  const first = runBin(['run', file, '--json'], ws);

  const kinds = await loadKinds();
  const t0 = process.hrtime.bigint();
  const { pipeline, diagnostics } = await loadPipeline(file, kinds);
  if (!pipeline) throw new Error(`bench pipeline invalid: ${diagnostics.map((d) => d.message).join('; ')}`);
  const tLoad = seconds(t0);
  const root = path.join(ws, '.pausepipe');
  const store = new ArtifactStore(root);
  const keys = await computeKeys(pipeline, kinds, new FileHasher(path.join(root, 'stat-cache.json')));
  const plan = planPipeline(pipeline, keys, (k) => store.has(k), {});
  const tPlan = seconds(t0);
  if (plan.counts.fresh !== pipeline.stages.length) throw new Error(`expected every stage fresh after the first run, got ${JSON.stringify(plan.counts)}`);

  // Sources edited during the first run would send the bin to tsx: the timing is of the compiled CLI.
  await ensureDist();
  const noop: number[] = [];
  for (let i = 0; i < NOOP_REPEATS; i++) noop.push(runBin(['run', file], ws));
  noop.sort((a, b) => a - b);

  console.log(`runner benchmark: ${pipeline.stages.length} sh stages (10×10×10 for each + 1), each with a 1 MiB dep and an out`);
  console.log(row('first run (computes everything)', first));
  console.log(row('parse + expand + validate (in-process)', tLoad));
  console.log(row('parse + expand + plan (in-process, warm cache)', tPlan, PLAN_GOAL_S));
  console.log(row(`no-op re-run, node bin/pausepipe.js (median of ${NOOP_REPEATS})`, noop[Math.floor(NOOP_REPEATS / 2)]!, NOOP_GOAL_S));
  console.log(row('no-op re-run, fastest', noop[0]!));
} finally {
  await rm(ws, { recursive: true, force: true });
}

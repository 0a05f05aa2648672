// How a run stops: SIGTERM as Ctrl-C, a second signal at once without stale locks, a full disk as a failed stage.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { mkdir, readdir, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { ArtifactStore } from '../../cache/store.ts';
import { acquireLock } from '../../cache/lock.ts';
import { requires } from '../helpers/requires.ts';
import { BIN, cli, tempWorkspace, TEST_KINDS } from '../helpers/runner.ts';
import { alive, killSpawned, spawnBin, waitFor } from '../helpers/processes.ts';

test.after(killSpawned);

/** The id a command wrote to `file`, once the whole line is there. */
async function pidIn(file: string): Promise<number> {
  await waitFor(file, () => existsSync(file) && /^\d+\n?$/.test(readFileSync(file, 'utf8')));
  return Number(readFileSync(file, 'utf8'));
}

async function lockFiles(ws: string): Promise<string[]> {
  return (await readdir(path.join(ws, '.pausepipe', 'locks')).catch(() => [] as string[])).filter((n) => n.endsWith('.lock'));
}

test('SIGTERM stops a run like Ctrl-C: workers and commands end, nothing is committed, no lock stays, exit 143', async () => {
  const ws = await tempWorkspace('pausepipe-stop-');
  const file = path.join(ws, 'p.pipe');
  await writeFile(file, `stage hold = hold { pidfile: "hold.pid", until: "release" }
stage slow = sh { command: "sleep 60 & echo $! > sleeper.pid; wait", shell: true }
`);
  const run = spawnBin(['run', file, '--jobs', '2'], ws);
  const worker = await pidIn(path.join(ws, 'hold.pid'));
  const sleeper = await pidIn(path.join(ws, 'sleeper.pid'));
  run.proc.kill('SIGTERM');
  const result = await run.proc;
  assert.is(result.exitCode, 143, run.output());
  assert.match(run.output(), 'interrupting (SIGTERM): stopping running stages');
  await waitFor('the worker and the command to end', () => !alive(worker) && !alive(sleeper), 5000);
  assert.equal(await lockFiles(ws), []);
  assert.is((await cli(['plan', file], ws)).stdout, 'stale  hold: interrupted in its last run\nstale  slow: interrupted in its last run\n2 stale, 0 fresh');
  const verify = await cli(['verify', file], ws);
  assert.is(verify.exitCode, 0, verify.stdout);
  assert.match(verify.stdout, 'cache OK: 0 entries verified');
});

test('output whose reader went away (`run … | head`) stops the run as a closed terminal does: exit 141, nothing half-done', async () => {
  const ws = await tempWorkspace('pausepipe-stop-');
  const file = path.join(ws, 'p.pipe');
  // Each reports progress every 0.1 s for a minute: the runner prints a line at every tenth of it.
  const steps = (n: number) => `for i in $(seq 1 ${n}); do echo \\"pausepipe:progress $i/${n}\\"; sleep 0.1; done`;
  await writeFile(file, `stage a = sh { command: "${steps(600)}", shell: true }\nstage b = sh { command: "${steps(610)}", shell: true }\n`);
  const child = spawn(process.execPath, [BIN, 'run', file, '--jobs', '2'], { cwd: ws, stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, PAUSEPIPE_KINDS: TEST_KINDS } });
  // The reader reads the first lines, then goes away; the runner's next line finds the pipe closed.
  child.stderr!.once('data', () => child.stderr!.destroy());
  const code = await new Promise<number | null>((resolve) => child.on('exit', (c) => resolve(c)));
  assert.is(code, 141);
  assert.equal(await lockFiles(ws), []);
  assert.equal(await readdir(path.join(ws, '.pausepipe', 'tmp')), []);
  assert.is((await cli(['plan', file], ws)).stdout, 'stale  a: interrupted in its last run\nstale  b: interrupted in its last run\n2 stale, 0 fresh');
});

test('a second signal while a command is slow to stop quits at once, says so, and still leaves no lock, no command running and the earlier out', async () => {
  const ws = await tempWorkspace('pausepipe-stop-');
  const file = path.join(ws, 'p.pipe');
  await writeFile(path.join(ws, 'out.txt'), 'the last good version');
  // Ignores SIGTERM, so a clean stop would wait for the SIGKILL that follows 3 s later; half writes its out first.
  await writeFile(file, 'stage stubborn = sh { command: "trap \'\' TERM; echo half > out.txt; sleep 60 & echo $! > sleeper.pid; wait", shell: true, outs: ["out.txt"] }\n');
  const run = spawnBin(['run', file], ws);
  const sleeper = await pidIn(path.join(ws, 'sleeper.pid'));
  run.proc.kill('SIGINT');
  await waitFor('the first signal to be taken', () => run.output().includes('interrupting: stopping running stages'));
  run.proc.kill('SIGINT');
  const result = await run.proc;
  assert.is(result.exitCode, 130, run.output());
  assert.equal(run.output().split('\n').filter((l) => l.includes('at once')), [
    'interrupting: stopping running stages (Ctrl-C again to quit at once)',
    'quitting at once: running stages killed; set-aside outs put back',
  ]);
  assert.equal(await lockFiles(ws), []);
  await waitFor('the command to end', () => !alive(sleeper), 5000);
  assert.is(readFileSync(path.join(ws, 'out.txt'), 'utf8'), 'the last good version');
  assert.is(existsSync(path.join(ws, 'out.txt.pausepipe-previous')), false);
});

test('Ctrl-C while a run waits for a gc stops it as any Ctrl-C does: exit 130, nothing run', async () => {
  const ws = await tempWorkspace('pausepipe-stop-');
  const file = path.join(ws, 'p.pipe');
  await writeFile(file, 'stage a = sh { command: "echo a >> count.txt", shell: true }\n');
  const cache = path.join(ws, '.pausepipe');
  await new ArtifactStore(cache).init();
  await mkdir(path.join(cache, 'locks'), { recursive: true });
  const gc = await acquireLock(path.join(cache, 'locks', 'gc.lock'));
  try {
    const run = spawnBin(['run', file], ws);
    await waitFor('the wait', () => run.output().includes('waiting for `pausepipe gc`'));
    run.proc.kill('SIGINT');
    const result = await run.proc;
    assert.is(result.exitCode, 130, run.output());
    assert.not.match(run.output(), 'aborted', run.output());
    assert.match(run.output(), 'ran 0, cached 0');
    assert.is(existsSync(path.join(ws, 'count.txt')), false);
  } finally {
    await gc.release();
  }
});

/** Whether this machine lets an unprivileged user mount a tmpfs in a private mount namespace (user namespaces). */
function canMountTmpfs(): boolean {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'pausepipe-probe-'));
  try {
    return spawnSync('unshare', ['-rm', 'sh', '-c', `mount -t tmpfs -o size=1m tmpfs ${dir}`]).status === 0;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/**
 * Runs the bin in a private mount namespace with a tmpfs of `size` (1 MiB) as its cache, after `before` (shell
 * commands, `run` runs the pipeline); `logs` lists the failed runs' logs the cache kept.
 */
function runOnFullDisk(ws: string, file: string, before = '', size = '1m'): { status: number | null; stderr: string; listing: string; logs: string[] } {
  const cache = path.join(ws, 'cache');
  const run = `PAUSEPIPE_KINDS=${TEST_KINDS} ${process.execPath} ${BIN} run ${file} --keep-going --cache-dir ${cache}`;
  const script = `mount -t tmpfs -o size=${size} tmpfs ${cache} && run() { ${run}; } && ${before} run; ` +
    `code=$?; echo; echo "listing: $(ls ${cache}/objects 2>/dev/null | wc -l) $(ls ${cache}/tmp | wc -l)" >&2; ` +
    `echo "logs: $(ls ${cache}/scratch/*/failed-run.log 2>/dev/null | tr '\\n' ' ')" >&2; exit $code`;
  const r = spawnSync('unshare', ['-rm', 'sh', '-c', script], { cwd: ws, encoding: 'utf8', timeout: 60_000 });
  const listing = /listing: (.*)/.exec(r.stderr)?.[1] ?? '';
  const logs = (/logs: (.*)/.exec(r.stderr)?.[1] ?? '').split(' ').filter(Boolean);
  return { status: r.status, stderr: r.stderr, listing, logs };
}

const withTmpfs = requires(canMountTmpfs(), '`unshare -rm` cannot mount a tmpfs here (user namespaces), so no disk can be filled', test);

withTmpfs('a full disk fails the stages that cannot write, says where and how much, and the runner lives to report it', async () => {
  const ws = await tempWorkspace('pausepipe-full-');
  await mkdir(path.join(ws, 'cache'));
  const file = path.join(ws, 'p.pipe');
  await writeFile(file, `stage big = sh { command: "head -c 3000000 /dev/zero > $PAUSEPIPE_OUT/big.bin", shell: true }
stage chatty = sh { command: "yes a line of the log | head -c 2000000", shell: true }
`);
  const r = runOnFullDisk(ws, file);
  assert.is(r.status, 1, r.stderr);
  assert.not.match(r.stderr, 'Unhandled');
  // Each stage alone outgrows the disk: the command's own write (big) and the runner's log of it (chatty).
  assert.match(r.stderr, new RegExp(`failed big: no space left on the disk of ${path.join(ws, 'cache')} \\(the stage's outputs took [0-9.]+ (kB|MB); [0-9.]+ (kB|MB) free\\): `));
  assert.match(r.stderr, new RegExp(`failed chatty: no space left on the disk of ${path.join(ws, 'cache')} \\(.*\\): ENOSPC: no space left on device, write`));
  // Nothing damaged is committed, and each failed entry's temp folder is gone.
  assert.is(r.listing, '0 0');
  // A log the full disk kept from being copied is not named.
  const named = [...r.stderr.matchAll(/ {2}full log: (.*)/g)].map((m) => m[1]!);
  assert.equal(named.sort(), r.logs.sort());
});

withTmpfs('a training checkpoint that does not fit says its step, its size, the file it was writing and what to do', async () => {
  const ws = await tempWorkspace('pausepipe-full-');
  await mkdir(path.join(ws, 'cache'));
  const file = path.join(ws, 'p.pipe');
  await writeFile(file, `stage data = synthetic_math { train: 8, validation: 2, test: 2 }
stage base = init_model { preset: "tiny", overrides: { max_position_embeddings: 160 } }
stage step1 = sft(model: base, data: data) { batch_size: 2, max_steps: 2, save_steps: 1, eval_steps: 2, max_length: 160, train: { all: true } }
`);
  const r = runOnFullDisk(ws, file, '', '1500k');
  assert.is(r.status, 1, r.stderr);
  assert.match(r.stderr, new RegExp(`failed step1: no space left on the disk of ${path.join(ws, 'cache')} \\(the stage's outputs took 0 kB; [0-9.]+ (kB|MB) free\\): ` +
    'saving the training checkpoint of step 1 \\([0-9.]+ MB in all\\): writing [a-z]+\\.safetensors \\([0-9.]+ (kB|MB)\\): ENOSPC: no space left on device, write; ' +
    'free some \\(`pausepipe gc FILE` deletes the entries no pipeline named uses\\) or put the cache on a larger disk \\(--cache-dir or PAUSEPIPE_CACHE\\)\n'));
});

withTmpfs('on a full cache disk even a fully cached run stops before anything, saying the disk is full and where', async () => {
  const ws = await tempWorkspace('pausepipe-full-');
  const cache = path.join(ws, 'cache');
  await mkdir(cache);
  const file = path.join(ws, 'p.pipe');
  await writeFile(file, 'stage a = sh { command: "echo a >> count.txt", shell: true }\n');
  const r = runOnFullDisk(ws, file, `run > /dev/null && cat /dev/zero > ${cache}/filler 2>/dev/null;`);
  assert.is(r.status, 1, r.stderr);
  assert.match(r.stderr, new RegExp(`^pausepipe run: the cache's disk is full: no space left on the disk of ${cache} to register this run \\(ENOSPC: no space left on device, write \\([^)]*uses/[0-9a-f]+\\.lock\\.[0-9a-f.]+tmp\\)\\); nothing was run$`, 'm'));
  assert.is(readFileSync(path.join(ws, 'count.txt'), 'utf8'), 'a\n');
});

test.run();

// Trusting the cache through the CLI: damaged entries are never served or built on, gc and verify touch only caches.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { existsSync, readFileSync } from 'node:fs';
import { chmod, mkdir, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { execa } from 'execa';
import { ArtifactStore } from '../../cache/store.ts';
import { EXTRA_KINDS_ENV } from '../../runtime/kinds.ts';
import { runMain, type Ran } from '../helpers/capture.ts';
import { BIN, tempWorkspace, TEST_KINDS } from '../helpers/runner.ts';

process.env[EXTRA_KINDS_ENV] = TEST_KINDS;

/** `down` doubles the number `up` wrote; SALT changes down's key without changing what it computes. */
const CHAIN = (salt: number, downCommand = 'echo "{\\"x\\": $(( $(cat $PAUSEPIPE_INPUT_UP/n.txt) * 2 ))}" > $PAUSEPIPE_OUT/metrics.json') => `
stage up = sh { command: "echo 21 > $PAUSEPIPE_OUT/n.txt", shell: true }
stage down = sh(up: up) {
  command: ${JSON.stringify(downCommand)}
  shell: true
  env: { SALT: ${salt} }
}
`;

const pp = (...args: string[]): Promise<Ran> => runMain(args);

async function workspace(text: string): Promise<{ ws: string; file: string; store: ArtifactStore }> {
  const ws = await tempWorkspace('pausepipe-trust-');
  const file = path.join(ws, 'chain.pipe');
  await writeFile(file, text);
  return { ws, file, store: new ArtifactStore(path.join(ws, '.pausepipe')) };
}

/** The key a stage's last run used, from the plan. */
async function keyOf(file: string, stage: string): Promise<string> {
  const plan = JSON.parse((await pp('plan', file, '--json')).out) as { stages: { name: string; key: string }[] };
  return plan.stages.find((s) => s.name === stage)!.key;
}

/** Overwrite a committed (read-only) file, as a careless user or a stage running as root would. */
async function tamper(file: string, content: string): Promise<void> {
  await chmod(file, 0o644);
  await writeFile(file, content);
}

async function metricX(file: string): Promise<unknown> {
  const r = JSON.parse((await pp('run', file, '--json')).out) as { stages: { name: string; metrics: { x?: number } | null }[] };
  return r.stages.find((s) => s.name === 'down')!.metrics?.x;
}

test('a byte flipped in a committed artifact: plan says why it is stale, and a stage made stale by an edit computes from good bytes', async () => {
  const { file, store } = await workspace(CHAIN(1));
  assert.is(await metricX(file), 42);
  const up = await keyOf(file, 'up');
  await tamper(path.join(store.artifactsDir(up), 'n.txt'), '31\n');
  await writeFile(file, CHAIN(2));
  const plan = await pp('plan', file);
  assert.is(plan.out, [
    'stale  up: cache entry damaged (output n.txt has changed since it was committed): computed again',
    'stale  down: param env.SALT: 1 → 2',
    '2 stale, 0 fresh',
    '',
  ].join('\n'));
  assert.is(await metricX(file), 42);
  assert.is(readFileSync(path.join(store.artifactsDir(up), 'n.txt'), 'utf8'), '21\n');
  assert.is((await pp('verify', file)).code, 0);
});

test('an edited metric in a manifest is not served: the entry is computed again', async () => {
  const { file, store } = await workspace(CHAIN(1));
  assert.is(await metricX(file), 42);
  const down = await keyOf(file, 'down');
  const manifest = path.join(store.entryDir(down), 'manifest.json');
  await tamper(manifest, readFileSync(manifest, 'utf8').replace('"x": 42', '"x": 99'));
  assert.match((await pp('plan', file)).out, 'stale  down: cache entry damaged (manifest.json does not match manifest.sha256 (edited or corrupted)): computed again');
  assert.is(await metricX(file), 42);
});

test('a stage that writes into its upstream\'s committed files fails, and the damaged upstream is computed again', async () => {
  const { file } = await workspace(CHAIN(1, 'chmod u+w $PAUSEPIPE_INPUT_UP/n.txt && echo 99 > $PAUSEPIPE_INPUT_UP/n.txt'));
  const r = JSON.parse((await pp('run', file, '--json')).out) as { exitCode: number; stages: { name: string; status: string; error: string | null }[] };
  assert.is(r.exitCode, 1);
  const down = r.stages.find((s) => s.name === 'down')!;
  assert.is(down.status, 'failed');
  assert.match(down.error ?? '', /^an input changed while the stage ran \(did it write into its inputs, or did another run remove it\?\): input entry [0-9a-f]{12} is damaged: output n\.txt has changed since it was committed/);
  assert.match((await pp('plan', file)).out, 'stale  up: cache entry damaged');
});

test('--force of an entry another run uses stops before anything runs, says who uses it, and the other run goes on', async () => {
  const up = 'stage up = sh { command: "echo 1$(date +%N) > $PAUSEPIPE_OUT/n.txt", shell: true }\n';
  const { ws, file, store } = await workspace(`${up}stage down = sh(up: up) {
  command: "cat $PAUSEPIPE_INPUT_UP/n.txt > first.txt; ${process.execPath} ${BIN} run again.pipe --force > forced.txt 2>&1; echo $? >> forced.txt; cat $PAUSEPIPE_INPUT_UP/n.txt > last.txt"
  shell: true
}
`);
  await writeFile(path.join(ws, 'again.pipe'), up);
  const r = JSON.parse((await pp('run', file, '--json')).out) as { exitCode: number; stages: { name: string; status: string }[] };
  assert.equal([r.exitCode, r.stages.map((s) => s.status)], [0, ['ran', 'ran']]);
  assert.is(readFileSync(path.join(ws, 'first.txt'), 'utf8'), readFileSync(path.join(ws, 'last.txt'), 'utf8'));
  const forced = readFileSync(path.join(ws, 'forced.txt'), 'utf8').split('\n');
  assert.match(forced[0]!, /^pausepipe run: --force would replace entries that another run uses, and that run would then fail:$/);
  assert.match(forced[1]!, new RegExp(`^  up: used by pid ${process.pid} on .+ since \\d{4}-`));
  assert.equal(forced.slice(2), ['nothing was run; run again once that run ends', '1', '']);
  assert.is(store.has(await keyOf(file, 'down')), true);
  // Once the run has ended, the same --force replaces the entry.
  assert.is((await pp('run', path.join(ws, 'again.pipe'), '--force')).code, 0);
});

test('a stage whose input another run computes again while it reads it fails instead of keeping a mixed result', async () => {
  const up = 'stage up = sh { command: "echo 1$(date +%N) > $PAUSEPIPE_OUT/n.txt", shell: true }\n';
  // The forced run cannot see this one once its registration is gone (as with a pausepipe from before registrations):
  // the check at commit still keeps the mixed result out.
  const { ws, file, store } = await workspace(`${up}stage down = sh(up: up) {
  command: "cat $PAUSEPIPE_INPUT_UP/n.txt > first.txt; rm -f .pausepipe/uses/*.lock; ${process.execPath} ${BIN} run again.pipe --force >/dev/null 2>&1; cat $PAUSEPIPE_INPUT_UP/n.txt > last.txt"
  shell: true
}
`);
  // The same upstream, in a pipeline of its own that the command runs with --force on the same cache.
  await writeFile(path.join(ws, 'again.pipe'), up);
  const r = JSON.parse((await pp('run', file, '--json')).out) as { exitCode: number; stages: { name: string; status: string; error: string | null }[] };
  assert.is(r.exitCode, 1);
  const upKey = await keyOf(file, 'up');
  assert.is.not(readFileSync(path.join(ws, 'first.txt'), 'utf8'), readFileSync(path.join(ws, 'last.txt'), 'utf8'), 'the command read two versions');
  assert.equal(r.stages.find((s) => s.name === 'down'), {
    ...r.stages.find((s) => s.name === 'down'), status: 'failed',
    error: `input up (${upKey.slice(0, 12)}) was computed again by another run while this stage read it: this result is not kept; run again`,
  });
  assert.is(store.has(await keyOf(file, 'down')), false);
});

test('an entry whose input was recomputed with other bytes is stale, verify names it and --repair removes it', async () => {
  // Not reproducible, and never a leading zero (which `$(( ))` would read as octal, failing on an 8 or 9).
  const { ws, file, store } = await workspace(CHAIN(1).replace('echo 21', 'echo 1$(date +%N)'));
  await pp('run', file);
  const up = await keyOf(file, 'up');
  const down = await keyOf(file, 'down');
  // The upstream entry is damaged, removed, and recomputed, by a command that is not reproducible, in a run of
  // another pipeline that holds only it.
  await tamper(path.join(store.artifactsDir(up), 'n.txt'), '7\n');
  assert.equal(await store.repair([{ key: up, problem: 'damaged', severity: 'damage' }]), [up]);
  await writeFile(path.join(ws, 'up.pipe'), CHAIN(1).replace('echo 21', 'echo 1$(date +%N)').split('stage down')[0]!);
  const second = await pp('run', path.join(ws, 'up.pipe'), '--json');
  const verify = await pp('verify', file);
  assert.is(verify.code, 1, `${second.out}\n${verify.out}`);
  assert.match(verify.out, `damaged ${down}: computed from bytes of its input up (${up}) that no entry holds any more`);
  assert.match(verify.out, '1 damaged entry in ');
  assert.match((await pp('plan', file)).out, `stale  down: cache entry damaged (computed from other bytes of its input up (${up.slice(0, 12)}) than that entry holds now): computed again`);
  const repaired = await pp('verify', file, '--repair');
  assert.is(repaired.code, 0);
  assert.match(repaired.out, 'removed 1 damaged entry from ');
  assert.is(store.has(down), false);
  assert.is((await pp('verify', file)).code, 0);
});

test('a run that computes a damaged entry again checks its users against the new bytes: one run leaves the cache whole', async () => {
  const { file, store } = await workspace(CHAIN(1).replace('echo 21', 'echo 1$(date +%N)'));
  await pp('run', file);
  const up = await keyOf(file, 'up');
  await tamper(path.join(store.artifactsDir(up), 'n.txt'), '7\n');
  assert.is((await pp('plan', file)).out, [
    'stale  up: cache entry damaged (output n.txt has changed since it was committed): computed again',
    '1 stale, 1 fresh',
    '',
  ].join('\n'));
  const r = JSON.parse((await pp('run', file, '--json')).out) as { counts: Record<string, number>; stages: { name: string; status: string; reasons: string[] }[] };
  assert.equal(r.stages.map((s) => [s.name, s.status, s.reasons]), [
    ['up', 'ran', ['cache entry damaged (output n.txt has changed since it was committed): computed again']],
    ['down', 'ran', ['computed from bytes of an input that this run computed again with other results']],
  ]);
  assert.is((await pp('verify', file)).code, 0);
  assert.is((await pp('plan', file)).out, '0 stale, 2 fresh\n');
});

test('a user of a damaged entry computed again with the same bytes stays a hit', async () => {
  const { file, store } = await workspace(CHAIN(1));
  await pp('run', file);
  await tamper(path.join(store.artifactsDir(await keyOf(file, 'up')), 'n.txt'), '7\n');
  const r = JSON.parse((await pp('run', file, '--json')).out) as { counts: Record<string, number> };
  assert.equal(r.counts, { ran: 1, cached: 1, failed: 0, skipped: 0, aborted: 0 });
  assert.is((await pp('verify', file)).code, 0);
});

test('verify reports a killed run\'s leftovers without failing, and fails only on damage', async () => {
  const { file, store } = await workspace(CHAIN(1));
  await pp('run', file);
  const up = await keyOf(file, 'up');
  await writeFile(store.lockPath(up), JSON.stringify({ pid: 999_999_999, hostname: (await import('node:os')).hostname(), startedAt: '2025-01-01T00:00:00.000Z', nonce: 'abc' }));
  await mkdir(path.join(store.root, 'tmp', `${up}.999999999.abc`), { recursive: true });
  const verify = await pp('verify', file);
  assert.is(verify.code, 0, verify.out);
  assert.match(verify.out, `leftover ${up}: tmp/${up}.999999999.abc is left over from a run that died (gc removes it)`);
  assert.match(verify.out, `leftover ${up}: locks/${up}.lock is held by pid 999999999 on `);
  assert.match(verify.out, 'cache OK: 2 entries verified in ');
  assert.match(verify.out, '; 2 leftover(s) of killed runs or foreign files (`pausepipe gc` clears leftovers)');
  const gc = await pp('gc', file);
  assert.match(gc.out, 'removed 0 entries (0.0 MB), 2 leftover(s); kept 2');
  assert.equal(await readdir(path.join(store.root, 'locks')), []);
});

/** A folder that is not a cache: a git repository's objects. */
async function gitLikeFolder(ws: string): Promise<string> {
  const repo = path.join(ws, 'repo');
  await mkdir(path.join(repo, 'objects', 'ab'), { recursive: true });
  await writeFile(path.join(repo, 'objects', 'ab', 'cdef0123456789'), 'blob');
  await writeFile(path.join(repo, 'HEAD'), 'ref: refs/heads/main\n');
  return repo;
}

test('gc, verify and run refuse a --cache-dir that is not a cache, and leave it as it was', async () => {
  const { ws, file } = await workspace(CHAIN(1));
  const repo = await gitLikeFolder(ws);
  for (const args of [['gc', file], ['gc', file, '--dry-run'], ['verify'], ['run', file]]) {
    const r = await pp(...args, '--cache-dir', repo);
    assert.is(r.code, 1, `${args.join(' ')}: ${r.out}${r.err}`);
    assert.match(r.err, `${repo} is not a pausepipe cache: it holds files the cache did not write and no pausepipe-cache.json`);
  }
  assert.equal((await readdir(repo)).sort(), ['HEAD', 'objects']);
  assert.is(await readFile(path.join(repo, 'objects', 'ab', 'cdef0123456789'), 'utf8'), 'blob');
  const missing = await pp('verify', '--cache-dir', path.join(ws, 'no-cache'));
  assert.is(missing.code, 1);
  assert.match(missing.err, 'is not a pausepipe cache: it does not exist or is empty');
});

test('gc --dry-run lists what gc would remove with the stage that computed it, and removes nothing; kept counts entries the cache holds', async () => {
  const { file, store } = await workspace(CHAIN(1));
  await pp('run', file);
  const down = await keyOf(file, 'down');
  // down's new key names no entry yet: gc keeps up's entry and nothing for down.
  await writeFile(file, CHAIN(2));
  const dry = await pp('gc', file, '--dry-run');
  assert.is(dry.code, 0);
  assert.is(dry.out, `would remove ${down} (down)\n${store.root}: would remove 1 entry (0.0 MB), 0 leftover(s); kept 1\n`);
  assert.is(store.has(down), true);
  assert.is((await pp('gc', file)).out, `${store.root}: removed 1 entry (0.0 MB), 0 leftover(s); kept 1\n`);
  assert.is(store.has(down), false);
});

test('gc of one pipeline keeps the entries another pipeline\'s running stage reads', async () => {
  const { ws, file, store } = await workspace(`
stage base = sh { command: "echo shared > $PAUSEPIPE_OUT/b.txt", shell: true }
stage wait = sh(up: base) {
  command: "touch started; while [ ! -f release ]; do sleep 0.05; done; cat $PAUSEPIPE_INPUT_UP/b.txt > $PAUSEPIPE_OUT/r.txt"
  shell: true
}
`);
  const other = path.join(ws, 'other.pipe');
  await writeFile(other, 'stage lone = sh { command: "true", shell: true }\n');
  await pp('run', other);
  const run = execa(process.execPath, [BIN, 'run', file], { cwd: ws, reject: false, env: { PAUSEPIPE_KINDS: TEST_KINDS }, stdin: 'ignore' });
  const until = Date.now() + 30_000;
  while (!existsSync(path.join(ws, 'started')) && Date.now() < until) await new Promise((r) => setTimeout(r, 50));
  const base = await keyOf(file, 'base');
  const gc = await pp('gc', other);
  assert.match(gc.out, 'removed 0 entries');
  assert.match(gc.out, 'kept 1, 1 in use by a live run');
  assert.is(store.has(base), true);
  await writeFile(path.join(ws, 'release'), '');
  const done = await run;
  assert.is(done.exitCode, 0, done.stderr);
  assert.match((await pp('gc', other)).out, 'removed 2 entries');
});

test('a stage whose out would hold a --cache-dir inside the workspace cannot run', async () => {
  const { ws, file } = await workspace('stage s = sh { command: "mkdir -p build", shell: true, outs: ["build"] }\n');
  const r = await pp('run', file, '--cache-dir', path.join(ws, 'build', 'cache'));
  assert.is(r.code, 1);
  assert.match(r.err, `failed s: out build holds the cache ${path.join(ws, 'build', 'cache')}: writing it would damage the cache`);
});

test('a folder where a file should be is named in the message: stat cache, metrics.json, manifest', async () => {
  const { ws, file, store } = await workspace(CHAIN(1, 'mkdir $PAUSEPIPE_OUT/metrics.json'));
  const r = JSON.parse((await pp('run', file, '--json')).out) as { stages: { name: string; error: string | null }[] };
  assert.match(r.stages.find((x) => x.name === 'down')!.error ?? '', /^EISDIR: illegal operation on a directory, read \(.*\/metrics\.json\)$/);
  const up = await keyOf(file, 'up');
  const manifest = path.join(store.entryDir(up), 'manifest.json');
  await chmod(store.entryDir(up), 0o755);
  await rm(manifest);
  await mkdir(manifest);
  const verify = await pp('verify', file);
  assert.match(verify.out, `damaged ${up}: manifest.json cannot be read: EISDIR: illegal operation on a directory, read (${manifest})`);
  const statCache = path.join(ws, '.pausepipe', 'stat-cache.json');
  await rm(statCache, { force: true });
  await mkdir(statCache);
  const run = await pp('run', file);
  assert.match(run.err, `EISDIR: illegal operation on a directory, read (${statCache})`);
});

test('check refuses unsafe outs, inputs that share an environment variable (an input\'s list file\'s too) and invalid patterns, each at its place', async () => {
  const { file } = await workspace(`stage raw = sh { command: "true", shell: true }
stage step = sh(data: raw, DATA: raw) {
  command: "sort data/raw.csv -o data/raw.csv", shell: true
  deps: ["data/raw.csv"]
  outs: ["data/raw.csv", ".pausepipe"]
}
stage d = synthetic_math { }
stage p = inject_pauses(data: d) { patterns: { "(": 1 } }
stage q = inject_pauses(data: d) { splits: ["train"], val_fraction: 0.1 }
stage both = sh(runs: raw, runs_list: raw) { command: "true", shell: true }
`);
  const r = await pp('check', file);
  assert.is(r.code, 2);
  const heads = r.err.split('\n').filter((l) => /^chain\.pipe:\d+:\d+: error/.test(l.replace(/^.*?chain\.pipe/, 'chain.pipe')));
  assert.equal(heads.map((l) => l.replace(/^.*?chain\.pipe/, 'chain.pipe')), [
    'chain.pipe:2:28: error[E_DUPLICATE_INPUT]: inputs `data` and `DATA` both arrive as $PAUSEPIPE_INPUT_DATA: one would be lost',
    'chain.pipe:5:10: error[E_UNSAFE_OUT]: out `data/raw.csv` is the dep `data/raw.csv` of this stage: the command would replace what it reads',
    'chain.pipe:5:26: error[E_UNSAFE_OUT]: out `.pausepipe` is refused: it is or lies in `.pausepipe`, which is the cache',
    'chain.pipe:8:48: error[E_PARAM_VALUE]: pattern "(" is not a valid regular expression (Invalid regular expression: /(/g: Unterminated group)',
    'chain.pipe:9:69: error[E_PARAM_VALUE]: val_fraction pools the train and validation rows and splits them after injecting: `splits` must list both',
    'chain.pipe:10:28: error[E_DUPLICATE_INPUT]: inputs `runs` and `runs_list` both arrive as $PAUSEPIPE_INPUT_RUNS_LIST: one would be lost',
  ]);
});

test.run();

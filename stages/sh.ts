// Stage kind `sh`: runs a command (argument list, or a shell string) with declared workspace deps and outs.
import { cp, lstat, mkdir, open, readdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { existsSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { naming, randomHex } from '../cache/durable.ts';
import { acquireLock, describeOwner, isAbandoned, readLock, type HeldLock } from '../cache/lock.ts';
import { digestFile } from '../cache/file-hash.ts';
import { forEachLimited } from '../cache/pool.ts';
import { copyOutOfCache, isCacheKey, userFileMode } from '../cache/store.ts';
import { gpuEnvironment } from '../runtime/gpus.ts';
import { sha256 } from '../runtime/hash.ts';
import type { JsonValue } from '../runtime/json.ts';
import { isWithin, unsafeWorkspacePath } from '../runtime/workspace-paths.ts';
import type { CheckContext, CheckProblem, RestoreContext, StageContext, StageKind, StageResult, StoredOutput } from './kind.ts';

export interface ShParams {
  command: string | string[];
  shell: boolean;
  deps: string[];
  outs: string[];
  env: Record<string, string | number | boolean>;
  cwd: string;
  cpus: number;
  gpus: number;
}

/** Folder inside the artifacts that holds the copies of `outs`, by workspace-relative path. */
const OUTS_DIR = 'outs';
/** A command reports progress by printing such a line: `pausepipe:progress 40/100 loss 1.23`. */
const PROGRESS_LINE = /^pausepipe:progress (\d+)(?:\/(\d+))?(?: (.*))?$/;

/**
 * An out as an absolute path, refused when the runner must not move or write it (outside the workspace, also through a
 * symbolic link; the workspace's markers, version control or the cache): checked again at run and restore time, since
 * links can change after `check`.
 */
function workspacePath(workspace: string, rel: string, what: string): string {
  const why = unsafeWorkspacePath(workspace, rel);
  if (why !== undefined) throw new Error(`sh: ${what} \`${rel}\` is refused: ${why}`);
  return path.resolve(workspace, rel);
}

/** Workspace-relative with `/`, normalized: how outs, deps and pipeline files are compared. */
function relativeTo(workspace: string, p: string): string {
  return path.relative(workspace, path.resolve(workspace, p)).split(path.sep).join('/');
}

/**
 * A dep that is not there and that no stage writes: a warning, since the file may yet appear before a run, which then
 * fails on it. Deps resolve from the workspace, so one written relative to a .pipe file in a subfolder lands here.
 */
function missingDeps(deps: string[], ctx: CheckContext): CheckProblem[] {
  const problems: CheckProblem[] = [];
  // A stage left out for its syntax errors may be the one that writes the dep.
  if (ctx.outputsIncomplete) return problems;
  deps.forEach((dep, i) => {
    const rel = relativeTo(ctx.workspace, dep);
    const absolute = path.resolve(ctx.workspace, dep);
    if (ctx.outputs.some((out) => isWithin(rel, out)) || existsSync(absolute)) return;
    const notes = [`deps resolve from the workspace ${ctx.workspace} : the nearest folder at or above the entry .pipe file that holds package.json, .git or .pausepipe`];
    const besideFile = path.resolve(path.dirname(ctx.file), dep);
    if (existsSync(besideFile)) notes.push(`did you mean \`${relativeTo(ctx.workspace, besideFile)}\`, the file beside the .pipe file?`);
    problems.push({ code: 'E_MISSING_DEP', severity: 'warning', message: `dep \`${dep}\` does not exist: looked for ${absolute}`, param: ['deps', String(i)], notes });
  });
  return problems;
}

/** Check-time problems of `outs`, deps and input names (see CheckProblem); the runner deletes nothing a user owns. */
function checkSh(p: ShParams, ctx: CheckContext): CheckProblem[] {
  const problems: CheckProblem[] = missingDeps(p.deps ?? [], ctx);
  const deps = (p.deps ?? []).map((d) => relativeTo(ctx.workspace, d));
  const files = ctx.pipelineFiles.map((f) => relativeTo(ctx.workspace, f));
  (p.outs ?? []).forEach((out, i) => {
    const unsafe = (why: string, notes?: string[]) => problems.push({ code: 'E_UNSAFE_OUT', message: `out \`${out}\` ${why}`, param: ['outs', String(i)], notes });
    const why = unsafeWorkspacePath(ctx.workspace, out);
    if (why !== undefined) return unsafe(`is refused: ${why}`);
    const rel = relativeTo(ctx.workspace, out);
    for (const dep of deps) {
      if (isWithin(dep, rel)) return unsafe(`${dep === rel ? 'is' : 'holds'} the dep \`${dep}\` of this stage: the command would replace what it reads`, ['write the result to a new path']);
      if (isWithin(rel, dep)) return unsafe(`lies in the dep \`${dep}\` of this stage: each run would change the dep, so the stage would never be fresh`);
    }
    const file = files.find((f) => isWithin(f, rel));
    if (file !== undefined) return unsafe(`holds the pipeline file \`${file}\``);
    return undefined;
  });
  // Each input arrives as two variables, its folders and its list file: `a_list`'s folders would overwrite `a`'s list.
  const envNames = new Map<string, string>();
  const reported = new Set<string>();
  for (const name of ctx.inputs) {
    for (const env of [inputEnvName(name), inputListEnvName(name)]) {
      const first = envNames.get(env);
      if (first === undefined) envNames.set(env, name);
      else if (first !== name && !reported.has(name)) {
        reported.add(name);
        problems.push({ code: 'E_DUPLICATE_INPUT', input: name, message: `inputs \`${first}\` and \`${name}\` both arrive as $${env}: one would be lost`, notes: ['give one of them another name'] });
      }
    }
  }
  return problems;
}

/** Relative path inside the artifacts folder (always `/`-separated, as the manifest lists it). */
function storedPath(rel: string): string {
  return `${OUTS_DIR}/${path.posix.normalize(rel.split(path.sep).join('/')).replace(/\/+$/, '')}`;
}

/** Environment name of an input: `train-runs` → `PAUSEPIPE_INPUT_TRAIN_RUNS`. */
export function inputEnvName(input: string): string {
  return `PAUSEPIPE_INPUT_${input.toUpperCase().replace(/[^A-Z0-9]/g, '_')}`;
}

/** Environment name of the file listing an input's folders: `train-runs` → `PAUSEPIPE_INPUT_TRAIN_RUNS_LIST`. */
export function inputListEnvName(input: string): string {
  return `${inputEnvName(input)}_LIST`;
}

/**
 * Linux refuses to start a program (E2BIG) when one `NAME=value` of its environment passes 128 KiB (MAX_ARG_STRLEN), or
 * all of its arguments and environment together pass a quarter of the stack limit (2 MiB by default). A collection of
 * a thousand upstream stages passes the first: folders joined into one variable take about 100 bytes each.
 */
const MAX_VARIABLE_BYTES = 128 * 1024;
/** What the inputs' folder variables may take together: half the default total, the rest left to the inherited environment. */
const MAX_INPUT_VARIABLES_BYTES = 1024 * 1024;

/**
 * The environment of the inputs: each input's list file always, its folders joined as one variable while they fit
 * Linux's limits (unset past them, and said: an empty value would pass for an input without folders).
 */
async function inputVariables(ctx: StageContext<ShParams>): Promise<Record<string, string>> {
  const env: Record<string, string> = {};
  const listDir = path.join(ctx.scratchDir, 'input-lists');
  await rm(listDir, { recursive: true, force: true });
  await mkdir(listDir, { recursive: true });
  let total = 0;
  for (const [name, refs] of Object.entries(ctx.inputs)) {
    const listFile = path.join(listDir, `${inputEnvName(name)}.txt`);
    await writeFile(listFile, refs.map((r) => `${r.dir}\n`).join(''));
    env[inputListEnvName(name)] = listFile;
    const variable = inputEnvName(name);
    const joined = refs.map((r) => r.dir).join(path.delimiter);
    const bytes = Buffer.byteLength(`${variable}=${joined}`) + 1;
    if (bytes <= MAX_VARIABLE_BYTES && total + bytes <= MAX_INPUT_VARIABLES_BYTES) {
      env[variable] = joined;
      total += bytes;
    } else {
      const line = `sh: $${variable} is not set: its ${refs.length} folders (${Math.ceil(bytes / 1024)} KiB) pass Linux's limit on ` +
        `${bytes > MAX_VARIABLE_BYTES ? 'one environment variable (128 KiB)' : "the inputs' variables together (1 MiB here)"}; ` +
        `the command reads them from the file $${inputListEnvName(name)}, one per line`;
      ctx.log(line);
      ctx.notice?.(`${ctx.name}: ${line}`);
    }
  }
  return env;
}

async function exists(p: string): Promise<boolean> {
  return stat(p).then(() => true, () => false);
}

/** Written before the command starts and removed when it ends, in the scratch folder that outlives a killed run. */
const RUNNING_MARKER = 'command.running';
/** Command groups running under this process: ended if the runner exits while they run. */
const runningGroups = new Set<number>();
/** Outs set aside while their command runs (out → its set-aside copy): put back if the runner exits meanwhile. */
const setAsideOuts = new Map<string, string>();
process.on('exit', () => {
  for (const group of runningGroups) signalGroup(group, 'SIGKILL');
  // A second Ctrl-C quits at once; the commands are ended above, so their half-written outs can give way.
  for (const [out, aside] of setAsideOuts) {
    try {
      rmSync(out, { recursive: true, force: true });
      renameSync(aside, out);
    } catch {
      // Left for the next run, which puts the set-aside copy back itself.
    }
  }
});

function signalGroup(group: number, signal: NodeJS.Signals | 0): boolean {
  try {
    process.kill(-group, signal);
    return true;
  } catch {
    return false;
  }
}

/** Linux: the process groups of the live processes whose environment carries this stage key. */
async function groupsRunningKey(key: string): Promise<Set<number>> {
  const groups = new Set<number>();
  for (const pid of (await readdir('/proc').catch(() => [] as string[])).filter((n) => /^\d+$/.test(n))) {
    const environ = await readFile(`/proc/${pid}/environ`, 'utf8').catch(() => '');
    if (!environ.split('\0').includes(`PAUSEPIPE_KEY=${key}`)) continue;
    const stat = await readFile(`/proc/${pid}/stat`, 'utf8').catch(() => '');
    // Fields after the parenthesised command name: state, ppid, pgrp. A zombie is already ended.
    const [state, , pgrp] = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    if (state !== 'Z' && Number(pgrp) > 0) groups.add(Number(pgrp));
  }
  return groups;
}

/**
 * A runner killed with SIGKILL cannot stop its command, which may go on writing the workspace outs. Its marker
 * stays behind, so the next run of the same key (holding the key's lock: no live run owns that key) ends every
 * process group still carrying the key in its environment before it starts the command again.
 */
async function endOrphanedCommand(ctx: StageContext<ShParams>): Promise<void> {
  const marker = path.join(ctx.scratchDir, RUNNING_MARKER);
  if (!(await exists(marker))) return;
  await endGroupsOfKey(ctx.key, 'left running by a killed run of this stage', ctx.log);
  await rm(marker, { force: true });
}

/** Kills every process group still carrying `key` in its environment, and waits (5 s at most) until they are gone. */
async function endGroupsOfKey(key: string, why: string, log?: (line: string) => void): Promise<void> {
  const groups = await groupsRunningKey(key);
  for (const group of groups) {
    log?.(`sh: ending process group ${group}, ${why}`);
    signalGroup(group, 'SIGKILL');
  }
  for (let waited = 0; groups.size > 0 && waited < 5000 && (await groupsRunningKey(key)).size > 0; waited += 50) {
    await new Promise((r) => setTimeout(r, 50));
  }
}

/**
 * Runs `body` holding a lock per out, so that two runs (other -p values, another pipeline, another cache) never write,
 * or restore, one workspace out at once: each would otherwise cache the other's bytes. The locks are hidden files in
 * the workspace root (an out's own folder may not exist yet, and the command may want to make it), named by the out's
 * path; they are taken in one order, so two runs never hold one each and wait for the other.
 */
async function withOutsLocked<T>(
  workspace: string, outs: string[], body: () => Promise<T>,
  opts: { key?: string; signal?: AbortSignal; log?: (line: string) => void } = {},
): Promise<T> {
  const held: HeldLock[] = [];
  try {
    for (const rel of [...new Set(outs.map((o) => relativeTo(workspace, o)))].sort()) {
      const lock = path.join(workspace, `.pausepipe-out-${sha256(rel).slice(0, 16)}.lock`);
      const abandoned = await endOrphanWriting(lock, rel, opts.log);
      held.push(await acquireLock(lock, {
        signal: opts.signal, data: { out: rel, ...(opts.key === undefined ? {} : { key: opts.key }) },
        onWait: (owner) => opts.log?.(`sh: waiting for out ${rel}, which ${describeOwner(owner)} is writing`),
      }));
      if (abandoned) await removeRestoreCopies(path.join(workspace, rel));
    }
    return await body();
  } finally {
    await Promise.all(held.map((lock) => lock.release()));
  }
}

/**
 * An out lock left by a runner killed with SIGKILL names the key whose command was writing the out: that command,
 * still running, would overwrite what this run writes or restores, whatever its key. It is ended first.
 */
async function endOrphanWriting(lock: string, rel: string, log?: (line: string) => void): Promise<boolean> {
  const seen = readLock(lock);
  if (seen === undefined || !isAbandoned(seen.owner)) return false;
  let key: unknown;
  try {
    key = (JSON.parse(seen.raw) as { key?: unknown }).key;
  } catch {
    return true;
  }
  if (typeof key === 'string' && isCacheKey(key)) await endGroupsOfKey(key, `which a killed run left writing out ${rel}`, log);
  return true;
}

/** Where restoreOuts copies a file before renaming it over the out. */
function restoreCopyOf(file: string): string {
  return `${file}.pausepipe-restore-${randomHex(4)}`;
}
const RESTORE_COPY = /\.pausepipe-restore-[0-9a-f]{8}$/;

/**
 * Removes the copies a restore killed mid-copy left beside the out's files (the out's lock, abandoned, says one may
 * have been): beside a file out, or anywhere in a folder out.
 */
async function removeRestoreCopies(out: string): Promise<void> {
  const name = path.basename(out);
  const beside = (await readdir(path.dirname(out)).catch(() => [] as string[]))
    .filter((n) => n !== name && n.replace(RESTORE_COPY, '') === name);
  const inside = await stat(out).then((st) => st.isDirectory(), () => false)
    ? (await readdir(out, { recursive: true })).filter((n) => RESTORE_COPY.test(n)) : [];
  await Promise.all([
    ...beside.map((n) => rm(path.join(path.dirname(out), n), { force: true })),
    ...inside.map((n) => rm(path.join(out, n), { force: true })),
  ]);
}

async function runCommand(ctx: StageContext<ShParams>): Promise<StageResult> {
  const p = ctx.params;
  if (typeof p.command === 'string' && !p.shell) {
    throw new Error('sh: `command` is a string but `shell` is false; give an argument list, or set `shell: true`');
  }
  const outs = p.outs.map((o) => workspacePath(ctx.workspace, o, 'out'));
  await mkdir(ctx.scratchDir, { recursive: true });
  await endOrphanedCommand(ctx);
  // A wait for another run is said at the terminal too: the stage would seem stuck otherwise.
  const log = (line: string) => {
    ctx.log(line);
    ctx.notice?.(`${ctx.name}: ${line}`);
  };
  return withOutsLocked(ctx.workspace, p.outs, () => runWithOuts(ctx, outs), { key: ctx.key, signal: ctx.signal, log });
}

async function runWithOuts(ctx: StageContext<ShParams>, outs: string[]): Promise<StageResult> {
  // Outs of an earlier run must not pass for this run's results, yet nothing is deleted before its replacement exists.
  const previous = await setAside(outs);
  for (const out of outs) if (previous.includes(`${out}${SET_ASIDE}`)) setAsideOuts.set(out, `${out}${SET_ASIDE}`);
  try {
    const result = await runSetAside(ctx, outs);
    await Promise.all(previous.map((aside) => rm(aside, { recursive: true, force: true })));
    return result;
  } catch (error) {
    await putBack(outs, previous);
    throw error;
  } finally {
    for (const out of outs) setAsideOuts.delete(out);
  }
}

/** Beside each out while its command runs: the earlier version, put back if the command fails or is interrupted. */
const SET_ASIDE = '.pausepipe-previous';

/**
 * Moves each existing out to `<out>.pausepipe-previous` (same folder, so one rename). A set-aside copy left by a killed
 * run is the user's last good version, and the out beside it that run's half-written one: the copy stays set aside.
 */
async function setAside(outs: string[]): Promise<string[]> {
  const asides: string[] = [];
  for (const out of outs) {
    const aside = `${out}${SET_ASIDE}`;
    const [outThere, asideThere] = await Promise.all([out, aside].map((f) => lstat(f).then(() => true, () => false)));
    if (asideThere && outThere) await rm(out, { recursive: true, force: true });
    else if (outThere) await rename(out, aside);
    if (outThere || asideThere) asides.push(aside);
  }
  return asides;
}

/** After a failure: what the command wrote goes, the earlier version comes back. */
async function putBack(outs: string[], asides: string[]): Promise<void> {
  for (const out of outs) {
    const aside = `${out}${SET_ASIDE}`;
    if (!asides.includes(aside)) continue;
    await rm(out, { recursive: true, force: true });
    await rename(aside, out);
  }
}

async function runSetAside(ctx: StageContext<ShParams>, outs: string[]): Promise<StageResult> {
  const p = ctx.params;

  const inputsFile = path.join(ctx.scratchDir, 'inputs.json');
  const described: Record<string, JsonValue> = {};
  const env = await inputVariables(ctx);
  for (const [name, refs] of Object.entries(ctx.inputs)) {
    described[name] = refs.map((r) => ({ stage: r.stage, key: r.key, dir: r.dir, variant: r.variant, metrics: r.metrics }));
  }
  await writeFile(inputsFile, JSON.stringify(described, null, 2));
  // The GPUs the runner placed this stage on; the command's own `env` may still say otherwise.
  if (ctx.gpus) Object.assign(env, gpuEnvironment(ctx.gpus));
  for (const [k, v] of Object.entries(p.env)) env[k] = String(v);
  Object.assign(env, {
    PAUSEPIPE_OUT: ctx.outDir,
    PAUSEPIPE_SCRATCH: ctx.scratchDir,
    PAUSEPIPE_WORKSPACE: ctx.workspace,
    PAUSEPIPE_STAGE: ctx.name,
    PAUSEPIPE_KEY: ctx.key,
    PAUSEPIPE_VARIANT: JSON.stringify(ctx.variant),
    PAUSEPIPE_INPUTS_JSON: inputsFile,
  });

  const { execa } = await import('execa');
  const [file, ...args] = typeof p.command === 'string' ? [p.command] : p.command;
  ctx.log(`$ ${typeof p.command === 'string' ? p.command : p.command.map((a) => (/[\s"'$]/.test(a) ? JSON.stringify(a) : a)).join(' ')}`);
  // Before the spawn: whatever happens to this runner from here on, the next run knows to look for the command.
  writeFileSync(path.join(ctx.scratchDir, RUNNING_MARKER), '');
  const sub = execa(file!, args, {
    cwd: path.resolve(ctx.workspace, p.cwd),
    env,
    shell: p.shell,
    stdin: 'ignore',
    buffer: false,
    reject: false,
    cancelSignal: ctx.signal,
    forceKillAfterDelay: 3000,
    // Its own process group, so that cancelling ends what the command started too (a shell's children).
    detached: true,
  });
  const group = sub.pid;
  const endGroup = () => {
    if (group === undefined) return;
    signalGroup(group, 'SIGTERM');
    setTimeout(() => signalGroup(group, 'SIGKILL'), 3000).unref();
  };
  if (group !== undefined) runningGroups.add(group);
  ctx.signal.addEventListener('abort', endGroup, { once: true });
  const onLine = (line: string) => {
    const m = PROGRESS_LINE.exec(line);
    if (m) ctx.progress({ step: Number(m[1]), total: m[2] === undefined ? undefined : Number(m[2]), message: m[3] });
    else ctx.log(line);
  };
  const streams = [sub.stdout, sub.stderr].map(async (s) => {
    if (!s) return;
    for await (const line of createInterface({ input: s, crlfDelay: Infinity })) onLine(line);
  });
  const [result] = await Promise.all([sub, ...streams]).finally(async () => {
    ctx.signal.removeEventListener('abort', endGroup);
    // Cancelled: the group got SIGTERM and may outlive the leader; the exit hook and the marker still cover it.
    if (ctx.signal.aborted) return;
    if (group !== undefined) runningGroups.delete(group);
    await rm(path.join(ctx.scratchDir, RUNNING_MARKER), { force: true });
  });
  if (ctx.signal.aborted) throw new Error('sh: cancelled');
  if (result.failed && 'code' in result && result.code === 'ENOENT') {
    throw new Error(`sh: program not found: ${file}${p.shell ? '' : ' (a shell command line needs `shell: true`)'}`);
  }
  if (result.failed) {
    const why = result.exitCode !== undefined ? `exit code ${result.exitCode}`
      : result.signal ? `killed by ${result.signal}` : result.shortMessage;
    throw new Error(`command failed with ${why}`);
  }

  for (const [i, abs] of outs.entries()) {
    if (!(await exists(abs))) throw new Error(`sh: the command did not write its out \`${p.outs[i]}\``);
    const dest = path.join(ctx.outDir, storedPath(p.outs[i]!));
    await mkdir(path.dirname(dest), { recursive: true });
    await cp(abs, dest, { recursive: true });
  }

  const metricsFile = path.join(ctx.outDir, 'metrics.json');
  if (!(await exists(metricsFile))) return {};
  const text = await readFile(metricsFile, 'utf8').catch((error: unknown) => {
    throw naming(error, metricsFile);
  });
  let metrics: unknown;
  try {
    metrics = JSON.parse(text);
  } catch (error) {
    // A bare "Unexpected end of JSON input" names no file; an empty or cut file is what a full disk leaves.
    throw new Error(`sh: $PAUSEPIPE_OUT/metrics.json is not valid JSON (${(error as Error).message})`);
  }
  if (metrics === null || typeof metrics !== 'object' || Array.isArray(metrics)) {
    throw new Error('sh: $PAUSEPIPE_OUT/metrics.json must hold a JSON object');
  }
  return { metrics: metrics as Record<string, JsonValue> };
}

/**
 * Puts each file of the outs back where it differs from the cache: copied beside its place, checked against the
 * manifest, then renamed over it, so a damaged cache entry never reaches the workspace and nothing is deleted first.
 */
async function restoreOuts(ctx: RestoreContext<ShParams>): Promise<string[]> {
  return withOutsLocked(ctx.workspace, ctx.params.outs, () => restoreOutsLocked(ctx));
}

async function restoreOutsLocked(ctx: RestoreContext<ShParams>): Promise<string[]> {
  const restored: string[] = [];
  /** Folders made (or being made) by this restore: one mkdir per folder, not per file. */
  const folders = new Map<string, Promise<unknown>>();
  const makeFolder = (dir: string) => {
    let made = folders.get(dir);
    if (made === undefined) folders.set(dir, (made = mkdir(dir, { recursive: true })));
    return made;
  };
  for (const out of ctx.params.outs) {
    const prefix = storedPath(out);
    const isFile = ctx.outputs.some((o) => o.path === prefix);
    const files = ctx.outputs.filter((o) => o.path === prefix || o.path.startsWith(`${prefix}/`));
    // Kept in the manifest's order whatever order the files finish in.
    const put = new Array<string | undefined>(files.length);
    await forEachLimited(files, async (o, i) => {
      const target = workspacePath(ctx.workspace, isFile ? out : path.join(out, o.path.slice(prefix.length + 1)), 'out');
      const now = await ctx.hashFile(target);
      if (now === o.sha256) return;
      await makeFolder(path.dirname(target));
      await restoreFile(path.join(ctx.artifactsDir, o.path), target, o, now !== undefined);
      put[i] = path.relative(ctx.workspace, target).split(path.sep).join('/');
    });
    for (const rel of put) if (rel !== undefined) restored.push(rel);
  }
  return restored;
}

/** Cached files up to this size are restored from memory (read once, checked, written); larger ones are copied, then checked. */
const RESTORE_IN_MEMORY_BYTES = 8 << 20;

/** Puts one cached file at `target` by a checked copy beside it renamed over it; `exists`: something is there now. */
async function restoreFile(source: string, target: string, o: StoredOutput, exists: boolean): Promise<void> {
  const copy = restoreCopyOf(target);
  const damaged = () => new Error(`the cache's copy of ${o.path} does not match its manifest (damaged cache entry; \`pausepipe verify --repair\` removes it)`);
  try {
    const handle = await open(source, 'r');
    let bytes: Buffer | undefined;
    let mode: number;
    try {
      const st = await handle.stat();
      mode = st.mode;
      if (st.size <= RESTORE_IN_MEMORY_BYTES) bytes = await handle.readFile();
    } finally {
      await handle.close();
    }
    if (bytes !== undefined) {
      // The bytes checked are the bytes written: one read of the cache's file instead of a copy and a read of the copy.
      if (sha256(bytes) !== o.sha256) throw damaged();
      await writeFile(copy, bytes, { flag: 'wx', mode: userFileMode(mode) });
    } else {
      await copyOutOfCache(source, copy);
      if ((await digestFile(copy)).sha256 !== o.sha256) throw damaged();
    }
    if (exists && (await stat(target).then((st) => st.isDirectory(), () => false))) await rm(target, { recursive: true, force: true });
    await rename(copy, target);
  } catch (error) {
    await rm(copy, { force: true });
    throw error;
  }
}

export const SH: StageKind<ShParams> = {
  name: 'sh',
  version: 1,
  description:
    'Run a command. Its inputs (any names) arrive as env PAUSEPIPE_INPUT_<NAME> (artifact folders joined by the path ' +
    'delimiter; unset when too long for Linux\'s environment, 128 KiB), PAUSEPIPE_INPUT_<NAME>_LIST (a file ' +
    'listing the same folders, one per line) and PAUSEPIPE_INPUTS_JSON (a file describing each input: stage, key, dir, variant, metrics); ' +
    'PAUSEPIPE_OUT is the folder to write artifacts to, and a $PAUSEPIPE_OUT/metrics.json object becomes the ' +
    'stage metrics. A line `pausepipe:progress STEP[/TOTAL] [MESSAGE]` on its output reports progress.',
  params: {
    type: 'object',
    properties: {
      command: {
        description: 'Program and arguments as a list, or one string run by the shell when `shell` is true.',
        type: ['string', 'array'],
        items: { type: 'string' },
        minItems: 1,
        minLength: 1,
      },
      shell: { description: 'Run `command` through the system shell.', type: 'boolean', default: false },
      deps: {
        description: 'Workspace files or folders the command reads (paths from the workspace, not from the .pipe file); hashed by content into the key.',
        type: 'array', items: { type: 'string', minLength: 1 }, default: [],
      },
      outs: {
        description: 'Workspace files or folders the command writes (paths from the workspace); cached, and restored into the workspace on a cache hit.',
        type: 'array', items: { type: 'string', minLength: 1 }, default: [],
      },
      env: {
        description: 'Extra environment variables.',
        type: 'object', additionalProperties: { type: ['string', 'number', 'boolean'] }, default: {},
      },
      cwd: { description: 'Working folder of the command, relative to the workspace.', type: 'string', default: '.' },
      cpus: { description: 'CPU slots the command occupies while it runs.', type: 'integer', minimum: 1, default: 1 },
      gpus: { description: 'GPU slots the command occupies while it runs.', type: 'integer', minimum: 0, default: 0 },
    },
    required: ['command'],
    additionalProperties: false,
    if: { properties: { command: { type: 'string' } }, required: ['command'] },
    then: {
      description: 'a string `command` is a shell command line: set `shell: true`, or give `command` as a list (["python", "prep.py"])',
      properties: { shell: { const: true } },
      required: ['shell'],
    },
  },
  inputs: {
    '*': { description: 'Any upstream stage or collection under any name, passed as PAUSEPIPE_INPUT_<NAME> and PAUSEPIPE_INPUT_<NAME>_LIST.', anyArity: true, optional: true },
  },
  isolated: false,
  check: checkSh,
  resources: (p) => ({ cpu: p.cpus ?? 1, gpu: p.gpus ?? 0 }),
  workspaceFiles: (p) => p.deps ?? [],
  workspaceOutputs: (p) => p.outs ?? [],
  run: runCommand,
  restore: restoreOuts,
};

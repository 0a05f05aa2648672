// The `pausepipe` command line: run, plan, show, diff, dag, check, gc, verify, watch, export, log, exec, lsp, backends, kinds.
import { mkdir, readdir, readFile, stat } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { describeOwner } from '../cache/lock.ts';
import { ArtifactStore, copyOutOfCache, resolveCacheRoot, type GcResult, type VerifyProblem } from '../cache/store.ts';
import { diagnostic } from '../grammar/diagnostics.ts';
import { didYouMean } from '../grammar/suggest.ts';
import type { StageKind } from '../stages/kind.ts';
import { GPU_CHOICES, gpuSettingErrors } from '../stages/lm/gpu-settings.ts';
import { DAG_FORMATS, mermaidTooLarge, renderDag, type DagFormat, type DagStatus } from './dag.ts';
import type { RunOptions, RunResult, StageOutcome } from './execute.ts';
import { formatSeconds, LISTED_NAMES } from './format.ts';
import { detectGpuMemoryMiB, detectGpus, gpuCountError, gpuDeviceIds, gpuMemoryOverride } from './gpus.ts';
import { SlurmClient } from './executors/slurm/client.ts';
import { slurmExecutor } from './executors/slurm/slurm-executor.ts';
import type { Executor } from './executors/executor.ts';
import { localExecutor } from './executors/local.ts';
import { isKeyed, sharedOuts } from './keys.ts';
import { loadKinds } from './kinds.ts';
import { cannotRunLines, memoryLines, memoryPlan, runsOnWasm, type MemoryMachine } from './memory-plan.ts';
import { findWorkspace, loadPipeline } from './load.ts';
import { kindsMarkdown, kindsText } from './kinds-doc.ts';
import { overrideNotes, overridesRecord, parseOverride, type Override } from './overrides.ts';
import type { Pipeline } from './pipeline.ts';
import type { Plan, PlannedStage } from './plan.ts';
import { describeFailure, describePartial, lastFailure, lastPartial } from './commit.ts';
import { createCheckProgress, createReporter, SILENT_REPORTER, type Reporter } from './progress.ts';
import { failedLastRun, loadChecked, planLoaded, renderDiagnostics, runSession, runStagesOf, type Session } from './session.ts';
import { loadSettings, type ExecutorSettings, type ExecutorType } from './settings.ts';
import { buildResultTable, renderTable, type TableFormat } from './show.ts';
import { findStageLog, followJobLog, followStageLog } from './stage-log.ts';
import { restrictPipeline, runScope, selectTargets, withUpstream } from './targets.ts';
import { PAUSEPIPE_VERSION } from './version.ts';

/** Exit codes people and scripts rely on. */
export const EXIT = { ok: 0, failed: 1, invalid: 2, interrupted: 130 } as const;

/** Under Slurm, --jobs caps the CPUs of the jobs queued at once; by default the cluster's scheduler decides. */
const SLURM_DEFAULT_JOBS = 1000;
const EXECUTOR_TYPES: readonly ExecutorType[] = ['local', 'slurm'];

/** A results table longer than this is left to `show` rather than printed after a run. */
const MAX_RUN_TABLE_ROWS = 40;

export interface Io {
  stdout: NodeJS.WritableStream & { isTTY?: boolean; columns?: number };
  stderr: NodeJS.WritableStream & { isTTY?: boolean; columns?: number };
}

type Options = NonNullable<ParseArgsConfig['options']>;

interface Command {
  usage: string;
  summary: string;
  options: Options;
  help: string;
  run(args: { values: Record<string, string | boolean | string[] | undefined>; positionals: string[] }, io: Io): Promise<number>;
}

class UsageError extends Error {}

const CACHE_DIR: Options = { 'cache-dir': { type: 'string' } };
const CACHE_HELP = '  --cache-dir D   cache folder (default: $PAUSEPIPE_CACHE, else <workspace>/.pausepipe)';
const OVERRIDES: Options = { param: { type: 'string', short: 'p', multiple: true } };
const OVERRIDES_HELP = [
  '  -p NAME=VALUE   replace the value of the top-level `let NAME` (repeatable); NAME.KEY=VALUE replaces one key of an',
  '                  object let. VALUE is a literal of the language (1e-4, true, "text", [1, 2]); other text is a string',
].join('\n');
/** The flags `run` and `watch` share: how stages run. */
const RUNNING_HELP = [
  '  --jobs N        CPU slots (default: number of cores)',
  '  --gpus N        GPUs (default: detected); each GPU stage\'s worker sees only its own GPU; 0: no stage sees a GPU',
  '  --stages-per-gpu N  GPU stages sharing one GPU (default: as many as their memory estimates fit, else 1)',
  '  --keep-going    after a failure, keep running stages that do not depend on it; a report is written from',
  '                  the variants that finished, marked partial',
  '  --backend NAME  tensor backend for model stages (webgpu, wasm, cpu, tensorflow, auto)',
].join('\n');
const TARGETS_HELP = '  TARGET          a stage: NAME (all its variants), NAME[*], NAME[var=value,...] or a generated name';

function write(stream: NodeJS.WritableStream, text: string): void {
  if (text) stream.write(text.endsWith('\n') ? text : `${text}\n`);
}

function positiveInt(value: unknown, flag: string, allowZero = false): number | undefined {
  if (value === undefined) return undefined;
  // Digits only: Number() would take '' as 0 and '0x4' as 4.
  const n = typeof value === 'string' && /^\s*\d+\s*$/.test(value) ? Number(value) : NaN;
  if (!Number.isInteger(n) || n < (allowZero ? 0 : 1)) throw new UsageError(`${flag} needs ${allowZero ? 'a whole number ≥ 0' : 'a whole number ≥ 1'}, got ${String(value)}`);
  return n;
}

function oneFile(positionals: string[]): string {
  if (positionals.length !== 1) throw new UsageError(`expected one FILE, got ${positionals.length}`);
  return positionals[0]!;
}

function fileAndTargets(positionals: string[]): { file: string; targets: string[] } {
  if (positionals.length === 0) throw new UsageError('expected FILE');
  return { file: positionals[0]!, targets: positionals.slice(1) };
}

function overridesOf(values: Record<string, unknown>): Override[] {
  return ((values.param as string[] | undefined) ?? []).map((text) => {
    const o = parseOverride(text);
    if (typeof o === 'string') throw new UsageError(o);
    return o;
  });
}

/** A word as a POSIX shell reads it back: bare when it has no special characters, else single-quoted. */
function shellWord(word: string): string {
  return /^[\w@%+=:,./-]+$/.test(word) ? word : `'${word.replace(/'/g, `'\\''`)}'`;
}

/** `pausepipe COMMAND FILE ARGS…` as a shell line, on the cache folder this command was given. */
function commandLine(command: string, file: string, args: string[], values: Record<string, unknown>): string {
  const cacheDir = values['cache-dir'] === undefined ? [] : ['--cache-dir', values['cache-dir'] as string];
  return ['pausepipe', command, path.relative(process.cwd(), file) || file, ...args, ...cacheDir].map(shellWord).join(' ');
}

/** The `pausepipe run` that computes what a command over FILE, TARGETS and these flags looked at: same overrides, same cache. */
function runCommand(file: string, targets: string[], values: Record<string, unknown>): string {
  return commandLine('run', file, [...targets, ...overrideFlags(values)], values);
}

/** The `-p NAME=VALUE` flags this command was given, to repeat in a command it suggests. */
function overrideFlags(values: Record<string, unknown>): string[] {
  return ((values.param as string[] | undefined) ?? []).flatMap((o) => ['-p', o]);
}

/** `pausepipe verify FILE --repair`, with the cache folder of this command: what removes a damaged entry. */
function repairCommand(file: string, values: Record<string, unknown>): string {
  return commandLine('verify', file, ['--repair'], values);
}

/** Loads FILE with the `-p` overrides; prints diagnostics (an override naming no let is one) and returns undefined on errors. */
function load(file: string, values: Record<string, unknown>, io: Io) {
  return loadChecked(file, (t) => write(io.stderr, t), { overrides: overridesOf(values) });
}

/** The generated names the targets select; a target that selects nothing is a usage error. */
function targetNames(pipeline: Pipeline, targets: string[]): Set<string> | undefined {
  if (targets.length === 0) return undefined;
  const selection = selectTargets(pipeline, targets);
  if ('error' in selection) throw new UsageError(selection.error);
  return selection.names;
}

/** Says, for a parameter that an override changed, which `-p` did it (plan reasons). */
async function overrideNote(file: string, kinds: Record<string, StageKind>, overrides: Override[]) {
  if (overrides.length === 0) return undefined;
  const base = (await loadPipeline(path.resolve(file), kinds)).pipeline;
  if (!base) return undefined;
  const alone = await Promise.all(overrides.map(async (o) => (await loadPipeline(path.resolve(file), kinds, { overrides: [o] })).pipeline));
  return overrideNotes(overrides, base, alone);
}

/** FILE loaded and planned for the targets (and what they need) and --force; undefined when FILE has errors. */
async function plannedSession(file: string, targets: string[], values: Record<string, unknown>, io: Io): Promise<Session | undefined> {
  const loaded = await load(file, values, io);
  if (!loaded) return undefined;
  const scope = runScope(loaded.pipeline, targetNames(loaded.pipeline, targets), values.force === true);
  const pipeline = restrictPipeline(loaded.pipeline, scope.stages);
  const paramNote = await overrideNote(file, loaded.kinds, overridesOf(values));
  const planned = await planLoaded(pipeline, loaded.kinds, values['cache-dir'] as string | undefined, { forced: scope.forced, paramNote });
  return pipeline.stages.length === loaded.pipeline.stages.length ? planned : { ...planned, wholePipelineStages: loaded.pipeline.stages.map((s) => s.name) };
}

/** The whole of FILE with the `-p` overrides, planned; undefined when FILE has errors. */
async function session(file: string, values: Record<string, unknown>, io: Io): Promise<Session | undefined> {
  const loaded = await load(file, values, io);
  return loaded && planLoaded(loaded.pipeline, loaded.kinds, values['cache-dir'] as string | undefined);
}

/**
 * `stale  warm[…]: param lr: 0.01 → 0.02`: one line per stage that is not fresh, and per fresh one whose key changed
 * since the last run to one already computed (`fresh  warm[…]: param lr: 0.01 → 0.02 (already in the cache)`).
 */
export function planLines(plan: Plan): string[] {
  const said = plan.stages.filter((s) => s.reasons.length > 0).map((s) => {
    const cached = s.status === 'fresh' ? ' (already in the cache)' : '';
    // Generated names are `NAME[LABEL]`, and a stage name holds no `[`.
    return { name: s.name, declared: s.name.split('[')[0]!, why: `${s.reasons.join('; ')}${cached}`, status: s.status };
  });
  // Variants of one stage that share status and reasons (the 240 `new stage`s of a first plan) make one line.
  const groups = new Map<string, typeof said>();
  for (const s of said) {
    const group = `${s.status}\n${s.declared}\n${s.why}`;
    groups.set(group, [...(groups.get(group) ?? []), s]);
  }
  return [...groups.values()].flatMap((g) => {
    const [first] = g;
    if (g.length <= LISTED_NAMES + 1) return g.map((s) => `${s.status.padEnd(7)}${s.name}: ${s.why}`);
    return [`${first!.status.padEnd(7)}${first!.name} and ${g.length - 1} more variants of ${first!.declared}: ${first!.why}`];
  });
}

function planSummary(plan: Plan): string {
  const c = plan.counts;
  return `${c.stale} stale, ${c.fresh} fresh${c.error ? `, ${c.error} cannot run` : ''}`;
}

function outcomeJson(o: StageOutcome) {
  return {
    name: o.name, key: o.key ?? null, status: o.status, reasons: o.reasons, seconds: o.seconds ?? null,
    error: o.error ?? null, metrics: o.metrics ?? null, restored: o.restored ?? [],
    ...(o.partial ? { partial: { inputs: o.partial.inputs, missing: o.partial.missing.map((m) => ({ stage: m.stage, status: m.status, reason: m.reason })) } } : {}),
  };
}

function exitCodeOf(r: RunResult): number {
  if (r.interrupted) return EXIT.interrupted;
  return r.counts.failed > 0 || r.counts.skipped > 0 || r.counts.aborted > 0 ? EXIT.failed : EXIT.ok;
}

/**
 * The names --backend takes: stages/lm/backend.ts's BACKEND_NAMES and `auto` (that module imports tfjs, too heavy
 * for the CLI; tests/runtime/cli.test.ts keeps the two lists equal).
 */
export const BACKEND_FLAG_VALUES = ['tensorflow', 'webgpu', 'wasm', 'cpu', 'auto'] as const;

/** A bad environment variable: reported like a usage error (exit 2, before anything runs) but without the usage line. */
class SettingError extends Error {}

/**
 * Usage errors in --jobs/--gpus/--stages-per-gpu/--backend/--executor and bad GPU kernel variables surface before the
 * pipeline is loaded (a typo in --backend would else fall back silently).
 */
function checkSlotFlags(values: Record<string, unknown>): void {
  // The GPU kernel variables are read deep inside model stages: a typo would fail the first of them, after the rest ran.
  const wrong = gpuSettingErrors();
  try {
    gpuMemoryOverride();
  } catch (err) {
    wrong.push((err as Error).message);
  }
  if (wrong.length > 0) throw new SettingError(wrong.join('\n'));
  positiveInt(values.jobs, '--jobs');
  positiveInt(values.gpus, '--gpus', true);
  positiveInt(values['stages-per-gpu'], '--stages-per-gpu');
  const backend = values.backend;
  if (backend !== undefined && !(BACKEND_FLAG_VALUES as readonly unknown[]).includes(backend)) {
    throw new UsageError(`--backend must be one of ${BACKEND_FLAG_VALUES.join(', ')}, got ${String(backend)}`);
  }
  const executor = values.executor;
  if (executor !== undefined && !(EXECUTOR_TYPES as readonly unknown[]).includes(executor)) {
    throw new UsageError(`--executor must be one of ${EXECUTOR_TYPES.join(', ')}, got ${String(executor)}`);
  }
}

/**
 * A run here pins its stages within its own CUDA_VISIBLE_DEVICES: `--gpus N` past the GPUs that lists would put
 * stages on GPUs it leaves out (someone else's on a shared machine), so it stops before anything runs.
 */
function checkGpuCount(values: Record<string, unknown>): void {
  const gpus = positiveInt(values.gpus, '--gpus', true);
  const outside = gpus === undefined ? undefined : gpuCountError(gpus);
  if (outside !== undefined) throw new SettingError(outside);
}

/** Where a run computes, with the executor settings and the file they come from. */
interface Where {
  type: ExecutorType;
  settings: ExecutorSettings;
  settingsFile?: string;
}

/** Where a run computes: --executor, else the workspace's `executor.type`. Undefined (after printing why) when the settings have mistakes. */
function chooseExecutor(values: Record<string, unknown>, s: Session, io: Io): Where | undefined {
  const loaded = loadSettings(s.pipeline.workspace, Object.keys(s.kinds));
  if (loaded.diagnostics.length > 0) {
    write(io.stderr, renderDiagnostics(loaded.diagnostics, loaded.sources));
    return undefined;
  }
  return {
    type: (values.executor as ExecutorType | undefined) ?? loaded.executor.type, settings: loaded.executor,
    ...(loaded.file === undefined ? {} : { settingsFile: path.relative(process.cwd(), loaded.file) || loaded.file }),
  };
}

/** The slot choices of a run on this machine, as RunOptions describes them. */
export type SlotOptions = Pick<RunOptions, 'jobs' | 'gpus' | 'hideGpus' | 'gpuMemoryMiB' | 'stagesPerGpu' | 'hostMemoryMiB'>;

/**
 * Memory free now, in MiB: what model stages running without a GPU share (each wasm worker may take up to 4.5 GiB).
 * Node's availableMemory counts a container's or job's limit too; before Node 20.13, the machine's free memory.
 */
export function freeMemoryMiB(): number {
  const available = (process as { availableMemory?: () => number }).availableMemory?.() ?? os.freemem();
  return Math.floor(available / 2 ** 20);
}

/** Whether a stale stage's kind asks for a GPU. */
function staleWantGpu(s: Session): boolean {
  const stale = new Set(s.plan.stages.filter((p) => p.status === 'stale').map((p) => p.name));
  return s.pipeline.stages.some((st) => stale.has(st.name) && (s.kinds[st.kind]?.resources?.(st.params).gpu ?? 0) > 0);
}

/**
 * What a local run with GPU stages says first: the devices its GPU slots pin to, how stages share them, and when
 * --jobs allows fewer stages at once than the GPUs would (each GPU stage takes a CPU slot too); undefined without GPUs.
 */
export function gpuSlotsLine(s: Session, slots: SlotOptions, env: NodeJS.ProcessEnv = process.env): string | undefined {
  if (slots.gpus === 0 || !staleWantGpu(s)) return undefined;
  const devices = gpuDeviceIds(slots.gpus, env).join(', ');
  const per = slots.stagesPerGpu;
  let sharing: string;
  if (per !== undefined) sharing = per === 1 ? 'one stage on each (--stages-per-gpu 1)' : `up to ${per} one-GPU stages on each (--stages-per-gpu ${per})`;
  else if (slots.gpuMemoryMiB !== undefined) {
    const from = gpuMemoryOverride(env) !== undefined ? 'PAUSEPIPE_GPU_MEMORY_MIB' : 'nvidia-smi';
    sharing = `${slots.gpuMemoryMiB} MiB each (${from}): model stages share one while their memory estimates fit`;
  } else sharing = 'one stage on each (their memory unknown: PAUSEPIPE_GPU_MEMORY_MIB or --stages-per-gpu N lets stages share one)';
  const capped = slots.jobs < slots.gpus * (per ?? 1) ? `; --jobs ${slots.jobs} runs at most ${slots.jobs} at once (a GPU stage takes a CPU slot too)` : '';
  return `GPUs ${devices}: ${sharing}${capped}`;
}

/**
 * CPU slots from --jobs (default: cores), GPUs from --gpus (default: detected, asked only when a stale stage wants
 * one), how GPU stages share a GPU (--stages-per-gpu, else by their memory estimates against nvidia-smi's memory), and
 * the memory free now, which stages running without a GPU share by their estimates.
 */
export async function slotOptions(values: Record<string, unknown>, s: Session): Promise<SlotOptions> {
  const jobs = positiveInt(values.jobs, '--jobs') ?? os.availableParallelism();
  const wantsGpu = staleWantGpu(s);
  const asked = positiveInt(values.gpus, '--gpus', true);
  // `--gpus 0` says this run uses no GPU: its stages see none, rather than every GPU of the machine.
  const hostMemoryMiB = freeMemoryMiB();
  // Model stages then run on the CPU: the memory free is what they share, as on a machine without a GPU.
  if (asked === 0) return { jobs, gpus: 0, hideGpus: true, hostMemoryMiB };
  const gpus = asked ?? (wantsGpu ? await detectGpus() : 0);
  const stagesPerGpu = positiveInt(values['stages-per-gpu'], '--stages-per-gpu');
  if (stagesPerGpu !== undefined || gpus === 0 || !wantsGpu) return { jobs, gpus, stagesPerGpu, hostMemoryMiB };
  const gpuMemoryMiB = await detectGpuMemoryMiB();
  return gpuMemoryMiB === undefined ? { jobs, gpus, hostMemoryMiB } : { jobs, gpus, gpuMemoryMiB, hostMemoryMiB };
}

/** The machine a run with these flags would use, for the memory lines of `plan` and the refusals of `run` (`slots`: its local slots). */
function memoryMachine(values: Record<string, unknown>, where: Where, slots: SlotOptions | undefined): MemoryMachine | undefined {
  if (where.type === 'slurm') return { cluster: true, gpus: 0, wasm: false };
  if (slots === undefined) return undefined;
  return {
    cluster: false, gpus: slots.gpus, wasm: runsOnWasm(values.backend as string | undefined, slots.gpus), ...(slots.hideGpus ? { gpusHidden: true } : {}),
    ...(slots.gpuMemoryMiB === undefined ? {} : { gpuMemoryMiB: slots.gpuMemoryMiB }),
    ...(slots.stagesPerGpu === undefined ? {} : { stagesPerGpu: slots.stagesPerGpu }),
    ...(slots.hostMemoryMiB === undefined ? {} : { hostMemoryMiB: slots.hostMemoryMiB }),
  };
}

/**
 * Slots and executor of a Slurm run: every stale stage is a job, the cluster places it, so the runner holds no
 * GPUs itself (--jobs, when given, caps the CPUs queued at once; --gpus 0 asks the cluster for no GPUs).
 */
function slurmOptions(values: Record<string, unknown>, where: Where, note: (text: string) => void) {
  return {
    jobs: positiveInt(values.jobs, '--jobs') ?? SLURM_DEFAULT_JOBS,
    gpus: 0,
    executor: slurmExecutor({
      settings: where.settings, noGpus: values.gpus === '0', note, ...(where.settingsFile === undefined ? {} : { settingsFile: where.settingsFile }),
    }),
  };
}

/**
 * The executor of a run on this machine (`run`, `watch`). A stage whose key has a Slurm job that a killed cluster run
 * left queued, running or finished follows and collects that job, rather than compute the stage a second time beside it.
 */
export function localRunExecutor(kinds: Record<string, StageKind>, settings: ExecutorSettings, note: (text: string) => void): Executor {
  return slurmExecutor({ settings, note, otherwise: localExecutor(kinds) });
}

/**
 * Signals that stop a run the way Ctrl-C does: schedulers (Slurm, Kubernetes, systemd) send SIGTERM, a closed
 * terminal SIGHUP. The exit code is 128 + the signal's number, as a shell reports a process it ended.
 */
const STOP_SIGNALS = ['SIGINT', 'SIGTERM', 'SIGHUP'] as const;
/** SIGPIPE stands for a write into a pipe whose reader went away (`run … | head`): Node reports it as EPIPE. */
export type StopSignal = (typeof STOP_SIGNALS)[number] | 'SIGPIPE';

/** Whether an error is a write into a pipe nobody reads any more (EPIPE, then writes after the stream closed on it). */
function isClosedPipe(error: unknown): boolean {
  const code = (error as NodeJS.ErrnoException | null)?.code;
  return code === 'EPIPE' || code === 'ERR_STREAM_DESTROYED';
}

let droppingClosedPipeWrites = false;

/**
 * Output nobody reads any more (`pausepipe show … | head`) is dropped rather than crashing the command (a run also
 * stops on it: onStopSignals); any other write error still ends the process. Once per process.
 */
function dropClosedPipeWrites(): void {
  if (droppingClosedPipeWrites) return;
  droppingClosedPipeWrites = true;
  for (const stream of [process.stdout, process.stderr]) {
    stream.on('error', (error) => {
      if (!isClosedPipe(error)) throw error;
    });
  }
}

/** Said at a second stop signal: what the exit hooks do (cache/lock.ts, stages/sh.ts), so a quiet exit leaves no one guessing. */
export const QUITTING = 'quitting at once: running stages killed; set-aside outs put back';

/** What a run says at the first stop signal: `interrupting (SIGTERM): stopping running stages (Ctrl-C again to quit at once)`. */
export function interruptingLine(signal: StopSignal, what: string): string {
  const why = signal === 'SIGINT' ? '' : signal === 'SIGPIPE' ? ' (its output was closed)' : ` (${signal})`;
  return `interrupting${why}: ${what} (Ctrl-C again to quit at once)`;
}

/** 130 for SIGINT, 143 for SIGTERM, 129 for SIGHUP, 141 for a closed output pipe. */
export function signalExitCode(signal: StopSignal): number {
  return 128 + os.constants.signals[signal];
}

/**
 * Calls `stop` at the first stop signal; a second one calls `quit` (to say so) and quits at once with the first's exit
 * code (the exit hooks still release the locks and end the commands). Output whose reader went away (`run … | head`)
 * stops the run once, as a closed terminal does; the writes after it go nowhere. Returns what removes the handlers.
 */
export function onStopSignals(stop: (signal: StopSignal) => void, quit?: () => void): () => void {
  let first: StopSignal | undefined;
  // Bound per signal: the handler must know which one came, also when it is emitted without its name.
  const handlers = STOP_SIGNALS.map((signal) => [signal, () => {
    if (first !== undefined) {
      quit?.();
      process.exit(signalExitCode(first));
    }
    first = signal;
    stop(signal);
  }] as const);
  for (const [signal, handler] of handlers) process.on(signal, handler);
  const onClosedPipe = (error: unknown) => {
    if (!isClosedPipe(error) || first !== undefined) return;
    first = 'SIGPIPE';
    stop('SIGPIPE');
  };
  for (const stream of [process.stdout, process.stderr]) stream.on('error', onClosedPipe);
  return () => {
    for (const [signal, handler] of handlers) process.off(signal, handler);
    for (const stream of [process.stdout, process.stderr]) stream.off('error', onClosedPipe);
  };
}

/**
 * Runs a planned session with progress on stderr. A stop signal aborts cleanly (workers and commands stopped, Slurm
 * jobs cancelled, nothing half-committed, locks released); a second one quits at once, and the exit hooks still
 * release the locks and end the commands.
 */
async function runWithSignals(
  s: Session, values: Record<string, unknown>, io: Io, quiet: boolean, where: Where, local?: SlotOptions,
): Promise<{ result: RunResult; signal?: StopSignal }> {
  // A machine without Slurm's commands is told once, before anything is submitted (a cached run needs none).
  if (where.type === 'slurm' && s.plan.counts.stale > 0) await new SlurmClient().version();
  // The reporter draws its overall line against the slots; a Slurm executor's notes go through it once it exists.
  const note = (text: string) => reporter.note(text);
  const slots = where.type === 'slurm'
    ? slurmOptions(values, where, note)
    : { ...(local ?? await slotOptions(values, s)), executor: localRunExecutor(s.kinds, where.settings, note) };
  const reporter: Reporter = quiet ? SILENT_REPORTER
    : createReporter(io.stderr, { slots: slots.jobs, stages: runStagesOf(s), cluster: where.type === 'slurm' });
  if (where.type !== 'slurm') {
    const gpuLine = gpuSlotsLine(s, slots);
    if (gpuLine !== undefined) reporter.note(gpuLine);
  }
  const controller = new AbortController();
  let stoppedBy: StopSignal | undefined;
  // Through the reporter: written straight to the terminal, the next redraw of the live block would erase it.
  const say = (line: string) => (quiet ? write(io.stderr, line) : reporter.note(line));
  const removeHandlers = onStopSignals((signal) => {
    stoppedBy = signal;
    say(interruptingLine(signal, where.type === 'slurm' ? 'stopping running stages and cancelling their Slurm jobs' : 'stopping running stages'));
    controller.abort();
  }, () => {
    say(`${QUITTING}${where.type === 'slurm' ? '; Slurm jobs not cancelled (the next run adopts them)' : ''}`);
  });
  const overrides = overridesOf(values);
  try {
    const result = await runSession(s, {
      ...slots, keepGoing: values['keep-going'] === true, backend: values.backend as string | undefined,
      signal: controller.signal, reporter, ...(overrides.length > 0 ? { overrides: overridesRecord(overrides) } : {}),
    });
    return { result, signal: stoppedBy };
  } finally {
    removeHandlers();
  }
}

/** The metrics each kind puts in tables for people (all of them for kinds that name none). */
function headlineOf(kinds: Record<string, StageKind>): (kind: string) => string[] | undefined {
  return (kind) => kinds[kind]?.tableMetrics;
}

/**
 * The widest line a terminal shows without wrapping (one column spare: some terminals wrap a line that fills the
 * last one), so tables continue below instead of wrapping through numbers; none when output goes to a file.
 */
function terminalWidth(stream: Io['stdout']): number | undefined {
  return stream.isTTY && stream.columns ? stream.columns - 1 : undefined;
}

/** The one stage a name or a selector picks, as run's targets do; a usage error otherwise. */
function oneStage(pipeline: Pipeline, stageName: string): Pipeline['stages'][number] {
  const selected = selectTargets(pipeline, [stageName]);
  if ('error' in selected) throw new UsageError(selected.error);
  const matches = pipeline.stages.filter((x) => selected.names.has(x.name));
  if (matches.length !== 1) throw new UsageError(`\`${stageName}\` selects ${matches.length} variants; name one, e.g. \`${matches[0]!.name}\``);
  return matches[0]!;
}

/** The path itself or its nearest existing ancestor, when that is no folder: what stops `mkdir -p` (EEXIST, ENOTDIR). */
async function fileInTheWay(target: string): Promise<string | undefined> {
  for (let p = target; ; p = path.dirname(p)) {
    const found = await stat(p).catch(() => undefined);
    if (found) return found.isDirectory() ? undefined : p;
    if (path.dirname(p) === p) return undefined;
  }
}

/** Dawn's line about a limit it lowered to fit its own allocator, e.g. `Warning: maxDynamicUniformBuffersPerPipelineLayout artificially reduced from 1000000 to 16 ...`. */
const DAWN_LIMIT_NOTE = /^Warning: max\w+ artificially reduced from \d+ to \d+/;

/**
 * What a person reads after a run: failures with their log tails, a summary, partial results, and the results table
 * with the files to look at (`results: false`: not those, for a run whose pipeline changed under it: `watch` runs the
 * new one next). `said`: failed stages whose failure the caller has told already (watch's held-back ones), left out.
 */
export function reportRun(s: Session, r: RunResult, seconds: number, io: Io, { results = true, said }: { results?: boolean; said?: ReadonlySet<string> } = {}): void {
  const failed = r.outcomes.filter((x) => x.status === 'failed' && !said?.has(x.name));
  // 80 variants failing alike (a bad eval flag in a matrix) told in full were 320 lines of the same: past four, the
  // first three are told in full and the others by error, which `show` lists one by one with their logs.
  const told = failed.length <= LISTED_NAMES + 1 ? failed : failed.slice(0, LISTED_NAMES);
  for (const o of told) {
    const lines = [`failed ${o.name}: ${o.error ?? ''}`];
    // The tail without what the first line already says (the runner's last lines, `pausepipe: <the error>`) and
    // without Dawn's notes on its own limits (printed by every WebGPU probe, even where the stage runs on wasm): the
    // full log keeps both.
    const repeated = `pausepipe: ${o.error ?? ''}`.split('\n');
    const tail = o.logTail ?? [];
    const own = tail.slice(-repeated.length).join('\n') === repeated.join('\n') ? tail.slice(0, -repeated.length) : tail;
    const shown = own.filter((l) => l !== '' && !DAWN_LIMIT_NOTE.test(l));
    lines.push(...shown.map((l) => `  | ${l}`));
    if (o.logPath) lines.push(`  full log: ${o.logPath}`);
    write(io.stderr, lines.join('\n'));
  }
  const byError = new Map<string, string[]>();
  for (const o of failed.slice(told.length)) byError.set(o.error ?? '', [...(byError.get(o.error ?? '') ?? []), o.name]);
  for (const [error, names] of byError) {
    write(io.stderr, `failed ${names[0]}${names.length > 1 ? ` and ${names.length - 1} more` : ''}: ${error}`);
  }
  if (byError.size > 0) write(io.stderr, `  each failure with its log: pausepipe show ${path.relative(process.cwd(), s.pipeline.file)}`);
  const c = r.counts;
  const parts = [`ran ${c.ran}`, `cached ${c.cached}`];
  if (c.failed) parts.push(`failed ${c.failed}`);
  if (c.skipped) parts.push(`skipped ${c.skipped}`);
  if (c.aborted) parts.push(`interrupted ${c.aborted}`);
  write(io.stdout, `${parts.join(', ')} in ${formatSeconds(seconds)}`);
  for (const o of r.outcomes) if (o.partial) write(io.stdout, partialRunLine(o.name, o.partial));
  if (!results) return;
  const metrics = new Map(r.outcomes.map((o) => [o.name, o.metrics]));
  // The variants a partial result went without get rows saying how they ended, where their numbers would be.
  const missing = new Map(r.outcomes.flatMap((o) => o.partial?.missing ?? []).map((m) => [m.stage, `${m.status}: ${m.reason}`]));
  const { table } = buildResultTable(s.pipeline, (n) => metrics.get(n), undefined, false, headlineOf(s.kinds), (n) => missing.get(n));
  if (table.rows.length > MAX_RUN_TABLE_ROWS) write(io.stdout, `${table.rows.length} result rows: see \`pausepipe show ${path.relative(process.cwd(), s.pipeline.file)}\``);
  else if (table.rows.length > 0) write(io.stdout, `\n${renderTable(table, 'text', terminalWidth(io.stdout))}`);
  for (const o of r.outcomes) {
    const stage = s.pipeline.stages.find((x) => x.name === o.name);
    const files = stage ? s.kinds[stage.kind]?.highlights ?? [] : [];
    if (o.key === undefined || (o.status !== 'ran' && o.status !== 'cached')) continue;
    const name = o.partial ? `${o.name} (partial)` : o.name;
    for (const f of files) write(io.stdout, `${name}: ${path.relative(process.cwd(), path.join(s.store.artifactsDir(o.key), f))}`);
  }
}

/** `table is partial: 1 of 3 inputs missing (eval[b] failed: …)`, the missing ones named up to LISTED_NAMES. */
function partialRunLine(name: string, partial: NonNullable<StageOutcome['partial']>): string {
  const named = partial.missing.slice(0, LISTED_NAMES).map((m) => `${m.stage} ${m.status}: ${m.reason}`);
  const more = partial.missing.length > LISTED_NAMES ? `; ${partial.missing.length - LISTED_NAMES} more` : '';
  return `${name} is partial: ${partial.missing.length} of ${partial.inputs} inputs missing (${named.join('; ')}${more})`;
}

/** One cache's gc, reported; 'stopped before it started' when the stop came while it waited for another gc. */
async function gcOne(root: string, keep: Set<string>, dryRun: boolean, signal: AbortSignal, io: Io): Promise<'done' | 'stopped before it started'> {
  const store = new ArtifactStore(root);
  let r: GcResult;
  try {
    r = await store.gc(keep, { dryRun, signal, onWait: (owner) => write(io.stderr, `waiting for another gc (${describeOwner(owner)})`) });
  } catch (error) {
    if (signal.aborted) return 'stopped before it started';
    throw error;
  }
  const verb = dryRun ? 'would remove' : 'removed';
  // A bare key says nothing to a person: name the stage its manifest records.
  for (const key of dryRun ? r.removed : []) write(io.stdout, `would remove ${key} (${store.readManifest(key)?.stage ?? 'manifest damaged'})`);
  for (const rel of dryRun ? r.leftovers : []) write(io.stdout, `would remove ${rel}`);
  for (const rel of r.foreign) write(io.stderr, `left alone: ${rel} (not written by pausepipe)`);
  const inUse = r.inUse > 0 ? `, ${r.inUse} in use by a live run` : '';
  const stopped = r.interrupted ? ' before it was stopped; the rest stays for the next gc' : '';
  write(io.stdout, `${root}: ${verb} ${r.removed.length} entr${r.removed.length === 1 ? 'y' : 'ies'} (${(r.freedBytes / 1e6).toFixed(1)} MB), ` +
    `${r.leftovers.length} leftover(s)${stopped}; kept ${r.kept}${inUse}`);
  return 'done';
}

const COMMANDS: Record<string, Command> = {
  run: {
    usage: 'run FILE [TARGET...] [-p NAME=VALUE]... [--force] [--jobs N] [--gpus N] [--stages-per-gpu N] [--keep-going] [--backend NAME] [--executor local|slurm] [--cache-dir D] [--json]',
    summary: 'run the stale stages of a pipeline and print its results',
    options: {
      ...CACHE_DIR, ...OVERRIDES, jobs: { type: 'string' }, gpus: { type: 'string' }, 'stages-per-gpu': { type: 'string' },
      'keep-going': { type: 'boolean' }, backend: { type: 'string' }, executor: { type: 'string' }, json: { type: 'boolean' },
      force: { type: 'boolean' },
    },
    help: [
      'Runs every stale stage (independent ones in parallel), reuses cached ones, prints a results table.',
      'With TARGETs, only those stages and what they need.',
      TARGETS_HELP,
      OVERRIDES_HELP,
      '  --force         re-run the targets (all stages without targets) even when cached, and everything',
      '                  downstream of them, so no cached result stays computed from a replaced one',
      RUNNING_HELP,
      '  --executor E    local (this machine) or slurm (one batch job per stage); default: the workspace\'s',
      '                  executor.type in pausepipe.json or package.json, else local',
      CACHE_HELP,
      '  --json          print the outcome of every stage as JSON on stdout',
      'Exit code: 0 all done, 1 a stage failed, 2 invalid pipeline, 128 + the signal when stopped (130 Ctrl-C, 143 SIGTERM, 129 SIGHUP).',
    ].join('\n'),
    async run({ values, positionals }, io) {
      const started = Date.now();
      checkSlotFlags(values);
      const { file, targets } = fileAndTargets(positionals);
      const s = await plannedSession(file, targets, values, io);
      if (!s) return EXIT.invalid;
      const where = chooseExecutor(values, s, io);
      if (!where) return EXIT.invalid;
      let local: SlotOptions | undefined;
      if (where.type !== 'slurm') {
        checkGpuCount(values);
        local = await slotOptions(values, s);
        // A stage that would refuse itself when it starts (after the stages before it ran) stops the run now instead.
        const memory = memoryPlan(s, memoryMachine(values, where, local)!);
        const lines = cannotRunLines(memory, s);
        if (lines.length > 0) write(io.stderr, lines.join('\n'));
        if (memory.stages.some((m) => m.cannotRun?.certain)) {
          write(io.stderr, 'nothing was run');
          return EXIT.invalid;
        }
        if (lines.length > 0) write(io.stderr, 'running them anyway: an estimate is no measurement');
      }
      const { result, signal } = await runWithSignals(s, values, io, values.json === true, where, local);
      const code = signal !== undefined ? signalExitCode(signal) : exitCodeOf(result);
      if (values.json) write(io.stdout, JSON.stringify({ exitCode: code, counts: result.counts, interrupted: result.interrupted, stages: result.outcomes.map(outcomeJson) }, null, 2));
      else reportRun(s, result, (Date.now() - started) / 1000, io);
      return code;
    },
  },
  plan: {
    usage: 'plan FILE [TARGET...] [-p NAME=VALUE]... [--force] [--gpus N] [--stages-per-gpu N] [--backend NAME] [--executor local|slurm] [--cache-dir D] [--json]',
    summary: 'say which stages are stale and why, and the memory of model stages, without running anything',
    options: {
      ...CACHE_DIR, ...OVERRIDES, json: { type: 'boolean' }, force: { type: 'boolean' }, gpus: { type: 'string' },
      'stages-per-gpu': { type: 'string' }, backend: { type: 'string' }, executor: { type: 'string' },
    },
    help: [
      'Lists every stale stage with the reasons (param changes, changed files, upstream stages, kind versions);',
      'a parameter set by -p names the override. A stage changed since the last run to a result the cache holds',
      'is listed as fresh with what changed. With TARGETs, what `run FILE TARGET...` would run.',
      'Model stages to run get a `memory` line: their estimate and how this machine runs them (activation',
      'checkpointing, stages per GPU, how many fit in the memory free), or why they cannot run here.',
      TARGETS_HELP,
      OVERRIDES_HELP,
      '  --force         plan as `run --force` would',
      '  --gpus N, --stages-per-gpu N, --backend NAME, --executor E',
      '                  plan the memory for a run given these, as `run` takes them',
      CACHE_HELP,
      '  --json          the plan as JSON',
      'Exit code: 0, or 1 when a stage cannot run (no key, or beyond the only place it could run here).',
    ].join('\n'),
    async run({ values, positionals }, io) {
      checkSlotFlags(values);
      const { file, targets } = fileAndTargets(positionals);
      const s = await plannedSession(file, targets, values, io);
      if (!s) return EXIT.invalid;
      const where = chooseExecutor(values, s, io);
      if (!where) return EXIT.invalid;
      let slots: SlotOptions | undefined;
      if (where.type !== 'slurm' && s.plan.counts.stale > 0) {
        checkGpuCount(values);
        slots = await slotOptions(values, s);
      }
      // Nothing stale (no slots asked for): no machine, and nothing to say about memory.
      const machine = memoryMachine(values, where, slots);
      const memory = machine ? memoryPlan(s, machine) : { stages: [], unknown: [] };
      if (values.json) {
        const overrides = overridesRecord(overridesOf(values));
        const byName = new Map(memory.stages.map(({ name, ...m }) => [name, m]));
        const unknown = new Set(memory.unknown);
        const stages = s.plan.stages.map((p) => byName.has(p.name) ? { ...p, memory: byName.get(p.name) } : unknown.has(p.name) ? { ...p, memory: null } : p);
        write(io.stdout, JSON.stringify({ file: s.pipeline.file, cache: s.cacheRoot, overrides, counts: s.plan.counts, machine: machine ?? null, stages }, null, 2));
      } else {
        const said = machine ? [...memoryLines(memory, machine), ...cannotRunLines(memory, s)] : [];
        write(io.stdout, [...planLines(s.plan), ...said, planSummary(s.plan)].join('\n'));
      }
      return s.plan.counts.error > 0 || memory.stages.some((m) => m.cannotRun?.certain) ? EXIT.failed : EXIT.ok;
    },
  },
  show: {
    usage: 'show FILE [TARGET...] [--stage NAME] [--all] [-p NAME=VALUE]... [--json|--csv|--md] [--cache-dir D]',
    summary: 'the metrics of every computed variant as a table',
    options: {
      ...CACHE_DIR, ...OVERRIDES, stage: { type: 'string' }, all: { type: 'boolean' }, json: { type: 'boolean' }, csv: { type: 'boolean' },
      md: { type: 'boolean' },
    },
    help: [
      'One row per computed variant with scalar metrics; columns: stage, loop variables, metrics (in text and',
      'Markdown the kind\'s headline metrics, with the backend that computed each model row; --json and --csv',
      'carry every metric). One table per declared stage. With TARGETs, only their rows (stages outside loops too).',
      TARGETS_HELP,
      '  --stage NAME    only this stage (declared name, or one generated name)',
      '  --all           also the stages outside `for each` loops (by default only variants are shown)',
      OVERRIDES_HELP,
      '  --json | --csv | --md   other formats than the aligned text table',
      CACHE_HELP,
    ].join('\n'),
    async run({ values, positionals }, io) {
      const formats = (['json', 'csv', 'md'] as const).filter((f) => values[f] === true);
      if (formats.length > 1) throw new UsageError('choose one of --json, --csv, --md');
      const { file, targets } = fileAndTargets(positionals);
      const loaded = await load(file, values, io);
      if (!loaded) return EXIT.invalid;
      const selected = targetNames(loaded.pipeline, targets);
      // Keys need the upstream stages; the rows are the selected ones only.
      const pipeline = selected ? restrictPipeline(loaded.pipeline, withUpstream(loaded.pipeline, selected)) : loaded.pipeline;
      const planned = await planLoaded(pipeline, loaded.kinds, values['cache-dir'] as string | undefined);
      const s = selected ? { ...planned, pipeline: restrictPipeline(loaded.pipeline, selected) } : planned;
      const stage = values.stage as string | undefined;
      if (stage !== undefined && !s.pipeline.stages.some((x) => x.declaredName === stage || x.name === stage)) {
        const asTarget = selectTargets(s.pipeline, [stage]);
        throw new UsageError('error' in asTarget ? asTarget.error : `--stage takes a declared or generated name, not a selector: \`${stage}\``);
      }
      const metricsOf = (name: string) => {
        const k = s.keys.get(name);
        return isKeyed(k) ? s.manifests.get(k.key)?.metrics : undefined;
      };
      const format: TableFormat = formats[0] ?? 'text';
      const forPeople = format !== 'json' && format !== 'csv';
      const includeShared = values.all === true || selected !== undefined;
      const { table, notComputed } = buildResultTable(s.pipeline, metricsOf, stage, includeShared, forPeople ? headlineOf(s.kinds) : undefined);
      if (table.rows.length > 0 || format === 'json') write(io.stdout, renderTable(table, format, terminalWidth(io.stdout)));
      else if (notComputed.length > 0) write(io.stderr, 'no results yet');
      // Everything is computed, yet nothing to show: say why rather than suggest a run that changes nothing.
      else if (stage === undefined && values.all !== true) write(io.stderr, 'no variants to show (stages in `for each` loops); --all shows the other stages too');
      // Their kind may keep its metrics out of the table for people (inject_pauses: one constant pause token).
      else if (forPeople && buildResultTable(s.pipeline, metricsOf, stage, includeShared).table.rows.length > 0) {
        write(io.stderr, 'the selected stages are computed; their kind shows none of their metrics in this table: --csv or --json shows them');
      } else write(io.stderr, 'the selected stages are computed but have no scalar metrics to show');
      // A damaged entry is there but not used: "not computed" would send the user looking for a run that never happened.
      const damaged = notComputed.flatMap((name) => {
        const k = s.keys.get(name);
        const problem = isKeyed(k) ? s.damage.get(k.key) : undefined;
        return problem === undefined ? [] : [`${name} (${problem})`];
      });
      if (damaged.length > 0) {
        write(io.stderr, `${damaged.length} stage(s) with a damaged cache entry: ${damaged.join(', ')}; ` +
          `\`${runCommand(s.pipeline.file, targets, values)}\` computes them again, \`${repairCommand(s.pipeline.file, values)}\` removes them`);
      }
      const missing = notComputed.length - damaged.length;
      if (missing > 0) write(io.stderr, `${missing} stage(s) not computed yet: ${runCommand(s.pipeline.file, targets, values)}`);
      // Those tried before: how that attempt ended, and where its log is.
      for (const name of notComputed) {
        const k = s.keys.get(name);
        const failure = isKeyed(k) && !s.damage.has(k.key) ? lastFailure(s.store, k.key) : undefined;
        if (failure) write(io.stderr, `  ${name}: ${describeFailure(failure)}${failure.log ? ` (log: ${failure.log})` : ''}`);
        // A partial result stands in until the full one exists: where it is.
        const partial = isKeyed(k) && !failure ? lastPartial(s.store, k.key) : undefined;
        if (partial) write(io.stderr, `  ${name}: ${describePartial(partial)} (its result: ${path.relative(process.cwd(), s.store.artifactsDir(partial.key))})`);
      }
      return EXIT.ok;
    },
  },
  dag: {
    usage: 'dag FILE [TARGET...] [--format mermaid|dot|svg] [-p NAME=VALUE]... [--cache-dir D]',
    summary: 'the stage graph as Mermaid, Graphviz dot or an SVG picture',
    options: { ...CACHE_DIR, ...OVERRIDES, format: { type: 'string' } },
    help: [
      '  --format F      mermaid (default), dot, or svg (drawn in-process by Graphviz in WebAssembly; redirect it to a file)',
      'dot and svg draw each loop as a cluster of tables (a row per variant) and fill every stage by its plan status:',
      'fresh (cached), stale (runs next), failed last run (runs next) or cannot run. With TARGETs (as `run` takes',
      'them), only the targets and the stages they need.',
      OVERRIDES_HELP,
      CACHE_HELP,
    ].join('\n'),
    async run({ values, positionals }, io) {
      const format = (values.format as string | undefined) ?? 'mermaid';
      if (!(DAG_FORMATS as readonly string[]).includes(format)) throw new UsageError(`--format must be one of ${DAG_FORMATS.join(', ')}, got ${format}`);
      const { file, targets } = fileAndTargets(positionals);
      if (format === 'mermaid') {
        const loaded = await load(file, values, io);
        if (!loaded) return EXIT.invalid;
        const selected = targetNames(loaded.pipeline, targets);
        const pipeline = selected ? restrictPipeline(loaded.pipeline, withUpstream(loaded.pipeline, selected)) : loaded.pipeline;
        const text = await renderDag(pipeline, 'mermaid');
        write(io.stdout, text);
        const tooLarge = mermaidTooLarge(text);
        if (tooLarge !== null) write(io.stderr, `pausepipe dag: ${tooLarge}`);
        return EXIT.ok;
      }
      // Colours need the plan: the same keys and cache reads as `plan`, nothing runs.
      const s = await plannedSession(file, targets, values, io);
      if (!s) return EXIT.invalid;
      // A stale stage whose last attempt failed (not one interrupted), or made only a partial result, stands out from
      // those that only wait for it.
      const partialLastRun = (p: PlannedStage) => p.status === 'stale' && p.key !== undefined && lastPartial(s.store, p.key) !== undefined;
      const status = new Map(s.plan.stages.map((p): [string, DagStatus] => [p.name, failedLastRun(s, p) ? 'failed' : partialLastRun(p) ? 'partial' : p.status]));
      write(io.stdout, await renderDag(s.pipeline, format as DagFormat, status));
      return EXIT.ok;
    },
  },
  check: {
    usage: 'check FILE [-p NAME=VALUE]... [--cache-dir D]',
    summary: 'report the diagnostics of a pipeline without running it',
    options: { ...CACHE_DIR, ...OVERRIDES },
    help: ['Parses, expands and validates the pipeline and the workspace\'s settings (pausepipe.json or package.json\'s',
      '"pausepipe"); prints every error and warning with its location. Exit 2 on errors.', OVERRIDES_HELP, CACHE_HELP].join('\n'),
    async run({ values, positionals }, io) {
      const loaded = await load(oneFile(positionals), values, io);
      if (!loaded) return EXIT.invalid;
      // The settings `run` reads: a mistake there would stop the run, so check says it too.
      const settings = loadSettings(loaded.pipeline.workspace, Object.keys(loaded.kinds));
      if (settings.diagnostics.length > 0) {
        write(io.stderr, renderDiagnostics(settings.diagnostics, settings.sources));
        return EXIT.invalid;
      }
      // What `run` refuses once keys are made (runtime/keys.ts), said here with where each stage is declared.
      const shared = [...sharedOuts(loaded.pipeline, loaded.kinds)].map(([name, error]) =>
        diagnostic('E_UNSAFE_OUT', `${name}: ${error}`, loaded.pipeline.stages.find((st) => st.name === name)!.span,
          ['give each stage an out path of its own (in a loop, put the loop variables in it)']));
      if (shared.length > 0) {
        write(io.stderr, renderDiagnostics(shared, loaded.pipeline.sources));
        return EXIT.invalid;
      }
      const warnings = loaded.diagnostics.filter((d) => d.severity === 'warning').length;
      const count = loaded.pipeline.stages.length;
      write(io.stdout, `ok: ${count} stage${count === 1 ? '' : 's'}${warnings ? `, ${warnings} warning(s)` : ''}`);
      return EXIT.ok;
    },
  },
  gc: {
    usage: 'gc FILE... [-p NAME=VALUE]... [--dry-run] [--cache-dir D]',
    summary: 'delete cache entries that none of the given pipelines uses',
    options: { ...CACHE_DIR, ...OVERRIDES, 'dry-run': { type: 'boolean' } },
    help: [
      'Keeps the current result of every stage of every FILE, and every entry a live run is using (another',
      'pipeline\'s too); removes other entries and leftovers of dead runs. Only what the cache wrote is ever removed,',
      'and a folder without the cache\'s marker (pausepipe-cache.json) is refused.',
      OVERRIDES_HELP,
      '                  every FILE is read with the overrides: gc keeps the results a run with them uses',
      '  --dry-run       say what would be removed, with the stage each entry was computed for; remove nothing',
      CACHE_HELP,
    ].join('\n'),
    async run({ values, positionals }, io) {
      if (positionals.length === 0) throw new UsageError('expected at least one FILE');
      const dryRun = values['dry-run'] === true;
      const keepByRoot = new Map<string, Set<string>>();
      for (const file of positionals) {
        const s = await session(file, values, io);
        if (!s) return EXIT.invalid;
        const unkeyed = s.plan.stages.filter((p) => p.status === 'error');
        if (unkeyed.length > 0) {
          // Without a key we cannot tell which entry the stage needs; deleting blindly could lose days of compute.
          write(io.stderr, `pausepipe gc: refusing: ${unkeyed.map((p) => `${p.name} (${p.reasons.join('; ')})`).join(', ')} in ${file} has no key`);
          return EXIT.failed;
        }
        const keep = keepByRoot.get(s.cacheRoot) ?? new Set<string>();
        for (const p of s.plan.stages) if (p.key) keep.add(p.key);
        // A partial result stands in for a full one not computed yet: the next run missing the same inputs finds it.
        for (const p of s.plan.stages) if (p.key && p.status !== 'fresh') keep.add(lastPartial(s.store, p.key)?.key ?? p.key);
        keepByRoot.set(s.cacheRoot, keep);
      }
      // Ctrl-C stops between two removals, so the gc lock is released and nothing is removed half.
      const controller = new AbortController();
      let stoppedBy: StopSignal | undefined;
      const removeHandlers = onStopSignals((signal) => {
        stoppedBy = signal;
        write(io.stderr, 'interrupting gc: stopping after the removal under way (Ctrl-C again to quit at once)');
        controller.abort();
      });
      try {
        for (const [root, keep] of keepByRoot) {
          if (stoppedBy !== undefined) break;
          const gone = await gcOne(root, keep, dryRun, controller.signal, io);
          if (gone === 'stopped before it started') write(io.stderr, `${root}: gc stopped before it started; nothing removed`);
        }
      } finally {
        removeHandlers();
      }
      return stoppedBy !== undefined ? signalExitCode(stoppedBy) : EXIT.ok;
    },
  },
  verify: {
    usage: 'verify [FILE] [--repair] [--cache-dir D]',
    summary: 're-hash every cache entry and report damage',
    options: { ...CACHE_DIR, repair: { type: 'boolean' } },
    help: [
      'Re-reads every output of every entry against its manifest, checks each manifest against its checksum and key,',
      'and each entry against the bytes of the inputs it was computed from. Leftovers of killed runs are listed',
      '(gc clears them) but only damage fails: exit 1. The cache is found from FILE\'s workspace or the current folder.',
      'A check that takes more than a second says how far it is on stderr (`verify: 28,700/70,000 files (41%) ETA 12 s`).',
      '  --repair        remove the damaged entries (the next run computes them again)',
      CACHE_HELP,
    ].join('\n'),
    async run({ values, positionals }, io) {
      if (positionals.length > 1) throw new UsageError('expected at most one FILE');
      // findWorkspace starts from a file's folder; a name inside the current folder stands for it.
      const from = positionals[0] ?? path.join(process.cwd(), 'pipeline.pipe');
      const root = resolveCacheRoot(findWorkspace(from), values['cache-dir'] as string | undefined);
      const store = new ArtifactStore(root);
      // Reading back a large cache takes minutes: say how far it is (on stderr; the findings stay on stdout).
      const progress = createCheckProgress(io.stderr, 'verify');
      let problems: VerifyProblem[];
      try {
        problems = await store.verify({ onProgress: (done, total) => progress.update(done, total) });
      } finally {
        progress.close();
      }
      const damage = problems.filter((p) => p.severity === 'damage');
      for (const p of problems) write(io.stdout, `${p.severity === 'damage' ? 'damaged' : p.severity} ${p.key || '-'}: ${p.problem}`);
      const leftovers = problems.length - damage.length;
      const also = leftovers > 0 ? `; ${leftovers} leftover(s) of killed runs or foreign files (\`pausepipe gc\` clears leftovers)` : '';
      if (damage.length === 0) {
        write(io.stdout, `cache OK: ${store.keys().length} entries verified in ${root}${also}`);
        return EXIT.ok;
      }
      if (values.repair === true) {
        const removed = await store.repair(problems);
        write(io.stdout, `removed ${removed.length} damaged entr${removed.length === 1 ? 'y' : 'ies'} from ${root}; the next run computes them again${also}`);
        return EXIT.ok;
      }
      const keys = new Set(damage.map((p) => p.key)).size;
      write(io.stdout, `${keys} damaged entr${keys === 1 ? 'y' : 'ies'} in ${root} (\`pausepipe verify --repair\` removes them)${also}`);
      return EXIT.failed;
    },
  },
  watch: {
    usage: 'watch FILE [-p NAME=VALUE]... [--jobs N] [--gpus N] [--stages-per-gpu N] [--keep-going] [--backend NAME] [--cache-dir D]',
    summary: 're-run what became stale whenever the pipeline or a declared file changes',
    options: {
      ...CACHE_DIR, ...OVERRIDES, jobs: { type: 'string' }, gpus: { type: 'string' }, 'stages-per-gpu': { type: 'string' },
      'keep-going': { type: 'boolean' }, backend: { type: 'string' },
    },
    help: [
      'Runs once, then watches the .pipe files and every declared workspace file or folder; on a change it says which',
      'file changed and why each stage re-runs, then runs them. A change during a run stops at once the stages it',
      'replaces and adds the stages it adds; the others finish, then the new plan runs. A stage that failed is not',
      'tried again until its key changes or you type r and Enter (`run` tries it too). Ctrl-C stops.',
      OVERRIDES_HELP,
      RUNNING_HELP,
      CACHE_HELP,
    ].join('\n'),
    async run({ values, positionals }, io) {
      checkSlotFlags(values);
      checkGpuCount(values);
      const { watchPipeline } = await import('./watch.ts');
      return watchPipeline(oneFile(positionals), values, overridesOf(values), io);
    },
  },
  export: {
    usage: 'export FILE STAGE FOLDER [--partial] [-p NAME=VALUE]... [--cache-dir D]   (or: export STAGE FOLDER --pipeline FILE)',
    summary: "copy a stage's artifacts out of the cache",
    options: { ...CACHE_DIR, ...OVERRIDES, pipeline: { type: 'string' }, partial: { type: 'boolean' } },
    help: [
      'STAGE is a generated name (`train[lr=0.1]`), a selector that picks one variant, or a declared name with a single instance. FOLDER must be new or empty.',
      '  --partial       a report whose last run was partial (some variants failed under --keep-going): export that result',
      OVERRIDES_HELP,
      '                  the result exported is the one `run -p` with the same overrides computed',
      '  --pipeline FILE the pipeline, given after STAGE and FOLDER (as the report writes the command)',
      CACHE_HELP,
    ].join('\n'),
    async run({ values, positionals }, io) {
      const [file, stageName, folder] = exportArgs(positionals, values.pipeline as string | undefined);
      const s = await session(file, values, io);
      if (!s) return EXIT.invalid;
      const stage = oneStage(s.pipeline, stageName);
      const planned = s.plan.stages.find((p) => p.name === stage.name)!;
      const damage = planned.key === undefined ? undefined : s.damage.get(planned.key);
      if (planned.status !== 'fresh' && damage !== undefined) {
        write(io.stderr, `pausepipe export: the cache entry of ${stage.name} is damaged (${damage}); ` +
          `\`${runCommand(s.pipeline.file, [stage.name], values)}\` computes it again, \`${repairCommand(s.pipeline.file, values)}\` removes it`);
        return EXIT.failed;
      }
      // A partial result is exported only when asked for: a table missing variants must not pass for the whole one.
      const partial = planned.status !== 'fresh' && planned.key !== undefined ? lastPartial(s.store, planned.key) : undefined;
      const partialThere = partial !== undefined && s.store.has(partial.key);
      if (planned.status !== 'fresh' && !(values.partial === true && partialThere)) {
        const exportPartial = commandLine('export', s.pipeline.file, [stage.name, folder, '--partial', ...overrideFlags(values)], values);
        const orPartial = partialThere ? `, or export its partial result: ${exportPartial}` : '';
        write(io.stderr, `pausepipe export: ${stage.name} is not computed (${planned.reasons.join('; ')}); run it first: ${runCommand(s.pipeline.file, [stage.name], values)}${orPartial}`);
        return EXIT.failed;
      }
      const key = planned.status === 'fresh' ? planned.key! : partial!.key;
      const target = path.resolve(folder);
      const inTheWay = await fileInTheWay(target);
      if (inTheWay !== undefined) {
        const what = inTheWay === target ? `${target} is a file` : `${inTheWay} is a file, so ${target} cannot be made`;
        write(io.stderr, `pausepipe export: ${what}; give a new or empty folder`);
        return EXIT.failed;
      }
      const existing = await readdir(target).catch(() => []);
      if (existing.length > 0) {
        write(io.stderr, `pausepipe export: ${target} is not empty`);
        return EXIT.failed;
      }
      await mkdir(target, { recursive: true });
      await copyOutOfCache(s.store.artifactsDir(key), target);
      const files = (s.manifests.get(key) ?? s.store.readManifest(key))?.outputs.length ?? 0;
      const what = key === planned.key ? stage.name : `${stage.name} (${describePartial(partial!)})`;
      write(io.stdout, `exported ${what}: ${files} file(s) to ${target}`);
      return EXIT.ok;
    },
  },
  log: {
    usage: 'log FILE STAGE [--follow] [-p NAME=VALUE]... [--cache-dir D]',
    summary: "a stage's log: its cache entry's, the one a run is writing now, its last failed attempt's, or its Slurm job's",
    options: { ...CACHE_DIR, ...OVERRIDES, follow: { type: 'boolean', short: 'f' } },
    help: [
      'STAGE is a generated name (`train[lr=0.1]`), a selector that picks one variant, or a declared name with a single instance.',
      '  -f, --follow    while a run computes the stage (here or on a Slurm node), print its log as it grows until the stage ends;',
      '                  a Slurm job whose runner was killed: its own log until the job ends',
      OVERRIDES_HELP,
      CACHE_HELP,
    ].join('\n'),
    async run({ values, positionals }, io) {
      if (positionals.length !== 2) throw new UsageError('give the pipeline and one stage: log FILE STAGE');
      const [file, stageName] = positionals as [string, string];
      const s = await session(file, values, io);
      if (!s) return EXIT.invalid;
      const stage = oneStage(s.pipeline, stageName);
      const planned = s.plan.stages.find((p) => p.name === stage.name)!;
      let found = planned.key === undefined ? { state: 'none' as const } : findStageLog(s.store, planned.key);
      // Not computed in full, but its partial result is: that result's log.
      const partial = found.state === 'none' && planned.key !== undefined ? lastPartial(s.store, planned.key) : undefined;
      if (partial && s.store.readManifest(partial.key)) {
        found = findStageLog(s.store, partial.key);
        write(io.stderr, `${stage.name}: ${describePartial(partial)}; the log of that partial result:`);
      }
      if (found.state === 'none') {
        write(io.stderr, `pausepipe log: ${stage.name} has no log here yet (${planned.reasons.join('; ')}); ` +
          `run it: ${runCommand(s.pipeline.file, [stage.name], values)}`);
        return EXIT.failed;
      }
      if (found.state === 'failed') write(io.stderr, `${stage.name}: ${found.why}`);
      const follow = values.follow === true;
      if (found.state === 'job') {
        // No run follows this job (its runner was killed): its own log, as the node writes it.
        const job = `Slurm job${found.jobId ? ` ${found.jobId}` : ''}`;
        write(io.stderr, `${stage.name}: ${job}, submitted by an earlier run that no longer follows it; its log on the shared filesystem:`);
        const { ended } = await followJobLog(s.store, planned.key!, found.file, (text) => io.stdout.write(text), follow ? undefined : AbortSignal.abort());
        write(io.stderr, ended ? `${stage.name}: the job ended; a run collects its result: ${runCommand(s.pipeline.file, [stage.name], values)}`
          : `${stage.name}: the ${job} goes on; \`--follow\` prints the rest as it comes`);
        return EXIT.ok;
      }
      if (found.state !== 'running') {
        io.stdout.write(await readFile(found.file, 'utf8'));
        return EXIT.ok;
      }
      // Without --follow, what is there now (read as a follow that stops at once, in case the stage ends meanwhile).
      const end = await followStageLog(s.store, planned.key!, found.file, (text) => io.stdout.write(text), follow ? undefined : AbortSignal.abort());
      if (end.state === 'running') write(io.stderr, `${stage.name}: a run is computing it; \`--follow\` prints the rest as it comes`);
      else if (end.state === 'computed') write(io.stderr, `${stage.name}: done`);
      else write(io.stderr, `${stage.name}: ${end.state === 'failed' ? end.why : 'the run computing it ended without a result (killed?)'}`);
      return end.state === 'running' || end.state === 'computed' ? EXIT.ok : EXIT.failed;
    },
  },
  exec: {
    usage: 'exec FILE',
    summary: 'run one stage from a job description (what a Slurm job runs on its node)',
    options: {},
    help: [
      'Runs the stage that a runner described in FILE (job.json in the key\'s scratch folder of the shared cache),',
      'writes its artifacts and result.json beside FILE, and prints its log and progress lines on stdout.',
      'SIGTERM (scancel, the time limit, a preemption) stops the stage. Exit code: 0 done, 1 failed, 143 stopped.',
    ].join('\n'),
    async run({ positionals }, io) {
      const { execJob } = await import('./exec.ts');
      return execJob(oneFile(positionals), (line) => write(io.stdout, line === '' ? '\n' : line));
    },
  },
  lsp: {
    usage: 'lsp [--stdio]',
    summary: 'the language server for editors: diagnostics, completion, hover, definitions, references, rename, outline',
    // Language clients add --stdio (and VS Code --clientProcessId); stdio is the only transport.
    options: { stdio: { type: 'boolean' }, clientProcessId: { type: 'string' } },
    help: [
      'Speaks the Language Server Protocol on stdin and stdout until the editor closes it (editor/vscode/ starts it).',
      '  --stdio         the transport, the only one (editors pass it)',
    ].join('\n'),
    async run() {
      const { runLanguageServer } = await import('../lsp/server.ts');
      return runLanguageServer();
    },
  },
  diff: {
    usage: 'diff FILE [REV] [--all] [-p NAME=VALUE]... [--md|--json] [--cache-dir D]',
    summary: 'the metrics of every variant now against a git revision of the pipeline, or before the last run',
    options: { ...CACHE_DIR, ...OVERRIDES, all: { type: 'boolean' }, md: { type: 'boolean' }, json: { type: 'boolean' } },
    help: [
      'Compares the cached results of the pipeline as it is now with those of the same pipeline at git revision',
      'REV (its .pipe files and changed workspace files read from git), or without REV with the results the last',
      'run replaced. One row per changed metric: both values and the change. Both sides must be in the cache.',
      '  --all           also the metrics that did not change, and the stages outside `for each` loops',
      OVERRIDES_HELP,
      '                  With REV, the overrides apply to the pipeline at REV too: both sides as that command ran them.',
      '  --md | --json   Markdown, or every metric as JSON',
      CACHE_HELP,
    ].join('\n'),
    async run({ values, positionals }, io) {
      if (positionals.length < 1 || positionals.length > 2) throw new UsageError(`expected FILE and at most one REV, got ${positionals.length} arguments`);
      if (values.md && values.json) throw new UsageError('choose one of --md, --json');
      const [file, rev] = positionals as [string, string | undefined];
      const { compareMetrics } = await import('./diff-load.ts');
      const now = await load(file, values, io);
      if (!now) return EXIT.invalid;
      const result = await compareMetrics(now, rev, {
        cacheDir: values['cache-dir'] as string | undefined, all: values.all === true, everyMetric: values.json === true, overrides: overridesOf(values),
      });
      if (typeof result === 'string') throw new UsageError(result);
      if ('invalid' in result) {
        write(io.stderr, result.invalid);
        return EXIT.invalid;
      }
      const { renderDiff } = await import('./diff.ts');
      write(io.stdout, renderDiff(result.diff, values.json ? 'json' : values.md ? 'md' : 'text', terminalWidth(io.stdout)));
      const missing = result.diff.notComputed.now.length;
      if (missing > 0) write(io.stderr, `${missing} stage(s) not computed yet: ${runCommand(file, [], values)}`);
      return EXIT.ok;
    },
  },
  backends: {
    usage: 'backends [--json]',
    summary: 'which tensor backends start here, the GPU adapter, what auto picks, the GPU kernel variables',
    options: { json: { type: 'boolean' } },
    help: [
      'Starts each backend as --backend NAME would (a software GPU adapter included), then the one auto picks.',
      '  --json          the same as JSON',
    ].join('\n'),
    async run({ values, positionals }, io) {
      if (positionals.length > 0) throw new UsageError(`expected no arguments, got ${positionals.length}`);
      const { backendsReport, renderBackendsReport } = await import('./backends-report.ts');
      const report = await backendsReport();
      write(io.stdout, values.json ? JSON.stringify(report, null, 2) : renderBackendsReport(report));
      return EXIT.ok;
    },
  },
  kinds: {
    usage: 'kinds [NAME] [--md]',
    summary: 'reference of every stage kind (or one): params with types, defaults and descriptions; inputs',
    // Every command accepts --cache-dir (a script may pass it to all); kinds reads no cache, so its help leaves it out.
    options: { ...CACHE_DIR, md: { type: 'boolean' } },
    help: ['  NAME            only this kind', '  --md            Markdown instead of plain text'].join('\n'),
    async run({ values, positionals }, io) {
      if (positionals.length > 1) throw new UsageError(`expected at most one NAME, got ${positionals.length}`);
      const all = await loadKinds();
      const name = positionals[0];
      if (name !== undefined && !Object.hasOwn(all, name)) {
        const hint = didYouMean(name, Object.keys(all));
        throw new UsageError(`no stage kind \`${name}\`${hint.length > 0 ? `; ${hint[0]}` : ''} (known: ${Object.keys(all).join(', ')})`);
      }
      const kinds = name === undefined ? all : { [name]: all[name]! };
      write(io.stdout, values.md ? kindsMarkdown(kinds) : kindsText(kinds));
      return EXIT.ok;
    },
  },
};

/** Node's parseArgs errors in this tool's words: a mistyped option gets the closest real one. */
function optionError(e: Error & { code: string }, options: Options): string {
  const flags = [...Object.entries(options).flatMap(([long, o]) => [`--${long}`, ...(o.short ? [`-${o.short}`] : [])]), '--help'];
  const unknown = /^Unknown option '([^']+)'/.exec(e.message);
  if (e.code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION' && unknown) {
    const hint = didYouMean(unknown[1]!, flags);
    return `unknown option ${unknown[1]}${hint.length > 0 ? `; ${hint[0]}` : ''} (a positional argument starting with '-' goes after '--')`;
  }
  const missing = /^Option '(-\S+)(?:, (-\S+))? <value>' argument missing/.exec(e.message);
  if (missing) return `${missing[2] ? `${missing[1]} (${missing[2]})` : missing[1]} needs a value`;
  const extra = /^Option '(-\S+)' does not take an argument/.exec(e.message);
  if (extra) return `${extra[1]} takes no value`;
  return e.message;
}

/** `a (default) or b`: a GPU choice variable's values as gpu-settings.ts lists them. */
function choices(name: keyof typeof GPU_CHOICES): string {
  const [first, ...rest] = GPU_CHOICES[name];
  return `${first} (default) or ${rest.join(' or ')}`;
}

/** The variables pausepipe reads, for the main help. The WebGPU ones choose kernels; none changes a result's cache key. */
const ENVIRONMENT: Array<[string, string]> = [
  ['PAUSEPIPE_CACHE', 'cache folder when --cache-dir is not given'],
  ['PAUSEPIPE_KINDS', 'comma-separated modules exporting extra STAGE_KINDS (plugins, test kinds)'],
  ['PAUSEPIPE_DEBUG', 'set to 1 to print stack traces of unexpected errors'],
  ['PAUSEPIPE_GPU', 'the WebGPU adapter (0, 1, ..., or none) of this process; --gpus N sets it for each worker'],
  ['PAUSEPIPE_GPU_MEMORY_MIB', "each GPU's memory in MiB when nvidia-smi cannot tell (or to leave headroom): GPU sharing, sft's checkpointing"],
  ['PAUSEPIPE_MATMUL', `${choices('PAUSEPIPE_MATMUL')}: the product of the model's projections on WebGPU`],
  ['PAUSEPIPE_ATTENTION', `${choices('PAUSEPIPE_ATTENTION')}: the training attention kernels on WebGPU`],
  ['PAUSEPIPE_DECODE_GRAPH', `${choices('PAUSEPIPE_DECODE_GRAPH')}: replay recorded decode steps on WebGPU`],
  ['PAUSEPIPE_FROZEN_WEIGHTS', `${choices('PAUSEPIPE_FROZEN_WEIGHTS')}: frozen decoder projections kept as bfloat16 on WebGPU where exact (half their memory)`],
  ['PAUSEPIPE_DECODE_LOOKAHEAD', 'decode steps queued ahead of each read on WebGPU (default 1, 0 to 64)'],
];

/** export's pipeline, stage and folder: FILE STAGE FOLDER like the other commands, or STAGE FOLDER --pipeline FILE. */
function exportArgs(positionals: string[], pipeline: string | undefined): [string, string, string] {
  if (positionals.length === 3 && pipeline === undefined) return positionals as [string, string, string];
  if (positionals.length === 2 && pipeline !== undefined) return [pipeline, positionals[0]!, positionals[1]!];
  if (positionals.length === 3) throw new UsageError('give the pipeline once: FILE STAGE FOLDER, or STAGE FOLDER --pipeline FILE');
  throw new UsageError(positionals.length === 2 ? 'which pipeline? export FILE STAGE FOLDER (or add --pipeline FILE)' : 'expected FILE STAGE FOLDER');
}

function mainHelp(): string {
  const width = Math.max(...Object.keys(COMMANDS).map((c) => c.length));
  const envWidth = Math.max(...ENVIRONMENT.map(([name]) => name.length));
  return [
    'pausepipe: content-hashed ablation pipelines',
    '',
    'usage: pausepipe COMMAND [options]   (pausepipe COMMAND --help for details; pausepipe --version)',
    '',
    ...Object.entries(COMMANDS).map(([name, c]) => `  ${name.padEnd(width)}  ${c.summary}`),
    '',
    'environment:',
    ...ENVIRONMENT.map(([name, what]) => `  ${name.padEnd(envWidth)}  ${what}`),
  ].join('\n');
}

function commandHelp(name: string, c: Command): string {
  return `usage: pausepipe ${c.usage}\n\n${c.summary}\n${c.help}`;
}

/** Runs one command line; returns the exit code (the bin sets it). */
export async function main(argv: string[], io: Io = { stdout: process.stdout, stderr: process.stderr }): Promise<number> {
  dropClosedPipeWrites();
  const [name, ...rest] = argv;
  if (name === undefined || name === '--help' || name === '-h' || name === 'help') {
    write(io.stdout, mainHelp());
    return name === undefined ? EXIT.invalid : EXIT.ok;
  }
  if (name === '--version' || name === '-v') {
    write(io.stdout, `pausepipe ${PAUSEPIPE_VERSION}`);
    return EXIT.ok;
  }
  const command = Object.hasOwn(COMMANDS, name) ? COMMANDS[name] : undefined;
  if (!command) {
    const hint = didYouMean(name, Object.keys(COMMANDS));
    write(io.stderr, `pausepipe: unknown command \`${name}\`${hint.length > 0 ? `; ${hint[0]}` : ''}\n\n${mainHelp()}`);
    return EXIT.invalid;
  }
  if (rest.includes('--help') || rest.includes('-h')) {
    write(io.stdout, commandHelp(name, command));
    return EXIT.ok;
  }
  try {
    const parsed = parseArgs({ args: rest, options: command.options, allowPositionals: true, strict: true });
    return await command.run(parsed as Parameters<Command['run']>[0], io);
  } catch (e) {
    if (e instanceof SettingError) {
      write(io.stderr, (e as Error).message.split('\n').map((line) => `pausepipe ${name}: ${line}`).join('\n'));
      return EXIT.invalid;
    }
    const usage = e instanceof UsageError || (e as { code?: string }).code?.startsWith('ERR_PARSE_ARGS');
    if (usage) {
      const message = e instanceof UsageError ? e.message : optionError(e as Error & { code: string }, command.options);
      write(io.stderr, `pausepipe ${name}: ${message}\nusage: pausepipe ${command.usage}`);
      return EXIT.invalid;
    }
    // Environment trouble (permissions, a full disk) reads best as one line; PAUSEPIPE_DEBUG=1 shows where it came from.
    const detail = process.env.PAUSEPIPE_DEBUG ? (e as Error).stack : (e as Error).message;
    write(io.stderr, `pausepipe ${name}: ${detail ?? String(e)}`);
    return EXIT.failed;
  }
}

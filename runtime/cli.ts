// The `pausepipe` command line: run, plan, show, dag, check, gc, verify, watch, export, exec, lsp, kinds.
import { cp, mkdir, readdir } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { ArtifactStore, resolveCacheRoot } from '../cache/store.ts';
import type { StageKind } from '../stages/kind.ts';
import { DAG_FORMATS, renderDag, type DagFormat } from './dag.ts';
import type { RunResult, StageOutcome } from './execute.ts';
import { formatSeconds } from './format.ts';
import { detectGpuMemoryMiB, detectGpus } from './gpus.ts';
import { SlurmClient } from './executors/slurm/client.ts';
import { slurmExecutor } from './executors/slurm/slurm-executor.ts';
import { isKeyed } from './keys.ts';
import { loadKinds } from './kinds.ts';
import { findWorkspace } from './load.ts';
import { kindsMarkdown, kindsText } from './kinds-doc.ts';
import type { Plan } from './plan.ts';
import { createReporter, SILENT_REPORTER, type Reporter } from './progress.ts';
import { loadChecked, planLoaded, renderDiagnostics, runSession, type Session } from './session.ts';
import { loadSettings, type ExecutorSettings, type ExecutorType } from './settings.ts';
import { buildResultTable, renderTable, type TableFormat } from './show.ts';

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

function write(stream: NodeJS.WritableStream, text: string): void {
  if (text) stream.write(text.endsWith('\n') ? text : `${text}\n`);
}

function positiveInt(value: unknown, flag: string, allowZero = false): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (!Number.isInteger(n) || n < (allowZero ? 0 : 1)) throw new UsageError(`${flag} needs ${allowZero ? 'a whole number ≥ 0' : 'a whole number ≥ 1'}, got ${String(value)}`);
  return n;
}

function oneFile(positionals: string[]): string {
  if (positionals.length !== 1) throw new UsageError(`expected one FILE, got ${positionals.length}`);
  return positionals[0]!;
}

async function session(file: string, cacheDir: string | undefined, io: Io): Promise<Session | undefined> {
  const loaded = await loadChecked(file, (t) => write(io.stderr, t));
  return loaded && planLoaded(loaded.pipeline, loaded.kinds, cacheDir);
}

function planLines(plan: Plan): string[] {
  return plan.stages.filter((s) => s.status !== 'fresh').map((s) => `${s.status.padEnd(7)}${s.name}: ${s.reasons.join('; ')}`);
}

function planSummary(plan: Plan): string {
  const c = plan.counts;
  return `${c.stale} stale, ${c.fresh} fresh${c.error ? `, ${c.error} cannot run` : ''}`;
}

function outcomeJson(o: StageOutcome) {
  return {
    name: o.name, key: o.key ?? null, status: o.status, reasons: o.reasons, seconds: o.seconds ?? null,
    error: o.error ?? null, metrics: o.metrics ?? null, restored: o.restored ?? [],
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

/** Usage errors in --jobs/--gpus/--stages-per-gpu/--backend surface before the pipeline is loaded (a typo in --backend would else fall back silently). */
function checkSlotFlags(values: Record<string, unknown>): void {
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

/** Where a run computes: --executor, else the workspace's `executor.type`. Undefined (after printing why) when the settings have mistakes. */
function chooseExecutor(values: Record<string, unknown>, s: Session, io: Io): { type: ExecutorType; settings: ExecutorSettings } | undefined {
  const loaded = loadSettings(s.pipeline.workspace, Object.keys(s.kinds));
  if (loaded.diagnostics.length > 0) {
    write(io.stderr, renderDiagnostics(loaded.diagnostics, loaded.sources));
    return undefined;
  }
  return { type: (values.executor as ExecutorType | undefined) ?? loaded.executor.type, settings: loaded.executor };
}

/**
 * CPU slots from --jobs (default: cores), GPUs from --gpus (default: detected, asked only when a stale stage wants
 * one), and how GPU stages share a GPU: --stages-per-gpu, else by their memory estimates against nvidia-smi's memory.
 */
export async function slotOptions(values: Record<string, unknown>, s: Session): Promise<{ jobs: number; gpus: number; gpuMemoryMiB?: number; stagesPerGpu?: number }> {
  const jobs = positiveInt(values.jobs, '--jobs') ?? os.availableParallelism();
  const stale = new Set(s.plan.stages.filter((p) => p.status === 'stale').map((p) => p.name));
  const wantsGpu = s.pipeline.stages.some((st) => stale.has(st.name) && (s.kinds[st.kind]?.resources?.(st.params).gpu ?? 0) > 0);
  const gpus = positiveInt(values.gpus, '--gpus', true) ?? (wantsGpu ? await detectGpus() : 0);
  const stagesPerGpu = positiveInt(values['stages-per-gpu'], '--stages-per-gpu');
  if (stagesPerGpu !== undefined || gpus === 0 || !wantsGpu) return { jobs, gpus, stagesPerGpu };
  const gpuMemoryMiB = await detectGpuMemoryMiB();
  return gpuMemoryMiB === undefined ? { jobs, gpus } : { jobs, gpus, gpuMemoryMiB };
}

/**
 * Slots and executor of a Slurm run: every stale stage is a job, the cluster places it, so the runner holds no
 * GPUs itself (--jobs, when given, caps the CPUs queued at once; --gpus 0 asks the cluster for no GPUs).
 */
function slurmOptions(values: Record<string, unknown>, settings: ExecutorSettings, reporter: Reporter) {
  return {
    jobs: positiveInt(values.jobs, '--jobs') ?? SLURM_DEFAULT_JOBS,
    gpus: 0,
    executor: slurmExecutor({ settings, noGpus: values.gpus === '0', note: (text) => reporter.note(text) }),
  };
}

/**
 * Runs a planned session with progress on stderr. Ctrl-C or SIGTERM stops cleanly (running stages are stopped, Slurm
 * jobs cancelled); a second one quits at once.
 */
async function runWithSignals(s: Session, values: Record<string, unknown>, io: Io, quiet: boolean, where: { type: ExecutorType; settings: ExecutorSettings }): Promise<RunResult> {
  // A machine without Slurm's commands is told once, before anything is submitted (a cached run needs none).
  if (where.type === 'slurm' && s.plan.counts.stale > 0) await new SlurmClient().version();
  const reporter = quiet ? SILENT_REPORTER : createReporter(io.stderr);
  const slots = where.type === 'slurm' ? slurmOptions(values, where.settings, reporter) : await slotOptions(values, s);
  const controller = new AbortController();
  const onSignal = () => {
    if (controller.signal.aborted) process.exit(EXIT.interrupted);
    write(io.stderr, `interrupting: stopping running stages${where.type === 'slurm' ? ' and cancelling their Slurm jobs' : ''} (Ctrl-C again to quit at once)`);
    controller.abort();
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  try {
    return await runSession(s, {
      ...slots, keepGoing: values['keep-going'] === true, backend: values.backend as string | undefined,
      signal: controller.signal, reporter,
    });
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
}

/** The metrics each kind puts in tables for people (all of them for kinds that name none). */
function headlineOf(kinds: Record<string, StageKind>): (kind: string) => string[] | undefined {
  return (kind) => kinds[kind]?.tableMetrics;
}

/** What a person reads after a run: failures with their log tails, a summary, and the results table. */
export function reportRun(s: Session, r: RunResult, seconds: number, io: Io): void {
  for (const o of r.outcomes.filter((x) => x.status === 'failed')) {
    const lines = [`failed ${o.name}: ${o.error ?? ''}`];
    if (o.logTail?.length) lines.push(...o.logTail.filter((l) => l !== '').map((l) => `  | ${l}`));
    if (o.logPath) lines.push(`  full log: ${o.logPath}`);
    write(io.stderr, lines.join('\n'));
  }
  const c = r.counts;
  const parts = [`ran ${c.ran}`, `cached ${c.cached}`];
  if (c.failed) parts.push(`failed ${c.failed}`);
  if (c.skipped) parts.push(`skipped ${c.skipped}`);
  if (c.aborted) parts.push(`interrupted ${c.aborted}`);
  write(io.stdout, `${parts.join(', ')} in ${formatSeconds(seconds)}`);
  const metrics = new Map(r.outcomes.map((o) => [o.name, o.metrics]));
  const { table } = buildResultTable(s.pipeline, (n) => metrics.get(n), undefined, false, headlineOf(s.kinds));
  if (table.rows.length > MAX_RUN_TABLE_ROWS) write(io.stdout, `${table.rows.length} result rows: see \`pausepipe show ${path.relative(process.cwd(), s.pipeline.file)}\``);
  else if (table.rows.length > 0) write(io.stdout, `\n${renderTable(table, 'text')}`);
  for (const o of r.outcomes) {
    const stage = s.pipeline.stages.find((x) => x.name === o.name);
    const files = stage ? s.kinds[stage.kind]?.highlights ?? [] : [];
    if (o.key === undefined || (o.status !== 'ran' && o.status !== 'cached')) continue;
    for (const f of files) write(io.stdout, `${o.name}: ${path.relative(process.cwd(), path.join(s.store.artifactsDir(o.key), f))}`);
  }
}

const COMMANDS: Record<string, Command> = {
  run: {
    usage: 'run FILE [--jobs N] [--gpus N] [--stages-per-gpu N] [--keep-going] [--backend NAME] [--executor local|slurm] [--cache-dir D] [--json]',
    summary: 'run the stale stages of a pipeline and print its results',
    options: {
      ...CACHE_DIR, jobs: { type: 'string' }, gpus: { type: 'string' }, 'stages-per-gpu': { type: 'string' },
      'keep-going': { type: 'boolean' }, backend: { type: 'string' }, executor: { type: 'string' }, json: { type: 'boolean' },
    },
    help: [
      'Runs every stale stage (independent ones in parallel), reuses cached ones, prints a results table.',
      '  --jobs N        CPU slots (default: number of cores)',
      '  --gpus N        GPUs (default: detected); each GPU stage\'s worker sees only its own GPU',
      '  --stages-per-gpu N  GPU stages sharing one GPU (default: as many as their memory estimates fit, else 1)',
      '  --keep-going    after a failure, keep running stages that do not depend on it',
      '  --backend NAME  tensor backend for model stages (webgpu, wasm, cpu, tensorflow, auto)',
      '  --executor E    local (this machine) or slurm (one batch job per stage); default: the workspace\'s',
      '                  executor.type in pausepipe.json or package.json, else local',
      CACHE_HELP,
      '  --json          print the outcome of every stage as JSON on stdout',
      'Exit code: 0 all done, 1 a stage failed, 2 invalid pipeline, 130 interrupted.',
    ].join('\n'),
    async run({ values, positionals }, io) {
      const started = Date.now();
      checkSlotFlags(values);
      const s = await session(oneFile(positionals), values['cache-dir'] as string | undefined, io);
      if (!s) return EXIT.invalid;
      const where = chooseExecutor(values, s, io);
      if (!where) return EXIT.invalid;
      const result = await runWithSignals(s, values, io, values.json === true, where);
      const code = exitCodeOf(result);
      if (values.json) write(io.stdout, JSON.stringify({ exitCode: code, counts: result.counts, interrupted: result.interrupted, stages: result.outcomes.map(outcomeJson) }, null, 2));
      else reportRun(s, result, (Date.now() - started) / 1000, io);
      return code;
    },
  },
  plan: {
    usage: 'plan FILE [--cache-dir D] [--json]',
    summary: 'say which stages are stale and why, without running anything',
    options: { ...CACHE_DIR, json: { type: 'boolean' } },
    help: ['Lists every stale stage with the reasons (param changes, changed files, upstream stages, kind versions).', CACHE_HELP, '  --json          the plan as JSON'].join('\n'),
    async run({ values, positionals }, io) {
      const s = await session(oneFile(positionals), values['cache-dir'] as string | undefined, io);
      if (!s) return EXIT.invalid;
      if (values.json) {
        write(io.stdout, JSON.stringify({ file: s.pipeline.file, cache: s.cacheRoot, counts: s.plan.counts, stages: s.plan.stages }, null, 2));
      } else {
        write(io.stdout, [...planLines(s.plan), planSummary(s.plan)].join('\n'));
      }
      return s.plan.counts.error > 0 ? EXIT.failed : EXIT.ok;
    },
  },
  show: {
    usage: 'show FILE [--stage NAME] [--all] [--json|--csv|--md] [--cache-dir D]',
    summary: 'the metrics of every computed variant as a table',
    options: { ...CACHE_DIR, stage: { type: 'string' }, all: { type: 'boolean' }, json: { type: 'boolean' }, csv: { type: 'boolean' }, md: { type: 'boolean' } },
    help: [
      'One row per computed variant with scalar metrics; columns: stage, loop variables, metrics (in text and',
      'Markdown the kind\'s headline metrics; --json and --csv carry every metric). One table per declared stage.',
      '  --stage NAME    only this stage (declared name, or one generated name)',
      '  --all           also the stages outside `for each` loops (by default only variants are shown)',
      '  --json | --csv | --md   other formats than the aligned text table',
      CACHE_HELP,
    ].join('\n'),
    async run({ values, positionals }, io) {
      const formats = (['json', 'csv', 'md'] as const).filter((f) => values[f] === true);
      if (formats.length > 1) throw new UsageError('choose one of --json, --csv, --md');
      const s = await session(oneFile(positionals), values['cache-dir'] as string | undefined, io);
      if (!s) return EXIT.invalid;
      const stage = values.stage as string | undefined;
      if (stage !== undefined && !s.pipeline.stages.some((x) => x.declaredName === stage || x.name === stage)) {
        write(io.stderr, `pausepipe: no stage named \`${stage}\` in ${s.pipeline.file}`);
        return EXIT.failed;
      }
      const metricsOf = (name: string) => {
        const k = s.keys.get(name);
        return isKeyed(k) ? s.manifests.get(k.key)?.metrics : undefined;
      };
      const format: TableFormat = formats[0] ?? 'text';
      const forPeople = format !== 'json' && format !== 'csv';
      const { table, notComputed } = buildResultTable(s.pipeline, metricsOf, stage, values.all === true, forPeople ? headlineOf(s.kinds) : undefined);
      if (table.rows.length > 0 || format === 'json') write(io.stdout, renderTable(table, format));
      else if (notComputed.length > 0) write(io.stderr, 'no results yet');
      // Everything is computed, yet nothing to show: say why rather than suggest a run that changes nothing.
      else if (stage === undefined && values.all !== true) write(io.stderr, 'no variants to show (stages in `for each` loops); --all shows the other stages too');
      else write(io.stderr, 'the selected stages are computed but have no scalar metrics to show');
      if (notComputed.length > 0) write(io.stderr, `${notComputed.length} stage(s) not computed yet: pausepipe run ${path.relative(process.cwd(), s.pipeline.file)}`);
      return EXIT.ok;
    },
  },
  dag: {
    usage: 'dag FILE [--format mermaid|dot|svg] [--cache-dir D]',
    summary: 'the stage graph as Mermaid, Graphviz dot or an SVG picture',
    options: { ...CACHE_DIR, format: { type: 'string' } },
    help: [
      '  --format F      mermaid (default), dot, or svg (drawn in-process by Graphviz in WebAssembly; redirect it to a file)',
      'dot and svg draw each loop as a cluster of tables (a row per variant) and fill every stage by its plan status:',
      'fresh (cached), stale (runs next) or cannot run.',
      CACHE_HELP,
    ].join('\n'),
    async run({ values, positionals }, io) {
      const format = (values.format as string | undefined) ?? 'mermaid';
      if (!(DAG_FORMATS as readonly string[]).includes(format)) throw new UsageError(`--format must be one of ${DAG_FORMATS.join(', ')}, got ${format}`);
      if (format === 'mermaid') {
        const loaded = await loadChecked(oneFile(positionals), (t) => write(io.stderr, t));
        if (!loaded) return EXIT.invalid;
        write(io.stdout, await renderDag(loaded.pipeline, 'mermaid'));
        return EXIT.ok;
      }
      // Colours need the plan: the same keys and cache reads as `plan`, nothing runs.
      const s = await session(oneFile(positionals), values['cache-dir'] as string | undefined, io);
      if (!s) return EXIT.invalid;
      const status = new Map(s.plan.stages.map((p) => [p.name, p.status]));
      write(io.stdout, await renderDag(s.pipeline, format as DagFormat, status));
      return EXIT.ok;
    },
  },
  check: {
    usage: 'check FILE',
    summary: 'report the diagnostics of a pipeline without running it',
    options: {},
    help: 'Parses, expands and validates; prints every error and warning with its location. Exit 2 on errors.',
    async run({ positionals }, io) {
      const loaded = await loadChecked(oneFile(positionals), (t) => write(io.stderr, t));
      if (!loaded) return EXIT.invalid;
      const warnings = loaded.diagnostics.filter((d) => d.severity === 'warning').length;
      const count = loaded.pipeline.stages.length;
      write(io.stdout, `ok: ${count} stage${count === 1 ? '' : 's'}${warnings ? `, ${warnings} warning(s)` : ''}`);
      return EXIT.ok;
    },
  },
  gc: {
    usage: 'gc FILE... [--cache-dir D]',
    summary: 'delete cache entries that none of the given pipelines uses',
    options: { ...CACHE_DIR },
    help: 'Keeps the current result of every stage of every FILE; removes other entries and leftovers of dead runs.\n' + CACHE_HELP,
    async run({ values, positionals }, io) {
      if (positionals.length === 0) throw new UsageError('expected at least one FILE');
      const keepByRoot = new Map<string, Set<string>>();
      for (const file of positionals) {
        const s = await session(file, values['cache-dir'] as string | undefined, io);
        if (!s) return EXIT.invalid;
        const unkeyed = s.plan.stages.filter((p) => p.status === 'error');
        if (unkeyed.length > 0) {
          // Without a key we cannot tell which entry the stage needs; deleting blindly could lose days of compute.
          write(io.stderr, `pausepipe gc: refusing: ${unkeyed.map((p) => `${p.name} (${p.reasons.join('; ')})`).join(', ')} in ${file} has no key`);
          return EXIT.failed;
        }
        const keep = keepByRoot.get(s.cacheRoot) ?? new Set<string>();
        for (const p of s.plan.stages) if (p.key) keep.add(p.key);
        keepByRoot.set(s.cacheRoot, keep);
      }
      for (const [root, keep] of keepByRoot) {
        const r = await new ArtifactStore(root).gc(keep);
        write(io.stdout, `${root}: removed ${r.removed.length} entr${r.removed.length === 1 ? 'y' : 'ies'} (${(r.freedBytes / 1e6).toFixed(1)} MB), ${r.leftovers.length} leftover(s); kept ${keep.size}`);
      }
      return EXIT.ok;
    },
  },
  verify: {
    usage: 'verify [FILE] [--cache-dir D]',
    summary: 're-hash every cache entry and report damage',
    options: { ...CACHE_DIR },
    help: 'Checks manifests and every output file against its recorded hash; the cache is found from FILE\'s workspace or the current folder.\n' + CACHE_HELP,
    async run({ values, positionals }, io) {
      if (positionals.length > 1) throw new UsageError('expected at most one FILE');
      // findWorkspace starts from a file's folder; a name inside the current folder stands for it.
      const from = positionals[0] ?? path.join(process.cwd(), 'pipeline.pipe');
      const root = resolveCacheRoot(findWorkspace(from), values['cache-dir'] as string | undefined);
      const store = new ArtifactStore(root);
      const problems = await store.verify();
      for (const p of problems) write(io.stdout, `${p.key || '-'}: ${p.problem}`);
      write(io.stdout, problems.length === 0 ? `cache OK: ${store.keys().length} entries verified in ${root}` : `${problems.length} problem(s) in ${root}`);
      return problems.length === 0 ? EXIT.ok : EXIT.failed;
    },
  },
  watch: {
    usage: 'watch FILE [--jobs N] [--gpus N] [--stages-per-gpu N] [--keep-going] [--backend NAME] [--cache-dir D]',
    summary: 're-run what became stale whenever the pipeline or a declared file changes',
    options: {
      ...CACHE_DIR, jobs: { type: 'string' }, gpus: { type: 'string' }, 'stages-per-gpu': { type: 'string' },
      'keep-going': { type: 'boolean' }, backend: { type: 'string' },
    },
    help: 'Runs once, then watches the .pipe files and every declared workspace file; Ctrl-C stops.\n' + CACHE_HELP,
    async run({ values, positionals }, io) {
      checkSlotFlags(values);
      const { watchPipeline } = await import('./watch.ts');
      return watchPipeline(oneFile(positionals), values, io);
    },
  },
  export: {
    usage: 'export STAGE FOLDER --pipeline FILE [--cache-dir D]',
    summary: "copy a stage's artifacts out of the cache",
    options: { ...CACHE_DIR, pipeline: { type: 'string' } },
    help: 'STAGE is a generated name (`train[lr=0.1]`) or a declared name with a single instance. FOLDER must be new or empty.\n' + CACHE_HELP,
    async run({ values, positionals }, io) {
      if (positionals.length !== 2) throw new UsageError('expected STAGE and FOLDER');
      if (typeof values.pipeline !== 'string') throw new UsageError('--pipeline FILE is required');
      const [stageName, folder] = positionals as [string, string];
      const s = await session(values.pipeline, values['cache-dir'] as string | undefined, io);
      if (!s) return EXIT.invalid;
      const matches = s.pipeline.stages.filter((x) => x.name === stageName || x.declaredName === stageName);
      const exact = matches.find((x) => x.name === stageName);
      if (!exact && matches.length !== 1) {
        write(io.stderr, matches.length === 0
          ? `pausepipe export: no stage \`${stageName}\``
          : `pausepipe export: \`${stageName}\` has ${matches.length} variants; name one, e.g. \`${matches[0]!.name}\``);
        return EXIT.failed;
      }
      const stage = exact ?? matches[0]!;
      const planned = s.plan.stages.find((p) => p.name === stage.name)!;
      if (planned.status !== 'fresh') {
        write(io.stderr, `pausepipe export: ${stage.name} is not computed (${planned.reasons.join('; ')}); run the pipeline first`);
        return EXIT.failed;
      }
      const target = path.resolve(folder);
      const existing = await readdir(target).catch(() => []);
      if (existing.length > 0) {
        write(io.stderr, `pausepipe export: ${target} is not empty`);
        return EXIT.failed;
      }
      await mkdir(target, { recursive: true });
      await cp(s.store.artifactsDir(planned.key!), target, { recursive: true });
      const files = s.manifests.get(planned.key!)?.outputs.length ?? 0;
      write(io.stdout, `exported ${stage.name}: ${files} file(s) to ${target}`);
      return EXIT.ok;
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
    summary: 'the language server for editors: diagnostics, completion, hover, go to definition',
    // Language clients add --stdio (and VS Code --clientProcessId); stdio is the only transport.
    options: { stdio: { type: 'boolean' }, clientProcessId: { type: 'string' } },
    help: 'Speaks the Language Server Protocol on stdin and stdout until the editor closes it (editor/vscode/ starts it).',
    async run() {
      const { runLanguageServer } = await import('../lsp/server.ts');
      return runLanguageServer();
    },
  },
  kinds: {
    usage: 'kinds [--md]',
    summary: 'reference of every stage kind: params with types, defaults and descriptions; inputs',
    options: { md: { type: 'boolean' } },
    help: '  --md            Markdown instead of plain text',
    async run({ values }, io) {
      const kinds = await loadKinds();
      write(io.stdout, values.md ? kindsMarkdown(kinds) : kindsText(kinds));
      return EXIT.ok;
    },
  },
};

function mainHelp(): string {
  const width = Math.max(...Object.keys(COMMANDS).map((c) => c.length));
  return [
    'pausepipe: content-hashed ablation pipelines',
    '',
    'usage: pausepipe COMMAND [options]   (pausepipe COMMAND --help for details)',
    '',
    ...Object.entries(COMMANDS).map(([name, c]) => `  ${name.padEnd(width)}  ${c.summary}`),
    '',
    'environment:',
    '  PAUSEPIPE_CACHE   cache folder when --cache-dir is not given',
    '  PAUSEPIPE_KINDS   comma-separated modules exporting extra STAGE_KINDS (plugins, test kinds)',
    '  PAUSEPIPE_DEBUG   set to 1 to print stack traces of unexpected errors',
  ].join('\n');
}

function commandHelp(name: string, c: Command): string {
  return `usage: pausepipe ${c.usage}\n\n${c.summary}\n${c.help}`;
}

/** Runs one command line; returns the exit code (the bin sets it). */
export async function main(argv: string[], io: Io = { stdout: process.stdout, stderr: process.stderr }): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === '--help' || name === '-h' || name === 'help') {
    write(io.stdout, mainHelp());
    return name === undefined ? EXIT.invalid : EXIT.ok;
  }
  const command = COMMANDS[name];
  if (!command) {
    write(io.stderr, `pausepipe: unknown command \`${name}\`\n\n${mainHelp()}`);
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
    const usage = e instanceof UsageError || (e as { code?: string }).code?.startsWith('ERR_PARSE_ARGS');
    if (usage) {
      write(io.stderr, `pausepipe ${name}: ${(e as Error).message}\nusage: pausepipe ${command.usage}`);
      return EXIT.invalid;
    }
    // Environment trouble (permissions, a full disk) reads best as one line; PAUSEPIPE_DEBUG=1 shows where it came from.
    const detail = process.env.PAUSEPIPE_DEBUG ? (e as Error).stack : (e as Error).message;
    write(io.stderr, `pausepipe ${name}: ${detail ?? String(e)}`);
    return EXIT.failed;
  }
}

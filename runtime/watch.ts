// `pausepipe watch`: run, then re-plan and run what became stale whenever a .pipe file or a declared file changes.
import { existsSync, fstatSync, statSync } from 'node:fs';
import { isatty } from 'node:tty';
import path from 'node:path';
import { IGNORED_NAMES } from '../cache/file-hash.ts';
import type { Io } from './cli.ts';
import { gpuSlotsLine, interruptingLine, localRunExecutor, onStopSignals, planLines, QUITTING, reportRun, signalExitCode, slotOptions } from './cli.ts';
import type { HeldLock } from '../cache/lock.ts';
import type { LastFailure } from './commit.ts';
import { StageJoins, StageStops } from './execute.ts';
import { listSome } from './format.ts';
import { isKeyed, workspaceRelative } from './keys.ts';
import type { Pipeline, StageInstance } from './pipeline.ts';
import type { Plan, PlannedStage } from './plan.ts';
import { createReporter } from './progress.ts';
import { failedLastRun, loadChecked, planLoaded, runSession, runStagesOf, type Session } from './session.ts';
import { restrictPipeline, withDownstream } from './targets.ts';
import { overridesRecord, type Override } from './overrides.ts';
import { DEFAULT_EXECUTOR } from './settings.ts';
import type { StageKind } from '../stages/kind.ts';

/** Editors write a file in several steps; changes closer together than this make one re-run. */
const DEBOUNCE_MS = 300;

/**
 * The .pipe files plus every declared workspace file or folder, minus what stages write themselves (an out, or a file
 * in an out folder: no re-run loops).
 */
function watchedPaths(pipeline: Pipeline, kinds: Record<string, StageKind>): Set<string> {
  const outs = new Set<string>();
  const deps = new Set<string>();
  for (const s of pipeline.stages) {
    const kind = kinds[s.kind];
    for (const o of kind?.workspaceOutputs?.(s.params) ?? []) outs.add(workspaceRelative(pipeline.workspace, o));
    for (const d of kind?.workspaceFiles?.(s.params) ?? []) deps.add(workspaceRelative(pipeline.workspace, d));
  }
  const files = new Set(Object.keys(pipeline.sources).map((f) => path.resolve(f)));
  for (const d of deps) if (!inAnOut(d, outs)) files.add(path.resolve(pipeline.workspace, d));
  return files;
}

/** Whether a workspace-relative path is an out or lies in one: its folders are looked up, rather than every out scanned. */
function inAnOut(rel: string, outs: Set<string>): boolean {
  for (let at = rel; ; at = path.posix.dirname(at)) {
    if (outs.has(at)) return true;
    if (path.posix.dirname(at) === at) return false;
  }
}

/**
 * The stale stages whose last attempt at their key failed: watch does not try them again (an hour of training that
 * ends in a NaN loss would run again at every save of an unrelated file) until their key changes, or `run` runs them.
 */
function heldBack(s: Session): Map<string, LastFailure> {
  const held = new Map<string, LastFailure>();
  for (const p of s.plan.stages) {
    const failure = failedLastRun(s, p);
    if (failure) held.set(p.name, failure);
  }
  return held;
}

/** The session with the held stages failing without running (the scheduler's `fail`), what reads them then skipped or partial. */
function failingAtOnce(s: Session, held: Map<string, LastFailure>): Session {
  const stages = s.plan.stages.map((p) => {
    const failure = held.get(p.name);
    return failure ? { ...p, status: 'error' as const, reasons: [`failed last run (${failure.error}); not retried by watch`] } : p;
  });
  return { ...s, plan: countedPlan(stages) };
}

/** A plan of these stages, with their counts by status. */
function countedPlan(stages: PlannedStage[]): Plan {
  const counts = { fresh: 0, stale: 0, error: 0 };
  for (const p of stages) counts[p.status]++;
  return { stages, counts };
}

/** The session without some stages (closed under what reads them); the state still records the whole pipeline's names. */
function withoutStages(s: Session, names: Set<string>): Session {
  const stages = s.plan.stages.filter((p) => !names.has(p.name));
  return {
    ...s, pipeline: restrictPipeline(s.pipeline, new Set(stages.map((p) => p.name))), plan: countedPlan(stages),
    wholePipelineStages: s.wholePipelineStages ?? s.pipeline.stages.map((x) => x.name),
  };
}

/**
 * `not retried: NAME failed last run (ERROR); …` for the stages held back (one line per error), then what waits for them.
 * `typed`: whether `r` + Enter retries them (watch reads its stdin).
 */
function heldLines(held: Map<string, LastFailure>, waiting: string[], retry: string, typed: boolean): string[] {
  const byError = new Map<string, string[]>();
  for (const [name, failure] of held) byError.set(failure.error, [...(byError.get(failure.error) ?? []), name]);
  const lines = [...byError].map(([error, names]) => {
    const [it, its] = names.length === 1 ? ['it', 'its'] : ['them', 'their'];
    const retryKey = typed ? ', type r and Enter to retry' : '';
    return `not retried: ${listSome(names)} failed last run (${error}); change ${it} or ${its} inputs${retryKey}, or run \`${retry}\``;
  });
  if (waiting.length > 0) lines.push(`waiting for ${held.size === 1 ? 'it' : 'them'}: ${listSome(waiting)}`);
  return lines;
}

/**
 * The stages of the plan after a change that can join the run in progress: those the run has no stage of that name
 * for, that can run (they have a key and did not fail last run), and whose inputs are the run's own stages (same name,
 * same key, not stopped) or join with them. A stage the run has under its name with another key waits for the run's
 * end: it replaces one the change stopped.
 */
function joinable(run: RunInProgress, next: Session): StageInstance[] {
  const runKeys = new Map(run.planned.map((p) => [p.name, p.key]));
  const planned = new Map(next.plan.stages.map((p) => [p.name, p]));
  const joining = new Set<string>();
  const stages: StageInstance[] = [];
  for (const s of next.pipeline.stages) {
    const p = planned.get(s.name)!;
    if (runKeys.has(s.name) || p.status === 'error' || failedLastRun(next, p)) continue;
    const inRun = (u: string) => runKeys.get(u) !== undefined && runKeys.get(u) === planned.get(u)?.key && !run.stops.reasons.has(u);
    if (Object.values(s.inputs).every((b) => b.stages.every((u) => joining.has(u) || inRun(u)))) {
      joining.add(s.name);
      stages.push(s);
    }
  }
  return stages;
}

/** A run of `watch` while it goes on: what a change during it stops and adds. */
interface RunInProgress {
  session: Session;
  /** Its stages' plan: the session's, then those that joined. */
  planned: PlannedStage[];
  /** The stages that joined it (the results table shows them with the session's). */
  joined: StageInstance[];
  stops: StageStops;
  joins: StageJoins;
  /** The registrations of the joined stages' keys (a gc keeps them), released when the run ends. */
  uses: HeldLock[];
  /** Where to say something while it draws. */
  note: (text: string) => void;
}

function write(stream: NodeJS.WritableStream, text: string): void {
  stream.write(`${text}\n`);
}

/** The nearest folder of `file` that exists: where its creation can be seen. */
function existingFolderOf(file: string): string {
  let dir = path.dirname(file);
  while (!existsSync(dir) && path.dirname(dir) !== dir) dir = path.dirname(dir);
  return dir;
}

function isFolder(p: string): boolean {
  return statSync(p, { throwIfNoEntry: false })?.isDirectory() === true;
}

/**
 * Whether a person (a terminal) or a program (a pipe) can type into watch's stdin. Not /dev/null, nor a file: the one
 * ends at once, the other would be read as keys. Stages never read it (their stdin is closed), so nothing is taken from them.
 */
function stdinTypedInto(): boolean {
  if (isatty(0)) return true;
  try {
    const stat = fstatSync(0);
    return stat.isFIFO() || stat.isSocket();
  } catch {
    return false;
  }
}

export async function watchPipeline(file: string, values: Record<string, unknown>, overrides: Override[], io: Io): Promise<number> {
  const { watch } = await import('chokidar');
  const entry = path.resolve(file);
  /** The files whose changes re-run: the .pipe files read and the declared files. */
  let watched = new Set([entry]);
  /**
   * They are watched through their folders (each one level deep): chokidar forgets a file once it is deleted and
   * never sees one created later, and a declared file may be missing for a while, or replaced by a tool or git.
   */
  let folders = new Set<string>();
  const watcher = watch([], { ignoreInitial: true, depth: 0 });
  /** The watched paths that are folders (a dataset, an `sh` dep): watched all the way down, as they are hashed. */
  let trees = new Set<string>();
  /** The cache, once known: a watched folder may hold it (`--cache-dir`), and hashing skips it there. */
  let cacheRoot: string | undefined;
  const treeWatcher = watch([], {
    ignoreInitial: true,
    ignored: (p) => IGNORED_NAMES.has(path.basename(p)) || path.resolve(p) === cacheRoot,
  });
  const controller = new AbortController();
  let changed = new Set<string>();
  let timer: NodeJS.Timeout | undefined;
  let running: Promise<void> | undefined;
  let again = false;
  /** The run in progress. */
  let current: RunInProgress | undefined;
  /** The changes not yet reviewed during the run in progress (see review). */
  let unreviewed = new Set<string>();
  let reviewing: Promise<void> | undefined;
  let reviewAgain = false;
  const cacheDir = values['cache-dir'] as string | undefined;
  /** Whether the next plan tries the held-back failures again (`r` + Enter was typed). */
  let retrying = false;
  const typed = stdinTypedInto();

  const shown = (f: string) => {
    const rel = path.relative(process.cwd(), f);
    return rel.startsWith('..') ? f : rel.split(path.sep).join('/');
  };

  /** What tries the stages watch holds back again: `run` with this watch's file, overrides and cache. */
  const retryCommand = () =>
    ['pausepipe run', shown(entry), ...overrides.map((o) => `-p ${o.text}`), ...(cacheDir !== undefined ? [`--cache-dir ${cacheDir}`] : [])].join(' ');

  /**
   * Watches the folders the watched paths are (or will be) in, and inside those that are folders; a folder made or
   * removed moves the watch.
   */
  const watchFolders = () => {
    const next = new Set([...watched].map(existingFolderOf));
    const gone = [...folders].filter((d) => !next.has(d));
    if (gone.length > 0) watcher.unwatch(gone);
    const added = [...next].filter((d) => !folders.has(d));
    if (added.length > 0) watcher.add(added);
    folders = next;
    const nextTrees = new Set([...watched].filter(isFolder));
    const goneTrees = [...trees].filter((d) => !nextTrees.has(d));
    if (goneTrees.length > 0) treeWatcher.unwatch(goneTrees);
    const addedTrees = [...nextTrees].filter((d) => !trees.has(d));
    if (addedTrees.length > 0) treeWatcher.add(addedTrees);
    trees = nextTrees;
  };

  const cycle = async () => {
    const started = Date.now();
    try {
      const read = new Set([entry]);
      const loaded = await loadChecked(entry, (t) => write(io.stderr, t), { overrides }, (files) => files.forEach((f) => read.add(f)));
      if (!loaded) {
        // The files read so far, the one with the error among them, and a missing include keep being watched.
        watched = new Set([...watched, ...read]);
        watchFolders();
        write(io.stderr, 'the pipeline has errors; waiting for a change');
        return;
      }
      const s = await planLoaded(loaded.pipeline, loaded.kinds, cacheDir);
      cacheRoot = path.resolve(s.cacheRoot);
      watched = watchedPaths(loaded.pipeline, loaded.kinds);
      watched.add(entry);
      watchFolders();
      const failed = heldBack(s);
      const held = retrying ? new Map<string, LastFailure>() : failed;
      if (retrying) {
        retrying = false;
        write(io.stdout, failed.size > 0 ? `retrying: ${listSome([...failed.keys()])}` : 'retrying: no stage failed last run');
      }
      const waiting = withDownstream(loaded.pipeline, new Set(held.keys()));
      const keepGoing = values['keep-going'] === true;
      const kindOf = new Map(s.pipeline.stages.map((x) => [x.name, x.kind]));
      const partial = (name: string) => keepGoing && loaded.kinds[kindOf.get(name) ?? '']?.partialInputs === true;
      // Under --keep-going a report over the variants is written without the held ones (a partial report, as `run`
      // writes it), so then the held stages stay in the run, failed at once, rather than take the report out of it.
      const runnable = held.size === 0 ? s : [...waiting].some(partial) ? failingAtOnce(s, held) : withoutStages(s, waiting);
      /** Stages that wait for a held one (not run this time), and those that run. */
      const waits = new Set([...waiting].filter((n) => !held.has(n) && !partial(n)));
      const runs = runnable.plan.stages.filter((p) => !held.has(p.name) && !waits.has(p.name));
      const toRun = runs.some((p) => p.status !== 'fresh');
      // Why each stage re-runs, as `plan` says it: a change to one file can touch many stages, or none expected.
      if (toRun) write(io.stdout, planLines({ ...runnable.plan, stages: runs }).join('\n'));
      if (held.size > 0) write(io.stdout, heldLines(held, [...waits], retryCommand(), typed).join('\n'));
      if (toRun) {
        const slots = await slotOptions(values, runnable);
        const reporter = createReporter(io.stderr, { slots: slots.jobs, stages: runStagesOf(runnable) });
        const gpuLine = gpuSlotsLine(runnable, slots);
        if (gpuLine !== undefined) reporter.note(gpuLine);
        const run: RunInProgress = {
          session: runnable, planned: [...runnable.plan.stages], joined: [], stops: new StageStops(), joins: new StageJoins(), uses: [],
          note: (text) => reporter.note(text),
        };
        current = run;
        const result = await runSession(runnable, {
          ...slots, keepGoing: values['keep-going'] === true, backend: values.backend as string | undefined, signal: controller.signal,
          stops: run.stops, joins: run.joins, reporter, executor: localRunExecutor(loaded.kinds, DEFAULT_EXECUTOR, (text) => reporter.note(text)),
          ...(overrides.length > 0 ? { overrides: overridesRecord(overrides) } : {}),
        }).finally(async () => {
          current = undefined;
          // A registration left behind only keeps entries from one gc: the lease ends it.
          await Promise.all(run.uses.map((use) => use.release().catch(() => undefined)));
        });
        // The results of a pipeline that a change replaced in part would be read as the new one's; stages a change
        // only added are the run's own.
        const ran = run.joined.length === 0 ? runnable : { ...runnable, pipeline: { ...runnable.pipeline, stages: [...runnable.pipeline.stages, ...run.joined] } };
        // The held stages' failures were said above (`not retried: …`), where they stayed in the run failed at once.
        reportRun(ran, result, (Date.now() - started) / 1000, io, { results: run.stops.reasons.size === 0, said: new Set(held.keys()) });
      } else if (held.size === 0) {
        write(io.stdout, `up to date (${s.plan.counts.fresh} fresh)`);
      }
      if (!controller.signal.aborted) write(io.stdout, `watching ${watched.size} file(s) (Ctrl-C to stop)`);
    } catch (e) {
      // Watching outlives any one failure: say what went wrong and wait for the next change.
      write(io.stderr, `pausepipe watch: ${e instanceof Error ? e.message : String(e)}`);
    }
  };

  /**
   * A change during a run: the run's stages that the pipeline as it is now no longer computes (a parameter, input or
   * file of theirs changed, or they are gone) stop, and the others go on; the new plan runs once the run ends.
   */
  const review = async () => {
    const run = current;
    const news = [...unreviewed];
    unreviewed = new Set();
    if (!run || news.length === 0) return;
    const files = news.map(shown).sort().join(', ');
    const what = `changed during the run: ${files}`;
    try {
      const loaded = await loadChecked(entry, run.note, { overrides });
      if (current !== run) return;
      if (!loaded) {
        run.note(`${what}; the pipeline has errors: the run goes on`);
        return;
      }
      const next = await planLoaded(loaded.pipeline, loaded.kinds, cacheDir);
      if (current !== run) return;
      const wanted = new Set([...next.keys.values()].filter(isKeyed).map((k) => k.key));
      const replaced = run.planned.filter((p) => p.status !== 'fresh' && p.key !== undefined && !wanted.has(p.key));
      const stopped = run.stops.stop(replaced.map((p) => p.name), `replaced by the change to ${files}`);
      const joined = await join(run, next);
      const stopping = stopped.length > 0 ? `stopping ${listSome(stopped)}, which it replaces` : '';
      const adding = joined.length > 0 ? `adding ${listSome(joined)} to the run` : '';
      run.note(stopping || adding
        ? `${what}; ${[stopping, adding].filter(Boolean).join(', and ')}: the ${stopping ? 'rest of the ' : ''}run goes on, then the new plan runs`
        : `${what}; it replaces none of the stages still to finish: the run goes on, then the new plan runs`);
    } catch (e) {
      run.note(`pausepipe watch: ${e instanceof Error ? e.message : String(e)}`);
    }
  };

  /**
   * The stages of the new plan that can join the run (see joinable) join it, their keys registered first as the run's
   * are (a gc that started since the plan was made may have removed an entry it found: they then wait for the run's end).
   * The names that joined.
   */
  const join = async (run: RunInProgress, next: Session): Promise<string[]> => {
    const stages = joinable(run, next);
    if (stages.length === 0) return [];
    const keys = stages.map((st) => next.keys.get(st.name)).filter(isKeyed).map((k) => k.key);
    const use = await next.store.registerUse(keys);
    const names = new Set(stages.map((st) => st.name));
    const joined = current === run && next.store.gcGeneration() === next.gcGeneration
      ? run.joins.join({
        stages, keys: next.keys, plan: next.plan.stages.filter((p) => names.has(p.name)),
        progress: runStagesOf(next).filter((st) => names.has(st.name)),
      })
      : [];
    if (joined.length === 0) {
      await use.release();
      return [];
    }
    run.uses.push(use);
    run.joined.push(...stages);
    run.planned.push(...next.plan.stages.filter((p) => names.has(p.name)));
    return joined;
  };

  /** One review at a time; a change during one is reviewed after it. */
  const requestReview = () => {
    if (reviewing) {
      reviewAgain = true;
      return;
    }
    reviewing = review().finally(() => {
      reviewing = undefined;
      if (reviewAgain) {
        reviewAgain = false;
        requestReview();
      }
    });
  };

  /** Starts a cycle, or, during one, reviews the run and asks for one more after it (a change is never lost). */
  const kick = () => {
    if (running) {
      again = true;
      requestReview();
      return;
    }
    if (changed.size > 0) write(io.stdout, `changed: ${[...changed].map(shown).sort().join(', ')}`);
    changed = new Set();
    unreviewed = new Set();
    running = cycle().finally(() => {
      running = undefined;
      if (again && !controller.signal.aborted) {
        again = false;
        kick();
      }
    });
  };

  /**
   * What an event of the folder watcher changed, as the person reads it: a watched path or, for a folder made or
   * removed on the way to watched paths, those paths (the watch then moves to the folder that now exists). What
   * happens inside a watched folder is the tree watcher's, which leaves out what hashing leaves out.
   */
  const changesOf = (event: string, where: string): string[] => {
    if (watched.has(where)) return [where];
    if (event !== 'addDir' && event !== 'unlinkDir') return [];
    const under = [...watched].filter((f) => f.startsWith(where + path.sep));
    if (under.length > 0) watchFolders();
    return under;
  };

  const changes = (found: string[]) => {
    if (controller.signal.aborted || found.length === 0) return;
    for (const c of found) {
      changed.add(c);
      unreviewed.add(c);
    }
    clearTimeout(timer);
    timer = setTimeout(kick, DEBOUNCE_MS);
  };
  /**
   * `r` + Enter: a plan now that tries the held-back failures again (after the run in progress, if one is: it may be
   * what fills the disk). Lines, not keys: the terminal keeps its line editing and Ctrl-C.
   */
  const retryTyped = () => {
    if (controller.signal.aborted) return;
    retrying = true;
    if (running) {
      again = true;
      if (current) current.note('retrying the failed stages once the run ends');
      return;
    }
    kick();
  };
  let typedLine = '';
  const onTyped = (chunk: Buffer | string) => {
    const lines = (typedLine + chunk.toString()).split('\n');
    typedLine = lines.pop() ?? '';
    if (lines.some((l) => l.trim().toLowerCase() === 'r')) retryTyped();
  };
  if (typed) process.stdin.on('data', onTyped);

  watcher.on('all', (event, changedPath) => changes(changesOf(event, path.resolve(changedPath))));
  treeWatcher.on('all', (_event, changedPath) => changes([path.resolve(changedPath)]));
  watchFolders();
  await new Promise<void>((resolve) => watcher.once('ready', () => resolve()));
  kick();

  return new Promise<number>((resolve) => {
    const removeHandlers = onStopSignals((signal) => {
      // Through the reporter while a run draws: written straight to the terminal, its next redraw would erase it.
      if (current) current.note(interruptingLine(signal, 'stopping running stages'));
      else write(io.stderr, 'stopping');
      controller.abort();
      clearTimeout(timer);
      void Promise.resolve(running).then(async () => {
        await Promise.all([watcher.close(), treeWatcher.close()]);
        if (typed) {
          process.stdin.off('data', onTyped);
          process.stdin.pause();
        }
        removeHandlers();
        resolve(signalExitCode(signal));
      });
    }, () => write(io.stderr, QUITTING));
  });
}

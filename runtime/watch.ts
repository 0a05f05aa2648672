// `pausepipe watch`: run, then re-plan and run what became stale whenever a .pipe file or a declared file changes.
import { existsSync, statSync } from 'node:fs';
import path from 'node:path';
import { IGNORED_NAMES } from '../cache/file-hash.ts';
import type { Io } from './cli.ts';
import { gpuSlotsLine, interruptingLine, localRunExecutor, onStopSignals, planLines, QUITTING, reportRun, signalExitCode, slotOptions } from './cli.ts';
import { StageStops } from './execute.ts';
import { listSome } from './format.ts';
import { isKeyed, workspaceRelative } from './keys.ts';
import type { Pipeline } from './pipeline.ts';
import { createReporter } from './progress.ts';
import { loadChecked, planLoaded, runSession, runStagesOf, type Session } from './session.ts';
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
  /** The run in progress: its plan, what stops some of its stages, and where to say something while it draws. */
  let current: { session: Session; stops: StageStops; note: (text: string) => void } | undefined;
  /** The changes not yet reviewed during the run in progress (see review). */
  let unreviewed = new Set<string>();
  let reviewing: Promise<void> | undefined;
  let reviewAgain = false;
  const cacheDir = values['cache-dir'] as string | undefined;

  const shown = (f: string) => {
    const rel = path.relative(process.cwd(), f);
    return rel.startsWith('..') ? f : rel.split(path.sep).join('/');
  };

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
      if (s.plan.counts.stale > 0 || s.plan.counts.error > 0) {
        // Why each stage re-runs, as `plan` says it: a change to one file can touch many stages, or none expected.
        write(io.stdout, planLines(s.plan).join('\n'));
        const slots = await slotOptions(values, s);
        const reporter = createReporter(io.stderr, { slots: slots.jobs, stages: runStagesOf(s) });
        const gpuLine = gpuSlotsLine(s, slots);
        if (gpuLine !== undefined) reporter.note(gpuLine);
        const stops = new StageStops();
        current = { session: s, stops, note: (text) => reporter.note(text) };
        const result = await runSession(s, {
          ...slots, keepGoing: values['keep-going'] === true, backend: values.backend as string | undefined, signal: controller.signal,
          stops, reporter, executor: localRunExecutor(loaded.kinds, DEFAULT_EXECUTOR, (text) => reporter.note(text)),
          ...(overrides.length > 0 ? { overrides: overridesRecord(overrides) } : {}),
        }).finally(() => {
          current = undefined;
        });
        // The results of a pipeline that a change replaced in part would be read as the new one's.
        reportRun(s, result, (Date.now() - started) / 1000, io, { results: stops.reasons.size === 0 });
      } else {
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
      const replaced = run.session.plan.stages.filter((p) => p.status !== 'fresh' && p.key !== undefined && !wanted.has(p.key));
      const stopped = run.stops.stop(replaced.map((p) => p.name), `replaced by the change to ${files}`);
      run.note(stopped.length > 0
        ? `${what}; stopping ${listSome(stopped)}, which it replaces: the rest of the run goes on, then the new plan runs`
        : `${what}; it replaces none of the stages still to finish: the run goes on, then the new plan runs`);
    } catch (e) {
      run.note(`pausepipe watch: ${e instanceof Error ? e.message : String(e)}`);
    }
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
        removeHandlers();
        resolve(signalExitCode(signal));
      });
    }, () => write(io.stderr, QUITTING));
  });
}

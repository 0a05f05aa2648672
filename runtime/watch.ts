// `pausepipe watch`: run, then re-plan and run what became stale whenever a .pipe file or a declared file changes.
import { existsSync } from 'node:fs';
import path from 'node:path';
import type { Io } from './cli.ts';
import { gpuSlotsLine, localRunExecutor, onStopSignals, planLines, QUITTING, reportRun, signalExitCode, slotOptions } from './cli.ts';
import { workspaceRelative } from './keys.ts';
import type { Pipeline } from './pipeline.ts';
import { createReporter } from './progress.ts';
import { loadChecked, planLoaded, runSession, runStagesOf } from './session.ts';
import { overridesRecord, type Override } from './overrides.ts';
import { DEFAULT_EXECUTOR } from './settings.ts';
import type { StageKind } from '../stages/kind.ts';

/** Editors write a file in several steps; changes closer together than this make one re-run. */
const DEBOUNCE_MS = 300;

/** The .pipe files plus every declared workspace file, minus what stages write themselves (no re-run loops). */
function watchedPaths(pipeline: Pipeline, kinds: Record<string, StageKind>): Set<string> {
  const outs = new Set<string>();
  const deps = new Set<string>();
  for (const s of pipeline.stages) {
    const kind = kinds[s.kind];
    for (const o of kind?.workspaceOutputs?.(s.params) ?? []) outs.add(workspaceRelative(pipeline.workspace, o));
    for (const d of kind?.workspaceFiles?.(s.params) ?? []) deps.add(workspaceRelative(pipeline.workspace, d));
  }
  const files = new Set(Object.keys(pipeline.sources).map((f) => path.resolve(f)));
  for (const d of deps) if (!outs.has(d)) files.add(path.resolve(pipeline.workspace, d));
  return files;
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
  /** Whether the last load failed: a .pipe file created in a watched folder may be the missing include. */
  let broken = false;
  const controller = new AbortController();
  let changed = new Set<string>();
  let timer: NodeJS.Timeout | undefined;
  let running: Promise<void> | undefined;
  let again = false;

  const shown = (f: string) => {
    const rel = path.relative(process.cwd(), f);
    return rel.startsWith('..') ? f : rel.split(path.sep).join('/');
  };

  /** Watches the folders the watched files are (or will be) in; a folder made or removed moves the watch. */
  const watchFolders = () => {
    const next = new Set([...watched].map(existingFolderOf));
    const gone = [...folders].filter((d) => !next.has(d));
    if (gone.length > 0) watcher.unwatch(gone);
    const added = [...next].filter((d) => !folders.has(d));
    if (added.length > 0) watcher.add(added);
    folders = next;
  };

  const cycle = async () => {
    const started = Date.now();
    try {
      const read = new Set([entry]);
      const loaded = await loadChecked(entry, (t) => write(io.stderr, t), { overrides }, (files) => files.forEach((f) => read.add(f)));
      broken = !loaded;
      if (!loaded) {
        // The files read so far, the one with the error among them, keep being watched.
        watched = new Set([...watched, ...read]);
        watchFolders();
        write(io.stderr, 'the pipeline has errors; waiting for a change');
        return;
      }
      const s = await planLoaded(loaded.pipeline, loaded.kinds, values['cache-dir'] as string | undefined);
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
        const result = await runSession(s, {
          ...slots, keepGoing: values['keep-going'] === true, backend: values.backend as string | undefined, signal: controller.signal,
          reporter, executor: localRunExecutor(loaded.kinds, DEFAULT_EXECUTOR, (text) => reporter.note(text)),
          ...(overrides.length > 0 ? { overrides: overridesRecord(overrides) } : {}),
        });
        reportRun(s, result, (Date.now() - started) / 1000, io);
      } else {
        write(io.stdout, `up to date (${s.plan.counts.fresh} fresh)`);
      }
      if (!controller.signal.aborted) write(io.stdout, `watching ${watched.size} file(s) (Ctrl-C to stop)`);
    } catch (e) {
      // Watching outlives any one failure: say what went wrong and wait for the next change.
      write(io.stderr, `pausepipe watch: ${e instanceof Error ? e.message : String(e)}`);
    }
  };

  /** Starts a cycle, or asks for one more after the current one (a change during a run is not lost). */
  const kick = () => {
    if (running) {
      again = true;
      return;
    }
    if (changed.size > 0) write(io.stdout, `changed: ${[...changed].map(shown).sort().join(', ')}`);
    changed = new Set();
    running = cycle().finally(() => {
      running = undefined;
      if (again && !controller.signal.aborted) {
        again = false;
        kick();
      }
    });
  };

  /** A folder made or removed on the way to a watched file: the watch moves to the folder that now exists. */
  const onTheWay = (event: string, where: string) =>
    (event === 'addDir' || event === 'unlinkDir') && [...watched].some((f) => f.startsWith(where + path.sep));

  watcher.on('all', (event, changedPath) => {
    const where = path.resolve(changedPath);
    if (controller.signal.aborted) return;
    const moved = onTheWay(event, where);
    if (moved) watchFolders();
    else if (!watched.has(where) && !(broken && where.endsWith('.pipe'))) return;
    changed.add(where);
    clearTimeout(timer);
    timer = setTimeout(kick, DEBOUNCE_MS);
  });
  watchFolders();
  await new Promise<void>((resolve) => watcher.once('ready', () => resolve()));
  kick();

  return new Promise<number>((resolve) => {
    const removeHandlers = onStopSignals((signal) => {
      write(io.stderr, 'stopping');
      controller.abort();
      clearTimeout(timer);
      void Promise.resolve(running).then(async () => {
        await watcher.close();
        removeHandlers();
        resolve(signalExitCode(signal));
      });
    }, () => write(io.stderr, QUITTING));
  });
}

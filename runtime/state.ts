// What the last run of a pipeline computed under each stage name, so the next plan can say what changed.
import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { sha256 } from './hash.ts';
import type { KeyIngredients } from './hash.ts';
import type { PreviousState } from './plan.ts';

const STATE_FORMAT = 1;

/** `<cacheRoot>/state/<sha256 of the pipeline's absolute path>.json` */
export function statePath(cacheRoot: string, pipelineFile: string): string {
  return path.join(cacheRoot, 'state', `${sha256(path.resolve(pipelineFile))}.json`);
}

interface StateFile {
  format: number;
  stages: PreviousState;
  /** Each stage name's key before the last run that changed any (what `pausepipe diff` compares with). */
  beforeLastRun?: Record<string, string>;
  /**
   * The pipeline's stage names when that run started, also those with no key yet (never computed): `diff` lists them
   * as not in the cache then, not as stages added since.
   */
  beforeLastRunStages?: string[];
  /** The pipeline's stage names at its last run: `stages` keeps names dropped long ago, which diff must not show. */
  lastRunStages?: string[];
  /**
   * What a run last tried under a stage name and ended without a full result (failed, interrupted, partial), newer
   * than the stage's entry in `stages`: plan says what changed since that attempt. Dropped when the name records anew.
   */
  tried?: PreviousState;
}

async function readStateFile(file: string): Promise<StateFile | undefined> {
  try {
    const parsed = JSON.parse(await readFile(file, 'utf8')) as Partial<StateFile>;
    return parsed.format === STATE_FORMAT && parsed.stages ? (parsed as StateFile) : undefined;
  } catch {
    return undefined;
  }
}

/**
 * The recorded state (empty when there is none or it cannot be read: it only improves messages), and the pipeline's
 * stage names at its last run (undefined when unknown: no run, or a state from before they were kept).
 */
export async function readState(file: string): Promise<{ previous: PreviousState; tried: PreviousState; lastRunStages?: string[] }> {
  const state = await readStateFile(file);
  return { previous: state?.stages ?? {}, tried: state?.tried ?? {}, ...(state?.lastRunStages ? { lastRunStages: state.lastRunStages } : {}) };
}

/**
 * Stage name → key as they were before the last run that changed any (empty when unknown), and the pipeline's stage
 * names then (undefined in a state from before they were kept).
 */
export async function readBeforeLastRun(file: string): Promise<{ keys: Record<string, string>; stages?: string[] }> {
  const state = await readStateFile(file);
  return { keys: state?.beforeLastRun ?? {}, ...(state?.beforeLastRunStages ? { stages: state.beforeLastRunStages } : {}) };
}

function sameNames(a: string[], b: string[]): boolean {
  const set = new Set(a);
  return a.length === b.length && b.every((name) => set.has(name));
}

/** How often, at most, a running pipeline rewrites its state file. */
const WRITE_INTERVAL_MS = 1000;

/**
 * Records stages as they finish and writes the file at most once a second while a run goes on, so a killed
 * run keeps most of what it finished. Entries from other runs of the same file are merged, not dropped.
 */
export class StateRecorder {
  private changes: PreviousState = {};
  /** Attempts this run made without a full result, and the names whose earlier attempt a result replaced. */
  private triedChanges: PreviousState = {};
  private triedCleared = new Set<string>();
  private dirty: boolean;
  private timer: NodeJS.Timeout | undefined;
  private writing: Promise<void> = Promise.resolve();
  /** The keys this run started from; written once the run changes one, so `diff` can compare with them. */
  private readonly startKeys: Record<string, string>;
  /** The pipeline's stage names this run started from, written with startKeys. */
  private readonly startStages: string[];
  /** The whole pipeline's stage names (see the constructor), and those that joined the run. */
  private readonly stageNames: string[];

  /**
   * `stageNames`: the whole pipeline's, also the stages targets left out. `lastRunStages`: what the state says the
   * pipeline had at its last run (readState); when unknown, the stages it has now.
   */
  constructor(
    private readonly file: string,
    private readonly known: PreviousState,
    stageNames: string[],
    lastRunStages: string[] | undefined,
    /** The state's `tried` when the run started (readState), updated as the run goes. */
    private readonly knownTried: PreviousState = {},
  ) {
    this.stageNames = [...stageNames];
    // What this run started from is the pipeline as last run, not every name the state ever recorded.
    const started = new Set(lastRunStages ?? stageNames);
    this.startStages = [...started];
    this.startKeys = Object.fromEntries(Object.entries(known).filter(([name]) => started.has(name)).map(([name, p]) => [name, p.key]));
    // A run that only dropped or added stages changes no key, yet the next one must start from its stages.
    this.dirty = lastRunStages === undefined || !sameNames(lastRunStages, stageNames);
  }

  record(name: string, key: string, ingredients: KeyIngredients): void {
    // A result (computed or found) is newer than any attempt under the name that had none, even when its key is known.
    if (name in this.knownTried) {
      delete this.knownTried[name];
      delete this.triedChanges[name];
      this.triedCleared.add(name);
      this.changed();
    }
    if (this.known[name]?.key === key) return;
    this.changes[name] = { key, ingredients };
    this.known[name] = { key, ingredients };
    this.changed();
  }

  /** The run tried `key` under `name` and has no full result for it: failed, interrupted, or partial. */
  recordTried(name: string, key: string, ingredients: KeyIngredients): void {
    this.triedCleared.delete(name);
    this.triedChanges[name] = { key, ingredients };
    this.knownTried[name] = { key, ingredients };
    this.changed();
  }

  private changed(): void {
    this.dirty = true;
    this.timer ??= setTimeout(() => {
      this.timer = undefined;
      this.writing = this.writing.then(() => this.write());
    }, WRITE_INTERVAL_MS).unref();
  }

  /** Stages that joined the run (`watch`): the pipeline at this run has them too. */
  addStages(names: string[]): void {
    const added = names.filter((n) => !this.stageNames.includes(n));
    if (added.length === 0) return;
    this.stageNames.push(...added);
    this.dirty = true;
  }

  /** Resolves when everything recorded so far is on disk. */
  async flush(): Promise<void> {
    clearTimeout(this.timer);
    this.timer = undefined;
    this.writing = this.writing.then(() => this.write());
    await this.writing;
  }

  private async write(): Promise<void> {
    if (!this.dirty) return;
    this.dirty = false;
    const onDisk = await readStateFile(this.file);
    const stages = { ...onDisk?.stages, ...this.changes };
    const tried: PreviousState = { ...onDisk?.tried, ...this.triedChanges };
    for (const name of this.triedCleared) delete tried[name];
    // A run that changed no key leaves diff comparing with what the last one that did started from.
    const changed = Object.keys(this.changes).length > 0;
    const beforeLastRun = changed ? this.startKeys : onDisk?.beforeLastRun;
    const beforeLastRunStages = changed ? this.startStages : onDisk?.beforeLastRunStages;
    await mkdir(path.dirname(this.file), { recursive: true });
    const tmp = `${this.file}.${process.pid}.tmp`;
    const state: StateFile = {
      format: STATE_FORMAT, stages, ...(beforeLastRun ? { beforeLastRun } : {}), ...(beforeLastRunStages ? { beforeLastRunStages } : {}),
      lastRunStages: this.stageNames, ...(Object.keys(tried).length > 0 ? { tried } : {}),
    };
    await writeFile(tmp, JSON.stringify(state));
    await rename(tmp, this.file);
  }
}

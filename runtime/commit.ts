// The cache side of a run: inputs read from committed manifests, a stage's log, the manifest and commit of a
// computed entry, cache hits and the workspace outputs they restore, and the state `plan` diffs against next time.
import { createWriteStream, readFileSync, type WriteStream } from 'node:fs';
import { copyFile, mkdir, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { noSpaceMessage } from '../cache/durable.ts';
import { FileMissingError } from '../cache/file-hash.ts';
import type { ArtifactStore, FileDigester, Manifest, PendingEntry } from '../cache/store.ts';
import type { ArtifactRef, MissingInput, StageKind } from '../stages/kind.ts';
import type { JsonValue } from './json.ts';
import type { KeyedStage, StageKeys } from './keys.ts';
import type { Pipeline, StageInstance } from './pipeline.ts';
import type { StateRecorder } from './state.ts';
import { PAUSEPIPE_VERSION } from './version.ts';

/** Lines of a failed stage's log shown with the failure. */
const LOG_TAIL_LINES = 20;
/** Name of the failed run's log kept in the scratch folder (which outlives an aborted entry). */
const FAILED_LOG = 'failed-run.log';
/** Beside it, how that run ended: `plan` and `show` say it instead of "new stage" or "not computed yet". */
const FAILED_RECORD = 'failed-run.json';

/**
 * Beside them, in the full key's scratch folder, that the last run committed only a partial result (a kind with
 * `partialInputs` run without some inputs): `plan` and `show` say so, and the full key's commit removes it.
 */
const PARTIAL_RECORD = 'partial-run.json';

/** The partial result the last run made in place of a full one. */
export interface LastPartial {
  /** The key it is stored under. */
  key: string;
  /** The upstream stages it was made without, each with how it ended. */
  missing: { stage: string; status: MissingInput['status'] }[];
  /** How many upstream stages it reads when complete. */
  inputs: number;
}

/** The record of the partial result the last run made instead of `key`'s; undefined when none. */
export function lastPartial(store: ArtifactStore, key: string): LastPartial | undefined {
  try {
    const record = JSON.parse(readFileSync(path.join(store.scratchDir(key), PARTIAL_RECORD), 'utf8')) as Partial<LastPartial>;
    if (typeof record.key !== 'string' || !Array.isArray(record.missing) || typeof record.inputs !== 'number') return undefined;
    return { key: record.key, missing: record.missing, inputs: record.inputs };
  } catch {
    return undefined;
  }
}

/** `partial in its last run: 1 of 3 inputs missing (eval[b] failed)`, for plan's reasons and show. */
export function describePartial(p: LastPartial): string {
  const named = p.missing.slice(0, LISTED_MISSING).map((m) => `${m.stage} ${m.status}`);
  const more = p.missing.length > LISTED_MISSING ? `, ${p.missing.length - LISTED_MISSING} more` : '';
  return `partial in its last run: ${p.missing.length} of ${p.inputs} inputs missing (${named.join(', ')}${more})`;
}

/** Missing inputs a partial result's description names before it counts the rest. */
const LISTED_MISSING = 3;

/** How the last attempt at a key ended, when it did not commit. */
export interface LastFailure {
  /** The error's first line; "interrupted" for a run stopped by Ctrl-C or a signal. */
  error: string;
  interrupted: boolean;
  /** The full log of that attempt, when it could be kept. */
  log?: string;
}

/** The record the last failed or interrupted attempt at `key` left in its scratch folder; undefined when none. */
export function lastFailure(store: ArtifactStore, key: string): LastFailure | undefined {
  const dir = store.scratchDir(key);
  try {
    const record = JSON.parse(readFileSync(path.join(dir, FAILED_RECORD), 'utf8')) as { error?: unknown; interrupted?: unknown; log?: unknown };
    if (typeof record.error !== 'string') return undefined;
    return { error: record.error, interrupted: record.interrupted === true, ...(record.log === true ? { log: path.join(dir, FAILED_LOG) } : {}) };
  } catch {
    return undefined;
  }
}

/** `failed in its last run: ERROR` or `interrupted in its last run`, for plan's reasons and show. */
export function describeFailure(f: LastFailure): string {
  return f.interrupted ? 'interrupted in its last run' : `failed in its last run: ${f.error}`;
}

/** A stage's log file plus the tail kept in memory for the failure message. */
export class StageLog {
  readonly tail: string[] = [];
  private out: WriteStream;
  /** A failed write (a full disk): it fails the stage at close(), never the runner through an unhandled 'error'. */
  private failure: Error | undefined;

  constructor(readonly file: string) {
    this.out = createWriteStream(file, { flags: 'a' });
    this.out.on('error', (e) => {
      this.failure ??= e;
    });
  }

  /** Into the log file only: what helps whoever debugs pausepipe (a stack), not the person reading the tail. */
  detail(text: string): void {
    if (this.failure === undefined) this.out.write(`${text}\n`);
  }

  line(text: string): void {
    for (const l of text.split(/\r?\n/)) {
      this.tail.push(l);
      if (this.tail.length > LOG_TAIL_LINES) this.tail.shift();
    }
    if (this.failure === undefined) this.out.write(`${text}\n`);
  }

  close(): Promise<void> {
    if (this.failure !== undefined || this.out.destroyed) return this.failure ? Promise.reject(this.failure) : Promise.resolve();
    return new Promise((resolve, reject) => this.out.end((e?: Error | null) => (e ?? this.failure ? reject(e ?? this.failure) : resolve())));
  }
}

export interface CommitterOptions {
  pipeline: Pipeline;
  kinds: Record<string, StageKind>;
  store: ArtifactStore;
  keys: StageKeys;
  /**
   * Hashes workspace files for restore checks and inputs against their manifests (the stat cache keeps a no-op re-run
   * from reading them).
   */
  hasher: FileDigester;
  state?: StateRecorder;
  /** Manifests already read while planning, by key; filled as entries are read or committed. */
  manifests?: Map<string, Manifest>;
  backend?: string;
  /** The command line's `-p` overrides, recorded in the manifest of every entry the run commits. */
  overrides?: Record<string, JsonValue>;
}

/** How many upstream stages a stage reads when none is missing (one stage given to two inputs counts twice). */
export function upstreamCount(s: StageInstance): number {
  return Object.values(s.inputs).reduce((n, b) => n + b.stages.length, 0);
}

/** A stage this run computes with partial inputs: the key it is stored under and what it goes without. */
interface PartialRun {
  keyed: KeyedStage;
  /** Its full key: the partial record goes into that key's scratch folder. */
  fullKey: string;
  missing: Record<string, MissingInput[]>;
  /** The missing upstream stage names. */
  without: Set<string>;
}

export class Committer {
  private readonly manifests: Map<string, Manifest>;
  private readonly byName: Map<string, StageInstance>;
  private readonly partial = new Map<string, PartialRun>();
  private readonly keys: StageKeys;

  constructor(private readonly o: CommitterOptions) {
    this.manifests = o.manifests ?? new Map();
    this.byName = new Map(o.pipeline.stages.map((s) => [s.name, s]));
    this.keys = new Map(o.keys);
  }

  /** Stages that joined the run (`watch`), with their keys: looked up by name as the pipeline's own. */
  add(stages: StageInstance[], keys: StageKeys): void {
    for (const s of stages) {
      this.byName.set(s.name, s);
      this.keys.set(s.name, keys.get(s.name)!);
    }
  }

  /** The key a stage is computed and stored under: its partial key once `computePartial` said so. */
  keyOf(s: StageInstance): KeyedStage {
    return this.partial.get(s.name)?.keyed ?? (this.keys.get(s.name) as KeyedStage);
  }

  /**
   * The stage is computed without the upstream stages in `missing` (by input name), under `keyed` (its partial key):
   * its inputs leave them out, its manifest names them, and its state is not recorded (the full key stays the one the
   * next run looks for).
   */
  computePartial(s: StageInstance, keyed: KeyedStage, missing: Record<string, MissingInput[]>): void {
    const without = new Set(Object.values(missing).flat().map((m) => m.stage));
    this.partial.set(s.name, { keyed, fullKey: (this.keys.get(s.name) as KeyedStage).key, missing, without });
  }

  /** The missing inputs of a stage computed with partial inputs, by input name; undefined for any other. */
  missingOf(s: StageInstance): Record<string, MissingInput[]> | undefined {
    return this.partial.get(s.name)?.missing;
  }

  /** Records in the state that the run tried the stage's (full) key without getting its result, for `plan`. */
  noteTried(s: StageInstance): void {
    const full = this.keys.get(s.name) as KeyedStage;
    this.o.state?.recordTried(s.name, full.key, full.ingredients);
  }

  /**
   * Records in the full key's scratch folder that this run has only the partial result (computed or found), for
   * `plan` and `show`; a failure recorded there before is no longer the last attempt. Never fails the stage.
   */
  async notePartial(s: StageInstance): Promise<void> {
    const p = this.partial.get(s.name);
    if (!p) return;
    this.noteTried(s);
    const dir = this.o.store.scratchDir(p.fullKey);
    const missing = Object.values(p.missing).flat().map((m) => ({ stage: m.stage, status: m.status }));
    const record: LastPartial = { key: p.keyed.key, missing, inputs: upstreamCount(s) };
    await mkdir(dir, { recursive: true })
      .then(() => rm(path.join(dir, FAILED_RECORD), { force: true }))
      .then(() => writeFile(path.join(dir, PARTIAL_RECORD), `${JSON.stringify(record)}\n`))
      .catch(() => undefined);
  }

  manifestOf(key: string): Manifest {
    let m = this.manifests.get(key);
    if (!m) {
      m = this.o.store.readManifest(key);
      if (!m) throw new Error(`cache entry ${key} is missing or damaged (run \`pausepipe verify\`)`);
      this.manifests.set(key, m);
    }
    return m;
  }

  /** The committed upstream artifacts a stage reads, by input name. */
  inputsOf(s: StageInstance): Record<string, ArtifactRef[]> {
    const refs: Record<string, ArtifactRef[]> = {};
    for (const [name, binding] of Object.entries(s.inputs)) {
      const without = this.partial.get(s.name)?.without;
      refs[name] = binding.stages.filter((up) => !without?.has(up)).map((up) => {
        const upStage = this.byName.get(up)!;
        const key = this.keyOf(upStage).key;
        const m = this.manifestOf(key);
        return { stage: up, key, kind: upStage.kind, dir: this.o.store.artifactsDir(key), variant: upStage.variant, params: upStage.params, metrics: m.metrics };
      });
    }
    return refs;
  }

  /**
   * Checks the entries a stage is about to read against their manifests: a stage never computes from, nor is cached
   * on, input bytes that differ from what their manifests say. Returns the contents to record in its manifest
   * (`inputContents`, given back to commit()).
   */
  async prepare(s: StageInstance): Promise<Record<string, string>> {
    return this.o.store.checkInputs(this.inputKeysOf(s), this.o.hasher);
  }

  private inputKeysOf(s: StageInstance): string[] {
    return this.upstreamKeys(s).map(([, key]) => key);
  }

  /** Each upstream stage's name with its key, in input order (without those a partial run goes without). */
  private upstreamKeys(s: StageInstance): [name: string, key: string][] {
    const without = this.partial.get(s.name)?.without;
    return Object.values(s.inputs).flatMap((b) => b.stages.filter((up) => !without?.has(up)).map((up): [string, string] => [up, this.keyOf(this.byName.get(up)!).key]));
  }

  needsRestore(s: StageInstance): boolean {
    const kind = this.o.kinds[s.kind]!;
    return kind.restore !== undefined && (kind.workspaceOutputs?.(s.params) ?? []).length > 0;
  }

  /** Puts a hit's workspace outputs back; the workspace paths rewritten. */
  async restore(s: StageInstance): Promise<string[]> {
    if (!this.needsRestore(s)) return [];
    const key = this.keyOf(s).key;
    const hashFile = async (abs: string) => {
      try {
        return await this.o.hasher.hash(abs);
      } catch (e) {
        if (e instanceof FileMissingError) return undefined;
        throw e;
      }
    };
    return this.o.kinds[s.kind]!.restore!({
      name: s.name, params: s.params, workspace: this.o.pipeline.workspace, artifactsDir: this.o.store.artifactsDir(key),
      outputs: this.manifestOf(key).outputs, hashFile,
    });
  }

  /** A cache hit: the name → key mapping is recorded (so later reasons compare with what is in use); its metrics. */
  hit(s: StageInstance): Record<string, JsonValue> | undefined {
    const keyed = this.keyOf(s);
    if (!this.partial.has(s.name)) this.o.state?.record(s.name, keyed.key, keyed.ingredients);
    return (this.manifests.get(keyed.key) ?? this.o.store.readManifest(keyed.key))?.metrics;
  }

  /**
   * Commits a computed entry with its manifest, after checking its inputs again (a stage running as root can write
   * into them), and records the stage's state. `inputContents` is what prepare() returned.
   */
  async commit(s: StageInstance, entry: PendingEntry, metrics: Record<string, JsonValue>, startedAt: Date, inputContents: Record<string, string>): Promise<Manifest> {
    const now = await this.o.store.checkInputs(this.inputKeysOf(s), this.o.hasher).catch((e: Error) => {
      throw new Error(`an input changed while the stage ran (did it write into its inputs, or did another run remove it?): ${e.message}`);
    });
    // Intact but other bytes: another run computed the input again (--force) while this stage read it.
    for (const [up, key] of this.upstreamKeys(s)) {
      if (now[key] !== inputContents[key]) {
        throw new Error(`input ${up} (${key.slice(0, 12)}) was computed again by another run while this stage read it: this result is not kept; run again`);
      }
    }
    const keyed = this.keyOf(s);
    const missing = this.partial.get(s.name)?.missing;
    const finishedAt = new Date();
    const manifest = await entry.commit({
      kind: s.kind, kindVersion: this.o.kinds[s.kind]!.version, stage: s.name, params: s.params,
      inputs: keyed.ingredients.inputs, files: keyed.ingredients.files, code: keyed.ingredients.code, variant: s.variant, metrics,
      timings: { startedAt: startedAt.toISOString(), finishedAt: finishedAt.toISOString(), seconds: (finishedAt.getTime() - startedAt.getTime()) / 1000 },
      ...(this.o.backend ? { backend: this.o.backend } : {}),
      ...(this.o.overrides && Object.keys(this.o.overrides).length > 0 ? { overrides: this.o.overrides } : {}),
      versions: { pausepipe: PAUSEPIPE_VERSION, node: process.version },
      inputContents,
      ...(keyed.ingredients.missing ? { missing: keyed.ingredients.missing } : {}),
      ...(missing ? { missingInputs: missing } : {}),
    });
    this.manifests.set(keyed.key, manifest);
    if (!missing) this.o.state?.record(s.name, keyed.key, keyed.ingredients);
    return manifest;
  }

  /** A new attempt starts: the last failed one's record would say how this attempt ended if it were killed. */
  async forgetFailure(entry: PendingEntry): Promise<void> {
    await rm(path.join(entry.scratchDir, FAILED_RECORD), { force: true });
    await rm(path.join(entry.scratchDir, PARTIAL_RECORD), { force: true });
  }

  /**
   * Drops a failed or interrupted entry; its log is kept in the scratch folder, with a record of how it ended
   * (`lastFailure`). Returns that log's path (none when it could not be copied there, e.g. on a full disk), and for a
   * failure caused by a full disk, a message saying where and how much (measured before the entry goes).
   */
  async abandon(entry: PendingEntry, error: unknown, logTail: readonly string[], interrupted = false): Promise<{ kept?: string; noSpace?: string }> {
    // Measured before the log's copy adds to the scratch folder.
    const noSpace = await noSpaceMessage(error, entry.outDir, this.o.store.root, logTail, entry.scratchDir);
    const kept = path.join(entry.scratchDir, FAILED_LOG);
    const copied = await copyFile(entry.logPath, kept).then(() => true, () => false);
    const firstLine = (noSpace ?? (error instanceof Error ? error.message : String(error))).split('\n')[0]!;
    const record = { error: interrupted ? 'interrupted' : firstLine, interrupted, log: copied };
    // Only said later by plan, show and log: a full disk that refuses it loses nothing else. Written before the entry
    // goes, so whoever follows the log finds where it went.
    await writeFile(path.join(entry.scratchDir, FAILED_RECORD), `${JSON.stringify(record)}\n`).catch(() => undefined);
    await entry.abort();
    return { ...(copied ? { kept } : {}), ...(noSpace === undefined ? {} : { noSpace }) };
  }
}

// The cache side of a run: inputs read from committed manifests, a stage's log, the manifest and commit of a
// computed entry, cache hits and the workspace outputs they restore, and the state `plan` diffs against next time.
import { createWriteStream, type WriteStream } from 'node:fs';
import { copyFile } from 'node:fs/promises';
import path from 'node:path';
import { FileMissingError } from '../cache/file-hash.ts';
import type { ArtifactStore, Manifest, PendingEntry } from '../cache/store.ts';
import type { ArtifactRef, StageKind } from '../stages/kind.ts';
import type { JsonValue } from './json.ts';
import type { ContentHasher, KeyedStage, StageKeys } from './keys.ts';
import type { Pipeline, StageInstance } from './pipeline.ts';
import type { StateRecorder } from './state.ts';
import { PAUSEPIPE_VERSION } from './version.ts';

/** Lines of a failed stage's log shown with the failure. */
const LOG_TAIL_LINES = 20;
/** Name of the failed run's log kept in the scratch folder (which outlives an aborted entry). */
const FAILED_LOG = 'failed-run.log';

/** A stage's log file plus the tail kept in memory for the failure message. */
export class StageLog {
  readonly tail: string[] = [];
  private out: WriteStream;

  constructor(readonly file: string) {
    this.out = createWriteStream(file, { flags: 'a' });
  }

  line(text: string): void {
    for (const l of text.split(/\r?\n/)) {
      this.tail.push(l);
      if (this.tail.length > LOG_TAIL_LINES) this.tail.shift();
    }
    this.out.write(`${text}\n`);
  }

  close(): Promise<void> {
    return new Promise((resolve, reject) => this.out.end((e?: Error | null) => (e ? reject(e) : resolve())));
  }
}

export interface CommitterOptions {
  pipeline: Pipeline;
  kinds: Record<string, StageKind>;
  store: ArtifactStore;
  keys: StageKeys;
  /** Hashes workspace files for restore checks (the stat cache keeps a no-op re-run from reading them). */
  hasher: ContentHasher;
  state?: StateRecorder;
  /** Manifests already read while planning, by key; filled as entries are read or committed. */
  manifests?: Map<string, Manifest>;
  backend?: string;
}

export class Committer {
  private readonly manifests: Map<string, Manifest>;
  private readonly byName: Map<string, StageInstance>;

  constructor(private readonly o: CommitterOptions) {
    this.manifests = o.manifests ?? new Map();
    this.byName = new Map(o.pipeline.stages.map((s) => [s.name, s]));
  }

  keyOf(s: StageInstance): KeyedStage {
    return this.o.keys.get(s.name) as KeyedStage;
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
      refs[name] = binding.stages.map((up) => {
        const upStage = this.byName.get(up)!;
        const key = this.keyOf(upStage).key;
        const m = this.manifestOf(key);
        return { stage: up, key, kind: upStage.kind, dir: this.o.store.artifactsDir(key), variant: upStage.variant, params: upStage.params, metrics: m.metrics };
      });
    }
    return refs;
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
    this.o.state?.record(s.name, keyed.key, keyed.ingredients);
    return (this.manifests.get(keyed.key) ?? this.o.store.readManifest(keyed.key))?.metrics;
  }

  /** Commits a computed entry with its manifest and records the stage's state. */
  async commit(s: StageInstance, entry: PendingEntry, metrics: Record<string, JsonValue>, startedAt: Date): Promise<Manifest> {
    const keyed = this.keyOf(s);
    const finishedAt = new Date();
    const manifest = await entry.commit({
      kind: s.kind, kindVersion: this.o.kinds[s.kind]!.version, stage: s.name, params: s.params,
      inputs: keyed.ingredients.inputs, files: keyed.ingredients.files, variant: s.variant, metrics,
      timings: { startedAt: startedAt.toISOString(), finishedAt: finishedAt.toISOString(), seconds: (finishedAt.getTime() - startedAt.getTime()) / 1000 },
      ...(this.o.backend ? { backend: this.o.backend } : {}),
      versions: { pausepipe: PAUSEPIPE_VERSION, node: process.version },
    });
    this.manifests.set(keyed.key, manifest);
    this.o.state?.record(s.name, keyed.key, keyed.ingredients);
    return manifest;
  }

  /** Drops a failed or interrupted entry; its log is kept in the scratch folder, whose path is returned. */
  async abandon(entry: PendingEntry): Promise<string> {
    const kept = path.join(entry.scratchDir, FAILED_LOG);
    await copyFile(entry.logPath, kept).catch(() => undefined);
    await entry.abort();
    return kept;
  }
}

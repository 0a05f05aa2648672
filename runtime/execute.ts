// The Executed phase: runs stale stages in dependency order under CPU/GPU slots, commits results, restores hits.
import { createWriteStream, type WriteStream } from 'node:fs';
import { copyFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { FileMissingError } from '../cache/file-hash.ts';
import type { ArtifactStore, Manifest, PendingEntry } from '../cache/store.ts';
import type { ArtifactRef, Progress, StageContext, StageKind } from '../stages/kind.ts';
import type { JsonValue } from './json.ts';
import type { ContentHasher, KeyedStage, StageKeys } from './keys.ts';
import type { Pipeline, StageInstance } from './pipeline.ts';
import type { Plan, PlannedStage } from './plan.ts';
import type { OutcomeStatus, Reporter } from './progress.ts';
import type { StateRecorder } from './state.ts';
import { PAUSEPIPE_VERSION } from './version.ts';
import type { FromWorker, RunRequest } from './worker-protocol.ts';

/** What a person chooses for a run (the CLI's flags). */
export interface RunOptions {
  /** CPU slots. */
  jobs: number;
  /** GPU slots; 0 makes GPU stages take CPU slots. */
  gpus: number;
  /** After a failure keep starting stages that do not depend on it. */
  keepGoing: boolean;
  backend?: string;
  /** Aborting (Ctrl-C) kills running stages, aborts their pending entries and starts nothing more. */
  signal?: AbortSignal;
  reporter: Reporter;
  /** The command line's `-p` overrides, recorded in the manifest of every entry the run commits. */
  overrides?: Record<string, JsonValue>;
}

export interface ExecuteOptions extends RunOptions {
  pipeline: Pipeline;
  kinds: Record<string, StageKind>;
  store: ArtifactStore;
  keys: StageKeys;
  plan: Plan;
  /** Hashes workspace files for restore checks (the stat cache keeps a no-op re-run from reading them). */
  hasher: ContentHasher;
  state?: StateRecorder;
  /** Manifests already read while planning, by key. */
  manifests?: Map<string, Manifest>;
}

export interface StageOutcome {
  name: string;
  key?: string;
  status: OutcomeStatus;
  /** Why the plan said it had to run (stale) or could not (error). */
  reasons: string[];
  seconds?: number;
  /** Failure message, or why a stage was skipped. */
  error?: string;
  /** Last lines of a failed stage's log. */
  logTail?: string[];
  /** Where the failed stage's full log was kept. */
  logPath?: string;
  metrics?: Record<string, JsonValue>;
  /** Workspace files put back from the cache. */
  restored?: string[];
}

export interface RunResult {
  outcomes: StageOutcome[];
  counts: Record<OutcomeStatus, number>;
  interrupted: boolean;
}

/** Lines of a failed stage's log shown with the failure. */
const LOG_TAIL_LINES = 20;
/** How long a worker gets to stop after an abort message before it is killed. */
const ABORT_GRACE_MS = 2000;
/** Name of the failed run's log kept in the scratch folder (which outlives an aborted entry). */
const FAILED_LOG = 'failed-run.log';

interface Request {
  cpu: number;
  gpu: number;
}

/** CPU/GPU slot accounting; a request larger than the machine is clamped so it can still run alone. */
export class Slots {
  private cpuFree: number;
  private gpuFree: number;

  constructor(readonly cpu: number, readonly gpu: number) {
    this.cpuFree = cpu;
    this.gpuFree = gpu;
  }

  request(kind: StageKind, params: Record<string, JsonValue>): Request {
    const r = kind.resources?.(params) ?? {};
    const wantsGpu = (r.gpu ?? 0) > 0;
    if (wantsGpu && this.gpu === 0) return { cpu: Math.min(this.cpu, Math.max(1, r.cpu ?? 1)), gpu: 0 };
    return { cpu: Math.min(this.cpu, r.cpu ?? (wantsGpu ? 0 : 1)), gpu: Math.min(this.gpu, r.gpu ?? 0) };
  }

  take(r: Request): boolean {
    if (r.cpu > this.cpuFree || r.gpu > this.gpuFree) return false;
    this.cpuFree -= r.cpu;
    this.gpuFree -= r.gpu;
    return true;
  }

  give(r: Request): void {
    this.cpuFree += r.cpu;
    this.gpuFree += r.gpu;
  }
}

/** A stage's log file plus the tail kept in memory for the failure message. */
class StageLog {
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

/** How to start runtime/worker: the compiled file under plain node, or the .ts source through tsx. */
function workerCommand(): string[] {
  const here = fileURLToPath(import.meta.url);
  if (here.endsWith('.ts')) return ['--import', import.meta.resolve('tsx'), path.join(path.dirname(here), 'worker.ts')];
  return [path.join(path.dirname(here), 'worker.js')];
}

async function runInWorker(
  req: RunRequest, log: StageLog, onProgress: (p: Progress) => void, onNotice: (line: string) => void, signal: AbortSignal,
): Promise<Record<string, JsonValue>> {
  const { execa } = await import('execa');
  const sub = execa(process.execPath, workerCommand(), {
    ipc: true,
    serialization: 'json',
    ipcInput: req as unknown as Record<string, JsonValue>,
    stdin: 'ignore',
    buffer: false,
    reject: false,
    forceKillAfterDelay: false,
  });
  let outcome: Extract<FromWorker, { type: 'done' | 'failed' }> | undefined;
  let killTimer: NodeJS.Timeout | undefined;
  const onAbort = () => {
    sub.sendMessage({ type: 'abort' }).catch(() => undefined);
    killTimer = setTimeout(() => sub.kill('SIGKILL'), ABORT_GRACE_MS);
  };
  if (signal.aborted) onAbort();
  else signal.addEventListener('abort', onAbort, { once: true });
  const messages = (async () => {
    try {
      for await (const raw of sub.getEachMessage()) {
        const m = raw as FromWorker;
        if (m.type === 'log') log.line(m.line);
        else if (m.type === 'progress') onProgress(m.progress);
        else if (m.type === 'notice') onNotice(m.line);
        else outcome = m;
      }
    } catch {
      // The channel closes with the process; how it ended is read from the result below.
    }
  })();
  const lines = [sub.stdout, sub.stderr].map(async (s) => {
    if (!s) return;
    const { createInterface } = await import('node:readline');
    for await (const line of createInterface({ input: s, crlfDelay: Infinity })) log.line(line);
  });
  const [result] = await Promise.all([sub, messages, ...lines]);
  clearTimeout(killTimer);
  signal.removeEventListener('abort', onAbort);
  if (outcome?.type === 'done') return outcome.metrics;
  if (outcome?.type === 'failed') throw new Error(outcome.message);
  if (signal.aborted) throw new Error('interrupted');
  const how = result.signal ? `killed by ${result.signal}` : `exit code ${result.exitCode}`;
  const oom = log.tail.some((l) => /heap out of memory|Allocation failed/i.test(l)) ? ' (out of memory)' : '';
  throw new Error(`worker process died (${how})${oom}`);
}

function errorText(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

/**
 * Run a plan: stale stages in dependency order, independent ones in parallel within the slots; cache hits
 * only get their workspace side effects restored. Never throws for a stage's failure: outcomes say what happened.
 */
export async function executePlan(o: ExecuteOptions): Promise<RunResult> {
  const stages = o.pipeline.stages;
  const planned = new Map(o.plan.stages.map((p) => [p.name, p]));
  const manifests = o.manifests ?? new Map<string, Manifest>();
  const slots = new Slots(Math.max(1, o.jobs), Math.max(0, o.gpus));
  const outcomes = new Map<string, StageOutcome>();
  const started = new Set<string>();
  const controllers = new Set<AbortController>();
  const byName = new Map(stages.map((x) => [x.name, x]));
  let running = 0;
  let stopping = false;
  // When a run starts; a forced stage replaces an entry committed before it, not one this run made under another name.
  const runStart = new Date();
  const noticed = new Set<string>();
  /** Said once per run however many stages say it (every model stage names its backend). */
  const notice = (line: string) => {
    if (noticed.has(line)) return;
    noticed.add(line);
    o.reporter.note(line);
  };

  const manifestOf = (key: string): Manifest => {
    let m = manifests.get(key);
    if (!m) {
      m = o.store.readManifest(key);
      if (!m) throw new Error(`cache entry ${key} is missing or damaged (run \`pausepipe verify\`)`);
      manifests.set(key, m);
    }
    return m;
  };

  /** Records the outcome and tells the reporter; a plain cache hit is not worth a line (a no-op run of 1,000 stays quiet). */
  const finish = (s: StageInstance, status: OutcomeStatus, extra: Partial<StageOutcome> = {}, note?: string) => {
    const p = planned.get(s.name);
    outcomes.set(s.name, { name: s.name, key: p?.key, status, reasons: p?.reasons ?? [], ...extra });
    if (status === 'failed' && !o.keepGoing) stopping = true;
    const restored = extra.restored?.length ? `restored ${extra.restored.join(', ')}` : undefined;
    const detail = extra.error ?? [note, restored].filter(Boolean).join('; ');
    if (status !== 'cached' || detail) o.reporter.finish(s.name, status, detail || undefined);
  };

  const hashFile = async (abs: string) => {
    try {
      return await o.hasher.hash(abs);
    } catch (e) {
      if (e instanceof FileMissingError) return undefined;
      throw e;
    }
  };

  const keyedOf = (s: StageInstance) => o.keys.get(s.name) as KeyedStage;

  const needsRestore = (s: StageInstance): boolean => {
    const kind = o.kinds[s.kind]!;
    return kind.restore !== undefined && (kind.workspaceOutputs?.(s.params) ?? []).length > 0;
  };

  const restore = async (s: StageInstance, key: string): Promise<string[]> => {
    if (!needsRestore(s)) return [];
    const m = manifestOf(key);
    return o.kinds[s.kind]!.restore!({
      name: s.name, params: s.params, workspace: o.pipeline.workspace, artifactsDir: o.store.artifactsDir(key), outputs: m.outputs, hashFile,
    });
  };

  /** A cache hit: the name → key mapping is recorded (so later reasons compare with what is in use) and reported. */
  const recordHit = (s: StageInstance, key: string, restored: string[] = [], note?: string) => {
    o.state?.record(s.name, key, keyedOf(s).ingredients);
    finish(s, 'cached', { restored, metrics: (manifests.get(key) ?? o.store.readManifest(key))?.metrics }, note);
  };

  const inputsOf = (s: StageInstance): Record<string, ArtifactRef[]> => {
    const refs: Record<string, ArtifactRef[]> = {};
    for (const [name, binding] of Object.entries(s.inputs)) {
      refs[name] = binding.stages.map((up) => {
        const key = keyedOf(byName.get(up)!).key;
        const m = manifestOf(key);
        const upStage = byName.get(up)!;
        return { stage: up, key, kind: upStage.kind, dir: o.store.artifactsDir(key), variant: upStage.variant, params: upStage.params, metrics: m.metrics };
      });
    }
    return refs;
  };

  const compute = async (s: StageInstance, entry: PendingEntry, ctl: AbortController): Promise<void> => {
    const kind = o.kinds[s.kind]!;
    const keyed = keyedOf(s);
    const log = new StageLog(entry.logPath);
    const startedAt = new Date();
    o.reporter.start(s.name);
    const onProgress = (p: Progress) => o.reporter.progress(s.name, p);
    try {
      const inputs = inputsOf(s);
      let metrics: Record<string, JsonValue>;
      if (kind.isolated === false) {
        const ctx: StageContext = {
          name: s.name, key: keyed.key, params: s.params, variant: s.variant, inputs, outDir: entry.outDir,
          scratchDir: entry.scratchDir, workspace: o.pipeline.workspace, backend: o.backend,
          log: (line) => log.line(line), progress: onProgress, notice, signal: ctl.signal,
        };
        metrics = (await kind.run(ctx)).metrics ?? {};
      } else {
        const req: RunRequest = {
          type: 'run', name: s.name, key: keyed.key, kind: s.kind, params: s.params, variant: s.variant, inputs,
          outDir: entry.outDir, scratchDir: entry.scratchDir, workspace: o.pipeline.workspace, backend: o.backend,
        };
        metrics = await runInWorker(req, log, onProgress, notice, ctl.signal);
      }
      if (ctl.signal.aborted) throw new Error('interrupted');
      await log.close();
      const finishedAt = new Date();
      const manifest = await entry.commit({
        kind: s.kind, kindVersion: kind.version, stage: s.name, params: s.params,
        inputs: keyed.ingredients.inputs, files: keyed.ingredients.files, variant: s.variant, metrics,
        timings: { startedAt: startedAt.toISOString(), finishedAt: finishedAt.toISOString(), seconds: (finishedAt.getTime() - startedAt.getTime()) / 1000 },
        ...(o.backend ? { backend: o.backend } : {}),
        ...(o.overrides && Object.keys(o.overrides).length > 0 ? { overrides: o.overrides } : {}),
        versions: { pausepipe: PAUSEPIPE_VERSION, node: process.version },
      });
      manifests.set(keyed.key, manifest);
      o.state?.record(s.name, keyed.key, keyed.ingredients);
      finish(s, 'ran', { seconds: manifest.timings.seconds, metrics });
    } catch (e) {
      const seconds = (Date.now() - startedAt.getTime()) / 1000;
      log.line(`pausepipe: ${errorText(e)}`);
      await log.close().catch(() => undefined);
      // The entry's folder goes with abort(); the scratch folder stays, so the full log is kept there.
      const kept = path.join(entry.scratchDir, FAILED_LOG);
      await copyFile(entry.logPath, kept).catch(() => undefined);
      await entry.abort();
      if (ctl.signal.aborted) finish(s, 'aborted', { seconds, error: 'interrupted' });
      else finish(s, 'failed', { seconds, error: errorText(e), logTail: log.tail, logPath: kept });
    }
  };

  const runStage = async (s: StageInstance, req: Request): Promise<void> => {
    const key = keyedOf(s).key;
    const ctl = new AbortController();
    controllers.add(ctl);
    try {
      const entry = await o.store.begin(key, {
        signal: ctl.signal, onWait: (owner) => o.reporter.waiting(s.name, owner), replaceBefore: planned.get(s.name)?.forced ? runStart : undefined,
      });
      if (entry === 'cached') {
        recordHit(s, key, await restore(s, key), 'computed by another run');
      } else {
        await compute(s, entry, ctl);
      }
    } catch (e) {
      if (ctl.signal.aborted) finish(s, 'aborted', { error: 'interrupted' });
      else finish(s, 'failed', { error: errorText(e) });
    } finally {
      controllers.delete(ctl);
      slots.give(req);
    }
  };

  const restoreHit = async (s: StageInstance, key: string): Promise<void> => {
    try {
      recordHit(s, key, await restore(s, key));
    } catch (e) {
      finish(s, 'failed', { error: `restoring its workspace outputs failed: ${errorText(e)}` });
    }
  };

  return new Promise<RunResult>((resolve) => {
    const settle = () => {
      const counts: Record<OutcomeStatus, number> = { ran: 0, cached: 0, failed: 0, skipped: 0, aborted: 0 };
      const list = stages.map((s) => outcomes.get(s.name)!);
      for (const x of list) counts[x.status]++;
      o.signal?.removeEventListener('abort', onAbort);
      resolve({ outcomes: list, counts, interrupted: o.signal?.aborted ?? false });
    };

    let waiting = stages;
    // Walks the waiting stages in topological order, so an upstream's outcome is known before its users are looked at.
    const pump = () => {
      for (const s of waiting) {
        if (started.has(s.name)) continue;
        const p = planned.get(s.name) as PlannedStage;
        // A hit stands on its own: its upstream's fate in this run does not matter, only its workspace outputs do.
        if (p.status === 'fresh') {
          started.add(s.name);
          if (!needsRestore(s)) {
            recordHit(s, p.key!);
            continue;
          }
          running++;
          void restoreHit(s, p.key!).finally(done);
          continue;
        }
        const ups = Object.values(s.inputs).flatMap((b) => b.stages);
        const broken = ups.find((u) => {
          const st = outcomes.get(u)?.status;
          return st === 'failed' || st === 'skipped' || st === 'aborted';
        });
        if (broken !== undefined) {
          started.add(s.name);
          finish(s, 'skipped', { error: `upstream ${broken} ${outcomes.get(broken)!.status}` });
          continue;
        }
        if (p.status === 'error') {
          started.add(s.name);
          finish(s, 'failed', { error: p.reasons.join('; ') });
          continue;
        }
        if (stopping) continue;
        if (!ups.every((u) => outcomes.get(u)?.status === 'ran' || outcomes.get(u)?.status === 'cached')) continue;
        const req = slots.request(o.kinds[s.kind]!, s.params);
        if (!slots.take(req)) continue;
        started.add(s.name);
        running++;
        void runStage(s, req).finally(done);
      }
      waiting = waiting.filter((s) => !started.has(s.name));
      if (running === 0) {
        for (const s of stages) {
          if (outcomes.has(s.name)) continue;
          finish(s, 'skipped', { error: o.signal?.aborted ? 'run interrupted' : 'not started after a failure' });
        }
        settle();
      }
    };
    const done = () => {
      running--;
      pump();
    };
    const onAbort = () => {
      stopping = true;
      for (const c of controllers) c.abort();
    };
    if (o.signal?.aborted) onAbort();
    o.signal?.addEventListener('abort', onAbort, { once: true });
    pump();
  });
}

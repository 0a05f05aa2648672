// The seam between scheduling and running: what every executor (in-process, local worker, a cluster) implements.
import type { Progress, Resources } from '../../stages/kind.ts';
import type { JsonValue } from '../json.ts';
import type { RunRequest } from '../worker-protocol.ts';

/**
 * One stage to compute, as plain data: it can cross a process boundary (JSON over IPC) or be written to a shared
 * filesystem for a cluster job. The runner has taken the key's lock and made `request.outDir` (an empty folder in the
 * cache's tmp/) and `request.scratchDir` before it starts; it commits `outDir` after the executor resolves.
 */
/**
 * A stage's own error as an executor reports it, with what the log file keeps beside the message: the stack where a
 * worker threw it. The terminal's tail of the log leaves it out (the message says what to fix).
 */
export class StageFailure extends Error {
  constructor(message: string, readonly detail?: string) {
    super(message);
  }
}

export interface StageJob {
  request: RunRequest;
  /** What the kind declares it needs (a cluster executor turns this into its job's resources). */
  resources: Resources;
}

/** What a running stage tells the runner; the runner writes the log file and draws the progress. */
export interface StageEvents {
  log(line: string): void;
  progress(p: Progress): void;
  /** A line for the run's own output, said once per run however many stages say it (e.g. the backend a model chose). */
  notice(line: string): void;
  /**
   * Only from an executor whose stages run elsewhere (a cluster job): the stage waits in the cluster's queue, or runs
   * now, since `startedAt` (milliseconds since the epoch) when the cluster says. A requeued job is queued again.
   */
  jobState?(state: 'queued' | 'running', startedAt?: number): void;
  /**
   * The stage holds nothing of this machine any more: it only waits for a job elsewhere (one an earlier run submitted
   * and this one adopted), so its CPU and GPU slots may go to other stages.
   */
  releaseSlots?(): void;
}

/**
 * Runs stages somewhere. `run` resolves with the stage's metrics once its artifacts are complete in `outDir`,
 * or rejects with an Error whose message says why (a crash, an exit code, a cluster job's final state).
 * When `signal` aborts (Ctrl-C) the executor stops the stage (gracefully, then by force) and rejects.
 *
 * A cluster executor submits in `run` and polls until the job ends. The key in `request.key` names the work: an
 * executor that keeps jobs outside this process can find, through it, a job a killed runner left queued or
 * running and adopt it instead of submitting a second one.
 */
export interface Executor {
  run(job: StageJob, events: StageEvents, signal: AbortSignal): Promise<Record<string, JsonValue>>;
}

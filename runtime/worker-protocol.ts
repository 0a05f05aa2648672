// Messages between the runner and a stage worker process (runtime/worker.ts), sent as JSON over the IPC channel.
import type { Progress, StageContextData } from '../stages/kind.ts';
import type { JsonValue } from './json.ts';

/** Everything a worker needs to build the StageContext of one stage. */
export interface RunRequest extends StageContextData {
  type: 'run';
  kind: string;
}

/** Runner → worker: the request (sent once at start), then possibly an abort (Ctrl-C) before a forced kill. */
export type ToWorker = RunRequest | { type: 'abort' };

/** Worker → runner. `done` carries the metrics; the runner commits the cache entry only after it. */
export type FromWorker =
  | { type: 'log'; line: string }
  | { type: 'progress'; progress: Progress }
  | { type: 'notice'; line: string }
  | { type: 'done'; metrics: Record<string, JsonValue> }
  /** `stack`: where the error was thrown, for the log file (the terminal shows the message). */
  | { type: 'failed'; message: string; stack?: string };

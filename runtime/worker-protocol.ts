// Messages between the runner and a stage worker process (runtime/worker.ts), sent as JSON over the IPC channel.
import type { ArtifactRef, Progress } from '../stages/kind.ts';
import type { JsonValue } from './json.ts';

/** Everything a worker needs to build the StageContext of one stage. */
export interface RunRequest {
  type: 'run';
  name: string;
  key: string;
  kind: string;
  params: Record<string, JsonValue>;
  variant: Record<string, JsonValue>;
  inputs: Record<string, ArtifactRef[]>;
  outDir: string;
  scratchDir: string;
  workspace: string;
  backend?: string;
}

/** Runner → worker: the request (sent once at start), then possibly an abort (Ctrl-C) before a forced kill. */
export type ToWorker = RunRequest | { type: 'abort' };

/** Worker → runner. `done` carries the metrics; the runner commits the cache entry only after it. */
export type FromWorker =
  | { type: 'log'; line: string }
  | { type: 'progress'; progress: Progress }
  | { type: 'done'; metrics: Record<string, JsonValue> }
  | { type: 'failed'; message: string };

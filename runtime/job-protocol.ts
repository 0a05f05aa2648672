// Files between the runner and a stage run as a batch job (`pausepipe exec`), kept in the key's scratch folder of the shared cache.
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { errorCode, replaceFileDurable } from '../cache/durable.ts';
import type { Progress } from '../stages/kind.ts';
import type { JsonValue } from './json.ts';
import type { RunRequest } from './worker-protocol.ts';

/**
 * What the job runs: the worker's request (its outDir is the job's own `out/` folder, not the runner's temp entry,
 * so a runner that dies and restarts can clear its temp entry without touching the job) and the submission's token.
 */
export interface JobDescription {
  token: string;
  request: RunRequest;
}

/** What the job leaves for the runner; the token tells this submission's result from an older one's. */
export type JobResult =
  | { token: string; status: 'done'; metrics: Record<string, JsonValue> }
  | { token: string; status: 'failed'; message: string };

/** The failure message of a stage that SIGTERM stopped (Slurm cancelled, timed out or preempted the job). */
export const STOPPED_BY_SIGTERM = 'stopped by SIGTERM';

/** The runner's note of its submission, written before `sbatch` (token only) and after it (with the job id). */
export interface JobRecord {
  token: string;
  jobId?: string;
  /** Login node and process of the runner that submitted, for people reading the folder. */
  host: string;
  pid: number;
  submittedAt: string;
}

/** The files of a key's job, all in `<scratch>/<key>/slurm-job/`. */
export class JobFiles {
  readonly dir: string;

  constructor(scratchDir: string) {
    this.dir = path.join(scratchDir, 'slurm-job');
  }

  get description(): string {
    return path.join(this.dir, 'job.json');
  }

  get script(): string {
    return path.join(this.dir, 'job.sh');
  }

  /** The job's stdout and stderr (sbatch --output): stage log lines and progress lines. */
  get log(): string {
    return path.join(this.dir, 'job.log');
  }

  get record(): string {
    return path.join(this.dir, 'record.json');
  }

  get result(): string {
    return resultFileOf(this.description);
  }

  /** The job's artifacts folder; moved into the runner's temp entry when the job has succeeded. */
  get out(): string {
    return path.join(this.dir, 'out');
  }
}

/** result.json beside the description the job was started with. */
export function resultFileOf(descriptionFile: string): string {
  return path.join(path.dirname(descriptionFile), 'result.json');
}

/** A progress report in the job's log: the runner turns these lines back into progress and keeps them out of the stage log. */
export const PROGRESS_PREFIX = 'pausepipe:job-progress ';

export function progressLine(p: Progress): string {
  return `${PROGRESS_PREFIX}${JSON.stringify(p)}`;
}

/** A notice in the job's log (StageContext.notice): the runner says it once on its own output, not in the stage log. */
export const NOTICE_PREFIX = 'pausepipe:job-notice ';

export function noticeLine(line: string): string {
  return `${NOTICE_PREFIX}${line}`;
}

/** The progress on a log line written by progressLine, or undefined for any other line. */
export function parseProgressLine(line: string): Progress | undefined {
  if (!line.startsWith(PROGRESS_PREFIX)) return undefined;
  try {
    const p = JSON.parse(line.slice(PROGRESS_PREFIX.length)) as Progress;
    return typeof p.step === 'number' ? p : undefined;
  } catch {
    return undefined;
  }
}

function readJson(file: string): unknown {
  try {
    return JSON.parse(readFileSync(file, 'utf8'));
  } catch (error) {
    if (errorCode(error) === 'ENOENT') return undefined;
    // A file written by rename is whole or absent; anything else was damaged by hand.
    if (error instanceof SyntaxError) return undefined;
    throw error;
  }
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

export function readDescription(file: string): JobDescription {
  let value: unknown;
  try {
    value = JSON.parse(readFileSync(file, 'utf8'));
  } catch (error) {
    throw new Error(`cannot read the job description ${file}: ${(error as Error).message}`);
  }
  if (!isRecord(value) || typeof value.token !== 'string' || !isRecord(value.request) || value.request.type !== 'run' ||
    typeof value.request.kind !== 'string' || typeof value.request.outDir !== 'string') {
    throw new Error(`${file} is not a pausepipe job description ({"token": ..., "request": {"type": "run", ...}})`);
  }
  return value as unknown as JobDescription;
}

export function readResult(file: string): JobResult | undefined {
  const v = readJson(file);
  if (!isRecord(v) || typeof v.token !== 'string') return undefined;
  if (v.status === 'done' && isRecord(v.metrics)) return v as unknown as JobResult;
  if (v.status === 'failed' && typeof v.message === 'string') return v as unknown as JobResult;
  return undefined;
}

export function readRecord(file: string): JobRecord | undefined {
  const v = readJson(file);
  if (!isRecord(v) || typeof v.token !== 'string') return undefined;
  if (v.jobId !== undefined && typeof v.jobId !== 'string') return undefined;
  return v as unknown as JobRecord;
}

/** Written whole by rename: a reader on any node sees the old file or the new one. */
export function writeJsonFile(file: string, value: unknown): Promise<void> {
  return replaceFileDurable(file, `${JSON.stringify(value, null, 2)}\n`);
}

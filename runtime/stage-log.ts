// `pausepipe log`: a stage's log wherever it is: its cache entry's, the one a run is writing now (followed until the
// stage ends), or its last failed attempt's.
import { existsSync } from 'node:fs';
import { open } from 'node:fs/promises';
import path from 'node:path';
import { StringDecoder } from 'node:string_decoder';
import { setTimeout as sleep } from 'node:timers/promises';
import { errorCode } from '../cache/durable.ts';
import type { ArtifactStore } from '../cache/store.ts';
import { describeFailure, lastFailure } from './commit.ts';
import { JobFiles, PROGRESS_PREFIX, readRecord } from './job-protocol.ts';

export type StageLogState =
  | { state: 'computed'; file: string }
  | { state: 'running'; file: string }
  | { state: 'failed'; file: string; why: string }
  /** A Slurm job that an earlier run submitted and no live run follows: its own log on the shared filesystem. */
  | { state: 'job'; file: string; jobId?: string }
  | { state: 'none' };

/** Where the log of `key` is now. */
export function findStageLog(store: ArtifactStore, key: string): StageLogState {
  const manifest = store.readManifest(key);
  if (manifest) return { state: 'computed', file: path.join(store.entryDir(key), manifest.log) };
  const running = store.runningLog(key);
  if (running) return { state: 'running', file: running };
  const failure = lastFailure(store, key);
  if (failure?.log) return { state: 'failed', file: failure.log, why: describeFailure(failure) };
  const job = new JobFiles(store.scratchDir(key));
  const record = readRecord(job.record);
  if (record) return { state: 'job', file: job.log, ...(record.jobId ? { jobId: record.jobId } : {}) };
  return { state: 'none' };
}

/** Whether a job's log is still being written: the job has written no result yet and no run has collected it. */
function jobGoesOn(store: ArtifactStore, key: string): boolean {
  const job = new JobFiles(store.scratchDir(key));
  return readRecord(job.record) !== undefined && !existsSync(job.result);
}

/** How often a followed log is read again. */
const FOLLOW_MS = 250;

/** The bytes of `file` from `offset` to its end; undefined once the file is gone. */
async function readFrom(file: string, offset: number): Promise<Buffer | undefined> {
  let handle;
  try {
    handle = await open(file, 'r');
  } catch (error) {
    if (errorCode(error) === 'ENOENT') return undefined;
    throw error;
  }
  try {
    const { size } = await handle.stat();
    const bytes = Buffer.alloc(Math.max(0, size - offset));
    if (bytes.length > 0) await handle.read(bytes, 0, bytes.length, offset);
    return bytes;
  } finally {
    await handle.close();
  }
}

/**
 * Writes a running stage's log to `out` as it grows, until the stage ends or `signal` aborts, and returns where the
 * log is then. The file moves when the stage ends: into the cache entry (committed) or, copied, to the scratch
 * folder (failed); what was written after the last read is read from there.
 */
export async function followStageLog(store: ArtifactStore, key: string, file: string, out: (text: string) => void, signal?: AbortSignal): Promise<StageLogState> {
  const decoder = new StringDecoder('utf8');
  let offset = 0;
  const take = (bytes: Buffer | undefined) => {
    if (!bytes?.length) return;
    offset += bytes.length;
    const text = decoder.write(bytes);
    if (text) out(text);
  };
  for (;;) {
    const bytes = await readFrom(file, offset);
    take(bytes);
    // Gone, or no longer the file of a live run (committed, failed, or the run was killed): the rest is where it went.
    if (bytes === undefined || store.runningLog(key) !== file) {
      const now = findStageLog(store, key);
      if (now.state === 'computed' || now.state === 'failed') take(await readFrom(now.file, offset));
      const rest = decoder.end();
      if (rest) out(rest);
      return now;
    }
    if (signal?.aborted) return { state: 'running', file };
    await sleep(FOLLOW_MS, undefined, { signal }).catch(() => undefined);
  }
}

/**
 * Writes the log of a Slurm job that no live run follows as it grows, its whole lines without the progress lines the
 * job writes for its runner, until the job writes its result (or a run collects it) or `signal` aborts. Returns
 * whether the job was still going when it stopped.
 */
export async function followJobLog(store: ArtifactStore, key: string, file: string, out: (text: string) => void, signal?: AbortSignal): Promise<{ ended: boolean }> {
  const decoder = new StringDecoder('utf8');
  let offset = 0;
  let partial = '';
  const take = (text: string) => {
    const lines = (partial + text).split('\n');
    partial = lines.pop()!;
    const shown = lines.filter((l) => !l.startsWith(PROGRESS_PREFIX));
    if (shown.length > 0) out(`${shown.join('\n')}\n`);
  };
  for (;;) {
    // Whether it still goes on is asked before the read: what the job wrote before its result is read in full.
    const goesOn = jobGoesOn(store, key);
    const bytes = await readFrom(file, offset);
    if (bytes?.length) {
      offset += bytes.length;
      take(decoder.write(bytes));
    }
    if (!goesOn || signal?.aborted) {
      take(`${decoder.end()}${partial === '' ? '' : '\n'}`);
      return { ended: !goesOn };
    }
    await sleep(FOLLOW_MS, undefined, { signal }).catch(() => undefined);
  }
}

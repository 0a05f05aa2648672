// The Slurm executor: each stale stage becomes one batch job running `pausepipe exec`; jobs left by a killed runner are adopted (by a local run too).
import { existsSync } from 'node:fs';
import { cp, mkdir, rename, rm, writeFile } from 'node:fs/promises';
import { hostname } from 'node:os';
import { errorCode, randomHex } from '../../../cache/durable.ts';
import type { JsonValue } from '../../json.ts';
import {
  JobFiles, NOTICE_PREFIX, parseProgressLine, readRecord, readResult, STOPPED_BY_SIGTERM, writeJsonFile, type JobRecord,
} from '../../job-protocol.ts';
import { jobSettingPlaces, jobSettingsFor, type ExecutorSettings } from '../../settings.ts';
import { Turns, type Turn } from '../../turns.ts';
import type { RunRequest } from '../../worker-protocol.ts';
import type { Executor, StageEvents, StageJob } from '../executor.ts';
import { SlurmClient, type SlurmCommands } from './client.ts';
import { JobQueue } from './job-queue.ts';
import { execCommand, jobComment, jobScript, parseJobComment, sbatchArgs } from './job-script.ts';
import { LogTail } from './log-tail.ts';
import { describeEnd, isFinalState, type JobStatus } from './parse.ts';

export interface SlurmExecutorOptions {
  settings: ExecutorSettings;
  /** The file the settings come from (pausepipe.json or package.json), named when sbatch refuses what they ask for. */
  settingsFile?: string;
  /** `--gpus 0`: ask for no GPUs, whatever the kinds want (they then run on CPUs). */
  noGpus?: boolean;
  /** A line for the person watching the run (a submission, an adoption). */
  note?: (text: string) => void;
  client?: SlurmCommands;
  /**
   * Adopt only, for a run on this machine: a stage whose key has a job an earlier Slurm run left (queued, running, or
   * finished with a result) is followed and collected; any other stage runs through this executor, never submitted.
   */
  otherwise?: Executor;
}

/** After scancel, how long the runner waits for the job to end before it gives up watching (the job still ends). */
const CANCEL_WAIT_MS = 60_000;
/** squeue may fail while the controller restarts or is overloaded; only a failure lasting this long fails the stage. */
const QUEUE_OUTAGE_MS = 10 * 60_000;
/** Node's own words, the kernel's, and slurmstepd's when it kills a job above its --mem. */
const OUT_OF_MEMORY = /heap out of memory|Allocation failed|oom-kill|out of memory|exceeded (job )?memory limit/i;

/** The states of a job on its usual way through the queue; any other live state (held, suspended) is worth a note. */
const ORDINARY_STATES = new Set(['PENDING', 'CONFIGURING', 'RUNNING', 'COMPLETING']);

/** A job of this runner: its Slurm id and the token of its submission. */
interface Submission {
  id: string;
  token: string;
}

function errorText(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

/** Moves the job's finished artifacts into the runner's temp entry (both live in the cache, so a rename). */
async function moveArtifacts(from: string, to: string): Promise<void> {
  await rm(to, { recursive: true, force: true });
  try {
    await rename(from, to);
  } catch (error) {
    if (errorCode(error) !== 'EXDEV') throw error;
    await cp(from, to, { recursive: true });
    await rm(from, { recursive: true, force: true });
  }
}

export function slurmExecutor(o: SlurmExecutorOptions): Executor {
  const client = o.client ?? new SlurmClient();
  // sbatch is called in the order the runner handed the stages over (its scheduler's), not in the order their job
  // files happen to be written: the cluster's queue runs jobs of equal priority first in, first out.
  const submissions = new Turns();
  const queue = new JobQueue(client, o.settings.pollSeconds * 1000);
  const gpuPartitions = new Map<string, Promise<boolean>>();
  const note = o.note ?? (() => undefined);

  /** The GPUs to ask for: the settings' count, else the kind's, unless the partition has none (then CPUs, said once). */
  const gpusFor = async (wanted: number, configured: number | undefined, partition: string | undefined): Promise<number> => {
    if (configured !== undefined) return configured;
    if (wanted === 0) return 0;
    if (o.noGpus) return 0;
    const where = partition ?? '';
    let answer = gpuPartitions.get(where);
    if (answer === undefined) {
      answer = client.partitionHasGpus(partition);
      gpuPartitions.set(where, answer);
      if (!(await answer)) {
        note(`slurm: ${partition ? `partition ${partition}` : 'the default partition'} has no GPUs (sinfo): stages that want one run on CPUs there`);
      }
    }
    return (await answer) ? wanted : 0;
  };

  /**
   * A job an earlier runner submitted for this key, found through the record in the key's scratch folder (and,
   * when that runner died before sbatch answered, through the token in the job's comment): still queued or
   * running, or finished with a result nobody collected.
   */
  const adoptable = async (files: JobFiles, key: string, events: StageEvents, instead: string): Promise<Submission | undefined> => {
    const record = readRecord(files.record);
    if (!record) return undefined;
    let id = record.jobId;
    if (id === undefined) {
      id = (await client.mine()).find((j) => {
        const c = parseJobComment(j.comment);
        return c?.key === key && c.token === record.token;
      })?.id;
      if (id === undefined) return undefined;
    }
    const status = (await client.queue([id])).get(id) ?? (await client.details(id));
    if (status !== undefined && !isFinalState(status.state)) return { id, token: record.token };
    const result = readResult(files.result);
    const collectable = result?.token === record.token && result.status === 'done' && (status === undefined || status.state === 'COMPLETED');
    if (collectable) return { id, token: record.token };
    events.log(`pausepipe: the earlier Slurm job ${id} of this stage ended ${status?.state ?? 'without a result'}; ${instead}`);
    return undefined;
  };

  /**
   * adoptable() for a run on this machine, which asks Slurm nothing unless the key has a job record, and computes the
   * stage here when Slurm cannot be asked. A job that ended without a result is forgotten, so later runs ask no more.
   */
  const adoptableHere = async (files: JobFiles, request: RunRequest, events: StageEvents): Promise<Submission | undefined> => {
    if (!readRecord(files.record)) return undefined;
    let found;
    try {
      found = await adoptable(files, request.key, events, 'running it here');
    } catch (error) {
      const why = `cannot ask Slurm about the job an earlier run submitted for this stage (${errorText(error)}); running it here`;
      events.log(`pausepipe: ${why}`);
      note(`${request.name}: ${why}`);
      return undefined;
    }
    if (!found) await rm(files.dir, { recursive: true, force: true });
    return found;
  };

  const submit = async (job: StageJob, files: JobFiles, events: StageEvents, turn: Turn): Promise<Submission> => {
    const { request, resources } = job;
    const configured = jobSettingsFor(o.settings, { name: request.name, kind: request.kind });
    const gpus = await gpusFor(resources.gpu ?? 0, configured.gpus, configured.partition);
    // A job on CPUs asks for the model's host-memory estimate unless the settings say otherwise: a cluster's default
    // (often a few GB per CPU) would have the job killed part way through instead of placed where it fits.
    const estimatedMem = configured.mem === undefined && gpus === 0 && resources.hostMemoryMiB !== undefined ? `${resources.hostMemoryMiB}M` : undefined;
    const settings = estimatedMem === undefined ? configured : { ...configured, mem: estimatedMem };
    // The previous submission's folder (a failed or cancelled job) goes; the scratch folder's checkpoints stay.
    await rm(files.dir, { recursive: true, force: true });
    await mkdir(files.out, { recursive: true });
    const token = randomHex(8);
    const described: RunRequest = { ...request, outDir: files.out };
    await writeJsonFile(files.description, { token, request: described });
    await writeFile(files.script, jobScript(request.name, request.key, execCommand(files.description)), { mode: 0o755 });
    const record: JobRecord = { token, host: hostname(), pid: process.pid, submittedAt: new Date().toISOString() };
    // Written before sbatch: a runner killed while sbatch runs leaves the token, by which its successor finds the job.
    await writeJsonFile(files.record, record);
    const args = sbatchArgs({
      stage: request.name, comment: jobComment(request.key, token), cpus: settings.cpus ?? Math.max(1, resources.cpu ?? 1), gpus,
      settings, logFile: files.log, workdir: request.workspace,
    }, files.script);
    await turn.ready;
    const id = await client.submit(args).catch((error: unknown) => {
      // sbatch names the value it refuses, not the setting behind it, which may sit in a kind's or a stage's block.
      const places = jobSettingPlaces(o.settings, { name: request.name, kind: request.kind });
      const asked = [
        ...(places.length > 0 ? [`the stage's settings${o.settingsFile ? ` in ${o.settingsFile}` : ''}: ${places.join(', ')}`] : []),
        ...(estimatedMem !== undefined ? [`--mem=${estimatedMem} is the stage's memory estimate; set \`mem\` in the executor settings to ask for another amount`] : []),
      ];
      if (asked.length === 0) throw error;
      throw new Error([errorText(error), ...asked].join('\n'));
    });
    await writeJsonFile(files.record, { ...record, jobId: id });
    // The resource flags only: the job's name, log file and comment follow from the stage and its folder.
    const resourceFlags = args.filter((a) => /^--(cpus-per-task|gres|mem|time|partition|account|qos)=/.test(a));
    events.log(`pausepipe: submitted Slurm job ${id} (${resourceFlags.join(' ')})`);
    note(`submitted ${request.name} as Slurm job ${id}`);
    return { id, token };
  };

  /** Polls until the job has ended; its final status (state UNKNOWN when Slurm has forgotten it). Streams its log meanwhile. */
  const watch = async (name: string, job: Submission, tail: LogTail, events: StageEvents, signal: AbortSignal): Promise<JobStatus> => {
    let last: string | undefined;
    let running = false;
    let preempted = false;
    // What the runner was last told of the job's place: its progress counts a stage's time from when its job runs.
    let told: 'queued' | 'running' = 'queued';
    events.jobState?.('queued');
    const tell = (s: JobStatus) => {
      const ran = s.state === 'RUNNING' || s.state === 'COMPLETING' || (isFinalState(s.state) && s.startedAt !== undefined);
      const place = s.state === 'PENDING' ? 'queued' : ran ? 'running' : told;
      if (place === told) return;
      told = place;
      events.jobState?.(place, place === 'running' ? s.startedAt : undefined);
    };
    let outageSince: number | undefined;
    let cancelledAt: number | undefined;
    for (;;) {
      if (signal.aborted) {
        cancelledAt ??= Date.now();
        if (Date.now() - cancelledAt > CANCEL_WAIT_MS) throw new Error(`interrupted (Slurm job ${job.id} was cancelled but had not ended after ${CANCEL_WAIT_MS / 1000} s)`);
      }
      let status: JobStatus | undefined;
      try {
        status = await queue.next(job.id);
        outageSince = undefined;
      } catch (error) {
        if (outageSince === undefined) {
          outageSince = Date.now();
          events.log(`pausepipe: squeue failed, retrying: ${errorText(error)}`);
        } else if (Date.now() - outageSince > QUEUE_OUTAGE_MS) {
          throw new Error(`cannot follow Slurm job ${job.id}: ${errorText(error)}`);
        }
        continue;
      }
      await tail.read();
      status ??= (await client.details(job.id)) ?? { id: job.id, state: 'UNKNOWN' };
      tell(status);
      const seen = `${status.state}${status.reason ? ` (${status.reason})` : ''}${status.node ? ` on ${status.node}` : ''}`;
      if (seen !== last) {
        events.log(`pausepipe: Slurm job ${job.id} ${seen}`);
        // The person watching hears of what delays a stage beyond queueing: a requeue, a hold, a suspension.
        if (status.state === 'RUNNING') {
          running = true;
        } else if (status.state === 'PENDING' && running) {
          note(`requeued ${name}: Slurm job ${job.id} is ${seen}`);
          running = false;
        } else if (!isFinalState(status.state) && !ORDINARY_STATES.has(status.state)) {
          note(`${name}: Slurm job ${job.id} is ${seen}`);
        }
        last = seen;
      }
      if (status.state === 'UNKNOWN') return status;
      if (!isFinalState(status.state)) {
        preempted = false;
        continue;
      }
      // A job preempted with requeue turns PENDING again: believe PREEMPTED only on a second look.
      if (status.state === 'PREEMPTED' && !preempted) {
        preempted = true;
        continue;
      }
      await tail.read(true);
      // squeue gives no exit code; scontrol (or sacct) does while it still knows the job, and when it started.
      const end = (await client.details(job.id)) ?? status;
      tell(end);
      return end;
    }
  };

  return {
    async run(job, events, signal) {
      const { request } = job;
      const files = new JobFiles(request.scratchDir);
      let outOfMemory = false;
      const tail = new LogTail(files.log, (line) => {
        const p = parseProgressLine(line);
        if (p) {
          events.progress(p);
          return;
        }
        if (line.startsWith(NOTICE_PREFIX)) {
          events.notice(line.slice(NOTICE_PREFIX.length));
          return;
        }
        if (OUT_OF_MEMORY.test(line)) outOfMemory = true;
        events.log(line);
      });
      let submission: Submission | undefined;
      // Taken before anything is awaited, so in the order `run` was called.
      const turn = submissions.take();
      const cancel = () => {
        if (submission) client.cancel([submission.id]).catch((e) => events.log(`pausepipe: ${errorText(e)}`));
      };
      signal.addEventListener('abort', cancel, { once: true });
      try {
        submission = o.otherwise ? await adoptableHere(files, request, events) : await adoptable(files, request.key, events, 'submitting it again');
        if (submission) {
          events.log(`pausepipe: adopting Slurm job ${submission.id}, submitted by an earlier run`);
          note(`adopted ${request.name}: Slurm job ${submission.id}, submitted by an earlier run${o.otherwise ? ` (to compute it here instead: scancel ${submission.id}, then run again)` : ''}`);
          // A run on this machine only waits for it; under Slurm its job still counts against --jobs, as a submitted one does.
          if (o.otherwise) events.releaseSlots?.();
        } else if (o.otherwise) {
          turn.end();
          return await o.otherwise.run(job, events, signal);
        } else {
          signal.throwIfAborted();
          submission = await submit(job, files, events, turn);
        }
        turn.end();
        if (signal.aborted) cancel();
        const end = await watch(request.name, submission, tail, events, signal);
        if (signal.aborted) {
          await rm(files.dir, { recursive: true, force: true });
          throw new Error('interrupted');
        }
        const result = readResult(files.result);
        const ours = result?.token === submission.token ? result : undefined;
        if (ours?.status === 'done' && (end.state === 'COMPLETED' || end.state === 'UNKNOWN')) {
          await moveArtifacts(files.out, request.outDir);
          return ours.metrics as Record<string, JsonValue>;
        }
        const why = end.state === 'UNKNOWN'
          ? `Slurm no longer knows job ${submission.id} and it left no result`
          : describeEnd(end);
        if (end.state === 'COMPLETED') throw new Error(`${why}, but it left no result in ${files.result}`);
        // The stage's own error comes first; when Slurm ended the job (cancelled, out of time, node lost) the stage
        // only saw SIGTERM, and the Slurm state is the whole explanation.
        const own = ours?.status === 'failed' && ours.message !== STOPPED_BY_SIGTERM ? `${ours.message} (${why})` : why;
        // A job that failed without a log could not open it: its node does not see the cache's folder at this path.
        if (end.state === 'FAILED' && !existsSync(files.log)) {
          throw new Error(`${own}; it wrote no log (${files.log}): the node may not see the cache at that path (the cache and the workspace must be on a filesystem every node shares)`);
        }
        throw new Error(`${own}${outOfMemory && end.state !== 'OUT_OF_MEMORY' ? ' (out of memory: raise `mem` in the executor settings)' : ''}`);
      } finally {
        turn.end();
        signal.removeEventListener('abort', cancel);
      }
    },
  };
}


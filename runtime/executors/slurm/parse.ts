// Reading Slurm's answers: `squeue`, `scontrol show job -o` and `sacct` output, and what each job state means for a stage.

/** A job as one of Slurm's commands reports it. */
export interface JobStatus {
  id: string;
  /** JOB_STATE as Slurm spells it, e.g. PENDING, RUNNING, COMPLETED, OUT_OF_MEMORY. */
  state: string;
  /** Why it waits or ended (squeue's %r, scontrol's Reason), when Slurm says. */
  reason?: string;
  /** `code:signal` of the batch script, e.g. `3:0` or `0:9`. */
  exitCode?: string;
  /** Times a requeue or preemption restarted the job. */
  restarts?: number;
  /** The `--comment` it was submitted with (pausepipe puts the key and submission token there). */
  comment?: string;
  /** The node (or nodes, in Slurm's `vm[1-2]` form) it runs or ran on; none while it waits. */
  node?: string;
  /** When it started running (milliseconds since the epoch); none while it waits (Slurm's guess is no start). */
  startedAt?: number;
}

/**
 * The states after which the job never runs again. PREEMPTED is listed although a job preempted with requeue comes
 * back as PENDING: the executor only believes it after a second look (see isSettled).
 */
const FINAL_STATES = new Set([
  'COMPLETED', 'FAILED', 'CANCELLED', 'TIMEOUT', 'OUT_OF_MEMORY', 'NODE_FAIL', 'BOOT_FAIL', 'DEADLINE', 'PREEMPTED', 'REVOKED',
]);

/**
 * The states in which Slurm itself ended the job: the exit code it reports is then only the SIGTERM (143, or signal 15)
 * or SIGKILL that did it, and says nothing the state does not.
 */
const ENDED_BY_SLURM = new Set(['CANCELLED', 'TIMEOUT', 'OUT_OF_MEMORY', 'NODE_FAIL', 'BOOT_FAIL', 'DEADLINE', 'PREEMPTED', 'REVOKED']);

/** The pseudo-signal Slurm reports (exit code `0:53`, reason JobLaunchFailure) for a batch job it could not start on its node. */
const LAUNCH_FAILURE_SIGNAL = 53;

/** What a final state means to a person reading why the stage failed. */
const STATE_MEANING: Record<string, string> = {
  FAILED: 'the job exited with an error',
  CANCELLED: 'the job was cancelled (scancel, or by an administrator)',
  TIMEOUT: 'the job reached its time limit (raise `time` in the executor settings)',
  OUT_OF_MEMORY: 'the job ran out of memory (raise `mem` in the executor settings)',
  NODE_FAIL: 'the node running the job failed',
  BOOT_FAIL: 'the node could not boot for the job',
  DEADLINE: 'the job reached its deadline',
  PREEMPTED: 'the job was preempted and not requeued',
  REVOKED: 'the job was revoked (federation)',
};

export function isFinalState(state: string): boolean {
  return FINAL_STATES.has(state);
}

export function stateMeaning(state: string): string | undefined {
  return STATE_MEANING[state];
}

/** Slurm prints "(null)", "None" or (sacct, for a job not placed yet) "None assigned" where a field has no value. */
function present(value: string | undefined): string | undefined {
  return value === undefined || value === '' || value === '(null)' || value === 'None' || value === 'None assigned' ? undefined : value;
}

/**
 * A start time as Slurm prints it (`2025-03-01T14:05:09`, in the local time of the command that prints it, so read as
 * local time here); undefined for a job that has not started (PENDING: Slurm's estimate) or no time (`Unknown`, `N/A`).
 */
function startTime(state: string, value: string | undefined): number | undefined {
  if (state === 'PENDING' || value === undefined || !/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d$/.test(value)) return undefined;
  const ms = new Date(value).getTime();
  return Number.isNaN(ms) ? undefined : ms;
}

/** The field list pausepipe passes to `squeue -o`: id, state, reason, nodes, start time, comment, separated by `|`. */
export const SQUEUE_FORMAT = '%i|%T|%r|%N|%S|%k';

/**
 * `squeue -h -o '%i|%T|%r|%N|%S|%k'` lines. The comment is last, so a `|` inside it stays part of it; lines that do
 * not have the six fields (a warning Slurm printed on stdout) are skipped.
 */
export function parseSqueue(text: string): JobStatus[] {
  const jobs: JobStatus[] = [];
  for (const line of text.split('\n')) {
    const fields = line.trim().split('|');
    if (fields.length < 6 || !/^\d+$/.test(fields[0]!) || !/^[A-Z_]+$/.test(fields[1]!)) continue;
    const [id, state, reason, node, start, ...comment] = fields;
    const c = present(comment.join('|'));
    const r = present(reason);
    const n = present(node);
    const at = startTime(state!, start);
    jobs.push({
      id: id!, state: state!,
      ...(r === undefined ? {} : { reason: r }), ...(c === undefined ? {} : { comment: c }), ...(n === undefined ? {} : { node: n }),
      ...(at === undefined ? {} : { startedAt: at }),
    });
  }
  return jobs;
}

/**
 * `KEY=VALUE KEY=VALUE ...` of `scontrol show job -o` (one line per job). A value may hold spaces (a job name, a
 * command line), so a value runs to the next ` Key=` whose key is a known field name shape.
 */
export function parseScontrolFields(line: string): Map<string, string> {
  const fields = new Map<string, string>();
  const keyPattern = /(?:^|\s)([A-Z][A-Za-z/:_]*)=/g;
  const starts: { key: string; valueStart: number; keyStart: number }[] = [];
  for (let m = keyPattern.exec(line); m !== null; m = keyPattern.exec(line)) {
    starts.push({ key: m[1]!, valueStart: m.index + m[0].length, keyStart: m.index });
  }
  for (const [i, s] of starts.entries()) {
    const end = i + 1 < starts.length ? starts[i + 1]!.keyStart : line.length;
    if (!fields.has(s.key)) fields.set(s.key, line.slice(s.valueStart, end).trim());
  }
  return fields;
}

/** The jobs of `scontrol show job -o ID...` output. */
export function parseScontrolJobs(text: string): JobStatus[] {
  const jobs: JobStatus[] = [];
  for (const line of text.split('\n')) {
    if (!line.startsWith('JobId=')) continue;
    const f = parseScontrolFields(line);
    const id = f.get('JobId');
    const state = f.get('JobState');
    if (id === undefined || state === undefined) continue;
    const reason = present(f.get('Reason'));
    const exitCode = present(f.get('ExitCode'));
    const comment = present(f.get('Comment'));
    const node = present(f.get('NodeList'));
    const at = startTime(state, f.get('StartTime'));
    const restarts = Number(f.get('Restarts'));
    jobs.push({
      id, state,
      ...(reason === undefined ? {} : { reason }),
      ...(exitCode === undefined ? {} : { exitCode }),
      ...(Number.isInteger(restarts) ? { restarts } : {}),
      ...(comment === undefined ? {} : { comment }),
      ...(node === undefined ? {} : { node }),
      ...(at === undefined ? {} : { startedAt: at }),
    });
  }
  return jobs;
}

/** The field list pausepipe passes to `sacct -o`. */
export const SACCT_FORMAT = 'JobIDRaw,State,ExitCode,NodeList';

/**
 * `sacct -n -P -X -o JobIDRaw,State,ExitCode,NodeList` lines. A requeued job has one line per run; the last one counts.
 * States like `CANCELLED by 0` are cut to their first word.
 */
export function parseSacct(text: string): JobStatus[] {
  const byId = new Map<string, JobStatus>();
  for (const line of text.split('\n')) {
    const [id, state, exitCode, node] = line.trim().split('|');
    if (id === undefined || !/^\d+$/.test(id) || state === undefined) continue;
    const word = state.split(' ')[0]!;
    if (!/^[A-Z_]+$/.test(word)) continue;
    const code = present(exitCode);
    const n = present(node);
    byId.set(id, { id, state: word, ...(code === undefined ? {} : { exitCode: code }), ...(n === undefined ? {} : { node: n }) });
  }
  return [...byId.values()];
}

/** `sbatch --parsable` prints `ID` or `ID;CLUSTER`. */
export function parseSbatch(text: string): string | undefined {
  const first = text.trim().split('\n').at(-1)?.split(';')[0]?.trim();
  return first !== undefined && /^\d+$/.test(first) ? first : undefined;
}

/**
 * One sentence for a failed stage: the state and the node, what the state means, the exit code where the job's own
 * process chose it, and Slurm's reason. A job Slurm could not even start says so instead of its pseudo-signal.
 */
export function describeEnd(job: JobStatus): string {
  const head = `Slurm job ${job.id} ended ${job.state}${job.node === undefined ? '' : ` on ${job.node}`}`;
  const [code, signal] = (job.exitCode ?? '0:0').split(':').map(Number);
  if (job.reason === 'JobLaunchFailure' || (job.state === 'FAILED' && signal === LAUNCH_FAILURE_SIGNAL)) {
    return `${head}: Slurm could not start the job on its node (JobLaunchFailure)`;
  }
  const extra: string[] = [];
  const meaning = stateMeaning(job.state);
  if (meaning) extra.push(meaning);
  if (!ENDED_BY_SLURM.has(job.state)) {
    // Slurm puts pseudo-signals above 64 there (125 for out of memory): the state already says what happened.
    if (signal !== undefined && signal > 0 && signal <= 64) extra.push(`killed by signal ${signal}`);
    else if (code !== undefined && code > 0) extra.push(`exit code ${code}`);
  }
  if (job.reason !== undefined && job.reason !== 'NonZeroExitCode') extra.push(`reason ${job.reason}`);
  return extra.length > 0 ? `${head}: ${extra.join('; ')}` : head;
}

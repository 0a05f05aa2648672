// A stand-in for Slurm's commands: records what was submitted and answers squeue from a scripted life of each job.
import { writeFileSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import type { SlurmCommands } from '../../runtime/executors/slurm/client.ts';
import { parseJobComment } from '../../runtime/executors/slurm/job-script.ts';
import type { JobStatus } from '../../runtime/executors/slurm/parse.ts';
import type { StageJob } from '../../runtime/executors/executor.ts';

interface FakeJob {
  id: string;
  name: string;
  /** The states squeue reports at its next looks; the last one stays. */
  life: string[];
}

export interface FakeSlurmOptions {
  /** The states each job goes through, one per look at the queue (default: COMPLETED at the first look). */
  life?: (name: string) => string[];
  /** sinfo's answer: whether the default partition has GPUs (default: it has). */
  gpus?: Promise<boolean>;
  /** The node every job runs on. */
  node?: string;
  /** sbatch refuses every submission with this message (as sbatch's stderr). */
  refuse?: string;
  /** When every job started, as squeue and scontrol say once it has (milliseconds since the epoch). */
  startedAt?: number;
}

/**
 * Each submitted job "runs" at once: its result.json (done, no metrics) is written beside its script when sbatch is
 * called, and squeue then walks through its life.
 */
export class FakeSlurm implements SlurmCommands {
  /** Job names in the order sbatch got them. */
  readonly submitted: string[] = [];
  /** The resource flags of each submission, by job name (`--mem=4608M`, …). */
  readonly flags = new Map<string, string[]>();
  private readonly jobs = new Map<string, FakeJob>();
  private lastId = 100;

  constructor(private readonly o: FakeSlurmOptions = {}) {}

  /** A job as an earlier runner left it (adopted, not submitted), with its life from now on. */
  existing(name: string, life: string[]): string {
    const id = String(++this.lastId);
    this.jobs.set(id, { id, name, life: [...life] });
    return id;
  }

  async submit(args: string[]): Promise<string> {
    const flag = (name: string) => args.find((a) => a.startsWith(`--${name}=`))?.slice(name.length + 3);
    const name = flag('job-name')!;
    if (this.o.refuse !== undefined) throw new Error(this.o.refuse);
    this.submitted.push(name);
    this.flags.set(name, args.filter((a) => /^--(cpus-per-task|gres|mem)=/.test(a)));
    const token = parseJobComment(flag('comment'))!.token;
    writeFileSync(path.join(path.dirname(args.at(-1)!), 'result.json'), JSON.stringify({ token, status: 'done', metrics: {} }));
    return this.existing(name, this.o.life?.(name) ?? ['COMPLETED']);
  }

  async queue(ids: string[]): Promise<Map<string, JobStatus>> {
    const out = new Map<string, JobStatus>();
    for (const id of ids) {
      const job = this.jobs.get(id);
      if (!job) continue;
      const state = job.life.length > 1 ? job.life.shift()! : job.life[0]!;
      out.set(id, this.status(job, state));
    }
    return out;
  }

  async mine(): Promise<JobStatus[]> {
    return [];
  }

  async details(id: string): Promise<JobStatus | undefined> {
    const job = this.jobs.get(id);
    return job && { ...this.status(job, job.life[0]!), exitCode: '0:0' };
  }

  async cancel(): Promise<void> {}

  partitionHasGpus(): Promise<boolean> {
    return this.o.gpus ?? Promise.resolve(true);
  }

  private status(job: FakeJob, state: string): JobStatus {
    const started = state !== 'PENDING';
    return {
      id: job.id, state,
      ...(started && this.o.node !== undefined ? { node: this.o.node } : {}),
      ...(started && this.o.startedAt !== undefined ? { startedAt: this.o.startedAt } : {}),
    };
  }
}

/** A stage job of kind `sh` with its folders under `root`, as the runner hands it to an executor. */
export async function fakeJob(root: string, name: string, resources: StageJob['resources'] = { cpu: 1 }): Promise<StageJob> {
  const key = Buffer.from(name).toString('hex').padEnd(64, '0');
  const scratchDir = path.join(root, 'scratch', key);
  const outDir = path.join(root, 'tmp', key, 'artifacts');
  await mkdir(scratchDir, { recursive: true });
  await mkdir(outDir, { recursive: true });
  return {
    request: {
      type: 'run', name, key, kind: 'sh', params: {}, variant: {}, inputs: {}, outDir, scratchDir, workspace: root,
      run: { pipeline: 'p.pipe', overrides: {} },
    },
    resources,
  };
}

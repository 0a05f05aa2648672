// Slurm's command-line clients as the executor calls them: sbatch, squeue, scontrol, sacct (where accounting exists), scancel, sinfo.
import { execFile } from 'node:child_process';
import { userInfo } from 'node:os';
import {
  parseSacct, parseSbatch, parseScontrolJobs, parseSqueue, SACCT_FORMAT, SQUEUE_FORMAT, type JobStatus,
} from './parse.ts';

/** A Slurm client that hangs (an overloaded controller) must not hang the runner. */
const COMMAND_TIMEOUT_MS = 60_000;

interface CommandResult {
  code: number;
  stdout: string;
  stderr: string;
}

function runCommand(file: string, args: string[]): Promise<CommandResult> {
  return new Promise((resolve, reject) => {
    execFile(file, args, { timeout: COMMAND_TIMEOUT_MS, maxBuffer: 64 * 1024 * 1024 }, (error, stdout, stderr) => {
      if (error && (error as NodeJS.ErrnoException).code === 'ENOENT') {
        reject(new Error(`\`${file}\` is not installed here: the Slurm executor needs Slurm's client commands on the PATH`));
        return;
      }
      const code = error ? (typeof error.code === 'number' ? error.code : 1) : 0;
      resolve({ code, stdout, stderr: stderr.trim() });
    });
  });
}

/** squeue and scontrol say this for a job the controller has already forgotten; it is an answer, not a failure. */
const UNKNOWN_JOB = /Invalid job id specified/i;

export class SlurmClient {
  /** Undefined until the first sacct call says whether this cluster keeps accounting. */
  private accounting: boolean | undefined;

  /** `slurm 22.05.8`: also how a run learns early that this machine has no Slurm commands (an Error that says so). */
  async version(): Promise<string> {
    const r = await runCommand('sbatch', ['--version']);
    if (r.code !== 0) throw new Error(`sbatch --version failed: ${r.stderr || `exit code ${r.code}`}`);
    return r.stdout.trim();
  }

  /** Submits; the job id. A refusal (bad partition, unknown account) is an Error with sbatch's own words. */
  async submit(args: string[]): Promise<string> {
    const r = await runCommand('sbatch', args);
    const id = r.code === 0 ? parseSbatch(r.stdout) : undefined;
    if (id === undefined) throw new Error(`sbatch refused the job: ${r.stderr || r.stdout.trim() || `exit code ${r.code}`}`);
    return id;
  }

  /** The jobs among `ids` that squeue still lists (running, queued, or finished within MinJobAge). */
  async queue(ids: string[]): Promise<Map<string, JobStatus>> {
    if (ids.length === 0) return new Map();
    const r = await runCommand('squeue', ['-h', '--states=all', `--jobs=${ids.join(',')}`, `--format=${SQUEUE_FORMAT}`]);
    if (r.code !== 0 && !UNKNOWN_JOB.test(r.stderr)) throw new Error(`squeue failed: ${r.stderr || `exit code ${r.code}`}`);
    return new Map(parseSqueue(r.stdout).map((j) => [j.id, j]));
  }

  /** Every job of this user that squeue lists, with its comment (how a restarted runner finds its submissions). */
  async mine(): Promise<JobStatus[]> {
    const r = await runCommand('squeue', ['-h', '--states=all', `--user=${userInfo().username}`, `--format=${SQUEUE_FORMAT}`]);
    if (r.code !== 0) throw new Error(`squeue failed: ${r.stderr || `exit code ${r.code}`}`);
    return parseSqueue(r.stdout);
  }

  /**
   * The most Slurm still knows of one job: `scontrol show job` (state, reason, exit code, restarts) while the
   * controller remembers it, else `sacct` where the cluster keeps accounting; undefined when neither knows it.
   */
  async details(id: string): Promise<JobStatus | undefined> {
    const r = await runCommand('scontrol', ['show', 'job', '-o', id]);
    if (r.code === 0) {
      const job = parseScontrolJobs(r.stdout).find((j) => j.id === id);
      if (job) return job;
    } else if (!UNKNOWN_JOB.test(r.stderr)) {
      throw new Error(`scontrol show job ${id} failed: ${r.stderr || `exit code ${r.code}`}`);
    }
    if (this.accounting === false) return undefined;
    const s = await runCommand('sacct', ['-n', '-P', '-X', `--jobs=${id}`, `--format=${SACCT_FORMAT}`]);
    if (s.code !== 0) {
      // "Slurm accounting storage is disabled": ask no more in this run.
      this.accounting = false;
      return undefined;
    }
    this.accounting = true;
    return parseSacct(s.stdout).find((j) => j.id === id);
  }

  async cancel(ids: string[]): Promise<void> {
    if (ids.length === 0) return;
    const r = await runCommand('scancel', ids);
    // A job that has just ended cannot be cancelled, and that is what we wanted.
    if (r.code !== 0 && !UNKNOWN_JOB.test(r.stderr) && !/already completing or completed/i.test(r.stderr)) {
      throw new Error(`scancel ${ids.join(' ')} failed: ${r.stderr || `exit code ${r.code}`}`);
    }
  }

  /** Whether any node of the partitions (comma-separated; the cluster's default when undefined) offers GPUs as a generic resource. */
  async partitionHasGpus(partition: string | undefined): Promise<boolean> {
    const r = await runCommand('sinfo', ['-h', '--format=%P|%G']);
    if (r.code !== 0) throw new Error(`sinfo failed: ${r.stderr || `exit code ${r.code}`}`);
    const rows = r.stdout.split('\n').filter((l) => l.includes('|')).map((l) => {
      const [name, gres] = l.trim().split('|');
      // sinfo marks the default partition with a trailing `*`.
      return { name: name!.replace(/\*$/, ''), isDefault: name!.endsWith('*'), gres: gres ?? '' };
    });
    const wanted = partition?.split(',');
    return rows.some((row) => (wanted ? wanted.includes(row.name) : row.isDefault) && /(^|,)gpu[:(]/.test(row.gres));
  }
}

/** What the executor asks of Slurm: the client above, or a stand-in in tests. */
export type SlurmCommands = Pick<SlurmClient, 'submit' | 'queue' | 'mine' | 'details' | 'cancel' | 'partitionHasGpus'>;

// Tests against a real Slurm (the one-node cluster of .ci/slurm-cluster.sh): whether one answers, and the jobs it ran.
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import type { Test } from 'uvu';
import { parseScontrolFields } from '../../runtime/executors/slurm/parse.ts';
import { requires } from './requires.ts';

function slurmAnswers(): boolean {
  try {
    const states = execFileSync('sinfo', ['-h', '--format=%t'], { timeout: 10_000, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
    return /\b(idle|mix|alloc)/.test(states);
  } catch {
    return false;
  }
}

export const SLURM_UP = slurmAnswers();

/** For tests that submit jobs; CI starts the cluster (.ci/run) and fails without it. */
export function withSlurm<T>(test: Test<T>): Test<T> | Test<T>['skip'] {
  if (!SLURM_UP && process.env.CI === 'true') throw new Error('no Slurm cluster answers: CI must start one (bash .ci/slurm-cluster.sh start, as root)');
  return requires(SLURM_UP, 'no Slurm cluster answers (start the test cluster as root: bash .ci/slurm-cluster.sh start)', test);
}

/** The job completion log of the cluster (JobCompLoc of `scontrol show config`). */
function jobCompLog(): string {
  const config = execFileSync('scontrol', ['show', 'config'], { encoding: 'utf8' });
  const loc = /^JobCompLoc\s*=\s*(\S+)/m.exec(config)?.[1];
  if (loc === undefined) throw new Error('the cluster has no JobCompLoc: start it with .ci/slurm-cluster.sh');
  return loc;
}

export interface FinishedJob {
  id: number;
  name: string;
  /** JobState of the line: the final state, or PENDING for a requeue (which writes a line too). */
  state: string;
}

/** Every line of the job completion log: one per finished (or requeued) job. */
export function finishedJobs(): FinishedJob[] {
  const text = readFileSync(jobCompLog(), 'utf8');
  return text.split('\n').filter((l) => l.startsWith('JobId=')).map((line) => {
    const f = parseScontrolFields(line);
    return { id: Number(f.get('JobId')), name: f.get('Name') ?? '', state: f.get('JobState') ?? '' };
  });
}

/** The highest job id Slurm has handed out so far (finished or not): jobs of a test are the ones above it. */
export function lastJobId(): number {
  const queued = execFileSync('squeue', ['-h', '--states=all', '--format=%i'], { encoding: 'utf8' }).split('\n').map(Number);
  return Math.max(0, ...queued.filter(Number.isFinite), ...finishedJobs().map((j) => j.id));
}

/** The job ids per job name among the jobs above `since` in the completion log (a requeued job's id appears once). */
export function jobsByName(since: number): Record<string, number[]> {
  const out: Record<string, number[]> = {};
  for (const j of finishedJobs()) {
    if (j.id <= since) continue;
    const ids = (out[j.name] ??= []);
    if (!ids.includes(j.id)) ids.push(j.id);
  }
  return out;
}

/** Cancels the jobs whose working folder is under `dir`: what a failed test left queued or running. */
export function cancelJobsUnder(dir: string): void {
  const rows = execFileSync('squeue', ['-h', '--format=%i|%Z'], { encoding: 'utf8' }).split('\n').map((l) => l.trim().split('|'));
  const ids = rows.filter(([id, workdir]) => id && workdir && (workdir === dir || workdir.startsWith(`${dir}/`))).map(([id]) => id!);
  if (ids.length > 0) execFileSync('scancel', ids);
}

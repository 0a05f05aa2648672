// One stage as one Slurm job: the `sbatch` flags (resources from the kind and the settings) and the batch script.
import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { SlurmJobSettings } from '../../settings.ts';

export interface JobSpec {
  /** Generated stage name; becomes the job name. */
  stage: string;
  /** `--comment`: how a restarted runner recognises the job (see jobComment). */
  comment: string;
  /** CPUs of the task (`--cpus-per-task`). */
  cpus: number;
  /** GPUs (`--gres=gpu:N`); 0 asks for none. */
  gpus: number;
  /** Partition, account, QOS, time, memory and extra flags of this stage (runtime/settings.ts). */
  settings: SlurmJobSettings;
  /** The job's stdout and stderr, appended to across requeues. */
  logFile: string;
  /** Working folder of the job: the workspace, where relative paths in params resolve. */
  workdir: string;
}

/** `pausepipe:<key>:<token>`: the key names the work, the token the one submission a runner made for it. */
export function jobComment(key: string, token: string): string {
  return `pausepipe:${key}:${token}`;
}

/** The key and token of a comment written by jobComment, or undefined for any other job. */
export function parseJobComment(comment: string | undefined): { key: string; token: string } | undefined {
  const m = /^pausepipe:([0-9a-f]+):([0-9a-f]+)$/.exec(comment?.trim() ?? '');
  return m ? { key: m[1]!, token: m[2]! } : undefined;
}

/** Slurm splits job names nowhere, but squeue's columns and people's shells read better without blanks. */
export function jobName(stage: string): string {
  return stage.replace(/\s+/g, '_');
}

/** The arguments of `sbatch` for one stage, the script file last. Flags are arguments, never #SBATCH lines, so nothing needs quoting. */
export function sbatchArgs(spec: JobSpec, script: string): string[] {
  const s = spec.settings;
  const args = [
    '--parsable',
    `--job-name=${jobName(spec.stage)}`,
    `--comment=${spec.comment}`,
    `--output=${spec.logFile}`,
    // A requeued job (preemption, node failure) appends to the log the runner is reading, rather than truncating it.
    '--open-mode=append',
    `--chdir=${spec.workdir}`,
    '--requeue',
    '--nodes=1',
    '--ntasks=1',
    `--cpus-per-task=${spec.cpus}`,
  ];
  if (spec.gpus > 0) args.push(`--gres=gpu:${spec.gpus}`);
  if (s.mem !== undefined) args.push(`--mem=${s.mem}`);
  if (s.time !== undefined) args.push(`--time=${s.time}`);
  if (s.partition !== undefined) args.push(`--partition=${s.partition}`);
  if (s.account !== undefined) args.push(`--account=${s.account}`);
  if (s.qos !== undefined) args.push(`--qos=${s.qos}`);
  args.push(...(s.sbatch ?? []), script);
  return args;
}

function shellQuote(arg: string): string {
  return /^[A-Za-z0-9_./:=@%+-]+$/.test(arg) ? arg : `'${arg.replace(/'/g, `'\\''`)}'`;
}

/** The batch script: one `exec` of the command, so Slurm's signals (cancel, time limit, preemption) reach it directly. */
export function jobScript(stage: string, key: string, command: string[]): string {
  return [
    '#!/bin/sh',
    `# pausepipe: stage ${stage.replace(/\n/g, ' ')}, key ${key}`,
    `exec ${command.map(shellQuote).join(' ')}`,
    '',
  ].join('\n');
}

/** The project folder holding bin/pausepipe.js, found from this module in the sources or in dist/. */
function projectRoot(): string {
  for (let dir = path.dirname(fileURLToPath(import.meta.url)); ; dir = path.dirname(dir)) {
    if (existsSync(path.join(dir, 'bin', 'pausepipe.js'))) return dir;
    if (path.dirname(dir) === dir) throw new Error('cannot find bin/pausepipe.js above the pausepipe sources');
  }
}

/**
 * `pausepipe exec FILE` as the job runs it: this Node.js and this installation of pausepipe, which the compute nodes
 * must reach at the same paths (a shared filesystem, like the cache).
 */
export function execCommand(descriptionFile: string): string[] {
  return [process.execPath, path.join(projectRoot(), 'bin', 'pausepipe.js'), 'exec', descriptionFile];
}

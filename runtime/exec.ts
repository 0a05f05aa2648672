// `pausepipe exec FILE`: runs one stage from a job description, as a Slurm job does on a compute node.
import { mkdir, rm } from 'node:fs/promises';
import type { HeldLock } from '../cache/lock.ts';
import { ArtifactStore } from '../cache/store.ts';
import type { Progress, StageContext, StageKind } from '../stages/kind.ts';
import { gpuEnvironment } from './gpus.ts';
import { loadKinds } from './kinds.ts';
import { runStageKind } from './run-kind.ts';
import { noticeLine, progressLine, readDescription, resultFileOf, STOPPED_BY_SIGTERM, writeJsonFile, type JobResult } from './job-protocol.ts';

/** Progress lines are written at most this often (plus the last step): the runner reads them from a shared log. */
const PROGRESS_INTERVAL_MS = 1000;

/**
 * The GPUs Slurm gave this job (`--gres=gpu:N`), as its CUDA_VISIBLE_DEVICES lists them; undefined outside a Slurm
 * job or without GPUs. The stage then gets them as a local worker gets the GPUs its runner gave it.
 */
export function slurmJobGpus(env: NodeJS.ProcessEnv): string[] | undefined {
  if (env.SLURM_JOB_ID === undefined || env.CUDA_VISIBLE_DEVICES === undefined) return undefined;
  const ids = env.CUDA_VISIBLE_DEVICES.split(',').map((d) => d.trim()).filter((d) => d !== '' && d !== '-1');
  return ids.length > 0 ? ids : undefined;
}

/**
 * Registers the job's key as in use for as long as the job runs (a lease, renewed from this node), so a gc keeps its
 * scratch folder even when the runner that submitted it has died. Best effort: a job that cannot register still runs.
 */
async function registerUse(scratchDir: string, out: (line: string) => void): Promise<HeldLock | undefined> {
  const place = ArtifactStore.ofScratchDir(scratchDir);
  if (!place) return undefined;
  try {
    return await place.store.registerUse([place.key]);
  } catch (error) {
    out(`pausepipe exec: could not register the key as in use, so a gc may remove this job's folder: ${(error as Error).message}`);
    return undefined;
  }
}

/**
 * Runs the described stage in this process and writes result.json beside the description. Log lines and
 * progress lines go to `out` (the job's log, which the runner reads). SIGTERM (scancel, the time limit, a
 * preemption) aborts the stage; a requeued job starts again from an empty out folder, and a training finds its
 * checkpoints in the scratch folder, which the description names. Returns the exit code.
 */
export async function execJob(descriptionFile: string, out: (line: string) => void): Promise<number> {
  const { token, request } = readDescription(descriptionFile);
  const resultFile = resultFileOf(descriptionFile);
  const finish = async (result: JobResult, code: number) => {
    await writeJsonFile(resultFile, result);
    return code;
  };
  await rm(resultFile, { force: true });
  // A requeued job must not mistake the first attempt's half-written artifacts for its own.
  await rm(request.outDir, { recursive: true, force: true });
  await mkdir(request.outDir, { recursive: true });

  const controller = new AbortController();
  const onSignal = (signal: NodeJS.Signals) => {
    out(`pausepipe exec: ${signal} received (cancelled, out of time or preempted): stopping the stage`);
    controller.abort();
  };
  process.on('SIGTERM', onSignal);
  const use = await registerUse(request.scratchDir, out);
  let lastProgress = 0;
  let kind: StageKind | undefined;
  try {
    const kinds = await loadKinds();
    kind = kinds[request.kind];
    if (!kind) return await finish({ token, status: 'failed', message: `unknown stage kind \`${request.kind}\` on this node (is PAUSEPIPE_KINDS the same as the runner's?)` }, 1);
    const { type: _type, kind: _kind, ...data } = request;
    const gpus = slurmJobGpus(process.env);
    if (gpus) Object.assign(process.env, gpuEnvironment(gpus));
    const ctx: StageContext = {
      ...data,
      ...(gpus ? { gpus } : {}),
      signal: controller.signal,
      log: out,
      notice: (line) => out(noticeLine(line)),
      progress: (p: Progress) => {
        const now = Date.now();
        if (now - lastProgress < PROGRESS_INTERVAL_MS && p.step !== p.total) return;
        lastProgress = now;
        out(progressLine(p));
      },
    };
    const result = await runStageKind(kind, ctx);
    if (controller.signal.aborted) return await finish({ token, status: 'failed', message: STOPPED_BY_SIGTERM }, 143);
    return await finish({ token, status: 'done', metrics: result.metrics ?? {} }, 0);
  } catch (error) {
    // As on this machine: a worker's log keeps the stack, an in-process kind's (sh) only its message, so the log's
    // tail shows the command's last lines rather than the runner's frames.
    if (kind?.isolated !== false && error instanceof Error && error.stack) out(error.stack);
    const message = controller.signal.aborted ? STOPPED_BY_SIGTERM : error instanceof Error ? error.message : String(error);
    return await finish({ token, status: 'failed', message }, controller.signal.aborted ? 143 : 1);
  } finally {
    process.off('SIGTERM', onSignal);
    await use?.release();
  }
}

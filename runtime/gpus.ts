// This machine's GPUs: how many, how much memory each has, and the environment that pins a process to some of them.
import { execFile } from 'node:child_process';

function nvidiaSmi(args: string[]): Promise<string | undefined> {
  return new Promise((resolve) => {
    execFile('nvidia-smi', args, { timeout: 5000 }, (error, stdout) => resolve(error ? undefined : stdout));
  });
}

/** The entries of CUDA_VISIBLE_DEVICES (indices or UUIDs), or undefined when it is not set. */
function visibleDevices(env: NodeJS.ProcessEnv): string[] | undefined {
  const visible = env.CUDA_VISIBLE_DEVICES;
  if (visible === undefined) return undefined;
  return visible.split(',').map((d) => d.trim()).filter((d) => d !== '' && d !== '-1');
}

/**
 * CUDA_VISIBLE_DEVICES when set (the user's or a scheduler's restriction), else the GPUs `nvidia-smi -L` lists,
 * else 0 (stages that want a GPU then take a CPU slot and their kind picks its backend).
 */
export async function detectGpus(env: NodeJS.ProcessEnv = process.env): Promise<number> {
  const visible = visibleDevices(env);
  if (visible !== undefined) return visible.length;
  const out = await nvidiaSmi(['-L']);
  return out === undefined ? 0 : out.split('\n').filter((l) => /^GPU \d+/.test(l)).length;
}

/** PAUSEPIPE_GPU_MEMORY_MIB: the memory of each GPU in MiB, set by hand; undefined when unset, an error when not a whole number. */
export function gpuMemoryOverride(env: NodeJS.ProcessEnv = process.env): number | undefined {
  const given = env.PAUSEPIPE_GPU_MEMORY_MIB?.trim();
  if (!given) return undefined;
  if (!/^[1-9]\d*$/.test(given)) throw new Error(`PAUSEPIPE_GPU_MEMORY_MIB must be a whole number of MiB, got '${given}'`);
  return Number(given);
}

/**
 * The memory of each GPU in MiB: PAUSEPIPE_GPU_MEMORY_MIB when set (GPUs nvidia-smi does not know, or to leave
 * headroom), else the smallest GPU's as `nvidia-smi` reports it, else undefined.
 */
export async function detectGpuMemoryMiB(env: NodeJS.ProcessEnv = process.env): Promise<number | undefined> {
  return gpuMemoryOverride(env) ?? nvidiaSmiMemoryMiB();
}

/** The smallest GPU's memory in MiB as `nvidia-smi` reports it, or undefined without nvidia-smi. */
export async function nvidiaSmiMemoryMiB(): Promise<number | undefined> {
  const out = await nvidiaSmi(['--query-gpu=memory.total', '--format=csv,noheader,nounits']);
  const sizes = (out ?? '').split('\n').map((l) => Number(l.trim())).filter((n) => Number.isFinite(n) && n > 0);
  return sizes.length > 0 ? Math.min(...sizes) : undefined;
}

/**
 * Why `--gpus count` cannot be kept within the runner's own CUDA_VISIBLE_DEVICES (it lists fewer GPUs: slots past
 * its end would land on GPUs it leaves out, or two slots on one GPU), or undefined when it can.
 */
export function gpuCountError(count: number, env: NodeJS.ProcessEnv = process.env): string | undefined {
  const visible = visibleDevices(env);
  if (visible === undefined || count <= visible.length) return undefined;
  const has = visible.length === 0 ? 'no GPU' : visible.length === 1 ? '1 GPU' : `${visible.length} GPUs`;
  return `--gpus ${count}, but CUDA_VISIBLE_DEVICES='${env.CUDA_VISIBLE_DEVICES}' leaves ${has} to this run: ` +
    `give --gpus ${visible.length}${visible.length > 0 ? ' or fewer (--stages-per-gpu N runs N stages on each)' : ''}, or widen CUDA_VISIBLE_DEVICES`;
}

/**
 * The device ids of the runner's GPU slots 0..count-1: the entries of its own CUDA_VISIBLE_DEVICES when set (so a
 * restriction is kept; an error when it lists fewer than count, see gpuCountError), else the indices themselves
 * (nvidia-smi's order).
 */
export function gpuDeviceIds(count: number, env: NodeJS.ProcessEnv = process.env): string[] {
  const wrong = gpuCountError(count, env);
  if (wrong !== undefined) throw new Error(wrong);
  const visible = visibleDevices(env);
  return Array.from({ length: count }, (_, i) => visible?.[i] ?? String(i));
}

/** PAUSEPIPE_GPU's value for a process given no GPU. */
export const NO_GPU = 'none';

/**
 * What pins a process to the given GPUs: CUDA_VISIBLE_DEVICES for CUDA (tfjs-node-gpu), PAUSEPIPE_GPU (the first
 * one) for the WebGPU backend's adapter choice, and growth-on-demand so TensorFlow does not take the whole GPU
 * from the stages sharing it.
 */
export function gpuEnvironment(ids: string[]): Record<string, string> {
  // No ids (`--gpus 0`): CUDA shows no device, and PAUSEPIPE_GPU=none keeps the WebGPU backend off every adapter.
  if (ids.length === 0) return { CUDA_VISIBLE_DEVICES: '', PAUSEPIPE_GPU: NO_GPU };
  return { CUDA_VISIBLE_DEVICES: ids.join(','), PAUSEPIPE_GPU: ids[0]!, TF_FORCE_GPU_ALLOW_GROWTH: 'true' };
}

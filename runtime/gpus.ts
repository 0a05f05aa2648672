// How many GPU slots this machine offers when `--gpus` is not given.
import { execFile } from 'node:child_process';

/**
 * CUDA_VISIBLE_DEVICES when set (the user's or a scheduler's restriction), else the GPUs `nvidia-smi -L` lists,
 * else 0 (stages that want a GPU then take a CPU slot and their kind picks its backend).
 */
export async function detectGpus(env: NodeJS.ProcessEnv = process.env): Promise<number> {
  const visible = env.CUDA_VISIBLE_DEVICES;
  if (visible !== undefined) return visible.split(',').filter((d) => d.trim() !== '' && d.trim() !== '-1').length;
  return new Promise((resolve) => {
    execFile('nvidia-smi', ['-L'], { timeout: 5000 }, (error, stdout) => {
      resolve(error ? 0 : stdout.split('\n').filter((l) => /^GPU \d+/.test(l)).length);
    });
  });
}

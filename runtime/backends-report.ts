// `pausepipe backends`: which tensor backends start on this machine, its GPU adapter, what `auto` picks, and the GPU
// kernel variables in force. What a researcher asks first when a run is slower than expected or not on the GPU.
import { surveyBackends, webgpuAdapter, type AdapterSummary, type BackendSurvey } from '../stages/lm/backend.ts';
import { gpuSettings, type GpuSetting } from '../stages/lm/gpu-settings.ts';
import { subgroupLayout } from '../stages/lm/webgpu/subgroups.ts';
import { detectGpus, gpuMemoryOverride, nvidiaSmiMemoryMiB } from './gpus.ts';

export interface BackendsReport {
  /** In the order `auto` tries them. */
  backends: BackendSurvey[];
  auto: { name: string; device?: string };
  /** The WebGPU adapter Dawn gives this process, with the smallest subgroup its pipelines may get; null without one. */
  adapter: (AdapterSummary & { subgroups: number | null }) | null;
  /** GPUs the runner would give `--gpus` by default (CUDA_VISIBLE_DEVICES, else nvidia-smi). */
  gpus: number;
  /**
   * Each GPU's memory as the runner counts it for sharing a GPU and sft for activation checkpointing, and where it
   * comes from; null MiB when neither says, with `error` when PAUSEPIPE_GPU_MEMORY_MIB is malformed.
   */
  gpuMemory: { mib: number | null; from: 'PAUSEPIPE_GPU_MEMORY_MIB' | 'nvidia-smi' | null; error?: string };
  /** Each GPU kernel variable: its value (the default when unset) or what is wrong with it. */
  variables: GpuSetting[];
}

export async function backendsReport(env: NodeJS.ProcessEnv = process.env): Promise<BackendsReport> {
  const { backends, auto } = await surveyBackends();
  const summary = await webgpuAdapter();
  // The probe of subgroups runs when WebGPU starts; a software adapter starts only when asked, as the survey did.
  const adapter = summary && { ...summary, subgroups: backends.some((b) => b.name === 'webgpu' && b.device) ? (subgroupLayout()?.minSize ?? null) : null };
  return {
    backends,
    auto: { name: auto.name, ...(auto.device ? { device: auto.device } : {}) },
    adapter,
    gpus: await detectGpus(env),
    gpuMemory: await gpuMemory(env),
    variables: gpuSettings(env),
  };
}

async function gpuMemory(env: NodeJS.ProcessEnv): Promise<BackendsReport['gpuMemory']> {
  let given: number | undefined;
  try {
    given = gpuMemoryOverride(env);
  } catch (err) {
    return { mib: null, from: null, error: (err as Error).message };
  }
  if (given !== undefined) return { mib: given, from: 'PAUSEPIPE_GPU_MEMORY_MIB' };
  const mib = await nvidiaSmiMemoryMiB();
  return mib === undefined ? { mib: null, from: null } : { mib, from: 'nvidia-smi' };
}

const mib = (bytes: number) => (bytes >= 2 ** 30 ? `${+(bytes / 2 ** 30).toFixed(1)} GiB` : `${Math.round(bytes / 2 ** 20)} MiB`);

export function renderBackendsReport(r: BackendsReport): string {
  const width = Math.max(...r.backends.map((b) => b.name.length));
  const lines = ['backends, in the order auto tries them:'];
  for (const b of r.backends) {
    lines.push(`  ${b.name.padEnd(width)}  ${b.device ?? `unavailable: ${b.unavailable}`}`);
    if (b.notice) lines.push(`  ${' '.repeat(width)}  ${b.notice}`);
  }
  const device = r.auto.device;
  lines.push(`auto: ${!device ? r.auto.name : device.startsWith(r.auto.name) ? device : `${r.auto.name} (${device})`}`);
  if (r.adapter) {
    const a = r.adapter;
    const subgroups = a.subgroups === null ? 'no usable subgroups (attention keeps its rows kernels)' : `subgroups of at least ${a.subgroups} (lanes attention can run)`;
    lines.push(`GPU adapter: ${a.name}${a.software ? ' (a software adapter)' : ''}; ${mib(a.limits.maxStorageBufferBindingSize)} per binding, ` +
      `${mib(a.limits.maxBufferSize)} per buffer; ${subgroups}`);
    lines.push(`  features: ${a.features.join(', ') || 'none'}`);
  } else {
    lines.push('GPU adapter: none');
  }
  lines.push(`GPUs for --gpus: ${r.gpus}`);
  const m = r.gpuMemory;
  lines.push(`memory per GPU: ${m.error ? `invalid: ${m.error}` : m.mib === null ? 'unknown (no nvidia-smi; PAUSEPIPE_GPU_MEMORY_MIB sets it)' : `${m.mib} MiB (${m.from})`}`);
  lines.push('GPU kernel variables:');
  for (const v of r.variables) lines.push(`  ${v.name}=${v.error ? `invalid: ${v.error}` : `${v.value}${v.set ? '' : ' (default)'}`}`);
  return lines.join('\n');
}

// Subgroups (WebGPU's `subgroups` feature): requested for tfjs's device where the adapter has them, and checked once.
/// <reference types="@webgpu/types" />
import { dispatchOnceAndRead, webgpuBackend } from './engine.ts';

/** What the lanes kernels (attention-lanes.ts) may rely on: the smallest subgroup a pipeline can get. */
export interface SubgroupLayout {
  minSize: number;
}

let layout: SubgroupLayout | null = null;

/** The device's subgroups, when it has them and they are laid out as the lanes kernels assume; else null. */
export function subgroupLayout(): SubgroupLayout | null {
  return layout;
}

/**
 * Makes every device `gpu` creates request the `subgroups` feature where its adapter offers it. tfjs-backend-webgpu
 * asks for its device itself (timestamps and a few limits only), so the request is widened on its way.
 */
export function requestSubgroups(gpu: GPU): void {
  const requestAdapter = gpu.requestAdapter.bind(gpu);
  gpu.requestAdapter = async (options?: GPURequestAdapterOptions) => {
    const adapter = await requestAdapter(options);
    if (!adapter?.features.has('subgroups')) return adapter;
    const requestDevice = adapter.requestDevice.bind(adapter);
    // A device refused with the feature (an adapter that lists more than it grants) is asked for again without it:
    // subgroups are an optimisation, never a reason to lose the GPU.
    adapter.requestDevice = (descriptor?: GPUDeviceDescriptor) =>
      requestDevice({ ...descriptor, requiredFeatures: [...(descriptor?.requiredFeatures ?? []), 'subgroups' as GPUFeatureName] })
        .catch(() => requestDevice(descriptor));
    return adapter;
  };
}

const PROBE_INVOCATIONS = 256;

/**
 * One workgroup reports each invocation's subgroup lane and size. The lanes kernels group P consecutive invocations
 * (P ≤ the subgroup size) as one row and sum across them with subgroupShuffleXor, which needs invocation i to be lane
 * i mod size. Vulkan leaves that mapping to the driver (every driver we know maps linearly), so it is checked once
 * per process instead of assumed; where it fails, attention keeps its one-row-per-invocation kernels.
 */
export async function checkSubgroups(): Promise<SubgroupLayout | null> {
  layout = null;
  const backend = webgpuBackend();
  const device = backend.device;
  if (!device.features.has('subgroups')) return null;
  const code = `enable subgroups;
@group(0) @binding(0) var<storage, read_write> lanes: array<u32>;
@compute @workgroup_size(${PROBE_INVOCATIONS})
fn main(@builtin(local_invocation_index) lid: u32, @builtin(subgroup_invocation_id) lane: u32, @builtin(subgroup_size) size: u32) {
  lanes[2u * lid] = lane;
  lanes[2u * lid + 1u] = size;
}`;
  const bytes = PROBE_INVOCATIONS * 2 * 4;
  const out = device.createBuffer({ size: bytes, usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC });
  try {
    // A driver that cannot compile the probe reports it here instead of as an uncaptured error; subgroups then go unused.
    device.pushErrorScope('validation');
    const pipeline = device.createComputePipeline({ layout: 'auto', compute: { module: device.createShaderModule({ code }), entryPoint: 'main' } });
    const data = await dispatchOnceAndRead(device, pipeline, [out], bytes);
    if (await device.popErrorScope()) return null;
    const seen = new Uint32Array(data);
    let smallest = Infinity;
    for (let i = 0; i < PROBE_INVOCATIONS; i++) {
      const [lane, size] = [seen[2 * i]!, seen[2 * i + 1]!];
      if (size === 0 || lane !== i % size) return null;
      smallest = Math.min(smallest, size);
    }
    // Another pipeline may get a smaller subgroup than this one did: the adapter's minimum bounds them all.
    const info = (backend as unknown as { adapterInfo?: { subgroupMinSize?: number } }).adapterInfo;
    layout = { minSize: Math.min(smallest, info?.subgroupMinSize || smallest) };
    return layout;
  } finally {
    out.destroy();
  }
}

// What the WebGPU adapter offers beyond the defaults, for a GPU run's log: features with Dawn's experimental APIs
// allowed, and the shapes its subgroup-matrix units take (tensor cores through Vulkan's cooperative matrices).
//
//   node --import tsx bench/adapter-probe.ts
//
// The model never asks for these: the probe records whether a GEMM on tensor cores could run here (NOTES.md,
// "Tensor cores").
import { webgpuAdapter } from '../stages/lm/backend.ts';

const adapter = await webgpuAdapter();
if (!adapter) {
  console.log('adapter probe: no WebGPU adapter');
  process.exit(0);
}
console.log(`adapter: ${adapter.name}${adapter.software ? ' (software)' : ''}`);
console.log(`features: ${adapter.features.join(' ')}`);
// A second instance with unsafe APIs allowed: Dawn lists its chromium-experimental features only then.
const dawn = (await import('webgpu')) as unknown as {
  create(flags: string[]): { requestAdapter(o: object): Promise<{ features: Iterable<string>; info: { subgroupMatrixConfigs?: Iterable<Record<string, unknown>> } } | null> };
};
const unsafe = await dawn.create(['enable-dawn-features=allow_unsafe_apis']).requestAdapter({ powerPreference: 'high-performance' });
if (!unsafe) {
  console.log('unsafe-API adapter: none');
  process.exit(0);
}
const base = new Set(adapter.features);
const extra = [...unsafe.features].filter((f) => !base.has(f)).sort();
console.log(`features with unsafe APIs allowed, beyond those: ${extra.join(' ') || 'none'}`);
// Dawn's config objects keep their fields on the prototype: name them to print them.
const configs = [...(unsafe.info.subgroupMatrixConfigs ?? [])].map((c) => `${c.M}x${c.N}x${c.K} ${c.componentType}→${c.resultComponentType}`);
console.log(`subgroup matrix configs: ${configs.join(', ') || 'none'}`);
process.exit(0);

// What the WebGPU adapter offers beyond the defaults, for a GPU run's log: features with Dawn's experimental APIs
// allowed, the shapes its subgroup-matrix units take (tensor cores through Vulkan's cooperative matrices), and
// whether one such product compiles and computes right here.
//
//   node --import tsx bench/adapter-probe.ts
//
// The model never asks for these: the probe records whether a GEMM on tensor cores could run here (NOTES.md,
// "The WGSL GEMM"). Dawn's WGSL for subgroup matrices changed form between versions; both are tried, and the one
// that compiled (or each one's error) is printed.
/// <reference types="@webgpu/types" />
import { webgpuAdapter } from '../stages/lm/backend.ts';
import { dispatchOnceAndRead } from '../stages/lm/webgpu/engine.ts';

interface MatrixConfig {
  M: number;
  N: number;
  K: number;
  componentType: string;
  resultComponentType: string;
}

const adapter = await webgpuAdapter();
if (!adapter) {
  console.log('adapter probe: no WebGPU adapter');
  process.exit(0);
}
console.log(`adapter: ${adapter.name}${adapter.software ? ' (software)' : ''}`);
console.log(`features: ${adapter.features.join(' ')}`);
// A second instance with unsafe APIs allowed: Dawn lists its chromium-experimental features only then.
const dawn = (await import('webgpu')) as unknown as { create(flags: string[]): { requestAdapter(o: object): Promise<GPUAdapter | null> } };
const unsafe = await dawn.create(['enable-dawn-features=allow_unsafe_apis']).requestAdapter({ powerPreference: 'high-performance' });
if (!unsafe) {
  console.log('unsafe-API adapter: none');
  process.exit(0);
}
const base = new Set(adapter.features);
const extra = [...unsafe.features].filter((f) => !base.has(f)).sort();
console.log(`features with unsafe APIs allowed, beyond those: ${extra.join(' ') || 'none'}`);
// Dawn's config objects keep their fields on the prototype: copy them out by name.
const info = unsafe.info as unknown as { subgroupMatrixConfigs?: Iterable<MatrixConfig>; subgroupMaxSize?: number };
const configs: MatrixConfig[] = [...(info.subgroupMatrixConfigs ?? [])].map((c) => ({ M: c.M, N: c.N, K: c.K, componentType: c.componentType, resultComponentType: c.resultComponentType }));
console.log(`subgroup matrix configs: ${configs.map((c) => `${c.M}x${c.N}x${c.K} ${c.componentType}→${c.resultComponentType}`).join(', ') || 'none'}`);
// A GEMM would multiply f16 or f32 operands into f32: try the first such shape on one small product.
const config = configs.find((c) => c.resultComponentType === 'f32' && (c.componentType === 'f16' || c.componentType === 'f32'));
if (config) console.log(`subgroup matrix product: ${await tryProduct(unsafe, config, info.subgroupMaxSize ?? 32)}`);
process.exit(0);

/** The bits of a float16 holding a small whole number (exact: below 2048). */
function halfBits(n: number): number {
  if (n === 0) return 0;
  const e = Math.floor(Math.log2(n));
  return ((e + 15) << 10) | Math.round((n / 2 ** e - 1) * 1024);
}

/** The WGSL of C = A·B on one subgroup's matrices, A [M, K] and B [K, N] row-major, in either of Dawn's forms. */
function productWgsl(c: MatrixConfig, lanes: number, form: 'flag' | 'template'): string {
  const t = c.componentType;
  const left = `subgroup_matrix_left<${t}, ${c.K}, ${c.M}>`;
  const right = `subgroup_matrix_right<${t}, ${c.N}, ${c.K}>`;
  const [loadA, loadB, store] = form === 'flag'
    ? [`subgroupMatrixLoad<${left}>(&a, 0, false, ${c.K})`, `subgroupMatrixLoad<${right}>(&b, 0, false, ${c.N})`, `subgroupMatrixStore(&out, 0, acc, false, ${c.N})`]
    : [`subgroupMatrixLoad<${left}, row_major>(&a, 0, ${c.K})`, `subgroupMatrixLoad<${right}, row_major>(&b, 0, ${c.N})`, `subgroupMatrixStore<row_major>(&out, 0, acc, ${c.N})`];
  return `${t === 'f16' ? 'enable f16;\n' : ''}enable chromium_experimental_subgroup_matrix;
@group(0) @binding(0) var<storage, read_write> out: array<f32>;
@group(0) @binding(1) var<storage, read> a: array<${t}>;
@group(0) @binding(2) var<storage, read> b: array<${t}>;
@compute @workgroup_size(${lanes})
fn main() {
  var acc = subgroup_matrix_result<f32, ${c.N}, ${c.M}>();
  acc = subgroupMatrixMultiplyAccumulate(${loadA}, ${loadB}, acc);
  ${store};
}`;
}

/** Runs one M×K·K×N product of small whole numbers on the subgroup-matrix units and compares it with the host's. */
async function tryProduct(gpuAdapter: GPUAdapter, c: MatrixConfig, lanes: number): Promise<string> {
  try {
    const features = ['chromium-experimental-subgroup-matrix', 'subgroups', ...(c.componentType === 'f16' ? ['shader-f16'] : [])];
    const device = await gpuAdapter.requestDevice({ requiredFeatures: features.filter((f) => gpuAdapter.features.has(f)) as GPUFeatureName[] });
    const a = Array.from({ length: c.M * c.K }, (_, i) => i % 3);
    const b = Array.from({ length: c.K * c.N }, (_, i) => (i * 7) % 4);
    const want = Array.from({ length: c.M * c.N }, (_, i) => {
      const [r, col] = [Math.floor(i / c.N), i % c.N];
      let s = 0;
      for (let k = 0; k < c.K; k++) s += a[r * c.K + k]! * b[k * c.N + col]!;
      return s;
    });
    const upload = (values: number[]) => {
      const data = c.componentType === 'f16' ? new Uint16Array(values.map(halfBits)) : new Float32Array(values);
      const buffer = device.createBuffer({ size: Math.ceil(data.byteLength / 4) * 4, usage: GPUBufferUsage.STORAGE, mappedAtCreation: true });
      new Uint8Array(buffer.getMappedRange()).set(new Uint8Array(data.buffer));
      buffer.unmap();
      return buffer;
    };
    const errors: string[] = [];
    for (const form of ['template', 'flag'] as const) {
      device.pushErrorScope('validation');
      const module = device.createShaderModule({ code: productWgsl(c, lanes, form) });
      const pipeline = device.createComputePipeline({ layout: 'auto', compute: { module, entryPoint: 'main' } });
      const error = await device.popErrorScope();
      if (error) {
        errors.push(`${form} form: ${error.message.split('\n')[0]}`);
        continue;
      }
      const out = device.createBuffer({ size: 4 * c.M * c.N, usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC });
      const got = Array.from(new Float32Array(await dispatchOnceAndRead(device, pipeline, [out, upload(a), upload(b)], 4 * c.M * c.N)));
      const wrong = got.filter((v, i) => v !== want[i]).length;
      return `${c.M}x${c.N}x${c.K} ${c.componentType}→f32 on ${lanes} lanes, ${form} form: ${wrong === 0 ? 'exact' : `${wrong} of ${got.length} values wrong`}`;
    }
    return `did not compile (${errors.join('; ')})`;
  } catch (err) {
    return `failed: ${err instanceof Error ? err.message.split('\n')[0] : String(err)}`;
  }
}

// One-token decode steps recorded once and replayed: the same dispatches on the same buffers, with no tfjs work, no bind groups and no uniform buffers made per step.
//
// A decode step of a small model through tfjs costs the host more than the GPU: each of its dispatches makes tensors,
// a uniform buffer and a bind group (bench/decode-host.bench.ts: some 30–40 µs a bind group here, about 4 ms of host
// time for a 4-layer step against under 2 ms replayed).
// The first one-token step of a generation runs normally while engine.ts records what it dispatches; every later
// step re-encodes that list: one write of all uniforms (the decode position patched in), the dispatches, a copy of
// the chosen tokens out, one submit. What varies between steps lives on the GPU: the KV cache and its column info
// (allocated for the whole generation), the tokens chosen last step (fed back as this step's input), the sampling
// uniforms (rewritten per step).
/// <reference types="@webgpu/types" />
import * as tf from '@tensorflow/tfjs-core';
import { gpuChoice } from '../gpu-settings.ts';
import type { KvCache, LanguageModel } from '../types.ts';
import { DeviceKvCache } from './decoder.ts';
import { captureDispatches, copyBuffer, emptyTensor, gpuBuffer, layoutOf, releaseCaptured, submitPending, uniformBytes, webgpuBackend, writeUniforms, type CapturedData, type RecordedDispatch } from './engine.ts';
import { withMatMul } from './matmul.ts';
import { pickTokens } from './pick.ts';

/** What one generation's decode steps need from the backend (kernels.ts's `decodeSteps`). */
export interface DecodeSteps {
  /** Queues one step (the model's step, then the token choice) and returns the chosen ids [B], not yet read. */
  step(inputIds: tf.Tensor2D, mask: tf.Tensor2D, cache: KvCache | null, uniforms: Float64Array | null): Promise<{ ids: tf.Tensor1D; cache: KvCache }>;
  /** True once steps replay a recording: they read neither `inputIds` nor `mask`, so the caller need not make them. */
  readonly replaying: boolean;
  dispose(): void;
}

/** PAUSEPIPE_DECODE_GRAPH=off runs every step through tfjs (for comparisons); on by default. */
function graphsEnabled(): boolean {
  return gpuChoice('PAUSEPIPE_DECODE_GRAPH') === 'on';
}

/** A recorded one-token step, ready to dispatch again for the next position. */
class DecodeGraph {
  private readonly bindGroups: GPUBindGroup[];
  private readonly uniformBuffer: GPUBuffer;
  /** Every dispatch's uniforms at its offset in one buffer, written once per step. */
  private readonly image: ArrayBuffer;
  /** Byte offsets in `image` of the decode position (the KV cache's length before the step). */
  private readonly positions: number[] = [];
  private readonly cacheVersion: number;

  constructor(
    private readonly dispatches: RecordedDispatch[],
    private readonly held: CapturedData,
    /** The chosen tokens' data: the pick kernel writes it, the next step's embedding reads it. */
    private readonly chosen: tf.TensorInfo,
    input: tf.Tensor,
    private readonly samples: GPUBuffer | null,
    readonly cache: DeviceKvCache,
  ) {
    // The buffers the recording bound: a cache reallocated after this cannot be replayed into.
    this.cacheVersion = cache.version;
    const backend = webgpuBackend();
    const device = backend.device;
    const align = device.limits.minUniformBufferOffsetAlignment;
    const offsets: number[] = [];
    let size = 0;
    for (const d of dispatches) {
      offsets.push(size);
      if (d.uniforms.length > 0) size += Math.ceil(uniformBytes(d.uniforms) / align) * align;
    }
    this.image = new ArrayBuffer(Math.max(size, 16));
    dispatches.forEach((d, i) => {
      writeUniforms(this.image, offsets[i]!, d.uniforms);
      d.uniforms.forEach((u, field) => {
        if ('position' in u && u.position) this.positions.push(offsets[i]! + 4 * field);
      });
    });
    this.uniformBuffer = device.createBuffer({ size: this.image.byteLength, usage: GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST, label: 'decode-graph uniforms' });
    // The recorded step read last step's tokens from `input`; replays read the tokens the step before chose.
    const fed = gpuBuffer(input);
    const chosenBuffer = gpuBuffer(chosen);
    this.bindGroups = dispatches.map((d, i) => {
      const entries: GPUBindGroupEntry[] = d.buffers.map((buffer, binding) => ({ binding, resource: { buffer: buffer === fed ? chosenBuffer : buffer } }));
      if (d.uniforms.length > 0) {
        entries.push({ binding: d.buffers.length, resource: { buffer: this.uniformBuffer, offset: offsets[i]!, size: uniformBytes(d.uniforms) } });
      }
      return device.createBindGroup({ layout: layoutOf(d.pipeline), entries, label: `decode-graph ${d.key}` });
    });
  }

  /** Whether the next step can replay: the same cache, not reallocated, with room for one more position. */
  fits(cache: KvCache | null): boolean {
    return cache === this.cache && this.cache.version === this.cacheVersion && this.cache.length < this.cache.capacity;
  }

  /** Queues the step for the cache's next position; returns the chosen ids [B] (a copy the caller reads and frees). */
  replay(uniforms: Float64Array | null): tf.Tensor1D {
    const backend = webgpuBackend();
    // The uniform writes below must land after the commands already recorded.
    submitPending();
    const view = new DataView(this.image);
    for (const at of this.positions) view.setUint32(at, this.cache.length, true);
    backend.queue.writeBuffer(this.uniformBuffer, 0, this.image);
    if (this.samples) {
      if (!uniforms) throw new Error('decode graph: a sampling step needs its uniforms');
      backend.queue.writeBuffer(this.samples, 0, Float32Array.from(uniforms));
    }
    backend.ensureCommandEncoderReady();
    backend.endComputePassEncoder();
    const pass = backend.commandEncoder!.beginComputePass();
    backend.computePassEncoder = pass;
    this.dispatches.forEach((d, i) => {
      pass.setPipeline(d.pipeline);
      pass.setBindGroup(0, this.bindGroups[i]!);
      pass.dispatchWorkgroups(...d.workgroups);
    });
    backend.dispatchCountInPass += this.dispatches.length;
    const rows = this.chosen.shape[0]!;
    const ids = emptyTensor([rows], 'int32') as tf.Tensor1D;
    copyBuffer(this.chosen, 0, ids, 0, rows);
    this.cache.length += 1;
    return ids;
  }

  dispose(): void {
    releaseCaptured(this.held);
    this.uniformBuffer.destroy();
  }
}

/**
 * A generation's decode steps on webgpu. The prompt step runs through tfjs; the first one-token step runs too,
 * recorded; later steps replay it. A step that dispatches anything the engine cannot record (tfjs's own programs:
 * LoRA's adds, the tfjs ops around a split weight) is not recorded, and every step then runs through tfjs. One-token
 * steps take this project's WGSL products either way (matvec.ts for up to 16 rows), so replayed and unreplayed steps
 * compute the same values.
 */
export class ReplayedDecodeSteps implements DecodeSteps {
  private graph: DecodeGraph | null = null;
  private tried = !graphsEnabled();

  constructor(private readonly model: LanguageModel, private readonly temperature: number) {}

  get replaying(): boolean {
    return this.graph !== null;
  }

  async step(inputIds: tf.Tensor2D, mask: tf.Tensor2D, cache: KvCache | null, uniforms: Float64Array | null): Promise<{ ids: tf.Tensor1D; cache: KvCache }> {
    if (this.graph) {
      if (!this.graph.fits(cache)) throw new Error('decode graph: the step does not continue the recorded generation (another cache, or one that had to grow)');
      return { ids: this.graph.replay(uniforms), cache: this.graph.cache };
    }
    const samples = uniforms && tf.tensor1d(Float32Array.from(uniforms));
    const run = () => {
      const { logProbs, cache: next } = this.model.decodeStep(inputIds, mask, cache);
      const ids = pickTokens(logProbs, this.temperature, samples);
      logProbs.dispose();
      return { ids, cache: next };
    };
    try {
      if (inputIds.shape[1] !== 1 || !(cache instanceof DeviceKvCache)) return run();
      if (this.tried) return withMatMul('wgsl', run);
      this.tried = true;
      const captured = captureDispatches(() => withMatMul('wgsl', run));
      if (captured.foreign > 0) {
        releaseCaptured(captured.held);
      } else {
        this.graph = new DecodeGraph(captured.dispatches, captured.held, captured.result.ids, inputIds, samples && gpuBuffer(samples), cache);
      }
      return captured.result;
    } finally {
      samples?.dispose();
    }
  }

  dispose(): void {
    this.graph?.dispose();
    this.graph = null;
  }
}

// Weights larger than one WebGPU binding (e.g. Mistral-7B's 32,001 × 4,096 embedding and head) used as blocks of rows.
//
// A WebGPU kernel can bind at most maxStorageBufferBindingSize bytes of one buffer (128 MiB on Mesa's lavapipe), while
// a buffer may be as large as maxBufferSize. A weight beyond the binding limit is kept whole (saving, reading and
// loading only copy buffers, which binds nothing) and the kernels that read it see row blocks instead, copied out of
// it buffer to buffer: the embedding gathers from each block, the LM head multiplies by each and joins the columns.
// The blocks are made outside the gradient tape, so such a weight cannot train; that is refused by name.
import * as tf from '@tensorflow/tfjs-core';
import { deviceLimits } from './backend.ts';
import * as ops from './ops.ts';

/** Tests lower `maxBindingBytes` to split small weights on any backend; null: the active WebGPU device's limits. */
export const SPLIT_TUNING: { maxBindingBytes: number | null } = { maxBindingBytes: null };

/** Bytes one kernel may bind of one tensor on the active backend (no limit off WebGPU). */
export function bindingLimit(): number {
  if (SPLIT_TUNING.maxBindingBytes !== null) return SPLIT_TUNING.maxBindingBytes;
  const limits = deviceLimits();
  return limits ? Math.min(limits.maxStorageBufferBindingSize, limits.maxBufferSize) : Infinity;
}

/** A [rows, cols] weight as consecutive row blocks, each with its transpose once a product asks for it. */
export interface RowBlocks {
  /** First row of each block. */
  starts: number[];
  blocks: tf.Tensor2D[]; // each [rows_k, cols]
  /** Each [cols, rows_k], made at first use: wasm's matmul wants it, WebGPU's reads the block transposed (no copy). */
  transposed: Array<tf.Tensor2D | null>;
}

/** The product `linear` of kernels.ts: x·Wᵀ for a weight [out, in], with a prepared Wᵀ where the backend wants one. */
export type Linear = (x: tf.Tensor, weight: tf.Tensor, bias: tf.Tensor | undefined, transposed: () => tf.Tensor) => tf.Tensor;

/** WebGPU buffer usage bits (GPUBufferUsage): what a tensor's storage buffer needs. */
const STORAGE = 0x80;
const COPY_SRC = 0x04;
const COPY_DST = 0x08;

interface GpuBufferLike {
  destroy(): void;
}
interface WebgpuInternals {
  device: { createBuffer(desc: { size: number; usage: number }): GpuBufferLike };
  tensorMap: { get(dataId: object): { resource?: unknown } };
  commandEncoder: { copyBufferToBuffer(src: unknown, srcOffset: number, dst: unknown, dstOffset: number, size: number): void };
  uploadToGPU(dataId: object): void;
  ensureCommandEncoderReady(): void;
  endComputePassEncoder(): void;
  submitQueue(): void;
}

interface Entry {
  /** The weight's data when the blocks were made: `assign` gives it new data, which invalidates them. */
  data: object;
  split: RowBlocks;
  /** Buffers owned here (WebGPU), destroyed with the entry. */
  buffers: GpuBufferLike[];
}

/** Row blocks of the weights that exceed the binding limit, kept until the weight changes or the cache is cleared. */
export class RowBlockCache {
  private readonly entries = new Map<tf.Variable, Entry>();

  /**
   * The blocks of `w` [rows, cols] when it exceeds the binding limit, else null. `trains` (is a gradient being taken
   * for it?) is asked only then: such a weight cannot be split (its gradient would not reach it), an error naming it.
   */
  get(w: tf.Variable, name: () => string, trains: () => boolean): RowBlocks | null {
    const limit = bindingLimit();
    if (w.rank !== 2 || w.size * 4 <= limit) return null;
    if (trains()) {
      throw new Error(`weight ${name()} [${w.shape.join(', ')}] takes ${w.size * 4} bytes, beyond the ${limit} bytes one WebGPU kernel can bind ` +
        'on this adapter: it can be used but not trained here (freeze it, or train on a backend without the limit)');
    }
    const entry = this.entries.get(w);
    if (entry && entry.data === w.dataId) return entry.split;
    if (entry) this.drop(w, entry);
    const made = makeBlocks(w, Math.max(1, Math.floor(limit / (4 * w.shape[1]!))));
    this.entries.set(w, { data: w.dataId, ...made });
    return made.split;
  }

  clear(): void {
    for (const [w, e] of this.entries) this.drop(w, e);
  }

  private drop(w: tf.Variable, e: Entry): void {
    tf.dispose([...e.split.blocks, ...e.split.transposed.filter((t) => t !== null)]);
    if (e.buffers.length > 0) {
      // Commands already recorded may still read the buffers: submit them before the buffers go.
      const backend = tf.backend() as unknown as WebgpuInternals;
      backend.ensureCommandEncoderReady();
      backend.endComputePassEncoder();
      backend.submitQueue();
      for (const b of e.buffers) b.destroy();
    }
    this.entries.delete(w);
  }
}

/** Blocks of `rowsPerBlock` rows: on WebGPU copied buffer to buffer (no kernel binds the whole weight), else sliced. */
function makeBlocks(w: tf.Variable, rowsPerBlock: number): { split: RowBlocks; buffers: GpuBufferLike[] } {
  const [rows, cols] = w.shape as [number, number];
  const starts: number[] = [];
  for (let r = 0; r < rows; r += rowsPerBlock) starts.push(r);
  const sizes = starts.map((r) => Math.min(rowsPerBlock, rows - r));
  const buffers: GpuBufferLike[] = [];
  let blocks: tf.Tensor2D[];
  if (tf.getBackend() === 'webgpu') {
    const backend = tf.backend() as unknown as WebgpuInternals;
    backend.uploadToGPU(w.dataId);
    const src = backend.tensorMap.get(w.dataId).resource;
    blocks = starts.map((r, k) => {
      const bytes = sizes[k]! * cols * 4;
      const dst = backend.device.createBuffer({ size: bytes, usage: STORAGE | COPY_SRC | COPY_DST });
      buffers.push(dst);
      // Recorded in the backend's own command stream, so the copy sees every write to `w` made before it.
      backend.ensureCommandEncoderReady();
      backend.endComputePassEncoder();
      backend.commandEncoder.copyBufferToBuffer(src, r * cols * 4, dst, 0, bytes);
      return tf.keep(tf.tensor({ buffer: dst, zeroCopy: true } as unknown as tf.TensorLike, [sizes[k]!, cols], 'float32') as tf.Tensor2D);
    });
  } else {
    blocks = starts.map((r, k) => tf.keep(tf.slice(w, [r, 0], [sizes[k]!, cols]) as tf.Tensor2D));
  }
  return { split: { starts, blocks, transposed: blocks.map(() => null) }, buffers };
}

/** Block k's transpose, made once and kept (the caller is usually inside a tidy that must not free it). */
function transposedBlock(split: RowBlocks, k: number): tf.Tensor2D {
  split.transposed[k] ??= tf.keep(ops.transposeWeight(split.blocks[k]!));
  return split.transposed[k]!;
}

/** x [..., cols] · Wᵀ → [..., rows] through the blocks of W with the backend's `linear`, differentiable in x. */
export function splitLinear(x: tf.Tensor, split: RowBlocks, bias: tf.Tensor | undefined, linear: Linear): tf.Tensor {
  return tf.tidy(() => {
    const parts = split.blocks.map((b, k) => linear(x, b, undefined, () => transposedBlock(split, k)));
    const y = tf.concat(parts, -1);
    return bias ? tf.add(y, bias) : y;
  });
}

/** Rows of the table for int32 `ids` of any shape → [...ids.shape, cols]: each block gathers the ids it holds. */
export function splitEmbedding(ids: tf.Tensor, split: RowBlocks): tf.Tensor {
  return tf.tidy(() => {
    let out: tf.Tensor | null = null;
    split.blocks.forEach((block, k) => {
      const n = block.shape[0];
      const local = tf.sub(ids, tf.scalar(split.starts[k]!, 'int32'));
      const inside = tf.logicalAnd(tf.greaterEqual(local, tf.scalar(0, 'int32')), tf.less(local, tf.scalar(n, 'int32')));
      // minimum/maximum rather than clipByValue, which wasm computes in float on int32 ids.
      const clipped = tf.minimum(tf.maximum(local, tf.scalar(0, 'int32')), tf.scalar(n - 1, 'int32'));
      const rows = ops.embedding(clipped, block); // [..., cols]
      const part = tf.mul(rows, tf.expandDims(tf.cast(inside, 'float32'), -1));
      out = out ? tf.add(out, part) : part;
    });
    return out!;
  });
}

/**
 * One [rows, cols] tensor from row blocks (which it frees) without a kernel binding the whole: on WebGPU the blocks are
 * copied buffer to buffer into one, elsewhere concatenated. What makes a weight beyond the binding limit on the device.
 */
export function joinRowBlocks(blocks: tf.Tensor2D[]): tf.Tensor2D {
  const cols = blocks[0]!.shape[1];
  const rows = blocks.reduce((n, b) => n + b.shape[0], 0);
  if (blocks.some((b) => b.shape[1] !== cols)) throw new Error(`joinRowBlocks: blocks of ${[...new Set(blocks.map((b) => b.shape[1]))].join(' and ')} columns`);
  if (tf.getBackend() !== 'webgpu') {
    const joined = tf.concat(blocks, 0) as tf.Tensor2D;
    tf.dispose(blocks);
    return joined;
  }
  const backend = tf.backend() as unknown as WebgpuInternals;
  const whole = backend.device.createBuffer({ size: rows * cols * 4, usage: STORAGE | COPY_SRC | COPY_DST });
  let offset = 0;
  for (const b of blocks) {
    backend.uploadToGPU(b.dataId);
    backend.ensureCommandEncoderReady();
    backend.endComputePassEncoder();
    backend.commandEncoder.copyBufferToBuffer(backend.tensorMap.get(b.dataId).resource, 0, whole, offset, b.size * 4);
    offset += b.size * 4;
  }
  // tfjs copies the buffer into one it manages (buffer to buffer again); ours goes once the copies are submitted.
  const joined = tf.tensor({ buffer: whole } as unknown as tf.TensorLike, [rows, cols], 'float32') as tf.Tensor2D;
  backend.ensureCommandEncoderReady();
  backend.endComputePassEncoder();
  backend.submitQueue();
  whole.destroy();
  tf.dispose(blocks);
  return joined;
}

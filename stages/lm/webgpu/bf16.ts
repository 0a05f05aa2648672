// Frozen weights kept on the GPU as bfloat16: two values per 32-bit word, half the memory of float32, read exactly.
//
// A weight whose float32 values are all bfloat16 numbers (the low 16 bits of each are zero: a bfloat16 checkpoint,
// or `precision: "bf16"`, which rounds every weight) loses nothing when only the high halves are kept. The products
// that read it (matmul.ts, matvec.ts) widen each half back to float32 as they load it, so their results are the
// float32 weight's bit for bit. Words are little-endian pairs as safetensors stores bfloat16: value 2i in the low
// half of word i, value 2i + 1 in the high half.
import * as tf from '@tensorflow/tfjs-core';
import { bindings, copyBuffer, emptyTensor, grid, perElementMain, run, runToTensors } from './engine.ts';

/** A [rows, cols] weight (cols a multiple of 4) stored as int32 words [rows, cols / 2] of bfloat16 pairs. */
export class PackedBf16 {
  constructor(readonly words: tf.Tensor2D, readonly shape: [number, number]) {}

  /** Values (not words) the weight holds, as for a tensor. */
  get size(): number {
    return this.shape[0] * this.shape[1];
  }

  get rank(): 2 {
    return 2;
  }

  get isDisposed(): boolean {
    return this.words.isDisposed;
  }

  /** GPU bytes it takes: 2 a value. */
  get bytes(): number {
    return 2 * this.size;
  }

  /** The float32 values, read from the GPU (saving a model). */
  async data(): Promise<Float32Array> {
    return unpackOnHost((await this.words.data()) as Int32Array);
  }

  /** A float32 tensor [rows, cols] of the same values, made on the GPU (merging an adapter into the weight). */
  unpacked(): tf.Tensor2D {
    const pairs = this.size / 2;
    const [out] = runToTensors({
      key: 'bf16-unpack',
      wgsl: () => `
${bindings([['out', 'f32']], [['words', 'u32']], [['count', 'u32']])}
${perElementMain(256)}
  let w = words[idx];
  out[2u * idx] = bitcast<f32>(w << 16u);
  out[2u * idx + 1u] = bitcast<f32>(w & 0xffff0000u);
}`,
      inputs: [this.words],
      outputs: [{ shape: [...this.shape], dtype: 'float32' }],
      uniforms: [{ u32: pairs }],
      workgroups: grid(Math.ceil(pairs / 256)),
    });
    return out as tf.Tensor2D;
  }

  dispose(): void {
    this.words.dispose();
  }
}

/**
 * Packed weights [rows_i, cols] stacked along their rows into one [Σrows, cols] (q|k|v, gate|up), by buffer copies:
 * tfjs's int32 ops pass values through float32 and would round the words.
 */
export function stackPacked(parts: PackedBf16[]): PackedBf16 {
  const cols = parts[0]!.shape[1];
  if (parts.some((p) => p.shape[1] !== cols)) throw new Error(`stackPacked: weights must be [rows, ${cols}], got ${parts.map((p) => `[${p.shape.join(', ')}]`).join(', ')}`);
  const rows = parts.reduce((n, p) => n + p.shape[0], 0);
  const words = emptyTensor([rows, cols / 2], 'int32');
  let at = 0;
  for (const p of parts) {
    copyBuffer(p.words, 0, words, at, p.words.size);
    at += p.words.size;
  }
  return new PackedBf16(words as tf.Tensor2D, [rows, cols]);
}

/** A weight as the products take it: float32, or packed bfloat16. */
export type WeightTensor = tf.Tensor2D | PackedBf16;

/** Whether a [rows, cols] float32 weight can be packed: pairs of values and vec4 reads need cols a multiple of 4. */
export function packable(w: tf.Tensor): boolean {
  return w.rank === 2 && w.dtype === 'float32' && w.shape[1]! % 4 === 0 && w.size > 0;
}

/**
 * `w` packed, or null when some value is not a bfloat16 number (packing would change it). One host read: of the
 * count of such values, so the caller may free `w` at once and pack the next weight with only one extra copy alive.
 */
export async function packBf16(w: tf.Tensor2D): Promise<PackedBf16 | null> {
  if (!packable(w)) throw new Error(`bf16 packing: needs a float32 [rows, cols] weight with cols a multiple of 4, got ${w.dtype} [${w.shape.join(', ')}]`);
  const pairs = w.size / 2;
  const inexact = tf.zeros([1], 'int32');
  const [info] = run({
    key: 'bf16-pack',
    wgsl: () => `
${bindings([['words', 'u32'], ['inexact', 'atomic<u32>']], [['w', 'f32']], [['count', 'u32']])}
${perElementMain(256)}
  let lo = bitcast<u32>(w[2u * idx]);
  let hi = bitcast<u32>(w[2u * idx + 1u]);
  if (((lo | hi) & 0xffffu) != 0u) { atomicAdd(&inexact[0], 1u); }
  words[idx] = (lo >> 16u) | (hi & 0xffff0000u);
}`,
    inputs: [w],
    // The second output counts, in place, the values whose low half is not zero.
    outputs: [{ shape: [w.shape[0], w.shape[1] / 2], dtype: 'int32' }, { into: inexact }],
    uniforms: [{ u32: pairs }],
    workgroups: grid(Math.ceil(pairs / 256)),
  });
  const words = tf.engine().makeTensorFromTensorInfo(info!) as tf.Tensor2D;
  try {
    const [count] = (await inexact.data()) as Int32Array;
    if (count !== 0) {
      words.dispose();
      return null;
    }
    return new PackedBf16(words, [w.shape[0], w.shape[1]]);
  } finally {
    inexact.dispose();
  }
}

/** Words of bfloat16 pairs from float32 values that are bfloat16 numbers (the inverse of `unpackOnHost`). */
export function packOnHost(values: Float32Array): Int32Array {
  const bits = new Uint32Array(values.buffer, values.byteOffset, values.length);
  const words = new Int32Array(values.length / 2);
  for (let i = 0; i < words.length; i++) words[i] = (bits[2 * i]! >>> 16) | (bits[2 * i + 1]! & 0xffff0000);
  return words;
}

/** Float32 values of packed words (little-endian bfloat16 pairs). */
export function unpackOnHost(words: Int32Array | Uint32Array): Float32Array {
  const bits = new Uint32Array(words.buffer, words.byteOffset, words.length);
  const out = new Float32Array(2 * words.length);
  const outBits = new Uint32Array(out.buffer);
  for (let i = 0; i < bits.length; i++) {
    const w = bits[i]!;
    outBits[2 * i] = (w << 16) >>> 0;
    outBits[2 * i + 1] = (w & 0xffff0000) >>> 0;
  }
  return out;
}

/** WGSL: four float32 values from two words of bfloat16 pairs (a vec4 read of a packed weight row). */
export const UNPACK4 = `fn unpack4(w: vec2<u32>) -> vec4<f32> {
  return vec4<f32>(bitcast<f32>(w.x << 16u), bitcast<f32>(w.x & 0xffff0000u), bitcast<f32>(w.y << 16u), bitcast<f32>(w.y & 0xffff0000u));
}`;

// Counts the bytes the wasm backend really holds in tensor buffers: tf.memory() counts every view (a reshape shares
// its input's buffer) as bytes of its own, so it cannot tell how full wasm's 4 GiB heap gets.
import * as tf from '@tensorflow/tfjs-core';

/** The parts of tfjs's wasm backend through which every tensor buffer is made and freed. */
interface WasmBackend {
  move(dataId: object, values: unknown, shape: number[], dtype: tf.DataType, refCount: number): void;
  disposeData(dataId: object, force?: boolean): boolean;
  // get() of a buffer another backend holds moves it here: ask has() first.
  dataIdMap: { has(dataId: object): boolean; get(dataId: object): { shape: number[]; dtype: tf.DataType } };
}

const bytesOf = (shape: number[], dtype: tf.DataType) => shape.reduce((a, b) => a * b, 1) * (dtype === 'bool' ? 1 : 4);

/**
 * Runs `fn` on the wasm backend and returns, with its result, the most bytes of tensor buffers held at once beyond
 * those held when it started (buffers it frees that were made before count down too).
 */
export async function peakTensorBytes<T>(fn: () => T | Promise<T>): Promise<{ peak: number; result: T }> {
  if (tf.getBackend() !== 'wasm') throw new Error(`peakTensorBytes: wasm backend only, not ${tf.getBackend()}`);
  const backend = tf.backend() as unknown as WasmBackend;
  const { move, disposeData } = backend;
  let live = 0;
  let peak = 0;
  backend.move = function (dataId, values, shape, dtype, refCount) {
    move.call(this, dataId, values, shape, dtype, refCount);
    live += bytesOf(shape, dtype);
    peak = Math.max(peak, live);
  };
  backend.disposeData = function (dataId, force) {
    const entry = this.dataIdMap.has(dataId) ? this.dataIdMap.get(dataId) : undefined;
    const freed = disposeData.call(this, dataId, force);
    if (entry && !this.dataIdMap.has(dataId)) live -= bytesOf(entry.shape, entry.dtype);
    return freed;
  };
  try {
    const result = await fn();
    return { peak, result };
  } finally {
    backend.move = move;
    backend.disposeData = disposeData;
  }
}

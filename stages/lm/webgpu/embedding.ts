// Embedding rows by token id, with a deterministic gradient: each table row sums its tokens' gradients in token order (tfjs's scatter adds with atomics).
import * as tf from '@tensorflow/tfjs-core';
import { bindings, grid, perElementMain, run, runToTensors, type Dispatch } from './engine.ts';

const EMBEDDING = 'PausepipeEmbedding';
const COLUMNS = 64;

/**
 * rows[n] = table[ids[n]]; an id outside the table gives a NaN row, so the loss says something is wrong. With
 * `pauseRow`, id = vocab (the pause token, one past the table) takes the `pause` row instead.
 */
function forwardWgsl(pauseRow: boolean): string {
  const inputs: Array<[string, 'f32' | 'i32']> = [['table', 'f32'], ['ids', 'i32'], ...(pauseRow ? [['pause', 'f32']] as Array<[string, 'f32']> : [])];
  return `
${bindings([['rows', 'f32']], inputs, [['count', 'u32'], ['vocab', 'u32'], ['width', 'u32'], ['nan', 'f32']])}
${perElementMain(256)}
  let n = idx / params.width;
  let id = ids[n];
  ${pauseRow ? 'if (id == i32(params.vocab)) { rows[idx] = pause[idx - n * params.width]; return; }' : ''}
  if (id < 0 || u32(id) >= params.vocab) { rows[idx] = params.nan; return; }
  rows[idx] = table[u32(id) * params.width + idx - n * params.width];
}`;
}

/**
 * dtable[v, c] = Σ over tokens n with ids[n] = v, in increasing n, of dy[n, c]: a workgroup per (row, 64 columns)
 * reads the ids in chunks through workgroup memory. Fixed order, so the same batch gives the same bits every run.
 */
function backwardWgsl(): string {
  return `
${bindings([['dtable', 'f32']], [['dy', 'f32'], ['ids', 'i32']], [['vocab', 'u32'], ['tokens', 'u32'], ['width', 'u32']])}
var<workgroup> chunk: array<i32, ${COLUMNS}>;
@compute @workgroup_size(${COLUMNS})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let v = wid.x + wid.y * nwg.x;
  if (v >= params.vocab) { return; }
  let c = wid.z * ${COLUMNS}u + lid;
  var acc = 0.0;
  for (var n0 = 0u; n0 < params.tokens; n0 = n0 + ${COLUMNS}u) {
    workgroupBarrier();
    if (n0 + lid < params.tokens) { chunk[lid] = ids[n0 + lid]; }
    workgroupBarrier();
    let m = min(${COLUMNS}u, params.tokens - n0);
    for (var j = 0u; j < m; j = j + 1u) {
      if (chunk[j] == i32(v) && c < params.width) { acc = acc + dy[(n0 + j) * params.width + c]; }
    }
  }
  if (c < params.width) { dtable[v * params.width + c] = acc; }
}`;
}

/** The forward gather of `ids` (any shape) → [...ids.shape, H], the pause row taking id V when one is given. */
function gather(table: tf.TensorInfo, ids: tf.TensorInfo, pauseRow: tf.TensorInfo | null): Dispatch {
  const [vocab, width] = table.shape as [number, number];
  const count = ids.shape.reduce((n, d) => n * d, 1) * width;
  return {
    key: pauseRow ? 'embedding-pause' : 'embedding',
    wgsl: () => forwardWgsl(pauseRow !== null),
    inputs: pauseRow ? [table, ids, pauseRow] : [table, ids],
    outputs: [{ shape: [...ids.shape, width], dtype: 'float32' }],
    uniforms: [{ u32: count }, { u32: vocab }, { u32: width }, { f32: NaN }],
    workgroups: grid(Math.ceil(count / 256)),
  };
}

tf.registerKernel({
  kernelName: EMBEDDING,
  backendName: 'webgpu',
  kernelFunc: ({ inputs }) => {
    const { table, ids } = inputs as { table: tf.TensorInfo; ids: tf.TensorInfo };
    return run(gather(table, ids, null))[0]!;
  },
});

tf.registerGradient({
  kernelName: EMBEDDING,
  inputsToSave: ['table', 'ids'],
  gradFunc: (dy, saved) => ({
    table: () => {
      const [table, ids] = saved as [tf.Tensor, tf.Tensor];
      const [vocab, width] = table.shape as [number, number];
      const [x, y] = grid(vocab);
      return runToTensors({
        key: 'embedding-backward',
        wgsl: backwardWgsl,
        inputs: [dy as tf.Tensor, ids],
        outputs: [{ shape: table.shape, dtype: 'float32' }],
        uniforms: [{ u32: vocab }, { u32: ids.shape[0]! }, { u32: width }],
        workgroups: [x, y, Math.ceil(width / COLUMNS)],
      })[0]!;
    },
  }),
});

/** Rows of `table` [V, H] for int32 `ids` of any shape → [...ids.shape, H], as ops.embedding; differentiable in the table. */
export function embedding(ids: tf.Tensor, table: tf.Tensor): tf.Tensor {
  if (ids.dtype !== 'int32') throw new Error(`embedding: ids must be int32, got ${ids.dtype}`);
  if (table.rank !== 2) throw new Error(`embedding: table [${table.shape.join(', ')}] must be [vocab, hidden]`);
  return tf.tidy(() => {
    const rows = tf.engine().runKernel(EMBEDDING, { table, ids: tf.reshape(ids, [-1]) }) as tf.Tensor;
    return tf.reshape(rows, [...ids.shape, table.shape[1]!]);
  });
}

/**
 * The pause wrapper's rows for int32 `ids` → [...ids.shape, H]: id V (the pause token) takes `pauseRow` [1, H], the
 * others `table` [V, H], in one kernel. For decoding: no gradient (training takes the wrapper's tfjs-op path).
 */
export function pauseEmbedding(ids: tf.Tensor, table: tf.Tensor, pauseRow: tf.Tensor): tf.Tensor {
  if (ids.dtype !== 'int32') throw new Error(`embedding: ids must be int32, got ${ids.dtype}`);
  return runToTensors(gather(table, ids, pauseRow))[0]!;
}

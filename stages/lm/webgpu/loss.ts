// Cross-entropy over logits with ignored labels, log-softmax and the pause wrapper's combined log-probs, one kernel each way.
import * as tf from '@tensorflow/tfjs-core';
import { IGNORE_INDEX } from '../types.ts';
import { bindings, grid, perElementMain, perRowMain, run, runToTensors } from './engine.ts';
import { reductions } from './wgsl.ts';

const CROSS_ENTROPY = 'PausepipeCrossEntropy';
const LOG_SOFTMAX = 'PausepipeLogSoftmax';
const ROW_THREADS = 256;

/** `lseOf(base, width, lid)`: the row's log-sum-exp, max-shifted (every invocation of the workgroup calls it). */
const LSE = `
fn lseOf(base: u32, width: u32, lid: u32) -> f32 {
  var mx = -3.0e38;
  for (var v = lid; v < width; v = v + ${ROW_THREADS}u) { mx = max(mx, x[base + v]); }
  let top = maxAll(lid, mx);
  var sum = 0.0;
  for (var v = lid; v < width; v = v + ${ROW_THREADS}u) { sum = sum + exp(x[base + v] - top); }
  return top + log(sumAll(lid, sum));
}`;

/**
 * Per row n of logits [N, V]: loss = lse − x[label] where the label counts, else 0; also lse and valid (1/0).
 * A label outside [0, V) that is not IGNORE_INDEX makes the row's loss NaN, so training stops with a clear error.
 */
function crossEntropyWgsl(): string {
  return `
${bindings([['loss', 'f32'], ['lse', 'f32'], ['valid', 'f32']], [['x', 'f32'], ['labels', 'i32']], [['rows', 'u32'], ['vocab', 'u32'], ['nan', 'f32']])}
${reductions(ROW_THREADS)}
${LSE}
${perRowMain(ROW_THREADS)}
  let base = row * params.vocab;
  let z = lseOf(base, params.vocab, lid);
  if (lid == 0u) {
    let label = labels[row];
    lse[row] = z;
    if (label == ${IGNORE_INDEX}) {
      loss[row] = 0.0;
      valid[row] = 0.0;
    } else if (label < 0 || u32(label) >= params.vocab) {
      loss[row] = params.nan;
      valid[row] = 1.0;
    } else {
      loss[row] = z - x[base + u32(label)];
      valid[row] = 1.0;
    }
  }
}`;
}

/** dlogits = dy·(softmax − onehot(label)) on counted rows, 0 elsewhere. */
function crossEntropyBackwardWgsl(): string {
  return `
${bindings([['dx', 'f32']], [['dy', 'f32'], ['x', 'f32'], ['labels', 'i32'], ['lse', 'f32']], [['count', 'u32'], ['vocab', 'u32']])}
${perElementMain(256)}
  let row = idx / params.vocab;
  let v = idx - row * params.vocab;
  let label = labels[row];
  if (label == ${IGNORE_INDEX}) { dx[idx] = 0.0; return; }
  let hot = select(0.0, 1.0, i32(v) == label);
  dx[idx] = dy[row] * (exp(x[idx] - lse[row]) - hot);
}`;
}

tf.registerKernel({
  kernelName: CROSS_ENTROPY,
  backendName: 'webgpu',
  kernelFunc: ({ inputs }) => {
    const { logits, labels } = inputs as { logits: tf.TensorInfo; labels: tf.TensorInfo };
    const [rows, vocab] = logits.shape as [number, number];
    const row = { shape: [rows], dtype: 'float32' as const };
    return run({
      key: 'cross-entropy',
      wgsl: crossEntropyWgsl,
      inputs: [logits, labels],
      outputs: [row, row, row],
      // WGSL folds constants and has no NaN literal: the NaN comes in as a parameter.
      uniforms: [{ u32: rows }, { u32: vocab }, { f32: NaN }],
      workgroups: grid(rows),
    });
  },
});

tf.registerGradient({
  kernelName: CROSS_ENTROPY,
  inputsToSave: ['logits', 'labels'],
  outputsToSave: [false, true, false],
  gradFunc: (dys, saved) => {
    const [dy] = dys as tf.Tensor[];
    const [logits, labels, lse] = saved as tf.Tensor[];
    return {
      logits: () => runToTensors({
        key: 'cross-entropy-backward',
        wgsl: crossEntropyBackwardWgsl,
        inputs: [dy!, logits!, labels!, lse!],
        outputs: [{ shape: logits!.shape, dtype: 'float32' }],
        uniforms: [{ u32: logits!.size }, { u32: logits!.shape[1]! }],
        workgroups: grid(Math.ceil(logits!.size / 256)),
      })[0]!,
    };
  },
});

/**
 * The contract of ops.crossEntropySum on the GPU: Σ over counted rows of lse(logits) − logits[label], and the
 * number of counted rows; logits [N, V] float32, labels [N] int32 in [0, V) or IGNORE_INDEX.
 */
export function crossEntropySum(logits: tf.Tensor2D, labels: tf.Tensor1D): { sum: tf.Scalar; count: tf.Scalar } {
  const [N] = logits.shape;
  if (labels.rank !== 1 || labels.shape[0] !== N) throw new Error(`crossEntropySum: labels [${labels.shape.join(', ')}] must be [${N}]`);
  if (labels.dtype !== 'int32') throw new Error(`crossEntropySum: labels must be int32, got ${labels.dtype}`);
  return tf.tidy(() => {
    const [loss, , valid] = tf.engine().runKernel(CROSS_ENTROPY, { logits, labels }) as tf.Tensor[];
    return { sum: tf.sum(loss!) as tf.Scalar, count: tf.sum(valid!) as tf.Scalar };
  });
}

/** y = x − lse(x) per row of the last axis. */
function logSoftmaxWgsl(): string {
  return `
${bindings([['y', 'f32']], [['x', 'f32']], [['rows', 'u32'], ['width', 'u32']])}
${reductions(ROW_THREADS)}
${LSE}
${perRowMain(ROW_THREADS)}
  let base = row * params.width;
  let z = lseOf(base, params.width, lid);
  for (var v = lid; v < params.width; v = v + ${ROW_THREADS}u) { y[base + v] = x[base + v] - z; }
}`;
}

/** dx = dy − exp(y)·Σdy per row. */
function logSoftmaxBackwardWgsl(): string {
  return `
${bindings([['dx', 'f32']], [['dy', 'f32'], ['y', 'f32']], [['rows', 'u32'], ['width', 'u32']])}
${reductions(ROW_THREADS)}
${perRowMain(ROW_THREADS)}
  let base = row * params.width;
  var sum = 0.0;
  for (var v = lid; v < params.width; v = v + ${ROW_THREADS}u) { sum = sum + dy[base + v]; }
  let total = sumAll(lid, sum);
  for (var v = lid; v < params.width; v = v + ${ROW_THREADS}u) { dx[base + v] = dy[base + v] - exp(y[base + v]) * total; }
}`;
}

function rowsOf(x: tf.TensorInfo): { rows: number; width: number } {
  const width = x.shape[x.shape.length - 1]!;
  return { rows: x.shape.reduce((a, b) => a * b, 1) / width, width };
}

tf.registerKernel({
  kernelName: LOG_SOFTMAX,
  backendName: 'webgpu',
  kernelFunc: ({ inputs }) => {
    const x = inputs.x!;
    const { rows, width } = rowsOf(x);
    return run({
      key: 'log-softmax',
      wgsl: logSoftmaxWgsl,
      inputs: [x],
      outputs: [{ shape: x.shape, dtype: 'float32' }],
      uniforms: [{ u32: rows }, { u32: width }],
      workgroups: grid(rows),
    })[0]!;
  },
});

tf.registerGradient({
  kernelName: LOG_SOFTMAX,
  outputsToSave: [true],
  gradFunc: (dy, saved) => ({
    x: () => {
      const y = saved[0]!;
      const { rows, width } = rowsOf(y);
      return runToTensors({
        key: 'log-softmax-backward',
        wgsl: logSoftmaxBackwardWgsl,
        inputs: [dy as tf.Tensor, y],
        outputs: [{ shape: y.shape, dtype: 'float32' }],
        uniforms: [{ u32: rows }, { u32: width }],
        workgroups: grid(rows),
      })[0]!;
    },
  }),
});

/** log-softmax over the last axis in one kernel (one more for its gradient). */
export function logSoftmax(x: tf.Tensor): tf.Tensor {
  return tf.engine().runKernel(LOG_SOFTMAX, { x }) as tf.Tensor;
}

/**
 * The pause wrapper's next-token log-probs [..., V+1] from its LM logits [..., V+1] (the pause column ignored)
 * and pause-head logits [..., 2] before their bias [2] (added here, so the head is one matmul and no add):
 * log_softmax(lm[:V]) + log p(LM), then log p(pause). For decoding: no gradient.
 */
function pauseLogProbsWgsl(): string {
  return `
${bindings([['y', 'f32']], [['x', 'f32'], ['ctrl', 'f32'], ['bias', 'f32']], [['rows', 'u32'], ['vocab', 'u32'], ['pauseClass', 'u32']])}
${reductions(ROW_THREADS)}
${LSE}
${perRowMain(ROW_THREADS)}
  let width = params.vocab + 1u;
  let base = row * width;
  let z = lseOf(base, params.vocab, lid);
  let c0 = ctrl[row * 2u] + bias[0];
  let c1 = ctrl[row * 2u + 1u] + bias[1];
  let cm = max(c0, c1);
  let cz = cm + log(exp(c0 - cm) + exp(c1 - cm));
  let pause = select(c1, c0, params.pauseClass == 0u) - cz;
  let useLm = select(c0, c1, params.pauseClass == 0u) - cz;
  for (var v = lid; v < params.vocab; v = v + ${ROW_THREADS}u) { y[base + v] = (x[base + v] - z) + useLm; }
  if (lid == 0u) { y[base + params.vocab] = pause; }
}`;
}

export function pauseLogProbs(lmLogits: tf.Tensor, ctrlLogits: tf.Tensor, ctrlBias: tf.Tensor, vocab: number, pauseClass: number): tf.Tensor {
  const { rows, width } = rowsOf(lmLogits);
  if (width !== vocab + 1) throw new Error(`pauseLogProbs: LM logits [${lmLogits.shape.join(', ')}] must end in ${vocab + 1}`);
  return runToTensors({
    key: 'pause-log-probs',
    wgsl: pauseLogProbsWgsl,
    inputs: [lmLogits, ctrlLogits, ctrlBias],
    outputs: [{ shape: lmLogits.shape, dtype: 'float32' }],
    uniforms: [{ u32: rows }, { u32: vocab }, { u32: pauseClass }],
    workgroups: grid(rows),
  })[0]!;
}

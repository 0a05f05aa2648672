// SwiGLU over the fused gate|up projection: silu(gate)·up forward, both halves' gradients in one backward kernel.
import * as tf from '@tensorflow/tfjs-core';
import { bindings, grid, perElementMain, run, runToTensors } from './engine.ts';

const SWIGLU = 'PausepipeSwiglu';
const WG = 256;

/** y[n, i] = silu(gu[n, i]) · gu[n, I + i]; silu as tfjs computes it, g · 1/(1 + exp(−g)). */
function forwardWgsl(): string {
  return `
${bindings([['y', 'f32']], [['gu', 'f32']], [['count', 'u32'], ['inter', 'u32']])}
${perElementMain(WG)}
  let row = idx / params.inter;
  let at = row * 2u * params.inter + (idx - row * params.inter);
  let g = gu[at];
  y[idx] = (g * (1.0 / (1.0 + exp(-g)))) * gu[at + params.inter];
}`;
}

/** dgate = dy·up·(s + silu·(1 − s)), dup = dy·silu, written into the halves of one [N, 2I] gradient. */
function backwardWgsl(): string {
  return `
${bindings([['dgu', 'f32']], [['dy', 'f32'], ['gu', 'f32']], [['count', 'u32'], ['inter', 'u32']])}
${perElementMain(WG)}
  let row = idx / params.inter;
  let at = row * 2u * params.inter + (idx - row * params.inter);
  let g = gu[at];
  let u = gu[at + params.inter];
  let s = 1.0 / (1.0 + exp(-g));
  let silu = g * s;
  let dsilu = s + silu * (1.0 - s);
  dgu[at] = (dy[idx] * u) * dsilu;
  dgu[at + params.inter] = dy[idx] * silu;
}`;
}

function shapes(gu: tf.TensorInfo): { out: number[]; count: number; inter: number } {
  const inter = gu.shape[gu.shape.length - 1]! / 2;
  const out = [...gu.shape.slice(0, -1), inter];
  return { out, count: out.reduce((a, b) => a * b, 1), inter };
}

tf.registerKernel({
  kernelName: SWIGLU,
  backendName: 'webgpu',
  kernelFunc: ({ inputs }) => {
    const { out, count, inter } = shapes(inputs.gu!);
    return run({
      key: 'swiglu',
      wgsl: forwardWgsl,
      inputs: [inputs.gu!],
      outputs: [{ shape: out, dtype: 'float32' }],
      uniforms: [{ u32: count }, { u32: inter }],
      workgroups: grid(Math.ceil(count / WG)),
    })[0]!;
  },
});

tf.registerGradient({
  kernelName: SWIGLU,
  inputsToSave: ['gu'],
  gradFunc: (dy, saved) => ({
    gu: () => {
      const gu = saved[0]!;
      const { count, inter } = shapes(gu);
      return runToTensors({
        key: 'swiglu-backward',
        wgsl: backwardWgsl,
        inputs: [dy as tf.Tensor, gu],
        outputs: [{ shape: gu.shape, dtype: 'float32' }],
        uniforms: [{ u32: count }, { u32: inter }],
        workgroups: grid(Math.ceil(count / WG)),
      })[0]!;
    },
  }),
});

/** silu(gate)·up for gu = [..., 2I] holding gate then up (the fused gate_proj|up_proj output) → [..., I]. */
export function swigluFused(gu: tf.Tensor): tf.Tensor {
  if (gu.shape[gu.shape.length - 1]! % 2 !== 0) throw new Error(`swiglu: last dimension of [${gu.shape.join(', ')}] must hold gate and up halves`);
  return tf.engine().runKernel(SWIGLU, { gu }) as tf.Tensor;
}

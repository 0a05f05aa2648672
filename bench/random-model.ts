// Models with random weights made on the device, a few kernels per weight, for bench shapes the host should not build (7B).
import * as tf from '@tensorflow/tfjs-core';
import { SeededRandom, weightShapes, type LmConfig } from '../stages/lm/config.ts';
import { CausalLM } from '../stages/lm/model.ts';
import { PauseLM, pauseWeightShapes } from '../stages/lm/pause.ts';
import { bindingLimit, joinRowBlocks } from '../stages/lm/split-weights.ts';

/**
 * A [rows, cols] weight with entries of standard deviation `std`: std·√2·sin(1000·uᵢ·vⱼ) for u, v drawn on the host
 * (rows + cols numbers) and the product taken on the device. Not normal, but full rank and of the right scale, which
 * is all a throughput measurement needs. Made in row blocks within one binding, joined buffer to buffer.
 */
function deviceMatrix(rows: number, cols: number, std: number, rng: SeededRandom): tf.Tensor2D {
  const perBlock = Math.max(1, Math.min(rows, Math.floor(bindingLimit() / (4 * cols))));
  const v = tf.tensor2d(rng.uniformArray(cols, 1, 2), [1, cols]);
  const blocks: tf.Tensor2D[] = [];
  for (let r = 0; r < rows; r += perBlock) {
    const n = Math.min(perBlock, rows - r);
    blocks.push(tf.tidy(() => {
      const u = tf.tensor2d(rng.uniformArray(n, 1, 2), [n, 1]);
      return tf.mul(tf.sin(tf.mul(tf.matMul(u, v), 1000)), std * Math.SQRT2) as tf.Tensor2D;
    }));
  }
  v.dispose();
  return blocks.length === 1 ? blocks[0]! : joinRowBlocks(blocks);
}

/** Weights for the given names and shapes: vectors (norm weights, biases) at one, matrices random on the device. */
function deviceWeights(shapes: [string, number[]][], std: number, seed: number): Map<string, tf.Tensor> {
  const rng = new SeededRandom(seed);
  const out = new Map<string, tf.Tensor>();
  for (const [name, shape] of shapes) {
    out.set(name, shape.length === 1 ? tf.ones(shape) : deviceMatrix(shape[0]!, shape[1]!, std, rng));
  }
  return out;
}

/** A plain causal LM of `config` with random weights made on the device. */
export function deviceRandomModel(config: LmConfig, seed: number): CausalLM {
  return CausalLM.fromWeights(config, deviceWeights(weightShapes(config), config.initializerRange, seed));
}

/** A pause-wrapped model of `config` (which carries `pause`) with random weights made on the device. */
export function deviceRandomPauseModel(config: LmConfig, seed: number): PauseLM {
  return PauseLM.fromPauseWeights(config, deviceWeights(pauseWeightShapes(config), config.initializerRange, seed));
}

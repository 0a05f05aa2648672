// Activation checkpointing (Hugging Face's gradient_checkpointing): a decoder layer keeps only its input for backward and runs again there.
import * as tf from '@tensorflow/tfjs-core';

/** The engine state this module swaps around the nested gradient (tfjs-core 4.22's Engine.state, public but untyped). */
interface TapeState {
  activeTape: unknown[] | null;
}

/**
 * `layer(x, context)` whose activations are not kept for the backward pass. The forward pass runs off the gradient tape
 * (inside a tf.customGrad kernel), keeping only `x` and `context`, the other tensors the layer reads (positions, masks;
 * never differentiated; `layer` must read them from its argument, not from its closure); the layer's backward runs it again under its own tape and differentiates
 * that for `x` and for `trainable`, the variables the layer trains (none for pause-only training, its adapters for
 * LoRA). Peak memory of a step drops from every layer's activations to one layer's, for one more forward per layer.
 *
 * `layer` must compute the same values when run again: randomness (LoRA dropout) is reseeded by `rerun`, called
 * before the second run. Variables the layer reads but that are not in `trainable` get no gradient, as frozen ones.
 */
export function checkpointed(
  layer: (x: tf.Tensor, context: tf.Tensor[]) => tf.Tensor, x: tf.Tensor, context: tf.Tensor[], trainable: tf.Variable[], rerun: () => void = () => {},
): tf.Tensor {
  const f = tf.customGrad((...args: Array<tf.Tensor | tf.GradSaveFunc>) => {
    const save = args[args.length - 1] as tf.GradSaveFunc;
    const input = args[0] as tf.Tensor;
    // The forward pass's own tensors (positions, masks) are gone by the backward pass: the engine keeps saved copies.
    save([input, ...context]);
    return {
      value: layer(input, context),
      gradFunc: (dy: tf.Tensor | tf.Tensor[], saved: tf.Tensor[]) => {
        const state = (tf.engine() as unknown as { state: TapeState }).state;
        // A nested gradient outside a forward pass starts its own tape and clears the engine's at its end, where the
        // outer backward, still running, later frees its saved tensors: give the outer tape back afterwards.
        const outer = state.activeTape;
        try {
          rerun();
          const xs = [saved[0]!, ...trainable];
          const { value, grads } = tf.engine().gradients(() => layer(saved[0]!, saved.slice(1)), xs, dy as tf.Tensor, true);
          value.dispose();
          return grads.map((g, i) => g ?? tf.zerosLike(xs[i]!));
        } finally {
          state.activeTape = outer;
        }
      },
    };
  });
  return f(x, ...trainable);
}

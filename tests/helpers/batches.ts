// A small training batch for the model tests, shaped as collate.ts makes them.
import * as tf from '@tensorflow/tfjs-core';
import { IGNORE_INDEX, type Batch } from '../../stages/lm/types.ts';

/** Two rows of 16 ids, right-padded (the second row's last 4 positions) with ignored labels on prompts and padding. */
export function rightPaddedBatch(): Batch {
  const [B, T] = [2, 16];
  const ids = Array.from({ length: B * T }, (_, i) => 3 + ((i * 7) % 40));
  const mask = ids.map((_, i) => (i >= T + 12 ? 0 : 1));
  const labels = ids.map((id, i) => (mask[i] === 0 || i % T < 4 ? IGNORE_INDEX : id));
  return {
    inputIds: tf.tensor2d(ids, [B, T], 'int32'),
    attentionMask: tf.tensor2d(mask, [B, T], 'int32'),
    labels: tf.tensor2d(labels, [B, T], 'int32'),
  };
}

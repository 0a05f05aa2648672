// The demo's model on one wasm thread: CPU time of a training step in each way pipelines/demo.pipe trains it, and of
// generating a batch of answers whose rows finish at different steps, as evaluate generates them.
//
//   node --import tsx bench/demo-steps.bench.ts [--steps 5] [--backend wasm]
//
// The model is the demo's (3 layers, width 64, 4 heads of 32, SwiGLU 256, 100 ids + the pause token) with random
// weights; batches are 16 rows of 134 tokens, the length of the demo's paused training rows. Training modes: every
// weight (step 1), the pause embedding only (pause=embed: the backward pass runs through every layer but needs no
// weight's gradient), LoRA on q_proj and v_proj with the pause embedding and head (the adapters' gradients in every
// layer), the pause head only (no backward pass through the layers). Generation: 50 prompts of 90 and 110 tokens,
// max_length 130, at most 48 new tokens: half the rows stop after 20 tokens, half after 40, as the demo's one- and
// two-step answers do; rows leave the batch once finished (generate.ts). Times are CPU time per step (the process's,
// which on a shared machine moves less than wall time), best of the timed steps.
import * as tf from '@tensorflow/tfjs-core';
import { parseArgs } from 'node:util';
import { initBackend } from '../stages/lm/backend.ts';
import type { LmConfig } from '../stages/lm/config.ts';
import { configureTraining, type TrainingSetup } from '../stages/lm/freeze.ts';
import { generate } from '../stages/lm/generate.ts';
import type { CausalLM } from '../stages/lm/model.ts';
import { builtinTokenizer } from '../stages/lm/tokenizer.ts';
import { createOptimizer, optimizerUpdate } from '../stages/lm/trainer.ts';
import type { Batch } from '../stages/lm/types.ts';
import { deviceRandomPauseModel } from './random-model.ts';

const { values: args } = parseArgs({ options: { steps: { type: 'string', default: '5' }, backend: { type: 'string', default: 'wasm' } } });
const steps = Number(args.steps);
if (!Number.isInteger(steps) || steps < 1) throw new Error(`--steps must be a whole number >= 1, got ${args.steps}`);
const info = await initBackend(args.backend);
console.log(`backend: ${info.device ?? info.name}`);

const VOCAB = 100;
const config: LmConfig = {
  modelType: 'llama', vocabSize: VOCAB, hiddenSize: 64, intermediateSize: 256, numLayers: 3, numHeads: 4, numKvHeads: 4, headDim: 32,
  ropeTheta: 10000, rmsNormEps: 1e-6, tieWordEmbeddings: false, maxPositionEmbeddings: 256, initializerRange: 0.02, bosId: 1, eosId: 2, padId: 3,
  pause: { tokenId: VOCAB, token: '<|pause|>' },
};
const ROWS = 16;
const T = 134;

/** CPU milliseconds `f` takes. */
async function cpuMs(f: () => Promise<unknown>): Promise<number> {
  const start = process.cpuUsage();
  await f();
  const used = process.cpuUsage(start);
  return (used.user + used.system) / 1e3;
}

function batch(seed: number): Batch {
  const ids = new Int32Array(ROWS * T);
  let s = seed >>> 0;
  for (let i = 0; i < ids.length; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    // About one pause in ten tokens, as in the demo's paused rows.
    ids[i] = i % 10 === 9 ? VOCAB : 4 + (s % (VOCAB - 4));
  }
  return { inputIds: tf.tensor2d(ids, [ROWS, T], 'int32'), attentionMask: tf.ones([ROWS, T], 'int32') as tf.Tensor2D, labels: tf.tensor2d(ids, [ROWS, T], 'int32') };
}

const MODES: Array<{ label: string; setup: TrainingSetup }> = [
  { label: 'every weight (step 1)', setup: { groups: 'all' } },
  { label: 'pause embedding (pause=embed)', setup: { groups: ['pauseEmbedding'] } },
  { label: 'LoRA q,v + pause embedding, head', setup: { groups: ['pauseEmbedding', 'pauseHead'], lora: { rank: 8, alpha: 16, dropout: 0.05, targetModules: ['q_proj', 'v_proj'] } } },
  { label: 'pause head (pause=head)', setup: { groups: ['pauseHead'] } },
];

for (const { label, setup } of MODES) {
  const model: CausalLM = deviceRandomPauseModel(config, 1);
  configureTraining(model, setup, () => {});
  const optimizer = createOptimizer(model, { weightDecay: 0, maxGradNorm: 1, precision: 'fp32' });
  const update = () => optimizerUpdate(model, optimizer, [() => batch(7)], 1e-3).then((u) => u.gradNorm.dispose());
  await update(); // the first step makes the prepared transposes and packed weights
  let best = Infinity;
  for (let s = 0; s < steps; s++) best = Math.min(best, await cpuMs(update));
  console.log(`train ${label.padEnd(34)} ${best.toFixed(0).padStart(5)} ms per step (${ROWS} × ${T})`);
  optimizer.dispose();
  model.dispose();
}

const tokenizer = builtinTokenizer().withPauseToken();
const model = deviceRandomPauseModel(config, 2);
// Rows 0, 2, 4, ... have 110-token prompts (20 new tokens within max_length 130), the others 90 (40 new tokens).
const prompts = Array.from({ length: 50 }, (_, r) => Array.from({ length: r % 2 === 0 ? 110 : 90 }, (_, i) => 4 + ((r * 31 + i * 7) % 90)));
const options = { maxNewTokens: 48, maxLength: 130, contextLength: 256 };
await generate(model, tokenizer, prompts.slice(0, 2), options);
let best = Infinity;
let stepsTaken = 0;
for (let s = 0; s < Math.max(2, Math.ceil(steps / 2)); s++) {
  best = Math.min(best, await cpuMs(() => generate(model, tokenizer, prompts, { ...options, onStep: (n) => (stepsTaken = n) })));
}
console.log(`generate 50 rows, 20 or 40 new tokens each: ${best.toFixed(0)} ms (${stepsTaken} steps, ${(best / stepsTaken).toFixed(1)} ms per step)`);
model.dispose();

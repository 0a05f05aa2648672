// GPU kernels per layer and per step of a training step and a decode step on webgpu (any adapter, lavapipe included).
//
//   node --import tsx bench/kernel-counts.bench.ts [--preset tiny|small|medium]
//
// A layer's share is the difference between the same model with 2 and with 3 layers; the rest of a step (embedding,
// head, loss, optimizer; or the head and token choice when decoding) is what remains of the 2-layer count. Counts
// need no real GPU: they are what a GPU would be asked to run. Training: batch 2 × 16 tokens, every weight trains,
// AdamW with clipping. Decoding: greedy, two prompts, after a first call that prepares the stacked weights.
import * as tf from '@tensorflow/tfjs-core';
import { parseArgs } from 'node:util';
import { initBackend } from '../stages/lm/backend.ts';
import { presetConfig, PRESETS } from '../stages/lm/config.ts';
import { generate } from '../stages/lm/generate.ts';
import { createModel } from '../stages/lm/model.ts';
import { AdamW } from '../stages/lm/optimizer.ts';
import { builtinTokenizer } from '../stages/lm/tokenizer.ts';
import { countGpuWork, type GpuWork } from '../stages/lm/webgpu/counters.ts';

const { values: args } = parseArgs({ options: { preset: { type: 'string', default: 'tiny' } } });
if (!(args.preset! in PRESETS)) {
  console.error(`kernel-counts.bench: unknown --preset ${args.preset} (expected ${Object.keys(PRESETS).join(', ')})`);
  process.exit(2);
}
const info = await initBackend('webgpu');
if (info.name !== 'webgpu') {
  console.error(`kernel-counts.bench: needs a WebGPU adapter (${info.notice}); eval "$(bash ../shared/tools/software-gpu.sh)" gives a software one`);
  process.exit(2);
}

const tok = builtinTokenizer();
/** The same tokenizer without an end-of-sequence id: generation then stops only at its token limit. */
const noEos = Object.create(tok, { eosId: { value: null } }) as typeof tok;

async function steps(layers: number): Promise<{ train: GpuWork; decode: GpuWork }> {
  const model = createModel({ ...presetConfig(args.preset!, tok, 64), numLayers: layers }, 3);
  const vars = model.trainableVariables();
  const names = new Map([...vars].map(([saved, v]) => [v.name, saved]));
  const optimizer = new AdamW(vars);
  const ids = tf.tensor2d(Array.from({ length: 32 }, (_, i) => 3 + ((i * 7) % 40)), [2, 16], 'int32');
  const batch = { inputIds: ids, attentionMask: tf.onesLike(ids), labels: ids };
  const trainStep = async () => {
    const { value, grads } = tf.variableGrads(() => model.lossParts(batch, { training: true }).loss, [...vars.values()]);
    await value.data();
    const norm = optimizer.apply(new Map(Object.entries(grads).map(([n, g]) => [names.get(n)!, g])), 1e-3);
    tf.dispose([value, norm, ...Object.values(grads)]);
  };
  await trainStep();
  const train = await countGpuWork(trainStep);
  const prompts = [tok.encode('5+6=', { addSpecialTokens: true }), tok.encode('9', { addSpecialTokens: true })];
  await generate(model, tok, prompts, { maxNewTokens: 1 });
  // Without EOS both runs go to their limits: the difference is exactly two decode steps.
  const short = await countGpuWork(() => generate(model, noEos, prompts, { maxNewTokens: 3 }));
  const long = await countGpuWork(() => generate(model, noEos, prompts, { maxNewTokens: 5 }));
  optimizer.dispose();
  model.dispose();
  tf.dispose([ids, batch.attentionMask]);
  const perStep = (key: 'dispatches' | 'reads' | 'bindGroups') => (long[key] - short[key]) / 2;
  return { train, decode: { dispatches: perStep('dispatches'), reads: perStep('reads'), bindGroups: perStep('bindGroups') } };
}

const two = await steps(2);
const three = await steps(3);
const layers = PRESETS[args.preset as keyof typeof PRESETS].numLayers;
for (const kind of ['train', 'decode'] as const) {
  const perLayer = three[kind].dispatches - two[kind].dispatches;
  const perStep = two[kind].dispatches - 2 * perLayer;
  const total = perLayer * layers + perStep;
  const bindLayer = three[kind].bindGroups - two[kind].bindGroups;
  const binds = bindLayer * layers + two[kind].bindGroups - 2 * bindLayer;
  console.log(`${kind}: ${perLayer} kernels per layer + ${perStep} per step; ${args.preset} (${layers} layers): ${total} per step, ` +
    `${(total / layers).toFixed(1)} per layer; ${two[kind].reads} host read${two[kind].reads === 1 ? '' : 's'} per step, ${binds} bind groups made per step`);
}

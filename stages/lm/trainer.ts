// Supervised fine-tuning loop as transformers' Trainer runs it for the reference: AdamW, linear schedule, clipping, eval, best model, resumable checkpoints, float32 or pure bfloat16.
import * as tf from '@tensorflow/tfjs-core';
import { readTensor } from './backend.ts';
import { discardCheckpoints, loadLatestCheckpoint, saveCheckpoint, type Checkpoint } from './checkpoint.ts';
import { collateTraining, DEFAULT_MAX_LENGTH, disposeBatch, encodeTrainingExample, padIdOf, responseTemplateIds, type EncodedExample, type QaExample } from './collate.ts';
import { createRng, deriveSeed } from '../data/random.ts';
import { packFrozenWeights, packingFrozenWeights } from './bf16-weights.ts';
import { trainableSummary, type TrainableSummary } from './freeze.ts';
import type { CausalLM } from './model.ts';
import { AdamW, roundToBfloat16 } from './optimizer.ts';
import type { HostTensor } from './safetensors.ts';
import { linearScheduleLr } from './schedule.ts';
import type { Batch, LanguageModel, Tokenizer } from './types.ts';
import { PackedBf16 } from './webgpu/bf16.ts';
import { GpuWatch } from './webgpu/gpu-errors.ts';

export interface TrainOptions {
  /** Examples per micro-batch, for training and evaluation (per_device_train/eval_batch_size). Default 8. */
  batchSize: number;
  /** Micro-batches whose gradients are averaged into one update (gradient_accumulation_steps). Default 1. */
  gradAccum: number;
  /** Passes over the training set (num_train_epochs); may be fractional. Default 1. */
  epochs: number;
  /** Updates to run; overrides epochs when set (max_steps > 0). Default null. */
  maxSteps: number | null;
  /** Peak learning rate. Default 5e-5. */
  lr: number;
  /** Updates of linear warmup from 0 (warmup_steps). Default 0. */
  warmup: number;
  /** AdamW decoupled weight decay. Default 0. */
  weightDecay: number;
  /** Global gradient-norm clip; null: none. Default 1.0. */
  maxGradNorm: number | null;
  /** Evaluate on the validation split every this many updates (and after the last, with evalAtEnd). Default 500. */
  evalSteps: number;
  /**
   * Also evaluate after the last update when it is no multiple of evalSteps, so the final weights can be the best.
   * false does what HF Trainer does: the best checkpoint is one of evalSteps, 2·evalSteps, … Default true.
   */
  evalAtEnd: boolean;
  /** Record the mean training loss every this many updates. Default 10. */
  loggingSteps: number;
  /** Write a resumable checkpoint every this many updates (needs checkpointDir). Default 500. */
  saveSteps: number;
  /** Longest sequence in tokens; longer examples are cut at the end. Default 600. */
  maxLength: number;
  /** Seed of the data order and the dropout masks. Default 42. */
  seed: number;
  /** Folder for resumable checkpoints (the stage's scratch folder); null: none. */
  checkpointDir: string | null;
  /** Put back the weights of the lowest validation loss at the end (load_best_model_at_end). Default true. */
  loadBestAtEnd: boolean;
  /**
   * `fp32` trains in float32. `bf16` trains as the seed did (a model loaded with torch_dtype=bfloat16, Trainer's
   * bf16=False): every weight is stored in bfloat16 and the trainable ones' gradients, AdamW moments and updates are
   * rounded where torch rounds them, with no float32 master copy; LoRA adapters stay float32 (PEFT's default
   * autocast_adapter_dtype). The forward and backward passes still compute in float32. Default `fp32`.
   */
  precision: Precision;
  /**
   * Activation checkpointing (gradient_checkpointing): each decoder layer keeps only its input for the backward pass
   * and runs again there. Same results (to float32 rounding), far less memory, more compute. Default false.
   */
  gradientCheckpointing: boolean;
}

export type Precision = 'fp32' | 'bf16';

export const DEFAULT_TRAIN_OPTIONS: TrainOptions = {
  batchSize: 8,
  gradAccum: 1,
  epochs: 1,
  maxSteps: null,
  lr: 5e-5,
  warmup: 0,
  weightDecay: 0,
  maxGradNorm: 1.0,
  evalSteps: 500,
  evalAtEnd: true,
  loggingSteps: 10,
  saveSteps: 500,
  maxLength: DEFAULT_MAX_LENGTH,
  seed: 42,
  checkpointDir: null,
  loadBestAtEnd: true,
  precision: 'fp32',
  gradientCheckpointing: false,
};

export interface TrainData {
  train: QaExample[];
  /** Held-out rows for the eval loss; empty: no evaluation and no best-model selection. */
  validation: QaExample[];
}

export interface TrainProgress {
  step: number;
  total: number;
  /**
   * The latest logged training loss: the mean over the updates since the logging step before it, as the log line
   * and the loss curve have it (one update's loss is too noisy to read). null before the first logging step.
   */
  loss: number | null;
}

export interface TrainHooks {
  progress?(p: TrainProgress): void;
  log?(line: string): void;
  /** Called once when the run continues from a checkpoint an interrupted run left, with its step. */
  resumed?(step: number, total: number): void;
  /** Called when the checkpoint left in checkpointDir cannot be read: training starts over (why is the argument). */
  checkpointDamaged?(why: string): void;
  /** Stops training between updates (the last checkpoint stays for a resume). */
  signal?: AbortSignal;
  /** Called after each update, before its checkpoint (tests use it to stop a run at a chosen step). */
  afterStep?(step: number): void | Promise<void>;
}

/** A curve point: [update step, loss]. */
export type CurvePoint = [number, number];

export interface EvalLoss {
  loss: number;
  /** Pause models: the LM and pause-head parts. */
  lmLoss?: number;
  ctrlLoss?: number;
}

export interface TrainResult {
  steps: number;
  /** Epochs done, fractional (updates / updates per epoch). */
  epochs: number;
  trainLossCurve: CurvePoint[];
  evalLossCurve: CurvePoint[];
  /** Eval loss after the last update; null without a validation split. */
  finalEvalLoss: number | null;
  bestEvalLoss: number | null;
  /** Step whose weights the model holds at the end when loadBestAtEnd; null without evaluation. */
  bestStep: number | null;
  /** Step the run resumed from, or null when it started fresh. */
  resumedFrom: number | null;
  /** Training examples whose answer template fell beyond maxLength (they add no loss, as in TRL). */
  examplesWithoutCompletion: number;
  /** Trainable and frozen parameter counts, as printed when training started. */
  trainable: TrainableSummary;
}

/** What a checkpoint must agree on for a resume to continue the same run. */
function fingerprint(opts: TrainOptions, trainable: string[], trainCount: number, validationCount: number): string {
  // Neither where checkpoints go nor recomputing activations changes what a resumed run computes.
  const { checkpointDir: _dir, gradientCheckpointing: _recompute, ...rest } = opts;
  return JSON.stringify({ ...rest, trainable, trainCount, validationCount });
}

function checkOptions(o: TrainOptions): void {
  const whole = (key: keyof TrainOptions, min: number) => {
    const v = o[key] as number;
    if (!Number.isInteger(v) || v < min) throw new Error(`training option ${key} must be a whole number >= ${min}, got ${v}`);
  };
  whole('batchSize', 1);
  whole('gradAccum', 1);
  whole('warmup', 0);
  whole('evalSteps', 1);
  whole('loggingSteps', 1);
  whole('saveSteps', 1);
  whole('maxLength', 2);
  whole('seed', 0);
  if (o.maxSteps !== null) whole('maxSteps', 1);
  if (!(o.epochs > 0)) throw new Error(`training option epochs must be > 0, got ${o.epochs}`);
  if (!(o.lr >= 0)) throw new Error(`training option lr must be >= 0, got ${o.lr}`);
  if (o.precision !== 'fp32' && o.precision !== 'bf16') throw new Error(`training option precision must be 'fp32' or 'bf16', got ${String(o.precision)}`);
}

/** Mean loss over a split, each batch weighted by its rows (as Trainer.evaluate averages per example). */
export async function evaluateLoss(model: LanguageModel, examples: EncodedExample[], batchSize: number, padId: number): Promise<EvalLoss> {
  if (examples.length === 0) throw new Error('evaluateLoss: no examples');
  const sums = { loss: 0, lmLoss: 0, ctrlLoss: 0 };
  let hasParts = false;
  const watch = new GpuWatch('evaluation');
  try {
    for (let start = 0; start < examples.length; start += batchSize) {
      const rows = examples.slice(start, start + batchSize);
      const batch = collateTraining(rows, padId);
      const parts = tf.tidy(() => {
        const p = model.lossParts(batch, { training: false });
        hasParts = p.lmLoss !== undefined && p.ctrlLoss !== undefined;
        return tf.stack([p.loss, p.lmLoss ?? p.loss, p.ctrlLoss ?? p.loss]);
      });
      disposeBatch(batch);
      const [loss, lm, ctrl] = await readTensor(parts);
      parts.dispose();
      await watch.check(`rows ${start + 1}-${start + rows.length}`);
      sums.loss += loss! * rows.length;
      sums.lmLoss += lm! * rows.length;
      sums.ctrlLoss += ctrl! * rows.length;
    }
  } finally {
    await watch.close();
  }
  const n = examples.length;
  return hasParts ? { loss: sums.loss / n, lmLoss: sums.lmLoss / n, ctrlLoss: sums.ctrlLoss / n } : { loss: sums.loss / n };
}

/** Host copies of the trainable weights, by saved name. */
async function snapshot(vars: Map<string, tf.Variable>): Promise<Map<string, HostTensor>> {
  const out = new Map<string, HostTensor>();
  for (const [name, v] of vars) out.set(name, { dtype: 'float32', shape: [...v.shape], data: Float32Array.from(await readTensor(v)) });
  return out;
}

function restore(vars: Map<string, tf.Variable>, weights: Map<string, HostTensor>, what: string): void {
  for (const [name, v] of vars) {
    const w = weights.get(name);
    if (!w) throw new Error(`${what} has no weights for ${name}`);
    if (w.data.length !== v.size) throw new Error(`${what}: ${name} has ${w.data.length} values, the variable has ${v.size}`);
    tf.tidy(() => v.assign(tf.tensor(w.data, v.shape, 'float32')));
  }
}

interface LoopState {
  step: number;
  /** Epoch of the next micro-batch and its index within that epoch's order. */
  epoch: number;
  batchInEpoch: number;
  trainLossCurve: CurvePoint[];
  evalLossCurve: CurvePoint[];
  /** Losses of the updates since the last logged point. */
  pendingLosses: number[];
  bestEvalLoss: number | null;
  bestStep: number | null;
}

/**
 * Fine-tunes the trainable variables of `model` on `data.train` (completion-only loss, see collate.ts). Each update
 * averages `gradAccum` micro-batches, clips, and steps AdamW at the linear schedule's rate. Data order is a seeded
 * shuffle per epoch, and dropout masks are seeded per micro-batch, so the run is a pure function of its inputs; with
 * `checkpointDir` a killed run resumes from the last checkpoint and ends with the same weights bit for bit.
 */
export async function train(model: CausalLM, tokenizer: Tokenizer, data: TrainData, options: Partial<TrainOptions> = {}, hooks: TrainHooks = {}): Promise<TrainResult> {
  const opts: TrainOptions = { ...DEFAULT_TRAIN_OPTIONS, ...options };
  checkOptions(opts);
  const log = hooks.log ?? (() => {});
  if (data.train.length === 0) throw new Error('training set is empty');
  const templateIds = responseTemplateIds(tokenizer);
  const encode = (rows: QaExample[]) => rows.map((r) => encodeTrainingExample(tokenizer, r, templateIds, opts.maxLength));
  const trainSet = encode(data.train);
  const validationSet = encode(data.validation);
  const padId = padIdOf(tokenizer);
  const withoutCompletion = trainSet.filter((e) => !e.hasCompletion).length;
  if (withoutCompletion === trainSet.length) {
    // Every loss would be 0 over 0 tokens: the run would "succeed" with an eval loss of 0 and unchanged weights.
    throw new Error(`none of the ${trainSet.length} training examples has an answer token within max_length ${opts.maxLength}: ` +
      'the question and the `### Answer:` template fill it; raise max_length');
  }
  if (withoutCompletion > 0) {
    log(`warning: ${withoutCompletion} of ${trainSet.length} training examples have no answer within ${opts.maxLength} tokens; they add no loss`);
  }

  const batchesPerEpoch = Math.ceil(trainSet.length / opts.batchSize);
  const updatesPerEpoch = Math.ceil(batchesPerEpoch / opts.gradAccum);
  const total = opts.maxSteps ?? Math.max(1, Math.ceil(opts.epochs * updatesPerEpoch));
  const trainable = trainableSummary(model, log);
  const vars = model.trainableVariables();
  const optimizer = createOptimizer(model, opts);
  if (opts.precision === 'bf16') log('precision: bfloat16 weights, gradients and AdamW moments (LoRA adapters float32)');
  if (packingFrozenWeights()) await packFrozenWeights(model, log);
  const checkpointingBefore = model.gradientCheckpointing;
  model.gradientCheckpointing = opts.gradientCheckpointing;
  if (opts.gradientCheckpointing) log('gradient checkpointing: each decoder layer keeps only its input and is recomputed in the backward pass');
  const print = fingerprint(opts, [...vars.keys()], trainSet.length, validationSet.length);

  const state: LoopState = {
    step: 0, epoch: 0, batchInEpoch: 0, trainLossCurve: [], evalLossCurve: [], pendingLosses: [],
    bestEvalLoss: null, bestStep: null,
  };
  let best: Map<string, HostTensor> | null = null;
  let resumedFrom: number | null = null;

  try {
    if (opts.checkpointDir) {
      const ckpt = await loadLatestCheckpoint(opts.checkpointDir).catch(async (error: unknown) => {
        // A damaged checkpoint (a full disk, a file cut short) would fail every run; it only saves time, so it goes.
        log(`ignoring the damaged checkpoint in ${opts.checkpointDir} and starting over: ${(error as Error).message}`);
        await discardCheckpoints(opts.checkpointDir!);
        hooks.checkpointDamaged?.((error as Error).message);
        return null;
      });
      if (ckpt && ckpt.state.fingerprint !== print) {
        log(`ignoring the checkpoint in ${opts.checkpointDir}: it was written with other settings`);
      } else if (ckpt) {
        restore(vars, ckpt.weights, 'checkpoint');
        optimizer.loadState(ckpt.optimizer);
        Object.assign(state, ckpt.state.loop as unknown as LoopState);
        best = ckpt.best;
        resumedFrom = state.step;
        log(`resuming from the checkpoint at step ${state.step} of ${total}`);
        hooks.resumed?.(state.step, total);
      }
    }

    const order = new Map<number, number[]>();
    const epochOrder = (epoch: number): number[] => {
      let o = order.get(epoch);
      if (!o) {
        o = createRng(deriveSeed(opts.seed, `epoch ${epoch}`)).shuffled(trainSet.map((_, i) => i));
        order.clear();
        order.set(epoch, o);
      }
      return o;
    };

    const runEval = async (): Promise<void> => {
      if (validationSet.length === 0) return;
      const { loss } = await evaluateLoss(model, validationSet, opts.batchSize, padId);
      state.evalLossCurve.push([state.step, loss]);
      log(`step ${state.step}/${total}: eval loss ${loss.toFixed(4)}`);
      if (state.bestEvalLoss === null || loss < state.bestEvalLoss) {
        state.bestEvalLoss = loss;
        state.bestStep = state.step;
        if (opts.loadBestAtEnd) best = await snapshot(vars);
      }
    };

    while (state.step < total) {
      if (hooks.signal?.aborted) throw hooks.signal.reason ?? new Error('training aborted');
      // One update: up to gradAccum micro-batches, never across an epoch boundary (as Trainer's last short group).
      const perm = epochOrder(state.epoch);
      const micro = Math.min(opts.gradAccum, batchesPerEpoch - state.batchInEpoch);
      const lr = linearScheduleLr(opts.lr, state.step, total, opts.warmup);
      const batches = Array.from({ length: micro }, (_, m) => {
        const b = state.batchInEpoch + m;
        return perm.slice(b * opts.batchSize, (b + 1) * opts.batchSize).map((i) => trainSet[i]!);
      });
      const update = await optimizerUpdate(model, optimizer, batches.map((rows) => () => collateTraining(rows, padId)), lr, {
        // Masks named by (step, micro-batch) rather than a running counter, so a resumed run draws the same ones.
        dropoutSeed: (m) => deriveSeed(opts.seed, `dropout ${state.step} ${m}`),
        where: (m) => `step ${state.step + 1} (epoch ${state.epoch + 1}, batch ${state.batchInEpoch + m + 1})`,
      });
      update.gradNorm.dispose();
      const stepLoss = update.loss;

      state.step += 1;
      state.batchInEpoch += micro;
      if (state.batchInEpoch >= batchesPerEpoch) {
        state.epoch += 1;
        state.batchInEpoch = 0;
      }
      state.pendingLosses.push(stepLoss);
      if (state.step % opts.loggingSteps === 0 || state.step === total) {
        const mean = state.pendingLosses.reduce((a, b) => a + b, 0) / state.pendingLosses.length;
        state.trainLossCurve.push([state.step, mean]);
        state.pendingLosses = [];
        log(`step ${state.step}/${total}: loss ${mean.toFixed(4)}, lr ${lr.toExponential(3)}`);
      }
      hooks.progress?.({ step: state.step, total, loss: state.trainLossCurve.at(-1)?.[1] ?? null });
      if (state.step % opts.evalSteps === 0 || (opts.evalAtEnd && state.step === total)) await runEval();
      await hooks.afterStep?.(state.step);
      if (opts.checkpointDir && state.step % opts.saveSteps === 0 && state.step < total) {
        const ckpt: Checkpoint = {
          state: { fingerprint: print, loop: state as unknown as Checkpoint['state'] },
          weights: await snapshot(vars),
          optimizer: await optimizer.exportState(),
          best,
        };
        await saveCheckpoint(opts.checkpointDir, state.step, ckpt);
      }
    }
    if (opts.loadBestAtEnd && best && state.bestStep !== state.step) {
      restore(vars, best, 'best weights');
      log(`loaded the best weights (step ${state.bestStep}, eval loss ${state.bestEvalLoss!.toFixed(4)})`);
    }
  } finally {
    optimizer.dispose();
    model.gradientCheckpointing = checkpointingBefore;
  }

  const finalEval = state.evalLossCurve.at(-1);
  return {
    steps: state.step,
    epochs: state.step / updatesPerEpoch,
    trainLossCurve: state.trainLossCurve,
    evalLossCurve: state.evalLossCurve,
    finalEvalLoss: finalEval && finalEval[0] === state.step ? finalEval[1] : null,
    bestEvalLoss: state.bestEvalLoss,
    bestStep: state.bestStep,
    resumedFrom,
    examplesWithoutCompletion: withoutCompletion,
    trainable,
  };
}

/** Saved names of the trainable variables torch would hold in bfloat16 under `precision`: all but LoRA adapters. */
function bfloat16Names(model: CausalLM, precision: Precision): string[] {
  if (precision === 'fp32') return [];
  const adapters = new Set(model.lora ? [...model.lora.adapters.values()].flatMap(({ a, b }) => [a, b]) : []);
  return [...model.trainableVariables()].filter(([, v]) => !adapters.has(v)).map(([name]) => name);
}

/**
 * Stores the model as a bfloat16 checkpoint loads: every weight, and every modules_to_save copy, rounded to
 * bfloat16. LoRA adapters stay float32 (PEFT casts them up). Idempotent.
 */
export function storeInBfloat16(model: CausalLM): void {
  const weights = [...model.weights.values(), ...(model.lora ? model.lora.saved.values() : [])];
  // Packed weights (bf16-weights.ts) hold bfloat16 values already.
  for (const w of weights) if (!(w instanceof PackedBf16)) tf.tidy(() => w.assign(roundToBfloat16(w)));
}

/**
 * The AdamW a run trains `model`'s trainable variables with; with `bf16` precision the model is stored in bfloat16
 * first and the optimizer keeps its trainable weights (LoRA adapters aside) in bfloat16.
 */
export function createOptimizer(model: CausalLM, opts: Pick<TrainOptions, 'weightDecay' | 'maxGradNorm' | 'precision'>): AdamW {
  if (opts.precision === 'bf16') storeInBfloat16(model);
  return new AdamW(model.trainableVariables(), {
    weightDecay: opts.weightDecay,
    maxGradNorm: opts.maxGradNorm,
    bfloat16: bfloat16Names(model, opts.precision),
  });
}

/** What one optimizer update did. */
export interface UpdateResult {
  /** Mean training loss over the update's micro-batches (what Trainer logs). */
  loss: number;
  /** Pause models: the LM and pause-head parts of the loss, averaged the same way. */
  lmLoss?: number;
  ctrlLoss?: number;
  /** Gradient norm before clipping; the caller disposes it. */
  gradNorm: tf.Scalar;
}

export interface UpdateOptions {
  /** Seed of micro-batch m's LoRA dropout masks. */
  dropoutSeed?: (micro: number) => number;
  /** Where micro-batch m sits in the run, for the error a non-finite loss raises. */
  where?: (micro: number) => string;
}

/**
 * One optimizer update as Trainer makes it: each micro-batch's loss divided by the group size before backward,
 * the gradients summed (in the variables' storage precision), then clipped and applied by AdamW at rate `lr`.
 * Batches are made one at a time (`makeBatch`) and freed after their backward pass. A non-finite loss stops
 * before the weights change.
 */
export async function optimizerUpdate(model: CausalLM, optimizer: AdamW, makeBatch: (() => Batch)[], lr: number, opts: UpdateOptions = {}): Promise<UpdateResult> {
  if (makeBatch.length === 0) throw new Error('optimizerUpdate: no micro-batches');
  const vars = model.trainableVariables();
  const bf16 = new Set(optimizer.bfloat16Names);
  const sums = { loss: 0, lmLoss: 0, ctrlLoss: 0 };
  let hasParts = false;
  let grads: Map<string, tf.Tensor> | null = null;
  // Out of memory or an invalid command on the GPU would otherwise read back a stale loss and train on nothing.
  const watch = new GpuWatch('training step');
  try {
    for (let m = 0; m < makeBatch.length; m++) {
      if (model.lora && opts.dropoutSeed) model.lora.dropoutSeed = opts.dropoutSeed(m);
      const step = microStep(model, vars, makeBatch[m]!(), makeBatch.length);
      const values = await readTensor(step.losses);
      step.losses.dispose();
      await watch.check(opts.where?.(m) ?? `micro-batch ${m + 1}`);
      // torch accumulates into .grad, which has the parameter's dtype.
      grads = accumulate(grads, step.grads, bf16);
      const loss = values[0]!;
      if (!Number.isFinite(loss)) {
        throw new Error(`training loss is ${loss} at ${opts.where?.(m) ?? `micro-batch ${m + 1}`}; lower the learning rate or check the data`);
      }
      sums.loss += loss;
      if (values.length === 3) {
        hasParts = true;
        sums.lmLoss += values[1]! / makeBatch.length;
        sums.ctrlLoss += values[2]! / makeBatch.length;
      }
    }
    const gradNorm = optimizer.apply(grads!, lr);
    try {
      await watch.close('optimizer update');
    } catch (err) {
      gradNorm.dispose();
      throw err;
    }
    return hasParts ? { loss: sums.loss, lmLoss: sums.lmLoss, ctrlLoss: sums.ctrlLoss, gradNorm } : { loss: sums.loss, gradNorm };
  } finally {
    if (grads) for (const g of grads.values()) g.dispose();
    // After an error elsewhere: balances the device's scope stack, and a device error, the cause, replaces the symptom.
    await watch.close();
  }
}

/**
 * Loss and gradients of one micro-batch, the loss divided by the group size as Trainer does before backward.
 * `losses` holds that loss, then (pause models) the undivided LM and pause-head parts.
 */
function microStep(model: LanguageModel, vars: Map<string, tf.Variable>, batch: Batch, groupSize: number): { losses: tf.Tensor1D; grads: Map<string, tf.Tensor> } {
  try {
    const names = new Map([...vars].map(([saved, v]) => [v.name, saved]));
    let parts: tf.Tensor[] = [];
    const { value, grads } = tf.variableGrads(() => {
      const p = model.lossParts(batch, { training: true });
      parts = p.lmLoss && p.ctrlLoss ? [tf.keep(p.lmLoss), tf.keep(p.ctrlLoss)] : [];
      return tf.div(p.loss, groupSize) as tf.Scalar;
    }, [...vars.values()]);
    const losses = tf.tidy(() => tf.stack([value, ...parts]) as tf.Tensor1D);
    for (const t of [value, ...parts]) t.dispose();
    const out = new Map<string, tf.Tensor>();
    for (const [tfName, g] of Object.entries(grads)) if (g) out.set(names.get(tfName)!, g);
    return { losses, grads: out };
  } finally {
    disposeBatch(batch);
  }
}

/**
 * Adds `next` into `sum` (disposing what it replaces and what it adds); without a sum, `next` becomes it. The
 * gradients of `bf16` variables are rounded as they arrive and after each addition, as a bfloat16 .grad holds them.
 */
function accumulate(sum: Map<string, tf.Tensor> | null, next: Map<string, tf.Tensor>, bf16: ReadonlySet<string>): Map<string, tf.Tensor> {
  const out = sum ?? new Map<string, tf.Tensor>();
  for (const [name, g] of next) {
    const prev = out.get(name);
    if (!prev && !bf16.has(name)) {
      out.set(name, g);
      continue;
    }
    out.set(name, tf.tidy(() => {
      const total = prev ? tf.add(prev, g) : g;
      return bf16.has(name) ? roundToBfloat16(total) : total;
    }));
    prev?.dispose();
    g.dispose();
  }
  return out;
}

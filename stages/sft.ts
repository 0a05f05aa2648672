// Stage kind `sft`: supervised fine-tuning of a model folder on a dataset, as the reference's SFTTrainer run, resumable from checkpoints.
import type { JsonValue } from '../runtime/json.ts';
import type { StageContext, StageKind, StageResult } from './kind.ts';
import type { TrainableGroup, TrainingSetup } from './lm/freeze.ts';
import type { CausalLM } from './lm/model.ts';
import { checkpointingAdvice, modelStageResources, parameterCount, readModelConfig, type CheckpointingAdvice, type MemoryShape } from './lm/memory-estimate.ts';
import type { Precision } from './lm/trainer.ts';

export interface SftTrainGroups {
  pause_embedding: boolean;
  pause_head: boolean;
  lm_head: boolean;
  lm_embeddings: boolean;
  all: boolean;
}

export interface SftLora {
  r: number;
  alpha: number;
  dropout: number;
  target_modules: string[];
  merge: boolean;
  modules_to_save: string[] | null;
}

export interface SftParams {
  batch_size: number;
  grad_accum: number;
  lr: number;
  epochs: number;
  max_steps: number | null;
  warmup: number;
  weight_decay: number;
  max_grad_norm: number | null;
  eval_steps: number;
  eval_at_end: boolean;
  logging_steps: number;
  save_steps: number;
  max_length: number;
  seed: number;
  train: SftTrainGroups;
  lora: SftLora | null;
  precision: Precision;
  /** Absent: decided at run time (checkpointingFor); the schema gives it no default, so adding it left every existing sft stage's key unchanged. */
  gradient_checkpointing?: boolean;
}

const TRAIN_DEFAULTS: SftTrainGroups = { pause_embedding: true, pause_head: true, lm_head: false, lm_embeddings: false, all: false };
const LORA_DEFAULTS: SftLora = { r: 16, alpha: 32, dropout: 0.05, target_modules: ['q_proj', 'v_proj'], merge: true, modules_to_save: null };

export const SFT: StageKind<SftParams> = {
  name: 'sft',
  version: 3,
  tableMetrics: ['eval_loss', 'best_step', 'steps', 'epochs', 'backend'],
  description:
    'Fine-tunes a model on a dataset\'s {question, answer} rows with the loss on the answer only, as the reference\'s TRL ' +
    'SFTTrainer: AdamW, linear decay, gradient clipping, eval loss on the validation split, best checkpoint kept. ' +
    'Chooses what trains (pause embedding, pause head, LM head, LM embeddings, LoRA). A killed run resumes from its last checkpoint.',
  params: {
    type: 'object',
    properties: {
      batch_size: { type: 'integer', minimum: 1, description: 'Examples per batch, for training and evaluation (per_device_train_batch_size).', default: 8 },
      grad_accum: { type: 'integer', minimum: 1, description: 'Batches whose gradients are averaged into one update (gradient_accumulation_steps).', default: 1 },
      lr: { type: 'number', exclusiveMinimum: 0, description: 'Peak learning rate of AdamW.', default: 5e-5 },
      epochs: { type: 'number', exclusiveMinimum: 0, description: 'Passes over the training split (num_train_epochs); may be fractional.', default: 1 },
      max_steps: {
        type: ['integer', 'null'],
        minimum: 1,
        description: 'Number of updates; overrides `epochs` when set (the data order reshuffles every epoch). null: from epochs.',
        default: null,
      },
      warmup: { type: 'integer', minimum: 0, description: 'Updates of linear warmup from 0 before the linear decay (warmup_steps).', default: 0 },
      weight_decay: { type: 'number', minimum: 0, description: 'AdamW decoupled weight decay.', default: 0 },
      max_grad_norm: { type: ['number', 'null'], exclusiveMinimum: 0, description: 'Global gradient norm the gradients are clipped to; null: no clipping.', default: 1.0 },
      eval_steps: { type: 'integer', minimum: 1, description: 'Evaluate the loss on the validation split every this many updates (the reference: 500; 100 in step 1).', default: 500 },
      eval_at_end: {
        type: 'boolean',
        description: 'Also evaluate after the last update, so the final weights can be the best ones. false does as HF Trainer ' +
          'did for the seed: only every eval_steps updates, so the best checkpoint is never the final partial window.',
        default: true,
      },
      logging_steps: { type: 'integer', minimum: 1, description: 'Record the mean training loss of the last this many updates (a point of the loss curve).', default: 10 },
      save_steps: { type: 'integer', minimum: 1, description: 'Write a resumable checkpoint every this many updates.', default: 500 },
      max_length: { type: 'integer', minimum: 2, description: 'Longest training sequence in tokens; longer examples are cut at the end (max_seq_length).', default: 600 },
      seed: { type: 'integer', minimum: 0, description: 'Seed of the data order, LoRA initialisation and dropout.', default: 42 },
      train: {
        type: 'object',
        description: 'Weight groups that train; everything else is frozen. With LoRA they train as PEFT modules_to_save copies.',
        properties: {
          pause_embedding: { type: 'boolean', description: 'The pause token\'s embedding row (new_embedding); skipped, with a note, on a model without a pause token.', default: true },
          pause_head: { type: 'boolean', description: 'The pause head ctrl_tok_clf; skipped, with a note, on a model without a pause token.', default: true },
          lm_head: { type: 'boolean', description: 'The LM head (lm_head).', default: false },
          lm_embeddings: { type: 'boolean', description: 'The original token embeddings (original_embedding, or embed_tokens on a plain model).', default: false },
          all: { type: 'boolean', description: 'Every weight (from-scratch training or full fine-tuning); not with LoRA.', default: false },
        },
        additionalProperties: false,
        default: TRAIN_DEFAULTS,
      },
      lora: {
        type: ['object', 'null'],
        description: 'LoRA adapters (the reference: r 16, alpha 32, dropout 0.05 on q_proj and v_proj); null: none.',
        properties: {
          r: { type: 'integer', minimum: 1, description: 'Rank of the update.', default: 16 },
          alpha: { type: 'number', exclusiveMinimum: 0, description: 'lora_alpha; the update is scaled by alpha / r.', default: 32 },
          dropout: { type: 'number', minimum: 0, exclusiveMaximum: 1, description: 'Dropout on the adapters\' input while training.', default: 0.05 },
          target_modules: {
            type: 'array',
            items: { type: 'string', enum: ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj'] },
            minItems: 1,
            uniqueItems: true,
            description: 'Linear modules of every layer that get adapters.',
            default: ['q_proj', 'v_proj'],
          },
          merge: { type: 'boolean', description: 'Fold the adapters into the weights when saving (merge_and_unload); false saves PEFT adapter files beside the base weights.', default: true },
          modules_to_save: {
            type: ['array', 'null'],
            items: { type: 'string', minLength: 1 },
            minItems: 1,
            uniqueItems: true,
            description: 'PEFT modules_to_save exactly as a config lists them (e.g. the seed\'s ["new_embedding", "lm_head", ' +
              '"original_embedding"]): every module whose name ends with an entry trains as a copy, and `train` no longer ' +
              'decides what trains besides LoRA, as in PEFT. null: the `train` groups.',
            default: null,
          },
        },
        additionalProperties: false,
        default: null,
      },
      precision: {
        enum: ['fp32', 'bf16'],
        description: 'fp32 trains in float32. bf16 trains as the seed did (torch_dtype bfloat16, bf16: False): weights, ' +
          'gradients and AdamW moments rounded to bfloat16 where torch rounds them, no float32 master copy, so at lr 5e-5 ' +
          'most updates round away; LoRA adapters stay float32 as PEFT keeps them. Forward passes compute in float32.',
        default: 'fp32',
      },
      gradient_checkpointing: {
        type: 'boolean',
        description: 'Activation checkpointing (Hugging Face\'s gradient_checkpointing): each decoder layer keeps only its input ' +
          'for the backward pass and is recomputed there. The same loss and gradients (up to float32 rounding) for about a third more compute, and ' +
          'a step holds one layer\'s activations instead of every layer\'s (what lets a 7B model train on one GPU). Unset: ' +
          'on when training on a GPU whose memory is known (nvidia-smi, or PAUSEPIPE_GPU_MEMORY_MIB) and the memory estimate ' +
          'without it exceeds that memory, else off.',
      },
    },
    additionalProperties: false,
  },
  inputs: {
    model: { description: 'Model folder to fine-tune (init_model, add_pause_token or sft).' },
    data: { description: 'Dataset folder with train.jsonl and validation.jsonl rows {question, answer}.' },
  },
  resources: (p, inputs) => modelStageResources(inputs?.model?.[0]?.dir, {
    batch: p.batch_size, seq: p.max_length, training: true, checkpointing: p.gradient_checkpointing === true, autoCheckpointing: p.gradient_checkpointing === undefined, trains: plannedTraining(p),
  }, TRAINING),
  // Training changes weights, not shapes (LoRA adapters merge into them, or are saved beside them).
  plannedModelConfig: (_p, inputs) => inputs.model?.[0],
  // Examples trained on: the updates' when max_steps is set, else the epochs' over the training split.
  work: (p, inputs) => {
    if (p.max_steps !== null) return p.max_steps * p.batch_size * p.grad_accum;
    const counts = inputs?.data?.[0]?.metrics.counts;
    const rows = typeof counts === 'object' && counts !== null && !Array.isArray(counts) ? counts.train : undefined;
    return typeof rows === 'number' ? p.epochs * rows : undefined;
  },
  sources: ['stages/sft.ts', 'stages/lm', 'stages/data/dataset.ts', 'stages/data/random.ts'],

  async run(ctx: StageContext<SftParams>): Promise<StageResult> {
    const p = ctx.params;
    const { checkDataPauseToken, fitLength, openModelFolder, refuseBeyondWasmMemory, startBackend } = await import('./lm/stage-support.ts');
    const { toHfConfig } = await import('./lm/config.ts');
    const { configureTraining, trainedGroups } = await import('./lm/freeze.ts');
    const { mergeLora } = await import('./lm/lora.ts');
    const { saveModel } = await import('./lm/model-io.ts');
    const { storeInBfloat16, train: runTraining } = await import('./lm/trainer.ts');
    const { readDataset } = await import('./data/dataset.ts');
    const ran = await startBackend(ctx);
    const modelRef = ctx.inputs.model![0]!;
    const dataRef = ctx.inputs.data![0]!;
    const { splits, info } = await readDataset(dataRef.dir, ['train', 'validation']);
    // Before loading, with what the params say trains (every weight, or an unknown few); after, with the exact count.
    const config = readModelConfig(modelRef.dir);
    if (config !== undefined) {
      const planned = trainingSetup(p, config.pause_token_id !== undefined && config.pause_token_id !== null, () => {});
      const everyWeight = planned.groups === 'all' ? { trainableParams: parameterCount(config) } : {};
      refuseBeyondWasmMemory(ran, config, { forward: true, backwardThroughLayers: throughLayers(planned), ...everyWeight }, TRAINING);
    }
    const { model, tokenizer } = await openModelFolder(modelRef.dir, ctx.log);
    try {
      checkDataPauseToken(info.pause_token, dataRef.stage, tokenizer, modelRef.stage);
      const setup = trainingSetup(p, model.hasPause, ctx.log);
      configureTraining(model, setup, ctx.log);
      const trained = trainedGroups(model);
      if (setup.modulesToSave && setup.groups !== 'all') noteOverride(setup.groups, trained, ctx.log);
      const maxLength = fitLength(p.max_length, model, 'max_length', ctx.log);
      const { packingFrozenWeights } = await import('./lm/bf16-weights.ts');
      const trainableParams = [...model.trainableVariables().values()].reduce((sum, v) => sum + v.size, 0);
      refuseBeyondWasmMemory(ran, toHfConfig(model.config), { forward: true, backwardThroughLayers: throughLayers(setup), trainableParams }, TRAINING);
      const advice = await gpuCheckpointingAdvice(ran, model, {
        batch: p.batch_size,
        seq: maxLength,
        trainableParams,
        // Packing needs values bfloat16 holds exactly, which bf16 precision guarantees.
        frozenBf16: packingFrozenWeights() && p.precision === 'bf16',
      });
      const checkpointing = checkpointingFor(p.gradient_checkpointing, advice, ctx.log, ctx.notice);
      const result = await runTraining(model, tokenizer, { train: splits.train, validation: splits.validation }, {
        batchSize: p.batch_size,
        gradAccum: p.grad_accum,
        epochs: p.epochs,
        maxSteps: p.max_steps,
        lr: p.lr,
        warmup: p.warmup,
        weightDecay: p.weight_decay,
        maxGradNorm: p.max_grad_norm,
        evalSteps: p.eval_steps,
        evalAtEnd: p.eval_at_end,
        loggingSteps: p.logging_steps,
        saveSteps: p.save_steps,
        maxLength,
        seed: p.seed,
        checkpointDir: ctx.scratchDir,
        precision: p.precision,
        gradientCheckpointing: checkpointing,
      }, {
        log: ctx.log,
        signal: ctx.signal,
        resumed: (step, total) => ctx.notice?.(`${ctx.name} resumes from the checkpoint its interrupted run left at step ${step} of ${total}`),
        checkpointDamaged: () => ctx.notice?.(`${ctx.name} starts over: the checkpoint its interrupted run left is damaged (its log says how)`),
        // The loss the log prints and the curve records (the mean since the last logging step), not one batch's.
        progress: ({ step, total, loss }) => ctx.progress({ step, total, ...(loss === null ? {} : { message: `loss ${loss.toFixed(4)}` }) }),
      });
      const merge = setup.lora ? (p.lora?.merge ?? LORA_DEFAULTS.merge) : true;
      // Merging into a bfloat16 model (PEFT's merge_and_unload) rounds the merged weights to bfloat16.
      if (p.precision === 'bf16' && model.lora && merge) {
        mergeLora(model, ctx.log);
        storeInBfloat16(model);
      }
      await saveModel(model, tokenizer, ctx.outDir, { mergeLora: merge });
      const explicit = setup.modulesToSave ?? null;
      const metrics: Record<string, JsonValue> = {
        train_loss_curve: result.trainLossCurve,
        eval_loss_curve: result.evalLossCurve,
        // The weights saved are the best ones (load_best_model_at_end), so their loss is the best eval loss.
        eval_loss: result.bestEvalLoss,
        final_eval_loss: result.finalEvalLoss,
        best_step: result.bestStep,
        steps: result.steps,
        epochs: result.epochs,
        trainable: {
          // What trained, whether the `train` groups or an explicit modules_to_save list chose it.
          groups: setup.groups === 'all' ? ['all'] : explicit ? trained : setup.groups,
          lora: setup.lora !== null && setup.lora !== undefined,
          trainable_params: result.trainable.trainable,
          total_params: result.trainable.total,
          modules_to_save: explicit,
        },
        trainable_rows: result.trainable.rows.map((r) => ({ group: r.group, trainable: r.trainable, frozen: r.frozen })),
        examples_without_completion: result.examplesWithoutCompletion,
        resumed_from: result.resumedFrom,
        precision: p.precision,
        gradient_checkpointing: checkpointing,
        ...ran,
      };
      return { metrics };
    } finally {
      model.dispose();
    }
  },
};

/**
 * The memory estimates of this training run against its GPU's memory (PAUSEPIPE_GPU_MEMORY_MIB, else nvidia-smi's),
 * or undefined where it does not run on a GPU or the GPU's memory is unknown.
 */
async function gpuCheckpointingAdvice(ran: { backend: string; device: string }, model: CausalLM, shape: Parameters<typeof checkpointingAdvice>[1]): Promise<CheckpointingAdvice & { gpuMiB: number } | undefined> {
  const onGpu = ran.backend === 'webgpu' || ran.device === '@tensorflow/tfjs-node-gpu';
  if (!onGpu) return undefined;
  const { detectGpuMemoryMiB } = await import('../runtime/gpus.ts');
  const gpuMiB = await detectGpuMemoryMiB();
  if (gpuMiB === undefined) return undefined;
  // The loaded model's config as config.json has it, the form the estimate reads.
  const { toHfConfig } = await import('./lm/config.ts');
  return { ...checkpointingAdvice(toHfConfig(model.config), shape, gpuMiB), gpuMiB };
}

/**
 * What trains, read from the params alone (the runner's host memory estimate comes before the model loads): the large
 * groups and whether gradients pass through the layers. modules_to_save entries naming the head or the embeddings count.
 */
export function plannedTraining(p: Pick<SftParams, 'train' | 'lora'>): NonNullable<MemoryShape['trains']> {
  const train = { ...TRAIN_DEFAULTS, ...p.train };
  const saved = p.lora?.modules_to_save ?? [];
  const lmHead = train.lm_head || saved.some((m) => m.endsWith('lm_head'));
  const lmEmbeddings = train.lm_embeddings || saved.some((m) => m.endsWith('embed_tokens') || m.endsWith('original_embedding'));
  const lora = p.lora ? { ...LORA_DEFAULTS, ...p.lora } : undefined;
  return {
    all: train.all, lmHead, lmEmbeddings, throughLayers: train.all || lora !== undefined || train.pause_embedding || lmEmbeddings,
    ...(lora ? { lora: { r: lora.r, targetModules: lora.target_modules } } : {}),
  };
}

/** Whether gradients flow back through the decoder layers: anything but the heads trains (LoRA adapters sit in them). */
function throughLayers(setup: TrainingSetup): boolean {
  return setup.groups === 'all' || Boolean(setup.lora) || setup.groups.some((g) => g === 'pauseEmbedding' || g === 'lmEmbeddings');
}

/** What sft says where training cannot fit the wasm backend's memory (stage-support.ts refuseBeyondWasmMemory). */
const TRAINING = { verb: 'train', otherwise: 'train fewer weights (training only lm_head or pause_head sends no gradient through the layers)' };

const gib = (mib: number) => `${(mib / 1024).toFixed(1)} GiB`;

/**
 * Whether the run recomputes activations: `gradient_checkpointing` when set; unset, on where the estimate without it
 * exceeds the GPU's memory (a 7B model on one GPU would otherwise run out of it), else off. A line says when the
 * estimate and an explicit false disagree.
 */
export function checkpointingFor(asked: boolean | undefined, advice: (CheckpointingAdvice & { gpuMiB: number }) | undefined, log: (line: string) => void, notice?: (line: string) => void): boolean {
  if (advice === undefined || !advice.needed) return asked ?? false;
  const estimate = `training is estimated at ${gib(advice.withoutMiB)} of GPU memory without activation checkpointing ` +
    `(${gib(advice.withMiB)} with it), and the GPU has ${gib(advice.gpuMiB)}`;
  if (asked === undefined) {
    log(`gradient_checkpointing: on, since ${estimate}; set gradient_checkpointing: false to keep every activation`);
    notice?.(`gradient checkpointing turned on: ${estimate}`);
    return true;
  }
  if (!asked) log(`gradient_checkpointing is false, but ${estimate}: the run may run out of GPU memory (set it to true, or leave it unset)`);
  return asked;
}

/**
 * What `sft` hands freeze.ts's configureTraining for these params: the `train` groups (pause groups skipped, with a
 * note, on a model without a pause token), LoRA, and an explicit PEFT modules_to_save list, which replaces the
 * groups as in PEFT (a note says where it and `train` disagree). Throws when nothing would train.
 */
export function trainingSetup(p: Pick<SftParams, 'train' | 'lora' | 'seed'>, hasPause: boolean, log: (line: string) => void): TrainingSetup {
  const train = { ...TRAIN_DEFAULTS, ...p.train };
  const lora = p.lora === null ? null : { ...LORA_DEFAULTS, ...p.lora };
  const groups = chosenGroups(train, hasPause, log);
  if (groups !== 'all' && groups.length === 0 && lora === null) {
    // Without this the optimizer fails later with a message that names no parameter.
    throw new Error(`nothing to train: \`train\` selects no weight group this model has${hasPause ? '' : ' (it has no pause token, so pause_embedding and pause_head do not apply)'}; ` +
      'set `train: { all: true }` or `lm_head: true`, add `lora`, or fine-tune a model from add_pause_token');
  }
  const setup: TrainingSetup = {
    groups,
    lora: lora && { rank: lora.r, alpha: lora.alpha, dropout: lora.dropout, targetModules: lora.target_modules, seed: p.seed },
  };
  if (lora?.modules_to_save) {
    setup.modulesToSave = lora.modules_to_save;
    log(`sft: lora.modules_to_save ${JSON.stringify(lora.modules_to_save)} decides what trains besides LoRA (PEFT semantics), not \`train\``);
  }
  return setup;
}

/** Says which groups an explicit modules_to_save list trains or freezes against what `train` says (the seed's flaw shows here). */
function noteOverride(wanted: TrainableGroup[], trained: TrainableGroup[], log: (line: string) => void): void {
  const frozen = wanted.filter((g) => !trained.includes(g));
  const extra = trained.filter((g) => !wanted.includes(g));
  if (frozen.length > 0) log(`sft: ${frozen.join(', ')} in \`train\` but not in modules_to_save: frozen, as PEFT does`);
  if (extra.length > 0) log(`sft: ${extra.join(', ')} not in \`train\` but in modules_to_save: trained, as PEFT does`);
}

/** The freeze.ts groups the `train` booleans select; pause groups on a model without a pause token are skipped with a note. */
function chosenGroups(train: SftTrainGroups, hasPause: boolean, log: (line: string) => void): TrainableGroup[] | 'all' {
  if (train.all) return 'all';
  const wanted: [boolean, TrainableGroup, string][] = [
    [train.pause_embedding, 'pauseEmbedding', 'pause_embedding'],
    [train.pause_head, 'pauseHead', 'pause_head'],
    [train.lm_head, 'lmHead', 'lm_head'],
    [train.lm_embeddings, 'lmEmbeddings', 'lm_embeddings'],
  ];
  const skipped = wanted.filter(([on, g]) => on && !hasPause && g.startsWith('pause')).map(([, , key]) => key);
  if (skipped.length > 0) log(`sft: the model has no pause token; ${skipped.join(' and ')} ignored`);
  return wanted.filter(([on, g]) => on && (hasPause || !g.startsWith('pause'))).map(([, g]) => g);
}

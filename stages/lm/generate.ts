// Batched autoregressive generation through the model's KV cache: greedy or seeded temperature sampling, left-padded prompts.
import * as tf from '@tensorflow/tfjs-core';
import { readTensor } from './backend.ts';
import { createRng, deriveSeed } from '../data/random.ts';
import { leftPad, padIdOf, promptText } from './collate.ts';
import { kernels } from './kernels.ts';
import { keepBatchRows } from './model.ts';
import type { KvCache, LanguageModel, Tokenizer } from './types.ts';
import { GpuWatch } from './webgpu/gpu-errors.ts';

/**
 * Backends whose decode step computes every row alone, to the bit, whatever else the batch holds (wasm's XNNPACK
 * products and tfjs's batched loop; the cpu backend's loops): there a finished row can leave the batch.
 */
const ROW_INDEPENDENT = new Set(['wasm', 'cpu']);

/**
 * Finished rows leave the batch once they are this share of it: dropping them copies the KV cache through host memory
 * once (a few steps' time at most), and each later step then costs in proportion to the rows left.
 */
const DROP_FINISHED_SHARE = 0.25;

export interface GenerateOptions {
  /** Most tokens generated per row (pauses count: they are tokens the model emits). */
  maxNewTokens: number;
  /** Most tokens per row, prompt included, as transformers' max_length; counted per row unless `maxLengthCountsPadding`. */
  maxLength?: number;
  /**
   * Count maxLength as transformers does: the left-padded batch width plus the generated tokens, so a short prompt
   * batched with a long one gets fewer new tokens. Default false: each row's own prompt, so batching never changes a row.
   */
  maxLengthCountsPadding?: boolean;
  /** 0 (default) decodes greedily; above 0 samples from softmax(log-probs / temperature). */
  temperature?: number;
  /** Seed of the sampling streams; row i draws from stream (seed, firstRow + i), so batch size never changes a sample. */
  seed?: number;
  /** Index of the first prompt in the whole set being generated (default 0). */
  firstRow?: number;
  /**
   * Positions the model can hold (its max_position_embeddings). The cache spans the padded batch, so every row stops
   * once the batch fills it; without this the model's own check fails the call instead.
   */
  contextLength?: number;
  /** Called after every decode step with the number of steps done (progress, memory checks). */
  onStep?: (step: number) => void;
  /** Called as each step is queued, with the host's milliseconds spent queuing it (the bench's host cost per step). */
  onQueued?: (hostMs: number) => void;
}

export interface GeneratedRow {
  /** Generated ids, the final EOS included when the row stopped on it; the prompt excluded. */
  ids: number[];
  /** Decoded without special tokens: pauses and EOS vanish (what answer extraction reads). */
  text: string;
  /** Decoded with special tokens, pauses as `<|pause|>` (what pause statistics read). */
  textWithSpecial: string;
  /** Pause tokens among `ids` (0 for models without a pause token). */
  pauses: number;
  /** True when the row ended on EOS rather than on a length limit. */
  stoppedAtEos: boolean;
  /** False when max_length left the row no room for a single token (its prompt fills it): an empty answer. */
  hadRoom: boolean;
}

/**
 * Generates a continuation for every prompt (token ids, BOS included) in one left-padded batch. The first step
 * runs the whole prompts through the model, every later step feeds one token per row against the cache.
 */
export async function generate(model: LanguageModel, tokenizer: Tokenizer, prompts: number[][], opts: GenerateOptions): Promise<GeneratedRow[]> {
  const temperature = opts.temperature ?? 0;
  if (!Number.isInteger(opts.maxNewTokens) || opts.maxNewTokens < 1) throw new Error(`generate: maxNewTokens must be a whole number >= 1, got ${opts.maxNewTokens}`);
  if (!(temperature >= 0)) throw new Error(`generate: temperature must be >= 0, got ${temperature}`);
  const padId = padIdOf(tokenizer);
  const eosId = tokenizer.eosId;
  const batch = leftPad(prompts, padId);
  const rows = batch.rows;
  const context = opts.contextLength ?? Infinity;
  if (batch.width > context) throw new Error(`generate: a prompt of ${batch.width} tokens does not fit the model's ${context} positions`);
  const promptLength = (p: number[]) => (opts.maxLengthCountsPadding ? batch.width : p.length);
  const limits = prompts.map((p) => Math.min(opts.maxNewTokens, opts.maxLength === undefined ? Infinity : opts.maxLength - promptLength(p)));
  const out: number[][] = prompts.map(() => []);
  const done = limits.map((l) => l <= 0);
  const stoppedAtEos = prompts.map(() => false);
  const rngs = prompts.map((_, i) => createRng(deriveSeed(opts.seed ?? 0, `sample row ${(opts.firstRow ?? 0) + i}`)));

  const k = kernels();
  // Steps the batch can take: its longest row limit, and the model's positions (the prompt fills width, each step one more).
  const stepLimit = Math.min(Math.max(...limits.map((l, r) => (done[r] ? 0 : l))), context - batch.width + 1);
  // A KV cache too large for the device, or any invalid command, would otherwise decode stale buffers into tokens.
  const watch = new GpuWatch('generation');
  let inputIds: tf.Tensor2D = tf.tensor2d(batch.ids, [rows, batch.width], 'int32');
  let mask: tf.Tensor2D = tf.tensor2d(batch.mask, [rows, batch.width], 'int32');
  let cache: KvCache | null = done.every(Boolean) ? null : model.newKvCache(batch.width + stepLimit - 1);
  /** Steps queued on the device whose tokens the host has not read yet, oldest first. */
  const queued: Array<{ ids: tf.Tensor1D; values: Promise<Float32Array | Int32Array> }> = [];
  let enqueued = 0;
  const steps = k.decodeSteps(model, temperature);
  const lookahead = k.decodeLookahead;
  /** The prompt each row of the computed batch answers: every one at first, then those not finished (dropRows). */
  let active = prompts.map((_, r) => r);
  const dropsRows = ROW_INDEPENDENT.has(tf.getBackend()) && lookahead === 0;
  try {
    for (let step = 0; !done.every(Boolean); step++) {
      // The next step's input is this step's device-chosen tokens, so it can be queued before they are read.
      while (enqueued < stepLimit && queued.length <= lookahead) {
        const uniforms = temperature > 0 ? Float64Array.from(active, (r) => rngs[r]!.next()) : null;
        const started = performance.now();
        const result = await steps.step(inputIds, mask, cache, uniforms);
        cache = result.cache;
        const ids = result.ids;
        queued.push({ ids, values: readTensor(ids) });
        opts.onQueued?.(performance.now() - started);
        enqueued++;
        if (enqueued === stepLimit) break;
        // A replayed step feeds its tokens to the next on the GPU and knows its columns: no inputs to make.
        if (steps.replaying) continue;
        inputIds.dispose();
        inputIds = tf.reshape(ids, [active.length, 1]);
        const grown: tf.Tensor2D = tf.tidy(() => tf.concat([mask, tf.ones([active.length, 1], 'int32')], 1));
        mask.dispose();
        mask = grown;
      }
      const { ids, values } = queued.shift()!;
      const next = await values;
      ids.dispose();
      await watch.check(`step ${step + 1}`);
      active.forEach((r, i) => {
        if (done[r]) return;
        const token = next[i]!;
        out[r]!.push(token);
        if (token === eosId) stoppedAtEos[r] = true;
        if (token === eosId || out[r]!.length >= limits[r]!) done[r] = true;
      });
      opts.onStep?.(step + 1);
      // The cache now holds width + step positions; the next step would add one.
      if (step + 1 >= stepLimit) done.fill(true);
      const keep = dropsRows && cache?.keepRows && queued.length === 0 ? rowsToKeep(active, done) : null;
      if (keep) {
        cache!.keepRows!(keep);
        inputIds = keepBatchRows(inputIds, keep);
        mask = keepBatchRows(mask, keep);
        active = keep.map((i) => active[i]!);
      }
    }
  } finally {
    // A step queued past the end is read before its tensor goes: a read must not outlive its tensor.
    for (const { ids, values } of queued) {
      await values.catch(() => undefined);
      ids.dispose();
    }
    steps.dispose();
    inputIds.dispose();
    mask.dispose();
    cache?.dispose();
    await watch.close();
  }
  return out.map((ids, r) => ({
    ids,
    text: tokenizer.decode(ids, { skipSpecialTokens: true }),
    textWithSpecial: tokenizer.decode(ids, { skipSpecialTokens: false }),
    pauses: tokenizer.pauseId === null ? 0 : ids.filter((id) => id === tokenizer.pauseId).length,
    stoppedAtEos: stoppedAtEos[r]!,
    hadRoom: limits[r]! > 0,
  }));
}

/**
 * Positions in the batch of the rows to go on with once enough of `active` (prompt indices) have finished, else null.
 * Two rows stay at least: a batch of one kv head's single row would take XNNPACK's product instead of tfjs's batched
 * loop in attention, whose sums round otherwise (ops.ts).
 */
function rowsToKeep(active: number[], done: boolean[]): number[] | null {
  const unfinished = active.flatMap((r, i) => (done[r] ? [] : [i]));
  if (unfinished.length === 0 || active.length - unfinished.length < Math.max(1, DROP_FINISHED_SHARE * active.length)) return null;
  const keep = new Set(unfinished);
  for (let i = 0; keep.size < Math.min(2, active.length); i++) keep.add(i);
  return keep.size < active.length ? [...keep].sort((a, b) => a - b) : null;
}

export interface GenerateManyOptions extends GenerateOptions {
  /** Prompts per batch (the reference evaluates 8 at a time). */
  batchSize: number;
  /** Called after every batch with the number of prompts done. */
  onBatch?: (done: number, total: number) => void;
  /** How an error names question `index` (0-based), e.g. by its file and line; default `question N`. */
  rowName?: (index: number) => string;
}

/**
 * Generates answers for questions in the reference's prompt format, `batchSize` prompts at a time. Sampling streams
 * follow the question's index, so results do not depend on the batch size.
 */
export async function generateAnswers(model: LanguageModel, tokenizer: Tokenizer, questions: string[], opts: GenerateManyOptions): Promise<GeneratedRow[]> {
  if (!Number.isInteger(opts.batchSize) || opts.batchSize < 1) throw new Error(`generate: batchSize must be a whole number >= 1, got ${opts.batchSize}`);
  const prompts = questions.map((q) => tokenizer.encode(promptText(q), { addSpecialTokens: true }));
  // Found before any batch runs, and named: the batch's own check could only say that some prompt is too long.
  const context = opts.contextLength ?? Infinity;
  const tooLong = prompts.flatMap((p, i) => (p.length > context ? [i] : []));
  if (tooLong.length > 0) {
    const first = tooLong[0]!;
    const name = opts.rowName?.(first) ?? `question ${first + 1}`;
    const more = tooLong.length > 1 ? ` (and ${tooLong.length - 1} more question${tooLong.length > 2 ? 's' : ''})` : '';
    throw new Error(`${name}: the prompt has ${prompts[first]!.length.toLocaleString('en-US')} tokens, more than the model's ${context} positions${more}`);
  }
  const results: GeneratedRow[] = [];
  for (let start = 0; start < prompts.length; start += opts.batchSize) {
    results.push(...(await generate(model, tokenizer, prompts.slice(start, start + opts.batchSize), { ...opts, firstRow: start })));
    opts.onBatch?.(results.length, prompts.length);
  }
  return results;
}

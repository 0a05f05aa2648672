// Turns {question, answer} rows into token ids and padded batches: the reference's prompt format, completion-only labels, padding sides.
import * as tf from '@tensorflow/tfjs-core';
import { IGNORE_INDEX, type Batch, type Tokenizer } from './types.ts';

/** Longest training sequence in tokens (the reference's max_seq_length); longer ones are cut at the end. */
export const DEFAULT_MAX_LENGTH = 600;

/** The text that ends every prompt; loss starts right after it. */
export const RESPONSE_TEMPLATE = ' ### Answer:';
/** What precedes the template in every example; it decides how the template's first characters tokenize. */
const TEMPLATE_CONTEXT = '\n\n';

export interface QaExample {
  question: string;
  answer: string;
}

/** Host-side token ids of one training example. */
export interface EncodedExample {
  ids: number[];
  /** Same length as ids; IGNORE_INDEX up to and including the response template. */
  labels: number[];
  /** False when the template was not found (cut off by max length): the example then adds no loss, as in TRL. */
  hasCompletion: boolean;
}

/** The test-time prompt: `### INPUT: {question}\n\n ### Answer:`. */
export function promptText(question: string): string {
  return `### INPUT: ${question}${TEMPLATE_CONTEXT}${RESPONSE_TEMPLATE}`;
}

/** The training text without the end-of-sequence token, which is appended as an id. */
export function trainingText(example: QaExample): string {
  return `${promptText(example.question)}${example.answer}`;
}

/**
 * Ids of the response template as it tokenizes inside an example. TRL's DataCollatorForCompletionOnlyLM
 * searches the ids of the template encoded on its own, which misses with tokenizers whose first piece depends
 * on the preceding text (SentencePiece's `▁`, byte-level `Ġ`); encoding it after its real context and
 * dropping the context's ids is the fix TRL's documentation recommends.
 */
export function responseTemplateIds(tokenizer: Tokenizer): number[] {
  const withContext = tokenizer.encode(TEMPLATE_CONTEXT + RESPONSE_TEMPLATE, { addSpecialTokens: false });
  const context = tokenizer.encode(TEMPLATE_CONTEXT, { addSpecialTokens: false });
  const isPrefix = context.length < withContext.length && context.every((id, i) => withContext[i] === id);
  const ids = isPrefix ? withContext.slice(context.length) : tokenizer.encode(RESPONSE_TEMPLATE, { addSpecialTokens: false });
  if (ids.length === 0) throw new Error(`the tokenizer encodes the response template ${JSON.stringify(RESPONSE_TEMPLATE)} to no ids`);
  return ids;
}

/** Start index of the last occurrence of `needle` in `haystack`, or -1 (TRL keeps the last match). */
function lastIndexOfSequence(haystack: number[], needle: number[]): number {
  for (let start = haystack.length - needle.length; start >= 0; start--) {
    let match = true;
    for (let j = 0; j < needle.length && match; j++) match = haystack[start + j] === needle[j];
    if (match) return start;
  }
  return -1;
}

/**
 * Tokenizes `prompt + answer + eos` (with the tokenizer's BOS, as SFTTrainer does), cuts it to `maxLength`
 * and masks every label up to and including the last occurrence of `templateIds`.
 */
export function encodeTrainingExample(tokenizer: Tokenizer, example: QaExample, templateIds: number[], maxLength = DEFAULT_MAX_LENGTH): EncodedExample {
  if (tokenizer.eosId === null) throw new Error('the tokenizer has no end-of-sequence token; training needs one so generation learns to stop');
  const ids = [...tokenizer.encode(trainingText(example), { addSpecialTokens: true }), tokenizer.eosId].slice(0, maxLength);
  const start = lastIndexOfSequence(ids, templateIds);
  if (start < 0) return { ids, labels: ids.map(() => IGNORE_INDEX), hasCompletion: false };
  const end = start + templateIds.length;
  return { ids, labels: ids.map((id, i) => (i < end ? IGNORE_INDEX : id)), hasCompletion: true };
}

/** Id written into padded positions (never attended to, never in the loss). */
export function padIdOf(tokenizer: Tokenizer): number {
  return tokenizer.padId ?? tokenizer.eosId ?? 0;
}

/**
 * A right-padded training batch. Padding is masked by position rather than by comparing ids with the pad id:
 * TRL's collator does the latter, which also drops the loss on EOS when pad = eos and teaches the model never to stop.
 */
export function collateTraining(examples: EncodedExample[], padId: number): Batch {
  if (examples.length === 0) throw new Error('collateTraining: empty batch');
  const width = Math.max(...examples.map((e) => e.ids.length));
  const n = examples.length * width;
  const ids = new Int32Array(n).fill(padId);
  const mask = new Int32Array(n);
  const labels = new Int32Array(n).fill(IGNORE_INDEX);
  examples.forEach((e, row) => {
    ids.set(e.ids, row * width);
    mask.fill(1, row * width, row * width + e.ids.length);
    labels.set(e.labels, row * width);
  });
  const shape: [number, number] = [examples.length, width];
  return { inputIds: tf.tensor2d(ids, shape, 'int32'), attentionMask: tf.tensor2d(mask, shape, 'int32'), labels: tf.tensor2d(labels, shape, 'int32') };
}

/** Host-side left-padded prompts: row r's ids end at the last column. */
export interface PromptBatch {
  ids: Int32Array; // [B, T]
  mask: Int32Array; // [B, T]
  rows: number;
  width: number;
}

/** Left-pads prompt ids, as generation needs every row's last token in the last column. */
export function leftPad(prompts: number[][], padId: number): PromptBatch {
  if (prompts.length === 0) throw new Error('leftPad: no prompts');
  if (prompts.some((p) => p.length === 0)) throw new Error('leftPad: a prompt has no tokens');
  const width = Math.max(...prompts.map((p) => p.length));
  const ids = new Int32Array(prompts.length * width).fill(padId);
  const mask = new Int32Array(prompts.length * width);
  prompts.forEach((p, row) => {
    const start = row * width + width - p.length;
    ids.set(p, start);
    mask.fill(1, start, (row + 1) * width);
  });
  return { ids, mask, rows: prompts.length, width };
}

/** Frees a batch's tensors. */
export function disposeBatch(batch: Batch): void {
  batch.inputIds.dispose();
  batch.attentionMask.dispose();
  batch.labels.dispose();
}

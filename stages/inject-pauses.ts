// Stage kind `inject_pauses`: the original pause injector over a dataset artifact (pattern and random pauses).
import path from 'node:path';
import type { JsonValue } from '../runtime/json.ts';
import type { CheckProblem, StageContext, StageKind, StageResult } from './kind.ts';
import { countPauses } from './data/answer.ts';
import { readDataset, writeDataset, type DatasetSplits, type Example } from './data/dataset.ts';
import { augmentRows, type PauseCodec, type PauseOptions } from './data/pauses.ts';
import { createRng, deriveSeed } from './data/random.ts';

type AugmentedSplit = 'train' | 'validation';

export interface InjectPausesParams {
  pause_token: string;
  patterns: Record<string, number>;
  n_random_pauses: number;
  variable: boolean;
  samples_per_example: number;
  seed: number;
  column: string;
  splits: AugmentedSplit[];
  val_fraction: number | null;
}

/** Every pattern that is not a valid regular expression, with the message saying why; empty when all compile. */
export function checkPatterns(patterns: Record<string, number>): { source: string; message: string }[] {
  const wrong: { source: string; message: string }[] = [];
  for (const source of Object.keys(patterns)) {
    try {
      new RegExp(source, 'g');
    } catch (err) {
      wrong.push({ source, message: `pattern ${JSON.stringify(source)} is not a valid regular expression (${(err as Error).message})` });
    }
  }
  return wrong;
}

/** What is wrong with a combination of parameters the schema cannot express, or null. */
export function checkSplitParams(p: InjectPausesParams): string | null {
  if (p.val_fraction !== null && !(p.splits.includes('train') && p.splits.includes('validation'))) {
    return 'val_fraction pools the train and validation rows and splits them after injecting: `splits` must list both';
  }
  return null;
}

/**
 * The validation rows of a split made after injection, as the original's loader makes it with
 * datasets' train_test_split(test_size=f): ceil(n × f) rows after a seeded shuffle; the rest train.
 */
function splitAfterInjection(rows: Example[], fraction: number, seed: number): { train: Example[]; validation: Example[] } {
  const order = createRng(deriveSeed(seed, 'split after injection')).shuffled(rows);
  const n = Math.ceil(rows.length * fraction);
  return { validation: order.slice(0, n), train: order.slice(n) };
}

/**
 * The injection over a whole dataset, without files: the chosen splits augmented (each from its own stream,
 * seeded by seed and split name), test and any split not chosen copied unchanged. The answer is read and
 * the result written to `column` (`answer` overwrites it, as in the seed experiment). With `val_fraction`, train
 * and validation are pooled (train rows first), injected as one split, and split again afterwards, as the original.
 */
export function injectDataset(data: DatasetSplits, p: InjectPausesParams, codec?: PauseCodec): DatasetSplits {
  const problem = checkSplitParams(p);
  if (problem) throw new Error(`inject_pauses: ${problem}`);
  const opts: PauseOptions & { samplesPerExample: number } = {
    pauseToken: p.pause_token,
    patterns: p.patterns,
    nRandomPauses: p.n_random_pauses,
    variable: p.variable,
    codec,
    samplesPerExample: p.samples_per_example,
  };
  const augmentRowsOf = (rows: Example[], stream: string): Example[] =>
    augmentRows(rows, createRng(deriveSeed(p.seed, stream)), opts, (row) => row.answer, (row, text) => ({ ...row, [p.column]: text }));
  if (p.val_fraction !== null) {
    const pooled = augmentRowsOf([...data.train, ...data.validation], 'train');
    return { ...splitAfterInjection(pooled, p.val_fraction, p.seed), test: data.test };
  }
  const augment = (split: AugmentedSplit): Example[] => (p.splits.includes(split) ? augmentRowsOf(data[split], split) : data[split]);
  return { train: augment('train'), validation: augment('validation'), test: data.test };
}

/** Mean pause tokens per row of a split's output column; 0 for an empty split. */
function meanPauses(rows: readonly Example[], column: string, pauseToken: string): number {
  if (rows.length === 0) return 0;
  const total = rows.reduce((sum, row) => sum + countPauses(String(row[column] ?? ''), pauseToken), 0);
  return total / rows.length;
}

export const INJECT_PAUSES: StageKind<InjectPausesParams> = {
  name: 'inject_pauses',
  version: 3,
  // Its only scalar metric is the pause token, the same on every row: no table for people (CSV and JSON keep it).
  tableMetrics: [],
  description:
    'Inserts pause tokens into the answers of a dataset like the original injector: after pattern matches, and at ' +
    'random positions between tokens (with a tokenizer) or words; optionally several samples per example. Seeded.',
  params: {
    type: 'object',
    properties: {
      pause_token: { type: 'string', minLength: 1, description: 'Text of the pause token.', default: '<|pause|>' },
      patterns: {
        type: 'object',
        additionalProperties: { type: 'integer', minimum: 0 },
        description:
          'Regular expression (JavaScript syntax) → number of pauses inserted right after each match, every match found on ' +
          'the original text and inserted from the last to the first, as the original injector. A pattern that is a ' +
          'newline character ("\\n" in a .pipe string) also puts that many pauses at the very start; "\\\\n" matches the ' +
          'same line breaks without that, as in the original. Empty: no pattern pauses.',
        default: {},
      },
      n_random_pauses: { type: 'integer', minimum: 0, description: 'Random pauses per text (the most, when `variable`).', default: 10 },
      variable: {
        type: 'boolean',
        description: 'Draw the number of random pauses uniformly in [0, n_random_pauses] for each text instead of always n.',
        default: true,
      },
      samples_per_example: {
        type: 'integer',
        minimum: 1,
        description: 'Passes over the dataset, each with fresh random pauses, concatenated (the seed used 5).',
        default: 1,
      },
      seed: { type: 'integer', description: 'Seed of the random pauses; the same seed gives the same dataset.', default: 42 },
      column: {
        type: 'string',
        minLength: 1,
        description: 'Column the answer with pauses is written to; `answer` replaces the answer, another name adds a column.',
        default: 'answer',
      },
      splits: {
        type: 'array',
        items: { type: 'string', enum: ['train', 'validation'] },
        uniqueItems: true,
        description: 'Splits to augment; the others, and always test, are copied unchanged.',
        default: ['train', 'validation'],
      },
      val_fraction: {
        type: ['number', 'null'],
        exclusiveMinimum: 0,
        exclusiveMaximum: 1,
        description:
          'null keeps the input\'s split (made before injecting: validation holds other questions than train). A number ' +
          'splits as the original did, after injecting: train and validation rows are pooled, injected, shuffled (seeded), ' +
          'and ceil(rows × val_fraction) of them become validation (datasets\' train_test_split), so validation rows are ' +
          'other pause draws of training questions.',
        default: null,
      },
    },
    additionalProperties: false,
  },
  inputs: {
    data: { description: 'Dataset to augment (gsm8k, synthetic_math or another data stage).' },
    tokenizer: {
      description: 'Model folder whose tokenizer.json places random pauses between tokens; without it, between words.',
      optional: true,
    },
  },
  sources: [
    'stages/inject-pauses.ts', 'stages/data/pauses.ts', 'stages/data/dataset.ts', 'stages/data/random.ts', 'stages/data/answer.ts',
    'stages/lm/tokenizer.ts',
  ],

  // At check time, so a typo in a pattern or a split that cannot be made fails before hours of upstream training.
  check: (p) => {
    const problems: CheckProblem[] = checkPatterns(p.patterns).map(({ source, message }) => ({ code: 'E_PARAM_VALUE', message, param: ['patterns', source], atKey: true }));
    const splitProblem = checkSplitParams(p);
    if (splitProblem) problems.push({ code: 'E_PARAM_VALUE', message: splitProblem, param: ['val_fraction'] });
    return problems;
  },

  async run(ctx: StageContext<InjectPausesParams>): Promise<StageResult> {
    const p = ctx.params;
    const wrong = checkPatterns(p.patterns);
    const problems = wrong.map((w) => w.message);
    const splitProblem = checkSplitParams(p);
    if (splitProblem) problems.push(splitProblem);
    if (problems.length > 0) throw new Error(`inject_pauses: ${problems.join('; ')}`);
    const source = ctx.inputs.data![0]!;
    const { splits } = await readDataset(source.dir);
    // Pauses injected into data that holds pauses already (the stage chained after itself): the counts would mix both.
    const already = p.splits.flatMap((split) => splits[split]).filter((r) => r.answer.includes(p.pause_token)).length;
    if (already > 0) {
      const line = `inject_pauses: ${already} row(s) of ${source.stage} hold ${p.pause_token} already (is it paused data?); their pauses add up`;
      ctx.log(line);
      ctx.notice?.(`${ctx.name}: ${line.slice('inject_pauses: '.length)}`);
    }

    let codec: PauseCodec | undefined;
    const tokenizerRef = ctx.inputs.tokenizer?.[0];
    if (tokenizerRef) {
      // Lazy: the tokenizer pulls in @huggingface/tokenizers, which a run without one never needs.
      const { loadTokenizer, pauseText, readsAsPause } = await import('./lm/tokenizer.ts');
      const loaded = await loadTokenizer(tokenizerRef.dir);
      // Random pauses take the tokenizer's pause id, pattern pauses and the counts `pause_token`: they must be one token.
      if (loaded.pauseId !== null && !readsAsPause(loaded, p.pause_token)) {
        throw new Error(`inject_pauses: the tokenizer of ${tokenizerRef.stage} has the pause token ${pauseText(loaded)}, not ${p.pause_token}: ` +
          'set pause_token to it, or give the tokenizer of a model without a pause token');
      }
      // Added as the original injector adds it (no lstrip/rstrip), so the spaces beside pattern pauses survive
      // the round trip; the training tokenizer strips them later either way.
      const tokenizer = loaded.pauseId === null ? loaded.withPauseToken(p.pause_token, { stripSpaces: false }) : loaded;
      codec = {
        encode: (text) => tokenizer.encode(text, { addSpecialTokens: false }),
        decode: (ids) => tokenizer.decode(ids, { skipSpecialTokens: false }),
        pauseId: tokenizer.pauseId!,
      };
      ctx.log(`inject_pauses: random pauses between tokens of ${path.join(tokenizerRef.dir, 'tokenizer.json')}`);
    }

    const out = injectDataset(splits, p, codec);
    const avgPauses: Record<string, JsonValue> = {};
    for (const split of p.splits) avgPauses[split] = meanPauses(out[split], p.column, p.pause_token);
    const info = await writeDataset(ctx.outDir, out, {
      source: `inject_pauses of ${source.stage}`,
      seed: p.seed,
      extra: {
        pause_token: p.pause_token, column: p.column, tokenizer: tokenizerRef ? tokenizerRef.stage : null,
        split: p.val_fraction === null ? 'before injection (the input\'s)' : `after injection, validation ${p.val_fraction}`,
      },
    });
    ctx.log(`inject_pauses: train ${info.counts.train}, validation ${info.counts.validation}, test ${info.counts.test}; ` +
      `pauses per row ${Object.entries(avgPauses).map(([s, v]) => `${s} ${(v as number).toFixed(2)}`).join(', ')}`);
    return { metrics: { counts: info.counts, avg_pauses: avgPauses, pause_token: p.pause_token } };
  },
};

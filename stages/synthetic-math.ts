// Stage kind `synthetic_math`: short GSM8K-format word problems a tiny character-level model can learn on a CPU.
import type { CheckProblem, StageContext, StageKind, StageResult } from './kind.ts';
import { SPLITS, writeDataset, type DatasetSplits, type Example, type Split } from './data/dataset.ts';
import { createRng, deriveSeed, type Rng } from './data/random.ts';

export type Operation = '+' | '-' | '*' | '/';
export const OPERATIONS: readonly Operation[] = ['+', '-', '*', '/'];

export interface SyntheticMathParams {
  train: number;
  validation: number;
  test: number;
  min_steps: number;
  max_steps: number;
  min_value: number;
  max_value: number;
  operations: Operation[];
  seed: number;
}

// A handful of fixed templates: a character-level model reads every character, so few surface forms and short
// sentences leave its capacity for the arithmetic. Names carry their pronoun; items their singular.
const PEOPLE: readonly (readonly [string, string])[] = [
  ['Ann', 'She'], ['Bob', 'He'], ['Eva', 'She'], ['Tom', 'He'], ['Mia', 'She'], ['Max', 'He'],
];
const ITEMS: readonly (readonly [string, string])[] = [
  ['pen', 'pens'], ['apple', 'apples'], ['card', 'cards'], ['book', 'books'], ['coin', 'coins'], ['egg', 'eggs'],
];
const STEP_SENTENCE: Record<Operation, (pronoun: string, b: number) => string> = {
  '+': (p, b) => `${p} gets ${b} more.`,
  '-': (p, b) => `${p} loses ${b}.`,
  '*': (p, b) => `${p} then has ${b} times as many.`,
  '/': (p, b) => `${p} keeps 1/${b} of them.`,
};

function apply(op: Operation, a: number, b: number): number {
  switch (op) {
    case '+': return a + b;
    case '-': return a - b;
    case '*': return a * b;
    case '/': return a / b;
  }
}

/**
 * Operands `b` that keep `current op b` a whole, non-negative number within the settings; `*` and `/` skip 0
 * and 1, which would make a step that changes nothing (or divides by zero).
 */
function operandChoices(op: Operation, current: number, s: SyntheticMathParams): number[] {
  const out: number[] = [];
  for (let b = s.min_value; b <= s.max_value; b++) {
    if (op === '-' && b > current) continue;
    if ((op === '*' || op === '/') && b < 2) continue;
    if (op === '/' && current % b !== 0) continue;
    out.push(b);
  }
  return out;
}

/**
 * One problem, or null when the drawn start leaves no allowed operation (e.g. only `-` and nothing left to
 * take away); the caller draws again. Answer lines read `3+4=<<3+4=7>>7`, the last line `#### 7`.
 */
export function generateProblem(rng: Rng, s: SyntheticMathParams): Example | null {
  const [name, pronoun] = rng.pick(PEOPLE);
  const [one, many] = rng.pick(ITEMS);
  const start = rng.intBetween(s.min_value, s.max_value);
  const nSteps = rng.intBetween(s.min_steps, s.max_steps);
  const sentences = [`${name} has ${start} ${start === 1 ? one : many}.`];
  const lines: string[] = [];
  let current = start;
  for (let i = 0; i < nSteps; i++) {
    const usable = s.operations.filter((op) => operandChoices(op, current, s).length > 0);
    if (usable.length === 0) return null;
    const op = rng.pick(usable);
    const b = rng.pick(operandChoices(op, current, s));
    const result = apply(op, current, b);
    sentences.push(STEP_SENTENCE[op](pronoun, b));
    lines.push(`${current}${op}${b}=<<${current}${op}${b}=${result}>>${result}`);
    current = result;
  }
  sentences.push('How many now?');
  return { question: sentences.join(' '), answer: `${lines.join('\n')}\n#### ${current}` };
}

/** Why the settings cannot work, or null. */
export function checkSettings(s: SyntheticMathParams): string | null {
  if (s.min_steps > s.max_steps) return `min_steps (${s.min_steps}) is above max_steps (${s.max_steps})`;
  if (s.min_value > s.max_value) return `min_value (${s.min_value}) is above max_value (${s.max_value})`;
  if (s.operations.length === 0) return 'operations is empty';
  return null;
}

// Draws allowed per wanted problem before giving up: generous, since duplicates are only common when the
// settings span few distinct problems, and then the error below is the useful outcome.
const ATTEMPTS_PER_PROBLEM = 50;

/**
 * All three splits, every question distinct across them. Each split draws from its own stream (seed and split
 * name), test first, then validation, then train, so growing the training set never changes the test set.
 */
export function generateSyntheticMath(s: SyntheticMathParams): DatasetSplits {
  const problem = checkSettings(s);
  if (problem) throw new Error(`synthetic_math: ${problem}`);
  const seen = new Set<string>();
  const out = {} as DatasetSplits;
  for (const split of ['test', 'validation', 'train'] as const satisfies readonly Split[]) {
    const rng = createRng(deriveSeed(s.seed, split));
    const wanted = s[split];
    const rows: Example[] = [];
    for (let attempt = 0; rows.length < wanted && attempt < wanted * ATTEMPTS_PER_PROBLEM + 1000; attempt++) {
      const example = generateProblem(rng, s);
      if (example === null || seen.has(example.question)) continue;
      seen.add(example.question);
      rows.push(example);
    }
    if (rows.length < wanted) {
      throw new Error(
        `synthetic_math: only ${rows.length} distinct problems for ${split} (wanted ${wanted}, ${seen.size} made in all); ` +
          'these settings allow too few different problems: widen min_value/max_value, the steps or the operations',
      );
    }
    out[split] = rows;
  }
  return out;
}

export const SYNTHETIC_MATH: StageKind<SyntheticMathParams> = {
  name: 'synthetic_math',
  version: 1,
  description:
    'Generated GSM8K-format word problems (question; reasoning lines like `3+4=<<3+4=7>>7`; `#### answer`), short and ' +
    'regular enough for a tiny character-level model to learn on a CPU in minutes. Seeded.',
  params: {
    type: 'object',
    properties: {
      train: { type: 'integer', minimum: 1, description: 'Number of training problems.', default: 2000 },
      validation: { type: 'integer', minimum: 0, description: 'Number of validation problems.', default: 200 },
      test: { type: 'integer', minimum: 1, description: 'Number of test problems.', default: 200 },
      min_steps: { type: 'integer', minimum: 1, description: 'Fewest arithmetic steps (answer lines) per problem.', default: 1 },
      max_steps: { type: 'integer', minimum: 1, description: 'Most arithmetic steps per problem.', default: 2 },
      min_value: { type: 'integer', minimum: 0, description: 'Smallest number a problem states.', default: 1 },
      max_value: { type: 'integer', minimum: 0, description: 'Largest number a problem states (results may be larger).', default: 9 },
      operations: {
        type: 'array',
        items: { type: 'string', enum: [...OPERATIONS] },
        minItems: 1,
        uniqueItems: true,
        description: 'Operations drawn from, each step uniformly among those that keep the result whole and non-negative.',
        default: ['+', '-'],
      },
      seed: { type: 'integer', description: 'Seed of the generator; the same seed gives the same problems.', default: 42 },
    },
    additionalProperties: false,
  },
  inputs: {},
  sources: ['stages/synthetic-math.ts', 'stages/data/dataset.ts', 'stages/data/random.ts'],

  // At check time, so swapped bounds are found at the value in the .pipe file rather than when the stage runs.
  check: (p) => {
    const problems: CheckProblem[] = [];
    if (p.min_steps > p.max_steps) problems.push({ code: 'E_PARAM_VALUE', message: `min_steps (${p.min_steps}) is above max_steps (${p.max_steps})`, param: ['min_steps'] });
    if (p.min_value > p.max_value) problems.push({ code: 'E_PARAM_VALUE', message: `min_value (${p.min_value}) is above max_value (${p.max_value})`, param: ['min_value'] });
    return problems;
  },

  async run(ctx: StageContext<SyntheticMathParams>): Promise<StageResult> {
    const splits = generateSyntheticMath(ctx.params);
    const lengths = SPLITS.flatMap((s) => splits[s].map((r) => r.question.length + r.answer.length));
    const info = await writeDataset(ctx.outDir, splits, { source: 'synthetic_math', seed: ctx.params.seed });
    const meanChars = lengths.reduce((a, b) => a + b, 0) / lengths.length;
    ctx.log(`synthetic_math: train ${info.counts.train}, validation ${info.counts.validation}, test ${info.counts.test}; ` +
      `question + answer ${meanChars.toFixed(1)} characters on average, ${Math.max(...lengths)} at most`);
    return { metrics: { counts: info.counts, mean_chars: meanChars, max_chars: Math.max(...lengths) } };
  },
};

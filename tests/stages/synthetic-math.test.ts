import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { readDataset, SPLITS, type DatasetSplits } from '../../stages/data/dataset.ts';
import { extractAnswer } from '../../stages/data/answer.ts';
import { generateSyntheticMath, SYNTHETIC_MATH, type SyntheticMathParams } from '../../stages/synthetic-math.ts';
import { makeContext, removeTempDirs, withDefaults } from './data/stage-context.ts';

const settings = (over: Partial<SyntheticMathParams> = {}): SyntheticMathParams => withDefaults(SYNTHETIC_MATH, over);
const all = (d: DatasetSplits) => SPLITS.flatMap((s) => d[s]);

const STEP = /^(\d+)([-+*/])(\d+)=<<(\d+)([-+*/])(\d+)=(\d+)>>(\d+)$/;

/** Checks one answer like GSM8K's calculator would; returns the number of steps. */
function checkAnswer(answer: string): number {
  const lines = answer.split('\n');
  const final = lines.pop()!;
  assert.match(final, /^#### \d+$/);
  let previous: number | null = null;
  for (const line of lines) {
    const m = STEP.exec(line);
    assert.ok(m, `step line ${JSON.stringify(line)}`);
    const [, a, op, b, a2, op2, b2, r, r2] = m!;
    assert.equal([a2, op2, b2, r2], [a, op, b, r], `the annotation repeats the step: ${line}`);
    const x = Number(a);
    const y = Number(b);
    const expected = op === '+' ? x + y : op === '-' ? x - y : op === '*' ? x * y : x / y;
    assert.is(Number(r), expected, line);
    if (previous !== null) assert.is(x, previous, `a step starts from the previous result: ${answer}`);
    previous = Number(r);
  }
  assert.is(extractAnswer(answer), String(previous), 'the #### answer is the last result');
  return lines.length;
}

test('the run writes the requested counts with the defaults of the demo', async () => {
  const ctx = await makeContext(SYNTHETIC_MATH);
  const result = await SYNTHETIC_MATH.run(ctx);
  const { splits, info } = await readDataset(ctx.outDir);
  assert.equal(info.counts, { train: 2000, validation: 200, test: 200 });
  assert.equal(result.metrics!.counts, info.counts);
  assert.is(info.source, 'synthetic_math');
  assert.is(info.seed, 42);
  // Short enough for a character-level model: well under 120 characters of question + answer.
  const lengths = all(splits).map((r) => r.question.length + r.answer.length);
  assert.ok(Math.max(...lengths) < 120, `longest ${Math.max(...lengths)}`);
  assert.ok((result.metrics!.mean_chars as number) < 90, `mean ${result.metrics!.mean_chars}`);
});

test('every annotation computes correctly and #### is the last result', () => {
  for (const operations of [['+', '-'], ['+', '-', '*', '/']] as const) {
    const data = generateSyntheticMath(settings({ train: 300, validation: 20, test: 50, max_steps: 3, max_value: 12, operations: [...operations] }));
    const steps = all(data).map((r) => checkAnswer(r.answer));
    assert.equal([...new Set(steps)].sort(), [1, 2, 3]);
  }
});

test('each operation reads as its sentence; * and / never use 0 or 1; - never goes below 0', () => {
  const data = generateSyntheticMath(settings({ train: 400, validation: 0, test: 1, min_value: 0, operations: ['+', '-', '*', '/'] }));
  const seen = new Set<string>();
  for (const row of all(data)) {
    for (const line of row.answer.split('\n').slice(0, -1)) {
      const [, , op, b, , , , r] = STEP.exec(line)!;
      seen.add(op!);
      const sentence = { '+': `gets ${b} more.`, '-': `loses ${b}.`, '*': `then has ${b} times as many.`, '/': `keeps 1/${b} of them.` }[op!]!;
      assert.ok(row.question.includes(sentence), `${row.question} / ${line}`);
      if (op === '*' || op === '/') assert.ok(Number(b) >= 2, line);
      assert.ok(Number(r) >= 0, line);
    }
  }
  assert.equal([...seen].sort(), ['*', '+', '-', '/']);
});

test('the question states the start and every operand in order', () => {
  const data = generateSyntheticMath(settings({ train: 50, validation: 0, test: 1 }));
  for (const row of all(data)) {
    const numbers = (row.question.match(/\d+/g) ?? []).map(Number);
    const fromAnswer = row.answer.split('\n').slice(0, -1).flatMap((l, i) => {
      const [, a, , b] = STEP.exec(l)!;
      return i === 0 ? [Number(a), Number(b)] : [Number(b)];
    });
    assert.equal(numbers, fromAnswer, row.question);
    assert.match(row.question, /^[A-Z][a-z]+ has \d+ [a-z]+\. .* How many now\?$/);
  }
});

test('the same seed gives the same files; another seed other problems', async () => {
  const files = async (seed: number): Promise<string> => {
    const ctx = await makeContext(SYNTHETIC_MATH, { params: { train: 100, validation: 10, test: 10, seed } });
    await SYNTHETIC_MATH.run(ctx);
    return (await Promise.all(SPLITS.map((s) => readFile(path.join(ctx.outDir, `${s}.jsonl`), 'utf8')))).join('');
  };
  const a = await files(42);
  assert.is(await files(42), a);
  assert.is.not(await files(43), a);
});

test('questions are distinct across splits, and more training data leaves the test set alone', () => {
  const small = generateSyntheticMath(settings({ train: 500 }));
  const large = generateSyntheticMath(settings({ train: 1500 }));
  const questions = all(small).map((r) => r.question);
  assert.is(new Set(questions).size, questions.length);
  assert.equal(large.test, small.test);
  assert.equal(large.validation, small.validation);
});

test('settings that allow too few distinct problems fail with advice', () => {
  // One start value, one operand, one operation: 6 names × 6 items = 36 distinct questions.
  const narrow = settings({ train: 40, validation: 0, test: 1, min_value: 2, max_value: 2, max_steps: 1, operations: ['+'] });
  assert.throws(() => generateSyntheticMath(narrow), (err: Error) =>
    err.message === 'synthetic_math: only 35 distinct problems for train (wanted 40, 36 made in all); these settings allow too few ' +
      'different problems: widen min_value/max_value, the steps or the operations');
});

test('contradictory bounds are reported', () => {
  assert.throws(() => generateSyntheticMath(settings({ min_steps: 3, max_steps: 2 })), /min_steps \(3\) is above max_steps \(2\)/);
  assert.throws(() => generateSyntheticMath(settings({ min_value: 5, max_value: 4 })), /min_value \(5\) is above max_value \(4\)/);
  // At check time too, pointing at the value, before anything runs.
  const ctx = { workspace: '/w', inputs: [], pipelineFiles: [], file: '/w/main.pipe', outputs: [], upstream: {} };
  assert.equal(SYNTHETIC_MATH.check!(settings({ min_steps: 3, max_steps: 2, min_value: 5, max_value: 4 }), ctx), [
    { code: 'E_PARAM_VALUE', message: 'min_steps (3) is above max_steps (2)', param: ['min_steps'] },
    { code: 'E_PARAM_VALUE', message: 'min_value (5) is above max_value (4)', param: ['min_value'] },
  ]);
  assert.equal(SYNTHETIC_MATH.check!(settings({}), ctx), []);
});

test('every parameter has a description and a default', () => {
  for (const [name, schema] of Object.entries(SYNTHETIC_MATH.params.properties)) {
    assert.ok(schema.description.length > 10, name);
    assert.ok('default' in schema, name);
  }
});

test.after(removeTempDirs);

test.run();

import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { existsSync } from 'node:fs';
import { copyFile, readFile } from 'node:fs/promises';
import path from 'node:path';
import { readDataset, writeDataset, type DatasetSplits } from '../../stages/data/dataset.ts';
import { injectDataset, INJECT_PAUSES, type InjectPausesParams } from '../../stages/inject-pauses.ts';
import { artifactRef, makeContext, removeTempDirs, SHARED, tempDir, withDefaults } from './data/stage-context.ts';

const PAUSE = '<|pause|>';
const pausesIn = (text: string): number => text.split(PAUSE).length - 1;
/** Word mode joins inserted pauses with single spaces: removing them gives the words back. */
const withoutPauses = (text: string): string => text.split(' ').filter((w) => w !== PAUSE).join(' ');

const DATA: DatasetSplits = {
  train: [
    { question: 'Ann has 3 pens. She gets 4 more. How many now?', answer: '3+4=<<3+4=7>>7\n#### 7', id: 1 },
    { question: 'Bob has 5 eggs. He loses 2. How many now?', answer: '5-2=<<5-2=3>>3\n#### 3', id: 2 },
  ],
  validation: [{ question: 'Eva has 2 cards. She gets 2 more. How many now?', answer: '2+2=<<2+2=4>>4\n#### 4', id: 3 }],
  test: [{ question: 'Tom has 9 coins. He loses 1. How many now?', answer: '9-1=<<9-1=8>>8\n#### 8', id: 4 }],
};

const params = (over: Partial<InjectPausesParams> = {}): InjectPausesParams => withDefaults(INJECT_PAUSES, over);

async function datasetArtifact(data: DatasetSplits = DATA): Promise<string> {
  const dir = await tempDir('inject-in');
  await writeDataset(dir, data, { source: 'test rows', seed: null });
  return dir;
}

test('the defaults are the seed experiment: 0–10 random pauses, no patterns, train and validation, seed 42', () => {
  const p = params();
  assert.equal(
    { token: p.pause_token, patterns: p.patterns, n: p.n_random_pauses, variable: p.variable, seed: p.seed, column: p.column, splits: p.splits, val_fraction: p.val_fraction },
    { token: PAUSE, patterns: {}, n: 10, variable: true, seed: 42, column: 'answer', splits: ['train', 'validation'], val_fraction: null },
  );
});

test('the stage augments train and validation, copies test unchanged, and pins seed 42', async () => {
  const ctx = await makeContext(INJECT_PAUSES, {
    params: { patterns: { '\n': 1 }, n_random_pauses: 2, variable: false },
    inputs: { data: [artifactRef('data', 'synthetic_math', await datasetArtifact())] },
  });
  const result = await INJECT_PAUSES.run(ctx);
  const { splits, info } = await readDataset(ctx.outDir);
  assert.equal(splits.test, DATA.test);
  assert.equal(await readFile(path.join(ctx.outDir, 'test.jsonl'), 'utf8'), JSON.stringify(DATA.test[0]) + '\n');
  // Hand-checked: the `\n` rule gives `P3+4=<<3+4=7>>7\nP#### 7`; its 2 words take random pauses at {2, 0}.
  const P = PAUSE;
  assert.equal([...splits.train, ...splits.validation].map((r) => r.answer), [
    `${P} ${P}3+4=<<3+4=7>>7\n${P}#### 7 ${P}`,
    `${P}5-2=<<5-2=3>>3\n${P}#### ${P} ${P} 3`,
    `${P}2+2=<<2+2=4>>4\n${P}#### ${P} ${P} 4`,
  ]);
  assert.equal(splits.train.map((r) => [r.question, r.id]), DATA.train.map((r) => [r.question, r.id]));
  assert.equal(result.metrics, { counts: { train: 2, validation: 1, test: 1 }, avg_pauses: { train: 4, validation: 4 }, pause_token: PAUSE });
  assert.equal(info, {
    counts: { train: 2, validation: 1, test: 1 }, source: 'inject_pauses of data', seed: 42, pause_token: PAUSE, column: 'answer', tokenizer: null,
    split: 'before injection (the input\'s)',
  });
});

test('pauses injected into data that holds pauses already are said: their counts add up', async () => {
  const first = await makeContext(INJECT_PAUSES, {
    params: { n_random_pauses: 2, variable: false },
    inputs: { data: [artifactRef('data', 'synthetic_math', await datasetArtifact())] },
  });
  await INJECT_PAUSES.run(first);
  assert.equal(first.logs.filter((l) => l.includes('already')), []);
  const again = await makeContext(INJECT_PAUSES, {
    params: { n_random_pauses: 2, variable: false },
    inputs: { data: [artifactRef('paused', 'inject_pauses', first.outDir)] },
  });
  await INJECT_PAUSES.run(again);
  assert.equal(again.logs.filter((l) => l.includes('already')), [`inject_pauses: 3 row(s) of paused hold ${PAUSE} already (is it paused data?); their pauses add up`]);
});

test('injectDataset: hand-worked pattern pauses without random ones', () => {
  const out = injectDataset(DATA, params({ patterns: { '>>': 1, '\n': 2 }, n_random_pauses: 0 }));
  assert.is(out.train[0]!.answer, `${PAUSE}${PAUSE}3+4=<<3+4=7>>${PAUSE}7\n${PAUSE}${PAUSE}#### 7`);
  assert.is(out.validation[0]!.answer, `${PAUSE}${PAUSE}2+2=<<2+2=4>>${PAUSE}4\n${PAUSE}${PAUSE}#### 4`);
  assert.equal(out.test, DATA.test);
});

test('samples_per_example repeats the whole split with fresh randomness, pass after pass', () => {
  const out = injectDataset(DATA, params({ n_random_pauses: 3, variable: false, samples_per_example: 3 }));
  assert.equal(out.train.map((r) => r.id), [1, 2, 1, 2, 1, 2]);
  assert.equal(out.validation.map((r) => r.id), [3, 3, 3]);
  assert.ok(out.train.every((r) => pausesIn(r.answer) === 3));
  assert.equal(out.train.map((r) => withoutPauses(r.answer)), [...DATA.train, ...DATA.train, ...DATA.train].map((r) => r.answer));
  assert.ok(new Set(out.train.filter((r) => r.id === 1).map((r) => r.answer)).size > 1, 'passes draw fresh positions');
  assert.equal(out.test, DATA.test);
});

test('variable counts stay within [0, n] and reach both ends', () => {
  const many: DatasetSplits = { train: Array.from({ length: 200 }, (_, i) => ({ question: `q${i}`, answer: 'a b c d\n#### 1' })), validation: [], test: [] };
  const counts = new Set(injectDataset(many, params({ n_random_pauses: 2, variable: true })).train.map((r) => pausesIn(r.answer)));
  assert.equal([...counts].sort(), [0, 1, 2]);
});

test('only the chosen splits are augmented; another column keeps the answer', () => {
  const out = injectDataset(DATA, params({ splits: ['train'], column: 'answer_with_pauses', n_random_pauses: 1, variable: false }));
  assert.equal(out.validation, DATA.validation);
  assert.equal(out.train.map((r) => r.answer), DATA.train.map((r) => r.answer));
  assert.ok(out.train.every((r) => pausesIn(String(r.answer_with_pauses)) === 1));
});

test('the same seed gives the same dataset, another seed another one, per split independently', () => {
  const p = params({ n_random_pauses: 5 });
  assert.equal(injectDataset(DATA, p), injectDataset(DATA, p));
  assert.not.equal(injectDataset(DATA, p).train, injectDataset(DATA, { ...p, seed: 7 }).train);
  // Augmenting validation too does not change the train rows: each split has its own stream.
  assert.equal(injectDataset(DATA, { ...p, splits: ['train'] }).train, injectDataset(DATA, p).train);
});

test('val_fraction splits after injecting, as the original: pooled rows, ceil(n × f) validation rows drawn from every question', () => {
  const out = injectDataset(DATA, params({ n_random_pauses: 2, variable: false, samples_per_example: 4, val_fraction: 0.25 }));
  // 3 questions × 4 samples = 12 rows; datasets' train_test_split takes ceil(12 × 0.25) = 3 for validation.
  assert.equal([out.train.length, out.validation.length], [9, 3]);
  const ids = [...out.train, ...out.validation].map((r) => r.id as number).sort();
  assert.equal(ids, [1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3]);
  // Validation holds other pause draws of questions train also has (the seed's eval loss is measured on those).
  const trainIds = new Set(out.train.map((r) => r.id));
  assert.ok(out.validation.every((r) => trainIds.has(r.id)), JSON.stringify(out.validation.map((r) => r.id)));
  assert.ok(out.validation.every((r) => pausesIn(r.answer) === 2));
  assert.equal(out.test, DATA.test);
  // ceil as train_test_split, not round: 12 rows at 0.1 give 2 validation rows (round(1.2) would be 1).
  const twelve = injectDataset({ train: [DATA.train[0]!], validation: [], test: [] }, params({ n_random_pauses: 0, samples_per_example: 12, val_fraction: 0.1 }));
  assert.equal([twelve.train.length, twelve.validation.length], [10, 2]);
});

test('val_fraction needs both train and validation augmented; the stage says so', async () => {
  assert.throws(() => injectDataset(DATA, params({ splits: ['train'], val_fraction: 0.1 })),
    /^inject_pauses: val_fraction pools the train and validation rows and splits them after injecting: `splits` must list both$/);
  // At check time too, pointing at the value, before any upstream stage has run.
  assert.equal(INJECT_PAUSES.check!(params({ splits: ['train'], val_fraction: 0.1 }), { workspace: '/w', inputs: ['data'], pipelineFiles: [], file: '/w/main.pipe', outputs: [], upstream: {} }), [{
    code: 'E_PARAM_VALUE', param: ['val_fraction'],
    message: 'val_fraction pools the train and validation rows and splits them after injecting: `splits` must list both',
  }]);
});

test('a pattern that is not a regular expression is reported', async () => {
  const ctx = await makeContext(INJECT_PAUSES, {
    params: { patterns: { '(': 1 } },
    inputs: { data: [artifactRef('data', 'synthetic_math', await datasetArtifact())] },
  });
  try {
    await INJECT_PAUSES.run(ctx);
    assert.unreachable('should fail');
  } catch (err) {
    assert.match((err as Error).message, /^inject_pauses: pattern "\(" is not a valid regular expression \(/);
  }
});

const FIXTURES = path.join(SHARED, 'fixtures/hf');
const HAVE_FIXTURES = existsSync(path.join(FIXTURES, 'tokenizer-sp.json'));
if (!HAVE_FIXTURES) console.log(`inject-pauses.test: skipping tokenizer mode: ${FIXTURES} is absent (CI has ../shared)`);

for (const fixture of ['tokenizer-sp.json', 'tokenizer-bytelevel.json', 'tokenizer-bytelevel-pause.json']) {
  (HAVE_FIXTURES ? test : test.skip)(`tokenizer mode (${fixture}) puts pauses between tokens and decodes back`, async () => {
    const model = await tempDir('inject-tok');
    await copyFile(path.join(FIXTURES, fixture), path.join(model, 'tokenizer.json'));
    const ctx = await makeContext(INJECT_PAUSES, {
      params: { n_random_pauses: 4, variable: false, samples_per_example: 2 },
      inputs: { data: [artifactRef('data', 'gsm8k', await datasetArtifact())], tokenizer: [artifactRef('base', 'model', model)] },
    });
    const result = await INJECT_PAUSES.run(ctx);
    const { splits, info } = await readDataset(ctx.outDir);
    assert.is(info.tokenizer, 'base');
    assert.equal(result.metrics!.avg_pauses, { train: 4, validation: 4 });
    const originals = [...DATA.train, ...DATA.train, ...DATA.validation, ...DATA.validation].map((r) => r.answer);
    const augmented = [...splits.train, ...splits.validation];
    // A SentencePiece decoder drops the space of the first piece only when it comes first, so a pause at
    // index 0 leaves `▁2` showing as ` 2` (the Hugging Face decoder does the same): ignore one leading space.
    assert.equal(augmented.map((r) => r.answer.replaceAll(PAUSE, '').replace(/^ /, '')), originals);
    // Between tokens, not words: some pause lands inside a space-separated word (e.g. `<<3+4<|pause|>=7>>7`).
    assert.ok(augmented.some((r) => r.answer.split(/\s/).some((w) => w.includes(PAUSE) && w !== PAUSE)));
    assert.equal(splits.test, DATA.test);
  });
}

(HAVE_FIXTURES ? test : test.skip)('tokenizer mode keeps the spaces beside pattern pauses, as the original injector\'s plain added token does', async () => {
  const model = await tempDir('inject-tok');
  await copyFile(path.join(FIXTURES, 'tokenizer-bytelevel.json'), path.join(model, 'tokenizer.json'));
  const rows: DatasetSplits = {
    train: [{ question: 'Ann has 3 pens. She gets 4 more. How many now?', answer: 'She has 3 + 4 = 7 pens.\n#### 7' }],
    validation: [],
    test: DATA.test,
  };
  const ctx = await makeContext(INJECT_PAUSES, {
    params: { patterns: { '=': 1 }, n_random_pauses: 2, variable: false, splits: ['train'] },
    inputs: { data: [artifactRef('data', 'gsm8k', await datasetArtifact(rows))], tokenizer: [artifactRef('base', 'model', model)] },
  });
  await INJECT_PAUSES.run(ctx);
  const { splits } = await readDataset(ctx.outDir);
  const answer = splits.train[0]!.answer;
  assert.is(pausesIn(answer), 3);
  // The pattern pause and the space after it survive the tokenizer round trip of the random pauses.
  assert.ok(answer.includes(`=${PAUSE} `), answer);
  assert.is(answer.replaceAll(PAUSE, ''), rows.train[0]!.answer);
});

(HAVE_FIXTURES ? test : test.skip)('a tokenizer whose pause token is not `pause_token` is refused: the two would mix in one answer', async () => {
  const model = await tempDir('inject-tok-pause');
  await copyFile(path.join(FIXTURES, 'tokenizer-bytelevel-pause.json'), path.join(model, 'tokenizer.json'));
  const ctx = await makeContext(INJECT_PAUSES, {
    params: { pause_token: '<pause>', patterns: { '\n': 1 } },
    inputs: { data: [artifactRef('data', 'gsm8k', await datasetArtifact())], tokenizer: [artifactRef('surgery', 'add_pause_token', model)] },
  });
  // It wrote `<pause>` after each line break and `<|pause|>` at random places, and counted only the first.
  await INJECT_PAUSES.run(ctx).then(() => assert.unreachable(), (err) => assert.is(err.message,
    'inject_pauses: the tokenizer of surgery has the pause token <|pause|>, not <pause>: set pause_token to it, or give the tokenizer of a model without a pause token'));
});

test.after(removeTempDirs);

test.run();

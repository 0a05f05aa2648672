import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import {
  checkExample,
  DataError,
  formatProblems,
  parseRows,
  readDataset,
  splitTrainValidation,
  writeDataset,
  type RowProblem,
} from '../../../stages/data/dataset.ts';
import { createRng } from '../../../stages/data/random.ts';
import { removeTempDirs, tempDir } from './stage-context.ts';

const row = (q: string, a: string): string => JSON.stringify({ question: q, answer: a });

test('JSON lines: good rows kept, blank lines and CRLF endings accepted', () => {
  const text = `${row('q1', 'a #### 1')}\r\n\n${row('q2', 'a #### 2')}\n`;
  const { rows, problems } = parseRows(text, 'train.jsonl', { requireFinalAnswer: true });
  assert.equal(problems, []);
  assert.equal(rows, [{ question: 'q1', answer: 'a #### 1' }, { question: 'q2', answer: 'a #### 2' }]);
});

test('JSON lines: every bad row is reported with its line and what is wrong', () => {
  const text = [
    row('q1', 'x\n#### 1'),
    '{"question": "q2"}',
    '{"question": 3, "answer": ["a"]}',
    '[1, 2]',
    row('q5', 'no final line'),
    '{"question": "", "answer": "#### 6"}',
    '{"question": "q7", "answer": "#### 7"',
  ].join('\n');
  const { rows, problems } = parseRows(text, 'data/train.jsonl', { requireFinalAnswer: true });
  assert.is(rows.length, 1);
  assert.equal(problems.slice(0, 5), [
    { file: 'data/train.jsonl', line: 2, message: 'missing "answer"' },
    { file: 'data/train.jsonl', line: 3, message: '"question" must be a string, got number 3; "answer" must be a string, got an array' },
    { file: 'data/train.jsonl', line: 4, message: 'expected an object {"question": string, "answer": string}, got an array' },
    { file: 'data/train.jsonl', line: 5, message: '"answer" has no final answer line `#### <number>`' },
    { file: 'data/train.jsonl', line: 6, message: '"question" is empty' },
  ]);
  assert.is(problems[5]!.line, 7);
  assert.match(problems[5]!.message, /^not valid JSON \(.+\)$/);
});

test('the final-answer check is only made when asked for', () => {
  assert.is(checkExample({ question: 'q', answer: 'free text' }), null);
  assert.is(checkExample({ question: 'q', answer: 'free text' }, { requireFinalAnswer: true }), '"answer" has no final answer line `#### <number>`');
  assert.is(checkExample({ question: 'q', answer: 'a', extra: 1 }), null);
});

test('a final answer must hold a digit: commas, signs and decimals pass, `#### ,` does not', () => {
  const check = (answer: string) => checkExample({ question: 'q', answer }, { requireFinalAnswer: true });
  assert.equal(['x\n#### 1,234', 'x\n#### -3', 'x\n#### 2.5'].map(check), [null, null, null]);
  assert.is(check('x\n#### ,'), '"answer" has no digit in its final answer `#### <number>`');
  assert.is(check('x\n#### .'), '"answer" has no digit in its final answer `#### <number>`');
});

test('a JSON array export is read too, its bad rows located by the line they start on', () => {
  const text = `[\n  ${row('q1', '#### 1')},\n  {"question": "q2",\n   "answer": 2},\n  ${row('q3', '#### 3')}\n]\n`;
  const { rows, problems } = parseRows(text, 'train.json', { requireFinalAnswer: true });
  assert.equal(rows.map((r) => r.question), ['q1', 'q3']);
  assert.equal(problems, [{ file: 'train.json', line: 3, message: 'row 2: "answer" must be a string, got number 2' }]);
});

test('a broken row of a JSON array is reported at its line; the other rows still count', () => {
  const { rows, problems } = parseRows(`[\n${row('q', '#### 1')},\n{"question": }\n]`, 'test.json');
  assert.equal(rows, [{ question: 'q', answer: '#### 1' }]);
  assert.is(problems.length, 1);
  assert.is(problems[0]!.file, 'test.json');
  assert.is(problems[0]!.line, 3);
  assert.match(problems[0]!.message, /^row 2: not valid JSON \([^\n]+\)$/);
});

test('a JSON array with a stray comma, a missing `]` or text after it says so', () => {
  const one = row('q', '#### 1');
  assert.equal(parseRows(`[${one}, ]`, 'a.json').problems.map((p) => [p.line, p.message.slice(0, 22)]), [[1, 'row 2: not valid JSON ']]);
  assert.equal(parseRows(`[\n${one}`, 'a.json').problems, [{ file: 'a.json', line: 2, message: 'the JSON array is not closed with `]`' }]);
  assert.equal(parseRows(`[${one}]\n]`, 'a.json').problems, [{ file: 'a.json', line: 1, message: 'unexpected text after the closing `]`' }]);
  assert.equal(parseRows('[]', 'a.json'), { rows: [], problems: [] });
});

test('problem listings are capped with a count of the rest', () => {
  const problems: RowProblem[] = Array.from({ length: 23 }, (_, i) => ({ file: 'f.jsonl', line: i + 1, message: 'bad' }));
  const text = formatProblems(problems);
  assert.is(text.split('\n').length, 21);
  assert.is(text.split('\n')[0], '  f.jsonl:1: bad');
  assert.is(text.split('\n')[20], '  … and 3 more');
  const err = new DataError('2 bad rows:', problems.slice(0, 2));
  assert.is(err.message, '2 bad rows:\n  f.jsonl:1: bad\n  f.jsonl:2: bad');
});

test('writeDataset and readDataset round-trip the splits, extra fields and dataset.json', async () => {
  const dir = await tempDir('dataset');
  const splits = {
    train: [{ question: 'q1', answer: 'a1', source_id: 7 }],
    validation: [{ question: 'q2', answer: 'a2' }],
    test: [{ question: 'q3', answer: 'line\n#### 3' }, { question: 'q4', answer: 'a4' }],
  };
  const info = await writeDataset(dir, splits, { source: 'unit test', seed: 5, extra: { note: 'x' } });
  assert.equal(info, { counts: { train: 1, validation: 1, test: 2 }, source: 'unit test', seed: 5, note: 'x' });
  assert.is(await readFile(path.join(dir, 'test.jsonl'), 'utf8'), '{"question":"q3","answer":"line\\n#### 3"}\n{"question":"q4","answer":"a4"}\n');
  const back = await readDataset(dir);
  assert.equal(back.splits, splits);
  assert.equal(back.info, info);
});

test('readDataset names a missing split file and lists bad rows', async () => {
  const dir = await tempDir('dataset-bad');
  await writeDataset(dir, { train: [], validation: [], test: [] }, { source: 's', seed: null });
  await writeFile(path.join(dir, 'validation.jsonl'), '{"question": "q"}\n');
  try {
    await readDataset(dir);
    assert.unreachable('should fail');
  } catch (err) {
    assert.instance(err, DataError);
    assert.is((err as Error).message, `The dataset in ${dir} has 1 bad row(s):\n  ${path.join(dir, 'validation.jsonl')}:1: missing "answer"`);
  }
});

test('readDataset reads a folder without dataset.json (an sh step\'s output) and counts its rows', async () => {
  const dir = await tempDir('dataset-no-info');
  await writeFile(path.join(dir, 'train.jsonl'), `${row('q1', 'a1')}\n${row('q2', 'a2')}\n`);
  await writeFile(path.join(dir, 'validation.jsonl'), `${row('q3', 'a3')}\n`);
  await writeFile(path.join(dir, 'test.jsonl'), '');
  const back = await readDataset(dir);
  assert.equal(back.splits.train, [{ question: 'q1', answer: 'a1' }, { question: 'q2', answer: 'a2' }]);
  assert.equal(back.info, { counts: { train: 2, validation: 1, test: 0 }, source: dir, seed: null });
  await writeFile(path.join(dir, 'dataset.json'), '{oops');
  try {
    await readDataset(dir);
    assert.unreachable('should fail');
  } catch (err) {
    assert.match((err as Error).message, `${path.join(dir, 'dataset.json')}: not valid JSON`);
  }
});

test('readDataset reads a split file with a byte order mark and refuses bytes that are not UTF-8, at their line', async () => {
  const dir = await tempDir('dataset-encoding');
  await writeFile(path.join(dir, 'train.jsonl'), `\uFEFF${row('q1', 'a1')}\n`);
  await writeFile(path.join(dir, 'validation.jsonl'), Buffer.concat([Buffer.from(`${row('q2', 'a2')}\n\n`), Buffer.from([0x7b, 0xff, 0x0a])]));
  await writeFile(path.join(dir, 'test.jsonl'), '');
  try {
    await readDataset(dir);
    assert.unreachable('should fail');
  } catch (err) {
    const file = path.join(dir, 'validation.jsonl');
    assert.is((err as DataError).problems[0]!.message, 'not UTF-8 text: byte 0xFF at byte 2 of the line (save the file as UTF-8)');
    assert.equal((err as DataError).problems.map((p) => [p.file, p.line]), [[file, 3], [file, 3]]);
  }
  await writeFile(path.join(dir, 'validation.jsonl'), `${row('q2', 'a2')}\n`);
  assert.equal((await readDataset(dir)).splits.train, [{ question: 'q1', answer: 'a1' }]);
});

test('a split the reader does not need may be missing (sft reads no test split); a needed one is named', async () => {
  const dir = await tempDir('dataset-no-test');
  await writeFile(path.join(dir, 'train.jsonl'), `${row('q1', 'a1')}\n`);
  await writeFile(path.join(dir, 'validation.jsonl'), `${row('q2', 'a2')}\n`);
  const back = await readDataset(dir, ['train', 'validation']);
  assert.equal(back.info.counts, { train: 1, validation: 1, test: 0 });
  try {
    await readDataset(dir);
    assert.unreachable('should fail');
  } catch (err) {
    assert.is((err as Error).message,
      `${path.join(dir, 'test.jsonl')}: missing; this stage reads train.jsonl, validation.jsonl, test.jsonl from the dataset folder (dataset.json optional)`);
  }
});

test('the split puts round(n × fraction) shuffled rows in validation and the rest in train', () => {
  const rows = Array.from({ length: 25 }, (_, i) => i);
  const { train, validation } = splitTrainValidation(rows, 0.1, createRng(42).shuffled);
  assert.is(validation.length, 3); // round(2.5) = 3: halves round up
  assert.is(train.length, 22);
  assert.equal([...train, ...validation].sort((a, b) => a - b), rows);
  assert.equal(splitTrainValidation(rows, 0.1, createRng(42).shuffled), { train, validation });
  assert.is(splitTrainValidation(rows, 0, createRng(1).shuffled).validation.length, 0);
  assert.throws(() => splitTrainValidation(rows, 1, createRng(1).shuffled), /val_fraction must be in \[0, 1\)/);
});

test.after(removeTempDirs);

test.run();

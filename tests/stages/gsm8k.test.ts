import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { existsSync } from 'node:fs';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { GSM8K } from '../../stages/gsm8k.ts';
import { readDataset } from '../../stages/data/dataset.ts';
import { makeContext, SHARED, removeTempDirs, tempDir, withDefaults } from './data/stage-context.ts';
import { withShared } from '../helpers/requires.ts';

const GSM8K_DIR = path.join(SHARED, 'data/gsm8k');
const realTest = withShared(test);

const line = (q: string, a: string): string => JSON.stringify({ question: q, answer: a });

/** A workspace with data/gsm8k holding the given files. */
async function workspaceWith(files: Record<string, string | Uint8Array>): Promise<string> {
  const ws = await tempDir('gsm8k-ws');
  await mkdir(path.join(ws, 'data/gsm8k'), { recursive: true });
  for (const [name, text] of Object.entries(files)) await writeFile(path.join(ws, 'data/gsm8k', name), text);
  return ws;
}

async function failure(run: Promise<unknown>): Promise<string> {
  try {
    await run;
  } catch (err) {
    return (err as Error).message;
  }
  throw new Error('expected the stage to fail');
}

test('workspaceFiles is the data folder, so its content is part of the key', () => {
  assert.equal(GSM8K.workspaceFiles!(withDefaults(GSM8K, { path: 'data/gsm8k' })), ['data/gsm8k']);
});

realTest('the real GSM8K gives 7,473/1,319 rows and a 6,726/747 train/validation split', async () => {
  const ctx = await makeContext(GSM8K, { params: { path: path.relative(path.dirname(SHARED), GSM8K_DIR) }, workspace: path.dirname(SHARED) });
  const result = await GSM8K.run(ctx);
  // round(7473 × 0.1) = round(747.3) = 747 validation rows; 7473 − 747 = 6726 train rows.
  assert.equal(result.metrics, { counts: { train: 6726, validation: 747, test: 1319 }, source_rows: { train: 7473, test: 1319 } });
  const { splits, info } = await readDataset(ctx.outDir);
  assert.equal(info.counts, { train: 6726, validation: 747, test: 1319 });
  assert.is(info.seed, 42);
  const original = (await readFile(path.join(GSM8K_DIR, 'train.jsonl'), 'utf8')).trim().split('\n').map((l) => JSON.parse(l).question as string);
  assert.equal([...splits.train, ...splits.validation].map((r) => r.question).sort(), [...original].sort());
  assert.is(splits.test[0]!.question, JSON.parse((await readFile(path.join(GSM8K_DIR, 'test.jsonl'), 'utf8')).split('\n')[0]!).question);
});

realTest('the split is the same for the same seed and differs for another', async () => {
  const base = { path: path.relative(path.dirname(SHARED), GSM8K_DIR), limit_train: 200, limit_test: 10 };
  const run = async (seed: number): Promise<string> => {
    const ctx = await makeContext(GSM8K, { params: { ...base, seed }, workspace: path.dirname(SHARED) });
    const result = await GSM8K.run(ctx);
    assert.equal(result.metrics!.counts, { train: 180, validation: 20, test: 10 });
    return readFile(path.join(ctx.outDir, 'validation.jsonl'), 'utf8');
  };
  const a = await run(42);
  assert.is(await run(42), a);
  assert.is.not(await run(7), a);
});

test('malformed rows are all reported with file:line and what is wrong', async () => {
  const ws = await workspaceWith({
    'train.jsonl': [line('q1', 'ok\n#### 1'), '{"question": "q2"}', line('q3', 'ok\n#### 3'), 'not json', line('q5', '#### 5')].join('\n'),
    'test.jsonl': [line('q1', 'no final answer'), line('q2', '#### 2')].join('\n'),
  });
  const message = await failure(GSM8K.run(await makeContext(GSM8K, { workspace: ws })));
  const lines = message.split('\n');
  assert.is(lines[0], 'GSM8K in data/gsm8k has 3 bad row(s):');
  assert.is(lines[1], '  data/gsm8k/train.jsonl:2: missing "answer"');
  // The parser's own words follow; they differ between Node versions.
  assert.match(lines[2]!, /^  data\/gsm8k\/train\.jsonl:4: not valid JSON \(.+\)$/);
  assert.is(lines[3], '  data/gsm8k/test.jsonl:1: "answer" has no final answer line `#### <number>`');
  assert.is(lines.length, 4);
});

test('an empty split file is refused, not turned into an empty dataset', async () => {
  const ws = await workspaceWith({ 'train.jsonl': '\n', 'test.jsonl': line('q', '#### 1') });
  const message = await failure(GSM8K.run(await makeContext(GSM8K, { workspace: ws })));
  assert.is(message, 'GSM8K in data/gsm8k has 1 bad row(s):\n  data/gsm8k/train.jsonl:1: no rows: the file is empty');
});

test('a UTF-8 byte order mark is dropped, and bytes that are not UTF-8 are refused at their line', async () => {
  const rows = [line('q1', 'a\n#### 1'), line('q2', 'b\n#### 2')].join('\n') + '\n';
  const bom = await workspaceWith({ 'train.jsonl': '\uFEFF' + rows, 'test.jsonl': '\uFEFF' + rows });
  const ctx = await makeContext(GSM8K, { params: { val_fraction: 0 }, workspace: bom });
  await GSM8K.run(ctx);
  assert.equal((await readDataset(ctx.outDir)).splits.test, [{ question: 'q1', answer: 'a\n#### 1' }, { question: 'q2', answer: 'b\n#### 2' }]);

  // `café` saved as Latin-1: read as UTF-8 it would silently become `caf�`.
  const latin1 = Buffer.concat([Buffer.from(`${line('q1', '#### 1')}\n`), Buffer.from('{"question": "caf\xe9?", "answer": "#### 3"}\n', 'latin1')]);
  const ws = await workspaceWith({ 'train.jsonl': rows, 'test.jsonl': latin1 });
  const message = await failure(GSM8K.run(await makeContext(GSM8K, { workspace: ws })));
  assert.is(message, 'GSM8K in data/gsm8k has 1 bad row(s):\n' +
    '  data/gsm8k/test.jsonl:2: not UTF-8 text: byte 0xE9 at byte 18 of the line (save the file as UTF-8)');
});

test('test questions that are also train questions, and repeated train questions, are said', async () => {
  const ws = await workspaceWith({
    'train.jsonl': [line('q1', '#### 1'), line('q2', '#### 2'), line('q1', '#### 1'), line('q3', '#### 3')].join('\n'),
    'test.jsonl': [line('q2', '#### 2'), line('t1', '#### 1'), line('q3', '#### 3')].join('\n'),
  });
  const ctx = await makeContext(GSM8K, { workspace: ws });
  await GSM8K.run(ctx);
  assert.ok(ctx.logs.includes('gsm8k: 2 of 3 test questions are also train questions (their accuracy measures recall); 1 train question is a repeat'), ctx.logs.join('\n'));
  // limit_train counts: the rows left out are not compared.
  const limited = await makeContext(GSM8K, { params: { limit_train: 2 }, workspace: ws });
  await GSM8K.run(limited);
  assert.ok(limited.logs.includes('gsm8k: 1 of 3 test questions are also train questions (their accuracy measures recall)'), limited.logs.join('\n'));
});

test('a missing folder says which files to put where and where to get them', async () => {
  const ws = await tempDir('gsm8k-empty');
  const message = await failure(GSM8K.run(await makeContext(GSM8K, { workspace: ws })));
  const abs = path.join(ws, 'data/gsm8k');
  assert.is(message, [
    `GSM8K not found: train.jsonl and test.jsonl missing in data/gsm8k (${abs}).`,
    'Put the files there: download grade_school_math/data/train.jsonl and grade_school_math/data/test.jsonl',
    `from the official GSM8K repository, https://github.com/openai/grade-school-math, into ${abs}.`,
    'A Hugging Face JSON export also works: train.json and test.json, as JSON lines or one JSON array each.',
    'Or set `download: true` to fetch them when this machine can reach GitHub.',
  ].join('\n'));
});

test('only the missing file is named when the other one is there', async () => {
  const ws = await workspaceWith({ 'train.jsonl': line('q', '#### 1') });
  const message = await failure(GSM8K.run(await makeContext(GSM8K, { workspace: ws })));
  assert.match(message, /^GSM8K not found: test\.jsonl missing in data\/gsm8k \(/);
});

test('a Hugging Face JSON export (a JSON array, or JSON lines named .json) is read', async () => {
  const train = Array.from({ length: 10 }, (_, i) => ({ question: `q${i}`, answer: `a\n#### ${i}` }));
  const ws = await workspaceWith({
    'train.json': JSON.stringify(train, null, 2),
    'test.json': [line('t0', '#### 0'), line('t1', '#### 1')].join('\n') + '\n',
  });
  const ctx = await makeContext(GSM8K, { workspace: ws });
  const result = await GSM8K.run(ctx);
  assert.equal(result.metrics!.counts, { train: 9, validation: 1, test: 2 });
  const { splits } = await readDataset(ctx.outDir);
  assert.equal(splits.test.map((r) => r.question), ['t0', 't1']);
});

/** A local HTTP server standing in for the download site (the real one is unreachable from CI). */
async function serve(files: Record<string, string>): Promise<{ server: Server; url: string }> {
  const server = createServer((req, res) => {
    const body = files[req.url ?? ''];
    res.writeHead(body === undefined ? 404 : 200).end(body ?? 'not found');
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { server, url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/data` };
}

test('download: true fetches the missing files into the folder, then reads them', async () => {
  const { server, url } = await serve({
    '/data/train.jsonl': [line('q1', '#### 1'), line('q2', '#### 2')].join('\n'),
    '/data/test.jsonl': line('t', '#### 3'),
  });
  try {
    const ws = await tempDir('gsm8k-dl');
    const ctx = await makeContext(GSM8K, { workspace: ws, params: { download: true, download_url: url } });
    const result = await GSM8K.run(ctx);
    assert.equal(result.metrics!.counts, { train: 2, validation: 0, test: 1 });
    assert.ok(existsSync(path.join(ws, 'data/gsm8k/train.jsonl')));
  } finally {
    server.close();
  }
});

test('a failed download keeps the instructions and says why it failed', async () => {
  const { server, url } = await serve({});
  try {
    const ws = await tempDir('gsm8k-dl-fail');
    const message = await failure(GSM8K.run(await makeContext(GSM8K, { workspace: ws, params: { download: true, download_url: url } })));
    assert.ok(message.startsWith('GSM8K not found: train.jsonl and test.jsonl missing in data/gsm8k'));
    assert.ok(message.endsWith(`Downloading them failed: ${url}/train.jsonl: HTTP 404`), message);
  } finally {
    server.close();
  }
});

test.after(removeTempDirs);

test.run();

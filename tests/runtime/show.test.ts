// The results table: which rows and columns people see, and what scripts get.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import type { JsonValue } from '../../runtime/json.ts';
import { buildResultTable, renderTable } from '../../runtime/show.ts';
import { STAGE_KINDS } from '../../stages/index.ts';
import { instance, pipelineOf } from '../helpers/runner.ts';

const pipeline = pipelineOf('/ws', [
  instance('fit[lr=1]', 'sft', {}, { variant: { lr: 1 } }),
  instance('fit[lr=2]', 'sft', {}, { variant: { lr: 2 } }),
]);
const METRICS: Record<string, Record<string, JsonValue>> = {
  'fit[lr=1]': { backend: 'wasm', steps: 10, eval_loss: 0.5, curve: [[1, 2]] },
  'fit[lr=2]': { backend: 'wasm', steps: 10, eval_loss: 0.25, curve: [[1, 2]] },
};

test('a kind\'s headline metrics choose and order the columns people read', () => {
  const { table } = buildResultTable(pipeline, (n) => METRICS[n], undefined, false, () => ['eval_loss', 'steps']);
  assert.is(renderTable(table, 'text'), [
    'stage  lr  eval_loss  steps',
    '-----  --  ---------  -----',
    'fit    1   0.5        10',
    'fit    2   0.25       10',
    '',
  ].join('\n'));
});

test('without headline metrics every scalar metric is a column (curves are not)', () => {
  const { table } = buildResultTable(pipeline, (n) => METRICS[n]);
  assert.equal(table.metrics, ['backend', 'steps', 'eval_loss']);
});

test('inject_pauses has no table for people (its one scalar is the pause token, the same on every row); CSV keeps it', () => {
  const paused = pipelineOf('/ws', [
    instance('paused[n=1]', 'inject_pauses', {}, { variant: { n: 1 } }),
    instance('paused[n=2]', 'inject_pauses', {}, { variant: { n: 2 } }),
  ]);
  const metrics = () => ({ counts: { train: 10 }, avg_pauses: { train: 1 }, pause_token: '<|pause|>' });
  assert.equal(buildResultTable(paused, metrics, undefined, false, (kind) => STAGE_KINDS[kind]?.tableMetrics).table.rows, []);
  assert.is(renderTable(buildResultTable(paused, metrics).table, 'csv'), 'stage,n,pause_token\npaused,1,<|pause|>\npaused,2,<|pause|>\n');
});

test('a metric is headed metric.NAME only in a table that has a loop variable of that name', () => {
  const mixed = pipelineOf('/ws', [
    instance('score[n=1]', 'sh', {}, { variant: { n: 1 } }),
    instance('count[lr=1]', 'sh', {}, { variant: { lr: 1 } }),
  ]);
  const { table } = buildResultTable(mixed, () => ({ n: 50, acc: 0.5 }));
  assert.is(renderTable(table, 'csv').split('\n')[0], 'stage,n,lr,metric.n,acc');
  assert.equal(renderTable(table, 'md').split('\n').filter((l) => l.startsWith('| stage')), ['| stage | n | metric.n | acc |', '| stage | lr | n | acc |']);
});

test('a table wider than the terminal continues below, stage and variable columns repeated, no cell cut', () => {
  const wide = { 'fit[lr=1]': { accuracy: 0.815, accuracy_std: 0.388, eval_loss: 0.99273, avg_pauses: 58.49 }, 'fit[lr=2]': { accuracy: 0.02, accuracy_std: 0.14, eval_loss: 1.4288, avg_pauses: 53.66 } };
  const { table } = buildResultTable(pipeline, (n) => wide[n as keyof typeof wide]);
  const text = renderTable(table, 'text', 36);
  assert.is(text, [
    'stage  lr  accuracy  accuracy_std',
    '-----  --  --------  ------------',
    'fit    1   0.815     0.388',
    'fit    2   0.02      0.14',
    '',
    'stage  lr  eval_loss  avg_pauses',
    '-----  --  ---------  ----------',
    'fit    1   0.99273    58.49',
    'fit    2   1.4288     53.66',
    '',
  ].join('\n'));
  assert.ok(text.split('\n').every((l) => l.length <= 36));
  assert.is(renderTable(table, 'text', 80).split('\n')[0], 'stage  lr  accuracy  accuracy_std  eval_loss  avg_pauses');
});

test('counts are shown in full, other numbers to six significant digits without invented zeros', () => {
  const counts = { 'fit[lr=1]': { params: 7241732096, tokens: 1234567.8, loss: 0.123456789, huge: 12345678901234567890 } };
  const { table } = buildResultTable(pipelineOf('/ws', [pipeline.stages[0]!]), (n) => counts[n as keyof typeof counts]);
  assert.is(renderTable(table, 'text'), [
    'stage  lr  params      tokens     loss      huge',
    '-----  --  ----------  ---------  --------  ----------',
    'fit    1   7241732096  1.23457e6  0.123457  1.23457e19',
    '',
  ].join('\n'));
  assert.is(renderTable(table, 'csv').split('\n')[1], 'fit,1,7241732096,1234567.8,0.123456789,12345678901234567000');
});

test.run();

// The results table: which rows and columns people see, and what scripts get.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import type { JsonValue } from '../../runtime/json.ts';
import { buildResultTable, renderTable } from '../../runtime/show.ts';
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

test.run();

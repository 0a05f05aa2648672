// `pausepipe diff`'s comparison and rendering: which rows, and how the values and changes read.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import type { JsonValue } from '../../runtime/json.ts';
import { diffMetrics, renderDiff, type MetricsSide } from '../../runtime/diff.ts';

function side(label: string, metrics: Record<string, JsonValue>): MetricsSide {
  return { label, stages: [{ name: 'fit[lr=1]', kind: 'sh', variant: { lr: 1 } }], metricsOf: () => metrics };
}

const OPTIONS = { includeShared: false, all: false };

test('a changed count reads in full with its exact change; other numbers keep six significant digits', () => {
  const before = side('HEAD', { tokens: 7241732096, loss: 0.5, rate: 1234567.8 });
  const now = side('now', { tokens: 7241732097, loss: 0.25, rate: 1234568.9 });
  const result = diffMetrics(before, now, OPTIONS);
  assert.equal(result.rows.map((r) => r.delta), [1, -0.25, 1.1]);
  assert.is(renderDiff(result, 'text'), [
    'stage      metric  HEAD        now         change',
    '---------  ------  ----------  ----------  ------',
    'fit[lr=1]  tokens  7241732096  7241732097  +1',
    'fit[lr=1]  loss    0.5         0.25        -0.25',
    'fit[lr=1]  rate    1.23457e6   1.23457e6   +1.1',
    '1 of 1 stage changed between HEAD and now',
    '',
  ].join('\n'));
});

test.run();

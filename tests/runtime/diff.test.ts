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

const stage = (name: string, variant: Record<string, JsonValue> = {}) => ({ name, kind: 'sh', variant });

test('nothing to compare says why: no stage with results on both sides, or a pipeline without loops and no --all', () => {
  const before: MetricsSide = { label: 'HEAD', stages: [stage('fit[lr=1]', { lr: 1 })], metricsOf: () => ({ loss: 1 }) };
  const notRun: MetricsSide = { label: 'now', stages: [stage('fit[lr=1]', { lr: 1 })], metricsOf: () => undefined };
  assert.is(renderDiff(diffMetrics(before, notRun, OPTIONS), 'text'), [
    'nothing to compare between HEAD and now: no stage has results on both sides',
    'not in the cache now: fit[lr=1]',
    '',
  ].join('\n'));
  const flat = (label: string): MetricsSide => ({ label, stages: [stage('prep'), stage('fit')], metricsOf: () => ({ loss: label === 'now' ? 2 : 1 }) });
  assert.is(renderDiff(diffMetrics(flat('HEAD'), flat('now'), OPTIONS), 'text'),
    'nothing to compare between HEAD and now: no stage is in a `for each` loop; --all compares the 2 other stages\n');
  assert.is(renderDiff(diffMetrics(flat('HEAD'), flat('now'), { includeShared: true, all: false }), 'text'), [
    'stage  metric  HEAD  now  change',
    '-----  ------  ----  ---  ------',
    'prep   loss    1     2    +1',
    'fit    loss    1     2    +1',
    '2 of 2 stages changed between HEAD and now',
    '',
  ].join('\n'));
});

test('the side before the last run is named so in sentences; four names are listed whole, more are counted', () => {
  const names = ['m[k=1]', 'm[k=2]', 'm[k=3]', 'm[k=4]', 'm[k=5]'];
  const before: MetricsSide = { label: 'before', where: 'before the last run', stages: names.slice(0, 4).map((n) => stage(n, { k: 1 })), metricsOf: () => ({ v: 1 }) };
  const now: MetricsSide = { label: 'now', stages: [stage('m[k=1]', { k: 1 }), ...['a', 'b', 'c', 'd', 'e'].map((n) => stage(`m[k=${n}]`, { k: n }))], metricsOf: () => ({ v: 1 }) };
  const result = diffMetrics(before, now, OPTIONS);
  assert.is(result.beforeWhere, 'before the last run');
  assert.is(renderDiff(result, 'text'), [
    '0 of 1 stage changed between before the last run and now',
    'only before the last run: m[k=2], m[k=3], m[k=4]',
    'only now: m[k=a], m[k=b], m[k=c] and 2 more',
    '',
  ].join('\n'));
  const four = diffMetrics({ ...before, stages: [stage('m[k=1]', { k: 1 })] }, { ...now, stages: now.stages.slice(0, 5) }, OPTIONS);
  assert.is(renderDiff(four, 'text').split('\n')[1], 'only now: m[k=a], m[k=b], m[k=c], m[k=d]');
});

test.run();

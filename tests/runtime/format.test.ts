// How numbers read in `show` and `diff`: the same notation down a column, exponents only where plain digits mislead.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { formatMetric, formatNumber } from '../../runtime/format.ts';

test('metrics are written plainly to six significant digits, with exponents only for the very large and the very small', () => {
  const cases: [number, string][] = [
    [42, '42'], [0.005, '0.005'], [0.0125, '0.0125'], [0.1 + 0.2, '0.3'], [-0.00123456789, '-0.00123457'],
    [0.0001, '0.0001'], [0.000032, '3.2e-5'], [3.2e-7, '3.2e-7'], [1234567.8, '1.23457e6'], [123456.78, '123457'],
    [0.0, '0'], [Number.NaN, 'NaN'], [Number.POSITIVE_INFINITY, 'Infinity'],
  ];
  assert.equal(cases.map(([n]) => formatMetric(n)), cases.map(([, text]) => text));
});

test('parameters keep the shorter notation, as people write learning rates', () => {
  assert.equal([0.00005, 0.005, 100, 0.3, 1e21].map(formatNumber), ['5e-5', '5e-3', '100', '0.3', '1e21']);
});

test.run();

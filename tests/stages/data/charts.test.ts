import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { barChartSvg, escapeXml, lineChartSvg, niceTicks, panelsSvg, shorten, wrapTitle } from '../../../stages/data/charts.ts';

test('niceTicks steps by 1, 2 or 5 × 10^k and spans the whole range', () => {
  assert.equal(niceTicks(0, 1), [0, 0.2, 0.4, 0.6, 0.8, 1]);
  assert.equal(niceTicks(0, 290), [0, 100, 200, 300]);
  assert.equal(niceTicks(0.27, 2.93), [0, 1, 2, 3]);
  assert.equal(niceTicks(0.27, 1.9), [0, 0.5, 1, 1.5, 2]);
  assert.equal(niceTicks(0.03, 0.17), [0, 0.05, 0.1, 0.15, 0.2]); // rough step 0.028 → 0.05, no float noise
  assert.equal(niceTicks(3, 3), [3]);
});

test('labels and titles are escaped', () => {
  assert.is(escapeXml('a<b & "c">'), 'a&lt;b &amp; &quot;c&quot;&gt;');
  const svg = barChartSvg([{ label: 'x<y', value: 0.5 }], { title: 'T & U', axisLabel: 'acc', max: 1 });
  assert.ok(svg.includes('>x&lt;y</text>'));
  assert.ok(svg.includes('>T &amp; U</text>'));
  assert.not.ok(svg.includes('x<y'));
});

test('a bar is as long as its share of the axis; the whisker spans ± error', () => {
  const svg = barChartSvg([{ label: 'a', value: 0.5, error: 0.1 }, { label: 'b', value: 1 }], { title: 't', axisLabel: 'x', max: 1 });
  const widths = [...svg.matchAll(/<rect x="[\d.]+" y="[\d.]+" width="([\d.]+)"/g)].map((m) => Number(m[1]));
  assert.equal(widths, [210, 420]);
  assert.is(svg.match(/<path d="M/g)!.length, 1);
});

test('long labels are cut in the middle, so labels that differ only at their end stay apart; the tooltip keeps them whole', () => {
  const label = (lr: string) => `${'x'.repeat(80)}, lr=${lr}`;
  const svg = barChartSvg([{ label: label('0.0001'), value: 0.1 }, { label: label('0.0003'), value: 0.2 }], { title: 't', axisLabel: 'x', max: 1 });
  assert.ok(svg.includes(`<title>${label('0.0001')}: 0.1</title>`));
  assert.ok(svg.includes(`>${'x'.repeat(36)}…${'x'.repeat(24)}, lr=0.0001</text>`));
  assert.ok(svg.includes(`>${'x'.repeat(36)}…${'x'.repeat(24)}, lr=0.0003</text>`));
  assert.is(shorten('ab😀😀😀cd', 5), 'ab…cd');
});

test("small panels' titles wrap after the commas of a variant label instead of running into the next panel", () => {
  const title = 'pause=embed+head, lm=lm_head+embed, lora=false, lr=0.0001';
  assert.equal(wrapTitle(title, 41), ['pause=embed+head, lm=lm_head+embed,', 'lora=false, lr=0.0001']);
  assert.equal(wrapTitle(`${'y'.repeat(50)} a b c d e`, 10), ['yyyyy…yyyy', 'a b c d e']);
  assert.equal(wrapTitle('a1, b2, c3, d4, e5', 6), ['a1,', 'b2,', 'c3,…e5']);
  const series = [{ label: title, points: [[0, 1], [10, 2]] as [number, number][] }];
  const svg = panelsSvg([{ title, series, scale: 'runs' }, { title: 'short', series, scale: 'runs' }],
    { title: 'T', xLabel: 'step', yLabel: 'loss', columns: 3, plotWidth: 240, plotHeight: 130, legend: false, styles: ['train', 'val'] });
  assert.ok(svg.includes(`<text text-anchor="middle"><title>${title}</title><tspan x="190" y="52">pause=embed+head, lm=lm_head+embed,</tspan>` +
    '<tspan x="190" y="66">lora=false, lr=0.0001</tspan></text>'));
  // Both panels' plots start one title line lower, so the wrapped title stays clear of the plot.
  assert.equal(svg.match(/<path d="M\d+ \d+V\d+H\d+"/g), ['<path d="M70 74V204H310"', '<path d="M380 74V204H620"']);
  assert.ok(svg.includes('<tspan x="500" y="66">short</tspan>'));
});

test('a line chart gives series that share a label one colour and one legend entry', () => {
  const svg = lineChartSvg(
    [
      { label: 'a', points: [[0, 2], [10, 1]] },
      { label: 'a', points: [[10, 1.5]], dashed: true },
      { label: 'b', points: [[0, 3], [10, 2]] },
    ],
    { title: 't', xLabel: 'step', yLabel: 'loss' },
  );
  assert.is(svg.match(/<g class="legend">/g)!.length, 2);
  const strokes = [...svg.matchAll(/<path class="series [a-z]+" d="M[^"]*" fill="none" stroke="([^"]+)"/g)].map((m) => m[1]);
  assert.is(strokes.length, 3);
  assert.is(strokes[0], strokes[1]);
  assert.is.not(strokes[0], strokes[2]);
  assert.is(svg.match(/stroke-dasharray/g)!.length, 1);
});

test('a line chart without data still renders its axes and note', () => {
  const svg = lineChartSvg([], { title: 't', xLabel: 'step', yLabel: 'loss', note: 'No training curves in the inputs.' });
  assert.ok(svg.startsWith('<svg '));
  assert.ok(svg.includes('No training curves in the inputs.'));
  assert.not.match(svg, /NaN|Infinity/);
});

test('markers put a dot on every point, so a series of one point is visible', () => {
  const svg = lineChartSvg([{ label: 'a', points: [[10, 1.5]], dashed: true, markers: true }], { title: 't', xLabel: 'step', yLabel: 'loss' });
  assert.is(svg.match(/<circle class="point validation"/g)!.length, 1);
});

test("a bar's reference value is a tick across the bar, named in the key", () => {
  const svg = barChartSvg([{ label: 'a', value: 0.5, reference: 0.25 }], { title: 't', axisLabel: 'x', max: 1, referenceName: 'seed accuracy' });
  const labelWidth = Math.ceil(8 * 7.2) + 12;
  assert.ok(svg.includes(`<path class="reference" d="M${labelWidth + 105} 37V59"`), svg);
  assert.ok(svg.includes('>seed accuracy</text>'));
});

test('panels sharing a scale get the same axes; a panel of another scale has its own', () => {
  const svg = panelsSvg([
    { title: 'a', series: [{ label: 'a', points: [[0, 1], [10, 3]] }], scale: 'runs' },
    { title: 'b', series: [{ label: 'b', points: [[0, 1.5], [10, 2]] }], scale: 'runs' },
    { title: 'base', series: [{ label: 'base', points: [[0, 0.01], [10, 0.02]] }], scale: 'other' },
  ], { title: 'T', xLabel: 'step', yLabel: 'loss', columns: 3, plotWidth: 100, plotHeight: 80, legend: false, styles: ['train', 'val'] });
  const ticks = [...svg.matchAll(/<g class="panel">(.*?)<\/g>/g)].map((m) => [...m[1]!.matchAll(/text-anchor="end" fill="#444">([^<]+)</g)].map((t) => t[1]).join(','));
  assert.equal(ticks, ['1,1.5,2,2.5,3', '1,1.5,2,2.5,3', '0.01,0.015,0.02']);
});

test.run();

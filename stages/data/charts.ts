// Self-contained SVG charts for the report: no scripts, no fonts or styles fetched from anywhere.

export interface Bar {
  label: string;
  value: number;
  /** Half-length of the whisker drawn around the value (e.g. a standard error); omitted: none. */
  error?: number;
  /** Drawn in the accent colour (the best variant). */
  highlight?: boolean;
}

export interface Series {
  /** Legend text; series sharing a label share a colour. */
  label: string;
  points: readonly (readonly [number, number])[];
  dashed?: boolean;
}

const FONT = 'font-family="system-ui, sans-serif" font-size="12"';
const AXIS = '#444';
const GRID = '#e3e3e3';
const BAR = '#8fb3d9';
const BAR_BEST = '#1f5fa8';
// Roughly the advance of one character at 12px in a sans-serif font; only used to size label columns.
const CHAR_WIDTH = 7.2;
const MAX_LABEL_CHARS = 48;

export function escapeXml(text: string): string {
  return text.replaceAll('&', '&amp;').replaceAll('<', '&lt;').replaceAll('>', '&gt;').replaceAll('"', '&quot;');
}

/** Tableau's 10 categorical colours: chosen to stay apart from each other, also for colour-blind readers. */
const CATEGORICAL = ['#4e79a7', '#f28e2b', '#e15759', '#76b7b2', '#59a14f', '#edc948', '#b07aa1', '#ff9da7', '#9c755f', '#bab0ac'];

/** Distinct colours for any number of series: the categorical palette, then hues a golden angle apart. */
export function seriesColor(index: number): string {
  return CATEGORICAL[index] ?? `hsl(${Math.round((index * 137.508) % 360)}, 65%, 42%)`;
}

function shorten(label: string): string {
  return label.length <= MAX_LABEL_CHARS ? label : `${label.slice(0, MAX_LABEL_CHARS - 1)}…`;
}

function fmt(value: number): string {
  return Number(value.toPrecision(6)).toString();
}

/**
 * Round tick positions spanning [lo, hi] (the first at or below lo, the last at or above hi, so the axis
 * holds every point): steps of 1, 2 or 5 times a power of ten, about `count` of them.
 */
export function niceTicks(lo: number, hi: number, count = 5): number[] {
  if (!(hi > lo)) return [lo];
  const rough = (hi - lo) / count;
  const power = 10 ** Math.floor(Math.log10(rough));
  const step = [1, 2, 5, 10].map((m) => m * power).find((s) => s >= rough)!;
  const first = Math.floor(lo / step + 1e-9);
  const last = Math.ceil(hi / step - 1e-9);
  const ticks: number[] = [];
  for (let i = first; i <= last; i++) ticks.push(Number((i * step).toPrecision(12)));
  return ticks;
}

/** Horizontal bars on a fixed [0, max] axis (accuracy: [0, 1]), one row per label, value printed at the end. */
export function barChartSvg(
  bars: readonly Bar[],
  opts: { title: string; axisLabel: string; max: number; format?: (value: number) => string },
): string {
  const format = opts.format ?? fmt;
  const labelWidth = Math.ceil(Math.max(8, ...bars.map((b) => shorten(b.label).length)) * CHAR_WIDTH) + 12;
  const plotWidth = 420;
  const rowHeight = 24;
  const top = 36;
  const width = labelWidth + plotWidth + 70;
  const height = top + Math.max(1, bars.length) * rowHeight + 44;
  const x = (v: number): number => labelWidth + (Math.max(0, Math.min(v, opts.max)) / opts.max) * plotWidth;
  const parts: string[] = [];
  parts.push(`<text x="${width / 2}" y="20" text-anchor="middle" font-weight="bold">${escapeXml(opts.title)}</text>`);
  const bottom = top + bars.length * rowHeight;
  for (const tick of niceTicks(0, opts.max)) {
    parts.push(`<line x1="${x(tick)}" y1="${top}" x2="${x(tick)}" y2="${bottom}" stroke="${GRID}"/>`);
    parts.push(`<text x="${x(tick)}" y="${bottom + 16}" text-anchor="middle" fill="${AXIS}">${fmt(tick)}</text>`);
  }
  bars.forEach((bar, i) => {
    const y = top + i * rowHeight;
    const mid = y + rowHeight / 2;
    parts.push(
      `<g><title>${escapeXml(`${bar.label}: ${format(bar.value)}`)}</title>` +
        `<text x="${labelWidth - 8}" y="${mid + 4}" text-anchor="end">${escapeXml(shorten(bar.label))}</text>` +
        `<rect x="${labelWidth}" y="${y + 4}" width="${Math.max(0, x(bar.value) - labelWidth)}" height="${rowHeight - 8}" ` +
        `fill="${bar.highlight ? BAR_BEST : BAR}"/>`,
    );
    if (bar.error !== undefined && bar.error > 0) {
      const lo = x(bar.value - bar.error);
      const hi = x(bar.value + bar.error);
      parts.push(`<path d="M${lo} ${mid}H${hi}M${lo} ${mid - 4}V${mid + 4}M${hi} ${mid - 4}V${mid + 4}" stroke="${AXIS}"/>`);
    }
    const end = bar.error ? x(bar.value + bar.error) : x(bar.value);
    parts.push(`<text x="${end + 6}" y="${mid + 4}"${bar.highlight ? ' font-weight="bold"' : ''}>${format(bar.value)}</text></g>`);
  });
  parts.push(`<line x1="${labelWidth}" y1="${top}" x2="${labelWidth}" y2="${bottom}" stroke="${AXIS}"/>`);
  parts.push(`<text x="${labelWidth + plotWidth / 2}" y="${bottom + 36}" text-anchor="middle" fill="${AXIS}">${escapeXml(opts.axisLabel)}</text>`);
  return wrap(width, height, parts);
}

/** Lines over a shared x/y range with a legend on the right (one entry per label, in first-seen order). */
export function lineChartSvg(series: readonly Series[], opts: { title: string; xLabel: string; yLabel: string; note?: string }): string {
  const labels = [...new Set(series.map((s) => s.label))];
  const colorOf = new Map(labels.map((label, i) => [label, seriesColor(i)]));
  const points = series.flatMap((s) => s.points);
  const xs = points.map((p) => p[0]);
  const ys = points.map((p) => p[1]);
  const xTicks = niceTicks(Math.min(0, ...xs), xs.length ? Math.max(...xs) : 1);
  const yTicks = niceTicks(ys.length ? Math.min(...ys) : 0, ys.length ? Math.max(...ys) : 1);
  const [x0, x1] = [xTicks[0]!, xTicks.at(-1)! > xTicks[0]! ? xTicks.at(-1)! : xTicks[0]! + 1];
  const [y0, y1] = [yTicks[0]!, yTicks.at(-1)! > yTicks[0]! ? yTicks.at(-1)! : yTicks[0]! + 1];
  const left = 64;
  const top = 36;
  const plotWidth = 520;
  const plotHeight = 300;
  const legendX = left + plotWidth + 24;
  const legendWidth = Math.ceil(Math.max(8, ...labels.map((l) => shorten(l).length)) * CHAR_WIDTH) + 40;
  const width = legendX + legendWidth;
  const height = Math.max(top + plotHeight + 56, top + labels.length * 20 + 20);
  const px = (v: number): number => left + ((v - x0) / (x1 - x0)) * plotWidth;
  const py = (v: number): number => top + plotHeight - ((v - y0) / (y1 - y0)) * plotHeight;
  const parts: string[] = [];
  parts.push(`<text x="${left + plotWidth / 2}" y="20" text-anchor="middle" font-weight="bold">${escapeXml(opts.title)}</text>`);
  for (const t of yTicks) {
    parts.push(`<line x1="${left}" y1="${py(t)}" x2="${left + plotWidth}" y2="${py(t)}" stroke="${GRID}"/>`);
    parts.push(`<text x="${left - 6}" y="${py(t) + 4}" text-anchor="end" fill="${AXIS}">${fmt(t)}</text>`);
  }
  for (const t of xTicks) {
    parts.push(`<text x="${px(t)}" y="${top + plotHeight + 16}" text-anchor="middle" fill="${AXIS}">${fmt(t)}</text>`);
  }
  parts.push(`<path d="M${left} ${top}V${top + plotHeight}H${left + plotWidth}" fill="none" stroke="${AXIS}"/>`);
  for (const s of series) {
    if (s.points.length === 0) continue;
    const d = s.points.map(([x, y], i) => `${i === 0 ? 'M' : 'L'}${fmt(px(x))} ${fmt(py(y))}`).join('');
    parts.push(
      `<path class="series" d="${d}" fill="none" stroke="${colorOf.get(s.label)}" stroke-width="1.6"${s.dashed ? ' stroke-dasharray="5 3"' : ''}>` +
        `<title>${escapeXml(s.label)}</title></path>`,
    );
  }
  parts.push(`<text x="${left + plotWidth / 2}" y="${top + plotHeight + 36}" text-anchor="middle" fill="${AXIS}">${escapeXml(opts.xLabel)}</text>`);
  parts.push(
    `<text transform="translate(16 ${top + plotHeight / 2}) rotate(-90)" text-anchor="middle" fill="${AXIS}">${escapeXml(opts.yLabel)}</text>`,
  );
  if (opts.note) {
    parts.push(`<text x="${left}" y="${top + plotHeight + 52}" fill="${AXIS}">${escapeXml(opts.note)}</text>`);
  }
  labels.forEach((label, i) => {
    const y = top + i * 20;
    parts.push(
      `<g class="legend"><line x1="${legendX}" y1="${y + 6}" x2="${legendX + 20}" y2="${y + 6}" stroke="${colorOf.get(label)}" stroke-width="3"/>` +
        `<text x="${legendX + 26}" y="${y + 10}">${escapeXml(shorten(label))}</text></g>`,
    );
  });
  return wrap(width, height + (opts.note ? 12 : 0), parts);
}

function wrap(width: number, height: number, parts: string[]): string {
  return (
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" ${FONT}>\n` +
    `<rect width="100%" height="100%" fill="#fff"/>\n${parts.join('\n')}\n</svg>\n`
  );
}

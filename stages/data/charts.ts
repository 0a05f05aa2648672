// Self-contained SVG charts for the report: no scripts, no fonts or styles fetched from anywhere.

export interface Bar {
  label: string;
  value: number;
  /** Half-length of the whisker drawn around the value (e.g. a standard error); omitted: none. */
  error?: number;
  /** Drawn in the accent colour (the best variant). */
  highlight?: boolean;
  /** A reference value (e.g. the published number) drawn as a tick across the bar. */
  reference?: number;
}

export interface Series {
  /** Legend text; series sharing a label share a colour. */
  label: string;
  points: readonly (readonly [number, number])[];
  dashed?: boolean;
  /** A dot on every point (evaluations are few: a line alone would hide a single one). */
  markers?: boolean;
}

const FONT = 'font-family="system-ui, sans-serif" font-size="12"';
const AXIS = '#444';
const GRID = '#e3e3e3';
const BAR = '#8fb3d9';
const BAR_BEST = '#1f5fa8';
const REFERENCE = '#c0392b';
// Roughly the advance of one character at 12px in a sans-serif font; only used to size label columns.
const CHAR_WIDTH = 7.2;
// Long enough for four or five loop variables (`pause=embed+head, lm=lm_head+embed, lora=false, lr=0.0001`).
const MAX_LABEL_CHARS = 72;
const TITLE_LINE_HEIGHT = 14;
const MAX_TITLE_LINES = 3;

export function escapeXml(text: string): string {
  return text.replaceAll('&', '&amp;').replaceAll('<', '&lt;').replaceAll('>', '&gt;').replaceAll('"', '&quot;');
}

/** Tableau's 10 categorical colours: chosen to stay apart from each other, also for colour-blind readers. */
const CATEGORICAL = ['#4e79a7', '#f28e2b', '#e15759', '#76b7b2', '#59a14f', '#edc948', '#b07aa1', '#ff9da7', '#9c755f', '#bab0ac'];

/** Distinct colours for any number of series: the categorical palette, then hues a golden angle apart. */
export function seriesColor(index: number): string {
  return CATEGORICAL[index] ?? `hsl(${Math.round((index * 137.508) % 360)}, 65%, 42%)`;
}

/**
 * A label cut to `max` characters in the middle: variant labels differ as often at their end (the last loop
 * variable) as at their start, so both ends stay. Counts code points, so no emoji is cut in half.
 */
export function shorten(label: string, max = MAX_LABEL_CHARS): string {
  const chars = Array.from(label);
  if (chars.length <= max) return label;
  const head = Math.ceil((max - 1) / 2);
  return `${chars.slice(0, head).join('')}…${chars.slice(chars.length - (max - 1 - head)).join('')}`;
}

/**
 * A title in lines of at most `width` characters, broken after the commas and spaces of a variant label, at most
 * MAX_TITLE_LINES of them (the last one shortened when the rest does not fit).
 */
export function wrapTitle(title: string, width: number): string[] {
  const words = title.match(/[^ ]+ */g) ?? [''];
  const lines: string[] = [];
  for (const word of words) {
    const last = lines.at(-1);
    if (last !== undefined && Array.from(last + word.trimEnd()).length <= width) lines[lines.length - 1] = last + word;
    else lines.push(word);
  }
  const kept = lines.length <= MAX_TITLE_LINES ? lines : [...lines.slice(0, MAX_TITLE_LINES - 1), lines.slice(MAX_TITLE_LINES - 1).join('')];
  return kept.map((l) => shorten(l.trimEnd(), width));
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
  opts: { title: string; axisLabel: string; max: number; format?: (value: number) => string; referenceName?: string },
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
    if (bar.reference !== undefined) {
      parts.push(`<path class="reference" d="M${x(bar.reference)} ${y + 1}V${y + rowHeight - 1}" stroke="${REFERENCE}" stroke-width="3"><title>${escapeXml(`${opts.referenceName ?? 'reference'}: ${format(bar.reference)}`)}</title></path>`);
    }
    const end = Math.max(bar.error ? x(bar.value + bar.error) : x(bar.value), bar.reference !== undefined ? x(bar.reference) : 0);
    parts.push(`<text x="${end + 6}" y="${mid + 4}"${bar.highlight ? ' font-weight="bold"' : ''}>${format(bar.value)}</text></g>`);
  });
  parts.push(`<line x1="${labelWidth}" y1="${top}" x2="${labelWidth}" y2="${bottom}" stroke="${AXIS}"/>`);
  parts.push(`<text x="${labelWidth + plotWidth / 2}" y="${bottom + 36}" text-anchor="middle" fill="${AXIS}">${escapeXml(opts.axisLabel)}</text>`);
  if (bars.some((b) => b.reference !== undefined)) {
    parts.push(`<path d="M${labelWidth} ${bottom + 48}v12" stroke="${REFERENCE}" stroke-width="3"/>` +
      `<text x="${labelWidth + 8}" y="${bottom + 58}" fill="${AXIS}">${escapeXml(opts.referenceName ?? 'reference')}</text>`);
  }
  return wrap(width, height + (bars.some((b) => b.reference !== undefined) ? 20 : 0), parts);
}

/** The data range a panel's axes span. */
interface Ranges {
  xTicks: number[];
  yTicks: number[];
}

function rangesOf(series: readonly Series[]): Ranges {
  const points = series.flatMap((s) => s.points);
  const xs = points.map((p) => p[0]);
  const ys = points.map((p) => p[1]);
  return {
    xTicks: niceTicks(Math.min(0, ...xs), xs.length ? Math.max(...xs) : 1),
    yTicks: niceTicks(ys.length ? Math.min(...ys) : 0, ys.length ? Math.max(...ys) : 1, 4),
  };
}

/** A panel's title as drawn (wrapped lines) and as its tooltip says it (whole). */
interface PanelTitle {
  lines: string[];
  whole: string;
}

interface Frame {
  left: number;
  top: number;
  width: number;
  height: number;
}

/**
 * One plot: grid, tick labels, axes, and each series as a line (dashed on request) and, with `markers`, a dot
 * per point, so a series of one point (a single evaluation) is still visible.
 */
function plotParts(series: readonly Series[], f: Frame, r: Ranges, colorOf: (label: string) => string, title?: PanelTitle): string[] {
  const { xTicks, yTicks } = r;
  const [x0, x1] = [xTicks[0]!, xTicks.at(-1)! > xTicks[0]! ? xTicks.at(-1)! : xTicks[0]! + 1];
  const [y0, y1] = [yTicks[0]!, yTicks.at(-1)! > yTicks[0]! ? yTicks.at(-1)! : yTicks[0]! + 1];
  const px = (v: number): number => f.left + ((v - x0) / (x1 - x0)) * f.width;
  const py = (v: number): number => f.top + f.height - ((v - y0) / (y1 - y0)) * f.height;
  const parts: string[] = [];
  if (title !== undefined) {
    // Lines end just above the plot; the tooltip keeps the whole title.
    const first = f.top - 8 - (title.lines.length - 1) * TITLE_LINE_HEIGHT;
    const spans = title.lines.map((l, i) => `<tspan x="${f.left + f.width / 2}" y="${first + i * TITLE_LINE_HEIGHT}">${escapeXml(l)}</tspan>`).join('');
    parts.push(`<text text-anchor="middle"><title>${escapeXml(title.whole)}</title>${spans}</text>`);
  }
  for (const t of yTicks) {
    parts.push(`<line x1="${f.left}" y1="${fmt(py(t))}" x2="${f.left + f.width}" y2="${fmt(py(t))}" stroke="${GRID}"/>`);
    parts.push(`<text x="${f.left - 6}" y="${fmt(py(t) + 4)}" text-anchor="end" fill="${AXIS}">${fmt(t)}</text>`);
  }
  for (const t of xTicks) {
    parts.push(`<text x="${fmt(px(t))}" y="${f.top + f.height + 16}" text-anchor="middle" fill="${AXIS}">${fmt(t)}</text>`);
  }
  parts.push(`<path d="M${f.left} ${f.top}V${f.top + f.height}H${f.left + f.width}" fill="none" stroke="${AXIS}"/>`);
  for (const s of series) {
    if (s.points.length === 0) continue;
    const color = colorOf(s.label);
    const d = s.points.map(([x, y], i) => `${i === 0 ? 'M' : 'L'}${fmt(px(x))} ${fmt(py(y))}`).join('');
    const kind = s.dashed ? 'validation' : 'training';
    parts.push(
      `<path class="series ${kind}" d="${d}" fill="none" stroke="${color}" stroke-width="1.6"${s.dashed ? ' stroke-dasharray="5 3"' : ''}>` +
        `<title>${escapeXml(s.label)}</title></path>`,
    );
    if (s.markers) {
      for (const [x, y] of s.points) {
        parts.push(
          `<circle class="point ${kind}" cx="${fmt(px(x))}" cy="${fmt(py(y))}" r="3.5" fill="${color}" stroke="#fff" stroke-width="1">` +
            `<title>${escapeXml(`${s.label}: step ${fmt(x)}, ${fmt(y)}`)}</title></circle>`,
        );
      }
    }
  }
  return parts;
}

/** The legend's key to line styles: what solid and dotted-dashed mean. */
function styleKey(x: number, y: number, solid: string, dotted: string): string {
  return `<g class="style-key" fill="${AXIS}"><line x1="${x}" y1="${y - 4}" x2="${x + 22}" y2="${y - 4}" stroke="${AXIS}" stroke-width="1.6"/>` +
    `<text x="${x + 28}" y="${y}">${escapeXml(solid)}</text>` +
    `<line x1="${x + 40 + solid.length * CHAR_WIDTH}" y1="${y - 4}" x2="${x + 62 + solid.length * CHAR_WIDTH}" y2="${y - 4}" stroke="${AXIS}" stroke-width="1.6" stroke-dasharray="5 3"/>` +
    `<circle cx="${x + 51 + solid.length * CHAR_WIDTH}" cy="${y - 4}" r="3.5" fill="${AXIS}"/>` +
    `<text x="${x + 68 + solid.length * CHAR_WIDTH}" y="${y}">${escapeXml(dotted)}</text></g>`;
}

/** Lines over a shared x/y range with a legend on the right (one entry per label, in first-seen order). */
export function lineChartSvg(series: readonly Series[], opts: { title: string; xLabel: string; yLabel: string; note?: string }): string {
  const labels = [...new Set(series.map((s) => s.label))];
  const colorOf = new Map(labels.map((label, i) => [label, seriesColor(i)]));
  const f: Frame = { left: 64, top: 36, width: 520, height: 300 };
  const legendX = f.left + f.width + 24;
  const legendWidth = Math.ceil(Math.max(8, ...labels.map((l) => shorten(l).length)) * CHAR_WIDTH) + 40;
  const width = legendX + legendWidth;
  const height = Math.max(f.top + f.height + 56, f.top + labels.length * 20 + 20);
  const parts: string[] = [];
  parts.push(`<text x="${f.left + f.width / 2}" y="20" text-anchor="middle" font-weight="bold">${escapeXml(opts.title)}</text>`);
  parts.push(...plotParts(series, f, rangesOf(series), (l) => colorOf.get(l)!));
  parts.push(`<text x="${f.left + f.width / 2}" y="${f.top + f.height + 36}" text-anchor="middle" fill="${AXIS}">${escapeXml(opts.xLabel)}</text>`);
  parts.push(
    `<text transform="translate(16 ${f.top + f.height / 2}) rotate(-90)" text-anchor="middle" fill="${AXIS}">${escapeXml(opts.yLabel)}</text>`,
  );
  if (opts.note) {
    parts.push(`<text x="${f.left}" y="${f.top + f.height + 52}" fill="${AXIS}">${escapeXml(opts.note)}</text>`);
  }
  labels.forEach((label, i) => parts.push(legendEntry(legendX, f.top + i * 20, colorOf.get(label)!, label)));
  return wrap(width, height + (opts.note ? 12 : 0), parts);
}

function legendEntry(x: number, y: number, color: string, label: string): string {
  return `<g class="legend"><line x1="${x}" y1="${y + 6}" x2="${x + 20}" y2="${y + 6}" stroke="${color}" stroke-width="3"/>` +
    `<text x="${x + 26}" y="${y + 10}">${escapeXml(shorten(label))}</text></g>`;
}

/** One plot of a figure of several. */
export interface Panel {
  title: string;
  series: Series[];
  /** Panels with the same scale share their axes' ranges (comparable at a glance); each scale has its own. */
  scale: string;
}

export interface PanelsOptions {
  title: string;
  xLabel: string;
  yLabel: string;
  /** Panels per row. */
  columns: number;
  /** Size of each plot area, in pixels. */
  plotWidth: number;
  plotHeight: number;
  /** A colour legend of the series labels on the right; without it every series takes its panel's first colour. */
  legend: boolean;
  /** What solid lines and dotted dashed lines mean. */
  styles: [solid: string, dotted: string];
  note?: string;
}

/** Several plots in a grid in one SVG (small multiples), each with its own title, a shared style key below. */
export function panelsSvg(panels: readonly Panel[], o: PanelsOptions): string {
  const labels = [...new Set(panels.flatMap((p) => p.series.map((s) => s.label)))];
  const colorOf = new Map(labels.map((label, i) => [label, seriesColor(i)]));
  const scales = new Map<string, Ranges>();
  for (const scale of new Set(panels.map((p) => p.scale))) {
    scales.set(scale, rangesOf(panels.filter((p) => p.scale === scale).flatMap((p) => p.series)));
  }
  const cellWidth = o.plotWidth + 70;
  // Panel titles wrap within their cell: a title wider than its panel ran into its neighbours'.
  const titles: PanelTitle[] = panels.map((p) => ({ lines: wrapTitle(p.title, Math.floor((o.plotWidth + 40) / CHAR_WIDTH)), whole: p.title }));
  const titleSpace = (Math.max(1, ...titles.map((t) => t.lines.length)) - 1) * TITLE_LINE_HEIGHT;
  const cellHeight = o.plotHeight + 64 + titleSpace;
  const columns = Math.max(1, Math.min(o.columns, panels.length));
  const rowsCount = Math.max(1, Math.ceil(panels.length / columns));
  const top = 40;
  const gridWidth = columns * cellWidth + 20;
  const legendWidth = o.legend ? Math.ceil(Math.max(8, ...labels.map((l) => shorten(l).length)) * CHAR_WIDTH) + 40 : 0;
  const width = gridWidth + legendWidth;
  const gridBottom = top + rowsCount * cellHeight;
  const height = Math.max(gridBottom + (o.note ? 62 : 44), o.legend ? top + labels.length * 20 + 20 : 0);
  const parts: string[] = [];
  parts.push(`<text x="${gridWidth / 2}" y="20" text-anchor="middle" font-weight="bold">${escapeXml(o.title)}</text>`);
  panels.forEach((p, i) => {
    const f: Frame = {
      left: 20 + (i % columns) * cellWidth + 50,
      top: top + Math.floor(i / columns) * cellHeight + 20 + titleSpace,
      width: o.plotWidth,
      height: o.plotHeight,
    };
    const own = seriesColor(labels.indexOf(p.series[0]?.label ?? ''));
    const color = o.legend ? (l: string) => colorOf.get(l)! : () => own;
    parts.push(`<g class="panel">${plotParts(p.series, f, scales.get(p.scale)!, color, titles[i]).join('')}</g>`);
  });
  parts.push(`<text x="${gridWidth / 2}" y="${gridBottom + 4}" text-anchor="middle" fill="${AXIS}">${escapeXml(o.xLabel)}</text>`);
  parts.push(`<text transform="translate(14 ${top + (rowsCount * cellHeight) / 2}) rotate(-90)" text-anchor="middle" fill="${AXIS}">${escapeXml(o.yLabel)}</text>`);
  parts.push(styleKey(70, gridBottom + 26, o.styles[0], o.styles[1]));
  if (o.note) parts.push(`<text x="70" y="${gridBottom + 46}" fill="${AXIS}">${escapeXml(o.note)}</text>`);
  if (o.legend) labels.forEach((label, i) => parts.push(legendEntry(gridWidth, top + i * 20, colorOf.get(label)!, label)));
  return wrap(width, height, parts);
}

function wrap(width: number, height: number, parts: string[]): string {
  return (
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" ${FONT}>\n` +
    `<rect width="100%" height="100%" fill="#fff"/>\n${parts.join('\n')}\n</svg>\n`
  );
}

// Human-readable rendering of values and durations shared by plan reasons, tables and progress lines.
import type { JsonValue } from './json.ts';

/** The shorter of plain and exponent notation, as people write learning rates: 0.00005 → `5e-5`, 100 → `100`. */
export function formatNumber(n: number): string {
  const plain = String(n);
  if (!Number.isFinite(n) || (Number.isInteger(n) && Math.abs(n) < 1e21)) return plain;
  const exp = n.toExponential().replace('e+', 'e');
  return exp.length < plain.length ? exp : plain;
}

/**
 * A measured number for people: counts (integers) in full, anything else to six significant digits, written plainly
 * so that a column reads alike (`0.005` beside `0.0125`, not `5e-3`). A rounded number whose plain form would show
 * zeros that were never measured (1234567.8 → 1234570) is written with an exponent instead (`1.23457e6`), and so is
 * one below 1e-4, whose plain form is mostly zeros (`3.2e-7`).
 */
export function formatMetric(n: number): string {
  if (Number.isSafeInteger(n)) return String(n);
  if (!Number.isFinite(n)) return String(n);
  const rounded = Number(n.toPrecision(6));
  const tooLarge = Number.isInteger(rounded) && Math.abs(rounded) >= 1e6;
  const tooSmall = rounded !== 0 && Math.abs(rounded) < 1e-4;
  return tooLarge || tooSmall ? rounded.toExponential().replace('e+', 'e') : String(rounded);
}

/** Compact JSON with numbers in `formatNumber` style, cut to `max` characters. */
export function formatValue(v: JsonValue | undefined, max = 60): string {
  const text = render(v);
  return text.length > max ? `${text.slice(0, max - 1)}…` : text;
}

function render(v: JsonValue | undefined): string {
  if (v === undefined) return 'undefined';
  if (typeof v === 'number') return formatNumber(v);
  if (Array.isArray(v)) return `[${v.map(render).join(',')}]`;
  if (v !== null && typeof v === 'object') {
    return `{${Object.entries(v).map(([k, x]) => `${JSON.stringify(k)}:${render(x)}`).join(',')}}`;
  }
  return JSON.stringify(v);
}

/** Seconds as people read them: `0.4 s`, `12 s`, `3m05s`, `2h04m`. */
export function formatSeconds(s: number): string {
  if (s < 10) return `${s.toFixed(1)} s`;
  if (s < 60) return `${Math.round(s)} s`;
  const whole = Math.round(s);
  const m = Math.floor(whole / 60);
  if (m < 60) return `${m}m${String(whole % 60).padStart(2, '0')}s`;
  return `${Math.floor(m / 60)}h${String(m % 60).padStart(2, '0')}m`;
}

/** How many names a list for people shows before it says how many more there are. */
export const LISTED_NAMES = 3;

/**
 * At most `LISTED_NAMES` of `names`, then how many more (`a, b, c and 57 more`): a stage of a 240-variant matrix
 * would otherwise name every variant in one line. Four names are shown whole (`and 1 more` says no less).
 */
export function listSome(names: readonly string[], separator = ', '): string {
  if (names.length <= LISTED_NAMES + 1) return names.join(separator);
  return `${names.slice(0, LISTED_NAMES).join(separator)} and ${names.length - LISTED_NAMES} more`;
}

/** The note on a mistake found in some variants of a loop only: ``in the variants `x=1`, `x=2`, `x=3` and 4 more``. */
export function variantsNote(labels: readonly string[]): string {
  const shown = labels.slice(0, LISTED_NAMES).map((l) => `\`${l}\``).join(', ') + (labels.length > LISTED_NAMES ? ` and ${labels.length - LISTED_NAMES} more` : '');
  return `in the variant${labels.length === 1 ? '' : 's'} ${shown}`;
}

/**
 * Text shown as written in Markdown: a label's `|` would end its cell, `<b>` would be HTML, and `*`, a backtick or a
 * backslash would start emphasis, a code span or an escape.
 */
export function markdownText(text: string): string {
  return text.replace(/[\\`*|]/g, (c) => `\\${c}`).replaceAll('<', '&lt;');
}

// Command-line overrides of a pipeline's top-level lets (`-p lr=1e-4`, `-p lora_config.r=8`): parsing, applying, attributing.
import { parsePipeText, type Expr } from '../grammar/index.ts';
import { didYouMean } from '../grammar/suggest.ts';
import { evaluate, INVALID, renderValue, Scope, typeName } from './expand-eval.ts';
import type { JsonValue } from './json.ts';
import type { Pipeline } from './pipeline.ts';
import { diffParams } from './plan.ts';

export interface Override {
  /** As typed, e.g. `lora_config.r=8`: what messages quote. */
  text: string;
  /** The top-level let it replaces (`lora_config`). */
  name: string;
  /** Keys inside the let's object value (`["r"]`); empty to replace the whole value. */
  path: string[];
  value: JsonValue;
}

/** A literal of the language (`-1`, `"text"`, `[1, {r: 8}]`): what a -p value is, so `2024-01` stays text, not 2023. */
function isLiteral(e: Expr): boolean {
  switch (e.type) {
    case 'number':
    case 'boolean':
    case 'null':
      return true;
    case 'string':
      return e.parts.every((p) => typeof p === 'string');
    case 'unary':
      return e.op === '-' && e.operand.type === 'number';
    case 'list':
      return e.items.every(isLiteral);
    case 'object':
      return e.entries.every((entry) => isLiteral(entry.value));
    default:
      return false;
  }
}

/** What a value is meant as when it opens like a literal (a whole number too large, say), or undefined for a bare word. */
function meantAs(text: string): string | undefined {
  if (text.startsWith('"')) return 'a string';
  if (text.startsWith('[')) return 'a list';
  if (text.startsWith('{')) return 'an object';
  return /^-?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/.test(text) ? 'a number' : undefined;
}

/**
 * The value of `-p NAME=VALUE`: a literal of the language (`1e-4`, `true`, `"text"`, `[1, 2]`, `{r: 8}`) is that value;
 * other text (a bare word such as `embed+head`) is the text itself, as a string. Text meant as a literal that is not
 * one (`[0.1, 0.2` without its `]`) is a mistake, said at once rather than passed on as a string.
 */
function parseValue(text: string): { value: JsonValue } | { error: string } {
  const parsed = parsePipeText(`let value = ${text}\n`, '<-p>');
  const statement = parsed.ast?.statements[0];
  let problem = parsed.diagnostics[0]?.message.replace(/^expected `let`, `stage`, `for each` or `include`, found /, 'text follows its end: ');
  if (problem === undefined && (parsed.ast?.statements.length !== 1 || statement?.type !== 'let')) problem = 'it holds more than one value';
  if (problem === undefined && statement?.type === 'let') {
    if (!isLiteral(statement.value)) {
      problem = 'a -p value cannot hold names, operators or `${...}`';
    } else {
      const value = evaluate(statement.value, new Scope(), { report: (d) => { problem ??= d.message; }, explainUnknown: () => [] });
      if (problem === undefined && value !== INVALID) return { value };
    }
  }
  const meant = meantAs(text);
  return meant === undefined ? { value: text } : { error: `the value looks like ${meant} but is not one: ${problem}` };
}

/** `lr=1e-4` → an override, or a sentence saying what is wrong with it. */
export function parseOverride(text: string): Override | string {
  const eq = text.indexOf('=');
  const target = eq < 0 ? '' : text.slice(0, eq).trim();
  if (!/^[A-Za-z_][A-Za-z0-9_]*(\.[^.=\s]+)*$/.test(target)) {
    return `-p ${text}: expected NAME=VALUE or NAME.KEY=VALUE, where NAME is a top-level let of the pipeline`;
  }
  const [name, ...path] = target.split('.');
  const parsed = parseValue(text.slice(eq + 1).trim());
  if ('error' in parsed) return `-p ${text}: ${parsed.error}`;
  return { text, name: name!, path, value: parsed.value };
}

export type Applied = { ok: true; value: JsonValue } | { ok: false; error: string };

/** The let's value with the override applied, or why it cannot be (the let is no object, or lacks the key). */
export function applyOverride(current: JsonValue, o: Override): Applied {
  const set = (value: JsonValue, depth: number): Applied => {
    if (depth === o.path.length) return { ok: true, value: o.value };
    const where = [o.name, ...o.path.slice(0, depth)].join('.');
    const key = o.path[depth]!;
    if (value === null || typeof value !== 'object' || Array.isArray(value)) {
      return { ok: false, error: `\`${where}\` is ${typeName(value)} ${renderValue(value)}, not an object with key \`${key}\`` };
    }
    if (!Object.hasOwn(value, key)) {
      const hint = didYouMean(key, Object.keys(value));
      return { ok: false, error: `\`${where}\` has no key \`${key}\`${hint.length > 0 ? `; ${hint[0]}` : ''} (its keys: ${Object.keys(value).join(', ') || 'none'})` };
    }
    const inner = set(value[key]!, depth + 1);
    return inner.ok ? { ok: true, value: { ...value, [key]: inner.value } } : inner;
  };
  return set(current, 0);
}

/** `{"lr": 0.0001, "lora_config.r": 8}`: how the overrides of a run are recorded with its results. */
export function overridesRecord(overrides: readonly Override[]): Record<string, JsonValue> {
  return Object.fromEntries(overrides.map((o) => [[o.name, ...o.path].join('.'), o.value]));
}

/**
 * The note `plan` puts after a parameter change that the command line made: for each stage and parameter path, the
 * overrides that change it on their own. `base` is the pipeline loaded without overrides, `alone[i]` with only the
 * i-th (null where that did not load).
 */
export function overrideNotes(
  overrides: readonly Override[],
  base: Pipeline,
  alone: readonly (Pipeline | null)[],
): (stage: string, paramPath: string) => string | undefined {
  const byStage = new Map(base.stages.map((s) => [s.name, s.params]));
  const notes = new Map<string, string[]>();
  overrides.forEach((o, i) => {
    for (const s of alone[i]?.stages ?? []) {
      const before = byStage.get(s.name);
      if (!before) continue;
      for (const c of diffParams(before, s.params)) {
        const at = `${s.name}\u0000${c.path}`;
        notes.set(at, [...(notes.get(at) ?? []), `-p ${o.text}`]);
      }
    }
  });
  return (stage, paramPath) => {
    const texts = notes.get(`${stage}\u0000${paramPath}`);
    return texts ? `(${texts.join(', ')})` : undefined;
  };
}

// Command-line targets (`step1`, `warm[lora=true]`, `eval[*]`, a generated name): which stages they select, and the runs they imply.
import { didYouMean } from '../grammar/suggest.ts';
import { jsonEqual, renderValue } from './expand-eval.ts';
import type { JsonValue } from './json.ts';
import type { Pipeline, StageInstance } from './pipeline.ts';

/** Generated names selected by the targets, in pipeline order; or one sentence saying which target is wrong and why. */
export type Selection = { names: Set<string> } | { error: string };

/** Splits `a=1,b=[1,2]` at the commas outside brackets and quotes. */
function splitPairs(text: string): string[] {
  const parts: string[] = [];
  let depth = 0;
  let quoted = false;
  let start = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (c === '"' && text[i - 1] !== '\\') quoted = !quoted;
    else if (!quoted && (c === '[' || c === '{')) depth++;
    else if (!quoted && (c === ']' || c === '}')) depth--;
    else if (!quoted && depth === 0 && c === ',') {
      parts.push(text.slice(start, i));
      start = i + 1;
    }
  }
  parts.push(text.slice(start));
  return parts.map((p) => p.trim());
}

/** A selector value as typed matches a loop value written the way labels write it (`lora=true`) or as the same JSON (`lr=1e-4`). */
function valueMatches(typed: string, value: JsonValue): boolean {
  if (renderValue(value) === typed) return true;
  try {
    return jsonEqual(JSON.parse(typed) as JsonValue, value);
  } catch {
    return false;
  }
}

function selectOne(pipeline: Pipeline, target: string): StageInstance[] | string {
  const exact = pipeline.stages.filter((s) => s.name === target);
  if (exact.length > 0) return exact;
  const m = /^([^[\]]+)(?:\[(.*)\])?$/s.exec(target.trim());
  if (!m) return `target \`${target}\` is not NAME, NAME[*] or NAME[var=value,...]`;
  const [, name, selector] = m as unknown as [string, string, string | undefined];
  const instances = pipeline.stages.filter((s) => s.declaredName === name);
  if (instances.length === 0) {
    const declared = [...new Set(pipeline.stages.map((s) => s.declaredName))];
    const hint = didYouMean(name, declared);
    return `no stage \`${name}\` in ${pipeline.file}; ${hint.length > 0 ? hint[0] : `its stages: ${declared.join(', ')}`}`;
  }
  if (selector === undefined || selector.trim() === '*') return instances;
  const variables = Object.keys(instances[0]!.variant);
  if (variables.length === 0) return `\`${name}\` is not declared in a \`for each\`, so it has no variants to select: write \`${name}\``;
  const wanted: [string, string][] = [];
  for (const pair of splitPairs(selector)) {
    const eq = pair.indexOf('=');
    if (eq <= 0) {
      return `\`${target}\`: \`${pair}\` is no variant of \`${name}\` and not of the form var=value (variants: ${instances.map((s) => s.name).join(', ')})`;
    }
    const variable = pair.slice(0, eq).trim();
    if (!variables.includes(variable)) {
      const hint = didYouMean(variable, variables);
      return `\`${target}\`: \`${variable}\` is not a loop variable of \`${name}\`${hint.length > 0 ? ` (${hint[0]})` : ''}; its variables: ${variables.join(', ')}`;
    }
    wanted.push([variable, pair.slice(eq + 1).trim()]);
  }
  const matching = instances.filter((s) => wanted.every(([v, typed]) => valueMatches(typed, s.variant[v]!)));
  if (matching.length > 0) return matching;
  const taken = wanted.map(([v]) => `\`${v}\` takes ${[...new Set(instances.map((s) => renderValue(s.variant[v]!)))].join(', ')}`);
  return `\`${target}\` matches no variant: ${taken.join('; ')}`;
}

/** The stages the targets name; every target must select at least one. */
export function selectTargets(pipeline: Pipeline, targets: string[]): Selection {
  const chosen = new Set<string>();
  for (const t of targets) {
    const found = selectOne(pipeline, t);
    if (typeof found === 'string') return { error: found };
    for (const s of found) chosen.add(s.name);
  }
  return { names: new Set(pipeline.stages.filter((s) => chosen.has(s.name)).map((s) => s.name)) };
}

/** The names plus every stage they read from, directly or through others. */
export function withUpstream(pipeline: Pipeline, names: Set<string>): Set<string> {
  const byName = new Map(pipeline.stages.map((s) => [s.name, s]));
  const out = new Set<string>();
  const todo = [...names];
  while (todo.length > 0) {
    const name = todo.pop()!;
    if (out.has(name)) continue;
    out.add(name);
    for (const b of Object.values(byName.get(name)?.inputs ?? {})) todo.push(...b.stages);
  }
  return out;
}

/** The names plus every stage that reads from them, directly or through others. */
export function withDownstream(pipeline: Pipeline, names: Set<string>): Set<string> {
  const out = new Set(names);
  // Topological order: a stage's inputs were decided before it is looked at.
  for (const s of pipeline.stages) {
    if (Object.values(s.inputs).some((b) => b.stages.some((u) => out.has(u)))) out.add(s.name);
  }
  return out;
}

/** The pipeline cut to the given stages (which must be closed under their inputs), order kept. */
export function restrictPipeline(pipeline: Pipeline, names: Set<string>): Pipeline {
  return { ...pipeline, stages: pipeline.stages.filter((s) => names.has(s.name)) };
}

/**
 * What `run TARGET… [--force]` runs: the targets (all stages without targets) and what they need; with --force,
 * also everything downstream of a forced stage, so no cached result stays computed from a replaced one.
 * `forced` is what --force names: the targets, or every stage (planning adds their descendants).
 */
export function runScope(pipeline: Pipeline, targets: Set<string> | undefined, force: boolean): { stages: Set<string>; forced: Set<string> } {
  const chosen = targets ?? new Set(pipeline.stages.map((s) => s.name));
  if (!force) return { stages: withUpstream(pipeline, chosen), forced: new Set() };
  return { stages: withUpstream(pipeline, withDownstream(pipeline, chosen)), forced: chosen };
}

// Runs a stage kind's code wherever a stage runs (worker, in-process, Slurm job), so its errors read the same everywhere.
import path from 'node:path';
import type { ArtifactRef, StageContext, StageKind, StageResult } from '../stages/kind.ts';
import { canonicalJson } from './hash.ts';
import type { JsonValue } from './json.ts';

/**
 * Runs `kind` on `ctx`. An error whose message names an upstream stage's cache folder (a missing or malformed
 * file there) names the input and its stage instead: `input \`data\` (stage \`base\`): train.jsonl` says what
 * to fix in the pipeline, `/…/objects/b5/b59a…/artifacts/train.jsonl` does not. The stack keeps the full path. A
 * fault inside WebAssembly gets what it most likely means (WASM_FAULT).
 * A result the manifest cannot store as returned fails the stage (see `checkedResult`).
 */
export async function runStageKind(kind: StageKind, ctx: StageContext): Promise<StageResult> {
  let result: unknown;
  try {
    result = await kind.run(ctx);
  } catch (error) {
    if (error instanceof Error) {
      // V8 writes the stack's first line at its first read: read it now, so the log keeps the full path.
      void error.stack;
      error.message = nameInputFolders(error.message, ctx.inputs);
      if (error instanceof WebAssembly.RuntimeError) error.message += WASM_FAULT;
    }
    throw error;
  }
  return checkedResult(kind.name, result);
}

/**
 * Said after a fault inside WebAssembly ("memory access out of bounds", "table index is out of bounds"): in tfjs's wasm
 * backend these come from an allocation its C++ code made failing (one made from JavaScript says so itself).
 */
const WASM_FAULT = ' (a fault inside WebAssembly: on the wasm backend, most often its memory running out, which is at most 4 GiB in ' +
  'a process whatever the machine has; a GPU backend has no such limit, and a smaller model, batch or sequence length needs less)';

/**
 * `result` when it is a StageResult whose metrics JSON stores exactly; else an error saying what to return. Without
 * this, the worker's channel and the manifest would turn NaN into null and drop a function or a misplaced metric
 * (`return { accuracy }` for `return { metrics: { accuracy } }`) without a word, and a BigInt would fail the commit
 * with no metric named.
 */
export function checkedResult(kindName: string, result: unknown): StageResult {
  const refuse = (what: string) => new Error(`stage kind \`${kindName}\`: run() ${what}`);
  const kindOf = (v: unknown) => (Array.isArray(v) ? 'an array' : v === null ? 'null' : `a ${typeof v}`);
  // Nothing returned loses nothing: a kind that only writes artifacts has no metrics.
  if (result === undefined) return {};
  if (result === null || typeof result !== 'object' || Array.isArray(result)) {
    throw refuse(`resolved to ${kindOf(result)}; return { metrics: { … } }`);
  }
  const misplaced = Object.keys(result).filter((k) => k !== 'metrics');
  if (misplaced.length > 0) {
    throw refuse(`returned ${misplaced.map((k) => `\`${k}\``).join(', ')} beside \`metrics\`; metrics go inside it: return { metrics: { ${misplaced[0]}: … } }`);
  }
  const metrics = (result as StageResult).metrics;
  if (metrics === undefined) return {};
  if (metrics === null || typeof metrics !== 'object' || Array.isArray(metrics)) {
    throw refuse(`returned metrics that are ${kindOf(metrics)}, not an object from metric name to value`);
  }
  try {
    canonicalJson(metrics as JsonValue);
  } catch (error) {
    const what = (error as Error).message.replace(/^canonicalJson: \$/, 'metrics');
    throw refuse(`returned a metric the manifest cannot store: ${what}; give finite numbers, strings, booleans, null, lists and plain objects`);
  }
  return result as StageResult;
}

/** `text` with every input's artifact folder (and a path inside it) replaced by the input's and its stage's names. */
export function nameInputFolders(text: string, inputs: Record<string, ArtifactRef[]>): string {
  // One stage may be several inputs (`model: base, data: base`): its folder names them all.
  const byFolder = new Map<string, { stage: string; names: string[] }>();
  for (const [name, refs] of Object.entries(inputs)) {
    for (const ref of refs) {
      const entry = byFolder.get(ref.dir) ?? { stage: ref.stage, names: [] };
      if (!entry.names.includes(name)) entry.names.push(name);
      byFolder.set(ref.dir, entry);
    }
  }
  let out = text;
  for (const [dir, { stage, names }] of byFolder) {
    const quoted = names.map((n) => `\`${n}\``);
    const label = `${names.length === 1 ? 'input' : 'inputs'} ${quoted.length === 1 ? quoted[0] : `${quoted.slice(0, -1).join(', ')} and ${quoted.at(-1)}`} (stage \`${stage}\`)`;
    // The folder, then optionally a path inside it; never a longer name that merely starts with the folder's.
    const folder = new RegExp(`${escapeRegExp(dir)}(?:${escapeRegExp(path.sep)}(${PATH_CHARS}+))?(?!${PATH_CHARS})`, 'g');
    out = out.replace(folder, (_, inside: string | undefined) => (inside ? `${label}: ${inside}` : label));
  }
  return out;
}

/** Characters a path in a message is made of (it ends at a space, a quote, a colon or punctuation). */
const PATH_CHARS = `[^\\s:;,'"\`()]`;

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

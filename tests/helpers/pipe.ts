// Test fixtures for the .pipe language: small stage kinds covering every schema feature, and load/assert helpers.
import path from 'node:path';
import * as assert from 'uvu/assert';
import { formatDiagnostics, type Diagnostic } from '../../grammar/diagnostics.ts';
import { loadPipelineText, type LoadResult } from '../../runtime/load.ts';
import type { ParamsSchema, StageKind } from '../../stages/kind.ts';

/** Where test pipelines pretend to live; nothing is read from there (includes come from the `files` map). */
export const TEST_DIR = '/virtual/project';
export const TEST_FILE = path.join(TEST_DIR, 'main.pipe');

function kind(name: string, params: ParamsSchema, inputs: StageKind['inputs'] = {}): StageKind {
  return { name, version: 1, description: `test kind ${name}`, params, inputs, run: async () => ({}) };
}

function schema(properties: ParamsSchema['properties'], required: string[] = []): ParamsSchema {
  return { type: 'object', properties, required, additionalProperties: false };
}

/**
 * Kinds named like the README's pipeline, with schemas covering number/integer/string/boolean/null/list/object,
 * enum, minimum, defaults and required params, and inputs single, many, optional and any-name.
 */
export const TEST_KINDS: Record<string, StageKind> = {
  gsm8k: kind('gsm8k', schema({
    path: { type: 'string', description: 'Folder holding train.jsonl and test.jsonl.' },
    val_fraction: { type: 'number', minimum: 0, maximum: 1, default: 0.1, description: 'Share of train held out.' },
  }, ['path'])),
  inject_pauses: kind('inject_pauses', schema({
    n_random_pauses: { type: 'integer', minimum: 0, default: 0, description: 'Pauses at random positions.' },
    variable: { type: 'boolean', default: false, description: 'Draw the count per example.' },
    tokenizer: { type: ['string', 'null'], default: null, description: 'Tokenizer for positions, or null for words.' },
    patterns: { type: 'object', additionalProperties: { type: 'integer', minimum: 0 }, default: {}, description: 'Pattern → pauses.' },
    columns: { type: 'array', items: { type: 'string' }, default: ['answer'], description: 'Columns to augment.' },
    mode: { enum: ['insert', 'append'], default: 'insert', description: 'Where pauses go.' },
  }), { data: { description: 'Dataset to augment.' } }),
  surgery: kind('surgery', schema({
    model: { type: 'string', default: 'tiny', description: 'Base model.' },
    options: {
      type: 'object',
      properties: { init: { enum: ['mean', 'random'], description: 'Pause embedding init.' } },
      required: ['init'],
      additionalProperties: false,
      default: { init: 'mean' },
      description: 'Surgery options.',
    },
  })),
  sft: kind('sft', schema({
    lr: { type: 'number', exclusiveMinimum: 0, default: 1e-4, description: 'Learning rate.' },
    epochs: { type: 'integer', minimum: 1, default: 1, description: 'Passes over the data.' },
    train_lm_head: { type: 'boolean', default: false, description: 'Unfreeze the LM head.' },
    train_embeddings: { type: 'boolean', default: false, description: 'Unfreeze the embeddings.' },
  }), { model: { description: 'Model to train.' }, data: { description: 'Training data.' } }),
  evaluate: kind('evaluate', schema({
    max_new_tokens: { type: 'integer', minimum: 1, default: 64, description: 'Generation budget.' },
  }), {
    model: { description: 'Model to evaluate.' },
    data: { description: 'Test data.' },
    baseline: { description: 'Model to compare with.', optional: true },
  }),
  report: kind('report', schema({
    title: { type: 'string', default: '', description: 'Table title.' },
  }), { runs: { description: 'Evaluations to tabulate.', many: true } }),
  sh: kind('sh', {
    ...schema({
      command: { type: ['string', 'array'], items: { type: 'string' }, description: 'Command.' },
      shell: { type: 'boolean', default: false, description: 'Run through a shell.' },
      env: { type: 'object', additionalProperties: { type: ['string', 'number', 'boolean'] }, default: {}, description: 'Environment.' },
    }, ['command']),
    // A string command needs `shell: true`: a conditional rule, as the real `sh` kind has.
    if: { properties: { command: { type: 'string' } }, required: ['command'] },
    then: { properties: { shell: { const: true } }, required: ['shell'] },
  }, { '*': { description: 'Any input.', anyArity: true, optional: true } }),
};

/** Loads `text` as TEST_FILE; `files` holds included files by path relative to TEST_DIR. */
export function parsePipe(text: string, files: Record<string, string> = {}, kinds: Record<string, StageKind> = TEST_KINDS): LoadResult {
  const byPath = new Map(Object.entries(files).map(([rel, content]) => [path.resolve(TEST_DIR, rel), content]));
  return loadPipelineText(text, TEST_FILE, kinds, (p) => byPath.get(p));
}

/** Formatted diagnostics, for assertion messages that show what was reported instead. */
export function describe(result: { diagnostics: Diagnostic[]; sources?: Record<string, string> }): string {
  return formatDiagnostics(result.diagnostics, result.sources ?? {}, { cwd: TEST_DIR }) || '(no diagnostics)';
}

/** Asserts a diagnostic with this code at line:column (1-based) and returns it. */
export function expectDiagnostic(result: { diagnostics: Diagnostic[] }, code: string, line: number, column: number): Diagnostic {
  const found = result.diagnostics.find((d) => d.code === code && d.span?.line === line && d.span?.column === column);
  if (!found) assert.unreachable(`expected ${code} at ${line}:${column}, got:\n${describe(result)}`);
  return found!;
}

/** Asserts the exact list of diagnostics as `CODE line:column` strings, in reported order. */
export function expectDiagnostics(result: { diagnostics: Diagnostic[] }, expected: string[]): void {
  const got = result.diagnostics.map((d) => `${d.code} ${d.span ? `${d.span.line}:${d.span.column}` : '-'}`);
  assert.equal(got, expected, describe(result));
}

/** Asserts the text loads without any diagnostic and returns the pipeline. */
export function expectPipeline(result: LoadResult): NonNullable<LoadResult['pipeline']> {
  assert.equal(result.diagnostics, [], describe(result));
  assert.ok(result.pipeline);
  return result.pipeline!;
}

/** A preamble of top-level stages most tests build on (3 lines). */
export const PREAMBLE = [
  'stage data = gsm8k { path: "../shared/data/gsm8k" }',
  'stage base = surgery { }',
  'stage paused = inject_pauses(data: data) { n_random_pauses: 2 }',
].join('\n');

/** A copy of an AST (or any value) without `span`-like keys, to compare shapes. */
export function stripSpans(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(stripSpans);
  if (value === null || typeof value !== 'object') return value;
  return Object.fromEntries(Object.entries(value).filter(([k]) => !/span$/i.test(k)).map(([k, v]) => [k, stripSpans(v)]));
}

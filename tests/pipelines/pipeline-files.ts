// Test helpers for the user pipelines in pipelines/: loading them with the real stage registry, and reading their stages.
import * as assert from 'uvu/assert';
import { readdirSync } from 'node:fs';
import path from 'node:path';
import { formatDiagnostics } from '../../grammar/diagnostics.ts';
import type { JsonValue } from '../../runtime/json.ts';
import { loadPipeline } from '../../runtime/load.ts';
import type { Pipeline, StageInstance } from '../../runtime/pipeline.ts';
import { STAGE_KINDS } from '../../stages/index.ts';
import { PROJECT_ROOT } from '../helpers/requires.ts';

export { PROJECT_ROOT, SHARED, SHARED_PRESENT } from '../helpers/requires.ts';
export const PIPELINES_DIR = path.join(PROJECT_ROOT, 'pipelines');

/** Every .pipe file under pipelines/ (examples included), as absolute paths in a stable order. */
export function pipeFiles(dir = PIPELINES_DIR): string[] {
  return readdirSync(dir, { withFileTypes: true })
    .flatMap((e) => (e.isDirectory() ? pipeFiles(path.join(dir, e.name)) : e.name.endsWith('.pipe') ? [path.join(dir, e.name)] : []))
    .sort();
}

/** Loads pipelines/<name> with the real registry and asserts it has no diagnostic at all, warnings included. */
export async function loadProjectPipeline(name: string): Promise<Pipeline> {
  const file = path.join(PIPELINES_DIR, name);
  const { pipeline, diagnostics, sources } = await loadPipeline(file, STAGE_KINDS);
  assert.equal(diagnostics, [], formatDiagnostics(diagnostics, sources));
  assert.ok(pipeline, `${name} did not load`);
  return pipeline!;
}

export function stageNamed(pipeline: Pipeline, name: string): StageInstance {
  const s = pipeline.stages.find((x) => x.name === name);
  assert.ok(s, `no stage ${name} in ${pipeline.stages.map((x) => x.name).join(', ')}`);
  return s!;
}

/** The instances of one declared stage, in variant order. */
export function instancesOf(pipeline: Pipeline, declared: string): StageInstance[] {
  return pipeline.stages.filter((s) => s.declaredName === declared);
}

/** Inputs as input name → upstream stage names. */
export function inputsOf(s: StageInstance): Record<string, string[]> {
  return Object.fromEntries(Object.entries(s.inputs).map(([k, b]) => [k, b.stages]));
}

/** A nested object param (sft's `train`, `lora`) as a plain record; fails on anything else. */
export function objectParam(s: StageInstance, key: string): Record<string, JsonValue> {
  const v = s.params[key];
  assert.ok(v !== null && typeof v === 'object' && !Array.isArray(v), `${s.name}: ${key} is ${JSON.stringify(v)}, not an object`);
  return v as Record<string, JsonValue>;
}

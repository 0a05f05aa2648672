// Test helpers for the runner: temp workspaces, hand-built pipelines, and the real `pausepipe` bin run as a process.
import { rmSync } from 'node:fs';
import { mkdtemp, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';
import type { JsonValue } from '../../runtime/json.ts';
import type { Pipeline, StageInstance } from '../../runtime/pipeline.ts';

export const PROJECT_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
export const BIN = path.join(PROJECT_ROOT, 'bin', 'pausepipe.js');
/** The test-only stage kinds (count, crash, hold), registered through PAUSEPIPE_KINDS. */
export const TEST_KINDS = path.join(PROJECT_ROOT, 'tests', 'runtime', 'fixtures', 'test-kinds.ts');

const workspaces: string[] = [];
// Removed when the test process ends, so runs leave no folders behind (a failing test's workspace goes too).
process.on('exit', () => {
  for (const dir of workspaces) rmSync(dir, { recursive: true, force: true });
});

/** A fresh folder with a package.json, so it is its own workspace; removed when the test process exits. */
export async function tempWorkspace(prefix = 'pausepipe-test-'): Promise<string> {
  const dir = await mkdtemp(path.join(os.tmpdir(), prefix));
  workspaces.push(dir);
  await writeFile(path.join(dir, 'package.json'), '{"private": true}\n');
  return dir;
}

const NO_SPAN = { file: '<test>', line: 1, column: 1, endLine: 1, endColumn: 1, offset: 0, endOffset: 0 };

/** A stage instance as the language phase would produce it; `inputs` maps input names to upstream stage names. */
export function instance(
  name: string,
  kind: string,
  params: Record<string, JsonValue>,
  opts: { inputs?: Record<string, string | string[]>; variant?: Record<string, JsonValue>; declaredName?: string } = {},
): StageInstance {
  const inputs = Object.fromEntries(
    Object.entries(opts.inputs ?? {}).map(([k, v]) => [k, { stages: Array.isArray(v) ? v : [v], many: Array.isArray(v), span: NO_SPAN }]),
  );
  return { name, declaredName: opts.declaredName ?? name.replace(/\[.*$/, ''), kind, params, inputs, variant: opts.variant ?? {}, span: NO_SPAN };
}

export function pipelineOf(workspace: string, stages: StageInstance[]): Pipeline {
  return { file: path.join(workspace, 'test.pipe'), workspace, stages, sources: {} };
}

export interface CliResult {
  exitCode: number;
  stdout: string;
  stderr: string;
}

/** Runs `node bin/pausepipe.js ...args` in `cwd` with the test kinds registered. */
export async function cli(args: string[], cwd: string, env: Record<string, string> = {}): Promise<CliResult> {
  const r = await execa(process.execPath, [BIN, ...args], {
    cwd, reject: false, env: { PAUSEPIPE_KINDS: TEST_KINDS, ...env }, stdin: 'ignore',
  });
  return { exitCode: r.exitCode ?? -1, stdout: r.stdout, stderr: r.stderr };
}

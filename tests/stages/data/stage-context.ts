// Test helper for the data and report kinds: a real StageContext around a fresh temporary output folder.
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import type { JsonValue } from '../../../runtime/json.ts';
import type { ArtifactRef, StageContext, StageKind } from '../../../stages/kind.ts';

/** The project root (tests/stages/data → ../../..) and the shared folder beside it. */
export const PROJECT_ROOT = path.resolve(import.meta.dirname, '../../..');
export const SHARED = path.resolve(PROJECT_ROOT, '../shared');

const made: string[] = [];

/** A fresh folder under the OS temp folder, removed by `removeTempDirs` (register it with `test.after`). */
export async function tempDir(prefix: string): Promise<string> {
  const dir = await mkdtemp(path.join(os.tmpdir(), `pausepipe-data-${prefix}-`));
  made.push(dir);
  return dir;
}

export async function removeTempDirs(): Promise<void> {
  await Promise.all(made.splice(0).map((dir) => rm(dir, { recursive: true, force: true })));
}

/** The kind's schema defaults, overridden by `params`, as the runtime resolves them. */
export function withDefaults<P>(kind: StageKind<P>, params: Partial<P> = {}): P {
  const out: Record<string, unknown> = {};
  for (const [name, schema] of Object.entries(kind.params.properties)) {
    if ('default' in schema) out[name] = structuredClone(schema.default);
  }
  return { ...out, ...params } as P;
}

export interface ContextOptions<P> {
  params?: Partial<P>;
  inputs?: Record<string, ArtifactRef[]>;
  workspace?: string;
  variant?: Record<string, JsonValue>;
  /** As --backend gives it; unset, the best backend present (never a software GPU adapter). */
  backend?: string;
}

/** A context whose log lines are collected in `logs`. */
export async function makeContext<P>(kind: StageKind<P>, opts: ContextOptions<P> = {}): Promise<StageContext<P> & { logs: string[] }> {
  const logs: string[] = [];
  return {
    name: kind.name,
    key: 'test',
    params: withDefaults(kind, opts.params),
    variant: opts.variant ?? {},
    ...(opts.backend === undefined ? {} : { backend: opts.backend }),
    inputs: opts.inputs ?? {},
    outDir: await tempDir(`${kind.name}-out`),
    scratchDir: await tempDir(`${kind.name}-scratch`),
    workspace: opts.workspace ?? PROJECT_ROOT,
    log: (line) => logs.push(line),
    progress: () => {},
    signal: new AbortController().signal,
    logs,
  };
}

/** An upstream artifact as the runner hands it to a downstream stage. */
export function artifactRef(stage: string, kind: string, dir: string, extra: Partial<ArtifactRef> = {}): ArtifactRef {
  return { stage, key: extra.key ?? 'k', kind, dir, variant: {}, params: {}, metrics: {}, ...extra };
}

// Shared helpers for the cache tests and their child processes: stage descriptions with real keys, dead pids, rejections.
import { spawnSync } from 'node:child_process';
import * as assert from 'uvu/assert';
import type { ManifestFields } from '../../cache/store.ts';
import { stageKey, type KeyIngredients } from '../../runtime/hash.ts';

export function ingredients(name: string): KeyIngredients {
  return { kind: 'sh', kindVersion: 1, params: { command: `echo ${name}` }, inputs: {}, files: {} };
}

export function keyFor(name: string): string {
  return stageKey(ingredients(name));
}

/** What a runner passes to commit() for the stage `name`. */
export function fieldsFor(name: string, extra: Partial<ManifestFields> = {}): ManifestFields {
  return {
    ...ingredients(name),
    stage: name,
    variant: {},
    metrics: { accuracy: 0.5 },
    timings: { startedAt: '2025-01-01T00:00:00.000Z', finishedAt: '2025-01-01T00:00:02.000Z', seconds: 2 },
    versions: { pausepipe: '0.1.0' },
    ...extra,
  };
}

/** A pid that certainly belonged to a process which has exited. */
export function deadPid(): number {
  const child = spawnSync(process.execPath, ['-e', '']);
  if (child.pid === undefined) throw new Error('could not start a process');
  return child.pid;
}

/** uvu has no assert.rejects: fail unless `promise` rejects with a message matching `pattern`. */
export async function assertRejects(promise: Promise<unknown>, pattern: RegExp): Promise<void> {
  try {
    await promise;
  } catch (error) {
    assert.match((error as Error).message, pattern);
    return;
  }
  assert.unreachable(`expected a rejection matching ${pattern}`);
}

// Test helpers for tests that watch real processes: the bin spawned in the background, polling, liveness.
import { existsSync, readFileSync } from 'node:fs';
import { execa, type ResultPromise } from 'execa';
import { BIN, TEST_KINDS } from './runner.ts';

export interface Spawned {
  proc: ResultPromise;
  /** Everything it printed so far, stdout and stderr interleaved. */
  output: () => string;
}

const spawned: Spawned['proc'][] = [];

/** Kills what spawnBin started and is still running: a failed test must not leave a `watch` behind (register with `test.after`). */
export function killSpawned(): void {
  for (const proc of spawned.splice(0)) if (proc.exitCode === null) proc.kill('SIGKILL');
}

/** `pausepipe ARGS…` in the background, with the test kinds; its stdin closed, or a pipe to type into (`proc.stdin`). */
export function spawnBin(args: string[], cwd: string, stdin: 'ignore' | 'pipe' = 'ignore'): Spawned {
  const proc = execa(process.execPath, [BIN, ...args], { cwd, reject: false, env: { PAUSEPIPE_KINDS: TEST_KINDS }, stdin, all: true });
  spawned.push(proc);
  let text = '';
  proc.all?.on('data', (chunk: Buffer) => (text += chunk.toString()));
  return { proc, output: () => text };
}

/** Polls `check` until it holds; throws naming `what` after `ms`. */
export async function waitFor(what: string, check: () => boolean, ms = 20_000, everyMs = 50): Promise<void> {
  const until = Date.now() + ms;
  while (!check()) {
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

/** Alive and not a zombie (an orphan's zombie may linger where nothing reaps it). */
export function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  const stat = `/proc/${pid}/stat`;
  return !existsSync(stat) || !/^\d+ \(.*\) Z/.test(readFileSync(stat, 'utf8'));
}

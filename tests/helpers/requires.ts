// Tests that need something a machine may lack (the ../shared folder, Linux's /proc) are registered as skipped, not passed.
import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Test } from 'uvu';

export const PROJECT_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
export const SHARED = path.resolve(PROJECT_ROOT, '../shared');
export const SHARED_PRESENT = existsSync(SHARED);
export const PROC_PRESENT = existsSync('/proc/self/stat');

const noted = new Set<string>();

/**
 * The suite's own `test` when `present`, else its `skip`, so uvu counts the test as skipped. The reason is
 * printed once per file as a `skip:` line, which tests/run.mjs gathers into the summary.
 */
export function requires<T>(present: boolean, reason: string, test: Test<T>): Test<T> | Test<T>['skip'] {
  if (present) return test;
  noteSkip(reason);
  return test.skip;
}

/** Prints `skip: REASON` once per file, for tests/run.mjs's summary (also for tests left out rather than skipped). */
export function noteSkip(reason: string): void {
  if (noted.has(reason)) return;
  noted.add(reason);
  console.log(`skip: ${reason}`);
}

/** For tests that read GSM8K, the fixtures or the seed from ../shared; CI always has it and fails without it. */
export function withShared<T>(test: Test<T>): Test<T> | Test<T>['skip'] {
  if (!SHARED_PRESENT && process.env.CI === 'true') throw new Error(`${SHARED} is absent: CI must have the shared folder`);
  return requires(SHARED_PRESENT, `${SHARED} is absent (a clone without the shared data, fixtures and seed)`, test);
}

/** For tests that tell processes apart through /proc (Linux only). */
export function withProc<T>(test: Test<T>): Test<T> | Test<T>['skip'] {
  return requires(PROC_PRESENT, 'no /proc on this system (Linux only)', test);
}

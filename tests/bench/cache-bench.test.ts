// bench/cache.bench.ts at a small size: it runs, prints its four lines, and refuses a bad --files. Its times are not
// checked (benchmarks never fail on timing).
import { execa } from 'execa';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { PROJECT_ROOT } from '../helpers/runner.ts';

const bench = (...flags: string[]) => execa(process.execPath, ['--import', 'tsx', 'bench/cache.bench.ts', ...flags], { cwd: PROJECT_ROOT, reject: false });

test('commit, restore and verify of an entry of 300 files: one line each, no comparison with figures measured at 50,000', async () => {
  const r = await bench('--files', '300');
  assert.is(r.exitCode, 0, r.stderr);
  const lines = r.stdout.split('\n');
  assert.match(lines[0]!, /^cache benchmark: one sh entry whose out is a folder of 300 small files, in /);
  assert.equal(lines.slice(1).map((l) => l.replace(/\s+[\d.]+ s$/, '')), [
    'write the files (the command, not timed)',
    'commit (hash, seal, rename, stat cache)',
    'restore into an empty workspace',
    'verify (re-read every byte)',
  ]);
});

test('a --files that is not a whole number above 0 is refused', async () => {
  const r = await bench('--files', 'many');
  assert.is(r.exitCode, 2);
  assert.is(r.stderr.trim(), 'cache.bench: --files must be a whole number above 0, got many');
});

test.run();

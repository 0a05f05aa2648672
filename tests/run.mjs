// Runs every tests/**/*.test.ts through uvu (TypeScript via tsx) and ends with one plain summary line for CI.
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import path from 'node:path';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const pattern = process.argv[2] ?? '.*\\.test\\.ts$';
const dir = process.argv[3] ?? 'tests';
const child = spawn(process.execPath, ['--import', 'tsx', path.join(root, 'node_modules/uvu/bin.js'), dir, pattern],
  { cwd: root, stdio: ['ignore', 'pipe', 'inherit'] });

let out = '';
child.stdout.on('data', (chunk) => { process.stdout.write(chunk); out += chunk.toString(); });
child.on('close', (code, signal) => {
  const plain = out.replace(/\x1b\[[0-9;]*m/g, '');
  const count = (label) => Number(/\s+(\d+)\s*$/.exec(plain.match(new RegExp(`${label}:.*`, 'g'))?.at(-1) ?? '')?.[1] ?? 0);
  const total = count('Total'), passed = count('Passed'), skipped = count('Skipped');
  // uvu's Total counts the tests that ran (passed + failed); skipped ones are reported apart.
  const failed = code === 0 ? total - passed : Math.max(1, total - passed);
  console.log(`\ntests: ${passed} passed, ${failed} failed, ${skipped} skipped`);
  // Each file that registers skipped tests says why in a `skip:` line (tests/helpers/requires.ts); repeat them once here.
  const reasons = [...new Set(plain.split('\n').filter((l) => l.startsWith('skip: ')).map((l) => l.slice(6)))];
  for (const r of reasons) console.log(`skipped because ${r}`);
  process.exit(code ?? (signal ? 1 : 0));
});

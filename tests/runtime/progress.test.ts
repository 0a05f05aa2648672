// Progress output: plain lines for logs and CI, a redrawn block with bars and ETA on a terminal.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { createReporter } from '../../runtime/progress.ts';
import { Capture } from '../helpers/capture.ts';

test('without a TTY: start, every 10 % of progress, done with seconds; failures and skips with their reason', () => {
  let now = 0;
  const out = new Capture();
  const r = createReporter(out, { tty: false, now: () => now });
  r.start('train[lr=0.1]');
  for (let step = 1; step <= 100; step++) {
    now += 100;
    r.progress('train[lr=0.1]', { step, total: 100, message: `loss ${(2 - step / 100).toFixed(2)}` });
  }
  r.finish('train[lr=0.1]', 'ran');
  r.start('eval');
  r.finish('eval', 'failed', 'command failed with exit code 2');
  r.finish('report', 'skipped', 'upstream eval failed');
  r.waiting('data', { pid: 42, hostname: 'box', startedAt: '2025-01-01T00:00:00.000Z', slurmJobId: '77' });
  r.close();
  assert.is(out.text, [
    'start   train[lr=0.1]',
    '        train[lr=0.1]  10% (10/100)  loss 1.90',
    '        train[lr=0.1]  20% (20/100)  loss 1.80',
    '        train[lr=0.1]  30% (30/100)  loss 1.70',
    '        train[lr=0.1]  40% (40/100)  loss 1.60',
    '        train[lr=0.1]  50% (50/100)  loss 1.50',
    '        train[lr=0.1]  60% (60/100)  loss 1.40',
    '        train[lr=0.1]  70% (70/100)  loss 1.30',
    '        train[lr=0.1]  80% (80/100)  loss 1.20',
    '        train[lr=0.1]  90% (90/100)  loss 1.10',
    'done    train[lr=0.1] (10 s)',
    'start   eval',
    'failed  eval (0.0 s): command failed with exit code 2',
    'skipped report: upstream eval failed',
    'waiting data: computed by pid 42 on box (Slurm job 77) since 2025-01-01T00:00:00.000Z',
    '',
  ].join('\n'));
});

test('on a TTY: one redrawn line per running stage with a bar, ETA and message; finished stages print above', () => {
  let now = 0;
  const out = new Capture();
  const r = createReporter(out, { tty: true, now: () => now, columns: 120 });
  r.start('a');
  r.start('b');
  r.progress('a', { step: 10, total: 100 });
  now = 9000;
  r.progress('a', { step: 40, total: 100, message: 'loss 1.23' });
  r.progress('b', { step: 3, message: 'reading' });
  r.finish('b', 'ran');
  // The last frame: up over the two block lines, clear, the finished line, then the block that is left.
  const last = out.text.slice(out.text.lastIndexOf('\x1b['));
  assert.is(out.text.endsWith('\x1b[2A\r\x1b[0Jdone    b (9.0 s)\n⠋ a  ████████░░░░░░░░░░░░  40% 40/100 ETA 18 s  loss 1.23\n'), true, JSON.stringify(last));
  r.close();
  assert.is(out.text.endsWith('\x1b[1A\r\x1b[0J'), true);
});

test.run();

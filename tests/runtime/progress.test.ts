// Progress output: plain lines for logs and CI, a redrawn block with bars and ETA on a terminal.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { createCheckProgress, createReporter } from '../../runtime/progress.ts';
import { Capture } from '../helpers/capture.ts';
import { screen } from '../helpers/terminal.ts';

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

const DEMO_STAGES = [
  { name: 'data', group: 'data', fresh: true },
  { name: 'warm[pause=embed+head,lora=false]', group: 'warm', fresh: false },
  { name: 'warm[pause=embed+head,lora=true]', group: 'warm', fresh: false },
  { name: 'warm[pause=head,lora=true]', group: 'warm', fresh: false },
  { name: 'report', group: 'report', fresh: false },
];

test('at 80 columns: an overall line with the stage count and ETA, and each loop stage\'s loss stays visible', () => {
  let now = 0;
  const out = new Capture();
  const r = createReporter(out, { tty: true, now: () => now, columns: 80, stages: DEMO_STAGES, slots: 2 });
  r.start('warm[pause=embed+head,lora=false]');
  r.start('warm[pause=embed+head,lora=true]');
  r.progress('warm[pause=embed+head,lora=false]', { step: 10, total: 100 });
  r.progress('warm[pause=embed+head,lora=true]', { step: 10, total: 100 });
  now = 60_000;
  r.progress('warm[pause=embed+head,lora=false]', { step: 40, total: 100, message: 'loss 1.2345' });
  r.progress('warm[pause=embed+head,lora=true]', { step: 20, total: 100, message: 'loss 0.5812' });
  r.finish('warm[pause=embed+head,lora=true]', 'ran');
  r.start('warm[pause=head,lora=true]');
  r.progress('warm[pause=head,lora=true]', { step: 1, total: 100, message: 'loss 2.0001' });
  // Any line printed redraws the block below it at once (otherwise the 100 ms timer does).
  r.note('backend: wasm (SIMD, 1 thread)');
  const shown = screen(out.text);
  assert.equal(shown, [
    'done    warm[pause=embed+head,lora=true] (1m00s)',
    'backend: wasm (SIMD, 1 thread)',
    // Work left: 2m for the running one by its rate, 1m for the new warm (its group's mean so far) and 1m for the
    // report (the mean of all finished stages), on 2 slots.
    '2/5 stages · ETA 2m',
    '⠋ warm[pause=embed+head,lora=false]  ███░░░░  40% 40/100 ETA 2m00s  loss 1.2345',
    '⠋ warm[pause=head,lora=true]  ░░░░░░░░░░░░░░░░░░░░   1% 1/100  loss 2.0001',
  ]);
  assert.ok(shown.every((l) => l.length < 80), shown.join('\n'));
  r.close();
});

test('a name too long for the line is cut in the middle, and the bar gives way before the loss does', () => {
  const out = new Capture();
  const r = createReporter(out, { tty: true, now: () => 0, columns: 50 });
  r.start('warm[pause=embed+head,lm=lm_head+embed,lora=true]');
  r.progress('warm[pause=embed+head,lm=lm_head+embed,lora=true]', { step: 5, total: 10, message: 'loss 1.2345' });
  r.note('backend: wasm (SIMD, 1 thread)');
  assert.equal(screen(out.text), ['backend: wasm (SIMD, 1 thread)', '⠋ warm[pause=…,lora=true]   50% 5/10  loss 1.2345']);
  r.close();
});

test('without a TTY the overall count rides on each finished stage\'s line', () => {
  let now = 0;
  const out = new Capture();
  const r = createReporter(out, { tty: false, now: () => now, stages: DEMO_STAGES, slots: 1 });
  r.start('warm[pause=head,lora=true]');
  now = 30_000;
  r.finish('warm[pause=head,lora=true]', 'ran');
  r.finish('report', 'skipped', 'upstream failed');
  assert.is(out.text, [
    'start   warm[pause=head,lora=true]',
    'done    warm[pause=head,lora=true] (30 s)  [2/5 stages · ETA 2m]',
    'skipped report: upstream failed  [3/5 stages · ETA 1m]',
    '',
  ].join('\n'));
});

test('once the run is interrupted the stages it skips carry the count but no ETA', () => {
  let now = 0;
  const out = new Capture();
  const r = createReporter(out, { tty: false, now: () => now, stages: DEMO_STAGES, slots: 1 });
  r.start('warm[pause=head,lora=true]');
  now = 30_000;
  r.finish('warm[pause=head,lora=true]', 'ran');
  r.interrupted();
  r.finish('report', 'skipped', 'run interrupted');
  assert.is(out.text, [
    'start   warm[pause=head,lora=true]',
    'done    warm[pause=head,lora=true] (30 s)  [2/5 stages · ETA 2m]',
    'skipped report: run interrupted  [3/5 stages]',
    '',
  ].join('\n'));
});

test('the ETA of stages not run yet in this run: their group, else their last duration, else their kind, else the mean', () => {
  let now = 0;
  const out = new Capture();
  const stages = [
    { name: 'data', group: 'data', kind: 'synthetic_math', fresh: false },
    { name: 'step1', group: 'step1', kind: 'sft', fresh: false },
    // Trained before with other parameters: it took 600 s then.
    { name: 'warm[a]', group: 'warm', kind: 'sft', fresh: false, lastSeconds: 600 },
    { name: 'warm[b]', group: 'warm', kind: 'sft', fresh: false },
    { name: 'eval', group: 'eval', kind: 'evaluate', fresh: false },
  ];
  const r = createReporter(out, { tty: false, now: () => now, stages, slots: 1 });
  r.start('data');
  now = 2_000;
  r.finish('data', 'ran');
  r.start('step1');
  now = 302_000;
  r.finish('step1', 'ran');
  r.start('warm[a]');
  now = 902_000;
  r.finish('warm[a]', 'ran');
  const lines = out.text.split('\n').filter((l) => l.startsWith('done'));
  assert.equal(lines, [
    // warm[a] its last 600 s; warm[b] nothing of its own or its group or kind yet: the mean, 2 s; eval the same.
    'done    data (2.0 s)  [1/5 stages · ETA 10m]',
    // warm[a] 600 s; warm[b] as the sft that finished (300 s), not as the mean of everything; eval the mean (151 s).
    'done    step1 (5m00s)  [2/5 stages · ETA 18m]',
    // warm[b] as its group's finished stage (600 s); eval the mean of the three (301 s).
    'done    warm[a] (10m00s)  [3/5 stages · ETA 15m]',
  ]);
});

test('where a kind counts its stages\' work, a stage to run takes as long per unit of work as those that finished', () => {
  let now = 0;
  const out = new Capture();
  // warm[b]'s work is known once its input (here: data) is computed.
  let dataDone = false;
  const stages = [
    { name: 'data', group: 'data', kind: 'synthetic_math', fresh: false },
    { name: 'step1', group: 'step1', kind: 'sft', fresh: false, work: () => 8000 },
    { name: 'warm[a]', group: 'warm', kind: 'sft', fresh: false, work: () => 1600 },
    { name: 'warm[b]', group: 'warm', kind: 'sft', fresh: false, work: () => (dataDone ? 3200 : undefined), inputs: ['data'] },
    { name: 'eval', group: 'eval', kind: 'evaluate', fresh: false },
  ];
  const r = createReporter(out, { tty: false, now: () => now, stages, slots: 1 });
  // A work still unknown is asked again only when one of the stage's inputs ends, not at every stage's end.
  let asked = 0;
  const later = { name: 'later', group: 'later', kind: 'sft', fresh: false, work: () => void asked++, inputs: ['warm[b]'] };
  createReporter(new Capture(), { tty: false, now: () => now, stages: [...stages, later], slots: 1 }).finish('data', 'ran');
  r.start('data');
  now = 2_000;
  dataDone = true;
  r.finish('data', 'ran');
  r.start('step1');
  now = 302_000;
  r.finish('step1', 'ran');
  r.start('warm[a]');
  now = 392_000;
  r.finish('warm[a]', 'ran');
  const lines = out.text.split('\n').filter((l) => l.startsWith('done'));
  assert.equal(lines, [
    'done    data (2.0 s)  [1/5 stages · ETA 8 s]',
    // At step1's 300 s for 8,000 examples: warm[a] 60 s, warm[b] 120 s; eval the mean of data and step1, 151 s.
    'done    step1 (5m00s)  [2/5 stages · ETA 6m]',
    // warm[b] at its group's rate, 90 s for 1,600 examples: 180 s; eval the mean of the three, 131 s.
    'done    warm[a] (1m30s)  [3/5 stages · ETA 5m]',
  ]);
  assert.is(asked, 1);
});

test('before any stage of its kind finished, a stage to run takes as long as the running ones of its kind will', () => {
  let now = 0;
  const out = new Capture();
  const stages = [
    { name: 'data', group: 'data', kind: 'synthetic_math', fresh: false },
    { name: 'step1', group: 'step1', kind: 'sft', fresh: false },
    { name: 'warm', group: 'warm', kind: 'sft', fresh: false },
  ];
  const r = createReporter(out, { tty: false, now: () => now, stages, slots: 1 });
  r.start('step1');
  r.progress('step1', { step: 0, total: 100 });
  r.start('data');
  now = 30_000;
  r.progress('step1', { step: 10, total: 100 });
  r.finish('data', 'ran');
  // step1: 270 s left at 3 s a step, 300 s in all; warm as long, not the 30 s the data stage took: 570 s.
  assert.match(out.text, 'done    data (30 s)  [1/3 stages · ETA 10m]');
});

test('under a cluster a stage counts from when its job runs, and the work is shared by the jobs seen running at once, not the slots', () => {
  let now = 0;
  const out = new Capture();
  const stages = ['a', 'b', 'c', 'd', 'e'].map((name) => ({ name, group: 'train', kind: 'sft', fresh: false }));
  // The 1,000 slots of a Slurm run: the cluster, not the runner, decides how many jobs run at once.
  const r = createReporter(out, { tty: false, now: () => now, stages, slots: 1000, cluster: true });
  for (const s of stages) {
    r.start(s.name);
    r.jobState(s.name, 'queued');
  }
  now = 5_000;
  // Nothing has run yet: no ETA, only where the jobs are.
  r.finish('e', 'failed', 'sbatch refused the job');
  now = 10_000;
  r.jobState('a', 'running');
  // The cluster says when b started: before the runner saw it.
  r.jobState('b', 'running', 8_000);
  now = 40_000;
  r.finish('a', 'ran');
  r.jobState('c', 'running');
  now = 68_000;
  r.finish('b', 'ran');
  assert.equal(out.text.split('\n').filter((l) => !l.startsWith('start')), [
    'failed  e (5.0 s): sbatch refused the job  [1/5 stages · 0 running, 4 queued]',
    // a ran 30 s: b has run as long, c and d wait (30 s each), shared by the 2 jobs seen running at once.
    'done    a (30 s)  [2/5 stages · 1 running, 2 queued · ETA 30 s]',
    // b ran 60 s, so a train takes 45 s: c has 17 s left, d 45 s, on 2 at once.
    'done    b (1m00s)  [3/5 stages · 1 running, 1 queued · ETA 31 s]',
    '',
  ]);
});

test('a stage whose job is requeued counts from its new start; its live line says how long it has been queued', () => {
  let now = 0;
  const out = new Capture();
  const r = createReporter(out, { tty: true, now: () => now, columns: 80, stages: DEMO_STAGES, slots: 1000, cluster: true });
  r.start('report');
  r.jobState('report', 'queued');
  now = 2_000;
  r.jobState('report', 'running');
  now = 5_000;
  r.jobState('report', 'queued');
  now = 17_000;
  r.note('requeued report: Slurm job 7 is PENDING (BeginTime)');
  assert.equal(screen(out.text), ['requeued report: Slurm job 7 is PENDING (BeginTime)', '1/5 stages · 0 running, 1 queued', '⠋ report  queued 12 s']);
  now = 20_000;
  r.jobState('report', 'running');
  now = 23_000;
  r.finish('report', 'ran');
  r.close();
  assert.equal(screen(out.text).at(-1), 'done    report (3.0 s)');
});

test('a note printed while the live block is drawn stays on the screen after later redraws', () => {
  let now = 0;
  const out = new Capture();
  const r = createReporter(out, { tty: true, now: () => now, columns: 80, stages: DEMO_STAGES });
  r.start('report');
  r.note('interrupting: stopping running stages (Ctrl-C again to quit at once)');
  now = 500;
  r.progress('report', { step: 1 });
  r.finish('report', 'aborted', 'interrupted');
  r.close();
  assert.equal(screen(out.text), ['interrupting: stopping running stages (Ctrl-C again to quit at once)', 'aborted report: interrupted']);
});

test('a long check (verify) says how far it is: quiet for a second and under 1,000 files, then a line per tenth, or one line redrawn on a terminal', () => {
  const check = (tty: boolean, files: number) => {
    let now = 0;
    const out = new Capture();
    const progress = createCheckProgress(out, 'verify', { tty, now: () => now });
    for (let i = 1; i <= files; i++) {
      now += 10;
      progress.update({ files: i, bytes: i * 100 }, { files, bytes: files * 100 });
    }
    progress.close();
    return out.text;
  };
  assert.is(check(false, 1000), [
    ...[1, 2, 3, 4, 5, 6, 7, 8, 9].map((tenth) => `verify: ${tenth}00/1,000 files (${tenth}0%) ETA ${10 - tenth} s`),
    'verify: 1,000/1,000 files (100%)',
    '',
  ].join('\n'));
  // Done within the first second, or too small to be long on any machine: nothing at all.
  assert.is(check(false, 1000).split('\n')[0], 'verify: 100/1,000 files (10%) ETA 9 s');
  assert.is(check(false, 999), '');
  assert.is(check(true, 999), '');
  const redrawn = check(true, 1000);
  assert.ok(redrawn.startsWith('\rverify: 100/1,000 files (10%) ETA 9 s\x1b[K\rverify: 110/1,000 files (11%) ETA 9 s\x1b[K'), redrawn);
  assert.ok(redrawn.includes('\rverify: 290/1,000 files (29%) ETA 7 s\x1b[K'), 'whole percents, not 28.999…');
  assert.ok(redrawn.endsWith('\rverify: 1,000/1,000 files (100%)\x1b[K\r\x1b[K'), 'cleared at the end');
});

test.run();

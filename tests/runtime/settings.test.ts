// Workspace executor settings: where they are read from, their defaults, errors at file:line:column, per-stage layering.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { formatDiagnostics } from '../../grammar/diagnostics.ts';
import { jsonSpans } from '../../runtime/json-spans.ts';
import { DEFAULT_EXECUTOR, jobSettingPlaces, jobSettingsFor, loadSettings } from '../../runtime/settings.ts';
import { cli, tempWorkspace } from '../helpers/runner.ts';

test('json spans point at values and keys by JSON pointer', () => {
  const text = '{\n  "a": {"b": [1, "x y"]},\n  "c": true\n}';
  const spans = jsonSpans(text, 'f.json');
  const at = (m: Map<string, { line: number; column: number; offset: number; endOffset: number }>, p: string) => {
    const s = m.get(p)!;
    return [s.line, s.column, text.slice(s.offset, s.endOffset)];
  };
  assert.equal(at(spans.value, '/a/b/1'), [2, 18, '"x y"']);
  assert.equal(at(spans.value, '/c'), [3, 8, 'true']);
  assert.equal(at(spans.key, '/c'), [3, 3, '"c"']);
  assert.equal(at(spans.value, '/a/b'), [2, 14, '[1, "x y"]']);
});

test('a workspace without settings gets the local executor', async () => {
  const ws = await tempWorkspace('pausepipe-settings-');
  assert.equal(loadSettings(ws), { executor: DEFAULT_EXECUTOR, diagnostics: [], sources: {} });
});

test('package.json "pausepipe" holds the settings; defaults fill what it leaves out', async () => {
  const ws = await tempWorkspace('pausepipe-settings-');
  await writeFile(path.join(ws, 'package.json'), JSON.stringify({
    name: 'lab', pausepipe: { executor: { type: 'slurm', partition: 'gpu', time: '4:00:00', kinds: { sft: { mem: '32G' } } } },
  }));
  const loaded = loadSettings(ws);
  assert.equal(loaded.diagnostics, []);
  assert.is(loaded.file, path.join(ws, 'package.json'));
  assert.equal(loaded.executor, { type: 'slurm', partition: 'gpu', time: '4:00:00', kinds: { sft: { mem: '32G' } }, stages: {}, pollSeconds: 2 });
});

test('pausepipe.json is read before package.json', async () => {
  const ws = await tempWorkspace('pausepipe-settings-');
  await writeFile(path.join(ws, 'package.json'), JSON.stringify({ pausepipe: { executor: { type: 'local' } } }));
  await writeFile(path.join(ws, 'pausepipe.json'), JSON.stringify({ executor: { type: 'slurm', pollSeconds: 0.5 } }));
  const loaded = loadSettings(ws);
  assert.is(loaded.file, path.join(ws, 'pausepipe.json'));
  assert.is(loaded.executor.type, 'slurm');
  assert.is(loaded.executor.pollSeconds, 0.5);
});

test('every mistake is reported at its line and column, with the key that was meant', async () => {
  const ws = await tempWorkspace('pausepipe-settings-');
  const text = [
    '{',
    '  "executor": {',
    '    "type": "slurmm",',
    '    "partiton": "gpu",',
    '    "kinds": { "sft": { "time": "4 hours", "gpus": -1 } },',
    '    "stages": { "report": { "sbatch": ["constraint=a100"] } }',
    '  }',
    '}',
  ].join('\n');
  await writeFile(path.join(ws, 'pausepipe.json'), text);
  const loaded = loadSettings(ws);
  assert.equal(loaded.executor, DEFAULT_EXECUTOR);
  const out = formatDiagnostics(loaded.diagnostics, loaded.sources, { cwd: ws });
  assert.is(out, [
    'pausepipe.json:4:5: error[E_SETTINGS]: unknown setting `partiton` in `executor`',
    '  3 |     "type": "slurmm",',
    '> 4 |     "partiton": "gpu",',
    '    |     ^^^^^^^^^^',
    '  5 |     "kinds": { "sft": { "time": "4 hours", "gpus": -1 } },',
    '  = note: did you mean `partition`?',
    '',
    'pausepipe.json:3:13: error[E_SETTINGS]: `executor.type` must be one of "local", "slurm", got "slurmm"',
    '  2 |   "executor": {',
    '> 3 |     "type": "slurmm",',
    '    |             ^^^^^^^^',
    '  4 |     "partiton": "gpu",',
    '',
    'pausepipe.json:5:33: error[E_SETTINGS]: `executor.kinds.sft.time` must be a Slurm time limit: minutes, h:mm:ss or days-h:mm:ss, got "4 hours"',
    '  4 |     "partiton": "gpu",',
    '> 5 |     "kinds": { "sft": { "time": "4 hours", "gpus": -1 } },',
    '    |                                 ^^^^^^^^^',
    '  6 |     "stages": { "report": { "sbatch": ["constraint=a100"] } }',
    '',
    'pausepipe.json:5:52: error[E_SETTINGS]: `executor.kinds.sft.gpus` must be >= 0, got -1',
    '  4 |     "partiton": "gpu",',
    '> 5 |     "kinds": { "sft": { "time": "4 hours", "gpus": -1 } },',
    '    |                                                    ^^',
    '  6 |     "stages": { "report": { "sbatch": ["constraint=a100"] } }',
    '',
    'pausepipe.json:6:40: error[E_SETTINGS]: `executor.stages.report.sbatch[0]` must be an sbatch flag starting with `-`, got "constraint=a100"',
    '  5 |     "kinds": { "sft": { "time": "4 hours", "gpus": -1 } },',
    '> 6 |     "stages": { "report": { "sbatch": ["constraint=a100"] } }',
    '    |                                        ^^^^^^^^^^^^^^^^^',
    '  7 |   }',
    '',
    '5 errors',
  ].join('\n'));
});

test('a settings file that is not JSON is an error at the offending character', async () => {
  const ws = await tempWorkspace('pausepipe-settings-');
  await writeFile(path.join(ws, 'pausepipe.json'), '{\n  "executor": { "type": "slurm", }\n}\n');
  const loaded = loadSettings(ws);
  assert.is(loaded.diagnostics.length, 1);
  const d = loaded.diagnostics[0]!;
  assert.is(d.code, 'E_SETTINGS');
  assert.ok(d.message.startsWith('pausepipe.json is not valid JSON: '), d.message);
  assert.equal([d.span?.line, d.span?.column], [2, 34]);
});

test('a kind the registry does not know is a mistake, with the kind that was meant', async () => {
  const ws = await tempWorkspace('pausepipe-settings-');
  await writeFile(path.join(ws, 'pausepipe.json'), '{\n  "executor": { "kinds": { "stf": { "time": "10" } } }\n}\n');
  const loaded = loadSettings(ws, ['sh', 'sft', 'evaluate']);
  assert.is(formatDiagnostics(loaded.diagnostics, loaded.sources, { cwd: ws }), [
    'pausepipe.json:2:28: error[E_SETTINGS]: unknown stage kind `stf` in `executor.kinds`',
    '  1 | {',
    '> 2 |   "executor": { "kinds": { "stf": { "time": "10" } } }',
    '    |                            ^^^^^',
    '  3 | }',
    '  = note: did you mean `sft`?',
    '',
    '1 error',
  ].join('\n'));
  assert.equal(loadSettings(ws).diagnostics, [], 'without the registry, kinds are not checked');
});

test('job settings: defaults, then the kind, then the declared name, then the generated name, field by field', () => {
  const settings = {
    ...DEFAULT_EXECUTOR,
    type: 'slurm' as const,
    partition: 'cpu', time: '1:00:00', account: 'lab',
    kinds: { sft: { partition: 'gpu', time: '8:00:00', mem: '32G' } },
    stages: { warm: { time: '2:00:00' }, 'warm[pause=head]': { mem: '64G', sbatch: ['--constraint=a100'] } },
  };
  assert.equal(jobSettingsFor(settings, { name: 'warm[pause=head]', kind: 'sft' }),
    { partition: 'gpu', time: '2:00:00', account: 'lab', mem: '64G', sbatch: ['--constraint=a100'] });
  assert.equal(jobSettingsFor(settings, { name: 'warm[pause=embed]', kind: 'sft' }), { partition: 'gpu', time: '2:00:00', account: 'lab', mem: '32G' });
  assert.equal(jobSettingsFor(settings, { name: 'report', kind: 'report' }), { partition: 'cpu', time: '1:00:00', account: 'lab' });
});

test('job settings name the place each field comes from, the most specific one', () => {
  const settings = {
    ...DEFAULT_EXECUTOR,
    type: 'slurm' as const,
    partition: 'cpu', account: 'lab',
    kinds: { sft: { partition: 'gpu', mem: '32G' } },
    stages: { warm: { time: '2:00:00' }, 'warm[pause=head]': { mem: '64G', sbatch: ['--constraint=a100'] }, report: { qos: 'low' } },
  };
  assert.equal(jobSettingPlaces(settings, { name: 'warm[pause=head]', kind: 'sft' }), [
    'executor.kinds.sft.partition = "gpu"', 'executor.account = "lab"', 'executor.stages["warm[pause=head]"].mem = "64G"',
    'executor.stages.warm.time = "2:00:00"', 'executor.stages["warm[pause=head]"].sbatch = ["--constraint=a100"]',
  ]);
  assert.equal(jobSettingPlaces(settings, { name: 'report', kind: 'report' }), ['executor.partition = "cpu"', 'executor.account = "lab"', 'executor.stages.report.qos = "low"']);
  assert.equal(jobSettingPlaces(DEFAULT_EXECUTOR, { name: 'report', kind: 'report' }), []);
});

test('run: settings mistakes stop the run (exit 2), an unknown --executor is a usage error, a missing Slurm is said once', async () => {
  const ws = await tempWorkspace('pausepipe-settings-');
  // An absolute program: the last run has a PATH without Slurm's commands (nor anything else).
  await writeFile(path.join(ws, 'p.pipe'), `stage a = sh { command: [${JSON.stringify(process.execPath)}, "-e", "0"] }\n`);
  await writeFile(path.join(ws, 'pausepipe.json'), '{ "executor": { "type": "slurm", "mem": "lots" } }\n');
  const bad = await cli(['run', 'p.pipe'], ws);
  assert.is(bad.exitCode, 2);
  const said = 'pausepipe.json:1:41: error[E_SETTINGS]: `executor.mem` must be a Slurm memory size: a number with an optional K, M, G or T, got "lots"\n';
  assert.ok(bad.stderr.startsWith(said), bad.stderr);
  // check reads the settings run reads, so it does not pass what run refuses.
  const checked = await cli(['check', 'p.pipe'], ws);
  assert.equal([checked.exitCode, checked.stdout, checked.stderr.startsWith(said)], [2, '', true]);

  await writeFile(path.join(ws, 'pausepipe.json'), '{ "executor": { "type": "slurm" } }\n');
  const usage = await cli(['run', 'p.pipe', '--executor', 'cloud'], ws);
  assert.is(usage.exitCode, 2);
  assert.is(usage.stderr.split('\n')[0], 'pausepipe run: --executor must be one of local, slurm, got cloud');
  const missing = await cli(['run', 'p.pipe'], ws, { PATH: path.join(ws, 'no-such-folder') });
  assert.is(missing.exitCode, 1);
  assert.is(missing.stderr, "pausepipe run: `sbatch` is not installed here: the Slurm executor needs Slurm's client commands on the PATH");
  // --executor local wins over the workspace's type.
  const local = await cli(['run', 'p.pipe', '--executor', 'local'], ws, { PATH: path.join(ws, 'no-such-folder') });
  assert.is(local.exitCode, 0, local.stderr);
});

test.run();

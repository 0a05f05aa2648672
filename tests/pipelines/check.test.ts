// Every .pipe file in pipelines/ (examples too) passes `pausepipe check` with the real stage kinds, and plans cleanly.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { execa } from 'execa';
import { planLoaded } from '../../runtime/session.ts';
import { STAGE_KINDS } from '../../stages/index.ts';
import { loadProjectPipeline, pipeFiles, PIPELINES_DIR, PROJECT_ROOT } from './pipeline-files.ts';
import { withShared } from '../helpers/requires.ts';

const test = suite('pipelines check');
const BIN = path.join(PROJECT_ROOT, 'bin', 'pausepipe.js');

let cacheDir = '';
test.before(async () => {
  cacheDir = await mkdtemp(path.join(os.tmpdir(), 'pausepipe-pipelines-'));
});
test.after(async () => {
  await rm(cacheDir, { recursive: true, force: true });
});

test('the user pipelines are all there', () => {
  const rel = pipeFiles().map((f) => path.relative(PIPELINES_DIR, f).split(path.sep).join('/'));
  for (const name of ['demo.pipe', 'warmup.pipe', 'examples/matrix.pipe']) assert.ok(rel.includes(name), `${name} in ${rel.join(', ')}`);
});

test('every pipeline loads with the real registry without any error or warning', async () => {
  for (const file of pipeFiles()) await loadProjectPipeline(path.relative(PIPELINES_DIR, file));
});

withShared(test)('every pipeline plans with a key for each stage: the files its stages read exist', async () => {
  for (const file of pipeFiles()) {
    const pipeline = await loadProjectPipeline(path.relative(PIPELINES_DIR, file));
    const { plan } = await planLoaded(pipeline, STAGE_KINDS, cacheDir);
    const errors = plan.stages.filter((s) => s.status === 'error').map((s) => `${s.name}: ${s.reasons.join('; ')}`);
    assert.equal(errors, [], path.basename(file));
    assert.is(plan.counts.stale, pipeline.stages.length, `${path.basename(file)}: every stage is new in an empty cache`);
  }
});

test('`pausepipe check` prints ok with the stage count for the two user pipelines', async () => {
  for (const [name, stages] of [['warmup.pipe', 48], ['demo.pipe', 21]] as const) {
    const r = await execa(process.execPath, [BIN, 'check', path.join('pipelines', name)], { cwd: PROJECT_ROOT, reject: false, stdin: 'ignore' });
    assert.is(r.stderr, '', name);
    assert.is(r.stdout, `ok: ${stages} stages`, name);
    assert.is(r.exitCode, 0, name);
  }
});

test.run();

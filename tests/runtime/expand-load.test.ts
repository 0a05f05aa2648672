// Tests for runtime/load.ts: includes, reading from disk, the workspace, sources, and when a pipeline is returned.
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { findWorkspace, loadPipeline } from '../../runtime/load.ts';
import { describe, expectDiagnostics, expectPipeline, parsePipe, PREAMBLE, TEST_DIR, TEST_FILE, TEST_KINDS } from '../helpers/pipe.ts';

const load = suite('load');

load('an included file\'s lets and stages are usable after the include', () => {
  const pipeline = expectPipeline(parsePipe('include "common.pipe"\nstage s = sft(model: base, data: data) { lr: lr }', {
    'common.pipe': 'let lr = 0.5\nstage data = gsm8k { path: "d" }\nstage base = surgery { }',
  }));
  assert.equal(pipeline.stages.map((s) => s.name), ['data', 'base', 's']);
  assert.is(pipeline.stages[2]!.params.lr, 0.5);
  assert.is(pipeline.stages[0]!.span.file, path.join(TEST_DIR, 'common.pipe'));
});

load('include paths are relative to the including file', () => {
  const pipeline = expectPipeline(parsePipe('include "lib/a.pipe"\nstage d = gsm8k { path: p }', {
    'lib/a.pipe': 'include "b.pipe"',
    'lib/b.pipe': 'let p = "from b"',
  }));
  assert.equal(Object.keys(pipeline.sources), [TEST_FILE, path.join(TEST_DIR, 'lib/a.pipe'), path.join(TEST_DIR, 'lib/b.pipe')]);
  assert.is(pipeline.stages[0]!.params.path, 'from b');
});

load('a file included twice (a diamond) is read once, so its names are not duplicates', () => {
  const pipeline = expectPipeline(parsePipe('include "a.pipe"\ninclude "b.pipe"\nstage d = gsm8k { path: x }', {
    'a.pipe': 'include "c.pipe"',
    'b.pipe': 'include "c.pipe"',
    'c.pipe': 'let x = "c"',
  }));
  assert.is(Object.keys(pipeline.sources).length, 4);
});

load('an include cycle is reported where it closes; the rest still loads', () => {
  const r = parsePipe('include "a.pipe"\nstage d = gsm8k { path: "p" }', {
    'a.pipe': 'include "b.pipe"',
    'b.pipe': 'include "a.pipe"\nlet q = 1',
  });
  expectDiagnostics(r, ['E_INCLUDE_CYCLE 1:9']);
  assert.equal(r.diagnostics.map((d) => [path.basename(d.span!.file), d.message]), [['b.pipe', 'include cycle: a.pipe → b.pipe → a.pipe']]);
});

load('a file including itself is a cycle', () => {
  const r = parsePipe('include "main.pipe"');
  assert.equal(r.diagnostics.map((d) => d.message), ['include cycle: main.pipe → main.pipe']);
});

load('a missing include is reported at its path, with where it was looked for', () => {
  const r = parsePipe('include "nope.pipe"');
  expectDiagnostics(r, ['E_INCLUDE_NOT_FOUND 1:9']);
  assert.equal(r.diagnostics[0]!.notes, [`looked for ${path.join(TEST_DIR, 'nope.pipe')}`]);
});

load('syntax errors in every file are reported with the mistakes of the statements they leave alone, sorted by file then position', () => {
  const r = parsePipe('include "a.pipe"\nlet x = (\nstage q = nokind { }', { 'a.pipe': 'let y = 1 ~\nlet z = "open' });
  assert.equal(r.diagnostics.map((d) => `${path.basename(d.span!.file)} ${d.code} ${d.span!.line}:${d.span!.column}`), [
    'main.pipe E_PARSE 2:9',
    'main.pipe E_UNKNOWN_KIND 3:11',
    'a.pipe E_LEX 1:11',
    'a.pipe E_UNTERMINATED_STRING 2:9',
  ], describe(r));
  assert.is(r.pipeline, null);
  assert.equal(Object.keys(r.sources).length, 2);
});

load('warnings alone still give a pipeline', () => {
  const r = parsePipe(`${PREAMBLE}\nfor each x in [1] where x > 1 { stage w = surgery { } }`);
  expectDiagnostics(r, ['E_EMPTY_MATRIX 4:25']);
  assert.is(r.diagnostics[0]!.severity, 'warning');
  assert.equal(r.pipeline!.stages.map((s) => s.name), ['data', 'base', 'paused']);
});

load('the pipeline records the absolute entry file and every source', () => {
  const text = 'stage d = gsm8k { path: "p" }';
  const pipeline = expectPipeline(parsePipe(text));
  assert.is(pipeline.file, TEST_FILE);
  assert.equal(pipeline.sources, { [TEST_FILE]: text });
});

load('the workspace falls back to the file\'s folder when no ancestor has a marker', () => {
  assert.is(findWorkspace(TEST_FILE), TEST_DIR);
});

load('loadPipeline reads from disk; the workspace is the nearest ancestor with a marker', async () => {
  const root = await mkdtemp(path.join(os.tmpdir(), 'pausepipe-load-'));
  try {
    await mkdir(path.join(root, 'exp', 'lib'), { recursive: true });
    await writeFile(path.join(root, '.pausepipe'), '');
    await writeFile(path.join(root, 'exp', 'lib', 'common.pipe'), 'let p = "../data"');
    const entry = path.join(root, 'exp', 'main.pipe');
    await writeFile(entry, 'include "lib/common.pipe"\nstage d = gsm8k { path: p }');
    const r = await loadPipeline(entry, TEST_KINDS);
    const pipeline = expectPipeline(r);
    assert.is(pipeline.workspace, root);
    assert.is(pipeline.file, entry);
    assert.equal(Object.keys(pipeline.sources), [entry, path.join(root, 'exp', 'lib', 'common.pipe')]);

    await mkdir(path.join(root, 'exp', '.git'));
    assert.is(expectPipeline(await loadPipeline(entry, TEST_KINDS)).workspace, path.join(root, 'exp'));
  } finally {
    await rm(root, { recursive: true, force: true });
  }
});

load('loadPipeline takes a relative path and makes it absolute', async () => {
  const root = await mkdtemp(path.join(os.tmpdir(), 'pausepipe-load-'));
  try {
    const entry = path.join(root, 'x.pipe');
    await writeFile(entry, 'stage d = gsm8k { path: "p" }');
    const r = await loadPipeline(path.relative(process.cwd(), entry), TEST_KINDS);
    assert.is(expectPipeline(r).file, entry);
  } finally {
    await rm(root, { recursive: true, force: true });
  }
});

load.run();

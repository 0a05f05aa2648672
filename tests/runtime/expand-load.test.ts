// Tests for runtime/load.ts: includes, reading from disk, the workspace, sources, and when a pipeline is returned.
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { findWorkspace, loadPipeline, loadPipelineText } from '../../runtime/load.ts';
import { parseOverride, type Override } from '../../runtime/overrides.ts';
import { STAGE_KINDS } from '../../stages/index.ts';
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

/** Each diagnostic as `file:line:column CODE message`, in reported order. */
function reported(r: { diagnostics: { code: string; message: string; span?: { file: string; line: number; column: number } }[] }): string[] {
  return r.diagnostics.map((d) => `${path.basename(d.span!.file)}:${d.span!.line}:${d.span!.column} ${d.code} ${d.message}`);
}

load('a syntax error in one stage and a type error in another are reported together, by position', () => {
  const r = parsePipe('let lr = 0.1\nstage data = gsm8k { path: "d", val_fraction: }\nstage base = surgery { model: 3 }');
  assert.equal(reported(r), [
    'main.pipe:2:47 E_PARSE expected a value, found `}`',
    'main.pipe:3:31 E_PARAM_TYPE param `model` must be string, got number 3',
  ], describe(r));
  assert.is(r.pipeline, null);
});

load('a stage whose statement is broken is declared for the stages that take it: no "unknown stage", their other mistakes shown', () => {
  const r = parsePipe([
    'stage data = gsm8k { path: "d" }',
    'stage base = surgery { options: { init: "mean" }',
    'stage warm = sft(model: base, data: data) { lr: "fast" }',
    'stage eval = evaluate(model: wram, data: data) { }',
  ].join('\n'));
  assert.equal(reported(r), [
    'main.pipe:2:48 E_PARSE expected `}` after `}`',
    'main.pipe:3:49 E_PARAM_TYPE param `lr` must be number, got string "fast"',
    'main.pipe:4:30 E_UNKNOWN_REFERENCE unknown stage `wram`',
  ], describe(r));
});

load('a broken let is declared for its uses: no "unknown variable", and a -p for it is no unknown let', () => {
  const text = [
    'let lr = 1e-4 *',
    PREAMBLE,
    'stage warm = sft(model: base, data: paused) { lr: lr, epochs: "2", train_lm_head: yes }',
  ].join('\n');
  const overrides = [parseOverride('lr=0.5') as Override];
  const r = loadPipelineText(text, TEST_FILE, TEST_KINDS, () => undefined, { overrides });
  assert.equal(reported(r), [
    'main.pipe:1:15 E_PARSE expected a value after `*`',
    'main.pipe:5:63 E_PARAM_TYPE param `epochs` must be integer, got string "2"',
    'main.pipe:5:83 E_UNKNOWN_VARIABLE unknown variable `yes`',
  ], describe(r));
});

load('a loop keeps the stages of its body that parse: they are checked in every variant, and take the broken one silently', () => {
  const r = parsePipe([
    PREAMBLE,
    'for each lr in [0.1, 0.2] {',
    '  stage warm = sft(model: base, data: paused) { lr: lr, epochs: }',
    '  stage eval = evaluate(model: warm, data: data) { max_new_tokens: 0 }',
    '}',
  ].join('\n'));
  assert.equal(reported(r), [
    'main.pipe:5:65 E_PARSE expected a value, found `}`',
    'main.pipe:6:68 E_PARAM_VALUE param `max_new_tokens` must be >= 1, got number 0',
  ], describe(r));
});

load('an included file with syntax errors: its other statements are checked and its broken stage is declared in the file that includes it', () => {
  const r = parsePipe('include "common.pipe"\nstage warm = sft(model: base, data: data) { epochs: 0 }', {
    'common.pipe': 'stage data = gsm8k { path: 7 }\nstage base = surgery { model: "tiny" options: }',
  });
  assert.equal(reported(r), [
    'main.pipe:2:53 E_PARAM_VALUE param `epochs` must be >= 1, got number 0',
    'common.pipe:1:28 E_PARAM_TYPE param `path` must be string, got number 7',
    'common.pipe:2:47 E_PARSE expected a value, found `}`',
  ], describe(r));
});

load('an include statement that is broken is still followed when it names a readable file; else it may declare any name', () => {
  const text = 'include "common.pipe\nstage warm = sft(model: base, data: data) { epochs: n }\nstage r = report(runs: warm) { }';
  const r = parsePipe(text, { 'common.pipe': 'stage data = gsm8k { path: "d" }' });
  assert.equal(reported(r), [
    'main.pipe:1:9 E_UNTERMINATED_STRING unterminated string: add the closing `"` (use `\\n` for a line break inside a string)',
    'main.pipe:2:25 E_UNKNOWN_REFERENCE unknown stage `base`',
    'main.pipe:2:53 E_UNKNOWN_VARIABLE unknown variable `n`',
    'main.pipe:3:24 E_INPUT_ARITY input `runs` of `report` takes a collection, got the single stage `warm`',
  ], describe(r));
  assert.equal(Object.keys(r.sources), [TEST_FILE, path.resolve(path.dirname(TEST_FILE), 'common.pipe')]);
  // Not there: nothing is reported unknown, the rest is checked.
  const missing = parsePipe(text, {});
  assert.equal(reported(missing), [
    'main.pipe:1:9 E_UNTERMINATED_STRING unterminated string: add the closing `"` (use `\\n` for a line break inside a string)',
    'main.pipe:3:24 E_INPUT_ARITY input `runs` of `report` takes a collection, got the single stage `warm`',
  ], describe(missing));
  assert.equal(Object.keys(missing.sources), [TEST_FILE]);
});

load('a kind\'s own checks do not judge from what a broken statement hides: the report of a broken stage, a dep a broken stage writes', () => {
  const r = parsePipe([
    'stage data = synthetic_math { train: 10 }',
    'stage base = init_model { preset: "tiny" }',
    'stage eval = evaluate(model: base, data: data) { max_new_tokens: }',
    'stage table = report(runs: eval) { baseline: "eval" }',
    'stage use = sh { command: ["cat", "x.txt"], deps: ["x.txt"] }',
    'stage gen = sh { command: "echo > x.txt", shell: true, outs: ["x.txt"] more }',
  ].join('\n'), {}, STAGE_KINDS);
  assert.equal(reported(r), [
    'main.pipe:3:66 E_PARSE expected a value, found `}`',
    'main.pipe:6:77 E_PARSE expected `:`, found `}`',
  ], describe(r));
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

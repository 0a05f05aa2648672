// Reading .pipe files: only regular .pipe files of at most 1 MiB, never blocking, never echoing another file's lines.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { execFileSync } from 'node:child_process';
import { mkdir, symlink, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { formatDiagnostics } from '../../grammar/diagnostics.ts';
import { MAX_FILE_BYTES } from '../../grammar/limits.ts';
import { loadPipeline } from '../../runtime/load.ts';
import { STAGE_KINDS } from '../../stages/index.ts';
import { tempWorkspace } from '../helpers/runner.ts';

/** Loads `main.pipe` holding `text` in a fresh workspace; returns the diagnostics as `CODE line:col message [notes]` and rendered. */
async function load(ws: string, text: string): Promise<{ lines: string[]; rendered: string }> {
  const file = path.join(ws, 'main.pipe');
  await writeFile(file, text);
  const r = await loadPipeline(file, STAGE_KINDS);
  return {
    lines: r.diagnostics.map((d) => `${d.code} ${d.span?.line}:${d.span?.column} ${d.message}${d.notes ? ` [${d.notes.join('; ')}]` : ''}`),
    rendered: formatDiagnostics(r.diagnostics, r.sources),
  };
}

test('include of a device, a FIFO, a folder or a huge file is refused at once with the reason', async () => {
  const ws = await tempWorkspace('pausepipe-include-');
  execFileSync('mkfifo', [path.join(ws, 'fifo.pipe')]);
  await mkdir(path.join(ws, 'dir.pipe'));
  await writeFile(path.join(ws, 'huge.pipe'), `# ${'x'.repeat(MAX_FILE_BYTES)}\n`);
  await symlink('/dev/zero', path.join(ws, 'zero.pipe'));
  const started = Date.now();
  const r = await load(ws, 'include "/dev/zero"\ninclude "fifo.pipe"\ninclude "dir.pipe"\ninclude "huge.pipe"\ninclude "zero.pipe"\n');
  assert.ok(Date.now() - started < 30_000, 'a FIFO must not block');
  assert.equal(r.lines, [
    'E_INCLUDE_NOT_FOUND 1:9 cannot read included file `/dev/zero` [/dev/zero is not a .pipe file]',
    `E_INCLUDE_NOT_FOUND 2:9 cannot read included file \`fifo.pipe\` [${ws}/fifo.pipe is not a regular file]`,
    `E_INCLUDE_NOT_FOUND 3:9 cannot read included file \`dir.pipe\` [${ws}/dir.pipe is a folder, not a .pipe file]`,
    `E_INCLUDE_NOT_FOUND 4:9 cannot read included file \`huge.pipe\` [${ws}/huge.pipe is ${(MAX_FILE_BYTES + 3).toLocaleString('en-US')} bytes; a .pipe file may have at most 1,048,576]`,
    `E_INCLUDE_NOT_FOUND 5:9 cannot read included file \`zero.pipe\` [${ws}/zero.pipe is not a .pipe file (it leads to /dev/zero)]`,
  ]);
});

test('the includes that could not be read are listed by path, missing or refused, beside the files read', async () => {
  const ws = await tempWorkspace('pausepipe-include-');
  await mkdir(path.join(ws, 'dir.pipe'));
  await writeFile(path.join(ws, 'common.pipe'), 'include "sub/later.pipe"\n');
  const file = path.join(ws, 'main.pipe');
  await writeFile(file, 'include "common.pipe"\ninclude "dir.pipe"\n');
  const r = await loadPipeline(file, STAGE_KINDS);
  assert.equal(Object.keys(r.sources), [file, path.join(ws, 'common.pipe')]);
  assert.equal(r.unread, [path.join(ws, 'sub', 'later.pipe'), path.join(ws, 'dir.pipe')]);
});

test('a file that is not a .pipe file is never read, so its lines never appear in a message', async () => {
  const ws = await tempWorkspace('pausepipe-include-');
  await writeFile(path.join(ws, 'secrets.txt'), 'root:$6$hunter2:19000:0:99999:7:::\n');
  await symlink(path.join(ws, 'secrets.txt'), path.join(ws, 'innocent.pipe'));
  const r = await load(ws, 'include "secrets.txt"\ninclude "innocent.pipe"\n');
  assert.equal(r.lines.map((l) => l.split(' [')[0]), [
    'E_INCLUDE_NOT_FOUND 1:9 cannot read included file `secrets.txt`',
    'E_INCLUDE_NOT_FOUND 2:9 cannot read included file `innocent.pipe`',
  ]);
  assert.not.match(r.rendered, 'hunter2');
  const entry = await loadPipeline(path.join(ws, 'secrets.txt'), STAGE_KINDS);
  assert.equal(entry.diagnostics.map((d) => [d.code, d.message]), [['E_FILE_NOT_FOUND', `${ws}/secrets.txt is not a .pipe file`]]);
});

test('a folder given as the pipeline is named in the error', async () => {
  const ws = await tempWorkspace('pausepipe-include-');
  await mkdir(path.join(ws, 'oops.pipe'));
  const r = await loadPipeline(path.join(ws, 'oops.pipe'), STAGE_KINDS);
  assert.equal(r.diagnostics.map((d) => d.message), [`${ws}/oops.pipe is a folder, not a .pipe file`]);
});

test('a UTF-8 byte order mark is accepted, and positions are those an editor shows', async () => {
  const ws = await tempWorkspace('pausepipe-include-');
  await writeFile(path.join(ws, 'common.pipe'), '\uFEFFlet shared = 1\n');
  const r = await load(ws, '\uFEFFinclude "common.pipe"\nlet a = shared +\n');
  assert.equal(r.lines, ['E_PARSE 3:1 expected a value, found the end of the file']);
});

test('a syntax error in an include, or in the include itself when its path can be read, hides no other mistake and causes none', async () => {
  const ws = await tempWorkspace('pausepipe-include-');
  const uses = 'stage a = sh(t: train) { command: "echo ${lr} ${wrod}", shell: true }\nstage b = sh(t: nope) { command: "echo", shell: true }\n';
  // The included file's `train` is broken (a comma missing): its uses are not reported, the other mistakes are.
  await writeFile(path.join(ws, 'common.pipe'), 'stage train = sh { command: "echo" shell: true }\nlet lr = 1\n');
  assert.equal((await load(ws, `include "common.pipe"\n${uses}`)).lines, [
    'E_UNKNOWN_VARIABLE 2:49 unknown variable `wrod`',
    'E_UNKNOWN_REFERENCE 3:17 unknown stage `nope`',
    'E_PARSE 1:36 expected `,` or a line break between entries',
  ]);
  // The include statement is broken but names its file: the file's names are known.
  await writeFile(path.join(ws, 'common.pipe'), 'stage train = sh { command: "echo", shell: true }\nlet lr = 1\n');
  for (const include of ['include "common.pipe', 'include "common.pipe" x']) {
    assert.equal((await load(ws, `${include}\n${uses}`)).lines.slice(1), [
      'E_UNKNOWN_VARIABLE 2:49 unknown variable `wrod`',
      'E_UNKNOWN_REFERENCE 3:17 unknown stage `nope`',
    ], include);
  }
  // A broken include of a file that cannot be read may have declared anything: only its own error is said.
  assert.equal((await load(ws, `include "missing.pipe\n${uses}`)).lines, [
    'E_UNTERMINATED_STRING 1:9 unterminated string: add the closing `"` (use `\\n` for a line break inside a string)',
  ]);
});

test.run();

// `pausepipe lsp` spoken to over stdio as an editor would: initialize, diagnostics, completion, hover, definition.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { LspClient } from '../helpers/lsp-client.ts';
import { BIN, PROJECT_ROOT, tempWorkspace } from '../helpers/runner.ts';

interface Diagnostic {
  range: { start: { line: number; character: number }; end: { line: number; character: number } };
  severity: number;
  code: string;
  source: string;
  message: string;
}
interface CompletionItem {
  label: string;
  kind: number;
  insertText: string;
  documentation?: { kind: string; value: string };
}

const TWO_ERRORS = [
  'let lr = 5e-5',
  'stage data = synthetic_math { train: 10 }',
  'stage base = init_modl { preset: "tiny" }',
  'stage warm = sft(model: base, data: data) { lr: lr, batch_size: "eight" }',
  '',
].join('\n');

let client: LspClient;
let dir = '';
let version = 0;

test.before(async () => {
  dir = await tempWorkspace('pausepipe-lsp-');
  client = LspClient.start(process.execPath, [BIN, 'lsp', '--stdio'], PROJECT_ROOT, { ...process.env, PAUSEPIPE_KINDS: '' });
});

/** Opens a document (a new URI each time, so tests do not see each other's diagnostics). */
function open(text: string): string {
  const uri = pathToFileURL(path.join(dir, `doc${++version}.pipe`)).href;
  client.notify('textDocument/didOpen', { textDocument: { uri, languageId: 'pausepipe', version: 1, text } });
  return uri;
}

/** The position just after the first occurrence of `marker` in `text`. */
function after(text: string, marker: string): { line: number; character: number } {
  const at = text.indexOf(marker) + marker.length;
  const lines = text.slice(0, at).split('\n');
  return { line: lines.length - 1, character: lines.at(-1)!.length };
}

/** `promise`, or a failure naming `what` after `ms`: an answer that never comes fails the test instead of hanging it. */
function within<T>(ms: number, what: string, promise: Promise<T>): Promise<T> {
  return Promise.race([promise, new Promise<never>((_, reject) => setTimeout(() => reject(new Error(`no ${what} within ${ms} ms`)), ms).unref())]);
}

async function complete(text: string, marker: string): Promise<CompletionItem[]> {
  const uri = open(text);
  return client.request<CompletionItem[]>('textDocument/completion', { textDocument: { uri }, position: after(text, marker) });
}

test('initialize answers with the server name and what it can do', async () => {
  const r = await client.request<{ capabilities: Record<string, unknown>; serverInfo: { name: string } }>('initialize', {
    processId: process.pid, rootUri: pathToFileURL(dir).href, capabilities: {},
  });
  client.notify('initialized', {});
  assert.is(r.serverInfo.name, 'pausepipe');
  assert.is(r.capabilities.hoverProvider, true);
  assert.is(r.capabilities.definitionProvider, true);
  assert.is(r.capabilities.documentSymbolProvider, true);
  assert.is(r.capabilities.referencesProvider, true);
  assert.equal(r.capabilities.renameProvider, { prepareProvider: true });
  assert.is(r.capabilities.textDocumentSync, 2);
  assert.ok(r.capabilities.completionProvider);
});

test('a file with two errors gets exactly the two diagnostics `check` prints, where `check` puts them', async () => {
  const uri = open(TWO_ERRORS);
  const published = await client.waitFor<{ uri: string; diagnostics: Diagnostic[] }>('textDocument/publishDiagnostics', (p) => p.uri === uri);
  assert.equal(published.diagnostics.map((d) => [d.code, d.severity, d.source, d.range]), [
    ['E_UNKNOWN_KIND', 1, 'pausepipe', { start: { line: 2, character: 13 }, end: { line: 2, character: 22 } }],
    ['E_PARAM_TYPE', 1, 'pausepipe', { start: { line: 3, character: 64 }, end: { line: 3, character: 71 } }],
  ]);
  assert.ok(published.diagnostics[0]!.message.startsWith('unknown stage kind `init_modl`\ndid you mean `init_model`?'));
  assert.is(published.diagnostics[1]!.message, 'param `batch_size` must be integer, got string "eight"');

  // Fixing both while typing clears them.
  client.notify('textDocument/didChange', {
    textDocument: { uri, version: 2 },
    contentChanges: [{ text: TWO_ERRORS.replace('init_modl', 'init_model').replace('"eight"', '8') }],
  });
  const fixed = await client.waitFor<{ uri: string; version: number; diagnostics: Diagnostic[] }>('textDocument/publishDiagnostics', (p) => p.uri === uri && p.version === 2);
  assert.equal(fixed.diagnostics, []);
});

test('a half-typed line is published with the other errors, which stay where they were', async () => {
  const uri = open(`let steps =\n${TWO_ERRORS}`);
  const published = await client.waitFor<{ uri: string; diagnostics: Diagnostic[] }>('textDocument/publishDiagnostics', (p) => p.uri === uri);
  assert.equal(published.diagnostics.map((d) => [d.code, d.range.start, d.message.split('\n')[0]]), [
    ['E_PARSE', { line: 0, character: 10 }, 'expected a value after `=`'],
    ['E_UNKNOWN_KIND', { line: 3, character: 13 }, 'unknown stage kind `init_modl`'],
    ['E_PARAM_TYPE', { line: 4, character: 64 }, 'param `batch_size` must be integer, got string "eight"'],
  ]);
});

test('an include of a device or a FIFO is refused as `check` refuses it, without reading it (the server would hang)', async () => {
  const uri = open('include "/dev/zero"\nstage data = synthetic_math { train: 10 }\n');
  const published = await client.waitFor<{ uri: string; diagnostics: Diagnostic[] }>('textDocument/publishDiagnostics', (p) => p.uri === uri);
  assert.equal(published.diagnostics.map((d) => [d.code, d.range.start.line, d.message]), [
    ['E_INCLUDE_NOT_FOUND', 0, 'cannot read included file `/dev/zero`\n/dev/zero is not a .pipe file'],
  ]);
});

test('an included file changed on disk, not open in the editor, is checked again when the client says it changed', async () => {
  const included = path.join(dir, 'watched.pipe');
  await writeFile(included, 'stage data = synthetic_math { trian: 10 }\n');
  const uri = open('include "watched.pipe"\nstage base = init_model { preset: "tiny" }\n');
  const first = await client.waitFor<{ uri: string; diagnostics: Diagnostic[] }>('textDocument/publishDiagnostics', (p) => p.uri === uri);
  assert.equal(first.diagnostics.map((d) => d.code), ['E_UNKNOWN_PARAM']);
  await writeFile(included, 'stage data = synthetic_math { train: 10 }\n');
  client.notify('workspace/didChangeWatchedFiles', { changes: [{ uri: pathToFileURL(included).href, type: 2 }] });
  const fixed = await within(10_000, 'diagnostics after the change',
    client.waitFor<{ uri: string; diagnostics: Diagnostic[] }>('textDocument/publishDiagnostics', (p) => p.uri === uri && p.diagnostics.length === 0));
  assert.equal(fixed.diagnostics, []);
});

test('`sf` after `stage NAME =` completes to the kind `sft`, with its description', async () => {
  const items = await complete('stage data = synthetic_math { }\nstage w = sf', '= sf');
  assert.equal(items.map((i) => i.label), ['sft']);
  assert.match(items[0]!.documentation!.value, /^Fine-tunes a model/);
});

test('parameter names come from the kind\'s JSON Schema, without the ones already given, nested objects too', async () => {
  const text = 'stage warm = sft(model: base, data: data) {\n  lr: 0.1\n  l\n  train: { pa }\n}\n';
  const top = await complete(text, '0.1\n  l');
  assert.equal(top.map((i) => [i.label, i.insertText]), [['logging_steps', 'logging_steps: '], ['lora', 'lora: ']]);
  assert.match(top[1]!.documentation!.value, /^\*\*lora\*\*: `object \| null`, default `null`/);
  const nested = await complete(text, '{ pa');
  assert.equal(nested.map((i) => i.label), ['pause_embedding', 'pause_head']);
});

test('input names come from the kind; after `input:` the stage names', async () => {
  const inputs = await complete('stage base = init_model { }\nstage warm = sft(mo', 'sft(mo');
  assert.equal(inputs.map((i) => i.label), ['model']);
  const refs = await complete('stage base = init_model { }\nstage bench = sh { command: ["true"] }\nstage warm = sft(model: b', 'model: b');
  assert.equal(refs.map((i) => i.label), ['base', 'bench']);
});

test('hover shows a parameter\'s type, default and description, and what a name refers to', async () => {
  const uri = open(TWO_ERRORS);
  const param = await client.request<{ contents: { value: string } }>('textDocument/hover', { textDocument: { uri }, position: after(TWO_ERRORS, '{ l') });
  assert.is(param.contents.value, '**lr**: `number`, default `0.00005`\n\nPeak learning rate of AdamW.');
  const ref = await client.request<{ contents: { value: string } }>('textDocument/hover', { textDocument: { uri }, position: after(TWO_ERRORS, 'lr: l') });
  assert.is(ref.contents.value, '`let lr = 5e-5`');
});

test('go to definition jumps from a stage reference to its `stage` and from a name to its `let`', async () => {
  const uri = open(TWO_ERRORS);
  const stage = await client.request<{ uri: string; range: Diagnostic['range'] }>('textDocument/definition', { textDocument: { uri }, position: after(TWO_ERRORS, 'model: ba') });
  assert.equal(stage, { uri, range: { start: { line: 2, character: 6 }, end: { line: 2, character: 10 } } });
  const let_ = await client.request<{ uri: string; range: Diagnostic['range'] }>('textDocument/definition', { textDocument: { uri }, position: after(TWO_ERRORS, 'lr: l') });
  assert.equal(let_, { uri, range: { start: { line: 0, character: 4 }, end: { line: 0, character: 6 } } });
  const key = await client.request<unknown>('textDocument/definition', { textDocument: { uri }, position: after(TWO_ERRORS, '{ l') });
  assert.is(key, null);
});

test('the outline lists lets, stages and loops with their stages, also while the file does not parse', async () => {
  const text = 'let lr = 5e-5\nstage data = synthetic_math { train: 10 }\nfor each seed in [1, 2] {\n  stage warm = sft(data: data) { lr: lr, seed: seed }\n  stage eval = evaluate(model: warm, data: \n}\n';
  const uri = open(text);
  interface Symbol { name: string; detail: string; kind: number; range: Diagnostic['range']; selectionRange: Diagnostic['range']; children: Symbol[] }
  const symbols = await client.request<Symbol[]>('textDocument/documentSymbol', { textDocument: { uri } });
  const r = (a: number, b: number, c: number, d: number) => ({ start: { line: a, character: b }, end: { line: c, character: d } });
  const flat = (s: Symbol): unknown => [s.name, s.kind, s.detail, s.range, s.selectionRange, s.children.map(flat)];
  assert.equal(symbols.map(flat), [
    ['lr', 14, '5e-5', r(0, 0, 0, 13), r(0, 4, 0, 6), []],
    ['data', 12, 'synthetic_math', r(1, 0, 1, 41), r(1, 6, 1, 10), []],
    ['for each seed', 2, '', r(2, 0, 5, 1), r(2, 0, 2, 3), [
      ['warm', 12, 'sft', r(3, 2, 3, 53), r(3, 8, 3, 12), []],
      ['eval', 12, 'evaluate', r(4, 2, 5, 1), r(4, 8, 4, 12), []],
    ]],
  ]);
});

test('a burst of keystrokes is checked once, at the last version, not once per keystroke', async () => {
  const text = 'stage data = synthetic_math { train: 10 }\n';
  const uri = open(text);
  await client.waitFor<{ uri: string }>('textDocument/publishDiagnostics', (p) => p.uri === uri);
  // Typing `, seed: "x"` before the closing `}`, one character per change, as an editor sends it.
  const typed = ', seed: "x"';
  for (let i = 0; i < typed.length; i++) {
    const at = { line: 0, character: 39 + i };
    client.notify('textDocument/didChange', { textDocument: { uri, version: 2 + i }, contentChanges: [{ range: { start: at, end: at }, text: typed[i] }] });
  }
  const last = 1 + typed.length;
  const published = await client.waitFor<{ uri: string; version: number; diagnostics: Diagnostic[] }>('textDocument/publishDiagnostics', (p) => p.uri === uri && p.version === last);
  assert.equal(published.diagnostics.map((d) => [d.code, d.range]), [['E_PARAM_TYPE', { start: { line: 0, character: 47 }, end: { line: 0, character: 50 } }]]);
  await new Promise((resolve) => setTimeout(resolve, 300));
  const versions = client.notifications.filter((m) => m.method === 'textDocument/publishDiagnostics' && (m.params as { uri: string }).uri === uri);
  assert.equal(versions.map((m) => (m.params as { version: number }).version), [1, last]);
});

test('a rename in an included file edits the files of the workspace that include it, the unsaved text of an open one too', async () => {
  const common = 'let lr = 0.01\nstage data = synthetic_math { train: 10 }\n';
  const onDisk = 'include "common.pipe"\nstage warm = sft(data: data) { lr: lr }\n';
  const unsaved = `${onDisk}stage eval = evaluate(model: warm, data: data) { }\n`;
  await writeFile(path.join(dir, 'common.pipe'), common);
  await writeFile(path.join(dir, 'main.pipe'), onDisk);
  await mkdir(path.join(dir, 'sub'));
  await writeFile(path.join(dir, 'sub', 'second.pipe'), 'include "../common.pipe"\nstage probe = sh(after: data) { command: "true" }\n');
  // The cache folder is not searched.
  await mkdir(path.join(dir, '.pausepipe'));
  await writeFile(path.join(dir, '.pausepipe', 'copy.pipe'), 'include "../common.pipe"\nstage copy = sh(after: data) { command: "true" }\n');
  const uri = (f: string) => pathToFileURL(path.join(dir, f)).href;
  client.notify('textDocument/didOpen', { textDocument: { uri: uri('common.pipe'), languageId: 'pausepipe', version: 1, text: common } });
  client.notify('textDocument/didOpen', { textDocument: { uri: uri('main.pipe'), languageId: 'pausepipe', version: 1, text: unsaved } });
  const position = after(common, 'stage d');
  const r = (line: number, from: number, to: number) => ({ start: { line, character: from }, end: { line, character: to } });

  const prepared = await client.request<unknown>('textDocument/prepareRename', { textDocument: { uri: uri('common.pipe') }, position });
  assert.equal(prepared, r(1, 6, 10));
  const edit = await client.request<{ changes: Record<string, { range: Diagnostic['range']; newText: string }[]> }>('textDocument/rename', {
    textDocument: { uri: uri('common.pipe') }, position, newName: 'gsm',
  });
  assert.equal(edit, {
    changes: {
      [uri('common.pipe')]: [{ range: r(1, 6, 10), newText: 'gsm' }],
      [uri('main.pipe')]: [{ range: r(1, 23, 27), newText: 'gsm' }, { range: r(2, 41, 45), newText: 'gsm' }],
      [uri('sub/second.pipe')]: [{ range: r(1, 24, 28), newText: 'gsm' }],
    },
  });

  const references = await client.request<{ uri: string; range: Diagnostic['range'] }[]>('textDocument/references', {
    textDocument: { uri: uri('main.pipe') }, position: after(unsaved, 'model: w'), context: { includeDeclaration: true },
  });
  assert.equal(references, [{ uri: uri('main.pipe'), range: r(1, 6, 10) }, { uri: uri('main.pipe'), range: r(2, 29, 33) }]);

  const refused = await client.request('textDocument/rename', { textDocument: { uri: uri('common.pipe') }, position, newName: 'lr' }).catch((e: Error) => e.message);
  assert.is(refused, 'textDocument/rename: cannot rename the stage `data` to `lr`: a let `lr` is already defined at common.pipe:1:5');
  const keyword = await client.request<unknown>('textDocument/prepareRename', { textDocument: { uri: uri('common.pipe') }, position: after(common, 'sta') });
  assert.is(keyword, null);
});

test('a plugin kind module that fails to load leaves the server up with the built-in kinds, and the editor is told why', async () => {
  const missing = path.join(dir, 'no-such-kinds.mts');
  const other = LspClient.start(process.execPath, [BIN, 'lsp', '--stdio'], PROJECT_ROOT, { ...process.env, PAUSEPIPE_KINDS: missing });
  await within(20_000, 'answer to initialize (the server exited?)', other.request('initialize', { processId: process.pid, rootUri: pathToFileURL(dir).href, capabilities: {} }));
  other.notify('initialized', {});
  const shown = await within(10_000, 'message to the user', other.waitFor<{ type: number; message: string }>('window/showMessage'));
  assert.equal(shown, { type: 1, message: `pausepipe lsp: PAUSEPIPE_KINDS: ${missing} does not exist; only the built-in stage kinds are known` });
  const uri = pathToFileURL(path.join(dir, 'plugin-user.pipe')).href;
  const text = 'stage w = sf';
  other.notify('textDocument/didOpen', { textDocument: { uri, languageId: 'pausepipe', version: 1, text } });
  const items = await other.request<CompletionItem[]>('textDocument/completion', { textDocument: { uri }, position: { line: 0, character: text.length } });
  assert.equal(items.map((i) => i.label), ['sft']);
  assert.is(await other.close(), 0);
});

test('shutdown and exit end the server with code 0', async () => {
  assert.is(await client.close(), 0);
});

test.run();

// Find references and rename: which names stand for a stage, let or loop variable, across includes, and which new names are refused.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import path from 'node:path';
import { prepareRenameAt, referencesAt, renameAt, type Project } from '../../lsp/references.ts';

const DIR = '/virtual/ws';
const MAIN = path.join(DIR, 'main.pipe');
const COMMON = path.join(DIR, 'common.pipe');
const OTHER = path.join(DIR, 'other.pipe');
const FILES: Record<string, string> = {
  [COMMON]: 'let lr = 0.01\nstage data = synthetic_math { train: 10 }\n',
  [MAIN]: [
    'include "common.pipe"',
    'let tag = "lr-${lr}"',
    'for each pause in ["head", "embed"], lora in [false, true] where not (pause == "head" and lora) named "${pause},lora=${lora}" {',
    '  let half = lr / 2',
    '  stage warm = sft(data: data) { lr: half, train: { pause_head: pause != "embed" } }',
    '  stage eval = evaluate(model: warm, data: data) { }',
    '}',
    'for each pause in [1] {',
    '  stage probe = sh { command: "echo ${pause}" }',
    '}',
    'stage table = report(runs: eval[*], baselines: eval[pause="head", lora=true]) { title: "${tag}", reference: { name: "x", rows: [{ match: { pause: "head" } }] } }',
    '',
  ].join('\n'),
  // Its own pipeline, with its own `warm`: never touched by a rename in MAIN.
  [OTHER]: 'stage warm = sh { command: "true" }\nstage b = sh(after: warm) { command: "true" }\n',
};
const project: Project = { readFile: (f) => FILES[f], files: Object.keys(FILES) };

const at = (text: string, marker: string): number => text.indexOf(marker) + marker.length;
/** `file:line:column-column`, 1-based as `check` prints places. */
const place = (l: { file: string; range: { start: { line: number; character: number }; end: { character: number } } }): string =>
  `${path.basename(l.file)}:${l.range.start.line + 1}:${l.range.start.character + 1}-${l.range.end.character + 1}`;
const refs = (file: string, marker: string, includeDeclaration = true): string[] =>
  referencesAt(FILES[file]!, file, at(FILES[file]!, marker), project, includeDeclaration).map(place);

test('a stage\'s references: its declaration, inputs and selectors, across the include, declaring file first', () => {
  assert.equal(refs(MAIN, 'data: d'), ['common.pipe:2:7-11', 'main.pipe:5:26-30', 'main.pipe:6:44-48']);
  assert.equal(refs(MAIN, 'stage ev'), ['main.pipe:6:9-13', 'main.pipe:11:28-32', 'main.pipe:11:48-52']);
  assert.equal(refs(MAIN, 'model: w', false), ['main.pipe:6:32-36']);
});

test('a let\'s references reach its uses in later lets, values and `"${…}"`, from the included file too', () => {
  assert.equal(refs(COMMON, 'let l'), ['common.pipe:1:5-7', 'main.pipe:2:17-19', 'main.pipe:4:14-16']);
  assert.equal(refs(MAIN, '${ta'), ['main.pipe:2:5-8', 'main.pipe:11:91-94']);
  assert.equal(refs(MAIN, 'let ha'), ['main.pipe:4:7-11', 'main.pipe:5:38-42']);
});

test('a loop variable\'s references stay in its loop, plus selector keys of its loop\'s stages; keys and string text are not names', () => {
  const own = ['main.pipe:3:10-15', 'main.pipe:3:71-76', 'main.pipe:3:106-111', 'main.pipe:5:65-70', 'main.pipe:11:53-58'];
  assert.equal(refs(MAIN, 'for each pa'), own);
  assert.equal(refs(MAIN, 'eval[pa'), own);
  assert.equal(refs(MAIN, 'echo ${pa'), ['main.pipe:8:10-15', 'main.pipe:9:39-44']);
  assert.equal(refs(MAIN, 'lora=${lo'), ['main.pipe:3:38-42', 'main.pipe:3:91-95', 'main.pipe:3:120-124', 'main.pipe:11:67-71']);
});

test('rename edits every reference in the file and the one it includes, and nothing in another pipeline', () => {
  const result = renameAt(FILES[MAIN]!, MAIN, at(FILES[MAIN]!, 'data: d'), 'dataset', project);
  assert.ok(result && 'edits' in result);
  assert.equal(result.edits.map((e) => [place(e), e.newText]), [
    ['common.pipe:2:7-11', 'dataset'],
    ['main.pipe:5:26-30', 'dataset'],
    ['main.pipe:6:44-48', 'dataset'],
  ]);
  const warm = renameAt(FILES[MAIN]!, MAIN, at(FILES[MAIN]!, 'stage wa'), 'sft_warm', project);
  assert.ok(warm && 'edits' in warm);
  assert.equal(warm.edits.map(place), ['main.pipe:5:9-13', 'main.pipe:6:32-36']);
});

test('rename in an included file also renames the uses in the files that include it', () => {
  const result = renameAt(FILES[COMMON]!, COMMON, at(FILES[COMMON]!, 'let l'), 'base_lr', project);
  assert.ok(result && 'edits' in result);
  assert.equal(result.edits.map(place), ['common.pipe:1:5-7', 'main.pipe:2:17-19', 'main.pipe:4:14-16']);
});

test('rename refuses a new name that is no name, a keyword, or one `check` would call a duplicate', () => {
  const refused = (marker: string, newName: string) => {
    const r = renameAt(FILES[MAIN]!, MAIN, at(FILES[MAIN]!, marker), newName, project);
    return r && 'refused' in r ? r.refused : r;
  };
  assert.is(refused('let ta', '2tag'), '`2tag` is not a name: a name is a letter or `_`, then letters, digits and `_`');
  assert.is(refused('let ta', 'lr-2'), '`lr-2` is not a name: a name is a letter or `_`, then letters, digits and `_`');
  assert.is(refused('let ta', 'named'), '`named` is a keyword of the language');
  assert.is(refused('let ta', 'data'), 'cannot rename the let `tag` to `data`: a stage `data` is already defined at common.pipe:2:7');
  // A stage or a let outside loops may not share its name with any loop's variable or let.
  assert.is(refused('stage ta', 'half'), 'cannot rename the stage `table` to `half`: a let `half` is already defined at main.pipe:4:7');
  assert.is(refused('stage ta', 'lora'), 'cannot rename the stage `table` to `lora`: a loop variable `lora` is already defined at main.pipe:3:38');
  // A loop variable clashes with the lets and stages outside loops and with its own loop's names, not another loop's.
  assert.is(refused('for each pa', 'lr'), 'cannot rename the loop variable `pause` to `lr`: a let `lr` is already defined at common.pipe:1:5');
  assert.is(refused('for each pa', 'half'), 'cannot rename the loop variable `pause` to `half`: a let `half` is already defined at main.pipe:4:7');
  assert.is(refused('for each pa', 'lora'), 'cannot rename the loop variable `pause` to `lora`: a loop variable `lora` is already defined at main.pipe:3:38');
  const probe = renameAt(FILES[MAIN]!, MAIN, at(FILES[MAIN]!, 'echo ${pa'), 'lora', project);
  assert.ok(probe && 'edits' in probe);
  assert.equal(probe.edits.map(place), ['main.pipe:8:10-15', 'main.pipe:9:39-44']);
});

test('prepareRename gives the name\'s range, and nothing on keywords, strings, numbers, keys, kinds and inputs', () => {
  const text = FILES[MAIN]!;
  const range = prepareRenameAt(text, MAIN, at(text, 'eval[pa'), project);
  assert.equal(range, { start: { line: 10, character: 52 }, end: { line: 10, character: 57 } });
  for (const marker of ['for e', 'where n', '"he', '[1', '{ l', '{ pause_he', 'sf', 'evaluate(mo', 'match: { pa', 'include "com']) {
    assert.is(prepareRenameAt(text, MAIN, at(text, marker), project), null, marker);
  }
});

test.run();

// The README's `.pipe` examples are real: every ```pipe block parses without a diagnostic.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parsePipeText } from '../grammar/index.ts';
import { loadPipelineText } from '../runtime/load.ts';
import { renderDag } from '../runtime/dag.ts';
import { kindsMarkdown } from '../runtime/kinds-doc.ts';
import { loadChecked } from '../runtime/session.ts';
import { STAGE_KINDS } from '../stages/index.ts';

const README = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', 'README.md');
const blocks = [...readFileSync(README, 'utf8').matchAll(/```pipe\n([\s\S]*?)```/g)].map((m) => m[1]!);

test('the README has .pipe examples', () => {
  assert.ok(blocks.length >= 2, `found ${blocks.length}`);
});

test('every .pipe example in the README parses cleanly', () => {
  blocks.forEach((text, i) => {
    const { diagnostics } = parsePipeText(text, `README block ${i + 1}`);
    assert.equal(diagnostics.map((d) => `${d.code} ${d.span?.line}:${d.span?.column} ${d.message}`), [], `block ${i + 1}`);
  });
});

test('the language example validates against the real stage kinds, given the common.pipe it includes', () => {
  const common = 'stage base = init_model { preset: "tiny" }\nstage surgery = add_pause_token(model: base) { }\n';
  const entry = path.join(path.dirname(README), 'example.pipe');
  const result = loadPipelineText(blocks[0]!, entry, STAGE_KINDS, (f) => (path.basename(f) === 'common.pipe' ? common : undefined));
  assert.equal(result.diagnostics.map((d) => `${d.code} ${d.span?.line}:${d.span?.column} ${d.message}`), []);
  assert.equal(result.pipeline!.stages.filter((x) => x.declaredName === 'warm').map((x) => x.name), [
    'warm[embed+head,lora=false]', 'warm[embed+head,lora=true]', 'warm[embed,lora=false]', 'warm[embed,lora=true]', 'warm[head,lora=false]',
  ]);
});

test('the README\'s stage kind reference is what `pausepipe kinds --md` prints now', () => {
  const text = readFileSync(README, 'utf8');
  const heading = '## Stage kinds (`pausepipe kinds --md`)\n\n';
  const section = text.slice(text.indexOf(heading) + heading.length);
  // The command's own title dropped and its headings one level down, under the README's heading.
  const printed = kindsMarkdown(STAGE_KINDS).split('\n').slice(2).map((line) => (line.startsWith('## ') ? `#${line}` : line)).join('\n');
  assert.ok(text.includes(heading), 'the section heading');
  assert.fixture(section.trimEnd(), printed.trimEnd());
});

test('the README\'s demo DAG is what `pausepipe dag pipelines/demo.pipe` prints now', async () => {
  const shown = /```mermaid\n([\s\S]*?)```/.exec(readFileSync(README, 'utf8'))?.[1];
  const errors: string[] = [];
  const loaded = await loadChecked(path.join(path.dirname(README), 'pipelines', 'demo.pipe'), (t) => errors.push(t));
  assert.ok(loaded, errors.join('\n'));
  assert.fixture(shown ?? '', await renderDag(loaded.pipeline, 'mermaid'));
});

test.run();

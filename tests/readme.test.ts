// The README's `.pipe` examples are real: every ```pipe block parses without a diagnostic.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parsePipeText } from '../grammar/index.ts';

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

test.run();

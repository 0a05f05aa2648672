// The VS Code folder: its manifest points at files that exist, and the TextMate grammar knows the language's keywords.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import * as T from '../../grammar/tokens.ts';
import { PROJECT_ROOT } from '../helpers/runner.ts';

const FOLDER = path.join(PROJECT_ROOT, 'editor/vscode');
const manifest = JSON.parse(readFileSync(path.join(FOLDER, 'package.json'), 'utf8'));
const grammarFile = path.join(FOLDER, manifest.contributes.grammars[0].path);
const grammar = JSON.parse(readFileSync(grammarFile, 'utf8'));

interface Rule {
  name?: string;
  match?: string;
  begin?: string;
  end?: string;
  patterns?: Rule[];
}

function rules(): Rule[] {
  const out: Rule[] = [];
  const walk = (r: Rule): void => {
    out.push(r);
    r.patterns?.forEach(walk);
  };
  [...grammar.patterns, ...Object.values(grammar.repository as Record<string, Rule>)].forEach(walk);
  return out;
}

test('the manifest registers .pipe files, the grammar and the client entry point, all present', () => {
  assert.equal(manifest.contributes.languages[0].extensions, ['.pipe']);
  assert.is(manifest.contributes.grammars[0].scopeName, grammar.scopeName);
  for (const file of [manifest.main, manifest.contributes.languages[0].configuration, manifest.contributes.grammars[0].path]) {
    assert.ok(existsSync(path.join(FOLDER, file)), file);
  }
  assert.equal(manifest.contributes.configuration.properties['pausepipe.server.command'].default, ['npx', 'pausepipe', 'lsp']);
});

test('every pattern of the grammar is a valid regular expression', () => {
  for (const r of rules()) for (const re of [r.match, r.begin, r.end]) if (re !== undefined) new RegExp(re);
});

test('every keyword of the lexer is highlighted as a keyword or constant', () => {
  const words = [T.Include, T.Let, T.Stage, T.For, T.Each, T.In, T.Where, T.Named, T.If, T.Then, T.Else, T.True, T.False, T.Null, T.And, T.Or, T.Not]
    .map((t) => t.PATTERN as string);
  const keywordRules = rules().filter((r) => r.match && /^(keyword|constant\.language)/.test(r.name ?? ''));
  const missing = words.filter((w) => !keywordRules.some((r) => new RegExp(`^(?:${r.match})$`).test(w)));
  assert.equal(missing, []);
});

test('a stage header is scoped as keyword, stage name and kind', () => {
  const header = grammar.repository['stage-header'];
  const m = new RegExp(header.match).exec('stage warm = sft(model: base)')!;
  assert.equal([m[1], m[2], m[4]], ['stage', 'warm', 'sft']);
  assert.equal([1, 2, 4].map((i) => header.captures[i].name), ['keyword.other.stage.pausepipe', 'entity.name.function.stage.pausepipe', 'entity.name.type.kind.pausepipe']);
});

test.run();

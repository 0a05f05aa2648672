// init_model: from-scratch presets with overrides and seeds, and loading a Hugging Face checkpoint folder.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { INIT_MODEL } from '../../stages/init-model.ts';
import { STAGE_KINDS } from '../../stages/index.ts';
import { parsePipe } from '../helpers/pipe.ts';
import { loadModel } from '../../stages/lm/model-io.ts';
import { readSafetensors } from '../../stages/lm/safetensors.ts';
import { builtinTokenizer, loadTokenizer } from '../../stages/lm/tokenizer.ts';
import { FIXTURES, withFixtures } from '../helpers/hf-fixtures.ts';
import { runKind, tinyModelFolder } from '../helpers/model-stages.ts';
import { removeTempDirs, withDefaults } from './data/stage-context.ts';

const test = suite('init_model');
test.after(removeTempDirs);

const json = async (file: string) => JSON.parse(await readFile(file, 'utf8'));

test('every parameter has a description, and the defaults build a small model from scratch with seed 42', () => {
  for (const [name, schema] of Object.entries(INIT_MODEL.params.properties)) assert.ok(schema.description.length > 10, name);
  assert.equal(withDefaults(INIT_MODEL), { path: null, preset: 'small', overrides: {}, tokenizer: null, seed: 42 });
});

test('a from-scratch model is a Hugging Face folder: preset sizes, overrides, the built-in tokenizer', async () => {
  const ref = await tinyModelFolder({ overrides: { num_hidden_layers: 1, max_position_embeddings: 128 } });
  const config = await json(path.join(ref.dir, 'config.json'));
  assert.equal(
    [config.model_type, config.num_hidden_layers, config.hidden_size, config.vocab_size, config.max_position_embeddings, config.bos_token_id, config.eos_token_id],
    ['llama', 1, 64, 100, 128, 1, 2],
  );
  const tok = await loadTokenizer(ref.dir);
  assert.equal(tok.encode('2+3?'), builtinTokenizer().encode('2+3?'));
  const model = await loadModel(ref.dir, { log: () => {} });
  const parameters = [...model.weights.values()].reduce((n, v) => n + v.size, 0);
  model.dispose();
  assert.is(ref.metrics.parameters, parameters);
  assert.is(ref.metrics.num_layers, 1);
});

test('the same seed gives byte-identical weights, another seed different ones', async () => {
  const bytes = async (seed: number) => readFile(path.join((await tinyModelFolder({ seed })).dir, 'model.safetensors'));
  const [a, b, c] = [await bytes(7), await bytes(7), await bytes(8)];
  assert.ok(a.equals(b));
  assert.not.ok(a.equals(c));
});

test('a misspelt or mistyped override is an error of the pipeline file at its key, before anything runs', () => {
  const text = 'stage base = init_model {\n  preset: "tiny"\n  overrides: { num_hiden_layers: 3, hidden_size: "64", model_type: "gpt2" }\n}';
  const found = parsePipe(text, {}, STAGE_KINDS).diagnostics.map((d) => [d.code, d.message, d.span?.line, d.span?.column, d.notes ?? []]);
  assert.equal(found, [
    ['E_UNKNOWN_PARAM', 'unknown key `num_hiden_layers` in param `overrides`', 3, 16, ['did you mean `num_hidden_layers`?']],
    ['E_PARAM_TYPE', 'param `overrides.hidden_size` must be integer, got string "64"', 3, 50, []],
    ['E_PARAM_VALUE', 'param `overrides.model_type` must be one of "llama", "mistral", got "gpt2"', 3, 68, []],
  ]);
  const overrides = INIT_MODEL.params.properties.overrides!.properties as Record<string, { description: string }>;
  for (const [key, schema] of Object.entries(overrides)) assert.ok(schema.description.length > 5, key);
});

test('a bad override names the key', async () => {
  await runKind(INIT_MODEL, { params: { preset: 'tiny', overrides: { hidden_size: 'wide' } } }).then(
    () => assert.unreachable(),
    (err) => assert.match(err.message, /init_model overrides: "hidden_size" must be a number, got "wide"/),
  );
});

withFixtures(test)('a checkpoint folder is loaded and saved unchanged, with the tokenizer named by `tokenizer`', async () => {
  const source = path.join(FIXTURES, 'mistral-tiny');
  const { ctx, result } = await runKind(INIT_MODEL, { params: { path: source, tokenizer: path.join(FIXTURES, 'tokenizer-bytelevel.json') } });
  const want = (await readSafetensors(path.join(source, 'model.safetensors'))).tensors;
  const got = (await readSafetensors(path.join(ctx.outDir, 'model.safetensors'))).tensors;
  assert.equal([...got.keys()].sort(), [...want.keys()].sort());
  for (const [name, t] of want) assert.equal(Array.from(got.get(name)!.data), Array.from(t.data), name);
  assert.is((await json(path.join(ctx.outDir, 'config.json'))).model_type, 'mistral');
  assert.is((await loadTokenizer(ctx.outDir)).vocabSize, 512);
  assert.is(result.metrics!.source, source);
});

withFixtures(test)('a tokenizer with more ids than the checkpoint has rows is refused, naming both and what to do', async () => {
  const source = path.join(FIXTURES, 'mistral-tiny');
  const tokenizer = path.join(FIXTURES, 'tokenizer-sp.json');
  await runKind(INIT_MODEL, { params: { path: source, tokenizer } }).then(
    () => assert.unreachable(),
    (err) => assert.is(err.message, `init_model: the tokenizer ${tokenizer} has 856 ids but the checkpoint ${source} has 512 ` +
      'embedding rows: give the tokenizer the checkpoint was trained with'),
  );
});

test.run();

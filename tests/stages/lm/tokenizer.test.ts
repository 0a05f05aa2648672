// Tokenizer parity with the Hugging Face fixtures (byte-level and SentencePiece-style BPE), the pause token, the built-in tokenizer.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { builtinTokenizer, builtinVocabulary, JsonTokenizer, loadTokenizer } from '../../../stages/lm/tokenizer.ts';
import { FIXTURES, readJson, rejectsWith, withFixtures } from '../../helpers/hf-fixtures.ts';

interface Expected {
  vocab_size: number;
  vocab_size_with_pause?: number;
  pause_id?: number;
  encode: Record<string, number[]>;
  encode_with_pause?: Record<string, number[]>;
  decode_with_pause?: Record<string, string>;
  decode_skip_special?: Record<string, string>;
}

const fixtures = suite('tokenizer: Hugging Face fixtures');

fixtures.before(() => {
});

withFixtures(fixtures)('byte-level BPE encodes every fixture text to the exact ids, <s> included', async () => {
  const tok = await loadTokenizer(path.join(FIXTURES, 'tokenizer-bytelevel.json'));
  const exp = await readJson<Expected>(path.join(FIXTURES, 'tokenizer-bytelevel.expected.json'));
  assert.is(tok.vocabSize, exp.vocab_size);
  assert.is(tok.bosId, 0);
  assert.is(tok.eosId, 1);
  assert.is(tok.pauseId, null);
  for (const [text, ids] of Object.entries(exp.encode)) {
    assert.equal(tok.encode(text), ids, text);
    assert.equal(tok.encode(text, { addSpecialTokens: false }), ids.slice(1), text);
    assert.is(tok.decode(ids, { skipSpecialTokens: true }), text);
  }
});

withFixtures(fixtures)('SentencePiece-style BPE with byte fallback encodes and decodes exactly, non-ASCII included', async () => {
  const tok = await loadTokenizer(path.join(FIXTURES, 'tokenizer-sp.json'));
  const exp = await readJson<Expected>(path.join(FIXTURES, 'tokenizer-sp.expected.json'));
  assert.is(tok.vocabSize, exp.vocab_size);
  assert.is(tok.bosId, 1);
  assert.is(tok.eosId, 2);
  for (const [text, ids] of Object.entries(exp.encode)) {
    assert.equal(tok.encode(text), ids, text);
    assert.is(tok.decode(ids, { skipSpecialTokens: true }), exp.decode_skip_special![text]);
  }
});

withFixtures(fixtures)('the pause tokenizer has id 512, 513 ids, and the fixture ids and decodings', async () => {
  const tok = await loadTokenizer(path.join(FIXTURES, 'tokenizer-bytelevel-pause.json'));
  const exp = await readJson<Expected>(path.join(FIXTURES, 'tokenizer-bytelevel.expected.json'));
  assert.is(tok.pauseId, exp.pause_id);
  assert.is(tok.vocabSize, exp.vocab_size_with_pause);
  for (const [text, ids] of Object.entries(exp.encode_with_pause!)) {
    assert.equal(tok.encode(text), ids, text);
    assert.is(tok.decode(ids), exp.decode_with_pause![text]);
  }
  // Without special tokens the pauses (and <s>) vanish; the spaces they stripped stay stripped.
  assert.is(tok.decode(exp.encode_with_pause!['3 + 4 = <|pause|><|pause|>7\n#### 7']!, { skipSpecialTokens: true }), '3 + 4 =7\n#### 7');
});

withFixtures(fixtures)('withPauseToken on the plain byte-level tokenizer reproduces the pause fixture document', async () => {
  const plain = await loadTokenizer(path.join(FIXTURES, 'tokenizer-bytelevel.json'));
  const paused = plain.withPauseToken();
  const reference = await readJson(path.join(FIXTURES, 'tokenizer-bytelevel-pause.json'));
  assert.equal(paused.toJSON(), reference);
  assert.is(paused.pauseId, 512);
  assert.is(paused.vocabSize, 513);
  assert.is(plain.pauseId, null, 'the original is unchanged');
  assert.throws(() => paused.withPauseToken(), /already has a pause token \(id 512\)/);
});

withFixtures(fixtures)('loadTokenizer reads a folder with tokenizer.json and tokenizer_config.json', async () => {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'tok-'));
  try {
    const json = await readJson(path.join(FIXTURES, 'tokenizer-sp.json'));
    await writeFile(path.join(dir, 'tokenizer.json'), JSON.stringify(json));
    await writeFile(path.join(dir, 'tokenizer_config.json'), JSON.stringify({ bos_token: '<s>', eos_token: '</s>', pad_token: '<unk>' }));
    const tok = await loadTokenizer(dir);
    assert.is(tok.padId, 0);
    assert.is(tok.eosId, 2);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

fixtures.run();

// Every expectation here is what Hugging Face tokenizers 0.23.2 (the library the fixtures were made with) gives for
// the same document and ids; @huggingface/tokenizers alone gave something else for each.
const rust = suite('tokenizer: as the Rust library decodes and pre-tokenizes');

/** tokenizer-sp.json with its decoder or pre-tokenizer (and normalizer) replaced. */
async function spWith(change: Record<string, unknown>): Promise<JsonTokenizer> {
  return new JsonTokenizer({ ...(await readJson(path.join(FIXTURES, 'tokenizer-sp.json'))), ...change } as ConstructorParameters<typeof JsonTokenizer>[0]);
}

withFixtures(rust)('a generation cut inside a character decodes to one U+FFFD per byte token of a broken run, as Python reads it', async () => {
  const tok = await loadTokenizer(path.join(FIXTURES, 'tokenizer-sp.json'));
  const ids = tok.encode('5 €');
  assert.equal(ids, [1, 90, 180, 826, 730, 772], '€ is three byte tokens');
  assert.is(tok.decode(ids), '<s> 5 €');
  assert.is(tok.decode(ids.slice(0, -1)), '<s> 5 \uFFFD\uFFFD');
  assert.is(tok.decode(ids.slice(0, -1), { skipSpecialTokens: true }), '5 \uFFFD\uFFFD');
  // A run that is not UTF-8 is replaced whole, the ASCII byte <0x41> in it too; a valid run is its text.
  assert.is(tok.decode([665, 826, 730]), '\uFFFD\uFFFD\uFFFD');
  assert.is(tok.decode([665, 666]), 'AB');
});

withFixtures(rust)('a BOM written as byte tokens stays in the decoded text, at the start and inside', async () => {
  const tok = await loadTokenizer(path.join(FIXTURES, 'tokenizer-sp.json'));
  assert.equal(tok.encode('\uFEFFBOM'), [1, 90, 839, 787, 791, 36, 49, 47]);
  assert.is(tok.decode([1, 90, 839, 787, 791, 36, 49, 47], { skipSpecialTokens: true }), '\uFEFFBOM');
  assert.is(tok.decode([1, 90, 64, 839, 787, 791, 65], { skipSpecialTokens: true }), 'a\uFEFFb');
});

withFixtures(rust)('ids without a token (past the vocabulary) are left out of the decoded text, not read as <unk>', async () => {
  const tok = await loadTokenizer(path.join(FIXTURES, 'tokenizer-sp.json'));
  assert.is(tok.decode([1, 856, 99999, 137, 2]), '<s> the </s>');
  assert.is(tok.decode([1, 856, 99999, 137, 2], { skipSpecialTokens: true }), 'the ');
  assert.is(tok.decode([99999]), '');
});

withFixtures(rust)('the Metaspace decoder drops every ▁ of the first token, and none with prepend_scheme "never"', async () => {
  const metaspace = (prependScheme: string) => spWith({ decoder: { type: 'Metaspace', replacement: '▁', prepend_scheme: prependScheme, split: true } });
  const always = await metaspace('always');
  // 137 is `▁the▁`, 90 is `▁`, 1 is <s>.
  assert.is(always.decode([137, 137]), 'the the ');
  assert.is(always.decode([90, 90, 137]), '  the ');
  assert.is(always.decode([1, 137, 137]), '<s> the  the ');
  assert.is(always.decode([1, 137, 137], { skipSpecialTokens: true }), 'the the ');
  assert.is((await metaspace('never')).decode([137, 137]), ' the  the ');
});

withFixtures(rust)('the Metaspace pre-tokenizer splits before every ▁ unless "split" is false, so no token spans two words', async () => {
  const metaspace = (split: Record<string, boolean>) => spWith({ normalizer: null, pre_tokenizer: { type: 'Metaspace', replacement: '▁', prepend_scheme: 'first', ...split } });
  const text = 'It takes  the eggs';
  const splitIds = [90, 43, 83, 90, 83, 197, 126, 90, 90, 389, 90, 411, 70, 82];
  assert.equal((await metaspace({ split: true })).encode(text, { addSpecialTokens: false }), splitIds);
  assert.equal((await metaspace({})).encode(text, { addSpecialTokens: false }), splitIds, 'split is true by default');
  // Unsplit, `t▁`, `akes▁` and `▁the▁` span words.
  assert.equal((await metaspace({ split: false })).encode(text, { addSpecialTokens: false }), [90, 43, 98, 83, 397, 137, 411, 70, 82]);
});

withFixtures(rust)('an added token with single_word is refused, naming the token and the file', async () => {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'tok-'));
  try {
    const json = await readJson<{ added_tokens: Record<string, unknown>[] }>(path.join(FIXTURES, 'tokenizer-sp.json'));
    json.added_tokens.push({ id: 856, content: '<mask>', single_word: true, lstrip: false, rstrip: false, normalized: false, special: true });
    const file = path.join(dir, 'tokenizer.json');
    await writeFile(file, JSON.stringify(json));
    await rejectsWith(() => loadTokenizer(dir), new RegExp(`^${file}: added token "<mask>" has "single_word": true, which is not supported .* set it to false in tokenizer.json if`));
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

rust.run();

const builtin = suite('tokenizer: built-in character tokenizer');

builtin('has <unk>, <s>, </s>, <pad> at 0..3, then newline and printable ASCII (100 ids)', () => {
  const tok = builtinTokenizer();
  assert.is(tok.vocabSize, 100);
  assert.equal([tok.bosId, tok.eosId, tok.padId, tok.pauseId], [1, 2, 3, null]);
  assert.equal(builtinVocabulary().slice(0, 6), ['<unk>', '<s>', '</s>', '<pad>', '\n', ' ']);
});

builtin('encodes one id per character after <s>, unknown characters as <unk>, and decodes back', () => {
  const tok = builtinTokenizer();
  const ids = tok.encode('A b\n1’');
  // 'A' = 4 + 1 + 65 - 32, ' ' = 5, 'b' = 5 + 98 - 32, '\n' = 4, '1' = 5 + 49 - 32, '’' unknown.
  assert.equal(ids, [1, 38, 5, 71, 4, 22, 0]);
  assert.is(tok.decode(ids), '<s>A b\n1<unk>');
  assert.is(tok.decode(ids, { skipSpecialTokens: true }), 'A b\n1');
  const text = '### INPUT: What is 3+4?\n\n ### Answer: <<3+4=7>>7\n#### 7';
  assert.is(tok.decode(tok.encode(text), { skipSpecialTokens: true }), text);
});

builtin('is an ordinary tokenizer.json: written to disk, the same loader reads the same tokenizer', async () => {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'tok-'));
  try {
    const tok = builtinTokenizer().withPauseToken();
    await writeFile(path.join(dir, 'tokenizer.json'), JSON.stringify(tok.toJSON()));
    await writeFile(path.join(dir, 'tokenizer_config.json'), JSON.stringify(tok.configJson()));
    const back = await loadTokenizer(dir);
    assert.equal([back.vocabSize, back.bosId, back.eosId, back.padId, back.pauseId], [101, 1, 2, 3, 100]);
    const ids = back.encode('2 + 2 = <|pause|> 4');
    assert.equal(ids, tok.encode('2 + 2 = <|pause|> 4'));
    assert.ok(ids.includes(100));
    assert.is(back.decode(ids, { skipSpecialTokens: true }), '2 + 2 =4');
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

builtin('a missing tokenizer.json is a clear error naming the folder', async () => {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'tok-'));
  try {
    await rejectsWith(() => loadTokenizer(dir), new RegExp(`${dir}: no tokenizer.json`));
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

builtin('a tokenizer.json of a model type the library does not implement (WordLevel) is refused, naming the file', async () => {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'tok-'));
  try {
    // Without the check, the library guessed a model for it and encoded `there` (not in the vocabulary) as undefined.
    const wordLevel = {
      version: '1.0', added_tokens: [], normalizer: null, pre_tokenizer: { type: 'Whitespace' }, post_processor: null, decoder: null,
      model: { type: 'WordLevel', vocab: { '[UNK]': 0, hello: 1 }, unk_token: '[UNK]' },
    };
    await writeFile(path.join(dir, 'tokenizer.json'), JSON.stringify(wordLevel));
    const file = path.join(dir, 'tokenizer.json');
    await rejectsWith(() => loadTokenizer(dir), new RegExp(`^${file}: model type "WordLevel" is not supported \\(only BPE, Unigram, WordPiece tokenizers are\\)$`));
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

builtin.run();

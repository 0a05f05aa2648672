// Hugging Face tokenizers (tokenizer.json) through @huggingface/tokenizers, the pause token, and a built-in character tokenizer.
import * as hfTokenizers from '@huggingface/tokenizers';
import { Tokenizer as HfTokenizer } from '@huggingface/tokenizers';
import { existsSync, statSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { DEFAULT_PAUSE_TOKEN } from './config.ts';
import type { Tokenizer } from './types.ts';

/** One entry of tokenizer.json's `added_tokens`. */
interface AddedTokenJson {
  id: number;
  content: string;
  single_word: boolean;
  lstrip: boolean;
  rstrip: boolean;
  normalized: boolean;
  special: boolean;
}

interface TokenizerJson {
  added_tokens?: AddedTokenJson[];
  post_processor?: unknown;
  model: { type: string; vocab: Record<string, number> | [string, number][]; [key: string]: unknown };
  [key: string]: unknown;
}

/** The parts of tokenizer_config.json we read (special tokens, decode clean-up, our pause token). */
export interface TokenizerConfigJson {
  bos_token?: string | { content: string } | null;
  eos_token?: string | { content: string } | null;
  pad_token?: string | { content: string } | null;
  clean_up_tokenization_spaces?: boolean;
  pause_token?: string | null;
  [key: string]: unknown;
}

const BOS_NAMES = ['<s>', '<|begin_of_text|>', '<bos>', '<|startoftext|>'];
const EOS_NAMES = ['</s>', '<|end_of_text|>', '<|endoftext|>', '<eos>', '<|im_end|>'];
const PAD_NAMES = ['<pad>', '<|pad|>', '[PAD]', '<|finetune_right_pad_id|>'];

function tokenText(t: TokenizerConfigJson[keyof TokenizerConfigJson]): string | null {
  if (typeof t === 'string') return t;
  if (t && typeof t === 'object' && typeof (t as { content?: unknown }).content === 'string') return (t as { content: string }).content;
  return null;
}

/** The `model.type`s of tokenizer.json that @huggingface/tokenizers implements. */
const SUPPORTED_MODELS = ['BPE', 'Unigram', 'WordPiece'];

/** What this file uses of the library's decoder classes (its type declarations do not resolve under NodeNext). */
interface Decoder {
  config: Record<string, unknown>;
  added_tokens: unknown[];
  end_of_word_suffix: string | null;
  decode_chain(tokens: string[]): string[];
}
type DecoderClass = new (config: Record<string, unknown>) => Decoder;
interface PreTokenizer {
  pre_tokenize_text(text: string, options?: unknown): string[];
}
interface MetaspacePreTokenizer extends PreTokenizer {
  replacement: string;
}
const { ByteFallbackDecoder, MetaspaceDecoder, MetaspacePreTokenizer } = hfTokenizers as unknown as {
  ByteFallbackDecoder: DecoderClass;
  MetaspaceDecoder: DecoderClass;
  MetaspacePreTokenizer: new (config: Record<string, unknown>) => MetaspacePreTokenizer;
};

/**
 * The Metaspace pre-tokenizer with the Rust library's `split` (true unless the document says false): after `▁`
 * replaces the spaces, every `▁` starts a new word, so no token spans two words. The JS library ignored `split` and
 * kept the text one word, which a Unigram or BPE model then covered with other tokens than Python's.
 */
class RustMetaspacePreTokenizer extends MetaspacePreTokenizer {
  private readonly split: boolean;

  constructor(config: Record<string, unknown>) {
    super(config);
    this.split = config.split !== false;
  }

  override pre_tokenize_text(text: string, options?: unknown): string[] {
    const words = super.pre_tokenize_text(text, options);
    if (!this.split) return words;
    const out: string[] = [];
    for (const word of words) {
      let start = 0;
      for (let i = word.indexOf(this.replacement, 1); i > 0; i = word.indexOf(this.replacement, i + 1)) {
        out.push(word.slice(start, i));
        start = i;
      }
      out.push(word.slice(start));
    }
    return out;
  }
}

/** `pre` (as the library built it from the document's `config`) with its Metaspace pre-tokenizers made faithful. */
function rustPreTokenizers(pre: PreTokenizer, config: { type?: string; pretokenizers?: Record<string, unknown>[] } & Record<string, unknown>): PreTokenizer {
  if (config.type === 'Metaspace') return new RustMetaspacePreTokenizer(config);
  if (config.type === 'Sequence') {
    const sequence = pre as PreTokenizer & { tokenizers: PreTokenizer[] };
    sequence.tokenizers = sequence.tokenizers.map((p, i) => rustPreTokenizers(p, config.pretokenizers![i]!));
  }
  return pre;
}

/** A byte token of a byte-fallback vocabulary, as the Rust library reads one: `<0x` two hex digits `>`. */
const BYTE_TOKEN = /^<0x([0-9A-Fa-f]{2})>$/;
const STRICT_UTF8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

/**
 * ByteFallback as the Rust library decodes it (what Python decodes generations with): a run of byte tokens that is
 * valid UTF-8 becomes its text, a leading BOM kept; a run that is not becomes one U+FFFD per byte token. The JS
 * library's TextDecoder dropped a leading BOM and replaced only the broken parts, so a generation cut inside a
 * character (`€` = 3 byte tokens) read `5 �` where Python reads `5 ��`.
 */
class RustByteFallbackDecoder extends ByteFallbackDecoder {
  override decode_chain(tokens: string[]): string[] {
    const out: string[] = [];
    let bytes: number[] = [];
    const flush = () => {
      if (bytes.length === 0) return;
      try {
        out.push(STRICT_UTF8.decode(Uint8Array.from(bytes)));
      } catch {
        for (let i = 0; i < bytes.length; i++) out.push('\uFFFD');
      }
      bytes = [];
    };
    for (const token of tokens) {
      const byte = BYTE_TOKEN.exec(token);
      if (byte) {
        bytes.push(parseInt(byte[1]!, 16));
      } else {
        flush();
        out.push(token);
      }
    }
    flush();
    return out;
  }
}

/**
 * The Metaspace decoder as the Rust library applies it: every `▁` of the first token is dropped (not one leading
 * space), and none is with `prepend_scheme: "never"`, which the JS library ignored.
 */
class RustMetaspaceDecoder extends MetaspaceDecoder {
  override decode_chain(tokens: string[]): string[] {
    const replacement = (this.config.replacement as string | undefined) ?? '\u2581';
    const dropFirst = (this.config.prepend_scheme ?? 'always') !== 'never';
    return tokens.map((token, i) => token.replaceAll(replacement, i === 0 && dropFirst ? '' : ' '));
  }
}

/** `decoder` (as the library built it from tokenizer.json) with the decoders whose JS implementation differs from the Rust library's swapped for faithful ones. */
function rustDecoders(decoder: Decoder): Decoder {
  let faithful = decoder;
  switch (decoder.config.type) {
    case 'ByteFallback': faithful = new RustByteFallbackDecoder(decoder.config); break;
    case 'Metaspace': faithful = new RustMetaspaceDecoder(decoder.config); break;
    case 'Sequence': {
      const sequence = decoder as Decoder & { decoders: Decoder[] };
      sequence.decoders = sequence.decoders.map(rustDecoders);
    }
  }
  // The library sets these on the top decoder after building it.
  faithful.added_tokens = decoder.added_tokens;
  faithful.end_of_word_suffix = decoder.end_of_word_suffix;
  return faithful;
}

/** A tokenizer.json document wrapped in the project's `Tokenizer` contract. */
export class JsonTokenizer implements Tokenizer {
  readonly vocabSize: number;
  readonly bosId: number | null;
  readonly eosId: number | null;
  readonly padId: number | null;
  readonly pauseId: number | null;
  private readonly hf: HfTokenizer;
  private readonly ids: Map<string, number>;

  constructor(private readonly json: TokenizerJson, private readonly config: TokenizerConfigJson = {}) {
    if (!json || typeof json !== 'object' || !json.model || typeof json.model !== 'object') {
      throw new Error('tokenizer.json: missing "model" section');
    }
    // The tokenizers library guesses a model it does not know (WordLevel among them) and then encodes unknown words as
    // undefined ids: refuse instead of training on them.
    if (!SUPPORTED_MODELS.includes(json.model.type)) {
      throw new Error(`model type ${JSON.stringify(json.model.type ?? null)} is not supported (only ${SUPPORTED_MODELS.join(', ')} tokenizers are)`);
    }
    // The JS library matches a single_word token inside words too: its ids would silently differ from Python's.
    const singleWord = (json.added_tokens ?? []).find((t) => t.single_word);
    if (singleWord) {
      throw new Error(`added token ${JSON.stringify(singleWord.content)} has "single_word": true, which is not supported (it would be ` +
        'matched inside words too, unlike in Hugging Face tokenizers): set it to false in tokenizer.json if the token never touches a letter, digit or _ in your data');
    }
    // The Rust library (what the fixtures and Python users decode with) does no clean-up unless the config asks.
    this.hf = new HfTokenizer(json, { ...config, clean_up_tokenization_spaces: config.clean_up_tokenization_spaces ?? false });
    if (this.hf.decoder) this.hf.decoder = rustDecoders(this.hf.decoder);
    if (this.hf.pre_tokenizer) this.hf.pre_tokenizer = rustPreTokenizers(this.hf.pre_tokenizer, json.pre_tokenizer as Record<string, unknown>);
    this.ids = new Map();
    const vocab = json.model.vocab;
    // Unigram stores [piece, score] pairs whose index is the id; BPE/WordPiece store piece → id.
    const entries: [string, number][] = Array.isArray(vocab) ? vocab.map(([piece], i) => [piece, i]) : Object.entries(vocab);
    for (const [piece, id] of entries) this.ids.set(piece, id);
    for (const t of json.added_tokens ?? []) this.ids.set(t.content, t.id);
    let max = -1;
    for (const id of this.ids.values()) max = Math.max(max, id);
    this.vocabSize = max + 1;
    this.bosId = this.special(config.bos_token, BOS_NAMES, this.templateBos());
    this.eosId = this.special(config.eos_token, EOS_NAMES, null);
    this.padId = this.special(config.pad_token, PAD_NAMES, null);
    const pauseText = config.pause_token ?? DEFAULT_PAUSE_TOKEN;
    const pause = (json.added_tokens ?? []).find((t) => t.content === pauseText && t.special);
    this.pauseId = pause ? pause.id : null;
  }

  /** The id of the first special token of the post-processor's single-sequence template (Llama's `<s>`). */
  private templateBos(): string | null {
    const pp = this.json.post_processor as { type?: string; single?: { SpecialToken?: { id: string } }[] } | null | undefined;
    if (pp?.type !== 'TemplateProcessing' || !Array.isArray(pp.single)) return null;
    return pp.single[0]?.SpecialToken?.id ?? null;
  }

  private special(configured: TokenizerConfigJson['bos_token'], names: string[], fallback: string | null): number | null {
    const text = tokenText(configured);
    if (text !== null) return this.ids.get(text) ?? null;
    if (configured === null) return null;
    if (fallback !== null && this.ids.has(fallback)) return this.ids.get(fallback)!;
    for (const n of names) if (this.ids.has(n)) return this.ids.get(n)!;
    return null;
  }

  /** Token ids of `text`; `addSpecialTokens` (default true) applies the post-processor (e.g. the leading `<s>`). */
  encode(text: string, opts: { addSpecialTokens?: boolean } = {}): number[] {
    return this.hf.encode(text, { add_special_tokens: opts.addSpecialTokens ?? true }).ids;
  }

  /** Text of `ids`; ids without a token (past the vocabulary, as a model with padded embeddings may emit) are left out, as in the Rust library. */
  decode(ids: number[], opts: { skipSpecialTokens?: boolean } = {}): string {
    const known = ids.filter((id) => this.hf.id_to_token(id) !== undefined);
    if (known.length === 0) return '';
    return this.hf.decode(known, { skip_special_tokens: opts.skipSpecialTokens ?? false });
  }

  /** Id of a token string (vocabulary or added token), or undefined. */
  tokenToId(token: string): number | undefined {
    return this.ids.get(token);
  }

  /**
   * This tokenizer with the pause token added as a special token at id V. `stripSpaces` (default true) is the
   * training tokenizer's AddedToken(lstrip=True, rstrip=True): the spaces around a pause are part of it, so
   * injecting pauses between words does not add space tokens. false is the original injector's plain
   * `add_tokens([pause], special_tokens=True)`, which leaves the spaces beside a pause in the text.
   */
  withPauseToken(token: string = DEFAULT_PAUSE_TOKEN, opts: { stripSpaces?: boolean } = {}): JsonTokenizer {
    if (this.pauseId !== null) throw new Error(`tokenizer already has a pause token (id ${this.pauseId})`);
    if (this.ids.has(token)) throw new Error(`cannot add pause token '${token}': it is already in the vocabulary (id ${this.ids.get(token)})`);
    const json = structuredClone(this.json);
    const strip = opts.stripSpaces ?? true;
    const added: AddedTokenJson = { id: this.vocabSize, content: token, single_word: false, lstrip: strip, rstrip: strip, normalized: false, special: true };
    json.added_tokens = [...(json.added_tokens ?? []), added];
    return new JsonTokenizer(json, { ...this.config, pause_token: token });
  }

  toJSON(): unknown {
    return structuredClone(this.json);
  }

  /** A tokenizer_config.json that lets transformers' AutoTokenizer (and our loader) find the special tokens again. */
  configJson(): TokenizerConfigJson {
    const text = (id: number | null) => (id === null ? null : this.hf.id_to_token(id) ?? null);
    const out: TokenizerConfigJson = {
      tokenizer_class: 'PreTrainedTokenizerFast',
      bos_token: text(this.bosId),
      eos_token: text(this.eosId),
      pad_token: text(this.padId),
      clean_up_tokenization_spaces: this.config.clean_up_tokenization_spaces ?? false,
    };
    if (this.pauseId !== null) {
      out.pause_token = text(this.pauseId);
      out.additional_special_tokens = [out.pause_token];
    }
    return out;
  }
}

async function readJson(file: string): Promise<unknown> {
  const text = await readFile(file, 'utf8');
  try {
    return JSON.parse(text);
  } catch (err) {
    throw new Error(`${file}: not valid JSON (${(err as Error).message})`);
  }
}

/**
 * Loads `tokenizer.json` (a file, or a folder holding one; `tokenizer_config.json` beside it is read for the
 * special tokens when present).
 */
export async function loadTokenizer(dirOrFile: string): Promise<JsonTokenizer> {
  if (!existsSync(dirOrFile)) throw new Error(`${dirOrFile}: no such file or folder`);
  const file = statSync(dirOrFile).isDirectory() ? path.join(dirOrFile, 'tokenizer.json') : dirOrFile;
  if (!existsSync(file)) throw new Error(`${dirOrFile}: no tokenizer.json (only tokenizer.json is supported, not sentencepiece .model files)`);
  const configFile = path.join(path.dirname(file), 'tokenizer_config.json');
  const config = existsSync(configFile) ? ((await readJson(configFile)) as TokenizerConfigJson) : {};
  try {
    return new JsonTokenizer((await readJson(file)) as TokenizerJson, config);
  } catch (err) {
    throw new Error(`${file}: ${(err as Error).message}`);
  }
}

/** Whether `text` is exactly the tokenizer's pause token: what pauses written as `text` in data become when encoded. */
export function readsAsPause(tokenizer: Tokenizer, text: string): boolean {
  if (tokenizer.pauseId === null) return false;
  const ids = tokenizer.encode(text, { addSpecialTokens: false });
  return ids.length === 1 && ids[0] === tokenizer.pauseId;
}

/** The text of the tokenizer's pause token (its added token's content), or null without one. */
export function pauseText(tokenizer: Tokenizer): string | null {
  return tokenizer.pauseId === null ? null : tokenizer.decode([tokenizer.pauseId], { skipSpecialTokens: false });
}

/** Ids of the built-in tokenizer's special tokens, fixed so from-scratch configs can name them. */
export const BUILTIN_SPECIALS = ['<unk>', '<s>', '</s>', '<pad>'] as const;

/**
 * The character vocabulary of the built-in tokenizer: newline plus printable ASCII (GSM8K's text is ASCII but for
 * about 0.1% of characters, such as `’`, `–` and `€`, which become `<unk>`).
 */
export function builtinVocabulary(): string[] {
  const chars = ['\n'];
  for (let c = 32; c < 127; c++) chars.push(String.fromCharCode(c));
  return [...BUILTIN_SPECIALS, ...chars];
}

/**
 * The tokenizer.json of the built-in character-level tokenizer: a BPE model without merges over single
 * characters, each character its own pre-token, `<s>` prepended by the post-processor, Fuse decoder.
 * The `tokenizers` library (Rust or JS) reads it like any Hub tokenizer.
 */
export function builtinTokenizerJson(): TokenizerJson {
  const vocab: Record<string, number> = {};
  builtinVocabulary().forEach((piece, id) => (vocab[piece] = id));
  return {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: BUILTIN_SPECIALS.map((content, id) => ({ id, content, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true })),
    normalizer: null,
    pre_tokenizer: { type: 'Split', pattern: { Regex: '[\\s\\S]' }, behavior: 'Isolated', invert: false },
    post_processor: {
      type: 'TemplateProcessing',
      single: [{ SpecialToken: { id: '<s>', type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }],
      pair: [{ SpecialToken: { id: '<s>', type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }, { SpecialToken: { id: '<s>', type_id: 0 } }, { Sequence: { id: 'B', type_id: 0 } }],
      special_tokens: { '<s>': { id: '<s>', ids: [1], tokens: ['<s>'] } },
    },
    decoder: { type: 'Fuse' },
    model: {
      type: 'BPE',
      dropout: null,
      unk_token: '<unk>',
      continuing_subword_prefix: null,
      end_of_word_suffix: null,
      fuse_unk: false,
      byte_fallback: false,
      ignore_merges: false,
      vocab,
      merges: [],
    },
  };
}

/** The built-in tokenizer for from-scratch models: `<unk>`=0, `<s>`=1, `</s>`=2, `<pad>`=3, then characters. */
export function builtinTokenizer(): JsonTokenizer {
  return new JsonTokenizer(builtinTokenizerJson(), { bos_token: '<s>', eos_token: '</s>', pad_token: '<pad>' });
}

// Model folders: load the fixtures, save Hugging Face folders that load back bit for bit (plain, pause, LoRA kept or merged).
import * as assert from 'uvu/assert';
import * as tf from '@tensorflow/tfjs-core';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { readTensor } from '../../../stages/lm/backend.ts';
import { initWeights, presetConfig, toHfConfig } from '../../../stages/lm/config.ts';
import { readSafetensors, writeSafetensors, type HostTensor } from '../../../stages/lm/safetensors.ts';
import { configureTraining } from '../../../stages/lm/freeze.ts';
import { loadLoraAdapter } from '../../../stages/lm/lora.ts';
import { createModel, type CausalLM } from '../../../stages/lm/model.ts';
import { loadModel, saveModel } from '../../../stages/lm/model-io.ts';
import { PauseLM } from '../../../stages/lm/pause.ts';
import { storeInBfloat16 } from '../../../stages/lm/trainer.ts';
import { builtinTokenizer, loadTokenizer } from '../../../stages/lm/tokenizer.ts';
import { expectedTensors, FIXTURES, maxDiff, pauseFixtureModel, readJson, rejectsWith, toTf, valuesOf, withFixtures } from '../../helpers/hf-fixtures.ts';
import { backendSuite, forEachBackend } from '../../helpers/backends.ts';

const quiet = () => {};

/** float32 → bfloat16 by dropping the low 16 bits, as the fixture writer below stores them (exactly representable back). */
function truncateToBf16(x: number): number {
  const f = new Float32Array([x]);
  new Uint32Array(f.buffer)[0]! &= 0xffff0000;
  return f[0]!;
}

/** A safetensors file with BF16 tensors, as transformers saves Mistral-7B's shards (header, then the data). */
function bf16Safetensors(tensors: [string, HostTensor][]): Buffer {
  const header: Record<string, unknown> = {};
  let offset = 0;
  for (const [name, t] of tensors) {
    header[name] = { dtype: 'BF16', shape: t.shape, data_offsets: [offset, offset + 2 * t.data.length] };
    offset += 2 * t.data.length;
  }
  const json = Buffer.from(JSON.stringify(header));
  const out = Buffer.alloc(8 + json.length + offset);
  out.writeBigUInt64LE(BigInt(json.length), 0);
  json.copy(out, 8);
  let at = 8 + json.length;
  for (const [, t] of tensors) {
    const bits = new Uint32Array(Float32Array.from(t.data).buffer);
    for (let i = 0; i < bits.length; i++, at += 2) out.writeUInt16LE(bits[i]! >>> 16, at);
  }
  return out;
}
forEachBackend((backend) => {
  let tmp = '';
  const test = backendSuite('model-io', backend);

  test.before(async () => {
    tmp = await mkdtemp(path.join(os.tmpdir(), 'model-io-'));
  });
  test.after(() => rm(tmp, { recursive: true, force: true }));

  /** Every weight (and LoRA tensor) as raw bytes, for bit-for-bit comparisons. */
  async function snapshot(model: CausalLM): Promise<Map<string, string>> {
    const out = new Map<string, string>();
    const bytes = async (v: tf.Tensor) => Buffer.from((await readTensor(v)).buffer).toString('base64');
    for (const name of model.weights.keys()) out.set(name, await bytes(model.variable(name)));
    for (const [name, v] of model.trainableVariables()) out.set(`trainable:${name}`, await bytes(v));
    return out;
  }

  function logits(model: CausalLM, ids: number[][]): Promise<Float32Array | Int32Array> {
    return valuesOf(() => model.forward(tf.tensor2d(ids, [ids.length, ids[0]!.length], 'int32')));
  }

  withFixtures(test)('a loaded fixture saves to the same model.safetensors bytes and config.json, and loads back bit for bit', async () => {
    for (const fixture of ['mistral-tiny', 'llama-tiny-tied']) {
      const src = path.join(FIXTURES, fixture);
      const model = await loadModel(src);
      const dir = path.join(tmp, fixture);
      await saveModel(model, null, dir);
      assert.ok((await readFile(path.join(dir, 'model.safetensors'))).equals(await readFile(path.join(src, 'model.safetensors'))), fixture);
      assert.equal(await readJson(path.join(dir, 'config.json')), await readJson(path.join(src, 'config.json')));
      const back = await loadModel(dir);
      assert.equal(await snapshot(back), await snapshot(model));
      model.dispose();
      back.dispose();
    }
  });

  withFixtures(test)('a pause model and its tokenizer round-trip: wrapper names, pause fields, identical weights and outputs', async () => {
    const model = await pauseFixtureModel();
    const tok = await loadTokenizer(path.join(FIXTURES, 'tokenizer-bytelevel-pause.json'));
    const dir = path.join(tmp, 'pause');
    await saveModel(model, tok, dir);
    const cfg = await readJson(path.join(dir, 'config.json'));
    assert.equal([cfg.pause_token_id, cfg.pause_token, cfg.vocab_size, cfg.tie_word_embeddings, cfg.architectures], [512, '<|pause|>', 512, false, ['PauseClassifierWrapper']]);
    const back = await loadModel(dir);
    assert.ok(back instanceof PauseLM);
    assert.equal(await snapshot(back), await snapshot(model));
    const ex = await expectedTensors('pause-wrapper');
    const ids = toTf<tf.Tensor2D>(ex.get('input_ids')!);
    assert.equal(await valuesOf(() => (back as PauseLM).pauseForward(ids).combined), await valuesOf(() => model.pauseForward(ids).combined));
    const tokBack = await loadTokenizer(dir);
    assert.equal(tokBack.toJSON(), tok.toJSON());
    assert.equal([tokBack.pauseId, tokBack.bosId, tokBack.eosId], [512, 0, 1]);
    ids.dispose();
    model.dispose();
    back.dispose();
  });

  withFixtures(test)('LoRA kept unmerged saves the untouched base plus PEFT adapter files; merged saves fold it in', async () => {
    const model = await loadModel(path.join(FIXTURES, 'mistral-tiny'));
    await loadLoraAdapter(model, path.join(FIXTURES, 'mistral-tiny-lora'), quiet);
    const ex = await expectedTensors('mistral-tiny-lora');
    const ids = Array.from({ length: 3 }, (_, r) => Array.from(ex.get('input_ids')!.data.slice(r * 14, r * 14 + 14)));
    const kept = path.join(tmp, 'kept');
    await saveModel(model, null, kept, { mergeLora: false });
    assert.ok((await readFile(path.join(kept, 'model.safetensors'))).equals(await readFile(path.join(FIXTURES, 'mistral-tiny', 'model.safetensors'))));
    assert.ok((await readFile(path.join(kept, 'adapter_model.safetensors'))).equals(await readFile(path.join(FIXTURES, 'mistral-tiny-lora', 'adapter_model.safetensors'))));
    const keptBack = await loadModel(kept, { log: quiet });
    assert.ok(keptBack.lora !== null);
    assert.equal(await logits(keptBack, ids), await logits(model, ids));
    const merged = path.join(tmp, 'merged');
    await saveModel(model, null, merged);
    assert.ok(model.lora !== null, 'saving merged leaves the in-memory model unmerged');
    assert.not.ok(existsSync(path.join(merged, 'adapter_config.json')));
    const mergedBack = await loadModel(merged);
    assert.is(mergedBack.lora, null);
    const d = maxDiff(await logits(mergedBack, ids), ex.get('logits_merged')!.data);
    assert.ok(d < 1e-4, `merged ${d}`);
    // Saving merged into the folder that held an adapter removes the stale adapter files.
    await saveModel(model, null, kept);
    assert.not.ok(existsSync(path.join(kept, 'adapter_model.safetensors')));
    for (const m of [model, keptBack, mergedBack]) m.dispose();
  });

  withFixtures(test)('a pause model training with LoRA and modules_to_save copies round-trips unmerged, copies included', async () => {
    const model = await pauseFixtureModel();
    configureTraining(model, { groups: ['pauseEmbedding', 'pauseHead', 'lmHead'], lora: { rank: 4, alpha: 8, seed: 1 } }, quiet);
    // Make every trainable tensor differ from its original so a lost copy would show.
    for (const v of model.trainableVariables().values()) {
      const shifted = tf.tidy(() => tf.add(v, 0.01));
      v.assign(shifted);
      shifted.dispose();
    }
    const dir = path.join(tmp, 'pause-lora');
    await saveModel(model, null, dir, { mergeLora: false });
    const adapterCfg = await readJson(path.join(dir, 'adapter_config.json'));
    assert.equal(adapterCfg.modules_to_save, ['language_model.model.embed_tokens.new_embedding', 'ctrl_tok_clf', 'language_model.lm_head']);
    const back = await loadModel(dir, { log: quiet });
    assert.equal(await snapshot(back), await snapshot(model));
    model.dispose();
    back.dispose();
  });

  test('a sharded bfloat16 checkpoint loads shard by shard, every weight exactly its bfloat16 value', async () => {
    const cfg = { ...presetConfig('tiny', builtinTokenizer(), 64), modelType: 'mistral' as const, slidingWindow: 16 };
    const host = initWeights(cfg, 9);
    const dir = path.join(tmp, 'sharded-bf16');
    await mkdir(dir, { recursive: true });
    const names = [...host.keys()];
    const shards = [names.slice(0, 7), names.slice(7)];
    const weightMap: Record<string, string> = {};
    for (const [i, shard] of shards.entries()) {
      const file = `model-0000${i + 1}-of-00002.safetensors`;
      await writeFile(path.join(dir, file), bf16Safetensors(shard.map((n) => [n, host.get(n)!])));
      for (const n of shard) weightMap[n] = file;
    }
    await writeFile(path.join(dir, 'model.safetensors.index.json'), JSON.stringify({ metadata: { total_size: 0 }, weight_map: weightMap }));
    await writeFile(path.join(dir, 'config.json'), JSON.stringify({ ...toHfConfig(cfg), torch_dtype: 'bfloat16' }));
    const model = await loadModel(dir);
    try {
      assert.is(model.config.slidingWindow, 16);
      assert.equal([...model.weights.keys()], names);
      for (const name of model.weights.keys()) {
        const want = Float32Array.from(host.get(name)!.data, truncateToBf16);
        assert.equal(await readTensor(model.variable(name)), want, name);
      }
    } finally {
      model.dispose();
    }
  });

  test('a from-scratch model with the built-in tokenizer is an ordinary folder that loads back', async () => {
    const tok = builtinTokenizer();
    const model = createModel(presetConfig('tiny', tok, 64), 4);
    const dir = path.join(tmp, 'scratch');
    await saveModel(model, tok, dir);
    const back = await loadModel(dir);
    const tokBack = await loadTokenizer(dir);
    const ids = [tokBack.encode('12+30=42')];
    assert.equal(ids[0], tok.encode('12+30=42'));
    assert.equal(await logits(back, ids), await logits(model, ids));
    const gen = await readJson(path.join(dir, 'generation_config.json'));
    assert.equal([gen.bos_token_id, gen.eos_token_id, gen.pad_token_id], [1, 2, 3]);
    model.dispose();
    back.dispose();
  });

  test('a model stored in bfloat16 saves BF16 tensors (half the bytes) with torch_dtype bfloat16 and loads back bit for bit; one value off keeps all F32', async () => {
    const model = createModel(presetConfig('tiny', builtinTokenizer(), 64), 4);
    storeInBfloat16(model);
    const dir = path.join(tmp, 'bf16');
    const header = async () => {
      const file = await readFile(path.join(dir, 'model.safetensors'));
      const json = JSON.parse(file.subarray(8, 8 + Number(file.readBigUInt64LE(0))).toString()) as Record<string, { dtype: string; data_offsets: number[] }>;
      delete json.__metadata__;
      return { dtypes: new Set(Object.values(json).map((e) => e.dtype)), dataBytes: Math.max(...Object.values(json).map((e) => e.data_offsets[1]!)) };
    };
    const values = [...model.weights.values()].reduce((n, w) => n + w.size, 0);
    await saveModel(model, null, dir);
    assert.equal(await header(), { dtypes: new Set(['BF16']), dataBytes: 2 * values });
    assert.is((await readJson(path.join(dir, 'config.json'))).torch_dtype, 'bfloat16');
    const back = await loadModel(dir);
    assert.equal(await snapshot(back), await snapshot(model));
    back.dispose();
    // One value that bfloat16 cannot hold: the whole model stays float32, as before.
    const norm = model.variable('model.norm.weight');
    norm.assign(tf.tidy(() => tf.add(norm, tf.mul(tf.reshape(tf.oneHot(tf.tensor1d([5], 'int32'), 64), [64]), 1e-6))));
    await saveModel(model, null, dir);
    assert.equal(await header(), { dtypes: new Set(['F32']), dataBytes: 4 * values });
    assert.is((await readJson(path.join(dir, 'config.json'))).torch_dtype, undefined);
    model.dispose();
  });

  test('a weight holding NaN or an infinity is refused as the folder loads, naming the weight and how many values', async () => {
    const model = createModel(presetConfig('tiny', builtinTokenizer(), 64), 4);
    const dir = path.join(tmp, 'diverged');
    await saveModel(model, null, dir);
    model.dispose();
    const file = path.join(dir, 'model.safetensors');
    const { tensors } = await readSafetensors(file);
    const down = tensors.get('model.layers.1.mlp.down_proj.weight')!;
    down.data[5] = NaN;
    down.data[9] = -Infinity;
    await writeSafetensors(file, tensors);
    const before = tf.memory().numTensors;
    await rejectsWith(() => loadModel(dir), new RegExp(`^${dir.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}: weight model\\.layers\\.1\\.mlp\\.down_proj\\.weight holds 2 values that are not finite \\(the first, at index 5, is NaN\\): the checkpoint is damaged, or was saved from a run that diverged$`));
    assert.is(tf.memory().numTensors, before, 'the weights read before it are freed');
  });

  test('a folder without config.json is refused as not a model folder', async () => {
    await rejectsWith(() => loadModel(tmp), /no config\.json \(not a model folder\)/);
  });

  withFixtures(test)('mismatches and missing files are clear errors', async () => {
    const model = await pauseFixtureModel();
    const plainTok = await loadTokenizer(path.join(FIXTURES, 'tokenizer-bytelevel.json'));
    await rejectsWith(() => saveModel(model, plainTok, path.join(tmp, 'bad')), /the model's pause token id is 512 but the tokenizer's is none/);
    model.dispose();
  });

  test.run();
});

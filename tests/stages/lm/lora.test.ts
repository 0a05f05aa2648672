// LoRA: parity with PEFT (adapter applied, merged), PEFT's adapter files byte for byte, fresh adapters, dropout, errors.
import * as assert from 'uvu/assert';
import * as tf from '@tensorflow/tfjs-core';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { readTensor } from '../../../stages/lm/backend.ts';
import { adapterConfig, applyLora, loadLoraAdapter, mergeLora, saveLoraAdapter } from '../../../stages/lm/lora.ts';
import type { CausalLM } from '../../../stages/lm/model.ts';
import { expectedTensors, FIXTURES, FIXTURES_PRESENT, fixtureModel, maxDiff, readJson, rejectsWith, scalarOf, toTf, valuesOf, withFixtures } from '../../helpers/hf-fixtures.ts';
import { backendSuite, forEachBackend } from '../../helpers/backends.ts';

const ADAPTER_DIR = path.join(FIXTURES, 'mistral-tiny-lora');
const quiet = () => {};
forEachBackend((backend) => {
  const test = backendSuite('lora', backend);
  let ex: Awaited<ReturnType<typeof expectedTensors>>;
  let tmp = '';

  test.before(async () => {
    tmp = await mkdtemp(path.join(os.tmpdir(), 'lora-'));
    if (!FIXTURES_PRESENT) return;
    ex = await expectedTensors('mistral-tiny-lora');
  });
  test.after(() => rm(tmp, { recursive: true, force: true }));

  function logits(model: CausalLM): Promise<Float32Array | Int32Array> {
    return valuesOf(() => model.forward(toTf(ex.get('input_ids')!)));
  }

  withFixtures(test)('logits with the PEFT adapter, and after merging it, are within 1e-4 of PEFT', async () => {
    const model = await fixtureModel('mistral-tiny');
    try {
      const setup = await loadLoraAdapter(model, ADAPTER_DIR, quiet);
      assert.equal([setup.rank, setup.alpha, setup.scaling, setup.adapters.size], [4, 8, 2, 4]);
      const withAdapter = await logits(model);
      assert.ok(maxDiff(withAdapter, ex.get('logits_with_adapter')!.data) < 1e-4, `adapter ${maxDiff(withAdapter, ex.get('logits_with_adapter')!.data)}`);
      mergeLora(model, quiet);
      assert.is(model.lora, null);
      const merged = await logits(model);
      assert.ok(maxDiff(merged, ex.get('logits_merged')!.data) < 1e-4, `merged ${maxDiff(merged, ex.get('logits_merged')!.data)}`);
    } finally {
      model.dispose();
    }
  });

  withFixtures(test)('saving a loaded adapter writes PEFT\'s adapter_model.safetensors byte for byte, and it loads back', async () => {
    const model = await fixtureModel('mistral-tiny');
    const other = await fixtureModel('mistral-tiny');
    try {
      await loadLoraAdapter(model, ADAPTER_DIR, quiet);
      const dir = path.join(tmp, 'roundtrip');
      await mkdir(dir, { recursive: true });
      await saveLoraAdapter(model, dir, '../mistral-tiny');
      const ours = await readFile(path.join(dir, 'adapter_model.safetensors'));
      assert.ok(ours.equals(await readFile(path.join(ADAPTER_DIR, 'adapter_model.safetensors'))));
      const cfg = await readJson(path.join(dir, 'adapter_config.json'));
      const peft = await readJson(path.join(ADAPTER_DIR, 'adapter_config.json'));
      for (const key of ['peft_type', 'task_type', 'r', 'lora_alpha', 'lora_dropout', 'target_modules', 'modules_to_save', 'bias', 'base_model_name_or_path']) {
        assert.equal(cfg[key], peft[key], key);
      }
      await loadLoraAdapter(other, dir, quiet);
      assert.equal(await logits(other), await logits(model));
    } finally {
      model.dispose();
      other.dispose();
    }
  });

  withFixtures(test)('a fresh adapter starts as a no-op (B = 0), trains only A and B, and its dropout acts only in training', async () => {
    const model = await fixtureModel('mistral-tiny');
    try {
      const before = await logits(model);
      const lines: string[] = [];
      applyLora(model, { rank: 8, alpha: 16, dropout: 0.5, seed: 3 }, (l) => lines.push(l));
      assert.is(lines[0], 'LoRA: r=8 alpha=16 dropout=0.5 on q_proj, v_proj (4 modules, 3584 parameters)');
      assert.equal(await logits(model), before);
      assert.equal([...model.trainableVariables().keys()].slice(0, 2), [
        'base_model.model.model.layers.0.self_attn.q_proj.lora_A.default.weight',
        'base_model.model.model.layers.0.self_attn.q_proj.lora_B.default.weight',
      ]);
      const a = await readTensor(model.lora!.adapters.get('model.layers.0.self_attn.q_proj')!.a);
      assert.ok(a.every((x) => Math.abs(x) <= 1 / 8) && a.some((x) => x !== 0), 'lora_A ~ U(±1/√in)');
      // Give B weight so dropout changes the output, then compare inference against training-mode losses.
      for (const { b } of model.lora!.adapters.values()) b.assign(tf.fill(b.shape, 0.05));
      const ids = toTf<tf.Tensor2D>(ex.get('input_ids')!);
      const batch = { inputIds: ids, attentionMask: tf.onesLike(ids), labels: ids };
      const loss = (training: boolean) => scalarOf(() => model.lossParts(batch, { training }).loss);
      assert.is(await loss(false), await loss(false));
      assert.is.not(await loss(true), await loss(false));
      assert.is.not(await loss(true), await loss(true), 'a new dropout mask every training forward');
      tf.dispose([ids, batch.attentionMask]);
    } finally {
      model.dispose();
    }
  });

  withFixtures(test)('adapter_config.json lists what was trained, and unsupported adapters are clear errors', async () => {
    const model = await fixtureModel('mistral-tiny');
    try {
      assert.throws(() => applyLora(model, { targetModules: ['q_proj', 'qkv'] }, quiet), /LoRA target module 'qkv' is not supported/);
      applyLora(model, { modulesToSave: ['lm_head.weight'] }, quiet);
      const cfg = adapterConfig(model);
      assert.equal([cfg.r, cfg.lora_alpha, cfg.lora_dropout, cfg.target_modules, cfg.modules_to_save], [16, 32, 0.05, ['q_proj', 'v_proj'], ['lm_head']]);
      assert.throws(() => applyLora(model, {}, quiet), /already has LoRA adapters/);
      const dir = path.join(tmp, 'dora');
      await mkdir(dir, { recursive: true });
      await writeFile(path.join(dir, 'adapter_config.json'), JSON.stringify({ ...(await readJson(path.join(ADAPTER_DIR, 'adapter_config.json'))), use_dora: true }));
      await writeFile(path.join(dir, 'adapter_model.safetensors'), await readFile(path.join(ADAPTER_DIR, 'adapter_model.safetensors')));
      const fresh = await fixtureModel('mistral-tiny');
      await rejectsWith(() => loadLoraAdapter(fresh, dir, quiet), /adapter_config\.json: use_dora is not supported/);
      fresh.dispose();
    } finally {
      model.dispose();
    }
  });

  withFixtures(test)('applying, using, merging and disposing LoRA returns the live tensors to where they were', async () => {
    // Built and freed once first: ops.ts keeps a RoPE rotation pair per head size for the whole process.
    const warm = await fixtureModel('mistral-tiny');
    await logits(warm);
    warm.dispose();
    const ids = toTf<tf.Tensor2D>(ex.get('input_ids')!);
    const batch = { inputIds: ids, attentionMask: tf.onesLike(ids), labels: ids };
    const before = tf.memory().numTensors;
    for (const merge of [false, true]) {
      const model = await fixtureModel('mistral-tiny');
      applyLora(model, { rank: 4, modulesToSave: ['lm_head.weight'] }, quiet);
      const { value, grads } = tf.variableGrads(() => model.lossParts(batch, { training: true }).loss, [...model.trainableVariables().values()]);
      tf.dispose([value, ...Object.values(grads)]);
      await logits(model);
      if (merge) {
        mergeLora(model, quiet);
        await logits(model);
      }
      model.dispose();
      assert.is(tf.memory().numTensors, before, merge ? 'merged' : 'unmerged');
    }
    tf.dispose([ids, batch.attentionMask]);
  });

  withFixtures(test)('a refused adapter leaves the model as it was and no tensors behind', async () => {
    const model = await fixtureModel('mistral-tiny');
    try {
      const before = tf.memory().numTensors;
      assert.throws(() => applyLora(model, { modulesToSave: ['lm_head.weight', 'model.nope.weight'] }, quiet), /LoRA modules_to_save: the model has no weight 'model.nope.weight'/);
      assert.is(model.lora, null);
      assert.is(tf.memory().numTensors, before);
      // An adapter config naming k_proj too: the file has q_proj and v_proj tensors, so reading stops part way.
      const dir = path.join(tmp, 'missing-k');
      await mkdir(dir, { recursive: true });
      const peft = await readJson(path.join(ADAPTER_DIR, 'adapter_config.json'));
      await writeFile(path.join(dir, 'adapter_config.json'), JSON.stringify({ ...peft, target_modules: ['q_proj', 'k_proj', 'v_proj'] }));
      await writeFile(path.join(dir, 'adapter_model.safetensors'), await readFile(path.join(ADAPTER_DIR, 'adapter_model.safetensors')));
      await rejectsWith(() => loadLoraAdapter(model, dir, quiet), /missing tensor base_model\.model\.model\.layers\.0\.self_attn\.k_proj\.lora_A\.weight/);
      assert.is(model.lora, null);
      assert.is(tf.memory().numTensors, before);
    } finally {
      model.dispose();
    }
  });

  test.run();
});

// The pause wrapper: parity with the original wrapper's outputs and losses, greedy ids, the surgery, and its gradients.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import * as tf from '@tensorflow/tfjs-core';
import path from 'node:path';
import { initBackend, readTensor } from '../../../stages/lm/backend.ts';
import type { LmConfig } from '../../../stages/lm/config.ts';
import { createModel, FLOAT32_MIN, type CausalLM } from '../../../stages/lm/model.ts';
import { addPauseToken, PauseLM } from '../../../stages/lm/pause.ts';
import { IGNORE_INDEX } from '../../../stages/lm/types.ts';
import {
  expectedTensors, finiteDiff, FIXTURES, FIXTURES_PRESENT, fixtureModel, greedyCached, greedyFull, largestIndices, maxDiff,
  pauseFixtureModel, readJson, rejectsWith, relDiff, toTf, valuesOf, withFixtures } from '../../helpers/hf-fixtures.ts';
import { backendSuite, forEachBackend } from '../../helpers/backends.ts';

interface PauseExpected {
  loss: number;
  lm_loss: number;
  ctrl_tok_loss: number;
  pause_token_id: number;
  state_dict_names: Record<string, number[]>;
}

let exJson: PauseExpected;

forEachBackend((backend) => {
  const parity = backendSuite('pause: parity with the original wrapper', backend);
  let model: PauseLM;
  let ex: Awaited<ReturnType<typeof expectedTensors>>;

  parity.before(async () => {
    if (!FIXTURES_PRESENT) return;
    model = await pauseFixtureModel();
    ex = await expectedTensors('pause-wrapper');
    exJson = await readJson<PauseExpected>(path.join(FIXTURES, 'pause-wrapper', 'expected.json'));
  });
  parity.after(() => model?.dispose());

  withFixtures(parity)('the wrapper has exactly the reference state dict: names, order and shapes', () => {
    assert.equal([...model.weights.entries()].map(([n, v]) => [n, v.shape]), Object.entries(exJson.state_dict_names));
    assert.is(model.pauseId, exJson.pause_token_id);
  });

  withFixtures(parity)('combined log-probs, LM logits and pause-head logits are within 1e-4; the pause column is float32 min', async () => {
    const outputs = tf.tidy(() => {
      const o = model.pauseForward(toTf(ex.get('input_ids')!));
      return [o.combined, o.lmLogits, o.ctrlLogits];
    });
    const [combined, lm, ctrl] = await Promise.all(outputs.map((t) => readTensor(t)));
    tf.dispose(outputs);
    const V1 = 513;
    const notPause = (i: number) => i % V1 !== 512;
    assert.ok(maxDiff(combined!, ex.get('combined_logprobs')!.data) < 1e-4, `combined ${maxDiff(combined!, ex.get('combined_logprobs')!.data)}`);
    assert.ok(maxDiff(lm!, ex.get('lm_logits')!.data, notPause) < 1e-4, `lm ${maxDiff(lm!, ex.get('lm_logits')!.data, notPause)}`);
    for (let i = 512; i < lm!.length; i += V1) assert.is(lm![i], FLOAT32_MIN);
    assert.ok(maxDiff(ctrl!, ex.get('ctrl_logits')!.data) < 1e-4, `ctrl ${maxDiff(ctrl!, ex.get('ctrl_logits')!.data)}`);
  });

  withFixtures(parity)('loss, lm_loss and ctrl_tok_loss (labels = input_ids) are within 1e-5 relative', async () => {
    const [loss, lm, ctrl] = await valuesOf(() => {
      const ids = toTf<tf.Tensor2D>(ex.get('input_ids')!);
      const parts = model.lossParts({ inputIds: ids, attentionMask: tf.onesLike(ids), labels: ids }, { training: false });
      return tf.stack([parts.loss, parts.lmLoss!, parts.ctrlLoss!]);
    });
    assert.ok(relDiff(loss!, exJson.loss) < 1e-5, `loss ${loss} vs ${exJson.loss}`);
    assert.ok(relDiff(lm!, exJson.lm_loss) < 1e-5, `lm_loss ${lm} vs ${exJson.lm_loss}`);
    assert.ok(relDiff(ctrl!, exJson.ctrl_tok_loss) < 1e-5, `ctrl_tok_loss ${ctrl} vs ${exJson.ctrl_tok_loss}`);
  });

  withFixtures(parity)('greedy ids over the combined log-probs are identical, with full forwards and through the KV cache', async () => {
    const prompt = Array.from(ex.get('greedy_prompt')!.data);
    const expected = Array.from(ex.get('greedy_ids')!.data);
    assert.equal(await greedyFull((ids) => model.pauseForward(ids).combined, prompt, 12), expected);
    assert.equal(await greedyCached(model, prompt, 12), expected);
  });

  parity.run();

  const surgery = backendSuite('pause: surgery', backend);
  let base: CausalLM;

  surgery.before(async () => {
    if (!FIXTURES_PRESENT) return;
    base = await fixtureModel('mistral-tiny');
    exJson = await readJson<PauseExpected>(path.join(FIXTURES, 'pause-wrapper', 'expected.json'));
  });
  surgery.after(() => base?.dispose());

  const values = (t: tf.Tensor) => readTensor(t);

  withFixtures(surgery)('wraps mistral-tiny into the reference layout without changing what the LM predicts', async () => {
    const lines: string[] = [];
    const wrapped = await addPauseToken(base, 1, { log: (l) => lines.push(l) });
    try {
      assert.equal([...wrapped.weights.keys()], Object.keys(exJson.state_dict_names));
      assert.equal(wrapped.config.pause, { tokenId: 512, token: '<|pause|>' });
      assert.match(lines[0]!, /pause surgery: token <\|pause\|> = id 512; embedding 512×64 \+ new row/);
      const ids = tf.tensor2d([[0, 5, 9, 33, 100, 7]], [1, 6], 'int32');
      const plain = await valuesOf(() => base.forward(ids));
      const lm = await valuesOf(() => wrapped.pauseForward(ids).lmLogits);
      const dropPause = Float32Array.from(lm).filter((_, i) => i % 513 !== 512);
      assert.ok(maxDiff(plain, dropPause) < 1e-5, `${maxDiff(plain, dropPause)}`);
      ids.dispose();
    } finally {
      wrapped.dispose();
    }
  });

  withFixtures(surgery)('draws the new row from N(0, var(original)), the head row near the mean row, deterministically by seed', async () => {
    const a = await addPauseToken(base, 5, { log: () => {} });
    const b = await addPauseToken(base, 5, { log: () => {} });
    const c = await addPauseToken(base, 6, { log: () => {} });
    try {
      const row = (m: PauseLM) => values(m.variable('language_model.model.embed_tokens.new_embedding.weight'));
      assert.equal(await row(a), await row(b));
      assert.not.equal(await row(a), await row(c));
      const orig = await values(base.variable('model.embed_tokens.weight'));
      const std = (x: ArrayLike<number>) => {
        const arr = Array.from(x);
        const m = arr.reduce((s, v) => s + v, 0) / arr.length;
        return Math.sqrt(arr.reduce((s, v) => s + (v - m) ** 2, 0) / arr.length);
      };
      // 64 draws: the sample std lies within ±30% of the original table's std (0.15) with overwhelming probability.
      assert.ok(Math.abs(std(await row(a)) / std(orig) - 1) < 0.3, `${std(await row(a))} vs ${std(orig)}`);
      const head = await values(a.variable('language_model.lm_head.weight'));
      const orighead = await values(base.variable('lm_head.weight'));
      assert.equal(head.slice(0, 512 * 64), orighead);
      for (let j = 0; j < 64; j++) {
        let mean = 0;
        for (let i = 0; i < 512; i++) mean += orighead[i * 64 + j]! / 512;
        assert.ok(Math.abs(head[512 * 64 + j]! - mean) < 1e-4);
      }
      const ctrl = await values(a.variable('ctrl_tok_clf.weight'));
      assert.ok(ctrl.every((x) => Math.abs(x) <= 1 / 8), 'pause head within ±1/√H');
    } finally {
      a.dispose();
      b.dispose();
      c.dispose();
    }
  });

  withFixtures(surgery)('breaks the tie of a tied model and refuses a second surgery', async () => {
    const tied = await fixtureModel('llama-tiny-tied');
    const wrapped = await addPauseToken(tied, 1, { log: () => {} });
    try {
      assert.is(wrapped.config.tieWordEmbeddings, false);
      const embed = wrapped.variable('language_model.model.embed_tokens.original_embedding.weight');
      const head = wrapped.variable('language_model.lm_head.weight');
      assert.is.not(embed, head);
      assert.equal((await values(head)).slice(0, 512 * 64), await values(embed));
      await rejectsWith(() => addPauseToken(wrapped, 1), /already has a pause token/);
    } finally {
      wrapped.dispose();
      tied.dispose();
    }
  });

  surgery.run();
});

const grads = suite('pause: gradients');

grads.before(async () => {
  await initBackend('wasm');
});

grads('match finite differences; the pause head does not train the body (detached hidden state)', async () => {
  const cfg: LmConfig = {
    modelType: 'llama', vocabSize: 20, hiddenSize: 16, intermediateSize: 24, numLayers: 1, numHeads: 2, numKvHeads: 1, headDim: 8,
    ropeTheta: 10000, rmsNormEps: 1e-6, tieWordEmbeddings: true, maxPositionEmbeddings: 16, initializerRange: 0.4, bosId: 1, eosId: 2, padId: null,
  };
  const plain = createModel(cfg, 11);
  const model = await addPauseToken(plain, 2, { log: () => {} });
  plain.dispose();
  const P = model.pauseId;
  const ids = tf.tensor2d([[1, 5, P, 9, P, 13, 3], [1, 4, 8, P, 12, 6, 7]], [2, 7], 'int32');
  const labels = tf.tensor2d([[IGNORE_INDEX, 5, P, 9, P, 13, 3], [IGNORE_INDEX, IGNORE_INDEX, 8, P, 12, 6, IGNORE_INDEX]], [2, 7], 'int32');
  const batch = { inputIds: ids, attentionMask: tf.onesLike(ids) as tf.Tensor2D, labels };
  // Counted targets: 6 + 4 = 10 for the pause head, of which 3 are pauses, so 7 for the LM head.
  const parts = () => tf.tidy(() => {
    const p = model.lossParts(batch, { training: false });
    return { loss: p.loss.dataSync()[0]!, lmSumOverAll: (p.lmLoss!.dataSync()[0]! * 7) / 10 };
  });
  const vars = model.trainableVariables();
  const { grads: g } = tf.variableGrads(() => model.lossParts(batch, { training: true }).loss, [...vars.values()]);
  let worst = 0;
  const check = (name: string, loss: () => number) => {
    const v = vars.get(name)!;
    const analytic = g[v.name]!.dataSync();
    for (const i of largestIndices(analytic, 3)) {
      const numeric = finiteDiff(v, i, loss);
      worst = Math.max(worst, Math.abs(numeric - analytic[i]!) / (2e-3 + 2e-2 * Math.abs(analytic[i]!)));
    }
    return analytic;
  };
  for (const name of ['ctrl_tok_clf.weight', 'ctrl_tok_clf.bias', 'language_model.lm_head.weight']) check(name, () => parts().loss);
  // The body (embeddings included) sees only the LM part of the loss: Σ nll_lm / #counted positions.
  for (const name of ['language_model.model.layers.0.self_attn.q_proj.weight', 'language_model.model.layers.0.mlp.up_proj.weight',
    'language_model.model.embed_tokens.new_embedding.weight', 'language_model.model.norm.weight']) check(name, () => parts().lmSumOverAll);
  const pauseRow = g[vars.get('language_model.lm_head.weight')!.name]!.dataSync().slice(20 * 16);
  assert.ok(pauseRow.every((x) => x === 0), 'the masked pause column gets no gradient');
  tf.dispose([ids, labels, batch.attentionMask, ...Object.values(g)]);
  model.dispose();
  assert.ok(worst <= 1, `worst normalised gradient error ${worst}`);
});

grads.run();

// Freezing: the 18 unfreezing variants train exactly the reference's parameters (counts and names), and the count table.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import * as tf from '@tensorflow/tfjs-core';
import { initBackend } from '../../../stages/lm/backend.ts';
import { configureTraining, trainableSummary, type TrainableGroup } from '../../../stages/lm/freeze.ts';
import { mergeLora } from '../../../stages/lm/lora.ts';
import { fixtureModel, pauseFixtureModel, trainableCounts, type TrainableCountsVariant, withFixtures } from '../../helpers/hf-fixtures.ts';

/** The groups a variant of the seed's matrix unfreezes. */
function groupsOf(v: TrainableCountsVariant): TrainableGroup[] {
  const groups: TrainableGroup[] = [];
  if (v.pause_embedding) groups.push('pauseEmbedding');
  if (v.pause_head) groups.push('pauseHead');
  if (v.lm !== 'none') groups.push('lmHead');
  if (v.lm === 'lm_head+embed') groups.push('lmEmbeddings');
  return groups;
}

const quiet = () => {};
const test = suite('freeze');

test.before(async () => {
  await initBackend('wasm');
});

withFixtures(test)('all 18 variants train exactly the reference parameters: counts, totals and names', async () => {
  const variants = await trainableCounts();
  assert.is(variants.length, 18);
  for (const v of variants) {
    const model = await pauseFixtureModel();
    try {
      configureTraining(model, { groups: groupsOf(v), lora: v.lora ? { rank: 16, alpha: 32, dropout: 0.05, targetModules: ['q_proj', 'v_proj'] } : null }, quiet);
      const summary = trainableSummary(model, quiet);
      const label = JSON.stringify([v.pause_embedding, v.pause_head, v.lm, v.lora]);
      assert.is(summary.trainable, v.trainable, `${label} trainable`);
      assert.is(summary.total, v.total, `${label} total`);
      assert.equal(summary.names, [...v.trainable_names].sort(), `${label} names`);
      const vars = model.trainableVariables();
      assert.is([...vars.values()].reduce((n, t) => n + t.size, 0), v.trainable);
    } finally {
      model.dispose();
    }
  }
});

withFixtures(test)('the table counts trainable and frozen parameters per group', async () => {
  const model = await pauseFixtureModel();
  try {
    const lines: string[] = [];
    configureTraining(model, { groups: ['pauseHead', 'lmHead'], lora: { rank: 16, alpha: 32 } }, (l) => lines.push(l));
    lines.length = 0;
    const summary = trainableSummary(model, (l) => lines.push(l));
    assert.equal(summary.rows, [
      { group: 'pause embedding', trainable: 0, frozen: 64 },
      { group: 'pause head', trainable: 130, frozen: 130 },
      { group: 'LM head', trainable: 32832, frozen: 32832 },
      { group: 'LM embeddings', trainable: 0, frozen: 32768 },
      { group: 'LoRA adapters', trainable: 7168, frozen: 0 },
      { group: 'rest of the model', trainable: 0, frozen: 92480 },
    ]);
    assert.is(lines[0], 'group                 trainable        frozen');
    assert.is(lines[2], 'pause head                  130           130');
    assert.is(lines.at(-1), 'total                    40,130       158,274  (20.23% of 198,404 parameters)');
  } finally {
    model.dispose();
  }
});

withFixtures(test)('without LoRA the groups train in place and the variables carry the trainable flag', async () => {
  const model = await pauseFixtureModel();
  try {
    configureTraining(model, { groups: ['pauseEmbedding'] }, quiet);
    const vars = model.trainableVariables();
    assert.equal([...vars.keys()], ['language_model.model.embed_tokens.new_embedding.weight']);
    assert.ok(vars.get('language_model.model.embed_tokens.new_embedding.weight') === model.weights.get('language_model.model.embed_tokens.new_embedding.weight'));
    assert.is(model.variable('ctrl_tok_clf.weight').trainable, false);
    assert.is(model.variable('language_model.model.embed_tokens.new_embedding.weight').trainable, true);
    configureTraining(model, { groups: 'all' }, quiet);
    assert.is(model.trainableVariables().size, model.weights.size);
  } finally {
    model.dispose();
  }
});

withFixtures(test)('with LoRA the groups train as copies; merging writes the copies back', async () => {
  const model = await pauseFixtureModel();
  try {
    configureTraining(model, { groups: ['pauseHead'], lora: { rank: 2, alpha: 4 } }, quiet);
    const copy = model.trainableVariables().get('base_model.model.ctrl_tok_clf.modules_to_save.default.bias')!;
    assert.ok(copy !== model.weights.get('ctrl_tok_clf.bias'));
    copy.assign(tf.tensor1d([3, -3]));
    assert.equal(Array.from(model.variable('ctrl_tok_clf.bias').dataSync()).map((x) => Math.abs(x) < 0.2), [true, true], 'the original is untouched');
    // The same setup again (a resumed run) is accepted; another one is not.
    configureTraining(model, { groups: ['pauseHead'], lora: { rank: 2, alpha: 4 } }, quiet);
    assert.throws(() => configureTraining(model, { groups: ['lmHead'], lora: { rank: 2, alpha: 4 } }, quiet), /already carries LoRA .* differs from the requested setup/);
    assert.throws(() => configureTraining(model, { groups: ['pauseHead'] }, quiet), /carries LoRA adapters; pass the LoRA settings, or merge them first/);
    mergeLora(model, quiet);
    assert.equal(Array.from(model.variable('ctrl_tok_clf.bias').dataSync()), [3, -3]);
  } finally {
    model.dispose();
  }
});

withFixtures(test)('groups that do not fit the model are errors', async () => {
  const plain = await fixtureModel('mistral-tiny');
  const tied = await fixtureModel('llama-tiny-tied');
  try {
    assert.throws(() => configureTraining(plain, { groups: ['pauseHead'] }, quiet), /trainable group 'pauseHead' needs a pause-wrapped model/);
    assert.throws(() => configureTraining(tied, { groups: ['lmHead'] }, quiet), /LM head is tied to the input embeddings on this model; use 'lmEmbeddings'/);
    assert.throws(() => configureTraining(plain, { groups: ['lmHeads' as TrainableGroup] }, quiet), /unknown trainable group 'lmHeads'/);
    configureTraining(plain, { groups: ['lmHead', 'lmEmbeddings'] }, quiet);
    assert.equal([...plain.trainableVariables().keys()], ['model.embed_tokens.weight', 'lm_head.weight']);
  } finally {
    plain.dispose();
    tied.dispose();
  }
});

test.run();

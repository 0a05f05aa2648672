// pipelines/warmup.pipe: the seed experiment's exact matrix, hyperparameters, fidelity settings and wiring, and what each variant trains (through sft's own code).
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import type { JsonValue } from '../../runtime/json.ts';
import type { Pipeline, StageInstance } from '../../runtime/pipeline.ts';
import { initBackend } from '../../stages/lm/backend.ts';
import { configureTraining, trainableSummary, trainedGroups } from '../../stages/lm/freeze.ts';
import { trainingSetup, type SftParams } from '../../stages/sft.ts';
import { fixtureModel, pauseFixtureModel, trainableCounts } from '../helpers/hf-fixtures.ts';
import { inputsOf, instancesOf, loadProjectPipeline, objectParam, stageNamed } from './pipeline-files.ts';
import { SHARED, withShared } from '../helpers/requires.ts';

const test = suite('warmup.pipe');

let pipeline: Pipeline;
test.before(async () => {
  pipeline = await loadProjectPipeline('warmup.pipe');
});

/** The 18 labels in the order the seed's table lists its factors: pause groups, then LM groups, then LoRA. */
const LABELS = [
  'pause=embed+head,lm=none,lora=false',
  'pause=embed+head,lm=none,lora=true',
  'pause=embed+head,lm=lm_head,lora=false',
  'pause=embed+head,lm=lm_head,lora=true',
  'pause=embed+head,lm=lm_head+embed,lora=false',
  'pause=embed+head,lm=lm_head+embed,lora=true',
  'pause=embed,lm=none,lora=false',
  'pause=embed,lm=none,lora=true',
  'pause=embed,lm=lm_head,lora=false',
  'pause=embed,lm=lm_head,lora=true',
  'pause=embed,lm=lm_head+embed,lora=false',
  'pause=embed,lm=lm_head+embed,lora=true',
  'pause=head,lm=none,lora=false',
  'pause=head,lm=none,lora=true',
  'pause=head,lm=lm_head,lora=false',
  'pause=head,lm=lm_head,lora=true',
  'pause=head,lm=lm_head+embed,lora=false',
  'pause=head,lm=lm_head+embed,lora=true',
];
/** sft_fr_pembed_unfr_lm_head_embed_peft.yaml as the seed wrote it, beside its generated twin. */
const SEED_CONFIG = 'pause=head,lm=lm_head+embed,lora=true,config=seed';
const VARIANTS = [...LABELS, SEED_CONFIG];
const SHARED_STAGES = ['gsm8k', 'base', 'step1', 'paused', 'pause_model'];
const BASELINES = ['baseline[baseline_epochs=1]', 'baseline[baseline_epochs=2]'];
const LORA = { r: 16, alpha: 32, dropout: 0.05, target_modules: ['q_proj', 'v_proj'], merge: true, modules_to_save: null };
const NO_GROUPS = { pause_embedding: false, pause_head: false, lm_head: false, lm_embeddings: false, all: false };

test('expands to the shared stages, 18 variants, the seed-config variant and 2 baselines, each evaluated, and one report', () => {
  const names = pipeline.stages.map((s) => s.name);
  assert.equal(instancesOf(pipeline, 'warm').map((s) => s.name), VARIANTS.map((l) => `warm[${l}]`));
  assert.equal(instancesOf(pipeline, 'eval').map((s) => s.name), VARIANTS.map((l) => `eval[${l}]`));
  assert.equal(instancesOf(pipeline, 'baseline').map((s) => s.name), BASELINES);
  assert.equal(instancesOf(pipeline, 'eval_baseline').map((s) => s.name), BASELINES.map((b) => `eval_${b}`));
  assert.equal([...names].sort(), [
    ...SHARED_STAGES, 'report',
    ...VARIANTS.flatMap((l) => [`warm[${l}]`, `eval[${l}]`]),
    ...BASELINES.flatMap((b) => [b, `eval_${b}`]),
  ].sort());
  assert.is(names.length, 6 + 19 * 2 + 2 * 2);
});

test('the stages are wired as the seed: step 1 and the baselines on GSM8K, surgery on step 1, variants on the pause data', () => {
  assert.equal(inputsOf(stageNamed(pipeline, 'step1')), { model: ['base'], data: ['gsm8k'] });
  assert.equal(inputsOf(stageNamed(pipeline, 'paused')), { data: ['gsm8k'], tokenizer: ['base'] });
  assert.equal(inputsOf(stageNamed(pipeline, 'pause_model')), { model: ['step1'] });
  for (const l of VARIANTS) {
    assert.equal(inputsOf(stageNamed(pipeline, `warm[${l}]`)), { model: ['pause_model'], data: ['paused'] });
    assert.equal(inputsOf(stageNamed(pipeline, `eval[${l}]`)), { model: [`warm[${l}]`], data: ['paused'] });
  }
  for (const b of BASELINES) {
    assert.equal(inputsOf(stageNamed(pipeline, b)), { model: ['base'], data: ['gsm8k'] });
    assert.equal(inputsOf(stageNamed(pipeline, `eval_${b}`)), { model: [b], data: ['gsm8k'] });
  }
  assert.equal(inputsOf(stageNamed(pipeline, 'report')), {
    runs: VARIANTS.map((l) => `eval[${l}]`),
    baselines: BASELINES.map((b) => `eval_${b}`),
  });
  assert.is(stageNamed(pipeline, 'report').params.baseline, 'baseline_epochs=1');
});

test('the defaults point at the shared GSM8K and the tiny fixture checkpoint', () => {
  assert.equal(stageNamed(pipeline, 'gsm8k').params, {
    path: '../shared/data/gsm8k', val_fraction: 0.1, seed: 42, limit_train: null, limit_test: null, download: false,
    download_url: 'https://raw.githubusercontent.com/openai/grade-school-math/master/grade_school_math/data',
  });
  const base = stageNamed(pipeline, 'base').params;
  assert.is(base.path, '../shared/fixtures/hf/mistral-tiny');
  assert.is(base.tokenizer, '../shared/fixtures/hf/tokenizer-bytelevel.json');
});

/** The TrainingArguments every sft of the seed shares (batch 8, lr 5e-5, linear, no warmup, clip 1.0, seed 42, 600 tokens). */
function assertSeedArguments(s: StageInstance, epochs: number, evalSteps: number): void {
  const p = s.params;
  assert.equal(
    { batch_size: p.batch_size, grad_accum: p.grad_accum, lr: p.lr, epochs: p.epochs, max_steps: p.max_steps, warmup: p.warmup, weight_decay: p.weight_decay, max_grad_norm: p.max_grad_norm, eval_steps: p.eval_steps, max_length: p.max_length, seed: p.seed },
    { batch_size: 8, grad_accum: 1, lr: 5e-5, epochs, max_steps: null, warmup: 0, weight_decay: 0, max_grad_norm: 1, eval_steps: evalSteps, max_length: 600, seed: 42 },
    s.name,
  );
}

test('every fine-tuning run has the original hyperparameters', () => {
  assertSeedArguments(stageNamed(pipeline, 'step1'), 1, 100);
  for (const s of instancesOf(pipeline, 'warm')) assertSeedArguments(s, 1, 500);
  assertSeedArguments(stageNamed(pipeline, BASELINES[0]!), 1, 100);
  assertSeedArguments(stageNamed(pipeline, BASELINES[1]!), 2, 100);
});

test('the 1-epoch baseline is step 1 itself (same params and inputs, so the same key); the 2-epoch one differs only in epochs', () => {
  const step1 = stageNamed(pipeline, 'step1');
  const [one, two] = BASELINES.map((b) => stageNamed(pipeline, b));
  assert.equal(one!.params, step1.params);
  assert.equal(inputsOf(one!), inputsOf(step1));
  assert.equal({ ...two!.params, epochs: 1 }, step1.params);
  assert.equal(inputsOf(two!), inputsOf(step1));
});

/** The step-2 LoRA variants whose YAML merged the adapter before testing (merge_peft_after_train: true). */
const MERGED_IN_THE_SEED = [
  'pause=embed+head,lm=none,lora=true', // sft_peft.yaml
  'pause=embed,lm=none,lora=true', // sft_fr_phead_peft.yaml
  'pause=embed+head,lm=lm_head,lora=true', // sft_unfr_lm_head_peft.yaml
  'pause=embed+head,lm=lm_head+embed,lora=true', // sft_unfr_lm_head_embed_peft.yaml
];

test('warmup.pipe states every fidelity setting, each as the seed ran', () => {
  const sft = [stageNamed(pipeline, 'step1'), ...instancesOf(pipeline, 'warm'), ...instancesOf(pipeline, 'baseline')];
  assert.is(sft.length, 1 + 19 + 2);
  for (const s of sft) {
    // Pure bfloat16 training (torch_dtype bfloat16, bf16: False); no evaluation after the final partial window.
    assert.equal({ precision: s.params.precision, eval_at_end: s.params.eval_at_end }, { precision: 'bf16', eval_at_end: false }, s.name);
  }
  // The split after injecting pauses, 90/10 over the pooled rows.
  assert.is(stageNamed(pipeline, 'paused').params.val_fraction, 0.1);
  // transformers' max_length over the left-padded batch.
  for (const s of [...instancesOf(pipeline, 'eval'), ...instancesOf(pipeline, 'eval_baseline')]) assert.is(s.params.max_length_counts, 'padded_batch', s.name);
  // The seed's own modules_to_save for its flawed variant; every generated variant derives them from `train`.
  for (const s of instancesOf(pipeline, 'warm')) {
    const lora = s.params.lora === null ? null : objectParam(s, 'lora');
    const seed = s.name === `warm[${SEED_CONFIG}]`;
    assert.equal(lora?.modules_to_save ?? null, seed ? ['new_embedding', 'lm_head', 'original_embedding'] : null, s.name);
    if (lora) assert.is(lora.merge, MERGED_IN_THE_SEED.some((l) => s.name === `warm[${l}]`), `${s.name} merge`);
  }
  // The seed-config variant is its generated twin in everything but modules_to_save and the label.
  const twin = stageNamed(pipeline, 'warm[pause=head,lm=lm_head+embed,lora=true]').params;
  const seed = stageNamed(pipeline, `warm[${SEED_CONFIG}]`).params;
  assert.equal({ ...seed, lora: { ...objectParam(stageNamed(pipeline, `warm[${SEED_CONFIG}]`), 'lora'), modules_to_save: null } }, twin);
});

test('step 1 and the baselines train LoRA only (r 16, alpha 32, dropout 0.05, q_proj and v_proj), merged', () => {
  for (const name of ['step1', ...BASELINES]) {
    const s = stageNamed(pipeline, name);
    assert.equal(s.params.lora, LORA, name);
    assert.equal(s.params.train, NO_GROUPS, name);
  }
});

test('the pause injection is the seed\'s: 10 random pauses, variable, 5 samples, seed 42, no patterns', () => {
  const p = stageNamed(pipeline, 'paused').params;
  assert.equal(
    { pause_token: p.pause_token, patterns: p.patterns, n_random_pauses: p.n_random_pauses, variable: p.variable, samples_per_example: p.samples_per_example, seed: p.seed, column: p.column, splits: p.splits },
    { pause_token: '<|pause|>', patterns: {}, n_random_pauses: 10, variable: true, samples_per_example: 5, seed: 42, column: 'answer', splits: ['train', 'validation'] },
  );
  assert.equal(stageNamed(pipeline, 'pause_model').params, { token: '<|pause|>', seed: 42 });
});

test('every evaluation generates greedily up to 1024 tokens in batches of 8', () => {
  for (const s of [...instancesOf(pipeline, 'eval'), ...instancesOf(pipeline, 'eval_baseline')]) {
    const p = s.params;
    assert.equal(
      { max_new_tokens: p.max_new_tokens, max_length: p.max_length, batch_size: p.batch_size, limit: p.limit, temperature: p.temperature, loss_max_length: p.loss_max_length },
      { max_new_tokens: 1024, max_length: 1024, batch_size: 8, limit: null, temperature: 0, loss_max_length: 600 },
      s.name,
    );
  }
});

function fixtureKey(v: { pause_embedding: JsonValue; pause_head: JsonValue; lm: string; lora: boolean }): string {
  return JSON.stringify([v.pause_embedding, v.pause_head, v.lm, v.lora]);
}

const quiet = () => {};

withShared(test)('each variant trains exactly the reference parameters on the pause-wrapper fixture (counts and names)', async () => {
  await initBackend('wasm');
  const expected = new Map((await trainableCounts()).map((v) => [fixtureKey(v), v]));
  const seen = new Set<string>();
  for (const s of instancesOf(pipeline, 'warm').filter((x) => x.name !== `warm[${SEED_CONFIG}]`)) {
    const t = objectParam(s, 'train');
    const key = fixtureKey({
      pause_embedding: t.pause_embedding!, pause_head: t.pause_head!,
      lm: t.lm_embeddings ? 'lm_head+embed' : t.lm_head ? 'lm_head' : 'none', lora: s.params.lora !== null,
    });
    const want = expected.get(key);
    assert.ok(want, `${s.name}: no fixture row ${key}`);
    assert.not.ok(seen.has(key), `${s.name}: a second variant trains ${key}`);
    seen.add(key);
    const model = await pauseFixtureModel();
    try {
      configureTraining(model, trainingSetup(s.params as unknown as SftParams, model.hasPause, quiet), quiet);
      const summary = trainableSummary(model, quiet);
      assert.is(summary.trainable, want!.trainable, `${s.name} trainable`);
      assert.is(summary.total, want!.total, `${s.name} total`);
      assert.equal(summary.names, [...want!.trainable_names].sort(), `${s.name} names`);
    } finally {
      model.dispose();
    }
  }
  assert.is(seen.size, 18);
});

withShared(test)('the seed-config variant trains what the seed\'s flawed YAML trained: the frozen-head variant\'s parameters, not its twin\'s', async () => {
  await initBackend('wasm');
  const counts = await trainableCounts();
  const frozenHead = counts.find((v) => v.pause_embedding && !v.pause_head && v.lm === 'lm_head+embed' && v.lora)!;
  const model = await pauseFixtureModel();
  try {
    const s = stageNamed(pipeline, `warm[${SEED_CONFIG}]`);
    configureTraining(model, trainingSetup(s.params as unknown as SftParams, model.hasPause, quiet), quiet);
    assert.equal(trainableSummary(model, quiet).names, [...frozenHead.trainable_names].sort());
    assert.equal(trainedGroups(model), ['pauseEmbedding', 'lmHead', 'lmEmbeddings']);
  } finally {
    model.dispose();
  }
});

withShared(test)('step 1 trains only the LoRA matrices of q_proj and v_proj on the plain fixture model', async () => {
  await initBackend('wasm');
  const model = await fixtureModel('mistral-tiny');
  try {
    configureTraining(model, trainingSetup(stageNamed(pipeline, 'step1').params as unknown as SftParams, model.hasPause, quiet), quiet);
    const { names, trainable } = trainableSummary(model, quiet);
    assert.equal(names, [0, 1].flatMap((i) => ['q_proj', 'v_proj'].flatMap((m) => ['A', 'B'].map((ab) =>
      `base_model.model.model.layers.${i}.self_attn.${m}.lora_${ab}.default.weight`))));
    // r 16 on 2 layers: q_proj 64→64 and v_proj 64→32 (2 KV heads of 16), A is r×in and B is out×r.
    assert.is(trainable, 2 * (16 * 64 + 64 * 16 + 16 * 64 + 32 * 16));
  } finally {
    model.dispose();
  }
});

/** The variant a seed YAML name stands for: `fr_phead` freezes the pause head, `fr_pembed` the pause embedding. */
function seedVariant(yaml: string): Record<string, JsonValue> {
  if (yaml.startsWith('baseline')) return { baseline_epochs: Number(/(\d) epoch/.exec(yaml)![1]) };
  const pause = yaml.includes('fr_phead') ? 'embed' : yaml.includes('fr_pembed') ? 'head' : 'embed+head';
  const lm = yaml.includes('unfr_lm_head_embed') ? 'lm_head+embed' : yaml.includes('unfr_lm_head') ? 'lm_head' : 'none';
  const variant: Record<string, JsonValue> = { pause, lm, lora: yaml.includes('peft') };
  // The one YAML with the flawed modules_to_save: its row belongs to the variant that reproduces it as written.
  return yaml.startsWith('sft_fr_pembed_unfr_lm_head_embed_peft') ? { ...variant, config: 'seed' } : variant;
}

withShared(test)("the report shows the seed's results table: each of the 20 rows of experiments.md beside its variant", async () => {
  const text = await readFile(path.join(SHARED, 'seed/experiments.md'), 'utf8');
  const results = text.slice(text.indexOf('### Results'));
  const seed = results.split('\n').filter((l) => /^\| (sft|baseline)/.test(l)).map((l) => {
    const [yaml, accuracy, loss] = l.split('|').slice(1, 4).map((c) => c.trim().replaceAll('*', ''));
    return { match: seedVariant(yaml!), accuracy: Number(accuracy), eval_loss: loss === '-' ? null : Number(loss) };
  });
  assert.is(seed.length, 20);
  const reference = objectParam(stageNamed(pipeline, 'report'), 'reference');
  const rows = (reference.rows as Record<string, JsonValue>[]).map((r) => ({ match: r.match, accuracy: r.accuracy, eval_loss: r.eval_loss }));
  assert.equal(rows, seed);
  // Each row applies to exactly one variant or baseline (its loop variables include the row's `match`); the only
  // variant without a seed number is the corrected twin of the flawed config, which the seed never ran.
  const variants = instancesOf(pipeline, 'eval').concat(instancesOf(pipeline, 'eval_baseline')).map((s) => s.variant);
  const applies = (v: Record<string, JsonValue>, match: JsonValue) => Object.entries(match as Record<string, JsonValue>).every(([k, x]) => v[k] === x);
  for (const r of rows) assert.is(variants.filter((v) => applies(v, r.match)).length, 1, JSON.stringify(r.match));
  assert.equal(variants.filter((v) => !rows.some((r) => applies(v, r.match))), [{ pause: 'head', lm: 'lm_head+embed', lora: true, config: 'generated' }]);
});

test.run();

// pipelines/demo.pipe: the README's default run keeps the seed's structure and fits its own data and model.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import type { Pipeline, StageInstance } from '../../runtime/pipeline.ts';
import { promptText, trainingText } from '../../stages/lm/collate.ts';
import { builtinTokenizer } from '../../stages/lm/tokenizer.ts';
import { generateSyntheticMath, type SyntheticMathParams } from '../../stages/synthetic-math.ts';
import { inputsOf, instancesOf, loadProjectPipeline, objectParam, stageNamed } from './pipeline-files.ts';

const test = suite('demo.pipe');

let pipeline: Pipeline;
test.before(async () => {
  pipeline = await loadProjectPipeline('demo.pipe');
});

const VARIANTS = [
  'warm[pause=embed+head,lora=false]',
  'warm[pause=embed+head,lora=true]',
  'warm[pause=embed,lora=false]',
  'warm[pause=embed,lora=true]',
  'warm[pause=head,lora=false]',
  'warm[pause=head,lora=true]',
];
const BASELINE = 'more[baseline=no pauses]';

test('has 6 variants of the warm-up, a baseline and a report over all their evaluations', () => {
  assert.equal(instancesOf(pipeline, 'warm').map((s) => s.name), VARIANTS);
  for (const name of VARIANTS) {
    assert.equal(inputsOf(stageNamed(pipeline, name)), { model: ['pause_model'], data: ['paused'] });
    assert.equal(inputsOf(stageNamed(pipeline, name.replace(/^warm/, 'eval'))), { model: [name], data: ['paused'] });
  }
  assert.equal(inputsOf(stageNamed(pipeline, BASELINE)), { model: ['step1'], data: ['data'] });
  assert.equal(inputsOf(stageNamed(pipeline, 'eval_baseline[baseline=no pauses]')), { model: [BASELINE], data: ['data'] });
  assert.equal(inputsOf(stageNamed(pipeline, 'report')), {
    start: ['eval_step1'],
    runs: VARIANTS.map((v) => v.replace(/^warm/, 'eval')),
    baselines: ['eval_baseline[baseline=no pauses]'],
  });
  assert.is(stageNamed(pipeline, 'report').params.baseline, 'baseline=no pauses');
});

test('the variants include frozen-pause-head ones: the pause embedding trains, the pause head stays random', () => {
  const frozenHead = instancesOf(pipeline, 'warm').filter((s) => {
    const t = objectParam(s, 'train');
    return t.pause_embedding === true && t.pause_head === false;
  });
  assert.equal(frozenHead.map((s) => s.name), ['warm[pause=embed,lora=false]', 'warm[pause=embed,lora=true]']);
  const trains = (s: StageInstance) => {
    const t = objectParam(s, 'train');
    return [t.pause_embedding, t.pause_head, t.lm_head, t.lm_embeddings, t.all, s.params.lora !== null];
  };
  assert.equal(instancesOf(pipeline, 'warm').map(trains), [
    [true, true, false, false, false, false],
    [true, true, false, false, false, true],
    [true, false, false, false, false, false],
    [true, false, false, false, false, true],
    [false, true, false, false, false, false],
    [false, true, false, false, false, true],
  ]);
});

test('step 1 trains every weight of a from-scratch model with the built-in tokenizer, and is evaluated', () => {
  const base = stageNamed(pipeline, 'base').params;
  assert.is(base.path, null);
  assert.is(base.tokenizer, null);
  assert.equal(objectParam(stageNamed(pipeline, 'step1'), 'train').all, true);
  assert.is(stageNamed(pipeline, 'step1').params.lora, null);
  assert.equal(inputsOf(stageNamed(pipeline, 'step1')), { model: ['base'], data: ['data'] });
  assert.equal(inputsOf(stageNamed(pipeline, 'eval_step1')), { model: ['step1'], data: ['data'] });
  assert.equal(inputsOf(stageNamed(pipeline, 'paused')), { data: ['data'], tokenizer: ['base'] });
  assert.equal(inputsOf(stageNamed(pipeline, 'pause_model')), { model: ['step1'] });
});

test('every sequence fits: no training example is cut, and every answer fits the generation budget', () => {
  const data = generateSyntheticMath(stageNamed(pipeline, 'data').params as unknown as SyntheticMathParams);
  const tokenizer = builtinTokenizer();
  const longest = (texts: string[]) => Math.max(...texts.map((t) => tokenizer.encode(t).length));
  const rows = [...data.train, ...data.validation, ...data.test];
  const pauses = stageNamed(pipeline, 'paused').params.n_random_pauses as number;
  // +1 for the end-of-sequence token; the paused copies carry up to `pauses` more tokens.
  const longestTraining = longest(rows.map(trainingText)) + 1 + pauses;
  const longestAnswer = longest(data.test.map((r) => r.answer)) + 1;
  const longestPrompt = longest(data.test.map((r) => promptText(r.question)));
  const positions = objectParam(stageNamed(pipeline, 'base'), 'overrides').max_position_embeddings as number;
  for (const s of pipeline.stages.filter((x) => x.kind === 'sft')) {
    assert.ok(longestTraining <= (s.params.max_length as number), `${s.name}: max_length ${s.params.max_length} < ${longestTraining}`);
    assert.ok((s.params.max_length as number) <= positions, `${s.name}: max_length beyond the model's ${positions} positions`);
  }
  for (const s of pipeline.stages.filter((x) => x.kind === 'evaluate')) {
    const p = s.params as { max_new_tokens: number; max_length: number; loss_max_length: number };
    assert.ok(p.max_new_tokens >= longestAnswer, `${s.name}: max_new_tokens ${p.max_new_tokens} < ${longestAnswer}`);
    assert.ok(longestPrompt + p.max_new_tokens <= p.max_length, `${s.name}: prompt + answer budget beyond max_length`);
    assert.ok(p.max_length <= positions && p.loss_max_length >= longestTraining, s.name);
  }
});

test.run();

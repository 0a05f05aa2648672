// pipelines/demo.pipe through the pure scheduler on 2 slots: each variant is evaluated as soon as its warm-up ends.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import type { Pipeline } from '../../runtime/pipeline.ts';
import { STAGE_KINDS } from '../../stages/index.ts';
import { simulate } from '../helpers/schedule.ts';
import { loadProjectPipeline } from './pipeline-files.ts';

const test = suite('demo.pipe schedule');

let pipeline: Pipeline;
test.before(async () => {
  pipeline = await loadProjectPipeline('demo.pipe');
});

/** Relative durations: training dominates, evaluation takes half a warm-up, data and surgery are quick. */
function duration(name: string): number {
  if (name === 'step1') return 12;
  if (name.startsWith('warm[') || name.startsWith('more[')) return 4;
  if (name.startsWith('eval')) return 2;
  return 1;
}

test('on 2 CPU slots every eval starts the moment its warm-up ends: the first answer comes after 2 warm-ups, not 6', () => {
  const stages = pipeline.stages.map((s) => ({
    name: s.name,
    upstream: Object.values(s.inputs).flatMap((b) => b.stages),
    status: 'stale' as const,
    resources: () => STAGE_KINDS[s.kind]!.resources?.(s.params) ?? {},
  }));
  const { starts } = simulate(stages, { cpu: 2, gpus: 0 }, duration);
  const at = (name: string) => Number(starts.find((x) => x.startsWith(`${name}@`))!.split('@')[1]);
  const warms = stages.filter((s) => s.name.startsWith('warm[')).map((s) => s.name);
  assert.is(warms.length, 6);
  for (const w of warms) assert.is(at(w.replace('warm[', 'eval[')), at(w) + 4, w);
  assert.equal(starts, [
    'data@0', 'base@0', 'step1@1', 'paused@1', 'eval_step1@13', 'pause_model@13',
    'warm[pause=embed+head,lora=false]@14', 'warm[pause=embed+head,lora=true]@15',
    'eval[pause=embed+head,lora=false]@18', 'eval[pause=embed+head,lora=true]@19',
    'warm[pause=embed,lora=false]@20', 'warm[pause=embed,lora=true]@21',
    'eval[pause=embed,lora=false]@24', 'eval[pause=embed,lora=true]@25',
    'warm[pause=head,lora=false]@26', 'warm[pause=head,lora=true]@27',
    'eval[pause=head,lora=false]@30', 'eval[pause=head,lora=true]@31',
    'more[baseline=no pauses]@32', 'eval_baseline[baseline=no pauses]@36', 'report@38',
  ]);
});

test.run();

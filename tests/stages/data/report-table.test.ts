import { test } from 'uvu';
import * as assert from 'uvu/assert';
import path from 'node:path';
import type { JsonValue } from '../../../runtime/json.ts';
import { artifactDirOf, cacheRootOf, csvTable, formatTrainable, showPath, variantLabel, type ReportRow } from '../../../stages/data/report-table.ts';

test('the cache root is found from an artifact folder in the cache layout', () => {
  const root = path.resolve('/ws/.pausepipe');
  assert.is(cacheRootOf(path.join(root, 'objects/ab/abcdef/artifacts'), 'abcdef'), root);
  assert.is(artifactDirOf(root, '12ffee'), path.join(root, 'objects/12/12ffee/artifacts'));
});

test('a folder outside the cache layout gives no root', () => {
  assert.is(cacheRootOf('/tmp/somewhere/artifacts', 'abcdef'), null);
  assert.is(cacheRootOf('/ws/.pausepipe/objects/ab/other/artifacts', 'abcdef'), null);
  assert.is(cacheRootOf('/ws/.pausepipe/objects/ab/abcdef/out', 'abcdef'), null);
});

test('paths inside the workspace are shown relative, others absolute', () => {
  assert.is(showPath('/ws', '/ws/.pausepipe/objects/x'), '.pausepipe/objects/x');
  assert.is(showPath('/ws', '/elsewhere/x'), '/elsewhere/x');
  assert.is(showPath('/ws', '/ws'), '/ws');
});

test('a variant label lists the loop variables; outside a loop it is the stage name', () => {
  assert.is(variantLabel({ stage: 'eval[a=1,b=x]', variant: { a: 1, b: 'x', c: true } }), 'a=1, b=x, c=true');
  assert.is(variantLabel({ stage: 'eval_base', variant: {} }), 'eval_base');
});

test('CSV fields with commas, quotes or newlines are quoted, nulls empty', () => {
  const row: ReportRow = {
    label: 'say "hi", twice', stage: 's', role: 'run', variant: {}, trainable: null, lora: null, trainable_params: null, total_params: null,
    modules_to_save: null, accuracy: 0.1, accuracy_std: 0.3, n: 10, eval_loss: null, eval_loss_data: null, eval_loss_data_key: null, eval_loss_rows: null,
    avg_pauses: 0, backend: 'wasm (SIMD, 1 thread)', reference_accuracy: null, reference_eval_loss: null, reference_note: null,
    predictions: 'p', model_stage: 'm', model_key: 'k', model_dir: null, delta_accuracy: null,
  };
  assert.is(csvTable([row]).split('\r\n')[1], '"say ""hi"", twice",s,run,,,,,"wasm (SIMD, 1 thread)",0.1,0.3,10,,,,,,,0,p,m,k,,');
});

test('each loop variable is a CSV column of its own, empty on rows outside its loop', () => {
  const row = (label: string, variant: Record<string, JsonValue>): ReportRow => ({
    label, stage: label, role: 'run', variant, trainable: null, lora: true, trainable_params: null, total_params: null,
    modules_to_save: null, accuracy: 0.5, accuracy_std: 0.5, n: 10, eval_loss: null, eval_loss_data: null, eval_loss_data_key: null, eval_loss_rows: null,
    avg_pauses: 0, backend: null, reference_accuracy: null, reference_eval_loss: null, reference_note: null,
    predictions: 'p', model_stage: 'm', model_key: 'k', model_dir: null, delta_accuracy: null,
  });
  const lines = csvTable([
    row('start', {}),
    row('a', { lr: 0.0001, lora: false, pause: 'embed+head', r: [8, 16] }),
    row('b', { lr: 0.0003, lora: true, pause: 'a, "b"', r: null }),
  ]).split('\r\n');
  assert.is(lines[0]!.split(',').slice(0, 8).join(','), 'label,stage,role,variant.lr,variant.lora,variant.pause,variant.r,trainable');
  const rest = ',,true,,,,0.5,0.5,10,,,,,,,0,p,m,k,,';
  assert.equal(lines.slice(1), [
    `start,start,run,,,,${rest}`,
    `a,a,run,0.0001,false,embed+head,"[8,16]"${rest}`,
    `b,b,run,0.0003,true,"a, ""b""",${rest}`,
    '',
  ]);
});

test('a variant trained with an explicit modules_to_save (a seed config) is marked in the table and the CSV', () => {
  const row: ReportRow = {
    label: 'seed config', stage: 'eval_seed', role: 'run', variant: {}, trainable: ['pauseEmbedding', 'lmHead', 'lmEmbeddings'], lora: true,
    trainable_params: 10, total_params: 100, modules_to_save: ['new_embedding', 'lm_head', 'original_embedding'], accuracy: 0.01,
    accuracy_std: 0.1, n: 100, eval_loss: 2.4, eval_loss_data: null, eval_loss_data_key: null, eval_loss_rows: null, avg_pauses: 60,
    backend: null, reference_accuracy: null, reference_eval_loss: null, reference_note: null,
    predictions: 'p', model_stage: 'm', model_key: 'k', model_dir: null, delta_accuracy: null,
  };
  assert.is(formatTrainable(row), 'pauseEmbedding + lmHead + lmEmbeddings (seed config: modules_to_save new_embedding, lm_head, original_embedding)');
  assert.is(formatTrainable({ ...row, modules_to_save: null }), 'pauseEmbedding + lmHead + lmEmbeddings');
  assert.match(csvTable([row]).split('\r\n')[1]!, /,new_embedding\+lm_head\+original_embedding$/);
});

test.run();

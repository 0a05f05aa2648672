// stages/lm/gpu-settings.ts: the GPU kernel variables, their defaults and the errors that name them.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { decodeLookahead, gpuChoice, gpuSettingErrors } from '../../../stages/lm/gpu-settings.ts';

test('each choice defaults to its first value when unset, empty or blank, and takes a listed value with spaces trimmed', () => {
  assert.is(gpuChoice('PAUSEPIPE_MATMUL', {}), 'tfjs');
  assert.is(gpuChoice('PAUSEPIPE_ATTENTION', { PAUSEPIPE_ATTENTION: '' }), 'rows');
  assert.is(gpuChoice('PAUSEPIPE_DECODE_GRAPH', { PAUSEPIPE_DECODE_GRAPH: '  ' }), 'on');
  assert.is(gpuChoice('PAUSEPIPE_MATMUL', { PAUSEPIPE_MATMUL: 'wgsl ' }), 'wgsl');
  assert.is(gpuChoice('PAUSEPIPE_ATTENTION', { PAUSEPIPE_ATTENTION: 'lanes' }), 'lanes');
  assert.is(gpuChoice('PAUSEPIPE_FROZEN_WEIGHTS', {}), 'f32');
  assert.is(gpuChoice('PAUSEPIPE_FROZEN_WEIGHTS', { PAUSEPIPE_FROZEN_WEIGHTS: 'bf16' }), 'bf16');
  assert.throws(() => gpuChoice('PAUSEPIPE_FROZEN_WEIGHTS', { PAUSEPIPE_FROZEN_WEIGHTS: 'fp16' }), /^PAUSEPIPE_FROZEN_WEIGHTS must be f32 or bf16, got 'fp16'$/);
  assert.throws(() => gpuChoice('PAUSEPIPE_DECODE_GRAPH', { PAUSEPIPE_DECODE_GRAPH: 'no' }), /^PAUSEPIPE_DECODE_GRAPH must be on or off, got 'no'$/);
});

test('the lookahead is a whole number from 0 to 64, 1 when unset', () => {
  assert.is(decodeLookahead({}), 1);
  assert.is(decodeLookahead({ PAUSEPIPE_DECODE_LOOKAHEAD: '0' }), 0);
  assert.is(decodeLookahead({ PAUSEPIPE_DECODE_LOOKAHEAD: '64' }), 64);
  for (const bad of ['65', '-1', '1.5', 'two']) {
    assert.throws(() => decodeLookahead({ PAUSEPIPE_DECODE_LOOKAHEAD: bad }), new RegExp(`from 0 to 64, got '${bad}'`));
  }
});

test('gpuSettingErrors lists every bad variable, in a fixed order, and nothing when all are fine', () => {
  assert.equal(gpuSettingErrors({}), []);
  assert.equal(gpuSettingErrors({ PAUSEPIPE_MATMUL: 'wgsl', PAUSEPIPE_ATTENTION: 'lanes', PAUSEPIPE_DECODE_GRAPH: 'off', PAUSEPIPE_DECODE_LOOKAHEAD: '4' }), []);
  assert.equal(gpuSettingErrors({ PAUSEPIPE_DECODE_LOOKAHEAD: 'x', PAUSEPIPE_MATMUL: 'cuda' }), [
    "PAUSEPIPE_MATMUL must be tfjs or wgsl, got 'cuda'",
    "PAUSEPIPE_DECODE_LOOKAHEAD must be a whole number from 0 to 64, got 'x'",
  ]);
});

test.run();

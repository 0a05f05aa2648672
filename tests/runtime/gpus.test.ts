// The GPUs the runner sees: PAUSEPIPE_GPU_MEMORY_MIB stands in for nvidia-smi's memory figure when set.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { detectGpuMemoryMiB, gpuCountError, gpuDeviceIds, gpuMemoryOverride } from '../../runtime/gpus.ts';

test('PAUSEPIPE_GPU_MEMORY_MIB: a whole number of MiB is each GPU\'s memory; unset or blank leaves it to nvidia-smi', async () => {
  assert.is(await detectGpuMemoryMiB({ PAUSEPIPE_GPU_MEMORY_MIB: '81559' }), 81559);
  assert.is(gpuMemoryOverride({ PAUSEPIPE_GPU_MEMORY_MIB: ' 24576 ' }), 24576);
  assert.is(gpuMemoryOverride({}), undefined);
  assert.is(gpuMemoryOverride({ PAUSEPIPE_GPU_MEMORY_MIB: '  ' }), undefined);
});

test('PAUSEPIPE_GPU_MEMORY_MIB that is not a whole number of MiB is refused, naming the variable and the value', async () => {
  for (const bad of ['80GB', '0', '-1', '1.5', '1e5']) {
    assert.throws(() => gpuMemoryOverride({ PAUSEPIPE_GPU_MEMORY_MIB: bad }), (err: Error) => err.message === `PAUSEPIPE_GPU_MEMORY_MIB must be a whole number of MiB, got '${bad}'`);
  }
  await detectGpuMemoryMiB({ PAUSEPIPE_GPU_MEMORY_MIB: 'lots' }).then(() => assert.unreachable('accepted'), (err: Error) => assert.match(err.message, "got 'lots'"));
});

test('--gpus N takes its slots from the runner\'s own CUDA_VISIBLE_DEVICES, and is refused past its end', () => {
  assert.equal(gpuDeviceIds(2, { CUDA_VISIBLE_DEVICES: '2,3' }), ['2', '3']);
  assert.equal(gpuDeviceIds(1, { CUDA_VISIBLE_DEVICES: '2,3' }), ['2']);
  assert.equal(gpuDeviceIds(3, {}), ['0', '1', '2']);
  assert.is(gpuCountError(2, { CUDA_VISIBLE_DEVICES: '2,3' }), undefined);
  assert.is(gpuCountError(0, { CUDA_VISIBLE_DEVICES: '' }), undefined);
  assert.is(gpuCountError(8, {}), undefined);
  // Before, slots 2 and 3 became devices '2' and '3' again: four stages on two GPUs, each thinking it had one alone.
  const twoOfFour = "--gpus 4, but CUDA_VISIBLE_DEVICES='2,3' leaves 2 GPUs to this run: give --gpus 2 or fewer (--stages-per-gpu N runs N stages on each), or widen CUDA_VISIBLE_DEVICES";
  assert.is(gpuCountError(4, { CUDA_VISIBLE_DEVICES: '2,3' }), twoOfFour);
  assert.throws(() => gpuDeviceIds(4, { CUDA_VISIBLE_DEVICES: '2,3' }), (err: Error) => err.message === twoOfFour);
  // An empty list and -1 hide every GPU; before, the slots became GPUs 0 and 1.
  assert.is(gpuCountError(2, { CUDA_VISIBLE_DEVICES: '' }), "--gpus 2, but CUDA_VISIBLE_DEVICES='' leaves no GPU to this run: give --gpus 0, or widen CUDA_VISIBLE_DEVICES");
  assert.is(gpuCountError(1, { CUDA_VISIBLE_DEVICES: '-1' }), "--gpus 1, but CUDA_VISIBLE_DEVICES='-1' leaves no GPU to this run: give --gpus 0, or widen CUDA_VISIBLE_DEVICES");
  assert.is(gpuCountError(2, { CUDA_VISIBLE_DEVICES: 'GPU-aaa' }), "--gpus 2, but CUDA_VISIBLE_DEVICES='GPU-aaa' leaves 1 GPU to this run: give --gpus 1 or fewer (--stages-per-gpu N runs N stages on each), or widen CUDA_VISIBLE_DEVICES");
});

test.run();

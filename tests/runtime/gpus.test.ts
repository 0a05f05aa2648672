// The GPUs the runner sees: PAUSEPIPE_GPU_MEMORY_MIB stands in for nvidia-smi's memory figure when set.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { detectGpuMemoryMiB, gpuMemoryOverride } from '../../runtime/gpus.ts';

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

test.run();

// requestSubgroups (webgpu/subgroups.ts): how tfjs's device request is widened, with adapters that grant or refuse it.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { requestSubgroups } from '../../../stages/lm/webgpu/subgroups.ts';

/** A stand-in for Dawn's GPU: one adapter with `features`, granting a device unless a feature is in `refused`. */
function fakeGpu(features: string[], refused: string[] = []) {
  const asked: string[][] = [];
  const adapter = {
    features: new Set(features),
    async requestDevice(descriptor?: { requiredFeatures?: string[] }) {
      const wanted = [...(descriptor?.requiredFeatures ?? [])];
      asked.push(wanted);
      if (wanted.some((f) => refused.includes(f))) throw new TypeError(`unsupported: ${wanted.join(', ')}`);
      return { features: new Set(wanted) };
    },
  };
  const gpu = { requestAdapter: async () => adapter };
  return { gpu: gpu as unknown as GPU, asked };
}

test('an adapter with subgroups gets them added to the features tfjs asks for', async () => {
  const { gpu, asked } = fakeGpu(['subgroups', 'timestamp-query']);
  requestSubgroups(gpu);
  const device = await (await gpu.requestAdapter())!.requestDevice({ requiredFeatures: ['timestamp-query'] });
  assert.equal(asked, [['timestamp-query', 'subgroups']]);
  assert.ok(device.features.has('subgroups'));
});

test('an adapter without subgroups is asked for exactly what tfjs asks', async () => {
  const { gpu, asked } = fakeGpu(['timestamp-query']);
  requestSubgroups(gpu);
  await (await gpu.requestAdapter())!.requestDevice({ requiredFeatures: ['timestamp-query'] });
  assert.equal(asked, [['timestamp-query']]);
});

test('an adapter that lists subgroups but refuses them still gives tfjs its device, without them', async () => {
  const { gpu, asked } = fakeGpu(['subgroups'], ['subgroups']);
  requestSubgroups(gpu);
  const device = await (await gpu.requestAdapter())!.requestDevice({ requiredFeatures: [] });
  assert.equal(asked, [['subgroups'], []]);
  assert.not.ok(device.features.has('subgroups'));
});

test.run();

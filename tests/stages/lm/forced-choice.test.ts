// ForcedChoice (webgpu/engine.ts): how withMatMul and withAttention hold a choice for a call, sync or async.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { ForcedChoice } from '../../../stages/lm/webgpu/engine.ts';

test('a synchronous call sees the choice; it is gone when the call returns or throws', () => {
  const c = new ForcedChoice<string>();
  assert.is(c.during('a', () => c.current), 'a');
  assert.is(c.current, null);
  assert.throws(() => c.during('a', () => {
    throw new Error('boom');
  }), /boom/);
  assert.is(c.current, null);
});

test('an async call keeps the choice across its awaits until its promise settles, then the outer one is back', async () => {
  const c = new ForcedChoice<string>();
  const seen: Array<string | null> = [];
  await c.during('outer', async () => {
    const inner = c.during('inner', async () => {
      seen.push(c.current);
      await new Promise((r) => setTimeout(r, 5));
      seen.push(c.current);
    });
    await inner;
    seen.push(c.current);
  });
  seen.push(c.current);
  assert.equal(seen, ['inner', 'inner', 'outer', null]);
  await c.during('x', async () => {
    await new Promise((r) => setTimeout(r, 1));
    throw new Error('late');
  }).then(() => assert.unreachable('should reject'), (err: Error) => assert.match(err.message, /late/));
  assert.is(c.current, null);
});

test.run();

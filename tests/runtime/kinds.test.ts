// Plugin kinds from $PAUSEPIPE_KINDS: a malformed STAGE_KINDS export is refused with the file and what is wrong.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { kindsOfModule } from '../../runtime/kinds.ts';
import { STAGE_KINDS } from '../../stages/index.ts';

const sh = STAGE_KINDS.sh!;

function refusal(mod: { STAGE_KINDS?: unknown }): string {
  try {
    kindsOfModule(mod, '/p/k.mjs');
  } catch (err) {
    return (err as Error).message;
  }
  return 'accepted';
}

test('a record of well-formed kinds is accepted as is', () => {
  const kinds = { sh };
  assert.is(kindsOfModule({ STAGE_KINDS: kinds }, '/p/k.mjs'), kinds);
});

test('an array, a missing export and malformed kinds are refused with the file', () => {
  assert.is(refusal({ STAGE_KINDS: [sh] }), 'PAUSEPIPE_KINDS: /p/k.mjs: STAGE_KINDS must be an object from kind name to kind, e.g. { my_kind: MY_KIND }, got an array');
  assert.is(refusal({}), 'PAUSEPIPE_KINDS: /p/k.mjs exports no STAGE_KINDS');
  assert.is(refusal({ STAGE_KINDS: { shell: sh } }), 'PAUSEPIPE_KINDS: /p/k.mjs: STAGE_KINDS.shell has name "sh"; the key and the name must match');
  assert.is(refusal({ STAGE_KINDS: { sh: { ...sh, version: '1' } } }), 'PAUSEPIPE_KINDS: /p/k.mjs: STAGE_KINDS.sh has no whole-number version');
  assert.is(refusal({ STAGE_KINDS: { sh: { ...sh, run: undefined } } }), 'PAUSEPIPE_KINDS: /p/k.mjs: STAGE_KINDS.sh has no run function');
  assert.is(refusal({ STAGE_KINDS: { sh: null } }), 'PAUSEPIPE_KINDS: /p/k.mjs: STAGE_KINDS.sh is not an object');
});

test.run();

// Plugin kinds from $PAUSEPIPE_KINDS: a malformed STAGE_KINDS export, or one that takes a known kind's name, is refused with the file and what is wrong.
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { execa } from 'execa';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { kindsOfModule, type KindOrigins } from '../../runtime/kinds.ts';
import type { StageKind } from '../../stages/kind.ts';

const BIN = path.resolve('bin/pausepipe.js');

const mine: StageKind = {
  name: 'mine',
  version: 1,
  description: 'A plugin kind.',
  params: { type: 'object', properties: { n: { type: 'integer', default: 1, description: 'How many.' } }, additionalProperties: false },
  inputs: { up: { description: 'Upstream stage.', optional: true } },
  async run() {
    return {};
  },
};

function refusal(mod: { STAGE_KINDS?: unknown }, taken?: KindOrigins): string {
  try {
    kindsOfModule(mod, '/p/k.mjs', taken);
  } catch (err) {
    return (err as Error).message;
  }
  return 'accepted';
}

test('a record of well-formed kinds is accepted as is', () => {
  const kinds = { mine };
  assert.is(kindsOfModule({ STAGE_KINDS: kinds }, '/p/k.mjs'), kinds);
});

test('an array, a missing export and malformed kinds are refused with the file', () => {
  assert.is(refusal({ STAGE_KINDS: [mine] }), 'PAUSEPIPE_KINDS: /p/k.mjs: STAGE_KINDS must be an object from kind name to kind, e.g. { my_kind: MY_KIND }, got an array');
  assert.is(refusal({}), 'PAUSEPIPE_KINDS: /p/k.mjs exports no STAGE_KINDS');
  assert.is(refusal({ STAGE_KINDS: { other: mine } }), 'PAUSEPIPE_KINDS: /p/k.mjs: STAGE_KINDS.other has name "mine"; the key and the name must match');
  assert.is(refusal({ STAGE_KINDS: { mine: { ...mine, version: '1' } } }), 'PAUSEPIPE_KINDS: /p/k.mjs: STAGE_KINDS.mine has no whole-number version');
  assert.is(refusal({ STAGE_KINDS: { mine: { ...mine, run: undefined } } }), 'PAUSEPIPE_KINDS: /p/k.mjs: STAGE_KINDS.mine has no run function');
  assert.is(refusal({ STAGE_KINDS: { mine: null } }), 'PAUSEPIPE_KINDS: /p/k.mjs: STAGE_KINDS.mine is not an object');
});

test('a params schema that is no JSON Schema, or a param or input without a description, is refused at load', () => {
  const withParam = (prop: Record<string, unknown>) => ({ STAGE_KINDS: { mine: { ...mine, params: { ...mine.params, properties: { n: prop } } } } });
  assert.is(refusal(withParam({ type: 'integr', description: 'How many.' })),
    'PAUSEPIPE_KINDS: /p/k.mjs: STAGE_KINDS.mine params is not a valid JSON Schema: data/properties/n/type must be equal to one of the allowed values, ' +
      'data/properties/n/type must be array, data/properties/n/type must match a schema in anyOf');
  assert.is(refusal(withParam({ type: 'integer' })), 'PAUSEPIPE_KINDS: /p/k.mjs: STAGE_KINDS.mine param `n` has no description (`pausepipe kinds` and the editor show it)');
  assert.is(refusal({ STAGE_KINDS: { mine: { ...mine, params: undefined } } }),
    'PAUSEPIPE_KINDS: /p/k.mjs: STAGE_KINDS.mine has no params schema: give { type: \'object\', properties: { … }, additionalProperties: false }');
  assert.is(refusal({ STAGE_KINDS: { mine: { ...mine, inputs: { up: {} } } } }), 'PAUSEPIPE_KINDS: /p/k.mjs: STAGE_KINDS.mine input `up` has no description');
  assert.is(refusal({ STAGE_KINDS: { mine: { ...mine, description: undefined } } }), 'PAUSEPIPE_KINDS: /p/k.mjs: STAGE_KINDS.mine has no description');
});

test('a plugin kind named like a built-in or another plugin\'s kind is refused: both would share one cache key', () => {
  const taken: KindOrigins = new Map([['sh', 'built-in'], ['mine', '/p/first.mjs']]);
  assert.is(refusal({ STAGE_KINDS: { sh: { ...mine, name: 'sh' } } }, taken), 'PAUSEPIPE_KINDS: /p/k.mjs: STAGE_KINDS.sh has the name of a built-in kind; give yours another name');
  assert.is(refusal({ STAGE_KINDS: { mine } }, taken), 'PAUSEPIPE_KINDS: /p/k.mjs: STAGE_KINDS.mine is already registered by /p/first.mjs; give one of them another name');
});

test('the CLI names the plugin file that is missing, fails to load, or takes a built-in kind\'s name', async () => {
  const dir = await mkdtemp(path.join(tmpdir(), 'pausepipe-kinds-'));
  await writeFile(path.join(dir, 'p.pipe'), 'stage a = sh { command: ["true"] }\n');
  await writeFile(path.join(dir, 'broken.mjs'), 'export const STAGE_KINDS = {\n');
  await writeFile(path.join(dir, 'clash.mjs'), `export const STAGE_KINDS = { sh: ${JSON.stringify({ ...mine, name: 'sh', run: undefined })} };\n`);
  const check = async (kinds: string) => {
    const r = await execa(process.execPath, [BIN, 'check', 'p.pipe'], { cwd: dir, reject: false, env: { PAUSEPIPE_KINDS: kinds } });
    return { code: r.exitCode, stderr: r.stderr };
  };
  assert.equal(await check('missing.mjs'), { code: 1, stderr: `pausepipe check: PAUSEPIPE_KINDS: missing.mjs does not exist (looked for ${path.join(dir, 'missing.mjs')})` });
  const broken = await check(path.join(dir, 'broken.mjs'));
  assert.is(broken.code, 1);
  assert.match(broken.stderr, `pausepipe check: PAUSEPIPE_KINDS: ${path.join(dir, 'broken.mjs')} failed to load: `);
  assert.equal(await check(path.join(dir, 'clash.mjs')),
    { code: 1, stderr: `pausepipe check: PAUSEPIPE_KINDS: ${path.join(dir, 'clash.mjs')}: STAGE_KINDS.sh has the name of a built-in kind; give yours another name` });
});

test.run();

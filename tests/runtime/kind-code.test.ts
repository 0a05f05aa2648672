// A plugin kind's code is part of its stages' keys: editing the plugin, or a local module it imports, re-runs them.
import { mkdir, mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { execa } from 'execa';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { sha256, stageKey } from '../../runtime/hash.ts';
import { moduleCode } from '../../runtime/kind-code.ts';

const BIN = path.resolve('bin/pausepipe.js');

test('a module\'s code is itself and the local modules it imports for their values, named from its folder', async () => {
  const dir = await mkdtemp(path.join(tmpdir(), 'pausepipe-code-'));
  await mkdir(path.join(dir, 'lib', 'deep'), { recursive: true });
  await mkdir(path.join(dir, 'node_modules', 'pkg'), { recursive: true });
  const files: Record<string, string> = {
    'kinds.mts': [
      "import { scale } from './lib/scale.js';", // written .js, found as .ts, as tsx does
      "import type { Only } from './lib/types.ts';",
      "export type { Other } from './lib/other.ts';",
      "import {\n  table,\n} from './lib/table.mjs';",
      "export * from './lib/deep';", // a folder: its index
      "import pkg from 'pkg';",
      "import local from './node_modules/pkg/index.js';",
      "const later = () => import('./lib/later.mjs');",
      "export const STAGE_KINDS = {};",
    ].join('\n'),
    'lib/scale.ts': "import './table.mjs';\nexport const scale = 2;\n",
    'lib/types.ts': 'export type Only = number;\n',
    'lib/other.ts': 'export type Other = string;\n',
    'lib/table.mjs': "import data from '../data.json' with { type: 'json' };\nexport const table = data;\n",
    'lib/deep/index.ts': 'export const deep = 1;\n',
    'lib/later.mjs': 'export default 3;\n',
    'data.json': '[1, 2]\n',
    'node_modules/pkg/index.js': 'export default 1;\n',
  };
  for (const [name, text] of Object.entries(files)) await writeFile(path.join(dir, name), text);
  const hashOf = (name: string) => sha256(files[name]!);
  assert.equal(moduleCode(path.join(dir, 'kinds.mts')), {
    'data.json': hashOf('data.json'),
    'kinds.mts': hashOf('kinds.mts'),
    'lib/deep/index.ts': hashOf('lib/deep/index.ts'),
    'lib/later.mjs': hashOf('lib/later.mjs'),
    'lib/scale.ts': hashOf('lib/scale.ts'),
    'lib/table.mjs': hashOf('lib/table.mjs'),
  });
});

test('a built-in kind\'s key has no code ingredient: keys made before plugins had code stay the same', () => {
  const ingredients = { kind: 'sh', kindVersion: 1, params: { command: 'true' }, inputs: {}, files: {} };
  assert.is(stageKey({ ...ingredients, code: undefined }), stageKey(ingredients));
  assert.is.not(stageKey({ ...ingredients, code: { 'k.mjs': 'a' } }), stageKey(ingredients));
});

test('editing a plugin\'s helper module re-runs its stages, plan says which file changed, and verify accepts the entries', async () => {
  const dir = await mkdtemp(path.join(tmpdir(), 'pausepipe-code-'));
  await writeFile(path.join(dir, 'p.pipe'), 'stage a = twice { n: 4 }\n');
  await writeFile(path.join(dir, 'factor.mjs'), 'export const FACTOR = 2;\n');
  await writeFile(path.join(dir, 'kinds.mjs'), [
    "import { FACTOR } from './factor.mjs';",
    'export const STAGE_KINDS = { twice: {',
    "  name: 'twice', version: 1, description: 'Multiplies n.', inputs: {},",
    "  params: { type: 'object', properties: { n: { type: 'number', description: 'The number.' } }, additionalProperties: false },",
    '  async run(ctx) { return { metrics: { value: ctx.params.n * FACTOR } }; },',
    '} };',
  ].join('\n'));
  const env = { PAUSEPIPE_KINDS: path.join(dir, 'kinds.mjs') };
  const cli = (...args: string[]) => execa(process.execPath, [BIN, ...args, '--cache-dir', 'cache'], { cwd: dir, reject: false, env });
  const value = async () => JSON.parse((await cli('show', 'p.pipe', '--json', '--all')).stdout)[0].metrics.value;
  assert.is((await cli('run', 'p.pipe')).exitCode, 0);
  assert.is(await value(), 8);
  assert.match((await cli('plan', 'p.pipe')).stdout, '0 stale, 1 fresh');

  await writeFile(path.join(dir, 'factor.mjs'), 'export const FACTOR = 3;\n');
  const plan = await cli('plan', 'p.pipe');
  assert.match(plan.stdout, 'stale  a: code of kind twice: factor.mjs changed');
  const run = await cli('run', 'p.pipe');
  assert.match(run.stdout, 'ran 1, cached 0');
  assert.is(await value(), 12);
  const verify = await cli('verify');
  assert.is(verify.exitCode, 0, verify.stdout + verify.stderr);
  assert.match(verify.stdout, 'cache OK: 2 entries verified');
  // Putting the old code back finds its entry again.
  await writeFile(path.join(dir, 'factor.mjs'), 'export const FACTOR = 2;\n');
  assert.match((await cli('run', 'p.pipe')).stdout, 'ran 0, cached 1');
  assert.is(await value(), 8);
});

test.run();

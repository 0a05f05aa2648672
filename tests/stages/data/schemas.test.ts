import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { Ajv } from 'ajv';
import { GSM8K } from '../../../stages/gsm8k.ts';
import { INJECT_PAUSES } from '../../../stages/inject-pauses.ts';
import { REPORT } from '../../../stages/report.ts';
import { SYNTHETIC_MATH } from '../../../stages/synthetic-math.ts';
import type { StageKind } from '../../../stages/kind.ts';
import { withDefaults } from './stage-context.ts';

const KINDS: StageKind[] = [GSM8K, SYNTHETIC_MATH, INJECT_PAUSES, REPORT];

for (const kind of KINDS) {
  test(`${kind.name}: every parameter has a description and a default the schema accepts`, () => {
    for (const [name, schema] of Object.entries(kind.params.properties)) {
      assert.ok(schema.description.trim().length > 0, `${kind.name}.${name} has a description`);
      assert.ok('default' in schema, `${kind.name}.${name} has a default`);
    }
    const validate = new Ajv({ strict: true, allowUnionTypes: true }).compile(kind.params);
    assert.ok(validate(withDefaults(kind)), JSON.stringify(validate.errors));
  });
}

test('the schemas reject unknown parameters and out-of-range values', () => {
  const ajv = new Ajv({ strict: true, allowUnionTypes: true });
  assert.not.ok(ajv.compile(GSM8K.params)({ ...withDefaults(GSM8K), val_fraction: 1 }));
  assert.not.ok(ajv.compile(INJECT_PAUSES.params)({ ...withDefaults(INJECT_PAUSES), splits: ['test'] }));
  assert.not.ok(ajv.compile(INJECT_PAUSES.params)({ ...withDefaults(INJECT_PAUSES), patterns: { '\\n': -1 } }));
  assert.not.ok(ajv.compile(SYNTHETIC_MATH.params)({ ...withDefaults(SYNTHETIC_MATH), operations: ['^'] }));
  assert.not.ok(ajv.compile(REPORT.params)({ ...withDefaults(REPORT), colour: 'red' }));
});

test.run();

// Tests for canonical JSON, sha256 and stage keys: the exact text and keys the cache relies on.
import { createHash } from 'node:crypto';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { canonicalJson, sha256, stageKey, type KeyIngredients } from '../../runtime/hash.ts';
import { partialKey } from '../../runtime/keys.ts';
import type { JsonValue } from '../../runtime/json.ts';

const canonical = suite('canonicalJson');

canonical('sorts object keys recursively and writes no whitespace', () => {
  assert.is(canonicalJson({ b: 1, a: { d: [1, 2], c: 'x' } }), '{"a":{"c":"x","d":[1,2]},"b":1}');
});

canonical('keeps array order, including arrays of objects', () => {
  assert.is(canonicalJson([3, 1, { z: 0, y: 0 }, 2]), '[3,1,{"y":0,"z":0},2]');
});

canonical('writes -0 as 0 and integers without a fraction', () => {
  assert.is(canonicalJson([-0, 1.0, 2.5, 1e21, -3]), '[0,1,2.5,1e+21,-3]');
});

canonical('writes scalars and escapes strings as JSON does', () => {
  assert.is(canonicalJson([null, true, false, 'a"b\\c\n', 'é']), '[null,true,false,"a\\"b\\\\c\\n","é"]');
});

canonical('sorts keys by code unit, so upper case comes before lower case', () => {
  assert.is(canonicalJson({ b: 1, B: 2, a: 3, _: 4 }), '{"B":2,"_":4,"a":3,"b":1}');
});

canonical('leaves out properties whose value is undefined', () => {
  const withUndefined = { a: 1, b: undefined } as unknown as JsonValue;
  assert.is(canonicalJson(withUndefined), '{"a":1}');
});

canonical('refuses values JSON cannot carry, naming where they sit', () => {
  assert.throws(() => canonicalJson({ a: [1, NaN] }), /\$\.a\[1\] is NaN/);
  assert.throws(() => canonicalJson({ lr: Infinity }), /\$\.lr is Infinity/);
  assert.throws(() => canonicalJson({ when: new Date(0) } as unknown as JsonValue), /\$\.when is a Date, not a plain object/);
  assert.throws(() => canonicalJson([undefined] as unknown as JsonValue), /\$\[0\] is undefined, not a JSON value/);
  const loop: Record<string, JsonValue> = {};
  loop.self = loop;
  assert.throws(() => canonicalJson(loop), /\$\.self contains itself/);
});

canonical('allows the same object twice when it is not a cycle', () => {
  const shared = { x: 1 };
  assert.is(canonicalJson({ a: shared, b: shared }), '{"a":{"x":1},"b":{"x":1}}');
});

canonical.run();

const hashing = suite('sha256');

hashing('hashes strings as UTF-8 and bytes as given, in hex', () => {
  assert.is(sha256(''), 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855');
  assert.is(sha256('é'), createHash('sha256').update(Buffer.from('é', 'utf8')).digest('hex'));
  assert.is(sha256(new Uint8Array([1, 2, 3])), createHash('sha256').update(Buffer.from([1, 2, 3])).digest('hex'));
});

hashing.run();

const keys = suite('stageKey');

const base: KeyIngredients = {
  kind: 'sft',
  kindVersion: 2,
  params: { lr: 0.0001, epochs: 1 },
  inputs: { model: ['aa'] },
  files: { 'data/train.jsonl': 'bb' },
};

keys('is pinned: the recipe of a key never changes silently', () => {
  // Equals sha256('pausepipe-stage-key-v1\n' + json.dumps(base, sort_keys=True, separators=(',', ':'))) in Python.
  assert.is(stageKey(base), '825f6536cb70694ceb0b0b4eaa9212696a0b3a39381e384c6c7c6112f080c1cb');
});

keys('is equal when keys of every object are reordered', () => {
  const reordered: KeyIngredients = {
    files: { 'data/train.jsonl': 'bb' },
    inputs: { model: ['aa'] },
    params: { epochs: 1, lr: 0.0001 },
    kindVersion: 2,
    kind: 'sft',
  };
  assert.is(stageKey(reordered), stageKey(base));
});

keys('ignores the stage name and any other extra field', () => {
  const named = { ...base, stage: 'warm[embed=true]', variant: { embed: true } } as KeyIngredients;
  assert.is(stageKey(named), stageKey(base));
});

keys('changes with a param value, a new param, or a nested param', () => {
  const seen = new Set([stageKey(base)]);
  seen.add(stageKey({ ...base, params: { lr: 0.00005, epochs: 1 } }));
  seen.add(stageKey({ ...base, params: { lr: 0.0001, epochs: 1, seed: 0 } }));
  seen.add(stageKey({ ...base, params: { lr: 0.0001, epochs: 1, lora: { r: 8 } } }));
  seen.add(stageKey({ ...base, params: { lr: 0.0001, epochs: 1, lora: { r: 16 } } }));
  assert.is(seen.size, 5);
});

keys('changes with upstream keys, their order, and the input name', () => {
  const seen = new Set([stageKey(base)]);
  seen.add(stageKey({ ...base, inputs: { model: ['ab'] } }));
  seen.add(stageKey({ ...base, inputs: { model: ['aa', 'cc'] } }));
  seen.add(stageKey({ ...base, inputs: { model: ['cc', 'aa'] } }));
  seen.add(stageKey({ ...base, inputs: { base: ['aa'] } }));
  assert.is(seen.size, 5);
});

keys('changes with a file hash or a file path', () => {
  assert.is.not(stageKey({ ...base, files: { 'data/train.jsonl': 'bc' } }), stageKey(base));
  assert.is.not(stageKey({ ...base, files: { 'data/test.jsonl': 'bb' } }), stageKey(base));
});

keys('changes with the kind and with its version', () => {
  assert.is.not(stageKey({ ...base, kindVersion: 3 }), stageKey(base));
  assert.is.not(stageKey({ ...base, kind: 'pretrain' }), stageKey(base));
});

keys('of a partial result adds the missing inputs\' keys; a full key is as before, missing or not listed', () => {
  const partial = partialKey({ key: stageKey(base), ingredients: base }, { model: ['aa'] });
  // Pinned too: the Python line above with base plus "missing": {"model": ["aa"]}.
  assert.is(partial.key, 'd0cc1fb01722a69d2c0f8f40fd496ed605075130fef19efc70d16491dc1146e9');
  assert.is.not(partial.key, stageKey(base));
  assert.equal(partial.ingredients, { ...base, missing: { model: ['aa'] } });
  assert.is(stageKey({ ...base, missing: undefined }), '825f6536cb70694ceb0b0b4eaa9212696a0b3a39381e384c6c7c6112f080c1cb');
  assert.is.not(partialKey({ key: stageKey(base), ingredients: base }, { model: ['ab'] }).key, partial.key);
});

keys('does not confuse a number with its string form', () => {
  assert.is.not(stageKey({ ...base, params: { lr: '0.0001', epochs: 1 } }), stageKey(base));
});

keys.run();

// safetensors: byte-exact round trips of the fixtures, every supported dtype, sharded folders, and corrupt files.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import {
  isBfloat16Exact, parseSafetensors, readModelWeights, readSafetensors, roundedToBfloat16, serializeSafetensors, toBfloat16, writeSafetensors,
  writeSafetensorsLazily, type HostTensor, type LazyTensor, type WriteTensor,
} from '../../../stages/lm/safetensors.ts';
import { FIXTURES, rejectsWith, withFixtures } from '../../helpers/hf-fixtures.ts';

/** A safetensors buffer with a hand-written header, for dtypes we only read. */
function handMade(header: Record<string, unknown>, data: Uint8Array): Uint8Array {
  const json = new TextEncoder().encode(JSON.stringify(header));
  const out = new Uint8Array(8 + json.length + data.length);
  new DataView(out.buffer).setBigUint64(0, BigInt(json.length), true);
  out.set(json, 8);
  out.set(data, 8 + json.length);
  return out;
}

let tmp = '';
const test = suite('safetensors');

test.before(async () => {
  tmp = await mkdtemp(path.join(os.tmpdir(), 'st-'));
});
test.after(() => rm(tmp, { recursive: true, force: true }));

withFixtures(test)('re-serialising every fixture file reproduces it byte for byte (tensor order, header, padding, metadata)', async () => {
  const files = ['mistral-tiny/model.safetensors', 'llama-tiny-tied/model.safetensors', 'pause-wrapper/model.safetensors',
    'mistral-tiny/expected.safetensors', 'pause-wrapper/expected.safetensors', 'mistral-tiny-lora/adapter_model.safetensors'];
  for (const f of files) {
    const original = await readFile(path.join(FIXTURES, f));
    const { tensors, metadata } = await readSafetensors(path.join(FIXTURES, f));
    assert.ok(Buffer.from(serializeSafetensors(tensors, metadata)).equals(original), f);
    const out = path.join(tmp, 'copy.safetensors');
    await writeSafetensors(out, tensors, metadata);
    assert.ok((await readFile(out)).equals(original), `${f} written to disk`);
  }
});

withFixtures(test)('reads names, shapes, dtypes and metadata of a fixture', async () => {
  const { tensors, metadata } = await readSafetensors(path.join(FIXTURES, 'mistral-tiny/expected.safetensors'));
  assert.equal(metadata, null);
  assert.equal([...tensors.keys()], ['logits', 'logits_left_masked', 'attention_mask', 'greedy_ids', 'greedy_prompt', 'input_ids']);
  assert.equal(tensors.get('attention_mask')!.shape, [3, 14]);
  assert.is(tensors.get('attention_mask')!.dtype, 'int32');
  assert.equal(Array.from(tensors.get('attention_mask')!.data.slice(14, 18)), [0, 0, 0, 1]);
  const model = await readSafetensors(path.join(FIXTURES, 'mistral-tiny/model.safetensors'));
  assert.equal(model.metadata, { format: 'pt' });
});

test('writes F32 before I32, each sorted by name, and 8-byte aligns the data with spaces', () => {
  const tensors = new Map<string, HostTensor>([
    ['b', { dtype: 'int32', shape: [2], data: new Int32Array([7, -8]) }],
    ['a', { dtype: 'int32', shape: [1], data: new Int32Array([1]) }],
    ['z', { dtype: 'float32', shape: [1, 1], data: new Float32Array([0.5]) }],
  ]);
  const bytes = serializeSafetensors(tensors, { format: 'pt' });
  const headerLen = Number(new DataView(bytes.buffer).getBigUint64(0, true));
  const header = new TextDecoder().decode(bytes.subarray(8, 8 + headerLen));
  assert.is(headerLen % 8, 0);
  assert.is(header.trimEnd(), '{"__metadata__":{"format":"pt"},"z":{"dtype":"F32","shape":[1,1],"data_offsets":[0,4]},' +
    '"a":{"dtype":"I32","shape":[1],"data_offsets":[4,8]},"b":{"dtype":"I32","shape":[2],"data_offsets":[8,16]}}');
  const back = parseSafetensors(bytes);
  assert.equal(Array.from(back.tensors.get('b')!.data), [7, -8]);
});

test('writes bfloat16 numbers as BF16 after F32 and I32 (the crate\'s dtype order), 2 bytes a value, read back exactly; refuses other values', () => {
  const values = new Float32Array([1, -0, 2.5, -3.0517578125e-5, 65280]);
  const f32: HostTensor = { dtype: 'float32', shape: [5], data: values };
  assert.ok(isBfloat16Exact(f32));
  const tensors = new Map<string, WriteTensor>([
    ['w', toBfloat16(f32)],
    ['i', { dtype: 'int32', shape: [1], data: new Int32Array([9]) }],
    ['f', { dtype: 'float32', shape: [1], data: new Float32Array([0.1]) }],
  ]);
  const bytes = serializeSafetensors(tensors);
  const headerLen = Number(new DataView(bytes.buffer).getBigUint64(0, true));
  assert.is(new TextDecoder().decode(bytes.subarray(8, 8 + headerLen)).trimEnd(), '{"f":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},' +
    '"i":{"dtype":"I32","shape":[1],"data_offsets":[4,8]},"w":{"dtype":"BF16","shape":[5],"data_offsets":[8,18]}}');
  assert.is(bytes.length, 8 + headerLen + 18);
  const back = parseSafetensors(bytes).tensors.get('w')!;
  assert.equal(new Uint32Array(back.data.buffer), new Uint32Array(values.buffer));
  const off: HostTensor = { dtype: 'float32', shape: [2], data: new Float32Array([1, 1 + 2 ** -20]) };
  assert.not.ok(isBfloat16Exact(off));
  assert.throws(() => toBfloat16(off), /only float32 values that are bfloat16 numbers can be written as BF16/);
  assert.not.ok(isBfloat16Exact({ dtype: 'int32', shape: [1], data: new Int32Array([0]) }));
});

test('roundedToBfloat16 rounds to the nearest bfloat16 as torch does: ties to even, subnormals, signs, overflow, NaN', () => {
  const bits = (...b: number[]) => new Float32Array(new Uint32Array(b.map((x) => x >>> 0)).buffer);
  const input = bits(
    0x3f808000, // 1 + 2^-8: a tie between 1 and 1 + 2^-7 → 1 (even)
    0x3f818000, // 1 + 3·2^-8: a tie → 1 + 2^-6 (even)
    0x3f808001, // just above the tie → 1 + 2^-7
    0xbf808000, // the negative tie → -1
    0x3fffffff, // just below 2 → 2, into the next binade
    0x00008000, // a subnormal tie → 0 (even)
    0x00018000, // a subnormal tie → two steps (even)
    0x80000000, // -0 keeps its sign
    0x7f7fffff, // float32's largest → Infinity, as torch overflows
    0xff7fffff, // and its negative → -Infinity
    0x3dcccccd, // 0.1 → 0.10009765625
    0x7f800000, // Infinity stays
    0xffa00001, // a signalling NaN → a quiet NaN
  );
  const rounded = roundedToBfloat16(input);
  assert.equal(Array.from(new Uint32Array(rounded.buffer)), [
    0x3f800000, 0x3f820000, 0x3f810000, 0xbf800000, 0x40000000, 0, 0x00020000, 0x80000000, 0x7f800000, 0xff800000,
    0x3dcd0000, 0x7f800000, 0xffe00000,
  ]);
  assert.ok(rounded !== input && input[0] === 1 + 2 ** -8, 'the input is left as it was');
});

test('a lazy write fetches each tensor in file order and writes what an eager one writes; a tensor off its shape leaves no file', async () => {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'safetensors-lazy-'));
  try {
    const eager = new Map<string, WriteTensor>([
      ['w', toBfloat16({ dtype: 'float32', shape: [3], data: new Float32Array([1, 2, 3]) })],
      ['i', { dtype: 'int32', shape: [2], data: new Int32Array([4, 5]) }],
      ['f', { dtype: 'float32', shape: [1, 2], data: new Float32Array([0.5, -0.5]) }],
    ]);
    const fetched: string[] = [];
    const lazy = (data: (name: string, t: WriteTensor) => WriteTensor['data']) => new Map<string, LazyTensor>([...eager].map(([name, t]) =>
      [name, { dtype: t.dtype, shape: t.shape, values: async () => (fetched.push(name), data(name, t)) }]));
    const file = path.join(dir, 'lazy.safetensors');
    await writeSafetensorsLazily(file, lazy((_, t) => t.data), { format: 'pt' });
    assert.equal(fetched, ['f', 'i', 'w']);
    assert.ok((await readFile(file)).equals(Buffer.from(serializeSafetensors(eager, { format: 'pt' }))));
    const broken = path.join(dir, 'broken.safetensors');
    await rejectsWith(() => writeSafetensorsLazily(broken, lazy((name, t) => (name === 'i' ? new Int32Array([4]) : t.data))),
      /safetensors: tensor 'i' has 1 values for shape \[2\]/);
    assert.equal((await readdir(dir)).sort(), ['lazy.safetensors']);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('widens F16 and BF16 to float32 exactly and narrows I64 to int32', () => {
  const data = new Uint8Array(8 + 4 + 16);
  const v = new DataView(data.buffer);
  [0x3c00, 0xc000, 0x0001, 0x7bff].forEach((h, i) => v.setUint16(2 * i, h, true)); // 1, -2, 2^-24, 65504
  [0x3f80, 0xbfc0].forEach((h, i) => v.setUint16(8 + 2 * i, h, true)); // 1, -1.5
  v.setBigInt64(12, 5n, true);
  v.setBigInt64(20, -7n, true);
  const file = parseSafetensors(handMade({
    h: { dtype: 'F16', shape: [4], data_offsets: [0, 8] },
    b: { dtype: 'BF16', shape: [2], data_offsets: [8, 12] },
    l: { dtype: 'I64', shape: [2], data_offsets: [12, 28] },
  }, data));
  assert.equal(Array.from(file.tensors.get('h')!.data), [1, -2, 2 ** -24, 65504]);
  assert.equal(Array.from(file.tensors.get('b')!.data), [1, -1.5]);
  assert.is(file.tensors.get('l')!.dtype, 'int32');
  assert.equal(Array.from(file.tensors.get('l')!.data), [5, -7]);
});

test('rejects I64 values outside int32, unknown dtypes and offsets that disagree with the shape, naming the tensor', () => {
  const big = new Uint8Array(8);
  new DataView(big.buffer).setBigInt64(0, 2n ** 40n, true);
  assert.throws(() => parseSafetensors(handMade({ ids: { dtype: 'I64', shape: [1], data_offsets: [0, 8] } }, big), 'x.safetensors'),
    /x\.safetensors: tensor 'ids' holds 1099511627776, outside the int32 range/);
  assert.throws(() => parseSafetensors(handMade({ q: { dtype: 'F8_E4M3', shape: [1], data_offsets: [0, 1] } }, new Uint8Array(1))),
    /tensor 'q' has dtype F8_E4M3; supported: F32, F16, BF16, I32, I64/);
  assert.throws(() => parseSafetensors(handMade({ w: { dtype: 'F32', shape: [3], data_offsets: [0, 8] } }, new Uint8Array(8))),
    /tensor 'w' \(F32 \[3\]\) has data_offsets \[0, 8\] inconsistent/);
  assert.throws(() => parseSafetensors(new Uint8Array(4)), /too short/);
});

test('a file cut short after its header is said to be truncated, naming the first tensor it cuts', async () => {
  const tensors = new Map<string, HostTensor>([
    ['a', { dtype: 'float32', shape: [2], data: new Float32Array([1, 2]) }],
    ['b', { dtype: 'float32', shape: [1000], data: new Float32Array(1000) }],
  ]);
  const whole = serializeSafetensors(tensors);
  const file = path.join(tmp, 'cut.safetensors');
  await writeFile(file, whole.subarray(0, whole.length - 100));
  await rejectsWith(() => readSafetensors(file), new RegExp(`^${file}: the file is truncated: tensor 'b' ends 4,008 bytes into the data, ` +
    'which holds only 3,908 bytes \\(an interrupted download or copy\\?\\)$'));
});

test('reads a sharded folder through model.safetensors.index.json', async () => {
  const dir = path.join(tmp, 'sharded');
  await rm(dir, { recursive: true, force: true });
  await mkdir(dir);
  const a: HostTensor = { dtype: 'float32', shape: [2], data: new Float32Array([1, 2]) };
  const b: HostTensor = { dtype: 'float32', shape: [1], data: new Float32Array([3]) };
  await writeSafetensors(path.join(dir, 'model-00001-of-00002.safetensors'), new Map([['x.weight', a]]));
  await writeSafetensors(path.join(dir, 'model-00002-of-00002.safetensors'), new Map([['y.weight', b]]));
  const index = { metadata: { total_size: 12 }, weight_map: { 'x.weight': 'model-00001-of-00002.safetensors', 'y.weight': 'model-00002-of-00002.safetensors' } };
  await writeFile(path.join(dir, 'model.safetensors.index.json'), JSON.stringify(index));
  const all = await readModelWeights(dir);
  assert.equal([...all.keys()], ['x.weight', 'y.weight']);
  assert.equal(Array.from(all.get('y.weight')!.data), [3]);
  index.weight_map['y.weight'] = 'model-00001-of-00002.safetensors';
  await writeFile(path.join(dir, 'model.safetensors.index.json'), JSON.stringify(index));
  await rejectsWith(() => readModelWeights(dir), /tensor 'y\.weight' is listed in model\.safetensors\.index\.json but not in the shard/);
  await rejectsWith(() => readModelWeights(tmp + '/nowhere'), /no model\.safetensors or model\.safetensors\.index\.json/);
});

test('a write that fails names the file and its size, keeps Node\'s code, and leaves no file behind', async () => {
  const dir = path.join(tmp, 'failing-write');
  await mkdir(dir);
  const full = Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC' });
  const tensors = new Map<string, LazyTensor>([
    ['a', { dtype: 'float32', shape: [1000], values: async () => new Float32Array(1000) }],
    ['b', { dtype: 'bfloat16', shape: [500, 2], values: async () => { throw full; } }],
  ]);
  const err = await writeSafetensorsLazily(path.join(dir, 'model.safetensors'), tensors).then(() => null, (e: Error & { code?: string }) => e);
  // 8 bytes of length, the header padded to 8, then 4,000 + 2,000 bytes of data.
  assert.match(err!.message, /^writing model\.safetensors \(6 kB\): ENOSPC: no space left on device, write$/);
  assert.is(err!.code, 'ENOSPC');
  assert.equal(await readdir(dir), []);
});

test.run();

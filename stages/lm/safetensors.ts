// Reads and writes the safetensors format (single files and sharded folders) as host-side typed arrays.
import { open, readFile, writeFile, rename, rm } from 'node:fs/promises';
import { closeSync, existsSync, fstatSync, openSync, readFileSync, readSync } from 'node:fs';
import path from 'node:path';

/** A tensor held in JavaScript memory: float types widen to float32, integer types narrow to int32. */
export interface HostTensor {
  dtype: 'float32' | 'int32';
  shape: number[];
  data: Float32Array | Int32Array;
}

/** A tensor to write: a HostTensor, or bfloat16 values as their 16-bit patterns (the top halves of float32s). */
export type WriteTensor = HostTensor | { dtype: 'bfloat16'; shape: number[]; data: Uint16Array };

/** Whether `t` holds float32 values that are all bfloat16 numbers (the low 16 bits of each are zero). */
export function isBfloat16Exact(t: HostTensor): boolean {
  if (t.dtype !== 'float32') return false;
  const bits = new Uint32Array(t.data.buffer, t.data.byteOffset, t.data.length);
  for (let i = 0; i < bits.length; i++) if ((bits[i]! & 0xffff) !== 0) return false;
  return true;
}

/**
 * `data` rounded to the nearest bfloat16 numbers (ties to even), as torch's float32 → bfloat16 conversion does: on the
 * bits, so every magnitude rounds (the largest overflow to infinity, as in torch) and NaN stays NaN. A new array.
 */
export function roundedToBfloat16(data: Float32Array): Float32Array {
  const out = new Float32Array(data.length);
  const bits = new Uint32Array(data.buffer, data.byteOffset, data.length);
  const outBits = new Uint32Array(out.buffer);
  for (let i = 0; i < bits.length; i++) {
    const b = bits[i]!;
    const isNaN = (b & 0x7fffffff) > 0x7f800000;
    // Adding 0x7fff plus the kept part's lowest bit carries into the kept half exactly when rounding goes up.
    outBits[i] = isNaN ? b & 0xffff0000 | 0x00400000 : ((b + 0x7fff + ((b >>> 16) & 1)) & 0xffff0000) >>> 0;
  }
  return out;
}

/** A float32 tensor of bfloat16 numbers (`isBfloat16Exact`) as bfloat16: the same values in half the bytes. */
export function toBfloat16(t: HostTensor): WriteTensor {
  if (!isBfloat16Exact(t)) throw new Error('safetensors: only float32 values that are bfloat16 numbers can be written as BF16');
  const bits = new Uint32Array(t.data.buffer, t.data.byteOffset, t.data.length);
  // A plain loop: Uint16Array.from with a mapping function took 230 ns a value (27 minutes for Mistral-7B's weights).
  const data = new Uint16Array(bits.length);
  for (let i = 0; i < bits.length; i++) data[i] = bits[i]! >>> 16;
  return { dtype: 'bfloat16', shape: t.shape, data };
}

/** The contents of one safetensors file, tensors in file order. */
export interface SafetensorsFile {
  tensors: Map<string, HostTensor>;
  /** The `__metadata__` string map, or null when the file has none. */
  metadata: Record<string, string> | null;
}

interface HeaderEntry {
  dtype: string;
  shape: number[];
  data_offsets: [number, number];
}

/** Bytes per element of the dtypes this reader understands. */
const READ_DTYPES: Record<string, number> = { F32: 4, F16: 2, BF16: 2, I32: 4, I64: 8 };

/**
 * Order of the safetensors Rust crate's `Dtype` enum for the dtypes we write: it serialises tensors by dtype
 * descending, then by name, and matching that makes our files byte-identical to `safetensors.torch.save_file`.
 */
const WRITE_DTYPE_RANK: Record<WriteTensor['dtype'], number> = { bfloat16: 0, int32: 1, float32: 2 };
const WRITE_DTYPE_NAME: Record<WriteTensor['dtype'], string> = { bfloat16: 'BF16', int32: 'I32', float32: 'F32' };
/** What each written dtype's array holds per value. */
const WRITE_ARRAY: Record<WriteTensor['dtype'], typeof Float32Array | typeof Int32Array | typeof Uint16Array> = {
  bfloat16: Uint16Array, int32: Int32Array, float32: Float32Array,
};

/** The header claims more than this many bytes only in a corrupt file (the crate caps it at 100 MB). */
const MAX_HEADER_BYTES = 100_000_000;

export class SafetensorsError extends Error {
  constructor(file: string, message: string) {
    super(`${file}: ${message}`);
    this.name = 'SafetensorsError';
  }
}

/** Parses the JSON header; `size` is the file length, used to check every offset. */
function parseHeader(file: string, json: string, dataBytes: number): { entries: [string, HeaderEntry][]; metadata: Record<string, string> | null } {
  let raw: unknown;
  try {
    raw = JSON.parse(json);
  } catch (err) {
    throw new SafetensorsError(file, `header is not valid JSON (${(err as Error).message})`);
  }
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) throw new SafetensorsError(file, 'header is not a JSON object');
  let metadata: Record<string, string> | null = null;
  const entries: [string, HeaderEntry][] = [];
  for (const [name, value] of Object.entries(raw as Record<string, unknown>)) {
    if (name === '__metadata__') {
      metadata = value as Record<string, string>;
      continue;
    }
    const e = value as HeaderEntry;
    if (!e || typeof e.dtype !== 'string' || !Array.isArray(e.shape) || !Array.isArray(e.data_offsets)) {
      throw new SafetensorsError(file, `tensor '${name}' has a malformed header entry`);
    }
    const width = READ_DTYPES[e.dtype];
    if (width === undefined) {
      throw new SafetensorsError(file, `tensor '${name}' has dtype ${e.dtype}; supported: ${Object.keys(READ_DTYPES).join(', ')}`);
    }
    const [start, end] = e.data_offsets;
    const count = e.shape.reduce((a, b) => a * b, 1);
    if (end - start === count * width && start >= 0 && end > dataBytes) {
      // The header is whole but the data stops early: what an interrupted download or copy leaves.
      throw new SafetensorsError(file, `the file is truncated: tensor '${name}' ends ${end.toLocaleString('en-US')} bytes into the data, ` +
        `which holds only ${dataBytes.toLocaleString('en-US')} bytes (an interrupted download or copy?)`);
    }
    if (end - start !== count * width || start < 0 || end > dataBytes) {
      throw new SafetensorsError(file, `tensor '${name}' (${e.dtype} [${e.shape.join(', ')}]) has data_offsets [${start}, ${end}] inconsistent with its shape or the file size`);
    }
    entries.push([name, e]);
  }
  return { entries, metadata };
}

/** Whether this machine stores numbers little-endian, as safetensors does. */
const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

/** Decodes one tensor's little-endian bytes. */
function decode(file: string, name: string, e: HeaderEntry, bytes: Uint8Array): HostTensor {
  const count = e.shape.reduce((a, b) => a * b, 1);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const shape = [...e.shape];
  switch (e.dtype) {
    case 'F32': {
      const data = new Float32Array(count);
      new Uint8Array(data.buffer).set(bytes);
      return { dtype: 'float32', shape, data };
    }
    case 'I32': {
      const data = new Int32Array(count);
      new Uint8Array(data.buffer).set(bytes);
      return { dtype: 'int32', shape, data };
    }
    case 'BF16': {
      // bfloat16 is the top half of a float32: widening is exact. Two bytes a value, read as a whole array where it is
      // aligned on a little-endian machine (a DataView read per value took twice as long).
      const bits = new Uint32Array(count);
      if (LITTLE_ENDIAN && bytes.byteOffset % 2 === 0) {
        const halves = new Uint16Array(bytes.buffer, bytes.byteOffset, count);
        for (let i = 0; i < count; i++) bits[i] = halves[i]! << 16;
      } else {
        for (let i = 0; i < count; i++) bits[i] = view.getUint16(2 * i, true) << 16;
      }
      return { dtype: 'float32', shape, data: new Float32Array(bits.buffer) };
    }
    case 'F16': {
      const data = new Float32Array(count);
      for (let i = 0; i < count; i++) data[i] = halfToFloat(view.getUint16(2 * i, true));
      return { dtype: 'float32', shape, data };
    }
    case 'I64': {
      const data = new Int32Array(count);
      for (let i = 0; i < count; i++) {
        const v = view.getBigInt64(8 * i, true);
        if (v > 2147483647n || v < -2147483648n) throw new SafetensorsError(file, `tensor '${name}' holds ${v}, outside the int32 range`);
        data[i] = Number(v);
      }
      return { dtype: 'int32', shape, data };
    }
    default:
      throw new SafetensorsError(file, `tensor '${name}' has unsupported dtype ${e.dtype}`);
  }
}

/** IEEE 754 half → float32 (exact: every half is representable). */
function halfToFloat(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >> 10) & 0x1f;
  const frac = h & 0x3ff;
  if (exp === 0) return sign * frac * 2 ** -24;
  if (exp === 0x1f) return frac ? NaN : sign * Infinity;
  return sign * (1 + frac / 1024) * 2 ** (exp - 15);
}

/** Parses a whole safetensors file held in memory. */
export function parseSafetensors(bytes: Uint8Array, file = '<buffer>'): SafetensorsFile {
  if (bytes.byteLength < 8) throw new SafetensorsError(file, 'too short to be a safetensors file');
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const headerLen = Number(view.getBigUint64(0, true));
  if (headerLen > MAX_HEADER_BYTES || 8 + headerLen > bytes.byteLength) throw new SafetensorsError(file, `header length ${headerLen} exceeds the file`);
  const json = new TextDecoder().decode(bytes.subarray(8, 8 + headerLen));
  const base = 8 + headerLen;
  const { entries, metadata } = parseHeader(file, json, bytes.byteLength - base);
  const tensors = new Map<string, HostTensor>();
  for (const [name, e] of entries) {
    tensors.set(name, decode(file, name, e, bytes.subarray(base + e.data_offsets[0], base + e.data_offsets[1])));
  }
  return { tensors, metadata };
}

/**
 * Reads a safetensors file tensor by tensor through a file handle, so files beyond Node's buffer size limit
 * (multi-GB shards) load as long as each tensor fits. `only` restricts which tensors are read.
 */
export async function readSafetensors(file: string, only?: (name: string) => boolean): Promise<SafetensorsFile> {
  const tensors = new Map<string, HostTensor>();
  let metadata: Record<string, string> | null = null;
  for await (const entry of safetensorsEntries(file, only, (m) => (metadata = m))) tensors.set(entry.name, entry.tensor);
  return { tensors, metadata };
}

/** One tensor of a file, as it is read. */
export interface TensorEntry {
  name: string;
  tensor: HostTensor;
}

/**
 * The tensors of a safetensors file one at a time, in file order: only one tensor's bytes and its decoded values are
 * held at once, so a caller that hands each tensor on (to a GPU) never holds the whole file. `onMetadata` receives the
 * `__metadata__` map (or null) before the first tensor.
 */
export async function* safetensorsEntries(file: string, only?: (name: string) => boolean, onMetadata?: (m: Record<string, string> | null) => void): AsyncGenerator<TensorEntry> {
  const fh = await open(file, 'r');
  try {
    const { size } = await fh.stat();
    if (size < 8) throw new SafetensorsError(file, 'too short to be a safetensors file');
    const lenBuf = Buffer.alloc(8);
    await fh.read(lenBuf, 0, 8, 0);
    const headerLen = Number(lenBuf.readBigUInt64LE(0));
    if (headerLen > MAX_HEADER_BYTES || 8 + headerLen > size) throw new SafetensorsError(file, `header length ${headerLen} exceeds the file`);
    const headerBuf = Buffer.alloc(headerLen);
    await fh.read(headerBuf, 0, headerLen, 8);
    const base = 8 + headerLen;
    const { entries, metadata } = parseHeader(file, headerBuf.toString('utf8'), size - base);
    onMetadata?.(metadata);
    for (const [name, e] of entries) {
      if (only && !only(name)) continue;
      const n = e.data_offsets[1] - e.data_offsets[0];
      const buf = new Uint8Array(n);
      let done = 0;
      while (done < n) {
        const { bytesRead } = await fh.read(buf, done, n - done, base + e.data_offsets[0] + done);
        if (bytesRead === 0) throw new SafetensorsError(file, `unexpected end of file in tensor '${name}'`);
        done += bytesRead;
      }
      yield { name, tensor: decode(file, name, e, buf) };
    }
  } finally {
    await fh.close();
  }
}

/** A tensor to write whose values are fetched when its turn comes: a writer then holds one tensor's values at a time. */
export interface LazyTensor {
  dtype: WriteTensor['dtype'];
  shape: number[];
  values(): Promise<WriteTensor['data']>;
}

/** Bytes per value of each written dtype. */
const WRITE_BYTES: Record<WriteTensor['dtype'], number> = { bfloat16: 2, int32: 4, float32: 4 };

const countOf = (shape: number[]) => shape.reduce((a, b) => a * b, 1);

/** Tensor order and header of a file we write, as the safetensors crate lays them out (from dtypes and shapes alone). */
function layout<T extends { dtype: WriteTensor['dtype']; shape: number[] }>(tensors: Map<string, T>, metadata: Record<string, string> | null): { order: [string, T][]; header: Uint8Array } {
  const order = [...tensors.entries()].sort(([an, a], [bn, b]) =>
    WRITE_DTYPE_RANK[b.dtype] - WRITE_DTYPE_RANK[a.dtype] || (an < bn ? -1 : an > bn ? 1 : 0));
  const header: Record<string, unknown> = {};
  if (metadata) header.__metadata__ = metadata;
  let offset = 0;
  for (const [name, t] of order) {
    const bytes = countOf(t.shape) * WRITE_BYTES[t.dtype];
    header[name] = { dtype: WRITE_DTYPE_NAME[t.dtype], shape: t.shape, data_offsets: [offset, offset + bytes] };
    offset += bytes;
  }
  const json = new TextEncoder().encode(JSON.stringify(header));
  // The crate pads the header with spaces so the data starts 8-byte aligned.
  const padded = new Uint8Array(Math.ceil(json.length / 8) * 8).fill(0x20);
  padded.set(json);
  return { order, header: padded };
}

/** A tensor's values as bytes, checked against the dtype and shape the header gave it. */
function bytesOf(name: string, t: { dtype: WriteTensor['dtype']; shape: number[] }, data: WriteTensor['data']): Uint8Array {
  if (data.length !== countOf(t.shape)) throw new Error(`safetensors: tensor '${name}' has ${data.length} values for shape [${t.shape.join(', ')}]`);
  if (!(data instanceof WRITE_ARRAY[t.dtype])) throw new Error(`safetensors: tensor '${name}' data does not match dtype ${t.dtype}`);
  return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
}

/** Serialises F32/I32/BF16 tensors into one buffer, byte-identical to `safetensors.torch.save_file`. */
export function serializeSafetensors(tensors: Map<string, WriteTensor>, metadata: Record<string, string> | null = null): Uint8Array {
  const { order, header } = layout(tensors, metadata);
  const parts = order.map(([name, t]) => bytesOf(name, t, t.data));
  const out = new Uint8Array(8 + header.length + parts.reduce((n, p) => n + p.length, 0));
  new DataView(out.buffer).setBigUint64(0, BigInt(header.length), true);
  out.set(header, 8);
  let at = 8 + header.length;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/**
 * Writes F32/I32/BF16 tensors to `file` tensor by tensor (no whole-file buffer), through a temporary name and a
 * rename so a killed process never leaves a truncated file under the real name.
 */
export async function writeSafetensors(file: string, tensors: Map<string, WriteTensor>, metadata: Record<string, string> | null = null): Promise<void> {
  const lazy = new Map<string, LazyTensor>([...tensors].map(([name, t]) => [name, { dtype: t.dtype, shape: t.shape, values: async () => t.data }]));
  await writeSafetensorsLazily(file, lazy, metadata);
}

/**
 * `writeSafetensors` with each tensor's values fetched in turn, in file order: a 7B model goes from the GPU to disk with
 * one tensor in host memory. A failure (a tensor that does not match its dtype or shape) leaves no file behind.
 */
export async function writeSafetensorsLazily(file: string, tensors: Map<string, LazyTensor>, metadata: Record<string, string> | null = null): Promise<void> {
  const { order, header } = layout(tensors, metadata);
  const tmp = `${file}.tmp-${process.pid}`;
  const fh = await open(tmp, 'w');
  try {
    const len = Buffer.alloc(8);
    len.writeBigUInt64LE(BigInt(header.length), 0);
    await fh.write(len);
    await fh.write(header);
    for (const [name, t] of order) await fh.write(bytesOf(name, t, await t.values()));
  } catch (err) {
    await fh.close();
    await rm(tmp, { force: true });
    throw withFileNamed(err, file, 8 + header.length + order.reduce((n, [, t]) => n + countOf(t.shape) * WRITE_BYTES[t.dtype], 0));
  }
  await fh.close();
  await rename(tmp, file);
}

/**
 * A failed write of `file` (`bytes` long) said with its name and size: a full disk's ENOSPC names neither, and the
 * part written is gone by the time the runner measures the disk. Node's `code` is kept (the runner reads ENOSPC).
 */
function withFileNamed(err: unknown, file: string, bytes: number): unknown {
  if (!(err instanceof Error) || !('code' in err)) return err;
  const size = bytes >= 1e9 ? `${(bytes / 1e9).toFixed(1)} GB` : bytes >= 1e6 ? `${(bytes / 1e6).toFixed(1)} MB` : `${Math.round(bytes / 1e3)} kB`;
  return Object.assign(new Error(`writing ${path.basename(file)} (${size}): ${err.message}`, { cause: err }), { code: err.code });
}

/** Name of the shard index Hugging Face writes beside sharded weights. */
export const SHARD_INDEX = 'model.safetensors.index.json';
export const SINGLE_FILE = 'model.safetensors';

/**
 * Reads a model folder's weights: `model.safetensors`, or every shard named by
 * `model.safetensors.index.json` (its `weight_map`), merged into one map in index order.
 */
export async function readModelWeights(dir: string): Promise<Map<string, HostTensor>> {
  const all = new Map<string, HostTensor>();
  for await (const { name, tensor } of modelWeightEntries(dir)) all.set(name, tensor);
  return all;
}

/**
 * A model folder's weights one tensor at a time, shard after shard (see safetensorsEntries): what loads a checkpoint
 * larger than host memory onto a GPU. Every tensor the shard index lists must be found in its shard.
 */
export async function* modelWeightEntries(dir: string): AsyncGenerator<TensorEntry> {
  const single = path.join(dir, SINGLE_FILE);
  const index = path.join(dir, SHARD_INDEX);
  if (existsSync(single)) {
    yield* safetensorsEntries(single);
    return;
  }
  if (!existsSync(index)) throw new Error(`${dir}: no ${SINGLE_FILE} or ${SHARD_INDEX} found`);
  let parsed: { weight_map?: Record<string, string> };
  try {
    parsed = JSON.parse(await readFile(index, 'utf8'));
  } catch (err) {
    throw new Error(`${index}: not valid JSON (${(err as Error).message})`);
  }
  const map = parsed.weight_map;
  if (!map || typeof map !== 'object') throw new Error(`${index}: missing "weight_map"`);
  const byShard = new Map<string, Set<string>>();
  for (const [name, shard] of Object.entries(map)) {
    if (!byShard.has(shard)) byShard.set(shard, new Set());
    byShard.get(shard)!.add(name);
  }
  for (const [shard, names] of byShard) {
    const shardPath = path.join(dir, shard);
    if (!existsSync(shardPath)) throw new Error(`${index}: shard '${shard}' is listed but missing`);
    const found = new Set<string>();
    for await (const entry of safetensorsEntries(shardPath, (n) => names.has(n))) {
      found.add(entry.name);
      yield entry;
    }
    const lost = [...names].find((n) => !found.has(n));
    if (lost !== undefined) throw new Error(`${shardPath}: tensor '${lost}' is listed in ${SHARD_INDEX} but not in the shard`);
  }
}

/**
 * The dtypes (`F32`, `BF16`, ...) of every weight a model folder stores, read from the file headers alone, or
 * undefined when the folder holds no readable weights. Synchronous: the runner's resource estimates call it.
 */
export function storedDtypes(dir: string): Set<string> | undefined {
  try {
    const index = path.join(dir, SHARD_INDEX);
    const files = existsSync(path.join(dir, SINGLE_FILE))
      ? [SINGLE_FILE]
      : [...new Set(Object.values((JSON.parse(readFileSync(index, 'utf8')) as { weight_map: Record<string, string> }).weight_map))];
    const dtypes = new Set<string>();
    for (const name of files) {
      const file = path.join(dir, name);
      const fd = openSync(file, 'r');
      try {
        const lenBuf = Buffer.alloc(8);
        readSync(fd, lenBuf, 0, 8, 0);
        const headerLen = Number(lenBuf.readBigUInt64LE(0));
        const size = fstatSync(fd).size;
        if (headerLen > MAX_HEADER_BYTES || 8 + headerLen > size) return undefined;
        const header = Buffer.alloc(headerLen);
        readSync(fd, header, 0, headerLen, 8);
        // The readers' own header check: a header it would refuse gives no dtypes.
        for (const [, e] of parseHeader(file, header.toString('utf8'), size - 8 - headerLen).entries) dtypes.add(e.dtype);
      } finally {
        closeSync(fd);
      }
    }
    return dtypes.size > 0 ? dtypes : undefined;
  } catch {
    return undefined;
  }
}

/** Writes a small JSON file atomically (temporary name, then rename). */
export async function writeJsonFile(file: string, value: unknown): Promise<void> {
  const tmp = `${file}.tmp-${process.pid}`;
  await writeFile(tmp, JSON.stringify(value, null, 2) + '\n');
  await rename(tmp, file);
}

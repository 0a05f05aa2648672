// Cache keys: canonical JSON of what determines a stage's result, hashed with SHA-256.
import { createHash } from 'node:crypto';
import type { JsonValue } from './json.ts';

/** Prefix of every hashed key recipe; bump it when the recipe changes so no old entry is ever mistaken for a new one. */
const KEY_FORMAT = 'pausepipe-stage-key-v1';

/**
 * JSON with object keys sorted (recursively, by UTF-16 code units), no whitespace, `-0` written as `0`.
 * Properties whose value is `undefined` are left out, as JSON.stringify does, so an unset optional
 * parameter and an absent one give the same text. Anything JSON cannot carry (NaN, Infinity,
 * functions, class instances, cycles) throws a TypeError naming where it sits.
 */
export function canonicalJson(value: JsonValue): string {
  return writeCanonical(value, '$', new Set());
}

function writeCanonical(value: unknown, where: string, open: Set<object>): string {
  if (value === null) return 'null';
  switch (typeof value) {
    case 'boolean':
      return value ? 'true' : 'false';
    case 'string':
      return JSON.stringify(value);
    case 'number':
      if (!Number.isFinite(value)) throw new TypeError(`canonicalJson: ${where} is ${value}, which JSON cannot represent`);
      // JSON.stringify already writes integers without a fraction and is exact for doubles; only -0 needs care.
      return Object.is(value, -0) ? '0' : JSON.stringify(value);
    case 'object':
      return writeContainer(value as object, where, open);
    default:
      throw new TypeError(`canonicalJson: ${where} is ${value === undefined ? 'undefined' : `a ${typeof value}`}, not a JSON value`);
  }
}

function writeContainer(value: object, where: string, open: Set<object>): string {
  if (open.has(value)) throw new TypeError(`canonicalJson: ${where} contains itself`);
  open.add(value);
  try {
    if (Array.isArray(value)) {
      return `[${value.map((item, i) => writeCanonical(item, `${where}[${i}]`, open)).join(',')}]`;
    }
    const proto: unknown = Object.getPrototypeOf(value);
    if (proto !== Object.prototype && proto !== null) {
      throw new TypeError(`canonicalJson: ${where} is a ${value.constructor?.name ?? 'non-plain object'}, not a plain object`);
    }
    const record = value as Record<string, unknown>;
    const names = Object.keys(record).filter((name) => record[name] !== undefined).sort();
    return `{${names.map((name) => `${JSON.stringify(name)}:${writeCanonical(record[name], `${where}.${name}`, open)}`).join(',')}}`;
  } finally {
    open.delete(value);
  }
}

/** SHA-256 as lowercase hex; strings are hashed as UTF-8. */
export function sha256(text: string | Uint8Array): string {
  return createHash('sha256').update(text).digest('hex');
}

/** Everything that determines a stage's result. The stage's name is deliberately absent: renaming must not re-run. */
export interface KeyIngredients {
  kind: string;
  kindVersion: number;
  params: Record<string, JsonValue>;
  /** Input name → upstream keys (in order). */
  inputs: Record<string, string[]>;
  /** Workspace-relative path → content hash (from FileHasher). */
  files: Record<string, string>;
  /**
   * A plugin kind's source files (relative to the plugin's folder) → content hash; absent for built-in kinds, whose
   * version lock stands for their code, so their keys are what they were before plugins had code in their keys.
   */
  code?: Record<string, string>;
  /**
   * A partial result's inputs that did not finish: input name → their keys (in input order; `inputs` still lists
   * every key). Absent for a full result, so full keys are what they were before partial results existed.
   */
  missing?: Record<string, string[]>;
}

/** The cache key of a stage: 64 hex characters. Only the seven ingredients count, whatever else the object carries. */
export function stageKey(ing: KeyIngredients): string {
  const recipe = {
    kind: ing.kind, kindVersion: ing.kindVersion, params: ing.params, inputs: ing.inputs, files: ing.files,
    ...(ing.code ? { code: ing.code } : {}), ...(ing.missing ? { missing: ing.missing } : {}),
  };
  return sha256(`${KEY_FORMAT}\n${canonicalJson(recipe)}`);
}

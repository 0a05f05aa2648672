// The contract every stage kind implements: what the runner needs to validate, hash, schedule and run it.
import type { JsonValue } from '../runtime/json.ts';

/** What a stage occupies while it runs; the scheduler never over-commits a slot type. */
export interface Resources {
  /** CPU slots (the `--jobs` budget). Default 1. */
  cpu?: number;
  /** GPU slots; a machine with a usable GPU has 1. Default 0. */
  gpu?: number;
}

/** One declared input of a kind, e.g. `model` or `data`. */
export interface InputSpec {
  description: string;
  /** Accepts a collection (`eval[*]`) instead of exactly one stage. */
  many?: boolean;
  /** May be omitted in the .pipe file. */
  optional?: boolean;
}

/** A finished upstream stage as seen by a downstream stage. */
export interface ArtifactRef {
  /** Generated stage name, e.g. `warm[embed=true,head=false]`. */
  stage: string;
  key: string;
  kind: string;
  /** Folder holding the upstream artifacts (read only). */
  dir: string;
  /** Loop variables of the upstream instance; {} outside a `for each`. */
  variant: Record<string, JsonValue>;
  params: Record<string, JsonValue>;
  metrics: Record<string, JsonValue>;
}

export interface Progress {
  step: number;
  total?: number;
  /** Short text shown beside the bar, e.g. `loss 1.234`. */
  message?: string;
}

export interface StageContext<P = Record<string, JsonValue>> {
  /** Generated stage name. */
  name: string;
  key: string;
  params: P;
  variant: Record<string, JsonValue>;
  /** Inputs by declared name; a single input is an array of one. */
  inputs: Record<string, ArtifactRef[]>;
  /** Empty folder for this stage's artifacts; committed to the cache when run() resolves. */
  outDir: string;
  /** Folder kept across a killed run of the same key (training checkpoints); removed after commit. */
  scratchDir: string;
  /** Project root: where the .pipe file lives; relative paths in params resolve against it. */
  workspace: string;
  /** Backend asked for with --backend (undefined: pick the best available). */
  backend?: string;
  log(line: string): void;
  progress(p: Progress): void;
  signal: AbortSignal;
}

export interface StageResult {
  /** Numbers, curves and facts the report and `show` read; stored in the manifest. */
  metrics?: Record<string, JsonValue>;
}

/** JSON Schema of a kind's parameters: an object schema, every property with a description. */
export interface ParamsSchema {
  type: 'object';
  properties: Record<string, Record<string, unknown> & { description: string }>;
  required?: string[];
  additionalProperties: false;
  [extra: string]: unknown;
}

export interface StageKind<P = any> { // eslint-style escape: each kind narrows P to its own params type
  name: string;
  /** Bump when the implementation changes results; part of every key of this kind. */
  version: number;
  description: string;
  params: ParamsSchema;
  inputs: Record<string, InputSpec>;
  resources?(params: P): Resources;
  /** Workspace files or folders the stage reads, hashed by content into its key. */
  workspaceFiles?(params: P): string[];
  /** Run in a worker process of its own (default true); `sh` runs in-process since its command is already a child. */
  isolated?: boolean;
  run(ctx: StageContext<P>): Promise<StageResult>;
}

// The contract every stage kind implements: what the runner needs to validate, hash, schedule and run it.
import type { JsonValue } from '../runtime/json.ts';

/** What a stage occupies while it runs; the scheduler never over-commits a slot type. */
export interface Resources {
  /** CPU slots (the `--jobs` budget). Default 1. */
  cpu?: number;
  /** GPUs; a machine with a usable GPU has 1. Default 0. */
  gpu?: number;
  /**
   * Estimated GPU memory of a one-GPU stage. With it, stages share a GPU while their estimates fit its memory;
   * without it a GPU stage holds its GPU alone (unless `--stages-per-gpu` says otherwise).
   */
  gpuMemoryMiB?: number;
  /**
   * The GPU estimate with activation checkpointing, for a training stage that turns it on by itself when
   * `gpuMemoryMiB` exceeds its GPU's memory (sft with `gradient_checkpointing` unset): on such a GPU this is what it
   * takes, and stages share the GPU by it.
   */
  gpuMemoryCheckpointedMiB?: number;
  /**
   * Estimated memory of the stage's process, in MiB, where it runs without a GPU (a model stage then holds its model in
   * host memory). With it, such stages start only while their estimates fit the memory free when the run began.
   */
  hostMemoryMiB?: number;
  /**
   * Why the stage cannot run where the wasm backend holds its model (a machine without a GPU or tfjs-node): its
   * tensors alone exceed wasm's 4 GiB. The stage refuses itself for it when it starts; `plan` and `run` say it first.
   */
  beyondWasm?: string;
}

/** A model folder's config.json, as Hugging Face writes it. */
export type ModelConfig = Record<string, unknown>;

/**
 * One declared input of a kind, e.g. `model` or `data`.
 * The key `'*'` in `StageKind.inputs` accepts inputs of any name with that spec (`sh` takes any name:
 * `stage x = sh(prep: prep, runs: train[*]) {...}`); named keys still take precedence.
 */
export interface InputSpec {
  description: string;
  /** Accepts a collection (`eval[*]`) instead of exactly one stage. */
  many?: boolean;
  /** May be omitted in the .pipe file. */
  optional?: boolean;
  /** Takes a single stage as well as a collection (`sh` inputs); `many` is then ignored. */
  anyArity?: boolean;
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

/**
 * An upstream stage that did not finish in this run, as a kind that takes partial inputs (`partialInputs`) sees it:
 * what it would have been, and why it is not there.
 */
export interface MissingInput {
  /** Generated stage name, e.g. `eval[lr=0.1]`. */
  stage: string;
  /** The key it would have had (nothing is stored under it). */
  key: string;
  kind: string;
  variant: Record<string, JsonValue>;
  params: Record<string, JsonValue>;
  /** `failed`: it ran (or could not) and failed; `skipped`: it never ran, since something it needs did not finish. */
  status: 'failed' | 'skipped';
  /** The failure's first line, or why it was skipped (`upstream sft[lr=0.1] failed`). */
  reason: string;
}

export interface Progress {
  step: number;
  total?: number;
  /** Short text shown beside the bar, e.g. `loss 1.234`. */
  message?: string;
}

/**
 * Facts about the run a stage is part of, for provenance. Never part of a key: a cached result keeps the facts
 * of the run that made it.
 */
export interface RunInfo {
  /** The entry .pipe file, relative to the workspace. */
  pipeline: string;
  /** Overrides of the file's lets given on the command line (`-p lr=1e-4`), by let name or dotted path. */
  overrides: Record<string, JsonValue>;
}

/** The plain-data part of a stage's context: also what a worker process receives over IPC. */
export interface StageContextData<P = Record<string, JsonValue>> {
  /** Generated stage name. */
  name: string;
  key: string;
  params: P;
  variant: Record<string, JsonValue>;
  /** Inputs by declared name; a single input is an array of one. */
  inputs: Record<string, ArtifactRef[]>;
  /**
   * Only for a kind with `partialInputs`, in a run that went on after failures: the upstream stages that did not
   * finish, by input name (those inputs' finished stages are in `inputs`). Absent when nothing is missing.
   */
  missing?: Record<string, MissingInput[]>;
  /** Empty folder for this stage's artifacts; committed to the cache when run() resolves. */
  outDir: string;
  /** Folder kept across a killed run of the same key (training checkpoints); removed after commit. */
  scratchDir: string;
  /** Project root: where the .pipe file lives; relative paths in params resolve against it. */
  workspace: string;
  /** Backend asked for with --backend (undefined: pick the best available). */
  backend?: string;
  /**
   * GPUs this machine's runner gave the stage, as CUDA_VISIBLE_DEVICES lists them (a worker gets them in its
   * environment already; `sh` passes them to its command). Absent when it holds no GPU or runs elsewhere; empty in a
   * run given `--gpus 0`, whose stages are shown no GPU at all.
   */
  gpus?: string[];
  /** The run this stage is part of (absent when a stage is run outside the runner, e.g. in a unit test). */
  run?: RunInfo;
}

export interface StageContext<P = Record<string, JsonValue>> extends StageContextData<P> {
  log(line: string): void;
  progress(p: Progress): void;
  /**
   * A line for the person at the terminal, said once per run however many stages send it (e.g. which backend
   * runs the model, or that the one asked for was unavailable). Absent where no run reports (library use).
   */
  notice?(line: string): void;
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

/** A file of a committed cache entry, relative to its artifacts folder. */
export interface StoredOutput {
  path: string;
  size: number;
  sha256: string;
}

/** What `StageKind.restore` gets on a cache hit. */
export interface RestoreContext<P = Record<string, JsonValue>> {
  name: string;
  params: P;
  workspace: string;
  /** The committed artifacts folder (read only). */
  artifactsDir: string;
  /** Every file under artifactsDir with its content hash, from the manifest. */
  outputs: StoredOutput[];
  /** Content hash of a workspace file through the runner's stat cache (no re-read when unchanged); undefined when missing. */
  hashFile(absPath: string): Promise<string | undefined>;
}

/** What `StageKind.check` gets besides the params: where the pipeline lives and what the stage is given. */
export interface CheckContext {
  /** Project root, as in StageContext. */
  workspace: string;
  /** Names of the inputs the stage is given in the .pipe file. */
  inputs: string[];
  /** Each input's upstream stages as the pipeline expands them: generated names and loop variables. */
  upstream: Record<string, { name: string; variant: Record<string, JsonValue> }[]>;
  /** Absolute paths of the pipeline's own files (the entry file and its includes). */
  pipelineFiles: string[];
  /** Absolute path of the .pipe file that declares the stage. */
  file: string;
  /** Workspace-relative paths (with `/`) that the pipeline's stages write: a dep in one need not exist before a run. */
  outputs: string[];
  /** Statements were left out for their syntax errors: a stage among them may write a path `outputs` does not list. */
  outputsIncomplete?: boolean;
}

/** A mistake `StageKind.check` finds; validation turns it into a diagnostic at the parameter or input it names. */
export interface CheckProblem {
  code: 'E_PARAM_VALUE' | 'E_UNSAFE_OUT' | 'E_DUPLICATE_INPUT' | 'E_MISSING_DEP';
  /** Default `error`; a warning leaves the pipeline runnable. */
  severity?: 'warning';
  message: string;
  /** Path into the params (`['outs', '0']`, `['patterns', '(']`); the diagnostic points at that value. */
  param?: string[];
  /** The last step of `param` is an object key that is itself wrong (a pattern used as a key): point at the key. */
  atKey?: boolean;
  /** The input whose name is wrong. */
  input?: string;
  notes?: string[];
}

// `any` by default: the registry holds kinds of different param types, and run() is typed where each kind narrows P.
export interface StageKind<P = any> {
  name: string;
  /** Bump when the implementation changes results; part of every key of this kind. */
  version: number;
  description: string;
  params: ParamsSchema;
  inputs: Record<string, InputSpec>;
  /**
   * What a stage occupies while it runs. `inputs` are its finished upstream artifacts when the runner is about to
   * schedule it (an estimate may read e.g. the model's config.json); absent when asked earlier.
   */
  resources?(params: P, inputs?: Record<string, ArtifactRef[]>): Resources;
  /**
   * The config.json of the model folder the stage will write, foreseen before it runs from its params and its input
   * models' configs (by input name, undefined where unknown), so `plan` estimates the memory of the stages downstream
   * of one not computed yet; undefined when it cannot say. `workspace`: where relative paths in params resolve.
   */
  plannedModelConfig?(params: P, inputs: Record<string, (ModelConfig | undefined)[]>, workspace: string): ModelConfig | undefined;
  /**
   * How much work a stage does next to other stages of this kind, in a unit the kind chooses (sft: examples trained
   * on); undefined when unknown. `inputs`: its finished upstream artifacts, absent while one is not computed yet.
   * Only the run's ETA uses it: a 100-update training is expected to take a fifth of a 500-update one that finished.
   */
  work?(params: P, inputs?: Record<string, ArtifactRef[]>): number | undefined;
  /**
   * Mistakes a JSON Schema cannot express, reported at check time instead of failing the run (an invalid regular
   * expression, an `sh` out that would overwrite its own dep). Called with params that passed the schema.
   */
  check?(params: P, ctx: CheckContext): CheckProblem[];
  /** Workspace files or folders the stage reads, hashed by content into its key. */
  workspaceFiles?(params: P): string[];
  /** What to tell the user when one of workspaceFiles is missing (e.g. where to get a dataset). */
  missingFileHint?(params: P, workspaceRelativePath: string, absolutePath: string): string;
  /** Metrics shown, in this order, in the tables people read (`run`, `show`); default: every scalar metric. */
  tableMetrics?: string[];
  /** Artifact files worth opening after a run (e.g. `report.html`); the CLI prints their paths. */
  highlights?: string[];
  /**
   * Under `--keep-going`, run once every upstream stage has settled if at least one input finished, with the others
   * in `StageContext.missing` (the report: a table of the variants that finished). The result is kept under a key of
   * its own, feeds no stage, and the run after one where everything finishes computes the full result.
   */
  partialInputs?: boolean;
  /** Run in a worker process of its own (default true); `sh` runs in-process since its command is already a child. */
  isolated?: boolean;
  run(ctx: StageContext<P>): Promise<StageResult>;
  /**
   * Workspace paths the stage writes besides its artifacts (`sh` outs). A downstream stage whose workspaceFiles
   * lie at or under one of these (and that depends on this stage through its inputs) has them covered by this
   * stage's key instead of hashing them; `watch` ignores them.
   */
  workspaceOutputs?(params: P): string[];
  /**
   * Called on every cache hit before downstream stages start: puts workspace side effects back from the cache
   * (`sh` copies its outs into the workspace when missing or different). Returns the workspace paths it rewrote.
   */
  restore?(ctx: RestoreContext<P>): Promise<string[]>;
  /**
   * Project-relative files or folders whose content decides this kind's results; their fingerprint is recorded
   * next to `version` in stages/versions.lock.json (default: `stages/<name with _ as ->.ts`).
   */
  sources?: string[];
}

// The expanded, validated pipeline: plain data handed from the grammar phase to hashing and planning.
import type { SourceSpan } from '../grammar/diagnostics.ts';
import type { JsonValue } from './json.ts';

export interface InputBinding {
  /** Generated names of the upstream stages, in declaration/variant order. */
  stages: string[];
  /** True for a collection (`eval[*]`), false for a single reference. */
  many: boolean;
  span: SourceSpan;
}

export interface StageInstance {
  /** Unique generated name, e.g. `warm[embed=true,head=false,lora=true]`; plain `name` outside loops. */
  name: string;
  /** The name as declared in the file, e.g. `warm`. */
  declaredName: string;
  kind: string;
  /** Resolved parameters with schema defaults applied. */
  params: Record<string, JsonValue>;
  inputs: Record<string, InputBinding>;
  /** Loop variables of this instance; {} outside a `for each`. */
  variant: Record<string, JsonValue>;
  span: SourceSpan;
}

export interface Pipeline {
  /** Absolute path of the entry .pipe file. */
  file: string;
  /** Folder relative paths resolve against (the entry file's folder's project root). */
  workspace: string;
  /** Stages in a topological order (inputs before users). */
  stages: StageInstance[];
  /** Every file read (entry and includes), for watching and for code frames. */
  sources: Record<string, string>;
}

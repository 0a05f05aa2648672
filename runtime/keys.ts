// The Hashed phase: every stage instance gets its key ingredients (params, upstream keys, workspace file hashes) and key.
import path from 'node:path';
import { FileMissingError } from '../cache/file-hash.ts';
import type { StageKind } from '../stages/kind.ts';
import { stageKey, type KeyIngredients } from './hash.ts';
import { kindCode } from './kind-code.ts';
import type { Pipeline, StageInstance } from './pipeline.ts';

/** Anything that hashes workspace files by content (the cache's FileHasher). */
export interface ContentHasher {
  hash(absPath: string): Promise<string>;
}

export interface KeyedStage {
  key: string;
  ingredients: KeyIngredients;
}

/** Why a stage has no key: a missing dependency file, or an upstream without a key. */
export interface UnkeyedStage {
  error: string;
}

export type StageKeys = Map<string, KeyedStage | UnkeyedStage>;

export function isKeyed(k: KeyedStage | UnkeyedStage | undefined): k is KeyedStage {
  return k !== undefined && 'key' in k;
}

/** Workspace-relative, `/`-separated: how files are named inside keys, the same on every machine. */
export function workspaceRelative(workspace: string, p: string): string {
  return path.relative(workspace, path.resolve(workspace, p)).split(path.sep).join('/');
}

function within(child: string, parent: string): boolean {
  return child === parent || child.startsWith(`${parent}/`);
}

/** Names of every stage the given one reads from, directly or through others. */
function ancestors(stage: StageInstance, byName: Map<string, StageInstance>): Set<string> {
  const seen = new Set<string>();
  const todo = [stage];
  while (todo.length > 0) {
    for (const binding of Object.values(todo.pop()!.inputs)) {
      for (const up of binding.stages) {
        if (seen.has(up)) continue;
        seen.add(up);
        const s = byName.get(up);
        if (s) todo.push(s);
      }
    }
  }
  return seen;
}

/** Workspace-relative path → the stages whose `workspaceOutputs` write it. */
function outProducers(pipeline: Pipeline, kinds: Record<string, StageKind>): Map<string, string[]> {
  const producers = new Map<string, string[]>();
  for (const s of pipeline.stages) {
    for (const out of kinds[s.kind]?.workspaceOutputs?.(s.params) ?? []) {
      const rel = workspaceRelative(pipeline.workspace, out);
      producers.set(rel, [...(producers.get(rel) ?? []), s.name]);
    }
  }
  return producers;
}

/**
 * Stage name → why it cannot run, for each stage whose workspace out another stage writes too: the two would overwrite
 * each other (a loop's outs need the loop variables). These stages get no key; `check` reports the same.
 */
export function sharedOuts(pipeline: Pipeline, kinds: Record<string, StageKind>, producers = outProducers(pipeline, kinds)): Map<string, string> {
  const errors = new Map<string, string>();
  for (const s of pipeline.stages) {
    for (const out of kinds[s.kind]?.workspaceOutputs?.(s.params) ?? []) {
      const others = producers.get(workspaceRelative(pipeline.workspace, out))!.filter((n) => n !== s.name);
      if (others.length > 0 && !errors.has(s.name)) errors.set(s.name, `out ${workspaceRelative(pipeline.workspace, out)} is also written by ${others.join(', ')}`);
    }
  }
  return errors;
}

/**
 * Keys of every stage, in the pipeline's topological order. A workspace file that an ancestor writes
 * (its `workspaceOutputs`) is not hashed: the ancestor's key, part of this key through the inputs, stands for it.
 */
export async function computeKeys(pipeline: Pipeline, kinds: Record<string, StageKind>, hasher: ContentHasher): Promise<StageKeys> {
  const byName = new Map(pipeline.stages.map((s) => [s.name, s]));
  const producers = outProducers(pipeline, kinds);
  const shared = sharedOuts(pipeline, kinds, producers);
  // Variants often share their dependency files: hash each path once per call.
  const hashes = new Map<string, Promise<string>>();
  const hashOnce = (rel: string) => {
    let h = hashes.get(rel);
    if (!h) {
      h = hasher.hash(path.resolve(pipeline.workspace, rel));
      hashes.set(rel, h);
      h.catch(() => undefined);
    }
    return h;
  };

  const keys: StageKeys = new Map();
  type Hashed = { s: StageInstance; error: string } | { s: StageInstance; files: Record<string, string> };
  const pending = pipeline.stages.map(async (s): Promise<Hashed> => {
    const kind = kinds[s.kind];
    if (!kind) return { s, error: `unknown stage kind \`${s.kind}\`` };
    const clash = shared.get(s.name);
    if (clash !== undefined) return { s, error: clash };
    const deps = (kind.workspaceFiles?.(s.params) ?? []).map((d) => workspaceRelative(pipeline.workspace, d));
    let ups: Set<string> | undefined;
    const covered = (rel: string) => {
      // The dep itself or any folder above it may be an out: look each prefix up rather than scanning every out.
      for (let at = rel; ; ) {
        const names = producers.get(at);
        if (names) {
          ups ??= ancestors(s, byName);
          if (names.some((n) => ups!.has(n))) return true;
        }
        const up = path.posix.dirname(at);
        if (up === at || up === '.') return false;
        at = up;
      }
    };
    const files: Record<string, string> = {};
    try {
      for (const rel of deps) if (!covered(rel)) files[rel] = await hashOnce(rel);
    } catch (e) {
      if (!(e instanceof FileMissingError)) throw e;
      const rel = workspaceRelative(pipeline.workspace, e.path);
      const writers = [...producers].filter(([out]) => within(rel, out)).flatMap(([, n]) => n);
      const kindHint = kind.missingFileHint?.(s.params, rel, e.path);
      // The absolute path, since a relative one resolves from the workspace, which need not be the .pipe file's folder.
      const writtenBy = writers.length > 0 ? `; written by ${writers.join(', ')}: make it an input of this stage` : '';
      const hint = writers.length === 0 && kindHint ? `\n${kindHint}` : '';
      return { s, error: `file ${rel} missing (looked for ${e.path}${writtenBy})${hint}` };
    }
    return { s, files };
  });
  // Hash files concurrently, then assign keys in topological order (a key needs its upstream keys).
  for (const done of await Promise.all(pending)) {
    const { s } = done;
    if ('error' in done) {
      keys.set(s.name, { error: done.error });
      continue;
    }
    const inputs: Record<string, string[]> = {};
    let missing: string | undefined;
    for (const [name, binding] of Object.entries(s.inputs)) {
      inputs[name] = [];
      for (const up of binding.stages) {
        const k = keys.get(up);
        if (isKeyed(k)) inputs[name].push(k.key);
        else missing ??= up;
      }
    }
    if (missing !== undefined) {
      keys.set(s.name, { error: `upstream ${missing} has no key` });
      continue;
    }
    const kind = kinds[s.kind]!;
    const code = kindCode(kind);
    const ingredients: KeyIngredients = { kind: s.kind, kindVersion: kind.version, params: s.params, inputs, files: done.files, ...(code ? { code } : {}) };
    keys.set(s.name, { key: stageKey(ingredients), ingredients });
  }
  return keys;
}

/**
 * The key of a partial result (a `partialInputs` kind run without some inputs): the full key's ingredients plus the
 * missing inputs' keys by input name, so it is never taken for the full result, and a run missing the same inputs
 * again finds it. The failures' messages are not in it: the same inputs failing another way give the same table.
 */
export function partialKey(full: KeyedStage, missing: Record<string, string[]>): KeyedStage {
  const ingredients: KeyIngredients = { ...full.ingredients, missing };
  return { key: stageKey(ingredients), ingredients };
}

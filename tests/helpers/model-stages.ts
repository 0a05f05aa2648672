// Test helpers for the model stage kinds: tiny model folders made by init_model and small dataset folders.
import type { JsonValue } from '../../runtime/json.ts';
import { writeDataset, type DatasetSplits } from '../../stages/data/dataset.ts';
import { INIT_MODEL, type InitModelParams } from '../../stages/init-model.ts';
import type { ArtifactRef, StageKind } from '../../stages/kind.ts';
import { artifactRef, makeContext, tempDir, type ContextOptions } from '../stages/data/stage-context.ts';

/** Sums of small numbers with GSM8K-style answers; every answer has the same length. */
export function sumRows(n: number, offset = 0): { question: string; answer: string }[] {
  return Array.from({ length: n }, (_, k) => {
    const a = (k + offset) % 5;
    const b = ((k + offset) * 3) % 5;
    return { question: `${a}+${b}?`, answer: `${a}+${b}=${a + b}\n#### ${a + b}` };
  });
}

/** A dataset artifact folder holding these splits. */
export async function datasetFolder(splits: DatasetSplits): Promise<ArtifactRef> {
  const dir = await tempDir('dataset');
  await writeDataset(dir, splits, { source: 'test rows', seed: null });
  return artifactRef('data', 'synthetic_math', dir);
}

/** Runs a kind on a fresh context; returns the context (outDir, logs) and the result. */
export async function runKind<P>(kind: StageKind<P>, opts: ContextOptions<P> = {}) {
  const ctx = await makeContext(kind, opts);
  const result = await kind.run(ctx);
  return { ctx, result };
}

/** A from-scratch tiny model folder (built-in tokenizer) made by init_model. */
export async function tinyModelFolder(params: Partial<InitModelParams> = {}, stage = 'base'): Promise<ArtifactRef> {
  const { ctx, result } = await runKind(INIT_MODEL, { params: { preset: 'tiny', overrides: { max_position_embeddings: 128 }, seed: 1, ...params } });
  return artifactRef(stage, 'init_model', ctx.outDir, { metrics: (result.metrics ?? {}) as Record<string, JsonValue> });
}

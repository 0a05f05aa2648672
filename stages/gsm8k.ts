// Stage kind `gsm8k`: GSM8K from a local folder, checked row by row, split 90/10 into train/validation.
import { access, mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { StageContext, StageKind, StageResult } from './kind.ts';
import {
  DataError,
  readSplitFile,
  splitTrainValidation,
  writeDataset,
  type Example,
  type RowProblem,
} from './data/dataset.ts';
import { createRng } from './data/random.ts';

export interface Gsm8kParams {
  path: string;
  val_fraction: number;
  seed: number;
  limit_train: number | null;
  limit_test: number | null;
  download: boolean;
  download_url: string;
}

/** Where the files come from; the error message for a missing folder points people here. */
export const GSM8K_REPOSITORY = 'https://github.com/openai/grade-school-math';
const RAW_DATA_URL = 'https://raw.githubusercontent.com/openai/grade-school-math/master/grade_school_math/data';
const DOWNLOAD_TIMEOUT_MS = 15_000;

const SOURCE_SPLITS = ['train', 'test'] as const;
type SourceSplit = (typeof SOURCE_SPLITS)[number];

/** File names tried per split, in order: the official JSON lines, then a Hugging Face `to_json` export. */
function candidates(split: SourceSplit): string[] {
  return [`${split}.jsonl`, `${split}.json`];
}

async function exists(file: string): Promise<boolean> {
  try {
    await access(file);
    return true;
  } catch {
    return false;
  }
}

async function findSplitFile(folder: string, split: SourceSplit): Promise<string | null> {
  for (const name of candidates(split)) {
    if (await exists(path.join(folder, name))) return name;
  }
  return null;
}

export function missingFilesMessage(shownPath: string, absolute: string, missing: readonly SourceSplit[], downloadFailure?: string): string {
  const lines = [
    `GSM8K not found: ${missing.map((s) => `${s}.jsonl`).join(' and ')} missing in ${shownPath} (${absolute}).`,
    `Put the files there: download grade_school_math/data/train.jsonl and grade_school_math/data/test.jsonl`,
    `from the official GSM8K repository, ${GSM8K_REPOSITORY}, into ${absolute}.`,
    `A Hugging Face JSON export also works: train.json and test.json, as JSON lines or one JSON array each.`,
  ];
  if (downloadFailure) lines.push(`Downloading them failed: ${downloadFailure}`);
  else lines.push('Or set `download: true` to fetch them when this machine can reach GitHub.');
  return lines.join('\n');
}

/** Fetches the missing official files into the folder; throws with a short reason on any failure. */
async function download(folder: string, baseUrl: string, missing: readonly SourceSplit[], signal: AbortSignal): Promise<void> {
  await mkdir(folder, { recursive: true });
  for (const split of missing) {
    const url = `${baseUrl.replace(/\/+$/, '')}/${split}.jsonl`;
    const response = await fetch(url, { signal: AbortSignal.any([signal, AbortSignal.timeout(DOWNLOAD_TIMEOUT_MS)]) });
    if (!response.ok) throw new Error(`${url}: HTTP ${response.status}`);
    await writeFile(path.join(folder, `${split}.jsonl`), await response.text());
  }
}

export const GSM8K: StageKind<Gsm8kParams> = {
  name: 'gsm8k',
  version: 1,
  description:
    'GSM8K grade-school math problems from a local folder (train.jsonl and test.jsonl of the official repository), ' +
    'every row checked, the train file split deterministically into train and validation.',
  params: {
    type: 'object',
    properties: {
      path: {
        type: 'string',
        description: 'Folder holding train.jsonl and test.jsonl (or train.json/test.json), relative to the workspace.',
        default: 'data/gsm8k',
      },
      val_fraction: {
        type: 'number',
        minimum: 0,
        exclusiveMaximum: 1,
        description: 'Share of the train rows moved to validation: round(rows × val_fraction) rows after a seeded shuffle.',
        default: 0.1,
      },
      seed: { type: 'integer', description: 'Seed of the shuffle that picks the validation rows.', default: 42 },
      limit_train: {
        type: ['integer', 'null'],
        minimum: 1,
        description: 'Use only the first N rows of the train file (before the split), for small runs; null uses all.',
        default: null,
      },
      limit_test: {
        type: ['integer', 'null'],
        minimum: 1,
        description: 'Use only the first N rows of the test file, for small runs; null uses all.',
        default: null,
      },
      download: {
        type: 'boolean',
        description: 'When the files are missing, try to download the official ones into `path` (15 s timeout per file).',
        default: false,
      },
      download_url: {
        type: 'string',
        description: 'Base URL the download fetches train.jsonl and test.jsonl from (a mirror, if GitHub is unreachable).',
        default: RAW_DATA_URL,
      },
    },
    additionalProperties: false,
  },
  inputs: {},
  sources: ['stages/gsm8k.ts', 'stages/data/dataset.ts', 'stages/data/answer.ts', 'stages/data/random.ts'],
  workspaceFiles: (params) => [params.path],
  missingFileHint: (_params, rel, absolute) => missingFilesMessage(rel, absolute, SOURCE_SPLITS),

  async run(ctx: StageContext<Gsm8kParams>): Promise<StageResult> {
    const p = ctx.params;
    const folder = path.resolve(ctx.workspace, p.path);
    let files = await locate(folder);
    let missing = SOURCE_SPLITS.filter((s) => files[s] === null);
    if (missing.length > 0 && p.download) {
      ctx.log(`gsm8k: downloading ${missing.join(', ')} from ${p.download_url}`);
      try {
        await download(folder, p.download_url, missing, ctx.signal);
      } catch (err) {
        throw new Error(missingFilesMessage(p.path, folder, missing, (err as Error).message));
      }
      files = await locate(folder);
      missing = SOURCE_SPLITS.filter((s) => files[s] === null);
    }
    if (missing.length > 0) throw new Error(missingFilesMessage(p.path, folder, missing));

    const problems: RowProblem[] = [];
    const rows = {} as Record<SourceSplit, Example[]>;
    for (const split of SOURCE_SPLITS) {
      const name = files[split]!;
      const parsed = await readSplitFile(path.join(folder, name), path.join(p.path, name), { requireFinalAnswer: true });
      rows[split] = parsed.rows;
      problems.push(...parsed.problems);
      // An empty file (a truncated download, say) would else give a dataset that fails only later, in sft or evaluate.
      if (parsed.rows.length === 0 && parsed.problems.length === 0) problems.push({ file: path.join(p.path, name), line: 1, message: 'no rows: the file is empty' });
    }
    if (problems.length > 0) throw new DataError(`GSM8K in ${p.path} has ${problems.length} bad row(s):`, problems);

    const train = p.limit_train === null ? rows.train : rows.train.slice(0, p.limit_train);
    const test = p.limit_test === null ? rows.test : rows.test.slice(0, p.limit_test);
    const overlap = overlapNote(train, test);
    if (overlap) {
      ctx.log(overlap);
      ctx.notice?.(overlap);
    }
    const split = splitTrainValidation(train, p.val_fraction, createRng(p.seed).shuffled);
    const info = await writeDataset(
      ctx.outDir,
      { train: split.train, validation: split.validation, test },
      { source: `gsm8k ${p.path}`, seed: p.seed, extra: { source_rows: { train: rows.train.length, test: rows.test.length } } },
    );
    ctx.log(`gsm8k: train ${info.counts.train}, validation ${info.counts.validation}, test ${info.counts.test}`);
    return { metrics: { counts: info.counts, source_rows: info.source_rows! } };
  },
};

/**
 * What a researcher's own files may hold and GSM8K does not: test questions that are also training questions (their
 * accuracy measures recall), and repeated training questions. Said, not refused: it may be on purpose.
 */
export function overlapNote(train: readonly Example[], test: readonly Example[]): string | null {
  const questions = new Set(train.map((r) => r.question));
  const inBoth = test.filter((r) => questions.has(r.question)).length;
  const repeats = train.length - questions.size;
  const parts: string[] = [];
  if (inBoth > 0) parts.push(`${inBoth} of ${test.length} test questions are also train questions (their accuracy measures recall)`);
  if (repeats > 0) parts.push(`${repeats} train question${repeats === 1 ? ' is a repeat' : 's are repeats'}`);
  return parts.length === 0 ? null : `gsm8k: ${parts.join('; ')}`;
}

async function locate(folder: string): Promise<Record<SourceSplit, string | null>> {
  return { train: await findSplitFile(folder, 'train'), test: await findSplitFile(folder, 'test') };
}

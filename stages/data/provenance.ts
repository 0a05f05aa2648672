// Where a report's numbers come from: the pipeline file, the git commit, backends, date, versions and overrides.
import { execFile } from 'node:child_process';
import path from 'node:path';
import { promisify } from 'node:util';
import type { JsonValue } from '../../runtime/json.ts';
import { PAUSEPIPE_VERSION } from '../../runtime/version.ts';
import type { RunInfo } from '../kind.ts';
import type { ReportRow } from './report-table.ts';

const run = promisify(execFile);

/** The commit the workspace was at, and whether its files differed from it. */
export type GitState =
  | { commit: string; changed: number }
  | { unavailable: string };

export interface Provenance {
  /** The .pipe file relative to the workspace; null when the runner did not say (a stage run by hand). */
  pipeline: string | null;
  git: GitState;
  /** Each backend the rows name, with how many rows it ran; empty when no model stage recorded one. */
  backends: { backend: string; rows: number }[];
  /** When the report was written (ISO 8601, UTC). */
  date: string;
  versions: { pausepipe: string; node: string };
  overrides: Record<string, JsonValue>;
}

/**
 * `git rev-parse HEAD` and the count of `git status --porcelain` lines (untracked files count: a new .pipe file
 * that is not committed is a change too), leaving out `cacheRoot` when it lies in the workspace: the cache is no
 * change to the sources, yet an untracked `.pausepipe/` made every report say "uncommitted changes". Never throws:
 * no git, no repository or no commit yet is a fact to report.
 */
export async function gitState(workspace: string, cacheRoot: string | null = null): Promise<GitState> {
  const inside = cacheRoot !== null && !path.relative(workspace, cacheRoot).startsWith('..') && path.resolve(cacheRoot) !== path.resolve(workspace);
  const pathspec = inside ? ['--', ':/', `:(exclude)${path.resolve(cacheRoot)}`] : [];
  try {
    // With --quiet a repository without a commit exits 1 and says nothing; anything else is a real error.
    const head = await run('git', ['rev-parse', '--verify', '--quiet', 'HEAD'], { cwd: workspace }).catch((e: { code?: unknown; stderr?: string }) => {
      if (e.code === 1 && !e.stderr) return null;
      throw e;
    });
    if (head === null) return { unavailable: 'no commit yet' };
    const status = await run('git', ['status', '--porcelain', ...pathspec], { cwd: workspace, maxBuffer: 64 * 1024 * 1024 });
    return { commit: head.stdout.trim(), changed: status.stdout.split('\n').filter((l) => l.trim() !== '').length };
  } catch (e) {
    const err = e as NodeJS.ErrnoException & { stderr?: string };
    if (err.code === 'ENOENT') return { unavailable: 'git is not installed' };
    return { unavailable: /not a git repository/i.test(err.stderr ?? '') ? 'not a git repository' : (err.stderr ?? err.message).trim().split('\n')[0]! };
  }
}

export async function collectProvenance(
  workspace: string,
  run: RunInfo | undefined,
  rows: readonly ReportRow[],
  cacheRoot: string | null = null,
  now = new Date(),
): Promise<Provenance> {
  const counts = new Map<string, number>();
  for (const r of rows) if (r.backend !== null) counts.set(r.backend, (counts.get(r.backend) ?? 0) + 1);
  return {
    pipeline: run?.pipeline ?? null,
    git: await gitState(workspace, cacheRoot),
    backends: [...counts].map(([backend, n]) => ({ backend, rows: n })),
    date: now.toISOString(),
    versions: { pausepipe: PAUSEPIPE_VERSION, node: process.version },
    overrides: run?.overrides ?? {},
  };
}

const SHORT_COMMIT = 12;

/** The provenance as label/value lines, the same for Markdown and HTML. */
export function provenanceLines(p: Provenance, rowCount: number): [label: string, value: string][] {
  const git = 'commit' in p.git
    ? `${p.git.commit.slice(0, SHORT_COMMIT)}${p.git.changed > 0 ? ` with uncommitted changes (${p.git.changed} file${p.git.changed === 1 ? '' : 's'})` : ', clean'}`
    : p.git.unavailable;
  const backends = p.backends.length === 0
    ? 'not recorded by the model stages'
    : p.backends.length === 1 && p.backends[0]!.rows === rowCount
      ? p.backends[0]!.backend
      : `${p.backends.map((b) => `${b.backend} (${b.rows} row${b.rows === 1 ? '' : 's'})`).join(', ')}: results of different backends may differ`;
  const overrides = Object.entries(p.overrides).sort(([a], [b]) => a.localeCompare(b));
  return [
    ['pipeline', p.pipeline ?? 'not given by the runner'],
    ['git commit', git],
    ['backend', backends],
    ['date', `${p.date.replace('T', ' ').replace(/\.\d+Z$/, ' UTC')} (report written; cached stages keep their own dates)`],
    ['pausepipe', `${p.versions.pausepipe} (Node.js ${p.versions.node})`],
    ['overrides', overrides.length === 0 ? 'none' : overrides.map(([k, v]) => `${k}=${JSON.stringify(v)}`).join(', ')],
  ];
}

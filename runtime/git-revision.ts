// A pipeline as it was at a git revision: its .pipe files read from git, its workspace files hashed as they were there.
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import path from 'node:path';
import { FileMissingError } from '../cache/file-hash.ts';
import { MAX_FILE_BYTES } from '../grammar/limits.ts';
import type { ContentHasher } from './keys.ts';
import { readPipeFile, type ReadResult } from './load.ts';

export interface Revision {
  /** The repository's top folder. */
  root: string;
  /** As the user wrote it (`HEAD~1`, a tag): what tables call it. */
  name: string;
  /** The full commit id it resolves to. */
  commit: string;
}

function git(cwd: string, args: string[]): Buffer {
  return execFileSync('git', ['-C', cwd, ...args], { stdio: ['ignore', 'pipe', 'pipe'], maxBuffer: 1 << 30 });
}

/** The revision `name` of the repository holding `file`; a sentence when there is no repository or no such commit. */
export function resolveRevision(file: string, name: string): Revision | string {
  const dir = path.dirname(path.resolve(file));
  let root: string;
  try {
    root = git(dir, ['rev-parse', '--show-toplevel']).toString().trim();
  } catch {
    return `${file} is not in a git repository, so there is no revision ${name} to compare with`;
  }
  try {
    const commit = git(root, ['rev-parse', '--verify', '--quiet', `${name}^{commit}`]).toString().trim();
    return { root, name, commit };
  } catch {
    return `unknown git revision \`${name}\` in ${root}`;
  }
}

/** Path inside the repository with `/`, or undefined for a path outside it. */
function inRepo(rev: Revision, abs: string): string | undefined {
  const rel = path.relative(rev.root, path.resolve(abs));
  return rel === '' || rel.startsWith('..') || path.isAbsolute(rel) ? undefined : rel.split(path.sep).join('/');
}

/** A file's text at the revision; undefined when the revision has no such file. */
export function readAtRevision(rev: Revision, abs: string): string | undefined {
  const rel = inRepo(rev, abs);
  if (rel === undefined) return undefined;
  try {
    return git(rev.root, ['show', `${rev.commit}:${rel}`]).toString('utf8');
  } catch {
    return undefined;
  }
}

/**
 * The path a file had at the revision when git sees it renamed since (`git mv`, or a move git pairs by content);
 * undefined when it does not. Git compares the revision with the working tree, so an uncommitted rename counts once
 * the new name is added.
 */
export function renamedSince(rev: Revision, abs: string): string | undefined {
  const rel = inRepo(rev, abs);
  if (rel === undefined) return undefined;
  let out: string;
  try {
    out = git(rev.root, ['diff', '--name-status', '--find-renames', '-z', rev.commit, '--']).toString();
  } catch {
    return undefined;
  }
  // `R093\0old\0new\0` for a rename, `M\0path\0` for the others.
  const fields = out.split('\0');
  for (let i = 0; i < fields.length;) {
    const status = fields[i]!;
    if (status.startsWith('R') || status.startsWith('C')) {
      if (status.startsWith('R') && fields[i + 2] === rel) return path.join(rev.root, ...fields[i + 1]!.split('/'));
      i += 3;
    } else i += 2;
  }
  return undefined;
}

/** Whether git tracks the path now (in the index), so its absence at a revision means it was added since. */
function trackedNow(rev: Revision, rel: string): boolean {
  try {
    git(rev.root, ['ls-files', '--error-unmatch', '--', rel]);
    return true;
  } catch {
    return false;
  }
}

/** How many symbolic links in a row an include may go through at a revision (the disk's own limit is about 40). */
const MAX_LINKS = 8;

/**
 * An included .pipe file as the loader reads it at the revision, under the rules `readPipeFile` applies on disk (a
 * regular file, or a link to one, named `.pipe`, of at most MAX_FILE_BYTES). A file git has no history of (outside
 * the repository, ignored or never added) is read from the disk, as `hasherAtRevision` hashes such data; one git
 * tracks now but the revision lacks was added since: missing.
 */
export function readIncludeAtRevision(rev: Revision, abs: string, links = 0): ReadResult {
  const rel = inRepo(rev, abs);
  if (rel === undefined) return readPipeFile(abs);
  if (!abs.endsWith('.pipe')) return { refused: `${abs} is not a .pipe file` };
  let listing: string;
  try {
    listing = git(rev.root, ['ls-tree', '-z', '-l', rev.commit, '--', rel]).toString();
  } catch (error) {
    return { refused: `cannot read ${abs} at ${rev.name}: ${(error as Error).message}` };
  }
  // `100644 blob <id>     123\tpath\0`; nothing for a path the revision lacks.
  const entry = /^(\d+) (\w+) ([0-9a-f]+) +(\S+)\t/.exec(listing);
  if (!entry) return trackedNow(rev, rel) ? undefined : readPipeFile(abs);
  const [, mode, type, id, size] = entry as unknown as [string, string, string, string, string];
  if (mode === '120000') {
    if (links >= MAX_LINKS) return { refused: `${abs} at ${rev.name}: more than ${MAX_LINKS} symbolic links in a row` };
    const target = path.resolve(path.dirname(abs), git(rev.root, ['cat-file', 'blob', id]).toString());
    return readIncludeAtRevision(rev, target, links + 1);
  }
  if (type !== 'blob') return { refused: `${abs} is a folder at ${rev.name}, not a .pipe file` };
  if (Number(size) > MAX_FILE_BYTES) {
    return { refused: `${abs} is ${Number(size).toLocaleString('en-US')} bytes at ${rev.name}; a .pipe file may have at most ${MAX_FILE_BYTES.toLocaleString('en-US')}` };
  }
  const text = git(rev.root, ['cat-file', 'blob', id]).toString('utf8');
  return text.startsWith('\uFEFF') ? text.slice(1) : text;
}

/**
 * Content hashes as the revision had them: a path git sees unchanged since the revision (or that git does not track,
 * such as data outside the repository or ignored) hashes as it is on disk; a changed file hashes as its blob there.
 * A changed folder is refused: its hash at the revision would need the whole tree rebuilt the way the cache hashes it.
 */
export function hasherAtRevision(rev: Revision, disk: ContentHasher): ContentHasher {
  return {
    async hash(abs: string): Promise<string> {
      const rel = inRepo(rev, abs);
      if (rel === undefined) return disk.hash(abs);
      let unchanged: boolean;
      try {
        git(rev.root, ['diff', '--quiet', rev.commit, '--', rel]);
        unchanged = true;
      } catch {
        unchanged = false;
      }
      if (unchanged) return disk.hash(abs);
      let type: string;
      try {
        type = git(rev.root, ['cat-file', '-t', `${rev.commit}:${rel}`]).toString().trim();
      } catch {
        throw new FileMissingError(abs);
      }
      if (type !== 'blob') throw new Error(`${rel} changed since ${rev.name} and is a folder: its hash at ${rev.name} is not computed (commit or restore it to compare)`);
      return createHash('sha256').update(git(rev.root, ['show', `${rev.commit}:${rel}`])).digest('hex');
    },
  };
}

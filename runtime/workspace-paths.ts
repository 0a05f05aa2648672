// Paths inside a workspace as the file system resolves them: symbolic links followed, escapes and protected names found.
import { lstatSync, readlinkSync } from 'node:fs';
import path from 'node:path';

/** Linux's own limit on links followed while resolving one path. */
const MAX_LINK_HOPS = 40;
/** What marks a workspace (runtime/load.ts) and holds the user's history or the default cache: no stage may write there. */
export const PROTECTED_NAMES = ['package.json', '.git', '.pausepipe'];

/**
 * Where `abs` really is: every symbolic link on the way followed, dangling ones too (a write through them would
 * create their target). The part past the first missing component is kept as written.
 */
export function resolveReal(abs: string, hops = 0): string {
  const parts = path.resolve(abs).split(path.sep).filter(Boolean);
  let current = path.parse(path.resolve(abs)).root;
  for (let i = 0; i < parts.length; i++) {
    const next = path.join(current, parts[i]!);
    let isLink: boolean;
    try {
      isLink = lstatSync(next).isSymbolicLink();
    } catch {
      return path.join(next, ...parts.slice(i + 1));
    }
    if (!isLink) {
      current = next;
      continue;
    }
    if (hops >= MAX_LINK_HOPS) throw new Error(`${abs}: too many levels of symbolic links`);
    current = resolveReal(path.resolve(current, readlinkSync(next)), hops + 1);
  }
  return current;
}

/** `child` is `parent` or lies inside it (both absolute, or both workspace-relative with `/`). */
export function isWithin(child: string, parent: string): boolean {
  if (parent === '' || parent === '.') return true;
  const rel = path.relative(parent, child);
  return rel === '' || (!rel.startsWith('..') && !path.isAbsolute(rel));
}

/**
 * Why the runner must not delete, move or write the workspace path `rel` on a stage's behalf (undefined when it may):
 * it lies outside the workspace, lexically or through a symbolic link, or is, holds or lies in a protected name.
 */
export function unsafeWorkspacePath(workspace: string, rel: string): string | undefined {
  const abs = path.resolve(workspace, rel);
  if (!isWithin(abs, workspace)) return `it is outside the workspace ${workspace}`;
  const realWorkspace = resolveReal(workspace);
  const real = resolveReal(abs);
  if (!isWithin(real, realWorkspace)) return `it leads outside the workspace through a symbolic link (to ${real})`;
  for (const inside of [path.relative(workspace, abs), path.relative(realWorkspace, real)]) {
    if (inside === '') return 'it is the workspace itself';
    const parts = inside.split(path.sep);
    const named = parts.find((p) => p === '.git' || p === '.pausepipe') ?? (parts[0] === 'package.json' ? 'package.json' : undefined);
    if (named !== undefined) return `it is or lies in \`${named}\`, which ${named === '.pausepipe' ? 'is the cache' : named === '.git' ? 'is version control' : 'marks the workspace'}`;
  }
  return undefined;
}

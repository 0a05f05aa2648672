// Paths inside a workspace as the file system resolves them: symbolic links followed, escapes and protected names found.
import { lstatSync, readlinkSync, realpathSync } from 'node:fs';
import path from 'node:path';

/** Linux's own limit on links followed while resolving one path. */
const MAX_LINK_HOPS = 40;
/** Folders no stage may write into, anywhere in the workspace: version control and the default cache. */
const PROTECTED_FOLDERS = new Map([['.git', 'is version control'], ['.pausepipe', 'is the cache']]);

/**
 * Where `abs` really is: every symbolic link on the way followed, dangling ones too (a write through them would
 * create their target). The part past the first missing component is kept as written.
 */
export function resolveReal(abs: string, hops = 0): string {
  // The whole path exists (the usual case, and the cheap one); else walk it to find where the links lead.
  try {
    return realpathSync.native(abs);
  } catch {
    return walkReal(abs, hops);
  }
}

function walkReal(abs: string, hops: number): string {
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

/** `child` is `parent` or lies inside it: both normalized, absolute or workspace-relative with `/` ('' is the workspace). */
export function isWithin(child: string, parent: string): boolean {
  if (parent === '' || child === parent) return true;
  const separator = path.isAbsolute(parent) ? path.sep : '/';
  return child.startsWith(parent.endsWith(separator) ? parent : `${parent}${separator}`);
}

/** Real paths of workspaces: a run checks a thousand outs of one workspace, whose own location does not move meanwhile. */
const realWorkspaces = new Map<string, string>();

function realWorkspace(workspace: string): string {
  let real = realWorkspaces.get(workspace);
  if (real === undefined) {
    real = resolveReal(workspace);
    realWorkspaces.set(workspace, real);
  }
  return real;
}

/** `abs` relative to `root` (which contains it), with the platform's separator; '' for the root itself. */
function inside(abs: string, root: string): string {
  return abs === root ? '' : abs.slice(root.endsWith(path.sep) ? root.length : root.length + 1);
}

/**
 * Why the runner must not delete, move or write the workspace path `rel` on a stage's behalf (undefined when it may):
 * it lies outside the workspace, lexically or through a symbolic link, or is, holds or lies in a protected name.
 */
export function unsafeWorkspacePath(workspace: string, rel: string): string | undefined {
  const root = path.resolve(workspace);
  const abs = path.resolve(root, rel);
  if (!isWithin(abs, root)) return `it is outside the workspace ${workspace}`;
  const realRoot = realWorkspace(root);
  const real = resolveReal(abs);
  if (!isWithin(real, realRoot)) return `it leads outside the workspace through a symbolic link (to ${real})`;
  for (const within of [inside(abs, root), inside(real, realRoot)]) {
    if (within === '') return 'it is the workspace itself';
    const parts = within.split(path.sep);
    const folder = parts.find((p) => PROTECTED_FOLDERS.has(p));
    if (folder !== undefined) return `it is or lies in \`${folder}\`, which ${PROTECTED_FOLDERS.get(folder)}`;
    // package.json marks the workspace (runtime/load.ts); one deeper down belongs to the user's code.
    if (parts[0] === 'package.json') return 'it is or lies in `package.json`, which marks the workspace';
  }
  return undefined;
}

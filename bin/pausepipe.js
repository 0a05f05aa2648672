#!/usr/bin/env node
// The `pausepipe` command: runs the compiled CLI from dist/ when it is at least as new as the sources, else the sources through tsx.
import { existsSync, readdirSync, statSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const root = path.dirname(path.dirname(fileURLToPath(import.meta.url)));
const SOURCE_DIRS = ['grammar', 'runtime', 'stages', 'cache', 'lsp'];

/** Newest modification time of the TypeScript sources (a few dozen stats: cheap next to Node's start-up). */
function newestSource(dir) {
  let newest = 0;
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const full = path.join(dir, entry.name);
    if (entry.isDirectory()) newest = Math.max(newest, newestSource(full));
    else if (entry.name.endsWith('.ts')) newest = Math.max(newest, statSync(full).mtimeMs);
  }
  return newest;
}

function distIsCurrent(distCli) {
  if (!existsSync(distCli)) return false;
  const built = statSync(distCli).mtimeMs;
  return SOURCE_DIRS.every((d) => !existsSync(path.join(root, d)) || newestSource(path.join(root, d)) <= built);
}

const distCli = path.join(root, 'dist', 'runtime', 'cli.js');
let cli;
if (distIsCurrent(distCli)) {
  cli = await import(pathToFileURL(distCli).href);
} else {
  const { register } = await import('tsx/esm/api');
  register();
  cli = await import(pathToFileURL(path.join(root, 'runtime', 'cli.ts')).href);
}
// `pausepipe plan big.pipe | head` closes the pipe early: what is left to print has no reader, which is no error of
// the command (nor a reason to stop a run); without this, the first write after it ended Node with a stack trace.
for (const stream of [process.stdout, process.stderr]) {
  stream.on('error', (err) => {
    if (err.code !== 'EPIPE' && err.code !== 'ERR_STREAM_DESTROYED') throw err;
  });
}
process.exitCode = await cli.main(process.argv.slice(2));

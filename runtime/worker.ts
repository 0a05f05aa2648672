// A stage worker: runs one isolated stage in its own process, so a crash or out-of-memory fails only that stage.
import type { Progress, StageContext } from '../stages/kind.ts';
import { loadKinds } from './kinds.ts';
import { runStageKind } from './run-kind.ts';
import type { FromWorker, RunRequest, ToWorker } from './worker-protocol.ts';

/** Progress messages are sent at most this often (plus the last step), whatever rate the stage reports at. */
const PROGRESS_INTERVAL_MS = 100;

function send(message: FromWorker): Promise<void> {
  return new Promise((resolve) => {
    if (!process.send || !process.connected) resolve();
    else process.send(message, undefined, {}, () => resolve());
  });
}

async function runStage(req: RunRequest, signal: AbortSignal): Promise<void> {
  const kinds = await loadKinds();
  const kind = kinds[req.kind];
  if (!kind) throw new Error(`unknown stage kind \`${req.kind}\` in the worker (is PAUSEPIPE_KINDS the same as the runner's?)`);
  let lastProgress = 0;
  const ctx: StageContext = {
    name: req.name,
    key: req.key,
    params: req.params,
    variant: req.variant,
    inputs: req.inputs,
    ...(req.missing ? { missing: req.missing } : {}),
    outDir: req.outDir,
    scratchDir: req.scratchDir,
    workspace: req.workspace,
    backend: req.backend,
    run: req.run,
    signal,
    log: (line) => void send({ type: 'log', line }),
    notice: (line) => void send({ type: 'notice', line }),
    progress: (progress: Progress) => {
      const now = Date.now();
      if (now - lastProgress < PROGRESS_INTERVAL_MS && progress.step !== progress.total) return;
      lastProgress = now;
      void send({ type: 'progress', progress });
    },
  };
  const result = await runStageKind(kind, ctx);
  await send({ type: 'done', metrics: result.metrics ?? {} });
}

// The runner died (even by SIGKILL): its end of the IPC channel closed, so stop computing rather than run orphaned.
process.on('disconnect', () => process.exit(70));
// Ctrl-C reaches the whole process group, and a scheduler's SIGTERM the whole job: the runner decides (abort message,
// then kill), so the stage ends as interrupted rather than as a crashed worker.
for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) process.on(signal, () => undefined);

const controller = new AbortController();
process.on('message', (message: ToWorker) => {
  if (message.type === 'abort') {
    controller.abort();
    return;
  }
  runStage(message, controller.signal).then(
    () => process.exit(0),
    async (error: unknown) => {
      const stack = error instanceof Error ? error.stack : undefined;
      await send({ type: 'failed', message: error instanceof Error ? error.message : String(error), ...(stack ? { stack } : {}) });
      process.exit(1);
    },
  );
});

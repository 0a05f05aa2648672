// The executor of a run on this machine: in-process for kinds that say `isolated: false`, a worker process otherwise.
import type { StageKind } from '../../stages/kind.ts';
import type { Executor } from './executor.ts';
import { inProcessExecutor } from './in-process.ts';
import { localWorkerExecutor } from './local-worker.ts';

export function localExecutor(kinds: Record<string, StageKind>): Executor {
  const inProcess = inProcessExecutor(kinds);
  const worker = localWorkerExecutor();
  return {
    run: (job, events, signal) => (kinds[job.request.kind]?.isolated === false ? inProcess : worker).run(job, events, signal),
  };
}

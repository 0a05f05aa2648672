// The in-process executor: stages whose kind says `isolated: false` (`sh`, whose command is already a child process).
import type { StageContext, StageKind } from '../../stages/kind.ts';
import type { Executor } from './executor.ts';
import { runStageKind } from '../run-kind.ts';

export function inProcessExecutor(kinds: Record<string, StageKind>): Executor {
  return {
    async run({ request }, events, signal) {
      const kind = kinds[request.kind];
      if (!kind) throw new Error(`unknown stage kind \`${request.kind}\``);
      const { type: _type, kind: _kind, ...data } = request;
      const ctx: StageContext = { ...data, log: events.log, progress: events.progress, notice: events.notice, signal };
      return (await runStageKind(kind, ctx)).metrics ?? {};
    },
  };
}

// The local worker executor: each stage in a Node.js process of its own (runtime/worker.ts), so a crash or an
// out-of-memory fails only that stage; a stage given GPUs gets them, and only them, in its environment.
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import type { JsonValue } from '../json.ts';
import { gpuEnvironment } from '../gpus.ts';
import type { FromWorker } from '../worker-protocol.ts';
import { StageFailure, type Executor } from './executor.ts';

/** How long a worker gets to stop after an abort message before it is killed. */
const ABORT_GRACE_MS = 2000;
const OUT_OF_MEMORY = /heap out of memory|Allocation failed/i;

/** How to start runtime/worker: the compiled file under plain node, or the .ts source through tsx. */
function workerCommand(): string[] {
  const runtime = path.dirname(path.dirname(fileURLToPath(import.meta.url)));
  if (import.meta.url.endsWith('.ts')) return ['--import', import.meta.resolve('tsx'), path.join(runtime, 'worker.ts')];
  return [path.join(runtime, 'worker.js')];
}

/**
 * How many processes the kernel's out-of-memory killer has ended since boot (Linux 4.13 and later: `oom_kill` in
 * /proc/vmstat, counted machine-wide, container limits included), or undefined where nothing says.
 */
export function oomKillCount(): number | undefined {
  try {
    const found = /^oom_kill (\d+)$/m.exec(readFileSync('/proc/vmstat', 'utf8'));
    return found ? Number(found[1]) : undefined;
  } catch {
    return undefined;
  }
}

export interface LocalWorkerOptions {
  /** The out-of-memory killer's count (default oomKillCount): read when a worker starts and when SIGKILL ends it. */
  oomKills?: () => number | undefined;
}

export function localWorkerExecutor(options: LocalWorkerOptions = {}): Executor {
  const oomKills = options.oomKills ?? oomKillCount;
  return {
    async run({ request }, events, signal) {
      const { execa } = await import('execa');
      const oomKillsBefore = oomKills();
      const sub = execa(process.execPath, workerCommand(), {
        ipc: true,
        serialization: 'json',
        ipcInput: request as unknown as Record<string, JsonValue>,
        env: request.gpus ? gpuEnvironment(request.gpus) : {},
        stdin: 'ignore',
        buffer: false,
        reject: false,
        forceKillAfterDelay: false,
      });
      let outcome: Extract<FromWorker, { type: 'done' | 'failed' }> | undefined;
      let outOfMemory = false;
      const line = (text: string) => {
        if (OUT_OF_MEMORY.test(text)) outOfMemory = true;
        events.log(text);
      };
      let killTimer: NodeJS.Timeout | undefined;
      const onAbort = () => {
        sub.sendMessage({ type: 'abort' }).catch(() => undefined);
        killTimer = setTimeout(() => sub.kill('SIGKILL'), ABORT_GRACE_MS);
      };
      if (signal.aborted) onAbort();
      else signal.addEventListener('abort', onAbort, { once: true });
      const messages = (async () => {
        try {
          for await (const raw of sub.getEachMessage()) {
            const m = raw as FromWorker;
            if (m.type === 'log') line(m.line);
            else if (m.type === 'progress') events.progress(m.progress);
            else if (m.type === 'notice') events.notice(m.line);
            else outcome = m;
          }
        } catch {
          // The channel closes with the process; how it ended is read from the result below.
        }
      })();
      const streams = [sub.stdout, sub.stderr].map(async (s) => {
        if (!s) return;
        for await (const text of createInterface({ input: s, crlfDelay: Infinity })) line(text);
      });
      const [result] = await Promise.all([sub, messages, ...streams]);
      clearTimeout(killTimer);
      signal.removeEventListener('abort', onAbort);
      if (outcome?.type === 'done') return outcome.metrics;
      if (outcome?.type === 'failed') throw new StageFailure(outcome.message, outcome.stack);
      if (signal.aborted) throw new Error('interrupted');
      const how = result.signal ? `killed by ${result.signal}` : `exit code ${result.exitCode}`;
      // SIGKILL is how the kernel's out-of-memory killer ends a process, which the worker never gets to say.
      const oomKillsAfter = result.signal === 'SIGKILL' ? oomKills() : undefined;
      const oomKilled = oomKillsBefore !== undefined && oomKillsAfter !== undefined && oomKillsAfter > oomKillsBefore;
      const oomWords = oomKilled ? ': the kernel\'s out-of-memory killer ended a process while this stage ran, most likely this one: memory ran ' +
        'out (the machine\'s, or a container\'s or job\'s limit); run fewer stages at once (--jobs) or smaller ones' : '';
      throw new Error(`worker process died (${how})${outOfMemory ? ' (out of memory)' : ''}${oomWords}`);
    },
  };
}

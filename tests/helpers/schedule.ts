// A virtual clock for the pure scheduler: start orders and outcomes of a run without processes.
import * as assert from 'uvu/assert';
import { Scheduler, type Decision, type ScheduleOptions, type ScheduledStage } from '../../runtime/schedule.ts';

export interface Simulated {
  /** `name@time` for every started stage, in start order. */
  starts: string[];
  /** Every decision, in the order the scheduler gave them (runs with their GPUs). */
  decisions: string[];
  statuses: Record<string, string>;
}

/**
 * Drives a scheduler with a virtual clock: each started stage ends `duration(name)` later with `outcome(name)`;
 * stages that end at the same time end in their start order.
 */
export function simulate(
  stages: ScheduledStage[], options: Partial<ScheduleOptions>,
  duration: (name: string) => number = () => 1, outcome: (name: string) => 'ran' | 'failed' = () => 'ran',
): Simulated {
  const s = new Scheduler(stages, { cpu: 2, gpus: 0, keepGoing: false, ...options });
  const running: { name: string; ends: number }[] = [];
  const starts: string[] = [];
  const decisions: string[] = [];
  let now = 0;
  const take = (ds: Decision[]) => {
    for (const d of ds) {
      decisions.push(d.type === 'run' ? `run ${d.name}${d.grant.gpuIds.length ? ` gpu${d.grant.gpuIds.join('+')}` : ''}` : `${d.type} ${d.name}`);
      if (d.type === 'run' || d.type === 'restore') {
        starts.push(`${d.name}@${now}`);
        running.push({ name: d.name, ends: now + duration(d.name) });
      }
    }
  };
  take(s.next());
  while (running.length > 0) {
    const first = running.reduce((a, b) => (b.ends < a.ends ? b : a));
    running.splice(running.indexOf(first), 1);
    now = first.ends;
    s.finished(first.name, stages.find((x) => x.name === first.name)!.status === 'fresh' ? 'cached' : outcome(first.name));
    take(s.next());
  }
  assert.ok(s.done, 'every stage settled');
  return { starts, decisions, statuses: Object.fromEntries(stages.map((x) => [x.name, s.statusOf(x.name)!])) };
}


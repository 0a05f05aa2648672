// One look at the queue for all the jobs a runner waits on: every poll interval a single `squeue` call answers them all.
import type { SlurmClient } from './client.ts';
import type { JobStatus } from './parse.ts';

interface Waiter {
  resolve(status: JobStatus | undefined): void;
  reject(error: Error): void;
}

export class JobQueue {
  private waiters = new Map<string, Waiter[]>();
  private timer: NodeJS.Timeout | undefined;
  private looking = false;

  constructor(private readonly client: Pick<SlurmClient, 'queue'>, private readonly intervalMs: number) {}

  /** The job as squeue lists it at the next look (undefined: squeue no longer lists it). */
  next(id: string): Promise<JobStatus | undefined> {
    return new Promise((resolve, reject) => {
      const list = this.waiters.get(id) ?? [];
      list.push({ resolve, reject });
      this.waiters.set(id, list);
      this.schedule();
    });
  }

  private schedule(): void {
    if (this.timer !== undefined || this.looking || this.waiters.size === 0) return;
    this.timer = setTimeout(() => void this.look(), this.intervalMs);
  }

  private async look(): Promise<void> {
    this.timer = undefined;
    this.looking = true;
    const batch = this.waiters;
    this.waiters = new Map();
    try {
      const statuses = await this.client.queue([...batch.keys()]);
      for (const [id, list] of batch) for (const w of list) w.resolve(statuses.get(id));
    } catch (error) {
      for (const list of batch.values()) for (const w of list) w.reject(error as Error);
    } finally {
      this.looking = false;
      this.schedule();
    }
  }
}

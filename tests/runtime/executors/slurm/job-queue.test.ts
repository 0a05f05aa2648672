// One squeue call per poll answers every job the runner waits on.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { JobQueue } from '../../../../runtime/executors/slurm/job-queue.ts';
import type { JobStatus } from '../../../../runtime/executors/slurm/parse.ts';

test('waiters of one poll share one query; a job the queue no longer lists is undefined; a failed query rejects that poll only', async () => {
  const asked: string[][] = [];
  let fail = false;
  const client = {
    async queue(ids: string[]): Promise<Map<string, JobStatus>> {
      asked.push([...ids].sort());
      if (fail) throw new Error('squeue failed: Unable to contact slurm controller');
      return new Map(ids.filter((id) => id !== '3').map((id) => [id, { id, state: 'RUNNING' }]));
    },
  };
  const queue = new JobQueue(client, 5);
  const [a, b, c, again] = await Promise.all([queue.next('1'), queue.next('2'), queue.next('3'), queue.next('1')]);
  assert.equal([a, b, c, again], [{ id: '1', state: 'RUNNING' }, { id: '2', state: 'RUNNING' }, undefined, { id: '1', state: 'RUNNING' }]);
  assert.equal(asked, [['1', '2', '3']]);
  fail = true;
  const error = await queue.next('1').then(() => undefined, (e: Error) => e.message);
  assert.is(error, 'squeue failed: Unable to contact slurm controller');
  fail = false;
  assert.equal(await queue.next('2'), { id: '2', state: 'RUNNING' });
  assert.equal(asked, [['1', '2', '3'], ['1'], ['2']]);
});

test.run();

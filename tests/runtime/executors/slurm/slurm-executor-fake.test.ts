// The Slurm executor against a stand-in for Slurm's commands: the order of submissions, what the runner hears of a job.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import type { StageEvents } from '../../../../runtime/executors/executor.ts';
import { slurmExecutor } from '../../../../runtime/executors/slurm/slurm-executor.ts';
import { DEFAULT_EXECUTOR, type ExecutorSettings } from '../../../../runtime/settings.ts';
import { fakeJob, FakeSlurm } from '../../../helpers/fake-slurm.ts';
import { tempWorkspace } from '../../../helpers/runner.ts';

const SETTINGS: ExecutorSettings = { ...DEFAULT_EXECUTOR, type: 'slurm', pollSeconds: 0.01 };

function events(lines: string[] = []): StageEvents {
  return { log: (line) => lines.push(line), progress: () => undefined, notice: () => undefined };
}

test('jobs are submitted in the order the runner hands the stages over, even when an earlier one is slower to prepare', async () => {
  const root = await tempWorkspace('pausepipe-fake-slurm-');
  let answer!: (gpus: boolean) => void;
  // The first stage wants a GPU, so its submission waits for sinfo; the two after it want none.
  const slurm = new FakeSlurm({ gpus: new Promise((resolve) => (answer = resolve)) });
  const executor = slurmExecutor({ settings: SETTINGS, client: slurm });
  const signal = new AbortController().signal;
  const jobs = [await fakeJob(root, 'train', { cpu: 1, gpu: 1 }), await fakeJob(root, 'eval'), await fakeJob(root, 'report')];
  const runs = jobs.map((job) => executor.run(job, events(), signal));
  // sinfo answers once the others were submitted, had they not waited (or after half a second: then they did).
  const started = Date.now();
  while (slurm.submitted.length < 2 && Date.now() - started < 500) await new Promise((r) => setTimeout(r, 10));
  answer(true);
  assert.equal(await Promise.all(runs), [{}, {}, {}]);
  assert.equal(slurm.submitted, ['train', 'eval', 'report']);
});

test.run();

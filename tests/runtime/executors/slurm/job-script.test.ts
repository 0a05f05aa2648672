// One stage as one Slurm job: the exact sbatch flags and batch script the executor writes.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import path from 'node:path';
import {
  execCommand, jobComment, jobName, jobScript, parseJobComment, sbatchArgs,
} from '../../../../runtime/executors/slurm/job-script.ts';
import { PROJECT_ROOT } from '../../../helpers/runner.ts';

const base = { stage: 'warm[pause=head, lora=true]', comment: 'pausepipe:ab12:cd34', cpus: 2, gpus: 0, logFile: '/c/job.log', workdir: '/ws' };

test('resources and settings become flags; the job name has no blanks; no GPU flag without GPUs', () => {
  assert.equal(sbatchArgs({ ...base, settings: {} }, '/c/job.sh'), [
    '--parsable', '--job-name=warm[pause=head,_lora=true]', '--comment=pausepipe:ab12:cd34', '--output=/c/job.log',
    '--open-mode=append', '--chdir=/ws', '--requeue', '--nodes=1', '--ntasks=1', '--cpus-per-task=2', '/c/job.sh',
  ]);
  const s = { mem: '16G', time: '4:00:00', partition: 'gpu', account: 'lab', qos: 'high', sbatch: ['--constraint=a100', '--exclusive'] };
  assert.equal(sbatchArgs({ ...base, gpus: 1, settings: s }, '/c/job.sh').slice(9), [
    '--cpus-per-task=2', '--gres=gpu:1', '--mem=16G', '--time=4:00:00', '--partition=gpu', '--account=lab', '--qos=high',
    '--constraint=a100', '--exclusive', '/c/job.sh',
  ]);
});

test('the comment carries the key and the token, and only such comments parse', () => {
  assert.is(jobComment('abc123', 'ff00'), 'pausepipe:abc123:ff00');
  assert.equal(parseJobComment('pausepipe:abc123:ff00'), { key: 'abc123', token: 'ff00' });
  assert.is(parseJobComment('(null)'), undefined);
  assert.is(parseJobComment(undefined), undefined);
  assert.is(jobName('a b\tc'), 'a_b_c');
});

test('the script execs pausepipe exec with this node and this installation, quoted for the shell', () => {
  const command = execCommand("/cache/scratch/k/slurm-job/it's.json");
  assert.equal(command, [process.execPath, path.join(PROJECT_ROOT, 'bin', 'pausepipe.js'), 'exec', "/cache/scratch/k/slurm-job/it's.json"]);
  assert.is(jobScript('eval[x=1]', 'abc', ['/usr/bin/node', '/p/bin/pausepipe.js', 'exec', "/c/it's one.json"]), [
    '#!/bin/sh',
    '# pausepipe: stage eval[x=1], key abc',
    "exec /usr/bin/node /p/bin/pausepipe.js exec '/c/it'\\''s one.json'",
    '',
  ].join('\n'));
});

test.run();

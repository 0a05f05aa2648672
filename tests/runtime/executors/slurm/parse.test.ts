// Reading Slurm's answers: squeue, scontrol, sacct and sbatch output as Slurm 22.05 prints them.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import {
  describeEnd, isFinalState, parseSacct, parseSbatch, parseScontrolFields, parseScontrolJobs, parseSqueue,
} from '../../../../runtime/executors/slurm/parse.ts';

test('squeue lines become jobs with their node and start; "(null)" and "None" are no value, and a comment keeps its own bars', () => {
  const text = [
    // A pending job's start time is Slurm's guess (or N/A): no start.
    '12|PENDING|Resources||2026-11-28T12:40:00|pausepipe:abc123:ff00',
    '13|RUNNING|None|gpu07|2026-11-28T12:34:16|(null)',
    '14|COMPLETED|None|gpu[07-08]|2026-11-28T12:34:13|a|b',
    '16|PENDING|Priority||N/A|(null)',
    '15|RUNNING|None|(null)|(null)',
    'squeue: warning: something on stdout',
    '',
  ].join('\n');
  assert.equal(parseSqueue(text), [
    { id: '12', state: 'PENDING', reason: 'Resources', comment: 'pausepipe:abc123:ff00' },
    { id: '13', state: 'RUNNING', node: 'gpu07', startedAt: new Date(2026, 10, 28, 12, 34, 16).getTime() },
    { id: '14', state: 'COMPLETED', comment: 'a|b', node: 'gpu[07-08]', startedAt: new Date(2026, 10, 28, 12, 34, 13).getTime() },
    { id: '16', state: 'PENDING', reason: 'Priority' },
  ]);
});

test('scontrol fields: a value may hold spaces, up to the next Key=', () => {
  const line = 'JobId=1 JobName=warm[pause=a b,lora=true] UserId=root(0) JobState=FAILED Reason=NonZeroExitCode Dependency=(null) Requeue=1 Restarts=0 ExitCode=3:0 Comment=pausepipe:ab:cd ';
  const f = parseScontrolFields(line);
  assert.is(f.get('JobName'), 'warm[pause=a b,lora=true]');
  assert.is(f.get('ExitCode'), '3:0');
  assert.is(f.get('Comment'), 'pausepipe:ab:cd');
});

test('scontrol show job -o: state, reason, exit code, restarts, comment, node and start of each job', () => {
  const text = [
    'JobId=2 JobName=r.sh UserId=root(0) GroupId=root(0) MCS_label=N/A Priority=4294901758 Nice=0 Account=(null) QOS=(null) JobState=PENDING Reason=BeginTime Dependency=(null) Requeue=1 Restarts=1 BatchFlag=1 Reboot=0 ExitCode=0:0 RunTime=00:00:00 Comment=pausepipe:0a:0b ReqNodeList=(null) ExcNodeList=(null) NodeList=(null)',
    'JobId=7 JobName=train UserId=root(0) JobState=TIMEOUT Reason=TimeLimit Requeue=1 Restarts=0 ExitCode=0:15 RunTime=00:01:21 StartTime=2026-11-28T12:34:16 EndTime=2026-11-28T12:35:37 ReqNodeList=(null) ExcNodeList=(null) NodeList=gpu07 BatchHost=gpu07',
  ].join('\n');
  assert.equal(parseScontrolJobs(text), [
    { id: '2', state: 'PENDING', reason: 'BeginTime', exitCode: '0:0', restarts: 1, comment: 'pausepipe:0a:0b' },
    { id: '7', state: 'TIMEOUT', reason: 'TimeLimit', exitCode: '0:15', restarts: 0, node: 'gpu07', startedAt: new Date(2026, 10, 28, 12, 34, 16).getTime() },
  ]);
});

test('sacct: the last line of a requeued job counts, and "CANCELLED by 0" is CANCELLED', () => {
  const text = ['41|NODE_FAIL|0:0|gpu07', '41|CANCELLED by 0|0:15|None assigned', '42|OUT_OF_MEMORY|0:125|gpu08', 'junk'].join('\n');
  assert.equal(parseSacct(text), [
    { id: '41', state: 'CANCELLED', exitCode: '0:15' },
    { id: '42', state: 'OUT_OF_MEMORY', exitCode: '0:125', node: 'gpu08' },
  ]);
});

test('sbatch --parsable prints the id, with the cluster after a semicolon on federated clusters', () => {
  assert.is(parseSbatch('123\n'), '123');
  assert.is(parseSbatch('124;cluster2\n'), '124');
  assert.is(parseSbatch('sbatch: error: invalid partition\n'), undefined);
});

test('final states are the ones after which the job never runs again', () => {
  for (const s of ['COMPLETED', 'FAILED', 'CANCELLED', 'TIMEOUT', 'OUT_OF_MEMORY', 'NODE_FAIL', 'PREEMPTED']) assert.ok(isFinalState(s), s);
  for (const s of ['PENDING', 'RUNNING', 'COMPLETING', 'CONFIGURING', 'REQUEUED', 'SUSPENDED', 'REQUEUE_HOLD']) assert.not.ok(isFinalState(s), s);
});

test('a failed job is described by its state, what it means, its exit code or signal, and the reason', () => {
  assert.is(describeEnd({ id: '5', state: 'FAILED', reason: 'NonZeroExitCode', exitCode: '3:0' }), 'Slurm job 5 ended FAILED: the job exited with an error; exit code 3');
  assert.is(describeEnd({ id: '7', state: 'OUT_OF_MEMORY', exitCode: '0:125' }),
    'Slurm job 7 ended OUT_OF_MEMORY: the job ran out of memory (raise `mem` in the executor settings)');
  assert.is(describeEnd({ id: '8', state: 'NODE_FAIL' }), 'Slurm job 8 ended NODE_FAIL: the node running the job failed');
  assert.is(describeEnd({ id: '9', state: 'FAILED', exitCode: '0:9' }), 'Slurm job 9 ended FAILED: the job exited with an error; killed by signal 9');
});

test('the node a job ran on follows its state', () => {
  assert.is(describeEnd({ id: '5', state: 'FAILED', reason: 'NonZeroExitCode', exitCode: '3:0', node: 'gpu07' }),
    'Slurm job 5 ended FAILED on gpu07: the job exited with an error; exit code 3');
});

test('a job Slurm ended itself (cancelled, out of time) shows no exit code: only the SIGTERM that stopped it', () => {
  // As scontrol reports them: the stage's process exits 143 on SIGTERM; a plain command dies of signal 15.
  assert.is(describeEnd({ id: '6', state: 'TIMEOUT', reason: 'TimeLimit', exitCode: '0:15' }),
    'Slurm job 6 ended TIMEOUT: the job reached its time limit (raise `time` in the executor settings); reason TimeLimit');
  assert.is(describeEnd({ id: '10', state: 'CANCELLED', exitCode: '143:0', node: 'gpu07' }),
    'Slurm job 10 ended CANCELLED on gpu07: the job was cancelled (scancel, or by an administrator)');
  assert.is(describeEnd({ id: '11', state: 'PREEMPTED', exitCode: '0:9' }), 'Slurm job 11 ended PREEMPTED: the job was preempted and not requeued');
});

test('a job Slurm could not start on its node says so in words, not as its pseudo-signal 53', () => {
  // scontrol while it remembers the job; sacct gives no reason, only the exit code.
  assert.is(describeEnd({ id: '12', state: 'FAILED', reason: 'JobLaunchFailure', exitCode: '0:53', node: 'gpu07' }),
    'Slurm job 12 ended FAILED on gpu07: Slurm could not start the job on its node (JobLaunchFailure)');
  assert.is(describeEnd({ id: '12', state: 'FAILED', exitCode: '0:53' }), 'Slurm job 12 ended FAILED: Slurm could not start the job on its node (JobLaunchFailure)');
});

test.run();

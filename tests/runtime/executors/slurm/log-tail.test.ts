// Following a job's log: whole lines only, across reads that split a line or a multi-byte character.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { appendFile } from 'node:fs/promises';
import path from 'node:path';
import { LogTail } from '../../../../runtime/executors/slurm/log-tail.ts';
import { tempWorkspace } from '../../../helpers/runner.ts';

test('lines appended between reads come out once each, a partial line waits for its end, and the last one comes with final', async () => {
  const file = path.join(await tempWorkspace('pausepipe-tail-'), 'job.log');
  const lines: string[] = [];
  const tail = new LogTail(file, (l) => lines.push(l));
  await tail.read();
  assert.equal(lines, [], 'a log that does not exist yet has no lines');
  await appendFile(file, 'one\r\ntw');
  await tail.read();
  assert.equal(lines, ['one']);
  // "é" is two bytes in UTF-8: split across two writes it must still decode whole.
  const e = Buffer.from('é');
  await appendFile(file, Buffer.concat([Buffer.from('o caf'), e.subarray(0, 1)]));
  await tail.read();
  await appendFile(file, Buffer.concat([e.subarray(1), Buffer.from('\nthree')]));
  await tail.read();
  assert.equal(lines, ['one', 'two café']);
  await tail.read(true);
  assert.equal(lines, ['one', 'two café', 'three']);
});

test.run();

// End to end on real GSM8K rows: data → tiny model → pause surgery → 2 warm-up variants → evaluate → report, through the CLI.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { existsSync } from 'node:fs';
import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { cli, PROJECT_ROOT, tempWorkspace } from '../helpers/runner.ts';
import { extractAnswer } from '../../stages/data/answer.ts';
import { withShared } from '../helpers/requires.ts';

interface RunJson { counts: Record<string, number> }

const GSM8K = path.resolve(PROJECT_ROOT, '../shared/data/gsm8k');

const PIPE = `
stage data = gsm8k { path: "${GSM8K}", limit_train: 200, limit_test: 6 }
stage base = init_model { preset: "tiny", overrides: { max_position_embeddings: 1024 }, seed: 1 }
stage step1 = sft(model: base, data: data) {
  train: { all: true }, max_steps: 3, batch_size: 4, lr: 1e-3, max_length: 256, eval_steps: 3
}
stage surgery = add_pause_token(model: step1) { }
stage paused = inject_pauses(data: data) { n_random_pauses: 3, seed: 42 }
for each head in [true, false] {
  stage warm = sft(model: surgery, data: paused) {
    train: { pause_embedding: true, pause_head: head }, max_steps: 2, batch_size: 4, lr: 1e-3, max_length: 256, eval_steps: 2
  }
  stage eval = evaluate(model: warm, data: data) { max_new_tokens: 12, batch_size: 6, loss_max_length: 256 }
}
stage table = report(runs: eval[*]) { title: "GSM8K smoke" }
`;

withShared(test)('a short real GSM8K run goes through evaluate and report, and a second run computes nothing', async () => {
  const ws = await tempWorkspace('pausepipe-gsm8k-e2e-');
  const file = path.join(ws, 'smoke.pipe');
  await writeFile(file, PIPE);

  const first = await cli(['run', file, '--json', '--jobs', '2'], ws);
  assert.is(first.exitCode, 0, first.stderr);
  const outcome = JSON.parse(first.stdout) as RunJson;
  assert.equal(outcome.counts, { ran: 10, cached: 0, failed: 0, skipped: 0, aborted: 0 });

  const shown = await cli(['show', file, '--stage', 'eval', '--json'], ws);
  const rows = JSON.parse(shown.stdout) as { name: string; metrics: { n: number } }[];
  assert.equal(rows.map((r) => [r.name, r.metrics.n]), [['eval[head=true]', 6], ['eval[head=false]', 6]]);

  const testRows = (await readFile(path.join(GSM8K, 'test.jsonl'), 'utf8')).split('\n').slice(0, 6)
    .map((line) => extractAnswer((JSON.parse(line) as { answer: string }).answer));
  const exported = path.join(ws, 'eval-out');
  assert.is((await cli(['export', 'eval[head=true]', exported, '--pipeline', file], ws)).exitCode, 0);
  const results = JSON.parse(await readFile(path.join(exported, 'test_results.json'), 'utf8')) as { ground_truth: string }[];
  assert.equal(results.map((r) => r.ground_truth), testRows);

  const report = path.join(ws, 'report-out');
  assert.is((await cli(['export', 'table', report, '--pipeline', file], ws)).exitCode, 0);
  const md = await readFile(path.join(report, 'report.md'), 'utf8');
  assert.ok(md.includes('head=true') && md.includes('head=false'), md);
  assert.ok(existsSync(path.join(report, 'report.html')));

  const second = await cli(['run', file, '--json'], ws);
  assert.is(second.exitCode, 0, second.stderr);
  assert.equal((JSON.parse(second.stdout) as RunJson).counts, { ran: 0, cached: 10, failed: 0, skipped: 0, aborted: 0 });

  const plain = await cli(['run', file], ws);
  assert.match(plain.stdout, /^ran 0, cached 10 in /m);
  assert.match(plain.stdout, /^table: \.pausepipe\/objects\/[0-9a-f]{2}\/[0-9a-f]{64}\/artifacts\/report\.html$/m);
  assert.match(plain.stdout, /^stage +head +accuracy +accuracy_std +n +eval_loss/m);
});

test.run();

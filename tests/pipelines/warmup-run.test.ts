// pipelines/warmup.pipe end to end on the tiny Mistral fixture and real GSM8K rows, shrunk to a few updates per stage.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import type { JsonValue } from '../../runtime/json.ts';
import { SILENT_REPORTER } from '../../runtime/progress.ts';
import { planLoaded, runSession } from '../../runtime/session.ts';
import { STAGE_KINDS } from '../../stages/index.ts';
import { CHROMIUM, CHROMIUM_PRESENT, keepScreenshot, openFile } from '../helpers/browser.ts';
import { requires, withShared } from '../helpers/requires.ts';
import { loadProjectPipeline } from './pipeline-files.ts';

const test = suite('warmup.pipe run');

let cacheDir = '';
/** report.html of the run, for the browser test. */
let reportHtml = '';
test.before(async () => {
  cacheDir = await mkdtemp(path.join(os.tmpdir(), 'pausepipe-warmup-run-'));
});
test.after(async () => {
  await rm(cacheDir, { recursive: true, force: true });
});

/** The seed's settings, cut to seconds: 40 GSM8K rows, 2 updates per fine-tuning, 3 test answers of 4 tokens. */
const SHRINK: Record<string, Record<string, JsonValue>> = {
  gsm8k: { limit_train: 40, limit_test: 3 },
  inject_pauses: { samples_per_example: 2 },
  sft: { batch_size: 4, max_steps: 2, eval_steps: 2, save_steps: 2, max_length: 128 },
  evaluate: { max_new_tokens: 4, batch_size: 3, loss_max_length: 128 },
};

withShared(test)('all 48 stages run on the Mistral fixture: 18 variants, the seed-config variant and 2 baselines evaluated, one report row each', async () => {
  const pipeline = await loadProjectPipeline('warmup.pipe');
  for (const s of pipeline.stages) Object.assign(s.params, SHRINK[s.kind] ?? {});
  const session = await planLoaded(pipeline, STAGE_KINDS, cacheDir);
  const result = await runSession(session, { jobs: 2, gpus: 0, keepGoing: false, reporter: SILENT_REPORTER });
  const notRun = result.outcomes.filter((o) => o.status !== 'ran' && o.status !== 'cached').map((o) => `${o.name}: ${o.status} ${o.error ?? ''}`);
  assert.equal(notRun, []);
  // The 1-epoch baseline is step 1 itself: one of the two is computed, the other reuses it.
  assert.equal([result.counts.ran, result.counts.cached], [47, 1]);

  const report = result.outcomes.find((o) => o.name === 'report')!;
  reportHtml = path.join(session.store.artifactsDir(report.key!), 'report.html');
  const rows = report.metrics!.rows as Record<string, JsonValue>[];
  assert.is(rows.filter((r) => r.role === 'run').length, 19);
  // The seed's flawed config is marked and trains the pause embedding, not the pause head its name promises.
  const seed = rows.filter((r) => r.modules_to_save !== null);
  assert.equal(seed.map((r) => [r.label, r.trainable, r.modules_to_save]), [[
    'pause=head, lm=lm_head+embed, lora=true, config=seed', ['pauseEmbedding', 'lmHead', 'lmEmbeddings'], ['new_embedding', 'lm_head', 'original_embedding'],
  ]]);
  assert.equal(rows.filter((r) => r.role === 'baseline').map((r) => r.label), ['baseline_epochs=1', 'baseline_epochs=2']);
  assert.ok(rows.every((r) => r.n === 3), JSON.stringify(rows.map((r) => r.n)));

  // Pauses were placed between the Mistral tokenizer's tokens: the training answers carry them.
  const paused = result.outcomes.find((o) => o.name === 'paused')!;
  const train = await readFile(path.join(session.store.artifactsDir(paused.key!), 'train.jsonl'), 'utf8');
  assert.match(train, '<|pause|>');
  // Split after injecting, as the original: 40 questions × 2 samples pooled, ceil(80 × 0.1) = 8 validation rows.
  assert.equal(paused.metrics!.counts, { train: 72, validation: 8, test: 3 });
});

if (!CHROMIUM_PRESENT && process.env.CI === 'true') {
  test('Chromium is installed (.ci/run installs it)', () => {
    assert.unreachable(`no Chromium at ${CHROMIUM}: apt-get install -y chromium`);
  });
}
const inChromium = CHROMIUM_PRESENT ? withShared(test) : requires(false, `no Chromium at ${CHROMIUM} (apt-get install -y chromium)`, test);

/** Text of every cell of the results table, by row. */
async function resultCells(page: import('playwright-core').Page): Promise<string[][]> {
  return page.locator('table.results tr').evaluateAll((trs) => trs.map((tr) => [...tr.children].map((c) => (c as HTMLElement).innerText.trim())));
}

inChromium('report.html in Chromium: provenance, no cache keys in the table, validation points drawn, the seed\'s numbers beside the measured ones', async () => {
  assert.ok(reportHtml, 'the run test wrote the report');
  const { page, close } = await openFile(reportHtml);
  try {
    const provenance = await page.locator('dl.provenance').innerText();
    assert.match(provenance, /pipeline\s+pipelines\/warmup\.pipe/);
    assert.match(provenance, /git commit\s+([0-9a-f]{12}(, clean| with uncommitted changes)|not a git repository)/);
    assert.match(provenance, /pausepipe\s+\d+\.\d+\.\d+/);
    assert.ok(await page.locator('dl.provenance').isVisible());

    const cells = await resultCells(page);
    assert.not.match(cells.flat().join('\n'), /[0-9a-f]{64}/);
    const header = cells[0]!;
    const seedAccuracy = header.indexOf('seed accuracy');
    const seedLoss = header.indexOf('seed eval loss');
    assert.ok(seedAccuracy > header.indexOf('test accuracy') && seedLoss > header.indexOf('eval loss'), header.join(' | '));
    const row = (label: string) => cells.find((r) => r[0] === label)!;
    assert.equal([row('pause=embed+head, lm=none, lora=false, config=generated')[seedAccuracy], row('pause=embed+head, lm=none, lora=false, config=generated')[seedLoss]], ['0.48', '0.57003']);
    // The seed's 0.01 came from its flawed YAML: it stands beside the variant that reproduces that YAML, not its corrected twin.
    const seedRow = 'pause=head, lm=lm_head+embed, lora=true, config=seed';
    assert.equal([row(seedRow)[seedAccuracy], row('pause=head, lm=lm_head+embed, lora=true, config=generated')[seedAccuracy], row('baseline_epochs=2')[seedAccuracy]],
      ['0.01 [1]', '-', '0.53']);
    assert.is(cells.slice(1).filter((r) => r[seedAccuracy] !== '-').length, 20);

    // Every model's validation loss is a dot with a size on the page (18 variants and 2 baselines, one evaluation each at least).
    const points = page.locator('circle.point.validation');
    const count = await points.count();
    assert.ok(count >= 20, `${count} validation points`);
    for (let i = 0; i < count; i++) {
      const box = await points.nth(i).boundingBox();
      assert.ok(box !== null && box.width > 0 && box.height > 0, `point ${i}: ${JSON.stringify(box)}`);
    }
    assert.is(await page.locator('details.files').getAttribute('open'), null);
    await keepScreenshot(page, 'warmup-report.png');
  } finally {
    await close();
  }
});

test.run();

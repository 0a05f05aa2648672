// What the model stage kinds share inside run(): backend start-up and opening a model folder with its tokenizer.
import { existsSync } from 'node:fs';
import path from 'node:path';
import type { StageContext } from '../kind.ts';
import { initBackend } from './backend.ts';
import { type MemoryPurpose, wasmMemoryRefusal, type WasmUse } from './memory-estimate.ts';
import type { CausalLM } from './model.ts';
import { loadModel } from './model-io.ts';
import { loadTokenizer, pauseText, readsAsPause } from './tokenizer.ts';
import type { Tokenizer } from './types.ts';

/** What a model stage records about where it ran: in its metrics, so `show` and the report can say it per row. */
export interface BackendMetrics {
  /** The tfjs backend: tensorflow, webgpu, wasm or cpu. */
  backend: string;
  /** What ran the kernels, e.g. `wasm (SIMD, 1 thread)` or the GPU adapter. */
  device: string;
  [key: string]: string;
}

/**
 * Starts the backend the run asked for (or the best one) and says which one runs the stage: in the stage's log, and
 * once per run on the terminal, with the fallback notice when the asked-for one was unavailable.
 */
export async function startBackend(ctx: StageContext<unknown>): Promise<BackendMetrics> {
  const info = await initBackend(ctx.backend);
  const device = info.device ?? info.name;
  if (info.notice) {
    ctx.log(info.notice);
    ctx.notice?.(`backend fallback: ${info.notice}`);
  }
  ctx.log(`backend: ${device}`);
  ctx.notice?.(`backend: ${device}`);
  return { backend: info.name, device };
}

/** A model folder written by a model stage: the model (with its PEFT adapter, if any) and its tokenizer.json. */
export async function openModelFolder(dir: string, log: (line: string) => void): Promise<{ model: CausalLM; tokenizer: Tokenizer }> {
  if (!existsSync(path.join(dir, 'tokenizer.json'))) throw new Error(`${dir}: no tokenizer.json beside the model (write model folders with init_model)`);
  const tokenizer = await loadTokenizer(dir);
  const model = await loadModel(dir, { log });
  const pause = model.config.pause?.tokenId ?? null;
  if (tokenizer.pauseId !== pause) {
    model.dispose();
    throw new Error(`${dir}: the model's pause token id is ${pause ?? 'none'} but its tokenizer's is ${tokenizer.pauseId ?? 'none'}`);
  }
  // A folder made by hand or by an `sh` step may pair a model with another model's tokenizer: its ids would fail deep
  // in the embedding lookup, without saying why.
  const rows = model.config.vocabSize + (pause === null ? 0 : 1);
  if (tokenizer.vocabSize > rows) {
    model.dispose();
    throw new Error(`${dir}: tokenizer.json has ${tokenizer.vocabSize} ids but the model's embedding only ${rows} rows: the tokenizer is not the model's`);
  }
  return { model, tokenizer };
}

/** A sequence-length setting capped at the model's positions (as SFTTrainer caps max_seq_length), with a note when it bites. */
export function fitLength(requested: number, model: CausalLM, name: string, log: (line: string) => void): number {
  const limit = model.config.maxPositionEmbeddings;
  if (requested <= limit) return requested;
  log(`${name} ${requested} exceeds the model's max_position_embeddings ${limit}; using ${limit}`);
  return limit;
}

/**
 * Rows made by inject_pauses record the pause text they hold (dataset.json `pause_token`). A model whose pause token is
 * another text would read those pauses as ordinary characters: it would train and be scored on them without a word.
 */
export function checkDataPauseToken(dataPauseToken: unknown, data: string, tokenizer: Tokenizer, model: string): void {
  if (typeof dataPauseToken !== 'string' || tokenizer.pauseId === null || readsAsPause(tokenizer, dataPauseToken)) return;
  throw new Error(`the rows of ${data} hold pauses written ${dataPauseToken}, but the pause token of ${model} is ${pauseText(tokenizer)}: ` +
    'give inject_pauses the token that add_pause_token added (its `pause_token` and `token` params)');
}

/**
 * Refuses a stage on the wasm backend whose tensors cannot fit in wasm's memory (4 GiB per process, whatever the
 * machine has: 32-bit addresses) before anything large is made, by `wasmTensorFloor` of the model's config.json (no
 * check without one). Without this, such a stage loaded for minutes, then ended in "memory access out of bounds".
 */
export function refuseBeyondWasmMemory(ran: BackendMetrics, config: Record<string, unknown> | undefined, use: WasmUse, purpose: MemoryPurpose): void {
  if (ran.backend !== 'wasm' || config === undefined) return;
  const refusal = wasmMemoryRefusal(config, use, purpose);
  if (refusal !== undefined) throw new Error(refusal);
}

// The decisions a device check's figures call for, read from its logs: which product and which attention kernels to
// make the default, which GEMM tile, whether frozen weights go bfloat16, whether decode replay and the lookahead pay. Printed at the end of
// bench/device-check.sh's summary.
//
//   node --import tsx bench/device-verdicts.ts OUT_DIR
//
// It reads the `=== step` sections of OUT_DIR/bench.txt and OUT_DIR/mistral7b.txt (what device-check.sh writes) and
// only compares figures of one run on one machine; a step that did not run is reported as not measured.
import { readFileSync } from 'node:fs';
import path from 'node:path';

/** The lines of each `=== NAME (limit Ns)` section of a device check's logs, by step name. */
export function sections(text: string): Map<string, string[]> {
  const out = new Map<string, string[]>();
  let current: string[] | null = null;
  for (const line of text.split('\n')) {
    const head = /^=== (.*) \(limit \d+s\)$/.exec(line);
    if (head) out.set(head[1]!, (current = []));
    else current?.push(line);
  }
  return out;
}

/** A number as the benches print it (thousands separated by commas). */
const num = (s: string) => Number(s.replace(/,/g, ''));

/** One rate of a bench run: milliseconds a step (what is compared) and tokens/s (what is shown). */
export interface StepRate {
  ms: number;
  tokensPerS: number;
}

/** The training and decoding rates of one bench run (its `train` and `decode:` lines), null where absent. */
export function rates(lines: readonly string[] | undefined): { train: StepRate | null; decode: StepRate | null } {
  const line = (prefix: string) => lines?.find((l) => l.startsWith(prefix));
  const ms = (l: string | undefined) => l?.match(/([\d,.]+) ms a step/)?.[1];
  const perS = (l: string | undefined) => l?.match(/([\d,.]+) tokens\/s wall/)?.[1];
  const rate = (l: string | undefined): StepRate | null => (ms(l) && perS(l) ? { ms: num(ms(l)!), tokensPerS: num(perS(l)!) } : null);
  // `train:`, or `train (activation checkpointing; ...):` for a checkpointed run.
  return { train: rate(line('train')), decode: rate(line('decode:')) };
}

/** Each matmul line's shape label and the WGSL GEMM's rate over tfjs's. */
export function productRatios(lines: readonly string[] | undefined): Array<{ label: string; ratio: number }> {
  const out: Array<{ label: string; ratio: number }> = [];
  for (const l of lines ?? []) {
    const m = /^matmul (.*?): .* \(([\d.]+)×[;)]/.exec(l);
    if (m) out.push({ label: m[1]!, ratio: Number(m[2]) });
  }
  return out;
}

const RATE = /([\d.]+) ([GT])FLOP\/s/;
const flops = (s: string) => {
  const m = RATE.exec(s);
  return m ? Number(m[1]) * (m[2] === 'T' ? 1e12 : 1e9) : NaN;
};

/** Per shape of the other-tiles run: the default tile's rate and the best other tile, with its rate. */
export function tileBests(lines: readonly string[] | undefined): Array<{ label: string; wgsl: number; best: string; rate: number }> {
  const out: Array<{ label: string; wgsl: number; best: string; rate: number }> = [];
  let last: { label: string; wgsl: number } | null = null;
  for (const l of lines ?? []) {
    const m = /^matmul (.*?): .* wgsl ([\d.]+ [GT]FLOP\/s)/.exec(l);
    if (m) last = { label: m[1]!, wgsl: flops(m[2]!) };
    const others = /^ {2}other wgsl tiles [^:]*: (.*)$/.exec(l);
    if (others && last) {
      const tiles = others[1]!.split(', ').map((t) => ({ tile: t.split(' ')[0]!, rate: flops(t) }));
      const top = tiles.reduce((a, b) => (b.rate > a.rate ? b : a));
      out.push({ ...last, best: top.tile, rate: top.rate });
    }
  }
  return out;
}

const geomean = (xs: number[]) => Math.exp(xs.reduce((a, x) => a + Math.log(x), 0) / xs.length);
/** How much faster `b` runs a step than `a`. */
const speedup = (a: StepRate | null, b: StepRate | null) => (a && b ? `${(a.ms / b.ms).toFixed(2)}×` : 'not measured');
const tokens = (x: StepRate | null) => (x === null ? 'not measured' : `${Math.round(x.tokensPerS).toLocaleString('en-US')} tokens/s (${x.ms} ms a step)`);

/** The verdict lines for one device check's output folder. */
export function verdicts(bench: string, mistral: string): string[] {
  const s = new Map([...sections(bench), ...sections(mistral)]);
  const out: string[] = [];
  // A software adapter (lavapipe) proves the script runs; its rates are CPU rates and must decide no default.
  const software = /^backend: webgpu: (.*), a software adapter/m.exec(bench + '\n' + mistral)?.[1];
  if (software !== undefined) out.push(`verdicts from a software adapter (${software}): the script ran; its rates decide nothing`);
  const decide = (decision: string) => (software !== undefined && decision !== 'no decision' ? 'no decision (software adapter)' : decision);
  const ratios = productRatios(s.get('matmul bench: tfjs vs wgsl'));
  if (ratios.length > 0) {
    const faster = ratios.filter((r) => r.ratio > 1).length;
    out.push(`verdict products: the WGSL GEMM against tfjs's matmul ${ratios.map((r) => `${r.ratio}×`).join(', ')} ` +
      `(faster on ${faster} of ${ratios.length} shapes, geometric mean ${geomean(ratios.map((r) => r.ratio)).toFixed(2)}×)`);
  } else out.push('verdict products: matmul bench not measured');
  // Each default against its alternative, on the same shape in the same run: [verdict, default's step, alternative's step].
  const choices = [
    { names: ['tfjs', 'wgsl'], where: 'matMulChoice in stages/lm/webgpu/matmul.ts', runs: [
      ['medium training', 'bench medium', 'bench medium, wgsl matmul'],
      ['mistral7b layer training', 'bench mistral7b, 1 layer', 'bench mistral7b, 1 layer, wgsl matmul'],
    ] },
    { names: ['rows', 'lanes'], where: 'attentionChoice in stages/lm/webgpu/attention.ts', runs: [
      ['medium attention', 'bench medium', 'bench medium, lanes attention'],
      ['mistral7b layer attention', 'bench mistral7b, 1 layer', 'bench mistral7b, 1 layer, lanes attention'],
    ] },
  ] as const;
  for (const { names: [now, other], where, runs } of choices) {
    for (const [name, base, alternative] of runs) {
      const [a, b] = [rates(s.get(base)).train, rates(s.get(alternative)).train];
      out.push(`verdict ${name}: ${now} ${tokens(a)}, ${other} ${tokens(b)} (${other} ${speedup(a, b)}): ` +
        decide(a && b ? (b.ms < a.ms ? `make ${other} the default (${where})` : `keep ${now}`) : 'no decision'));
    }
  }
  const tiles = tileBests(s.get('matmul bench: other wgsl tiles'));
  if (tiles.length > 0) {
    out.push(`verdict tiles: best other tile per shape ${tiles.map((t) => `${t.label}: ${t.best} ${(t.rate / t.wgsl).toFixed(2)}×`).join('; ')} (against the planned tile)`);
  }
  for (const shape of ['small', 'medium']) {
    const [on, off] = [rates(s.get(`bench ${shape}`)).decode, rates(s.get(`bench ${shape}, decode graph off`)).decode];
    out.push(`verdict decode replay, ${shape}: ${tokens(on)} replayed, ${tokens(off)} through tfjs (replay ${speedup(off, on)})`);
  }
  out.push(frozenWeightsVerdict(s, decide));
  const [one, four] = [rates(s.get('bench small')).decode, rates(s.get('bench small, lookahead 4')).decode];
  out.push(`verdict decode lookahead, small: 1 ahead ${tokens(one)}, 4 ahead ${tokens(four)} (${speedup(one, four)}): ` +
    decide(one && four ? (four.ms < one.ms / 1.05 ? 'raise the default (PAUSEPIPE_DECODE_LOOKAHEAD in kernels.ts)' : 'keep 1') : 'no decision'));
  return out;
}

/** The largest GPU allocation a bench run's `memory:` line gives, in GiB, or null. */
export function gpuPeakGiB(lines: readonly string[] | undefined): number | null {
  const m = lines?.map((l) => /^memory: .*, GPU ([\d.]+) GiB allocated/.exec(l)).find(Boolean);
  return m ? Number(m[1]) : null;
}

/**
 * Frozen projections packed as bfloat16 halve their memory; they become the default if a Mistral-7B layer trains with
 * them at least about as fast (within 5%) as with float32 weights on the faster of the two products.
 */
function frozenWeightsVerdict(s: Map<string, string[]>, decide: (decision: string) => string): string {
  const f32 = [rates(s.get('bench mistral7b, 1 layer')).train, rates(s.get('bench mistral7b, 1 layer, wgsl matmul')).train]
    .filter((r): r is StepRate => r !== null).sort((a, b) => a.ms - b.ms)[0] ?? null;
  const bf16 = rates(s.get('bench mistral7b, 1 layer, bf16 frozen weights')).train;
  const peak = (step: string) => {
    const gib = gpuPeakGiB(s.get(step));
    return gib === null ? 'not measured' : `${gib.toFixed(2)} GiB`;
  };
  return `verdict frozen weights: f32 ${tokens(f32)}, bf16 ${tokens(bf16)} (bf16 ${speedup(f32, bf16)}); 32 layers at their GPU peak: ` +
    `f32 ${peak('bench mistral7b, 32 layers, checkpointing')}, bf16 ${peak('bench mistral7b, 32 layers, checkpointing, bf16 frozen weights')}: ` +
    decide(f32 && bf16 ? (bf16.ms <= f32.ms * 1.05 ? 'make bf16 the default (PAUSEPIPE_FROZEN_WEIGHTS in stages/lm/gpu-settings.ts)' : 'keep f32') : 'no decision');
}

if (process.argv[1] && path.resolve(process.argv[1]) === path.resolve(new URL(import.meta.url).pathname)) {
  const dir = process.argv[2];
  if (!dir) {
    console.error('usage: node --import tsx bench/device-verdicts.ts OUT_DIR');
    process.exit(2);
  }
  const read = (f: string) => {
    try {
      return readFileSync(path.join(dir, f), 'utf8');
    } catch {
      return '';
    }
  };
  for (const line of verdicts(read('bench.txt'), read('mistral7b.txt'))) console.log(line);
}

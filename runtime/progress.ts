// Live progress of a run: a redrawn block of running stages on a terminal, plain lines everywhere else.
import { describeOwner } from '../cache/lock.ts';
import type { Progress } from '../stages/kind.ts';
import { formatSeconds } from './format.ts';

export interface LockHolder {
  pid: number;
  hostname: string;
  startedAt: string;
  slurmJobId?: string;
  renewedAt?: string;
}

/** How a stage ended in this run. */
export type OutcomeStatus = 'ran' | 'cached' | 'failed' | 'skipped' | 'aborted';

/** What the executor tells the person watching; every method is cheap and never throws. */
export interface Reporter {
  start(name: string): void;
  progress(name: string, p: Progress): void;
  waiting(name: string, holder: LockHolder): void;
  finish(name: string, status: OutcomeStatus, detail?: string): void;
  /** A line of its own, e.g. `restored data/prep.txt (prep)`. */
  note(text: string): void;
  /** Stops redrawing; the block is cleared. */
  close(): void;
}

export interface ReporterOptions {
  /** Redraw a live block (default: whether the stream is a TTY). */
  tty?: boolean;
  /** Milliseconds clock, injectable for tests. */
  now?: () => number;
  /** Terminal width for the live block; default the stream's. */
  columns?: number;
}

interface Running {
  started: number;
  progress?: Progress;
  /** First progress report with a total: ETA is extrapolated from it. */
  origin?: { at: number; step: number };
  /** Last 10 % bucket printed (plain mode). */
  bucket: number;
  lastLine: number;
}

/** Plain mode prints a line for a stage without a total this often, so a long stage still shows it is alive. */
const QUIET_LINE_MS = 30_000;
const REDRAW_MS = 100;
const BAR_WIDTH = 20;
const SPINNER = '⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏';
const STATUS_WIDTH = 8;

function statusLine(word: string, rest: string): string {
  return `${word.padEnd(STATUS_WIDTH)}${rest}`;
}

function percent(p: Progress): number | undefined {
  return p.total ? Math.min(100, Math.floor((p.step / p.total) * 100)) : undefined;
}

export function createReporter(stream: NodeJS.WritableStream & { isTTY?: boolean; columns?: number }, opts: ReporterOptions = {}): Reporter {
  const tty = opts.tty ?? Boolean(stream.isTTY);
  const now = opts.now ?? Date.now;
  const running = new Map<string, Running>();
  let drawn = 0;
  let timer: NodeJS.Timeout | undefined;

  const eta = (r: Running): string => {
    const p = r.progress;
    if (!p?.total || !r.origin || p.step <= r.origin.step) return '';
    const perStep = (now() - r.origin.at) / (p.step - r.origin.step);
    return ` ETA ${formatSeconds((perStep * (p.total - p.step)) / 1000)}`;
  };

  const liveLine = (name: string, r: Running, frame: string): string => {
    const p = r.progress;
    const elapsed = formatSeconds((now() - r.started) / 1000);
    const msg = p?.message ? `  ${p.message}` : '';
    const pct = p ? percent(p) : undefined;
    if (p && pct !== undefined) {
      const filled = Math.round((pct / 100) * BAR_WIDTH);
      const bar = `${'█'.repeat(filled)}${'░'.repeat(BAR_WIDTH - filled)}`;
      return `${frame} ${name}  ${bar} ${String(pct).padStart(3)}% ${p.step}/${p.total}${eta(r)}${msg}`;
    }
    return `${frame} ${name}  ${elapsed}${p ? `  step ${p.step}` : ''}${msg}`;
  };

  const redraw = (above: string[] = []) => {
    let out = drawn > 0 ? `\x1b[${drawn}A\r\x1b[0J` : '';
    for (const line of above) out += `${line}\n`;
    const frame = SPINNER[Math.floor(now() / REDRAW_MS) % SPINNER.length]!;
    const width = Math.max(20, (opts.columns || stream.columns || 100) - 1);
    const block = [...running].map(([name, r]) => liveLine(name, r, frame)).map((l) => (l.length > width ? `${l.slice(0, width - 1)}…` : l));
    for (const line of block) out += `${line}\n`;
    drawn = block.length;
    if (out) stream.write(out);
  };

  const print = (line: string) => {
    if (tty) redraw([line]);
    else stream.write(`${line}\n`);
  };

  const ensureTimer = () => {
    if (!tty) return;
    if (running.size > 0 && !timer) timer = setInterval(() => redraw(), REDRAW_MS).unref();
    if (running.size === 0 && timer) {
      clearInterval(timer);
      timer = undefined;
    }
  };

  return {
    start(name) {
      running.set(name, { started: now(), bucket: 0, lastLine: now() });
      if (tty) redraw();
      else print(statusLine('start', name));
      ensureTimer();
    },
    progress(name, p) {
      const r = running.get(name);
      if (!r) return;
      r.progress = p;
      if (p.total && !r.origin) r.origin = { at: now(), step: p.step };
      if (tty) return;
      const pct = percent(p);
      const bucket = pct === undefined ? 0 : Math.floor(pct / 10);
      const quiet = pct === undefined && now() - r.lastLine >= QUIET_LINE_MS;
      if ((pct !== undefined && bucket > r.bucket && bucket < 10) || quiet) {
        r.bucket = bucket;
        r.lastLine = now();
        const where = pct === undefined ? `step ${p.step}` : `${pct}% (${p.step}/${p.total})`;
        print(statusLine('', `${name}  ${where}${p.message ? `  ${p.message}` : ''}`));
      }
    },
    waiting(name, holder) {
      print(statusLine('waiting', `${name}: computed by ${describeOwner(holder)}`));
    },
    finish(name, status, detail) {
      const r = running.get(name);
      running.delete(name);
      const seconds = r && (status === 'ran' || status === 'failed') ? ` (${formatSeconds((now() - r.started) / 1000)})` : '';
      const word = status === 'ran' ? 'done' : status;
      print(statusLine(word, `${name}${seconds}${detail ? `: ${detail}` : ''}`));
      ensureTimer();
    },
    note(text) {
      print(text);
    },
    close() {
      running.clear();
      ensureTimer();
      if (tty && drawn > 0) redraw();
    },
  };
}

/** A reporter that prints nothing (for `--json` and library use). */
export const SILENT_REPORTER: Reporter = {
  start: () => undefined,
  progress: () => undefined,
  waiting: () => undefined,
  finish: () => undefined,
  note: () => undefined,
  close: () => undefined,
};

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
  /** `name` waits for its key's lock: held by `holder`, or by the stage `sibling` of this run that shares its key. */
  waiting(name: string, holder: LockHolder, sibling?: string): void;
  finish(name: string, status: OutcomeStatus, detail?: string): void;
  /**
   * Where a stage computed elsewhere (a Slurm job) stands: waiting in the queue, or running since `startedAt` (on the
   * reporter's clock; default now). Its time, and the rate of its progress, count from when it runs.
   */
  jobState(name: string, state: 'queued' | 'running', startedAt?: number): void;
  /** A line of its own, e.g. `restored data/prep.txt (prep)`. */
  note(text: string): void;
  /** Stages that joined the run (`watch`): the overall line counts them. */
  add(stages: RunStage[]): void;
  /** The run was interrupted: what is left will be skipped, so no more ETAs. */
  interrupted(): void;
  /** Stops redrawing; the block is cleared. */
  close(): void;
}

/** A stage of the run as the overall line counts it. */
export interface RunStage {
  name: string;
  /** Stages of one group take about as long as each other (the declared name: every `warm[…]`). */
  group: string;
  /** Its stage kind: a group not finished yet takes about as long as other groups of its kind did in this run. */
  kind?: string;
  /** Cached already: done from the start. */
  fresh: boolean;
  /** Seconds this stage took when it was last computed (its previous key's entry in the cache), when known. */
  lastSeconds?: number;
  /**
   * How much work it does next to other stages of its kind (sft: the examples it trains on), once its inputs are
   * computed; asked when the reporter starts and again when one of its `inputs` ends, while still unknown.
   */
  work?: () => number | undefined;
  /** The stages it reads from directly. */
  inputs?: string[];
}

export interface ReporterOptions {
  /** Redraw a live block (default: whether the stream is a TTY). */
  tty?: boolean;
  /** Milliseconds clock, injectable for tests. */
  now?: () => number;
  /** Terminal width for the live block; default the stream's. */
  columns?: number;
  /** The stages of the run: enables the overall line, `12/21 stages · ETA 3m`. */
  stages?: RunStage[];
  /** Stages that run at once (CPU slots), for the overall ETA. Default 1. */
  slots?: number;
  /**
   * The stages run as cluster jobs (`--executor slurm`): a stage counts as queued until its job runs, and the overall
   * line says how many are queued and running, with an ETA only once jobs have run (see `overall`).
   */
  cluster?: boolean;
}

interface Running {
  /** When it started, or its job started running (queued: when it was started). */
  started: number;
  /** Its cluster job has been seen running (and not queued again since). */
  jobRunning?: boolean;
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
/** A narrower bar says nothing the percentage does not. */
const MIN_BAR_WIDTH = 5;
const SPINNER = '⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏';
const STATUS_WIDTH = 8;

function statusLine(word: string, rest: string): string {
  return `${word.padEnd(STATUS_WIDTH)}${rest}`;
}

function percent(p: Progress): number | undefined {
  return p.total ? Math.min(100, Math.floor((p.step / p.total) * 100)) : undefined;
}

/** Overall ETAs are rough: minutes are enough, seconds only near the end. */
function formatEta(seconds: number): string {
  if (seconds < 60) return `${Math.max(1, Math.round(seconds))} s`;
  if (seconds < 3600) return `${Math.round(seconds / 60)}m`;
  return formatSeconds(seconds);
}

/** `warm[pause=embed+head,lora=false]` → `warm[pause=e…lora=false]`: the start and end say most about a stage name. */
function shorten(name: string, max: number): string {
  if (name.length <= max) return name;
  if (max < 3) return name.slice(0, max);
  const head = Math.ceil((max - 1) / 2);
  return `${name.slice(0, head)}…${name.slice(name.length - (max - 1 - head))}`;
}

function mean(xs: number[] | undefined): number | undefined {
  return xs && xs.length > 0 ? xs.reduce((a, b) => a + b, 0) / xs.length : undefined;
}

/** A finished stage's duration, and its work when its kind counts one. */
interface Took {
  seconds: number;
  work: number | undefined;
}

/**
 * How long a stage of `work` should take, like the finished ones: at their rate per unit of work when both sides
 * count it (a 100-update training after a 500-update one), else as long as they did on average.
 */
function expected(done: Took[] | undefined, work: number | undefined): number | undefined {
  const counted = done?.filter((t) => t.work !== undefined) ?? [];
  if (work !== undefined && counted.length > 0) {
    const sum = (f: (t: Took) => number) => counted.reduce((a, t) => a + f(t), 0);
    return (work * sum((t) => t.seconds)) / sum((t) => t.work!);
  }
  return mean(done?.map((t) => t.seconds));
}

export function createReporter(stream: NodeJS.WritableStream & { isTTY?: boolean; columns?: number }, opts: ReporterOptions = {}): Reporter {
  const tty = opts.tty ?? Boolean(stream.isTTY);
  const now = opts.now ?? Date.now;
  const running = new Map<string, Running>();
  const stages = opts.stages && [...opts.stages];
  const stageOf = new Map(stages?.map((s) => [s.name, s]));
  const finished = new Set(stages?.filter((s) => s.fresh).map((s) => s.name));
  /** How long each finished stage of a group, and of a kind, took, with its work (ran ones only: a failure says nothing about duration). */
  const durations = new Map<string, Took[]>();
  const kindDurations = new Map<string, Took[]>();
  const works = new Map<string, number>();
  /** Asks the stages whose work is unknown (those reading `ended`, when given: only an input's end can change it). */
  const askWork = (ended?: string) => {
    for (const s of stages ?? []) {
      if (finished.has(s.name) || works.has(s.name) || (ended !== undefined && !s.inputs?.includes(ended))) continue;
      const w = s.work?.();
      if (w !== undefined && w > 0) works.set(s.name, w);
    }
  };
  askWork();
  let drawn = 0;
  let timer: NodeJS.Timeout | undefined;
  /** The most of this run's cluster jobs seen running at once: the parallelism the cluster gives this run so far. */
  let peakRunning = 0;
  let stopping = false;
  /** Under a cluster, a stage waits in its queue until its job is seen running; here every started stage runs. */
  const isQueued = (r: Running) => opts.cluster === true && r.jobRunning !== true;

  /** Seconds left for a running stage from its rate so far; undefined before two progress reports. */
  const remaining = (r: Running): number | undefined => {
    const p = r.progress;
    if (!p?.total || !r.origin || p.step <= r.origin.step) return undefined;
    const perStep = (now() - r.origin.at) / (p.step - r.origin.step);
    return (perStep * (p.total - p.step)) / 1000;
  };

  const eta = (r: Running): string => {
    const left = remaining(r);
    return left === undefined ? '' : ` ETA ${formatSeconds(left)}`;
  };

  /**
   * `12/21 stages · ETA 3m`. A stage takes as long as the finished stages of its group in this run, else as long as it
   * took when last computed, else as long as the finished stages of its kind (both per unit of work where the kind
   * counts it: `expected`), else as the running ones of its kind will by their rates (the first training tells more
   * about the next ones than the quick data stages before it); a running stage what its rate says first, and a stage
   * still to run, failing all these, as long as the finished stages on average. The work left is shared by the slots,
   * but the run cannot end before its longest running stage. No ETA while a running stage has no estimate (a long
   * first training would make any guess wrong), nor before anything has a duration.
   *
   * Under a cluster the slots are not the cluster's (the queue decides how many jobs run at once): the work is shared
   * by as many stages as were seen running at once so far (never more than the slots), a queued stage counts whole,
   * and the line says how many are running and queued; no ETA before a job has been seen running.
   */
  const overall = (): string | undefined => {
    if (!stages) return undefined;
    const fallback = mean([...durations.values()].flat().map((t) => t.seconds));
    /** How long the running stages of a kind will have taken in all, by their rates so far. */
    const projected = (kind: string) => mean([...running].flatMap(([name, r]) => {
      const left = stageOf.get(name)?.kind === kind ? remaining(r) : undefined;
      return left === undefined ? [] : [(now() - r.started) / 1000 + left];
    }));
    let secondsLeft = 0;
    let longest = 0;
    let known = true;
    for (const s of stages) {
      if (finished.has(s.name)) continue;
      const started = running.get(s.name);
      // A queued stage has all its work ahead of it, as one not started.
      const r = started && !isQueued(started) ? started : undefined;
      const work = works.get(s.name);
      const like = expected(durations.get(s.group), work) ?? s.lastSeconds
        ?? (s.kind === undefined ? undefined : expected(kindDurations.get(s.kind), work) ?? (r ? undefined : projected(s.kind)));
      const left = r ? remaining(r) ?? (like === undefined ? undefined : Math.max(0, like - (now() - r.started) / 1000)) : like ?? fallback;
      if (left === undefined) {
        known = false;
        break;
      }
      if (r) longest = Math.max(longest, left);
      secondsLeft += left;
    }
    let count = `${finished.size}/${stages.length} stages`;
    let parallel = opts.slots ?? 1;
    if (opts.cluster) {
      const queued = [...running.values()].filter(isQueued).length;
      count += ` · ${running.size - queued} running, ${queued} queued`;
      parallel = Math.min(parallel, peakRunning);
      if (parallel === 0) return count;
    }
    if (!known || stopping || finished.size === stages.length) return count;
    return `${count} · ETA ${formatEta(Math.max(longest, secondsLeft / Math.max(1, parallel)))}`;
  };

  /** The line of a running stage within `width`: the bar gives way first, then the middle of the name. */
  const liveLine = (name: string, r: Running, frame: string, width: number): string => {
    const p = r.progress;
    const msg = p?.message ? `  ${p.message}` : '';
    const pct = p ? percent(p) : undefined;
    const elapsed = `${isQueued(r) ? 'queued ' : ''}${formatSeconds((now() - r.started) / 1000)}`;
    const tail = p && pct !== undefined
      ? `${String(pct).padStart(3)}% ${p.step}/${p.total}${eta(r)}${msg}`
      : `${elapsed}${p ? `  step ${p.step}` : ''}${msg}`;
    // `⠋ ` before the name and two spaces after it.
    const shown = shorten(name, Math.max(8, width - 4 - tail.length));
    let bar = '';
    const room = Math.min(BAR_WIDTH, width - 4 - shown.length - tail.length - 1);
    if (pct !== undefined && room >= MIN_BAR_WIDTH) {
      const filled = Math.round((pct / 100) * room);
      bar = `${'█'.repeat(filled)}${'░'.repeat(room - filled)} `;
    }
    return `${frame} ${shown}  ${bar}${tail}`;
  };

  const redraw = (above: string[] = []) => {
    let out = drawn > 0 ? `\x1b[${drawn}A\r\x1b[0J` : '';
    for (const line of above) out += `${line}\n`;
    const frame = SPINNER[Math.floor(now() / REDRAW_MS) % SPINNER.length]!;
    const width = Math.max(20, (opts.columns || stream.columns || 100) - 1);
    const head = running.size > 0 ? overall() : undefined;
    const block = [...(head ? [head] : []), ...[...running].map(([name, r]) => liveLine(name, r, frame, width))]
      .map((l) => (l.length > width ? `${l.slice(0, width - 1)}…` : l));
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
    jobState(name, state, startedAt) {
      const r = running.get(name);
      if (!r) return;
      r.jobRunning = state === 'running';
      // A requeued job starts over: its time and its progress rate count from its new start.
      r.started = state === 'running' && startedAt !== undefined ? Math.min(startedAt, now()) : now();
      r.progress = undefined;
      r.origin = undefined;
      r.bucket = 0;
      if (state === 'running') peakRunning = Math.max(peakRunning, [...running.values()].filter((x) => x.jobRunning).length);
    },
    waiting(name, holder, sibling) {
      print(statusLine('waiting', `${name}: ${sibling === undefined ? `computed by ${describeOwner(holder)}` : `same key as ${sibling}, which this run is computing`}`));
    },
    finish(name, status, detail) {
      const r = running.get(name);
      running.delete(name);
      finished.add(name);
      if (r && status === 'ran') {
        const stage = stageOf.get(name);
        const took = (now() - r.started) / 1000;
        const group = stage?.group ?? name;
        const t: Took = { seconds: took, work: works.get(name) };
        durations.set(group, [...(durations.get(group) ?? []), t]);
        if (stage?.kind !== undefined) kindDurations.set(stage.kind, [...(kindDurations.get(stage.kind) ?? []), t]);
      }
      // A stage's end may complete the inputs another's work is counted from.
      askWork(name);
      const seconds = r && (status === 'ran' || status === 'failed') ? ` (${formatSeconds((now() - r.started) / 1000)})` : '';
      const word = status === 'ran' ? 'done' : status;
      // Without a live block the overall line rides on each finished stage's line.
      const progress = !tty && stages ? `  [${overall()}]` : '';
      print(statusLine(word, `${name}${seconds}${detail ? `: ${detail}` : ''}${progress}`));
      ensureTimer();
    },
    note(text) {
      print(text);
    },
    add(added) {
      if (!stages) return;
      for (const s of added) {
        if (stageOf.has(s.name)) continue;
        stages.push(s);
        stageOf.set(s.name, s);
        if (s.fresh) finished.add(s.name);
      }
      askWork();
    },
    interrupted() {
      stopping = true;
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
  jobState: () => undefined,
  progress: () => undefined,
  waiting: () => undefined,
  finish: () => undefined,
  note: () => undefined,
  add: () => undefined,
  interrupted: () => undefined,
  close: () => undefined,
};

/** How much of a long check is done, or is to do. */
export interface Counted {
  files: number;
  bytes: number;
}

/** A check shorter than this prints no progress at all (a small cache's verify stays one line). */
const QUIET_CHECK_MS = 1000;
/** Nor does a check of less than this, however slow the machine (output that depends on timing alone would be flaky). */
const QUIET_CHECK_SIZE: Counted = { files: 1000, bytes: 1e9 };

/**
 * Progress of a long check over many files (`verify`) on `stream`: `verify: 28,700/70,000 files (41%) ETA 12 s`,
 * redrawn in place on a terminal, elsewhere one line per tenth done; nothing in the first second, nor for a check of
 * under 1,000 files and 1 GB. The share done is by bytes when the files hold any, else by files.
 */
export function createCheckProgress(
  stream: NodeJS.WritableStream & { isTTY?: boolean },
  label: string,
  opts: { tty?: boolean; now?: () => number } = {},
): { update(done: Counted, total: Counted): void; close(): void } {
  const tty = opts.tty ?? Boolean(stream.isTTY);
  const now = opts.now ?? Date.now;
  const started = now();
  let lastDraw = 0;
  let drawn = false;
  let bucket = 0;
  return {
    update(done, total) {
      const at = now();
      if (at - started < QUIET_CHECK_MS || (total.files < QUIET_CHECK_SIZE.files && total.bytes < QUIET_CHECK_SIZE.bytes)) return;
      if (tty && at - lastDraw < REDRAW_MS) return;
      const [part, whole] = total.bytes > 0 ? [done.bytes, total.bytes] : [done.files, total.files];
      const share = part / whole;
      const pct = Math.min(100, Math.floor((part * 100) / whole));
      if (!tty && Math.floor(pct / 10) <= bucket) return;
      bucket = Math.floor(pct / 10);
      const left = share > 0 && share < 1 ? ` ETA ${formatEta(((at - started) / 1000) * ((1 - share) / share))}` : '';
      const line = `${label}: ${done.files.toLocaleString('en-US')}/${total.files.toLocaleString('en-US')} files (${pct}%)${left}`;
      lastDraw = at;
      drawn = tty;
      stream.write(tty ? `\r${line}\x1b[K` : `${line}\n`);
    },
    close() {
      if (drawn) stream.write('\r\x1b[K');
      drawn = false;
    },
  };
}

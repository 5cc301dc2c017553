// Watching a training run: the progress line, the JSONL log, losses summed on the GPU and checked for NaN/Inf
// at each readback, and the guard that bounds native GPU objects over long loops.
import { appendFileSync, existsSync, mkdirSync, readFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { axpy_, fill_, zeros } from '../../engine/basic.ts';
import { runtime } from '../../engine/runtime.ts';
import { keep, type Tensor } from '../../engine/tensor.ts';

// ---------------------------------------------------------------------------------------------------------
// Progress

/** 0.8s, 42s, 3:07, 1:02:03. */
export function formatDuration(ms: number): string {
  if (!Number.isFinite(ms) || ms < 0) return '?';
  const s = ms / 1000;
  if (s < 10) return `${s.toFixed(1)}s`;
  if (s < 60) return `${Math.round(s)}s`;
  const total = Math.round(s);
  const h = Math.floor(total / 3600);
  const m = Math.floor((total % 3600) / 60);
  const sec = String(total % 60).padStart(2, '0');
  return h > 0 ? `${h}:${String(m).padStart(2, '0')}:${sec}` : `${m}:${sec}`;
}

/** A loss for a progress line or a table: 4 significant digits, exponent form when very small or large. */
export function formatNumber(v: number): string {
  if (!Number.isFinite(v)) return String(v);
  const a = Math.abs(v);
  if (a !== 0 && (a < 1e-3 || a >= 1e5)) return v.toExponential(3);
  return Number(v.toPrecision(4)).toString();
}

/** A message for the person running the command, on stderr, unless quiet. */
export function say(opts: { quiet?: boolean }, message: string): void {
  if (!opts.quiet) process.stderr.write(`${message}\n`);
}

export interface ProgressSnapshot {
  phase: string;
  step: number;
  total: number;
  /** Steps done in this session (a resumed run starts counting again). */
  sessionSteps: number;
  elapsedMs: number;
  values?: Record<string, number>;
}

/** `[critic] 1200/5000  24% | 85.3 steps/s | qLoss 0.4123 vLoss 0.01 | 14s, ETA 44s` */
export function formatProgress(s: ProgressSnapshot): string {
  const pct = s.total > 0 ? Math.floor((100 * s.step) / s.total) : 100;
  const rate = s.elapsedMs > 0 ? (1000 * s.sessionSteps) / s.elapsedMs : 0;
  const eta = rate > 0 ? ((s.total - s.step) / rate) * 1000 : Number.NaN;
  const width = String(s.total).length;
  const parts = [`[${s.phase}] ${String(s.step).padStart(width)}/${s.total} ${String(pct).padStart(3)}%`];
  parts.push(`${rate >= 100 ? rate.toFixed(0) : rate.toFixed(1)} steps/s`);
  const vals = Object.entries(s.values ?? {});
  if (vals.length) parts.push(vals.map(([k, v]) => `${k} ${formatNumber(v)}`).join(' '));
  parts.push(`${formatDuration(s.elapsedMs)}, ETA ${s.step >= s.total ? '0s' : formatDuration(eta)}`);
  return parts.join(' | ');
}

/** Where progress goes: a terminal gets one rewritten line, anything else plain lines. */
export interface ProgressStream {
  write(text: string): unknown;
  isTTY?: boolean;
  columns?: number;
}

export interface ProgressOptions {
  stream?: ProgressStream;
  /** Step the phase starts from (a resumed run). */
  startStep?: number;
  /** Least time between redraws on a terminal (default 200 ms). */
  ttyIntervalMs?: number;
  /** Least time between plain lines (default 10 s). */
  plainIntervalMs?: number;
  /** Clock, for tests. */
  now?: () => number;
}

/**
 * One phase's progress. On a TTY the line is redrawn in place (carriage return, clear to end of line) and cut
 * to the terminal width; elsewhere (a log file, CI) a plain line is printed every plainIntervalMs and at the end.
 */
export class Progress {
  readonly phase: string;
  readonly total: number;
  private readonly stream: ProgressStream;
  private readonly tty: boolean;
  private startStep: number;
  private start: number;
  private readonly now: () => number;
  private readonly interval: number;
  private lastDraw = -Infinity;
  private lineOpen = false;
  private last: ProgressSnapshot;

  constructor(phase: string, total: number, opts: ProgressOptions = {}) {
    this.phase = phase;
    this.total = total;
    this.stream = opts.stream ?? process.stderr;
    this.tty = this.stream.isTTY === true;
    this.now = opts.now ?? (() => performance.now());
    this.start = this.now();
    this.startStep = opts.startStep ?? 0;
    this.interval = this.tty ? (opts.ttyIntervalMs ?? 200) : (opts.plainIntervalMs ?? 10_000);
    this.last = { phase, step: this.startStep, total, sessionSteps: 0, elapsedMs: 0 };
  }

  /**
   * Measures rate and ETA from here on (e.g. once an online run's random warm-up, many times faster than the
   * training steps, is over).
   */
  restartRate(step: number): void {
    this.start = this.now();
    this.startStep = step;
  }

  /** Elapsed time of this session of the phase in ms. */
  get elapsedMs(): number {
    return this.now() - this.start;
  }

  /** Records the step reached and the latest values; draws when the interval has passed (or `force`). */
  update(step: number, values?: Record<string, number>, force = false): void {
    const t = this.now();
    this.last = { phase: this.phase, step, total: this.total, sessionSteps: step - this.startStep, elapsedMs: t - this.start, values: values ?? this.last.values };
    if (!force && t - this.lastDraw < this.interval) return;
    this.lastDraw = t;
    this.draw();
  }

  private draw(): void {
    const line = formatProgress(this.last);
    if (this.tty) {
      const cols = this.stream.columns ?? 120;
      this.stream.write(`\r${line.length >= cols ? line.slice(0, Math.max(1, cols - 1)) : line}\x1b[K`);
      this.lineOpen = true;
    } else {
      this.stream.write(`${line}\n`);
    }
  }

  /** Prints a message without breaking the progress line (on a TTY the line is redrawn below it). */
  log(message: string): void {
    if (this.tty && this.lineOpen) {
      this.stream.write(`\r\x1b[K${message}\n`);
      this.draw();
    } else {
      this.stream.write(`${message}\n`);
    }
  }

  /** Draws the final state and ends the line. */
  finish(step = this.last.step, values?: Record<string, number>): void {
    this.update(step, values, true);
    if (this.tty) this.stream.write('\n');
    this.lineOpen = false;
  }
}

// ---------------------------------------------------------------------------------------------------------
// Logs and files

/** JSON with non-finite numbers written as the strings "NaN", "Infinity", "-Infinity" instead of null. */
export function jsonLine(record: unknown): string {
  return JSON.stringify(record, (_k, v: unknown) => (typeof v === 'number' && !Number.isFinite(v) ? String(v) : v));
}

/** Appends one JSON object per line; every record gets the wall time in seconds since the log was opened. */
export class JsonlLog {
  readonly path: string;
  private readonly start = performance.now();

  constructor(path: string) {
    this.path = path;
    mkdirSync(dirname(path), { recursive: true });
    // a line cut by a crash stays on its own, so the next record is not appended to it
    if (existsSync(path)) {
      const text = readFileSync(path);
      if (text.length > 0 && text[text.length - 1] !== 0x0a) appendFileSync(path, '\n');
    }
  }

  write(record: Record<string, unknown>): void {
    appendFileSync(this.path, `${jsonLine({ ...record, time: Math.round(performance.now() - this.start) / 1000 })}\n`);
  }

  /** Every record in a log file (lines that do not parse are skipped: a crash can cut the last one). */
  static read(path: string): Record<string, unknown>[] {
    if (!existsSync(path)) return [];
    const out: Record<string, unknown>[] = [];
    for (const line of readFileSync(path, 'utf8').split('\n')) {
      if (!line.trim()) continue;
      try {
        out.push(JSON.parse(line) as Record<string, unknown>);
      } catch {
        // a partial last line after a crash
      }
    }
    return out;
  }
}

/**
 * The records of a run as it stands: a `{ phase, resumedAt: k }` record (a phase resumed from its checkpoint at
 * step k) drops that phase's earlier step records past k, which the resumed session logs again.
 */
export function currentRecords(records: readonly Record<string, unknown>[]): Record<string, unknown>[] {
  const out: Record<string, unknown>[] = [];
  for (const r of records) {
    const at = r['resumedAt'];
    if (typeof at === 'number') {
      for (let i = out.length - 1; i >= 0; i--) {
        const o = out[i]!;
        if (o['phase'] === r['phase'] && typeof o['step'] === 'number' && o['step'] > at) out.splice(i, 1);
      }
    }
    out.push(r);
  }
  return out;
}

// ---------------------------------------------------------------------------------------------------------
// Losses: accumulated on the GPU, read back once per interval, checked for NaN/Inf

/** Raised when a loss turns NaN or infinite; the message names the phase, the steps and the kept checkpoint. */
export class NonFiniteLossError extends Error {
  readonly phase: string;
  readonly step: number;
  readonly userFacing = true;

  constructor(phase: string, step: number, message: string) {
    super(message);
    this.name = 'NonFiniteLossError';
    this.phase = phase;
    this.step = step;
  }
}

/**
 * Throws NonFiniteLossError if any value is NaN or infinite. `fromStep` (exclusive) .. `step` is the range the
 * values cover (a mean over an interval); `checkpoint` names the last good checkpoint, which is left as it is.
 */
export function assertFinite(phase: string, step: number, values: Record<string, number>, opts: { fromStep?: number; checkpoint?: string | null } = {}): void {
  const bad = Object.entries(values).filter(([, v]) => !Number.isFinite(v));
  if (bad.length === 0) return;
  const where = opts.fromStep !== undefined && opts.fromStep < step - 1 ? `in steps ${opts.fromStep + 1}..${step}` : `at step ${step}`;
  const what = bad.map(([k, v]) => `${k} = ${v}`).join(', ');
  const others = Object.entries(values).filter(([, v]) => Number.isFinite(v)).map(([k, v]) => `${k} = ${formatNumber(v)}`);
  const kept = opts.checkpoint ? `the last good checkpoint is kept: ${opts.checkpoint}` : 'no checkpoint of this phase was written yet';
  throw new NonFiniteLossError(
    phase,
    step,
    `non-finite loss in phase '${phase}' ${where}: ${what}${others.length ? ` (${others.join(', ')})` : ''}. Training stopped; ${kept}.`,
  );
}

/**
 * Sums scalar losses on the GPU between readbacks (one in-place add per loss per step, no synchronisation), so a
 * NaN at any step of an interval survives into the interval's mean.
 */
export class LossMeter {
  private sums = new Map<string, { sum: Tensor; names: string[] | null }>();
  private count = 0;

  /**
   * Adds this step's losses: [1] tensors by name, or [k] tensors whose components are named by `components`
   * (e.g. diagnostics computed together), given as { key: [tensor, names] }.
   */
  add(losses: Record<string, Tensor | [Tensor, string[]]>): void {
    for (const [k, v] of Object.entries(losses)) {
      const [t, names] = Array.isArray(v) ? v : [v, null];
      if (names && names.length !== t.size) throw new Error(`LossMeter.add: ${names.length} names for "${k}" of ${t.size} values`);
      let entry = this.sums.get(k);
      if (!entry) this.sums.set(k, (entry = { sum: keep(zeros([t.size])), names }));
      axpy_(entry.sum, t);
    }
    this.count++;
    // inside a recorded step the sums stay in place and every replay counts itself
    runtime().perStep(null, () => this.count++);
  }

  /** Steps added since the last drain. */
  get pending(): number {
    return this.count;
  }

  /**
   * Starts reading the means since the last drain and resets at once, without waiting: the copies are queued
   * on the GPU ahead of the next steps, so training goes on while the values travel back.
   */
  drainLater(): Promise<Record<string, number>> {
    const n = this.count;
    const reads = [...this.sums].map(([k, { sum, names }]) => {
      const data = sum.read();
      fill_(sum, 0);
      return { k, names, data };
    });
    this.count = 0;
    // all reads settle together, so a device lost mid-read rejects once and leaves no read unobserved
    const all = Promise.all(reads.map((r) => r.data));
    return (async () => {
      const out: Record<string, number> = {};
      const data = await all;
      for (const [j, { k, names }] of reads.entries()) {
        const values = data[j]!;
        if (names) names.forEach((name, i) => (out[name] = n > 0 ? values[i]! / n : Number.NaN));
        else out[k] = n > 0 ? values[0]! / n : Number.NaN;
      }
      return out;
    })();
  }

  /** The mean of each value since the last drain (one readback per entry), and resets. */
  async drain(): Promise<Record<string, number>> {
    const out: Record<string, number> = {};
    const n = this.count;
    for (const [k, { sum, names }] of this.sums) {
      const data = await sum.read();
      if (names) names.forEach((name, i) => (out[name] = n > 0 ? data[i]! / n : Number.NaN));
      else out[k] = n > 0 ? data[0]! / n : Number.NaN;
      // zeroed in place, not replaced: a recorded step keeps accumulating into the same buffers
      fill_(sum, 0);
    }
    this.count = 0;
    return out;
  }

  dispose(): void {
    for (const { sum } of this.sums.values()) sum.dispose();
    this.sums.clear();
    this.count = 0;
  }
}

// ---------------------------------------------------------------------------------------------------------
// GPU object churn

let collectGarbage: (() => void) | null | undefined;

function garbageCollector(): (() => void) | null {
  if (collectGarbage === undefined) {
    try {
      setFlagsFromString('--expose-gc');
      collectGarbage = runInNewContext('gc') as () => void;
    } catch {
      collectGarbage = null;
    }
  }
  return collectGarbage;
}

/**
 * Bounds the native GPU objects a long training loop leaves behind. Every dispatch whose uniforms change from
 * step to step (random-stream positions, optimiser bias corrections, learning rates) makes a new bind group;
 * dropped bind groups are freed only when the JavaScript garbage collector finalises their wrappers, and on
 * lavapipe each one holds a memory mapping, so a run of many thousand steps can exhaust the process's
 * mappings (vm.max_map_count) long before memory. Every `every` new bind groups this clears the runtime's
 * caches (trimPool) and runs a full collection. Cheap enough to call at every log point.
 */
export class GpuChurnGuard {
  private last: number;
  readonly every: number;

  constructor(every = 16384) {
    this.every = every;
    this.last = runtime().stats.bindGroupsCreated;
  }

  check(): boolean {
    const rt = runtime();
    if (rt.stats.bindGroupsCreated - this.last < this.every) return false;
    this.last = rt.stats.bindGroupsCreated;
    rt.trimPool();
    garbageCollector()?.();
    return true;
  }
}

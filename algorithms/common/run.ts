// What every training command shares: a declared command line (parsed with util.parseArgs, --help written
// from the same declarations), a progress line, a JSONL log, atomic checkpoints of several modules with their
// optimiser state and random-stream positions, a guard that stops a run at the first non-finite loss, and the
// run directory layout.
import { closeSync, existsSync, fsyncSync, mkdirSync, openSync, readFileSync, readdirSync, realpathSync, renameSync, rmSync, writeSync, appendFileSync } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { axpy_, fill_, zeros } from '../../engine/basic.ts';
import type { Module } from '../../engine/nn.ts';
import type { AdamW } from '../../engine/optim.ts';
import type { Generator } from '../../engine/random.ts';
import { decodeSafetensors, encodeSafetensors, type SafetensorsEntry } from '../../engine/safetensors.ts';
import { runtime } from '../../engine/runtime.ts';
import { keep, type Tensor } from '../../engine/tensor.ts';

// ---------------------------------------------------------------------------------------------------------
// Command line

export type OptionType = 'string' | 'number' | 'integer' | 'boolean';

export interface OptionSpec {
  type: OptionType;
  description: string;
  default?: string | number | boolean;
  short?: string;
  /** Allowed values of a string option. */
  choices?: readonly string[];
  /** Name of the value in --help (default: the type). */
  placeholder?: string;
  /** Numbers must be > 0 (integers >= 1). */
  positive?: boolean;
  /** Numbers must be >= 0. */
  nonNegative?: boolean;
}

export type OptionSpecs = Record<string, OptionSpec>;

type ValueOf<O extends OptionSpec> = O['type'] extends 'boolean' ? boolean : O['type'] extends 'string' ? string : number;

/** Parsed values: options with a default are always present, the rest may be undefined. */
export type CliValues<S extends OptionSpecs> = { [K in keyof S]: S[K] extends { default: string | number | boolean } ? ValueOf<S[K]> : ValueOf<S[K]> | undefined };

export interface CliSpec<S extends OptionSpecs> {
  /** e.g. 'node algorithms/srpo.ts [options]' */
  usage: string;
  /** Paragraph(s) printed under the usage line. */
  description: string;
  options: S;
  /** Lines printed at the end of --help under "Examples". */
  examples?: string[];
}

/** A command-line mistake: the message is for the person who typed it (no stack trace). */
export class CliError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'CliError';
  }
}

function wrap(text: string, width: number, indent: number): string[] {
  const words = text.split(/\s+/).filter((w) => w.length > 0);
  const lines: string[] = [];
  let line = '';
  for (const w of words) {
    if (line.length > 0 && line.length + 1 + w.length > width - indent) {
      lines.push(line);
      line = w;
    } else line = line ? `${line} ${w}` : w;
  }
  if (line) lines.push(line);
  return lines;
}

/** The --help text: usage, description, one entry per option (with its default and choices), examples. */
export function helpText<S extends OptionSpecs>(spec: CliSpec<S>, width = 100): string {
  const out: string[] = [`usage: ${spec.usage}`, ''];
  for (const para of spec.description.split(/\n\s*\n/)) out.push(...wrap(para, width, 0), '');
  out.push('Options:');
  const heads: [string, OptionSpec][] = Object.entries(spec.options).map(([name, o]) => {
    const value = o.type === 'boolean' ? '' : ` <${o.placeholder ?? (o.choices ? o.choices.join('|') : o.type)}>`;
    return [`${o.short ? `-${o.short}, ` : '    '}--${name}${value}`, o];
  });
  heads.push(['-h, --help', { type: 'boolean', description: 'print this help and exit' }]);
  const col = Math.min(34, Math.max(...heads.map(([h]) => h.length)) + 2);
  for (const [head, o] of heads) {
    let text = o.description;
    if (o.default !== undefined && o.type !== 'boolean') text += ` (default ${String(o.default)})`;
    const body = wrap(text, width, col + 2);
    const first = head.length + 2 <= col ? `  ${head.padEnd(col)}${body[0] ?? ''}` : `  ${head}`;
    out.push(first);
    const rest = head.length + 2 <= col ? body.slice(1) : body;
    for (const l of rest) out.push(' '.repeat(col + 2) + l);
  }
  if (spec.examples?.length) {
    out.push('', 'Examples:');
    for (const e of spec.examples) out.push(`  ${e}`);
  }
  return out.join('\n');
}

/** `--x -3` reads as an option followed by another option; for a numeric option it means `--x=-3`. */
function joinNegativeNumbers(options: OptionSpecs, argv: string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    const next = argv[i + 1];
    const spec = arg.startsWith('--') && !arg.includes('=') ? options[arg.slice(2)] : undefined;
    if (spec && (spec.type === 'number' || spec.type === 'integer') && next !== undefined && /^-(\d|\.\d|Infinity)/.test(next)) {
      out.push(`${arg}=${next}`);
      i++;
    } else {
      out.push(arg);
    }
  }
  return out;
}

/**
 * Parses argv against the declared options. Returns null when --help was asked for (after printing the help
 * to `print`); throws CliError naming the option for unknown options, missing values, bad numbers and values
 * outside `choices`.
 */
export function parseCli<S extends OptionSpecs>(
  spec: CliSpec<S>,
  argv: string[] = process.argv.slice(2),
  print: (text: string) => void = (t) => console.log(t),
): CliValues<S> | null {
  const options: Record<string, { type: 'string' | 'boolean'; short?: string }> = { help: { type: 'boolean', short: 'h' } };
  for (const [name, o] of Object.entries(spec.options)) {
    options[name] = { type: o.type === 'boolean' ? 'boolean' : 'string', ...(o.short ? { short: o.short } : {}) };
  }
  let parsed: { values: Record<string, string | boolean | undefined>; positionals: string[] };
  try {
    parsed = parseArgs({ args: joinNegativeNumbers(spec.options, argv), options, allowPositionals: true, strict: true }) as typeof parsed;
  } catch (err) {
    const msg = err instanceof Error ? err.message.replace(/^.*?: /, '') : String(err);
    throw new CliError(`${msg} (see --help)`);
  }
  if (parsed.values.help) {
    print(helpText(spec));
    return null;
  }
  if (parsed.positionals.length > 0) throw new CliError(`unexpected argument '${parsed.positionals[0]}' (options start with --; see --help)`);
  const out: Record<string, string | number | boolean | undefined> = {};
  for (const [name, o] of Object.entries(spec.options)) {
    const raw = parsed.values[name];
    if (raw === undefined) {
      out[name] = o.default;
      continue;
    }
    if (o.type === 'boolean') {
      out[name] = raw === true;
      continue;
    }
    const text = String(raw);
    if (o.type === 'string') {
      if (o.choices && !o.choices.includes(text)) throw new CliError(`--${name} must be one of ${o.choices.join(', ')}; got '${text}'`);
      out[name] = text;
      continue;
    }
    const v = Number(text);
    if (text.trim() === '' || !Number.isFinite(v)) throw new CliError(`--${name} needs a number, got '${text}'`);
    if (o.type === 'integer' && !Number.isInteger(v)) throw new CliError(`--${name} needs an integer, got '${text}'`);
    if (o.positive && !(v > 0)) throw new CliError(`--${name} must be positive, got ${text}`);
    if (o.nonNegative && !(v >= 0)) throw new CliError(`--${name} must be >= 0, got ${text}`);
    out[name] = v;
  }
  return out as CliValues<S>;
}

/**
 * Runs a command's main function: a CliError (or any error marked `userFacing`) prints its message alone,
 * anything else its stack; either sets a non-zero exit code.
 */
export async function runMain(name: string, main: () => Promise<void>): Promise<void> {
  try {
    await main();
  } catch (err) {
    if (err instanceof CliError || (err instanceof Error && (err as { userFacing?: boolean }).userFacing)) {
      console.error(`${name}: ${err.message}`);
    } else {
      console.error(`${name}: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
    }
    if (!process.exitCode) process.exitCode = 1;
  }
}

/** Copies onto `target` each value the command line gave (undefined: the option was absent, keep the preset's). */
export function assignDefined<T extends object>(target: T, values: Partial<T>): T {
  for (const [k, v] of Object.entries(values)) if (v !== undefined) (target as Record<string, unknown>)[k] = v;
  return target;
}

/** True when the module at `moduleUrl` (import.meta.url) is the script Node was started with. */
export function isMainModule(moduleUrl: string): boolean {
  const script = process.argv[1];
  if (!script) return false;
  try {
    return realpathSync(fileURLToPath(moduleUrl)) === realpathSync(resolve(script));
  } catch {
    return false;
  }
}

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
  private readonly startStep: number;
  private readonly start: number;
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

let tempCounter = 0;
const TEMP_MARK = '.tmp-';

/**
 * Writes a file so that a reader (or a crash at any moment) sees either the old contents or the complete new
 * ones: the data goes to a temporary file in the same directory, is flushed to disk, and is renamed over the
 * target (rename within a file system is atomic).
 */
export function writeFileAtomic(path: string, data: Uint8Array | string): void {
  const dir = dirname(path);
  mkdirSync(dir, { recursive: true });
  const tmp = join(dir, `${basename(path)}${TEMP_MARK}${process.pid}-${tempCounter++}`);
  const bytes = typeof data === 'string' ? new TextEncoder().encode(data) : data;
  const fd = openSync(tmp, 'w');
  try {
    let off = 0;
    while (off < bytes.length) off += writeSync(fd, bytes, off, bytes.length - off);
    fsyncSync(fd);
  } catch (err) {
    closeSync(fd);
    rmSync(tmp, { force: true });
    throw err;
  }
  closeSync(fd);
  renameSync(tmp, path);
}

/** Removes temporary files an interrupted writeFileAtomic left in a directory; returns how many. */
export function removeStaleTemps(dir: string): number {
  if (!existsSync(dir)) return 0;
  let n = 0;
  for (const name of readdirSync(dir)) {
    if (name.includes(TEMP_MARK)) {
      rmSync(join(dir, name), { force: true });
      n++;
    }
  }
  return n;
}

/** 20240131-235959 (local time). */
export function timestamp(d = new Date()): string {
  const p = (n: number) => String(n).padStart(2, '0');
  return `${d.getFullYear()}${p(d.getMonth() + 1)}${p(d.getDate())}-${p(d.getHours())}${p(d.getMinutes())}${p(d.getSeconds())}`;
}

/** The files of a run directory. */
export const RUN_FILES = Object.freeze({
  config: 'config.json',
  log: 'log.jsonl',
  curves: 'curves.svg',
  summary: 'summary.json',
});

/**
 * A fresh run directory: `out` when given, else <base>/<name>-<timestamp> (with -2, -3, ... appended if that
 * exists). Created with its parents.
 */
export function createRunDir(name: string, opts: { out?: string; base?: string; date?: Date } = {}): string {
  let dir = opts.out;
  if (!dir) {
    const stem = join(opts.base ?? 'runs', `${name}-${timestamp(opts.date)}`);
    dir = stem;
    for (let i = 2; existsSync(dir); i++) dir = `${stem}-${i}`;
  }
  mkdirSync(dir, { recursive: true });
  return dir;
}

// ---------------------------------------------------------------------------------------------------------
// Checkpoints

const CHECKPOINT_FORMAT = 'webdiffuser-checkpoint-1';

export interface CheckpointParts {
  /** Saved under `<name>.<tensor name>`. */
  modules: Record<string, Module>;
  /** Moment estimates saved under `optim.<name>.exp_avg` / `.exp_avg_sq`; step counts in the metadata. */
  optimizers?: Record<string, AdamW>;
  /** Philox stream positions, in the metadata. */
  generators?: Record<string, Generator>;
}

export interface CheckpointState extends CheckpointParts {
  /** Optimisation steps completed. */
  step: number;
  /** Anything else JSON can hold (phase name, config hash, stats). */
  extra?: Record<string, unknown>;
}

export interface CheckpointInfo {
  step: number;
  extra: Record<string, unknown>;
  modules: string[];
}

/** Serialises modules, optimiser state, generator positions and the step into one safetensors file. */
export async function encodeCheckpoint(state: CheckpointState): Promise<Uint8Array> {
  const entries: SafetensorsEntry[] = [];
  for (const [mod, m] of Object.entries(state.modules)) {
    for (const { name, tensor } of m.namedTensors()) entries.push({ name: `${mod}.${name}`, shape: tensor.shape, data: await tensor.read() });
  }
  const optim: Record<string, { stepCount: number; lr: number; length: number }> = {};
  for (const [name, opt] of Object.entries(state.optimizers ?? {})) {
    entries.push({ name: `optim.${name}.exp_avg`, shape: opt.m.shape, data: await opt.m.read() });
    entries.push({ name: `optim.${name}.exp_avg_sq`, shape: opt.v.shape, data: await opt.v.read() });
    optim[name] = { stepCount: opt.stepCount, lr: opt.lr, length: opt.group.length };
  }
  const gens: Record<string, { seed: number; counter: number }> = {};
  for (const [name, g] of Object.entries(state.generators ?? {})) gens[name] = { seed: g.seed, counter: g.counter };
  return encodeSafetensors(entries, {
    format: CHECKPOINT_FORMAT,
    step: String(state.step),
    modules: JSON.stringify(Object.keys(state.modules)),
    optimizers: JSON.stringify(optim),
    generators: JSON.stringify(gens),
    extra: JSON.stringify(state.extra ?? {}),
  });
}

/** Writes a checkpoint atomically (see writeFileAtomic). */
export async function saveCheckpoint(path: string, state: CheckpointState): Promise<void> {
  writeFileAtomic(path, await encodeCheckpoint(state));
}

function checkpointError(path: string, message: string): Error {
  const e = new Error(`checkpoint ${path}: ${message}`);
  (e as { userFacing?: boolean }).userFacing = true;
  return e;
}

/** The step, extra data and module names of a checkpoint file, without loading tensors anywhere. */
export function readCheckpointInfo(path: string): CheckpointInfo {
  const file = decodeSafetensors(readFileSync(path));
  const meta = file.metadata;
  if (meta['format'] !== CHECKPOINT_FORMAT) throw checkpointError(path, `not a training checkpoint (format '${meta['format'] ?? 'none'}')`);
  return { step: Number(meta['step']), extra: JSON.parse(meta['extra'] ?? '{}') as Record<string, unknown>, modules: JSON.parse(meta['modules'] ?? '[]') as string[] };
}

/**
 * Restores the given parts from a checkpoint file. Every module tensor, optimiser and generator asked for must
 * be in the file with the same shapes; nothing is written unless all match. A plain module file (saveModule)
 * is accepted for a single module, without optimiser or generator state. Returns the step and extra data.
 */
export function loadCheckpoint(path: string, parts: CheckpointParts): CheckpointInfo {
  let bytes: Uint8Array;
  try {
    bytes = readFileSync(path);
  } catch (err) {
    throw checkpointError(path, err instanceof Error ? err.message : String(err));
  }
  const file = decodeSafetensors(bytes);
  const meta = file.metadata;
  const isCheckpoint = meta['format'] === CHECKPOINT_FORMAT;
  const moduleNames = Object.keys(parts.modules);
  if (!isCheckpoint && (moduleNames.length !== 1 || Object.keys(parts.optimizers ?? {}).length || Object.keys(parts.generators ?? {}).length)) {
    throw checkpointError(path, 'a plain module file holds one module and no optimiser or generator state');
  }
  const problems: string[] = [];
  const writes: [Tensor, Float32Array | Int32Array | Uint32Array][] = [];
  for (const [mod, m] of Object.entries(parts.modules)) {
    const prefix = isCheckpoint ? `${mod}.` : '';
    for (const { name, tensor } of m.namedTensors()) {
      const t = file.tensors.get(prefix + name);
      if (!t) problems.push(`missing "${prefix}${name}" [${tensor.shape.join(', ')}]`);
      else if (t.shape.length !== tensor.shape.length || t.shape.some((d, i) => d !== tensor.shape[i])) {
        problems.push(`"${prefix}${name}": file has [${t.shape.join(', ')}], model has [${tensor.shape.join(', ')}]`);
      } else writes.push([tensor, t.data]);
    }
  }
  const optim = JSON.parse(meta['optimizers'] ?? '{}') as Record<string, { stepCount: number; lr: number; length: number }>;
  const optimWrites: [AdamW, Float32Array, Float32Array, number][] = [];
  for (const [name, opt] of Object.entries(parts.optimizers ?? {})) {
    const info = optim[name];
    const m = file.tensors.get(`optim.${name}.exp_avg`);
    const v = file.tensors.get(`optim.${name}.exp_avg_sq`);
    if (!info || !m || !v) problems.push(`missing optimiser state "${name}"`);
    else if (m.data.length !== opt.m.size || v.data.length !== opt.v.size) problems.push(`optimiser "${name}": file holds ${m.data.length} values, model needs ${opt.m.size}`);
    else optimWrites.push([opt, m.data as Float32Array, v.data as Float32Array, info.stepCount]);
  }
  const gens = JSON.parse(meta['generators'] ?? '{}') as Record<string, { seed: number; counter: number }>;
  for (const [name, g] of Object.entries(parts.generators ?? {})) {
    const info = gens[name];
    if (!info) problems.push(`missing generator "${name}"`);
    else if (info.seed !== g.seed) problems.push(`generator "${name}": file has seed ${info.seed}, run has ${g.seed}`);
  }
  if (problems.length) throw checkpointError(path, `does not match (${problems.length} problem${problems.length > 1 ? 's' : ''}):\n  ${problems.join('\n  ')}`);
  for (const [t, data] of writes) t.set(data);
  for (const [opt, m, v, stepCount] of optimWrites) {
    opt.m.set(m);
    opt.v.set(v);
    opt.stepCount = stepCount;
  }
  for (const [name, g] of Object.entries(parts.generators ?? {})) g.counter = gens[name]!.counter;
  return {
    step: isCheckpoint ? Number(meta['step']) : 0,
    extra: isCheckpoint ? (JSON.parse(meta['extra'] ?? '{}') as Record<string, unknown>) : {},
    modules: isCheckpoint ? (JSON.parse(meta['modules'] ?? '[]') as string[]) : moduleNames,
  };
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
    return (async () => {
      const out: Record<string, number> = {};
      for (const { k, names, data } of reads) {
        const values = await data;
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

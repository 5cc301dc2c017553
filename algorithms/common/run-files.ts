// The files of a run: atomic writes (a crash leaves the old file or the new one, never half of either), the run
// directory and its layout, and checkpoints of several modules with their optimiser state and random-stream
// positions.
import { createHash } from 'node:crypto';
import { closeSync, existsSync, fsyncSync, mkdirSync, openSync, readFileSync, readdirSync, renameSync, rmSync, writeFileSync, writeSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import type { Module } from '../../engine/nn.ts';
import type { AdamW } from '../../engine/optim.ts';
import type { Generator } from '../../engine/random.ts';
import { decodeSafetensors, encodeSafetensors, type SafetensorsEntry } from '../../engine/safetensors.ts';
import type { Tensor } from '../../engine/tensor.ts';

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
  lock: 'run.lock',
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

/**
 * Takes the run directory for this process: `run.lock` holds the owner's pid. A directory held by a live
 * process is refused (two writers would interleave the log and overwrite each other's checkpoints); a lock
 * left by a process that is gone is taken over. Returns the release, which also runs at process exit.
 */
export function lockRunDir(dir: string): () => void {
  mkdirSync(dir, { recursive: true });
  const path = join(dir, RUN_FILES.lock);
  const mine = `${process.pid}\n`;
  for (let attempt = 0; ; attempt++) {
    try {
      writeFileSync(path, mine, { flag: 'wx' });
      break;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST' || attempt > 0) throw err;
      const owner = Number.parseInt(readFileSync(path, 'utf8'), 10);
      if (Number.isInteger(owner) && owner !== process.pid && processAlive(owner)) {
        const e = new Error(`run directory ${dir} is in use by process ${owner}; wait for that run to end (or stop it), or remove ${path} if no such run is going on`);
        (e as { userFacing?: boolean }).userFacing = true;
        throw e;
      }
      rmSync(path, { force: true });
    }
  }
  let held = true;
  const release = () => {
    if (!held) return;
    held = false;
    process.off('exit', release);
    try {
      if (readFileSync(path, 'utf8') === mine) rmSync(path, { force: true });
    } catch {
      // already gone
    }
  };
  process.on('exit', release);
  return release;
}

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** True when a run directory holds nothing a run produced: only its configuration (and its lock). */
export function holdsOnlyConfig(dir: string): boolean {
  if (!existsSync(dir)) return false;
  return readdirSync(dir).every((name) => name === RUN_FILES.config || name === RUN_FILES.lock);
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

type TensorData = Float32Array | Int32Array | Uint32Array;

/** The first non-finite float among the tensors, as 'name[index] = value', or null. */
function firstNonFinite(tensors: Iterable<[string, TensorData]>): string | null {
  for (const [name, data] of tensors) {
    if (!(data instanceof Float32Array)) continue;
    for (let i = 0; i < data.length; i++) if (!Number.isFinite(data[i]!)) return `"${name}"[${i}] = ${data[i]}`;
  }
  return null;
}

/**
 * SHA-256 over a checkpoint's metadata (all but the digest) and every tensor's name, shape and bytes, in name
 * order: any flipped bit of the file, finite or not, changes it.
 */
export function checkpointDigest(metadata: Record<string, string>, tensors: Iterable<[string, { shape: readonly number[]; data: TensorData }]>): string {
  const hash = createHash('sha256');
  const meta = Object.entries(metadata).filter(([k]) => k !== 'sha256').sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  hash.update(JSON.stringify(meta));
  for (const [name, t] of [...tensors].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) {
    hash.update(`${name}[${t.shape.join(',')}]`);
    hash.update(new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength));
  }
  return hash.digest('hex');
}

/**
 * Serialises modules, optimiser state, generator positions and the step into one safetensors file, with a
 * SHA-256 digest that loading verifies. Refuses state holding NaN or Inf: a checkpoint is a state worth
 * going back to.
 */
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
  const bad = firstNonFinite(entries.map((e) => [e.name, e.data as TensorData]));
  if (bad) throw new NonFiniteStateError(`${bad} is not finite: the training diverged; checkpoint not written`);
  const metadata: Record<string, string> = {
    format: CHECKPOINT_FORMAT,
    step: String(state.step),
    modules: JSON.stringify(Object.keys(state.modules)),
    optimizers: JSON.stringify(optim),
    generators: JSON.stringify(gens),
    extra: JSON.stringify(state.extra ?? {}),
  };
  metadata['sha256'] = checkpointDigest(metadata, entries.map((e) => [e.name, { shape: e.shape, data: e.data as TensorData }]));
  return encodeSafetensors(entries, metadata);
}

/** Networks or optimiser state holding NaN or Inf: a diverged run, whose losses may still look finite. */
export class NonFiniteStateError extends Error {
  readonly userFacing = true;

  constructor(message: string) {
    super(message);
    this.name = 'NonFiniteStateError';
  }
}

/** Writes a checkpoint atomically (see writeFileAtomic); a state holding NaN or Inf is refused and the old file kept. */
export async function saveCheckpoint(path: string, state: CheckpointState): Promise<void> {
  let bytes: Uint8Array;
  try {
    bytes = await encodeCheckpoint(state);
  } catch (err) {
    if (err instanceof NonFiniteStateError) throw new NonFiniteStateError(`checkpoint ${path}: ${err.message}`);
    throw checkpointError(path, err instanceof Error ? err.message : String(err));
  }
  writeFileAtomic(path, bytes);
}

/** Reads and decodes a checkpoint file; every failure names the file. */
function readCheckpointFile(path: string): ReturnType<typeof decodeSafetensors> {
  try {
    return decodeSafetensors(readFileSync(path));
  } catch (err) {
    throw checkpointError(path, err instanceof Error ? err.message : String(err));
  }
}

function checkpointError(path: string, message: string): Error {
  const e = new Error(`checkpoint ${path}: ${message}`);
  (e as { userFacing?: boolean }).userFacing = true;
  return e;
}

/** The step, extra data and module names of a checkpoint file, without loading tensors anywhere. */
export function readCheckpointInfo(path: string): CheckpointInfo {
  const meta = readCheckpointFile(path).metadata;
  if (meta['format'] !== CHECKPOINT_FORMAT) throw checkpointError(path, `not a training checkpoint (format '${meta['format'] ?? 'none'}')`);
  try {
    return { step: Number(meta['step']), extra: JSON.parse(meta['extra'] ?? '{}') as Record<string, unknown>, modules: JSON.parse(meta['modules'] ?? '[]') as string[] };
  } catch (err) {
    throw checkpointError(path, `unreadable metadata: ${err instanceof Error ? err.message : String(err)}`);
  }
}

/**
 * Restores the given parts from a checkpoint file. Every module tensor, optimiser and generator asked for must
 * be in the file with the same shapes; nothing is written unless all match. A plain module file (saveModule)
 * is accepted for a single module, without optimiser or generator state. Returns the step and extra data.
 */
export function loadCheckpoint(path: string, parts: CheckpointParts): CheckpointInfo {
  const file = readCheckpointFile(path);
  const meta = file.metadata;
  const isCheckpoint = meta['format'] === CHECKPOINT_FORMAT;
  const stored = [...file.tensors].map(([name, t]) => [name, t] as [string, { shape: readonly number[]; data: TensorData }]);
  if (isCheckpoint && meta['sha256'] !== undefined && meta['sha256'] !== checkpointDigest(meta, stored)) {
    throw checkpointError(path, 'checksum mismatch: the file changed after it was written (a damaged copy or disk); nothing loaded');
  }
  const bad = firstNonFinite(stored.map(([name, t]) => [name, t.data]));
  if (bad) throw checkpointError(path, `${bad} is not finite; nothing loaded`);
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


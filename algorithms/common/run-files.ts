// The files of a run: atomic writes (a crash leaves the old file or the new one, never half of either), the run
// directory and its layout, and checkpoints of several modules with their optimiser state and random-stream
// positions.
import { closeSync, existsSync, fsyncSync, mkdirSync, openSync, readFileSync, readdirSync, renameSync, rmSync, writeSync } from 'node:fs';
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


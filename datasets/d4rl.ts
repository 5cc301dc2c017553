// Offline-RL datasets in D4RL's HDF5 key layout: reading with validation, writing, and the flat transition
// view that Q-learning methods train on.
//
// Layout (one row per environment step; N rows):
//   observations (N, obsDim) float32     actions (N, actDim) float32     rewards (N,) float32
//   terminals (N,) bool: a real termination      timeouts (N,) bool: the episode was cut by the time limit
//   next_observations (N, obsDim) float32, optional but recommended (it removes all alignment guesswork)
//   infos/<path> (N, ...) numeric, optional      metadata/<path> scalar datasets, optional
//
// Written files use uint8 for the flags (h5wasm cannot write h5py's bool enum; h5py readers coerce with
// astype(bool)), float32 for the float arrays and gzip compression as D4RL's own files do.
import {
  DatasetFormatError, checkFinite, chunkRows, createForWriting, datasetsBelow, describeDtype, findDataset,
  openForReading, readFlags, readFloat32, readNumeric, withFileName, type H5Dataset, type H5Group, type OpenedH5,
} from './hdf5.ts';

export { DatasetFormatError } from './hdf5.ts';

export interface D4RLData {
  size: number;
  obsDim: number;
  actDim: number;
  /** (size, obsDim) row-major. */
  observations: Float32Array;
  /** (size, actDim) row-major. */
  actions: Float32Array;
  rewards: Float32Array;
  /** 1 where the episode really terminated (the value of the next state is zero). */
  terminals: Uint8Array;
  /** 1 where the episode was truncated by the time limit (the next state still has a value). */
  timeouts: Uint8Array;
  /** (size, obsDim): the observation after each row's action; 'next_observations' in the file. */
  nextObservations?: Float32Array;
  /** infos/* datasets, keyed by their path below infos/, first axis = size. */
  infos?: Record<string, { data: Float32Array | Float64Array; shape: number[] }>;
  /**
   * metadata/* scalar datasets (not attributes), keyed by their path below metadata/. Array-valued metadata
   * (e.g. D4RL's generating-policy weights under metadata/policy/) is not read.
   */
  metadata?: Record<string, string | number | boolean>;
}

export interface ReadD4RLOptions {
  /** Dimensions the caller's environment needs; a mismatch is an error naming both. */
  expect?: { obsDim?: number; actDim?: number };
  /** How the source is named in errors (default: the path, or '<bytes>'). */
  name?: string;
  /**
   * For files without a 'timeouts' key (some old D4RL files): mark a timeout wherever an episode reaches this
   * many steps without a terminal, as D4RL's qlearning_dataset does. Without it such a file is an error.
   */
  maxEpisodeSteps?: number;
}

const REQUIRED = ['observations', 'actions', 'rewards', 'terminals'] as const;

function shapeOf(ds: H5Dataset): number[] {
  return ds.shape ?? [];
}

function describeShape(shape: readonly number[]): string {
  return `(${shape.join(', ')}${shape.length === 1 ? ',' : ''})`;
}

/** (N, d) with d >= 1; returns d. */
function matrixWidth(opened: OpenedH5, key: string, shape: readonly number[]): number {
  if (shape.length !== 2 || shape[1]! < 1) {
    throw new DatasetFormatError(`${opened.name}: '${key}' must have shape (N, dim), found ${describeShape(shape)}`);
  }
  return shape[1]!;
}

/** (N,) or (N, 1), which D4RL squeezes to (N,). */
function checkColumn(opened: OpenedH5, key: string, shape: readonly number[]): void {
  if (!(shape.length === 1 || (shape.length === 2 && shape[1] === 1))) {
    throw new DatasetFormatError(`${opened.name}: '${key}' must have shape (N,) or (N, 1), found ${describeShape(shape)}`);
  }
}

/** Timeouts wherever an episode reaches maxEpisodeSteps steps without terminating. */
function timeoutsFromEpisodeLength(terminals: Uint8Array, maxEpisodeSteps: number): Uint8Array {
  const out = new Uint8Array(terminals.length);
  let step = 0;
  for (let i = 0; i < terminals.length; i++) {
    step++;
    if (terminals[i]) step = 0;
    else if (step === maxEpisodeSteps) { out[i] = 1; step = 0; }
  }
  return out;
}

function readInfos(opened: OpenedH5, size: number): D4RLData['infos'] {
  const group = opened.file.get('infos');
  if (!(group instanceof opened.h5.Group)) return undefined;
  const infos: NonNullable<D4RLData['infos']> = {};
  for (const [key, ds] of datasetsBelow(opened, group)) {
    const { kind } = describeDtype(ds);
    if (kind === 'string' || kind === 'other') continue; // non-numeric infos are not read
    const shape = shapeOf(ds);
    if (shape[0] !== size) {
      throw new DatasetFormatError(`${opened.name}: 'infos/${key}' has ${shape[0] ?? 'no'} rows, the dataset has ${size}`);
    }
    const values = readNumeric(opened, ds, `infos/${key}`);
    const data = values instanceof Float32Array || values instanceof Float64Array
      ? values
      : Float64Array.from(values as ArrayLike<number | bigint>, Number);
    infos[key] = { data, shape };
  }
  return infos;
}

function readMetadata(opened: OpenedH5): D4RLData['metadata'] {
  const group = opened.file.get('metadata');
  if (!(group instanceof opened.h5.Group)) return undefined;
  const metadata: NonNullable<D4RLData['metadata']> = {};
  for (const [key, ds] of datasetsBelow(opened, group)) {
    const shape = shapeOf(ds);
    if (shape.reduce((a, b) => a * b, 1) !== 1) continue; // array-valued metadata is not read
    const { kind } = describeDtype(ds);
    const value = ds.value;
    const scalar = ArrayBuffer.isView(value) ? (value as unknown as ArrayLike<number | bigint>)[0] : value;
    if (kind === 'string' && typeof scalar === 'string') metadata[key] = scalar;
    else if (kind === 'bool' || ds.attrs['type']?.value === 'bool') metadata[key] = Number(scalar) !== 0;
    else if (typeof scalar === 'number' || typeof scalar === 'bigint') metadata[key] = Number(scalar);
  }
  return metadata;
}

/** The metadata key of the content digest the project's writer records and its reader verifies. */
export const CONTENT_DIGEST_KEY = 'content_sha256';

/**
 * SHA-256 over every array of the data (name, shape and bytes, in a fixed order) and the metadata apart from the
 * digest itself. WebCrypto, so it runs in Node and in browsers alike.
 */
export async function contentDigest(data: D4RLData): Promise<string> {
  const parts: [string, readonly number[], ArrayBufferView][] = [
    ['observations', [data.size, data.obsDim], data.observations],
    ['actions', [data.size, data.actDim], data.actions],
    ['rewards', [data.size], data.rewards],
    ['terminals', [data.size], data.terminals],
    ['timeouts', [data.size], data.timeouts],
  ];
  if (data.nextObservations) parts.push(['next_observations', [data.size, data.obsDim], data.nextObservations]);
  for (const key of Object.keys(data.infos ?? {}).sort()) parts.push([`infos/${key}`, data.infos![key]!.shape, data.infos![key]!.data]);
  const subtle = globalThis.crypto.subtle;
  const digests = await Promise.all(parts.map(([, , a]) => subtle.digest('SHA-256', new Uint8Array(a.buffer, a.byteOffset, a.byteLength))));
  const meta = Object.entries(data.metadata ?? {}).filter(([k]) => k !== CONTENT_DIGEST_KEY).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  const header = new TextEncoder().encode(JSON.stringify({ parts: parts.map(([name, shape, a]) => [name, shape, a.constructor.name]), meta }));
  const all = new Uint8Array(header.length + 32 * digests.length);
  all.set(header, 0);
  digests.forEach((d, i) => all.set(new Uint8Array(d), header.length + 32 * i));
  return [...new Uint8Array(await subtle.digest('SHA-256', all))].map((b) => b.toString(16).padStart(2, '0')).join('');
}

function readOpened(opened: OpenedH5, opts: ReadD4RLOptions): D4RLData {
  const name = opened.name;
  const missing = REQUIRED.filter((k) => findDataset(opened, k) === null);
  const timeoutsDs = findDataset(opened, 'timeouts');
  if (timeoutsDs === null && opts.maxEpisodeSteps === undefined) missing.push('timeouts' as never);
  if (missing.length > 0) {
    const hint = missing.includes('timeouts' as never) && missing.length === 1
      ? ' (pass maxEpisodeSteps to derive timeouts from episode lengths)'
      : '';
    throw new DatasetFormatError(
      `${name}: missing required dataset(s) ${missing.map((k) => `'${k}'`).join(', ')}${hint}; found keys: ${opened.file.keys().join(', ') || 'none'}`);
  }
  const obsDs = findDataset(opened, 'observations')!;
  const actDs = findDataset(opened, 'actions')!;
  const rewDs = findDataset(opened, 'rewards')!;
  const termDs = findDataset(opened, 'terminals')!;
  const nextDs = findDataset(opened, 'next_observations');

  const obsDim = matrixWidth(opened, 'observations', shapeOf(obsDs));
  const actDim = matrixWidth(opened, 'actions', shapeOf(actDs));
  checkColumn(opened, 'rewards', shapeOf(rewDs));
  checkColumn(opened, 'terminals', shapeOf(termDs));
  if (timeoutsDs) checkColumn(opened, 'timeouts', shapeOf(timeoutsDs));
  if (nextDs) {
    const nextDim = matrixWidth(opened, 'next_observations', shapeOf(nextDs));
    if (nextDim !== obsDim) throw new DatasetFormatError(`${name}: 'next_observations' has width ${nextDim}, 'observations' has ${obsDim}`);
  }

  const rows: Array<[string, H5Dataset]> = [['observations', obsDs], ['actions', actDs], ['rewards', rewDs], ['terminals', termDs]];
  if (timeoutsDs) rows.push(['timeouts', timeoutsDs]);
  if (nextDs) rows.push(['next_observations', nextDs]);
  const size = shapeOf(obsDs)[0]!;
  if (rows.some(([, ds]) => shapeOf(ds)[0] !== size)) {
    throw new DatasetFormatError(`${name}: datasets have different numbers of rows: ${rows.map(([k, ds]) => `${k} ${shapeOf(ds)[0]}`).join(', ')}`);
  }
  if (size === 0) throw new DatasetFormatError(`${name}: the dataset is empty (0 rows)`);

  const expect = opts.expect ?? {};
  if (expect.obsDim !== undefined && expect.obsDim !== obsDim) {
    throw new DatasetFormatError(`${name}: observations have ${obsDim} dimensions, the environment expects ${expect.obsDim}`);
  }
  if (expect.actDim !== undefined && expect.actDim !== actDim) {
    throw new DatasetFormatError(`${name}: actions have ${actDim} dimensions, the environment expects ${expect.actDim}`);
  }

  const terminals = readFlags(opened, termDs, 'terminals');
  const data: D4RLData = {
    size,
    obsDim,
    actDim,
    observations: readFloat32(opened, obsDs, 'observations'),
    actions: readFloat32(opened, actDs, 'actions'),
    rewards: readFloat32(opened, rewDs, 'rewards'),
    terminals,
    timeouts: timeoutsDs ? readFlags(opened, timeoutsDs, 'timeouts') : timeoutsFromEpisodeLength(terminals, opts.maxEpisodeSteps!),
  };
  if (nextDs) data.nextObservations = readFloat32(opened, nextDs, 'next_observations');
  const infos = readInfos(opened, size);
  if (infos) data.infos = infos;
  const metadata = readMetadata(opened);
  if (metadata) data.metadata = metadata;
  validateD4RL(data, name);
  return data;
}

/**
 * Reads a D4RL-layout HDF5 file (a host path, Node only) or its bytes, with every check the training code
 * relies on: the required keys exist ('observations', 'actions', 'rewards', 'terminals', 'timeouts'), all have
 * the same number of rows (at least one), the float arrays hold floats (float64 is rounded to float32), the
 * flags hold only 0/1, nothing is NaN or infinite, and the dimensions match `expect`. Errors are
 * DatasetFormatError and name the source, the key and, for bad values, the first bad row.
 */
export async function readD4RL(source: string | Uint8Array, opts: ReadD4RLOptions = {}): Promise<D4RLData> {
  const opened = await openForReading(source, opts.name);
  try {
    const data = readOpened(opened, opts);
    const recorded = data.metadata?.[CONTENT_DIGEST_KEY];
    // files written here carry a digest of their contents: a flipped bit anywhere in the data is caught
    if (typeof recorded === 'string' && recorded !== (await contentDigest(data))) {
      throw new DatasetFormatError(`${opened.name}: the contents do not match the digest recorded when the file was written (metadata/${CONTENT_DIGEST_KEY}): the file was damaged or edited`);
    }
    return data;
  } catch (err) {
    throw withFileName(opened.name, err);
  } finally {
    opened.close();
  }
}

/** Checks a D4RLData's sizes and values; throws DatasetFormatError naming the key and first bad row. */
export function validateD4RL(data: D4RLData, name = 'dataset'): void {
  const { size, obsDim, actDim } = data;
  for (const [k, v] of [['size', size], ['obsDim', obsDim], ['actDim', actDim]] as const) {
    if (!Number.isInteger(v) || v < 0) throw new DatasetFormatError(`${name}: ${k} must be a non-negative integer, got ${v}`);
  }
  if (size === 0) throw new DatasetFormatError(`${name}: the dataset is empty (0 rows)`);
  if (obsDim === 0 || actDim === 0) throw new DatasetFormatError(`${name}: obsDim and actDim must be at least 1, got ${obsDim} and ${actDim}`);
  const arrays: Array<[string, ArrayLike<number> | undefined, number]> = [
    ['observations', data.observations, obsDim],
    ['actions', data.actions, actDim],
    ['rewards', data.rewards, 1],
    ['terminals', data.terminals, 1],
    ['timeouts', data.timeouts, 1],
    ['next_observations', data.nextObservations, obsDim],
  ];
  for (const [key, values, width] of arrays) {
    if (values === undefined) {
      if (key === 'next_observations') continue;
      throw new DatasetFormatError(`${name}: '${key}' is missing`);
    }
    if (values.length !== size * width) {
      throw new DatasetFormatError(`${name}: '${key}' has ${values.length} values, expected ${size} rows x ${width} = ${size * width}`);
    }
  }
  checkFinite(name, 'observations', data.observations, obsDim);
  checkFinite(name, 'actions', data.actions, actDim);
  checkFinite(name, 'rewards', data.rewards, 1);
  if (data.nextObservations) checkFinite(name, 'next_observations', data.nextObservations, obsDim);
  for (const key of ['terminals', 'timeouts'] as const) {
    const flags = data[key];
    for (let i = 0; i < size; i++) {
      if (flags[i] !== 0 && flags[i] !== 1) throw new DatasetFormatError(`${name}: '${key}' must hold 0 or 1, found ${flags[i]} at row ${i}`);
    }
  }
  for (const [key, info] of Object.entries(data.infos ?? {})) {
    const count = info.shape.reduce((a, b) => a * b, 1);
    if (info.shape[0] !== size || count !== info.data.length) {
      throw new DatasetFormatError(`${name}: 'infos/${key}' has shape ${describeShape(info.shape)} and ${info.data.length} values; its first axis must be ${size}`);
    }
  }
}

export interface WriteD4RLOptions {
  /** gzip level 0-9, or false for no compression (faster to write, larger). Default 4. */
  compression?: number | false;
}

function writeArray(group: H5Group, name: string, data: Float32Array | Float64Array | Uint8Array, shape: number[], compression: number | false): H5Dataset {
  const rowBytes = (data.BYTES_PER_ELEMENT * data.length) / Math.max(1, shape[0]!);
  const chunks = [chunkRows(shape[0]!, rowBytes), ...shape.slice(1)];
  const dtype = data instanceof Float32Array ? '<f' : data instanceof Float64Array ? '<d' : '<B';
  return compression === false
    ? group.create_dataset({ name, data, shape, dtype, chunks })
    : group.create_dataset({ name, data, shape, dtype, chunks, compression: 'gzip', compression_opts: compression });
}

function ensureGroups(root: H5Group, path: string, groupType: new (file_id: bigint, path: string) => H5Group): H5Group {
  let g = root;
  for (const part of path.split('/').slice(0, -1)) {
    const existing = g.get(part);
    g = existing instanceof groupType ? existing : g.create_group(part);
  }
  return g;
}

async function writeTo(path: string | null, data: D4RLData, opts: WriteD4RLOptions): Promise<Uint8Array | null> {
  const name = path ?? 'dataset';
  validateD4RL(data, name);
  const compression = opts.compression ?? 4;
  if (compression !== false && !(Number.isInteger(compression) && compression >= 0 && compression <= 9)) {
    throw new Error(`writeD4RL: compression must be an integer gzip level 0-9 or false, got ${compression}`);
  }
  const created = await createForWriting(path);
  try {
    const { file, h5 } = created;
    const { size, obsDim, actDim } = data;
    writeArray(file, 'observations', data.observations, [size, obsDim], compression);
    writeArray(file, 'actions', data.actions, [size, actDim], compression);
    writeArray(file, 'rewards', data.rewards, [size], compression);
    writeArray(file, 'terminals', data.terminals, [size], compression);
    writeArray(file, 'timeouts', data.timeouts, [size], compression);
    if (data.nextObservations) writeArray(file, 'next_observations', data.nextObservations, [size, obsDim], compression);
    const infos = Object.entries(data.infos ?? {});
    if (infos.length > 0) {
      const group = file.create_group('infos');
      for (const [key, info] of infos) {
        const parent = ensureGroups(group, key, h5.Group);
        writeArray(parent, key.split('/').pop()!, info.data, info.shape, compression);
      }
    }
    const metadata = Object.entries({ ...data.metadata, [CONTENT_DIGEST_KEY]: await contentDigest(data) });
    if (metadata.length > 0) {
      const group = file.create_group('metadata');
      for (const [key, value] of metadata) {
        const parent = ensureGroups(group, key, h5.Group);
        const leaf = key.split('/').pop()!;
        if (typeof value === 'string') parent.create_dataset({ name: leaf, data: value });
        else if (typeof value === 'boolean') {
          // h5wasm cannot write h5py's bool enum: a uint8 scalar marked with a 'type' attribute reads back as boolean.
          parent.create_dataset({ name: leaf, data: new Uint8Array([value ? 1 : 0]), shape: [], dtype: '<B' }).create_attribute('type', 'bool');
        } else if (Number.isInteger(value) && Math.abs(value) < 2 ** 31) {
          parent.create_dataset({ name: leaf, data: new Int32Array([value]), shape: [], dtype: '<i' });
        } else {
          parent.create_dataset({ name: leaf, data: new Float64Array([value]), shape: [], dtype: '<d' });
        }
      }
    }
    return created.finish();
  } catch (err) {
    await created.abandon();
    throw err;
  }
}

/**
 * Writes a D4RL-layout HDF5 file at a host path (Node only), after validating the data with validateD4RL
 * (nothing is written when it fails). Flags are stored as uint8, float arrays as float32.
 */
export async function writeD4RL(path: string, data: D4RLData, opts: WriteD4RLOptions = {}): Promise<void> {
  await writeTo(path, data, opts);
}

/** The same file as writeD4RL, returned as bytes (works without a file system). */
export async function encodeD4RL(data: D4RLData, opts: WriteD4RLOptions = {}): Promise<Uint8Array> {
  return (await writeTo(null, data, opts))!;
}

export interface Transitions {
  size: number;
  obsDim: number;
  actDim: number;
  observations: Float32Array;
  actions: Float32Array;
  rewards: Float32Array;
  nextObservations: Float32Array;
  /** 1 where the transition ends in a real termination (timeouts are not terminations). */
  dones: Float32Array;
}

export interface QLearningOptions {
  /**
   * Reproduce D4RL's qlearning_dataset exactly: next observation = the following row even when
   * next_observations exist, every timeout row dropped, the last row dropped. Default false.
   */
  d4rlCompat?: boolean;
}

/**
 * Flat (s, a, r, s', done) transitions for TD learning.
 *
 * Default rule:
 * - s' is next_observations[i] when the file has it, else observations[i + 1].
 * - done = terminals[i]; a timeout is a truncation, not a termination, so it never sets done.
 * - No transition crosses an episode boundary: without next_observations, a row whose episode ends by
 *   timeout has no successor in the data and is dropped, and so is the last row (unless terminal). With
 *   next_observations every row is kept.
 * - A terminal row keeps its place even without next_observations: s' is then the following row (or the row
 *   itself at the end of the data), a placeholder that the (1 - done) factor of every TD target removes.
 *
 * D4RL's qlearning_dataset differs: it ignores next_observations, always uses observations[i + 1], drops every
 * timeout row (also when the file stores the true successor) and always drops the last row. On a file with
 * next_observations and timeouts (e.g. 2 episodes of 1000 steps) the default keeps 2000 transitions and the
 * D4RL rule 1998. `d4rlCompat: true` selects D4RL's rule.
 */
export function qlearningDataset(data: D4RLData, opts: QLearningOptions = {}): Transitions {
  const { size, obsDim, actDim } = data;
  const useNext = data.nextObservations !== undefined && !opts.d4rlCompat;
  const keep: number[] = [];
  for (let i = 0; i < size; i++) {
    const last = i === size - 1;
    if (opts.d4rlCompat) {
      if (!last && !data.timeouts[i]) keep.push(i);
    } else if (useNext || data.terminals[i] || (!data.timeouts[i] && !last)) {
      keep.push(i);
    }
  }
  const n = keep.length;
  const out: Transitions = {
    size: n,
    obsDim,
    actDim,
    observations: new Float32Array(n * obsDim),
    actions: new Float32Array(n * actDim),
    rewards: new Float32Array(n),
    nextObservations: new Float32Array(n * obsDim),
    dones: new Float32Array(n),
  };
  for (let j = 0; j < n; j++) {
    const i = keep[j]!;
    out.observations.set(data.observations.subarray(i * obsDim, (i + 1) * obsDim), j * obsDim);
    out.actions.set(data.actions.subarray(i * actDim, (i + 1) * actDim), j * actDim);
    out.rewards[j] = data.rewards[i]!;
    out.dones[j] = data.terminals[i]!;
    const next = useNext
      ? data.nextObservations!.subarray(i * obsDim, (i + 1) * obsDim)
      : data.observations.subarray(Math.min(i + 1, size - 1) * obsDim, (Math.min(i + 1, size - 1) + 1) * obsDim);
    out.nextObservations.set(next, j * obsDim);
  }
  return out;
}

/** Episodes as [start, end) row ranges: an episode ends at a terminal or a timeout; a trailing unfinished one is included. */
export function episodeRanges(data: D4RLData): Array<[number, number]> {
  const ranges: Array<[number, number]> = [];
  let start = 0;
  for (let i = 0; i < data.size; i++) {
    if (data.terminals[i] || data.timeouts[i]) { ranges.push([start, i + 1]); start = i + 1; }
  }
  if (start < data.size) ranges.push([start, data.size]);
  return ranges;
}

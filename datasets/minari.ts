// Minari datasets (HDF5 storage): one group per episode plus a metadata.json, read with the same checks as
// the D4RL reader and converted to the D4RL row layout.
//
// Layout of <dataset>/data/main_data.hdf5:
//   episode_<id>/observations (T+1, ...): includes the observation from reset
//   episode_<id>/actions (T, ...), rewards (T,), terminations (T,), truncations (T,), infos/... (optional)
// Dict observation spaces are stored as subgroups of 'observations'; they are flattened only in an order the
// caller names (`dictKeys`), because no order is implied by the file that every consumer would agree on.
import {
  DatasetFormatError, checkFinite, datasetsBelow, describeDtype, findDataset, openForReading, readFlags,
  readFloat32, readNumeric, withFileName, type H5Dataset, type H5Group, type OpenedH5,
} from './hdf5.ts';
import type { D4RLData } from './d4rl.ts';

export interface MinariEpisode {
  id: number;
  /** Steps T. */
  length: number;
  /** (T + 1, obsDim): observations[0] comes from reset, observations[t + 1] follows actions[t]. */
  observations: Float32Array;
  actions: Float32Array;
  rewards: Float32Array;
  terminations: Uint8Array;
  truncations: Uint8Array;
  /** Numeric infos by path below infos/, with T + 1 rows (or T). */
  infos: Record<string, { data: Float32Array | Float64Array; shape: number[] }>;
}

export interface MinariDataset {
  /** How the dataset is named in errors (its directory). */
  name: string;
  obsDim: number;
  actDim: number;
  totalSteps: number;
  episodes: MinariEpisode[];
  /** metadata.json, parsed; observation_space and action_space are themselves parsed from their JSON strings. */
  metadata: Record<string, unknown>;
}

export interface ReadMinariOptions {
  /**
   * For Dict observation spaces: the subspace paths (e.g. ['observation', 'desired_goal']) to concatenate,
   * in this order, into one flat observation. Without it a Dict space is an error listing the keys.
   */
  dictKeys?: string[];
  expect?: { obsDim?: number; actDim?: number };
}

/**
 * JSON as Python's json.dumps writes it: bare NaN, Infinity and -Infinity (outside strings) are read as the
 * numbers they stand for; everything else is standard JSON.
 */
export function parsePythonJSON(text: string): unknown {
  const tokens: Array<[string, number]> = [['-Infinity', -Infinity], ['Infinity', Infinity], ['NaN', Number.NaN]];
  const specials: number[] = [];
  let out = '';
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const ch = text[i]!;
    if (inString) {
      out += ch;
      if (ch === '\\') { out += text[i + 1] ?? ''; i++; } else if (ch === '"') inString = false;
      continue;
    }
    if (ch === '"') { inString = true; out += ch; continue; }
    const token = tokens.find(([word]) => text.startsWith(word, i));
    if (token) {
      // A placeholder object that JSON.parse accepts anywhere a value may stand.
      out += `{"\\u0000special":${specials.length}}`;
      specials.push(token[1]);
      i += token[0].length - 1;
      continue;
    }
    out += ch;
  }
  return JSON.parse(out, (_key, value: unknown) => {
    if (value !== null && typeof value === 'object' && '\u0000special' in value) {
      return specials[(value as Record<string, number>)['\u0000special']!];
    }
    return value;
  });
}

function episodeGroups(opened: OpenedH5): Array<[number, H5Group]> {
  const episodes: Array<[number, H5Group]> = [];
  for (const key of opened.file.keys()) {
    const match = /^episode_(\d+)$/.exec(key);
    if (!match) continue;
    const g = opened.file.get(key);
    if (!(g instanceof opened.h5.Group)) throw new DatasetFormatError(`${opened.name}: '${key}' is not a group`);
    episodes.push([Number(match[1]), g]);
  }
  return episodes.sort((a, b) => a[0] - b[0]);
}

/** Rows and flattened width of an (rows, ...) dataset. */
function rowsAndWidth(ds: H5Dataset): [number, number] {
  const shape = ds.shape ?? [];
  return [shape[0] ?? 1, shape.slice(1).reduce((a, b) => a * b, 1)];
}

function readEntry(opened: OpenedH5, group: H5Group, key: string, prefix: string): H5Dataset {
  const ds = findDataset(opened, key, group);
  if (ds === null) throw new DatasetFormatError(`${opened.name}: '${prefix}/${key}' is missing; found: ${group.keys().join(', ') || 'nothing'}`);
  return ds;
}

/** Observations of one episode as (rows, width) float32, flattening a Dict space in the requested order. */
function readObservations(opened: OpenedH5, episode: H5Group, prefix: string, dictKeys: string[] | undefined): { data: Float32Array; rows: number; width: number } {
  const entity = episode.get('observations');
  if (entity instanceof opened.h5.Dataset) {
    if (dictKeys) throw new DatasetFormatError(`${opened.name}: dictKeys given but '${prefix}/observations' is not a Dict space`);
    const [rows, width] = rowsAndWidth(entity);
    return { data: readFloat32(opened, entity, `${prefix}/observations`), rows, width };
  }
  if (!(entity instanceof opened.h5.Group)) {
    throw new DatasetFormatError(`${opened.name}: '${prefix}/observations' is missing; found: ${episode.keys().join(', ')}`);
  }
  const parts = datasetsBelow(opened, entity);
  const available = [...parts.keys()];
  if (available.some((k) => /(^|\/)_index_\d+$/.test(k)) && !dictKeys) {
    throw new DatasetFormatError(`${opened.name}: Tuple observation spaces are not supported ('${prefix}/observations' holds ${available.join(', ')})`);
  }
  if (!dictKeys) {
    throw new DatasetFormatError(
      `${opened.name}: the observation space is a Dict (${available.join(', ')}); pass dictKeys to choose which parts to concatenate, in order`);
  }
  const pieces: Array<{ data: Float32Array; width: number }> = [];
  let rows = -1;
  for (const key of dictKeys) {
    const ds = parts.get(key);
    if (!ds) throw new DatasetFormatError(`${opened.name}: '${prefix}/observations/${key}' is missing; the Dict holds ${available.join(', ')}`);
    const [r, width] = rowsAndWidth(ds);
    if (rows >= 0 && r !== rows) throw new DatasetFormatError(`${opened.name}: '${prefix}/observations/${key}' has ${r} rows, other parts have ${rows}`);
    rows = r;
    pieces.push({ data: readFloat32(opened, ds, `${prefix}/observations/${key}`), width });
  }
  const width = pieces.reduce((a, p) => a + p.width, 0);
  const data = new Float32Array(rows * width);
  let column = 0;
  for (const p of pieces) {
    for (let r = 0; r < rows; r++) data.set(p.data.subarray(r * p.width, (r + 1) * p.width), r * width + column);
    column += p.width;
  }
  return { data, rows, width };
}

function readEpisode(opened: OpenedH5, id: number, group: H5Group, opts: ReadMinariOptions): MinariEpisode & { obsDim: number; actDim: number } {
  const prefix = `episode_${id}`;
  const obs = readObservations(opened, group, prefix, opts.dictKeys);
  const actDs = readEntry(opened, group, 'actions', prefix);
  const [T, actDim] = rowsAndWidth(actDs);
  if (actDs.shape?.length === 0) throw new DatasetFormatError(`${opened.name}: '${prefix}/actions' is a scalar`);
  const { kind, text } = describeDtype(actDs);
  if (kind !== 'float32' && kind !== 'float64') {
    throw new DatasetFormatError(`${opened.name}: '${prefix}/actions' must hold floating-point values (continuous actions), found ${text}`);
  }
  const columns: Array<[string, H5Dataset]> = (['rewards', 'terminations', 'truncations'] as const).map((k) => [k, readEntry(opened, group, k, prefix)]);
  const counts = [`observations ${obs.rows}`, `actions ${T}`, ...columns.map(([k, ds]) => `${k} ${rowsAndWidth(ds)[0]}`)];
  if (obs.rows !== T + 1 || columns.some(([, ds]) => rowsAndWidth(ds)[0] !== T || rowsAndWidth(ds)[1] !== 1)) {
    throw new DatasetFormatError(`${opened.name}: '${prefix}' must hold T + 1 observations and T of everything else, found ${counts.join(', ')}`);
  }
  const episode: MinariEpisode & { obsDim: number; actDim: number } = {
    id,
    length: T,
    obsDim: obs.width,
    actDim,
    observations: obs.data,
    actions: readFloat32(opened, actDs, `${prefix}/actions`),
    rewards: readFloat32(opened, columns[0]![1], `${prefix}/rewards`),
    terminations: readFlags(opened, columns[1]![1], `${prefix}/terminations`),
    truncations: readFlags(opened, columns[2]![1], `${prefix}/truncations`),
    infos: {},
  };
  checkFinite(opened.name, `${prefix}/observations`, episode.observations, obs.width);
  checkFinite(opened.name, `${prefix}/actions`, episode.actions, actDim);
  checkFinite(opened.name, `${prefix}/rewards`, episode.rewards, 1);
  for (let t = 0; t < T - 1; t++) {
    if (episode.terminations[t] || episode.truncations[t]) {
      throw new DatasetFormatError(`${opened.name}: '${prefix}' ends (terminated or truncated) at step ${t} but continues to step ${T - 1}`);
    }
  }
  const infos = group.get('infos');
  if (infos instanceof opened.h5.Group) {
    for (const [key, ds] of datasetsBelow(opened, infos)) {
      const { kind: k } = describeDtype(ds);
      const shape = ds.shape ?? [];
      if (k === 'string' || k === 'other' || (shape[0] !== T + 1 && shape[0] !== T)) continue; // only per-step numeric infos
      const values = readNumeric(opened, ds, `${prefix}/infos/${key}`);
      const data = values instanceof Float32Array || values instanceof Float64Array ? values : Float64Array.from(values as ArrayLike<number | bigint>, Number);
      episode.infos[key] = { data, shape };
    }
  }
  return episode;
}

async function readMetadata(dir: string, name: string): Promise<Record<string, unknown>> {
  const fs = await import('node:fs');
  const path = await import('node:path');
  const file = path.join(dir, 'metadata.json');
  if (!fs.existsSync(file)) return {};
  let metadata: unknown;
  try {
    metadata = parsePythonJSON(fs.readFileSync(file, 'utf8'));
  } catch (err) {
    throw new DatasetFormatError(`${name}: metadata.json is not valid JSON: ${(err as Error).message}`);
  }
  if (metadata === null || typeof metadata !== 'object' || Array.isArray(metadata)) {
    throw new DatasetFormatError(`${name}: metadata.json must hold an object`);
  }
  const record = metadata as Record<string, unknown>;
  for (const key of ['observation_space', 'action_space', 'env_spec', 'eval_env_spec']) {
    const value = record[key];
    if (typeof value !== 'string') continue;
    try {
      record[key] = parsePythonJSON(value);
    } catch {
      // Not every version serialises these as JSON; keep the text.
    }
  }
  return record;
}

/**
 * Reads a Minari dataset directory (the one holding data/, or data/ itself) with the HDF5 storage backend.
 * Checks every episode: T + 1 observations and T actions, rewards and flags; floats where floats belong;
 * no NaN or infinite values; no termination or truncation before the last step; the same dimensions in
 * every episode; and the step and episode counts against metadata.json when it states them.
 */
export async function readMinari(dir: string, opts: ReadMinariOptions = {}): Promise<MinariDataset> {
  const fs = await import('node:fs');
  const path = await import('node:path');
  const dataDir = fs.existsSync(path.join(dir, 'data', 'main_data.hdf5')) ? path.join(dir, 'data') : dir;
  const file = path.join(dataDir, 'main_data.hdf5');
  if (!fs.existsSync(file)) {
    const arrow = fs.existsSync(dataDir) && fs.readdirSync(dataDir).some((f) => f.endsWith('.arrow') || f.startsWith('episode_id='));
    throw new DatasetFormatError(`${dir}: no data/main_data.hdf5${arrow ? ' (this dataset uses the Arrow storage format, which is not supported)' : ''}`);
  }
  const metadata = await readMetadata(dataDir, dir);
  const opened = await openForReading(file);
  try {
    const groups = episodeGroups(opened);
    if (groups.length === 0) throw new DatasetFormatError(`${file}: no episode_<id> groups; found: ${opened.file.keys().join(', ') || 'nothing'}`);
    const episodes = groups.map(([id, g]) => readEpisode(opened, id, g, opts));
    const first = episodes[0]!;
    for (const ep of episodes) {
      if (ep.obsDim !== first.obsDim || ep.actDim !== first.actDim) {
        throw new DatasetFormatError(`${file}: episode_${ep.id} has obs/action dims ${ep.obsDim}/${ep.actDim}, episode_${first.id} has ${first.obsDim}/${first.actDim}`);
      }
    }
    const totalSteps = episodes.reduce((a, e) => a + e.length, 0);
    if (totalSteps === 0) throw new DatasetFormatError(`${file}: the dataset is empty (0 steps)`);
    if (typeof metadata['total_steps'] === 'number' && metadata['total_steps'] !== totalSteps) {
      throw new DatasetFormatError(`${dir}: metadata.json says total_steps ${metadata['total_steps']}, the file holds ${totalSteps}`);
    }
    if (typeof metadata['total_episodes'] === 'number' && metadata['total_episodes'] !== episodes.length) {
      throw new DatasetFormatError(`${dir}: metadata.json says total_episodes ${metadata['total_episodes']}, the file holds ${episodes.length}`);
    }
    const expect = opts.expect ?? {};
    if (expect.obsDim !== undefined && expect.obsDim !== first.obsDim) {
      throw new DatasetFormatError(`${dir}: observations have ${first.obsDim} dimensions, the environment expects ${expect.obsDim}`);
    }
    if (expect.actDim !== undefined && expect.actDim !== first.actDim) {
      throw new DatasetFormatError(`${dir}: actions have ${first.actDim} dimensions, the environment expects ${expect.actDim}`);
    }
    return {
      name: dir,
      obsDim: first.obsDim,
      actDim: first.actDim,
      totalSteps,
      episodes: episodes.map(({ obsDim: _o, actDim: _a, ...ep }) => ep),
      metadata,
    };
  } catch (err) {
    throw withFileName(file, err);
  } finally {
    opened.close();
  }
}

/**
 * The D4RL row layout: per episode, observations[0..T-1] with next_observations[0..T-1] = observations[1..T],
 * terminals = terminations, timeouts = truncations. An episode that ends with neither flag (recording
 * stopped) gets a timeout on its last row, so episode boundaries survive. Per-step infos present in every
 * episode keep their first T rows (the info at each row's observation); scalar metadata entries
 * (dataset_id, ref_min_score, ...) are carried over.
 */
export function toD4RL(minari: MinariDataset): D4RLData {
  const { obsDim, actDim, totalSteps: size } = minari;
  const data: D4RLData = {
    size, obsDim, actDim,
    observations: new Float32Array(size * obsDim),
    nextObservations: new Float32Array(size * obsDim),
    actions: new Float32Array(size * actDim),
    rewards: new Float32Array(size),
    terminals: new Uint8Array(size),
    timeouts: new Uint8Array(size),
  };
  const infoKeys = Object.keys(minari.episodes[0]!.infos).filter((key) => {
    const trailing = (s: number[]): string => s.slice(1).join('x');
    const ref = trailing(minari.episodes[0]!.infos[key]!.shape);
    return minari.episodes.every((ep) => ep.infos[key] !== undefined && trailing(ep.infos[key].shape) === ref);
  });
  const infos: NonNullable<D4RLData['infos']> = {};
  for (const key of infoKeys) {
    const sample = minari.episodes[0]!.infos[key]!;
    const width = sample.shape.slice(1).reduce((a, b) => a * b, 1);
    const store = sample.data instanceof Float32Array ? new Float32Array(size * width) : new Float64Array(size * width);
    infos[key] = { data: store, shape: [size, ...sample.shape.slice(1)] };
  }
  let row = 0;
  for (const ep of minari.episodes) {
    const T = ep.length;
    data.observations.set(ep.observations.subarray(0, T * obsDim), row * obsDim);
    data.nextObservations!.set(ep.observations.subarray(obsDim, (T + 1) * obsDim), row * obsDim);
    data.actions.set(ep.actions, row * actDim);
    data.rewards.set(ep.rewards, row);
    data.terminals.set(ep.terminations, row);
    data.timeouts.set(ep.truncations, row);
    if (T > 0 && !ep.terminations[T - 1]) data.timeouts[row + T - 1] = 1;
    for (const key of infoKeys) {
      const src = ep.infos[key]!;
      const width = src.shape.slice(1).reduce((a, b) => a * b, 1);
      infos[key]!.data.set(src.data.subarray(0, T * width), row * width);
    }
    row += T;
  }
  if (infoKeys.length > 0) data.infos = infos;
  const metadata: NonNullable<D4RLData['metadata']> = {};
  for (const [key, value] of Object.entries(minari.metadata)) {
    if (typeof value === 'string' || typeof value === 'boolean' || (typeof value === 'number' && Number.isFinite(value))) metadata[key] = value;
  }
  if (Object.keys(metadata).length > 0) data.metadata = metadata;
  return data;
}

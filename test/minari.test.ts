// Minari reader: a small dataset in Minari's HDF5 layout written here with h5wasm, its metadata.json with
// Python's bare Infinity/NaN, Dict observations, malformed episodes, and the conversion to D4RL rows.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { parsePythonJSON, readMinari, toD4RL } from '../datasets/minari.ts';
import { DatasetFormatError, encodeD4RL, qlearningDataset, readD4RL } from '../datasets/d4rl.ts';
import { h5ForPaths } from '../datasets/hdf5.ts';
import { rng } from './helpers.ts';

const t = suite('minari');
let root = '';
t.before(() => { root = fs.mkdtempSync(path.join(os.tmpdir(), 'webdiffuser-minari-')); });
t.after(() => { fs.rmSync(root, { recursive: true, force: true }); });

const OBS = 4;
const ACT = 2;

interface EpisodeSpec {
  length: number;
  terminated?: boolean;
  truncated?: boolean;
  /** Overrides per key, written as given. */
  override?: Record<string, { data: Float32Array | Float64Array | Uint8Array | Int32Array; shape: number[] }>;
  dict?: boolean;
}

/** Observation o of episode e: [e, o, e + o / 10, -o]; easy to locate after any reordering. */
function observation(e: number, o: number): number[] {
  return [...Float32Array.from([e, o, e + o / 10, -o])];
}

const METADATA = `{"dataset_id": "test/pointmass/expert-v0", "total_episodes": EPISODES, "total_steps": STEPS,
 "observation_space": "{\\"type\\": \\"Box\\", \\"dtype\\": \\"float64\\", \\"shape\\": [4], \\"low\\": [-Infinity, -Infinity, -Infinity, -Infinity], \\"high\\": [Infinity, Infinity, Infinity, Infinity]}",
 "action_space": "{\\"type\\": \\"Box\\", \\"dtype\\": \\"float32\\", \\"shape\\": [2], \\"low\\": [-1.0, -1.0], \\"high\\": [1.0, 1.0]}",
 "ref_min_score": -12.5, "ref_max_score": 250.0, "author": "Infinity \\"NaN\\" Team", "num_episodes_average_score": NaN,
 "minari_version": "0.5.1", "data_format": "hdf5"}`;

async function writeDataset(name: string, episodes: EpisodeSpec[], metadata = true): Promise<string> {
  const h5 = await h5ForPaths();
  const dir = path.join(root, name);
  fs.mkdirSync(path.join(dir, 'data'), { recursive: true });
  const f = new h5.File(path.join(dir, 'data', 'main_data.hdf5'), 'w', { track_order: true });
  const r = rng(11);
  try {
    episodes.forEach((spec, e) => {
      const g = f.create_group(`episode_${e}`, true);
      g.create_attribute('id', e);
      g.create_attribute('total_steps', spec.length);
      const T = spec.length;
      const obs = new Float64Array((T + 1) * OBS);
      for (let o = 0; o <= T; o++) obs.set(observation(e, o), o * OBS);
      const terminations = new Uint8Array(T);
      const truncations = new Uint8Array(T);
      if (spec.terminated) terminations[T - 1] = 1;
      if (spec.truncated) truncations[T - 1] = 1;
      const qpos = Float64Array.from({ length: (T + 1) * 3 }, (_, i) => 1000 * e + i);
      const columns: Record<string, { data: Float32Array | Float64Array | Uint8Array | Int32Array; shape: number[] }> = {
        observations: { data: obs, shape: [T + 1, OBS] },
        actions: { data: Float32Array.from({ length: T * ACT }, () => r() * 2 - 1), shape: [T, ACT] },
        rewards: { data: Float64Array.from({ length: T }, (_, i) => e * 100 + i), shape: [T] },
        terminations: { data: terminations, shape: [T] },
        truncations: { data: truncations, shape: [T] },
        'infos/qpos': { data: qpos, shape: [T + 1, 3] },
        ...spec.override,
      };
      for (const [key, c] of Object.entries(columns)) {
        if (key === 'observations' && spec.dict) {
          const d = g.create_group('observations');
          d.create_dataset({ name: 'observation', data: obs, shape: [T + 1, OBS] });
          d.create_dataset({ name: 'desired_goal', data: Float64Array.from({ length: (T + 1) * 2 }, (_, i) => 50 + i), shape: [T + 1, 2] });
          continue;
        }
        if (key.startsWith('infos/')) {
          const infos = (g.get('infos') as InstanceType<typeof h5.Group> | null) ?? g.create_group('infos');
          infos.create_dataset({ name: key.slice(6), data: c.data, shape: c.shape });
        } else {
          g.create_dataset({ name: key, data: c.data, shape: c.shape, maxshape: [null, ...c.shape.slice(1)], chunks: [Math.max(1, c.shape[0]!), ...c.shape.slice(1)] });
        }
      }
    });
  } finally {
    f.close();
  }
  if (metadata) {
    const steps = episodes.reduce((a, e) => a + e.length, 0);
    fs.writeFileSync(path.join(dir, 'data', 'metadata.json'), METADATA.replace('EPISODES', String(episodes.length)).replace('STEPS', String(steps)));
  }
  return dir;
}

async function rejects(dir: string, pattern: RegExp, opts = {}): Promise<void> {
  try {
    await readMinari(dir, opts);
  } catch (err) {
    assert.instance(err, DatasetFormatError);
    assert.match((err as Error).message, pattern, (err as Error).message);
    return;
  }
  assert.unreachable(`expected an error matching ${pattern}`);
}

t('parsePythonJSON reads bare Infinity, -Infinity and NaN and leaves strings alone', () => {
  const v = parsePythonJSON('{"a": [Infinity, -Infinity, NaN, 1.5], "s": "Infinity \\"NaN\\" -Infinity", "n": {"x": -Infinity}}') as Record<string, unknown>;
  const a = v['a'] as number[];
  assert.is(a[0], Infinity);
  assert.is(a[1], -Infinity);
  assert.ok(Number.isNaN(a[2]));
  assert.is(a[3], 1.5);
  assert.is(v['s'], 'Infinity "NaN" -Infinity');
  assert.equal(v['n'], { x: -Infinity });
  assert.throws(() => parsePythonJSON('{"a": Infinit}'));
});

t('reads episodes, metadata and per-step infos; converts to D4RL rows', async () => {
  const dir = await writeDataset('basic', [{ length: 5, terminated: true }, { length: 3, truncated: true }, { length: 4 }]);
  const m = await readMinari(dir, { expect: { obsDim: OBS, actDim: ACT } });
  assert.equal([m.obsDim, m.actDim, m.totalSteps, m.episodes.length], [OBS, ACT, 12, 3]);
  assert.equal(m.episodes.map((e) => e.length), [5, 3, 4]);
  const space = m.metadata['observation_space'] as { low: number[]; high: number[] };
  assert.equal(space.low, [-Infinity, -Infinity, -Infinity, -Infinity]);
  assert.equal(space.high, [Infinity, Infinity, Infinity, Infinity]);
  assert.is(m.metadata['author'], 'Infinity "NaN" Team');
  assert.ok(Number.isNaN(m.metadata['num_episodes_average_score'] as number));
  assert.equal(m.episodes[1]!.infos['qpos']!.shape, [4, 3]);

  const d = toD4RL(m);
  assert.equal([d.size, d.obsDim, d.actDim], [12, OBS, ACT]);
  const rowsOf = [[0, 0], [0, 1], [0, 2], [0, 3], [0, 4], [1, 0], [1, 1], [1, 2], [2, 0], [2, 1], [2, 2], [2, 3]];
  rowsOf.forEach(([e, o], row) => {
    assert.equal([...d.observations.subarray(row * OBS, row * OBS + OBS)], observation(e!, o!), `obs row ${row}`);
    assert.equal([...d.nextObservations!.subarray(row * OBS, row * OBS + OBS)], observation(e!, o! + 1), `next row ${row}`);
    assert.is(d.rewards[row], e! * 100 + o!);
    assert.equal([...d.infos!['qpos']!.data.subarray(row * 3, row * 3 + 3)], [1000 * e! + 3 * o!, 1000 * e! + 3 * o! + 1, 1000 * e! + 3 * o! + 2]);
  });
  assert.equal([...d.terminals], [0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0]);
  // Episode 1 truncated; episode 2 ended with neither flag and gets a timeout so the boundary survives.
  assert.equal([...d.timeouts], [0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 1]);
  assert.equal(d.actions.subarray(5 * ACT, 8 * ACT), m.episodes[1]!.actions);
  assert.is(d.metadata!['ref_min_score'], -12.5);
  assert.is(d.metadata!['dataset_id'], 'test/pointmass/expert-v0');
  assert.is(d.metadata!['num_episodes_average_score'], undefined, 'NaN metadata is not carried over');

  // The D4RL form writes and reads back, and every row becomes a transition (next observations are stored).
  const back = await readD4RL(await encodeD4RL(d));
  assert.equal(back.nextObservations, d.nextObservations);
  assert.is(qlearningDataset(back).size, 12);
});

t('accepts the data/ directory itself and a dataset without metadata.json', async () => {
  const dir = await writeDataset('nometa', [{ length: 2, terminated: true }], false);
  const m = await readMinari(path.join(dir, 'data'));
  assert.is(m.totalSteps, 2);
  assert.equal(m.metadata, {});
});

t('Dict observations: an error naming the keys, or flattened in the order given', async () => {
  const dir = await writeDataset('dict', [{ length: 3, dict: true, terminated: true }, { length: 2, dict: true }]);
  await rejects(dir, /observation space is a Dict \(desired_goal, observation\); pass dictKeys/);
  await rejects(dir, /'episode_0\/observations\/achieved_goal' is missing; the Dict holds desired_goal, observation/, { dictKeys: ['observation', 'achieved_goal'] });
  const m = await readMinari(dir, { dictKeys: ['desired_goal', 'observation'] });
  assert.is(m.obsDim, 6);
  const ep = m.episodes[0]!;
  assert.equal([...ep.observations.subarray(6, 12)], [52, 53, ...observation(0, 1)]);
});

t('malformed episodes: alignment, early ends, NaN, integer actions, counts, missing data', async () => {
  await rejects(await writeDataset('short-obs', [{ length: 3, override: { observations: { data: new Float64Array(3 * OBS), shape: [3, OBS] } } }]),
    /'episode_0' must hold T \+ 1 observations and T of everything else, found observations 3, actions 3/);
  await rejects(await writeDataset('ragged-rew', [{ length: 3, override: { rewards: { data: new Float64Array(2), shape: [2] } } }]),
    /found observations 4, actions 3, rewards 2/);
  await rejects(await writeDataset('early', [{ length: 2 }, { length: 4, override: { terminations: { data: Uint8Array.from([0, 1, 0, 0]), shape: [4] } } }]),
    /'episode_1' ends \(terminated or truncated\) at step 1 but continues to step 3/);
  const obs = new Float64Array(4 * OBS);
  obs[2 * OBS + 1] = Number.NaN;
  await rejects(await writeDataset('nan', [{ length: 3, override: { observations: { data: obs, shape: [4, OBS] } } }]),
    /'episode_0\/observations' holds NaN at row 2, column 1/);
  await rejects(await writeDataset('discrete', [{ length: 3, override: { actions: { data: new Int32Array(3), shape: [3] } } }]),
    /'episode_0\/actions' must hold floating-point values \(continuous actions\), found int32/);
  const dir = await writeDataset('count', [{ length: 3 }, { length: 2 }]);
  fs.writeFileSync(path.join(dir, 'data', 'metadata.json'), '{"total_steps": 6, "observation_space": "{\\"low\\": [-Infinity]}"}');
  await rejects(dir, /metadata.json says total_steps 6, the file holds 5/);
  fs.writeFileSync(path.join(dir, 'data', 'metadata.json'), '{"total_steps": 5,');
  await rejects(dir, /metadata.json is not valid JSON/);
  await rejects(path.join(root, 'absent'), /no data\/main_data.hdf5/);
});

t.run();

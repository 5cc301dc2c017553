// D4RL reader, writer and transition view: a real h5py-written file, round trips, and one malformed file
// (built with h5wasm directly) per validation rule.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { CONTENT_DIGEST_KEY, DatasetFormatError, contentDigest, encodeD4RL, episodeRanges, qlearningDataset, readD4RL, validateD4RL, writeD4RL, type D4RLData } from '../datasets/d4rl.ts';
import { h5ForPaths } from '../datasets/hdf5.ts';
import { rng } from './helpers.ts';

const FIXTURE = path.join(path.dirname(fileURLToPath(import.meta.url)), 'fixtures', 'hopper-expert-v4.hdf5');
const t = suite('d4rl');

let dir = '';
t.before(() => { dir = fs.mkdtempSync(path.join(os.tmpdir(), 'webdiffuser-d4rl-')); });
t.after(() => { fs.rmSync(dir, { recursive: true, force: true }); });

type Column = { data: Float32Array | Float64Array | Int32Array | Uint8Array | string[]; shape: number[]; dtype?: string };
type Columns = { observations: Column; actions: Column; rewards: Column; terminals: Column; timeouts: Column; [key: string]: Column };

/** Writes the given keys with h5wasm as they are, without any of the writer's checks. */
async function rawFile(name: string, columns: Record<string, Column>): Promise<string> {
  const h5 = await h5ForPaths();
  const file = path.join(dir, name);
  const f = new h5.File(file, 'w');
  try {
    for (const [key, c] of Object.entries(columns)) {
      const parts = key.split('/');
      let g: InstanceType<typeof h5.Group> = f;
      for (const p of parts.slice(0, -1)) g = (g.get(p) as InstanceType<typeof h5.Group> | null) ?? g.create_group(p);
      g.create_dataset({ name: parts[parts.length - 1]!, data: c.data, shape: c.shape, ...(c.dtype ? { dtype: c.dtype } : {}) });
    }
  } finally {
    f.close();
  }
  return file;
}

/** A small well-formed dataset: 2 episodes of 4 steps (first ends by termination, second by timeout). */
function columns(n = 8, obsDim = 3, actDim = 2): Columns {
  const r = rng(7);
  const term = new Uint8Array(n);
  const tout = new Uint8Array(n);
  term[3] = 1;
  tout[n - 1] = 1;
  return {
    observations: { data: Float32Array.from({ length: n * obsDim }, r), shape: [n, obsDim] },
    actions: { data: Float32Array.from({ length: n * actDim }, r), shape: [n, actDim] },
    rewards: { data: Float32Array.from({ length: n }, r), shape: [n] },
    terminals: { data: term, shape: [n] },
    timeouts: { data: tout, shape: [n] },
  };
}

async function rejects(source: string | Uint8Array, pattern: RegExp, opts = {}): Promise<void> {
  try {
    await readD4RL(source, opts);
  } catch (err) {
    assert.instance(err, DatasetFormatError);
    assert.match((err as Error).message, pattern);
    return;
  }
  assert.unreachable(`expected an error matching ${pattern}`);
}

function returns(data: D4RLData): number[] {
  return episodeRanges(data).map(([s, e]) => {
    let sum = 0;
    for (let i = s; i < e; i++) sum += data.rewards[i]!;
    return sum;
  });
}

t('reads the h5py-written Hopper file: shapes, bool flags, returns, metadata string', async () => {
  const d = await readD4RL(FIXTURE, { expect: { obsDim: 11, actDim: 3 } });
  assert.equal([d.size, d.obsDim, d.actDim], [2000, 11, 3]);
  assert.is(d.observations.length, 22000);
  assert.is(d.nextObservations!.length, 22000);
  assert.equal([...d.timeouts].flatMap((v, i) => (v ? [i] : [])), [999, 1999]);
  assert.is(d.terminals.reduce((a, b) => a + b, 0), 0);
  const [r0, r1] = returns(d);
  assert.ok(Math.abs(r0! - 3717.2) < 0.05 && Math.abs(r1! - 3717.9) < 0.05, `returns ${r0} ${r1}`);
  assert.match(String(d.metadata!['source']), /homework_fall2023/);
  // Within an episode the stored successor is the next row.
  for (const i of [0, 500, 998, 1000, 1998]) {
    assert.equal(d.nextObservations!.subarray(i * 11, i * 11 + 11), d.observations.subarray((i + 1) * 11, (i + 2) * 11), `row ${i}`);
  }
});

t('qlearningDataset on Hopper: 2000 with next_observations, 1998 without, 1998 in D4RL mode', async () => {
  const d = await readD4RL(FIXTURE);
  const q = qlearningDataset(d);
  assert.is(q.size, 2000);
  assert.equal(q.nextObservations.subarray(999 * 11, 1000 * 11), d.nextObservations!.subarray(999 * 11, 1000 * 11));
  assert.is(q.dones.reduce((a, b) => a + b, 0), 0, 'timeouts are not terminations');

  const withoutNext: D4RLData = { ...d };
  delete withoutNext.nextObservations;
  const q2 = qlearningDataset(withoutNext);
  assert.is(q2.size, 1998);
  // Row 999 (the first episode's timeout) is gone: transition 999 is row 1000, whose successor is row 1001.
  assert.equal(q2.observations.subarray(999 * 11, 1000 * 11), d.observations.subarray(1000 * 11, 1001 * 11));
  assert.equal(q2.nextObservations.subarray(999 * 11, 1000 * 11), d.observations.subarray(1001 * 11, 1002 * 11));
  assert.is(q2.rewards[999], d.rewards[1000]);

  const q3 = qlearningDataset(d, { d4rlCompat: true });
  assert.is(q3.size, 1998);
  assert.equal(q3.nextObservations, q2.nextObservations);
});

t('qlearningDataset keeps terminal rows, drops timeout and final rows without next_observations', () => {
  // rows: 0 1 2T | 3 4 5(timeout) | 6 7T(last)
  const n = 8;
  const d: D4RLData = {
    size: n, obsDim: 1, actDim: 1,
    observations: Float32Array.from({ length: n }, (_, i) => i),
    actions: Float32Array.from({ length: n }, (_, i) => 10 + i),
    rewards: Float32Array.from({ length: n }, (_, i) => 100 + i),
    terminals: Uint8Array.from([0, 0, 1, 0, 0, 0, 0, 1]),
    timeouts: Uint8Array.from([0, 0, 0, 0, 0, 1, 0, 0]),
  };
  const q = qlearningDataset(d);
  assert.equal([...q.observations], [0, 1, 2, 3, 4, 6, 7]);
  assert.equal([...q.actions], [10, 11, 12, 13, 14, 16, 17]);
  assert.equal([...q.rewards], [100, 101, 102, 103, 104, 106, 107]);
  assert.equal([...q.dones], [0, 0, 1, 0, 0, 0, 1]);
  assert.equal([...q.nextObservations], [1, 2, 3, 4, 5, 7, 7]);
  const c = qlearningDataset(d, { d4rlCompat: true });
  assert.equal([...c.observations], [0, 1, 2, 3, 4, 6]);
  assert.equal([...c.dones], [0, 0, 1, 0, 0, 0]);
});

t('round trip through a file and through bytes keeps every array, infos and metadata', async () => {
  const src = await readD4RL(FIXTURE);
  const r = rng(3);
  const data: D4RLData = {
    ...src,
    terminals: Uint8Array.from(src.terminals, (_, i) => (i === 10 ? 1 : 0)),
    infos: {
      qpos: { data: Float32Array.from({ length: 2000 * 6 }, r), shape: [2000, 6] },
      'nested/goal': { data: Float64Array.from({ length: 2000 * 2 }, r), shape: [2000, 2] },
    },
    metadata: { source: 'test', iteration: 12, temperature: 0.25, deterministic: true },
  };
  const file = path.join(dir, 'roundtrip.hdf5');
  await writeD4RL(file, data);
  const bytes = await encodeD4RL(data, { compression: false });
  for (const back of [await readD4RL(file), await readD4RL(bytes, { name: 'bytes' })]) {
    assert.equal([back.size, back.obsDim, back.actDim], [2000, 11, 3]);
    for (const k of ['observations', 'actions', 'rewards', 'terminals', 'timeouts', 'nextObservations'] as const) {
      assert.equal(back[k], data[k], k);
    }
    assert.equal(back.infos!['qpos']!.data, data.infos!['qpos']!.data);
    assert.instance(back.infos!['nested/goal']!.data, Float64Array);
    assert.equal(back.infos!['nested/goal']!.data, data.infos!['nested/goal']!.data);
    assert.equal(back.infos!['nested/goal']!.shape, [2000, 2]);
    assert.equal(back.metadata, { ...data.metadata, [CONTENT_DIGEST_KEY]: await contentDigest(data) });
  }
});

t('float64 arrays are accepted and rounded; (N, 1) columns squeezed; h5py-style numeric flags', async () => {
  const c = columns();
  const obs64 = Float64Array.from(c.observations.data as Float32Array, (v) => v + 1e-12);
  const file = await rawFile('f64.h5', {
    ...c,
    observations: { data: obs64, shape: [8, 3] },
    rewards: { data: c.rewards.data, shape: [8, 1] },
    terminals: { data: Int32Array.from(c.terminals.data as Uint8Array), shape: [8, 1] },
  });
  const d = await readD4RL(file);
  assert.instance(d.observations, Float32Array);
  assert.equal(d.observations, Float32Array.from(obs64));
  assert.equal(d.rewards, c.rewards.data);
  assert.equal([...d.terminals], [0, 0, 0, 1, 0, 0, 0, 0]);
});

t('missing keys are listed', async () => {
  const c = columns();
  delete (c as Record<string, Column | undefined>)['terminals'];
  delete (c as Record<string, Column | undefined>)['actions'];
  await rejects(await rawFile('missing.h5', c), /missing required dataset\(s\) 'actions', 'terminals'.*found keys: .*observations/);
});

t('missing timeouts: an error with a hint, or derived from maxEpisodeSteps', async () => {
  const c = columns(10);
  delete (c as Record<string, Column | undefined>)['timeouts'];
  const file = await rawFile('notimeouts.h5', c);
  await rejects(file, /'timeouts'.*maxEpisodeSteps/);
  const d = await readD4RL(file, { maxEpisodeSteps: 3 });
  // terminal at row 3 resets the count: timeouts at rows 2, 6, 9
  assert.equal([...d.timeouts].flatMap((v, i) => (v ? [i] : [])), [2, 6, 9]);
});

t('ragged lengths name every key and its rows', async () => {
  const c = columns();
  c['rewards'] = { data: new Float32Array(7), shape: [7] };
  await rejects(await rawFile('ragged.h5', c), /different numbers of rows: observations 8, actions 8, rewards 7, terminals 8/);
  const d = columns();
  d['next_observations'] = { data: new Float32Array(9 * 3), shape: [9, 3] };
  await rejects(await rawFile('ragged-next.h5', d), /next_observations 9/);
});

t('wrong dtypes and shapes', async () => {
  const c = columns();
  await rejects(await rawFile('int-obs.h5', { ...c, observations: { data: new Int32Array(24), shape: [8, 3] } }),
    /'observations' must hold floating-point values, found int32/);
  await rejects(await rawFile('str-act.h5', { ...c, actions: { data: Array.from({ length: 8 }, () => 'x'), shape: [8] } }),
    /'actions' must have shape \(N, dim\), found \(8,\)/);
  await rejects(await rawFile('str-rew.h5', { ...c, rewards: { data: Array.from({ length: 8 }, () => 'x'), shape: [8] } }),
    /'rewards' must hold floating-point values, found string/);
  await rejects(await rawFile('flat-obs.h5', { ...c, observations: { data: new Float32Array(8), shape: [8] } }),
    /'observations' must have shape \(N, dim\), found \(8,\)/);
  await rejects(await rawFile('wide-rew.h5', { ...c, rewards: { data: new Float32Array(16), shape: [8, 2] } }),
    /'rewards' must have shape \(N,\) or \(N, 1\), found \(8, 2\)/);
  await rejects(await rawFile('next-width.h5', { ...c, next_observations: { data: new Float32Array(16), shape: [8, 2] } }),
    /'next_observations' has width 2, 'observations' has 3/);
  const flags = Uint8Array.from([0, 0, 0, 2, 0, 0, 0, 0]);
  await rejects(await rawFile('flag2.h5', { ...c, terminals: { data: flags, shape: [8] } }), /'terminals' must hold booleans \(0\/1\), found 2 at row 3/);
});

t('NaN and infinite values name the key and the first bad row', async () => {
  const c = columns();
  const rewards = Float32Array.from(c.rewards.data as Float32Array);
  rewards[5] = Number.NaN;
  rewards[6] = Number.NaN;
  await rejects(await rawFile('nan.h5', { ...c, rewards: { data: rewards, shape: [8] } }), /'rewards' holds NaN at row 5$/);
  const obs = Float32Array.from(c.observations.data as Float32Array);
  obs[4 * 3 + 2] = Number.POSITIVE_INFINITY;
  await rejects(await rawFile('inf.h5', { ...c, observations: { data: obs, shape: [8, 3] } }), /'observations' holds Infinity at row 4, column 2/);
  // float64 beyond float32's range becomes infinite when rounded, and is caught the same way.
  const big = Float64Array.from(c.actions.data as Float32Array);
  big[3] = 1e300;
  await rejects(await rawFile('big.h5', { ...c, actions: { data: big, shape: [8, 2] } }), /'actions' holds Infinity at row 1, column 1/);
});

t('dimensions that do not match the environment', async () => {
  const file = await rawFile('dims.h5', columns());
  await rejects(file, /observations have 3 dimensions, the environment expects 11/, { expect: { obsDim: 11 } });
  await rejects(file, /actions have 2 dimensions, the environment expects 3/, { expect: { obsDim: 3, actDim: 3 } });
  const ok = await readD4RL(file, { expect: { obsDim: 3, actDim: 2 } });
  assert.is(ok.size, 8);
});

t('an empty dataset', async () => {
  const c = columns();
  const empty: Record<string, Column> = {};
  for (const [k, v] of Object.entries(c)) empty[k] = { data: v.data.slice(0, 0) as Column['data'], shape: [0, ...v.shape.slice(1)] };
  await rejects(await rawFile('empty.h5', empty), /empty \(0 rows\)/);
});

t('a file that is not HDF5, a missing file, bytes that are not HDF5', async () => {
  const text = path.join(dir, 'not-hdf5.hdf5');
  fs.writeFileSync(text, 'observations,actions\n1,2\n');
  await rejects(text, /not-hdf5\.hdf5: not an HDF5 file/);
  await rejects(path.join(dir, 'absent.hdf5'), /absent\.hdf5: no such file/);
  await rejects(new TextEncoder().encode('hello'), /my-upload: not HDF5 data/, { name: 'my-upload' });
  await rejects(new Uint8Array(0), /<bytes>: empty input/);
});

t('the writer validates first and leaves no file behind', async () => {
  const d = await readD4RL(await rawFile('good.h5', columns()));
  const file = path.join(dir, 'bad-out.hdf5');
  const bad = { ...d, rewards: Float32Array.from(d.rewards) };
  bad.rewards[2] = Number.NaN;
  try {
    await writeD4RL(file, bad);
    assert.unreachable('writeD4RL accepted NaN');
  } catch (err) {
    assert.match((err as Error).message, /'rewards' holds NaN at row 2/);
  }
  assert.not.ok(fs.existsSync(file));
  assert.throws(() => validateD4RL({ ...d, actions: d.actions.subarray(1) }), /'actions' has 15 values, expected 8 rows x 2 = 16/);
  assert.throws(() => validateD4RL({ ...d, timeouts: Uint8Array.from(d.timeouts, () => 3) }), /'timeouts' must hold 0 or 1, found 3 at row 0/);
});

t.run();

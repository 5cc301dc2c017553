// GPU replay store: sampled rows are real rows with their fields kept together, indices match Philox randint,
// the index distribution is uniform over stored rows only, ring-buffer wraparound, chunked stores, errors.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { gpu, freshSeed, poisonNext, rng } from './helpers.ts';
import { Generator } from '../engine/random.ts';
import { runtime } from '../engine/runtime.ts';
import { recordStep } from '../engine/record.ts';
import { ReplayStore, replayTuning, type ReplayBatch } from '../datasets/replay.ts';
import { qlearningDataset, readD4RL, type Transitions } from '../datasets/d4rl.ts';

const FIXTURE = path.join(path.dirname(fileURLToPath(import.meta.url)), 'fixtures', 'hopper-expert-v4.hdf5');
const t = suite('replay');
t.before(gpu);

/** Transitions whose row id is readable from every field: obs[0] = id, action[0] = -id, reward = id / 2, ... */
function labelled(ids: number[], obsDim: number, actDim: number, seed: number): Transitions {
  const r = rng(seed);
  const n = ids.length;
  const out: Transitions = {
    size: n, obsDim, actDim,
    observations: new Float32Array(n * obsDim), actions: new Float32Array(n * actDim), rewards: new Float32Array(n),
    nextObservations: new Float32Array(n * obsDim), dones: new Float32Array(n),
  };
  ids.forEach((id, i) => {
    for (let c = 0; c < obsDim; c++) {
      out.observations[i * obsDim + c] = c === 0 ? id : r();
      out.nextObservations[i * obsDim + c] = c === 0 ? id + 0.25 : r();
    }
    for (let c = 0; c < actDim; c++) out.actions[i * actDim + c] = c === 0 ? -id : r() - 0.5;
    out.rewards[i] = id / 2;
    out.dones[i] = id % 3 === 0 ? 1 : 0;
  });
  return out;
}

interface HostBatch { obs: Float32Array; actions: Float32Array; rewards: Float32Array; nextObs: Float32Array; notDone: Float32Array }

async function readBatch(b: ReplayBatch): Promise<HostBatch> {
  const host = {
    obs: await b.obs.read(), actions: await b.actions.read(), rewards: await b.rewards.read(),
    nextObs: await b.nextObs.read(), notDone: await b.notDone.read(),
  };
  for (const x of Object.values(b)) x.dispose();
  return host as HostBatch;
}

function poisonOutputs(batch: number, obsDim: number, actDim: number): void {
  poisonNext([batch, obsDim]);
  poisonNext([batch, actDim]);
  poisonNext([batch, 1]);
}

/** Asserts sample k is exactly row `row` of the host transitions, in every field. */
function assertRow(h: HostBatch, k: number, data: Transitions, row: number, what: string): void {
  const { obsDim, actDim } = data;
  assert.equal(h.obs.subarray(k * obsDim, (k + 1) * obsDim), data.observations.subarray(row * obsDim, (row + 1) * obsDim), `${what}: obs of sample ${k}`);
  assert.equal(h.actions.subarray(k * actDim, (k + 1) * actDim), data.actions.subarray(row * actDim, (row + 1) * actDim), `${what}: action of sample ${k}`);
  assert.equal(h.nextObs.subarray(k * obsDim, (k + 1) * obsDim), data.nextObservations.subarray(row * obsDim, (row + 1) * obsDim), `${what}: next obs of sample ${k}`);
  assert.is(h.rewards[k], data.rewards[row], `${what}: reward of sample ${k}`);
  assert.is(h.notDone[k], 1 - data.dones[row]!, `${what}: not-done of sample ${k}`);
}

async function checkAgainstRandint(store: ReplayStore, data: Transitions, batch: number, seed: number, what: string): Promise<number[]> {
  const gen = new Generator(seed);
  gen.counter = 5;
  const twin = new Generator(seed);
  twin.counter = 5;
  poisonOutputs(batch, data.obsDim, data.actDim);
  const h = await readBatch(store.sample(batch, gen));
  const idxTensor = twin.randint([batch], store.size);
  const indices = [...(await idxTensor.read())];
  idxTensor.dispose();
  assert.is(gen.counter, twin.counter, `${what}: the generator advances as randint does`);
  indices.forEach((row, k) => assertRow(h, k, data, row, `${what} seed ${seed}`));
  return indices;
}

t('samples are the rows randint picks, every field of the same row (batch 1, 3, 257)', async () => {
  const seed = freshSeed();
  const data = labelled(Array.from({ length: 37 }, (_, i) => i), 5, 3, seed);
  const store = ReplayStore.fromTransitions(data);
  assert.is(store.size, 37);
  for (const batch of [1, 3, 257]) await checkAgainstRandint(store, data, batch, seed + batch, `batch ${batch}`);
  store.dispose();
});

t('a store split into chunks samples the same way (one dispatch per chunk)', async () => {
  const seed = freshSeed();
  const data = labelled(Array.from({ length: 50 }, (_, i) => i), 3, 1, seed);
  const width = 2 * 3 + 1 + 2;
  replayTuning.maxChunkBytes = 7 * width * 4; // 8 chunks of at most 7 rows
  try {
    const store = ReplayStore.fromTransitions(data, { capacity: 60 });
    const before = runtime().stats.dispatches;
    const indices = await checkAgainstRandint(store, data, 300, seed, 'chunked');
    assert.ok(new Set(indices.map((i) => Math.floor(i / 7))).size === 8, 'samples came from every chunk');
    const gen = new Generator(seed);
    const dispatches = runtime().stats.dispatches;
    for (const x of Object.values(store.sample(4, gen))) x.dispose();
    assert.is(runtime().stats.dispatches - dispatches, 8, 'one dispatch per filled chunk');
    assert.ok(dispatches > before);
    store.dispose();
  } finally {
    replayTuning.maxChunkBytes = null;
  }
});

t('the index distribution is uniform over the stored rows (chi-square)', async () => {
  const seed = freshSeed();
  const n = 17;
  const data = labelled(Array.from({ length: n }, (_, i) => i), 2, 1, seed);
  const store = ReplayStore.fromTransitions(data, { capacity: 40 }); // the unfilled rows must never be drawn
  const gen = new Generator(seed);
  const counts = new Array<number>(n).fill(0);
  const draws = 8 * 2048;
  for (let i = 0; i < 8; i++) {
    const h = await readBatch(store.sample(2048, gen));
    for (let k = 0; k < 2048; k++) {
      const id = h.obs[k * 2]!;
      assert.ok(Number.isInteger(id) && id >= 0 && id < n, `seed ${seed}: sample ${k} has id ${id}`);
      counts[id]!++;
    }
  }
  const expected = draws / n;
  const chi2 = counts.reduce((a, c) => a + (c - expected) ** 2 / expected, 0);
  // 16 degrees of freedom: P(chi2 > 64) is 1.1e-7 (at 52 it was 1.1e-5); a row drawn 10% too often gives about 160.
  assert.ok(chi2 < 64, `seed ${seed}: chi-square ${chi2.toFixed(1)} for counts ${counts.join(' ')}`);
  assert.ok(counts.every((c) => c > 0));
  store.dispose();
});

t('ring buffer: only filled rows are drawn, wraparound overwrites the oldest, oversized adds keep the newest', async () => {
  const seed = freshSeed();
  const obsDim = 4;
  const actDim = 2;
  const all = labelled(Array.from({ length: 40 }, (_, i) => i), obsDim, actDim, seed);
  const slice = (lo: number, hi: number): Transitions => ({
    size: hi - lo, obsDim, actDim,
    observations: all.observations.slice(lo * obsDim, hi * obsDim), actions: all.actions.slice(lo * actDim, hi * actDim),
    rewards: all.rewards.slice(lo, hi), nextObservations: all.nextObservations.slice(lo * obsDim, hi * obsDim), dones: all.dones.slice(lo, hi),
  });
  const store = ReplayStore.empty(10, obsDim, actDim);
  assert.is(store.size, 0);
  assert.throws(() => store.sample(4, new Generator(1)), /the store is empty/);
  const gen = new Generator(seed);

  async function seenIds(): Promise<Set<number>> {
    const seen = new Set<number>();
    for (let i = 0; i < 2; i++) {
      const h = await readBatch(store.sample(400, gen));
      for (let k = 0; k < 400; k++) {
        const id = h.obs[k * obsDim]!;
        assertRow(h, k, all, id, `ring seed ${seed}`);
        seen.add(id);
      }
    }
    return seen;
  }

  store.add(slice(0, 4));
  assert.is(store.size, 4);
  assert.equal([...(await seenIds())].sort((a, b) => a - b), [0, 1, 2, 3]);
  store.add(slice(4, 13)); // slots 4..9 take ids 4..9, slots 0..2 take ids 10..12; slot 3 keeps id 3
  assert.is(store.size, 10);
  assert.equal([...(await seenIds())].sort((a, b) => a - b), [3, 4, 5, 6, 7, 8, 9, 10, 11, 12]);
  store.add(slice(13, 38)); // 25 rows into capacity 10: ids 28..37 remain
  assert.is(store.size, 10);
  assert.equal([...(await seenIds())].sort((a, b) => a - b), [28, 29, 30, 31, 32, 33, 34, 35, 36, 37]);
  store.dispose();
});

t('a recorded step keeps sampling from every stored row as an online store grows (one chunk and several)', async () => {
  const seed = freshSeed();
  const obsDim = 3;
  const actDim = 1;
  const all = labelled(Array.from({ length: 24 }, (_, i) => i), obsDim, actDim, seed);
  const rows = (lo: number, hi: number): Transitions => ({
    size: hi - lo, obsDim, actDim,
    observations: all.observations.slice(lo * obsDim, hi * obsDim), actions: all.actions.slice(lo * actDim, hi * actDim),
    rewards: all.rewards.slice(lo, hi), nextObservations: all.nextObservations.slice(lo * obsDim, hi * obsDim), dones: all.dones.slice(lo, hi),
  });
  const rowBytes = (2 * obsDim + actDim + 2) * 4;
  for (const chunkRows of [null, 5]) {
    replayTuning.maxChunkBytes = chunkRows === null ? null : chunkRows * rowBytes;
    try {
      const store = ReplayStore.empty(24, obsDim, actDim);
      store.add(rows(0, 2));
      const gen = new Generator(seed);
      const step = recordStep(() => ({ obs: store.sample(200, gen).obs }));
      const seen = async (): Promise<Set<number>> => {
        const [obs] = await step.replayAndRead();
        const ids = new Set<number>();
        for (let k = 0; k < 200; k++) ids.add(obs![k * obsDim]!);
        return ids;
      };
      assert.equal([...(await seen())].sort((a, b) => a - b), [0, 1], `chunks of ${chunkRows}: two rows stored`);
      store.add(rows(2, 24));
      const grown = new Set<number>();
      for (let i = 0; i < 3; i++) for (const id of await seen()) grown.add(id);
      assert.equal([...grown].sort((a, b) => a - b), Array.from({ length: 24 }, (_, i) => i), `chunks of ${chunkRows}: all 24 rows reachable after growth`);
      step.dispose();
      store.dispose();
    } finally {
      replayTuning.maxChunkBytes = null;
    }
  }
});

t('the Hopper file: each sampled row is found in the host data with its own action, reward, next obs and done', async () => {
  const q = qlearningDataset(await readD4RL(FIXTURE));
  const store = ReplayStore.fromTransitions(q);
  const byObs = new Map<string, number>();
  for (let i = 0; i < q.size; i++) byObs.set(q.observations.subarray(i * 11, (i + 1) * 11).join(','), i);
  assert.is(byObs.size, q.size, 'Hopper observations are distinct');
  const h = await readBatch(store.sample(256, new Generator(freshSeed())));
  for (let k = 0; k < 256; k++) {
    const row = byObs.get(h.obs.subarray(k * 11, (k + 1) * 11).join(','));
    assert.ok(row !== undefined, `sample ${k} is not a row of the dataset`);
    assertRow(h, k, q, row!, 'hopper');
  }
  store.dispose();
});

t('bad input and use after dispose', () => {
  const data = labelled([0, 1, 2], 2, 1, 1);
  const store = ReplayStore.empty(5, 2, 1);
  assert.throws(() => store.add({ ...data, actions: new Float32Array(2) }), /actions has 2 values, expected 3 for 3 transitions/);
  assert.throws(() => store.add({ ...data, dones: Float32Array.from([0, 2, 0]) }), /dones must be 0 or 1, got 2 at transition 1/);
  const obs = Float32Array.from(data.observations);
  obs[3] = Number.NaN;
  assert.throws(() => store.add({ ...data, observations: obs }), /transition 1 holds NaN \(observation 1\)/);
  assert.is(store.size, 0, 'a rejected batch adds nothing');
  assert.throws(() => store.sample(0, new Generator(1)), /batch must be a positive integer/);
  assert.throws(() => ReplayStore.fromTransitions(data, { capacity: 2 }), /capacity 2 is below the 3 transitions/);
  assert.throws(() => ReplayStore.empty(0, 2, 1), /capacity must be a positive integer/);
  store.dispose();
  assert.throws(() => store.sample(1, new Generator(1)), /disposed/);
});

t.run();

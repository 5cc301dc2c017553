// Presets: observation statistics against a float64 reference, the reward transforms on synthetic and real
// data, and the normalised score with its reference table.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { readD4RL, episodeRanges, type D4RLData } from '../datasets/d4rl.ts';
import {
  OBS_STD_EPS, REFERENCE_SCORES, applyRewardTransform, normalizeObservations, normalizedScore, observationStats,
  referenceFamily, registerReferenceScore, returnRange, rewardPreset, rewardScaleLocomotion,
} from '../datasets/presets.ts';
import { freshSeed, randn, rng } from './helpers.ts';

const FIXTURE = path.join(path.dirname(fileURLToPath(import.meta.url)), 'fixtures', 'hopper-expert-v4.hdf5');
const t = suite('presets');

function close(a: number, b: number, rel = 1e-6, msg = ''): void {
  assert.ok(Math.abs(a - b) <= rel * Math.max(1, Math.abs(b)), `${msg} ${a} vs ${b}`);
}

/** Rows of rewards with flags: a D4RLData with 1-D observations and actions (unused here). */
function rewardsOnly(rewards: number[], terminals: number[] = [], timeouts: number[] = []): D4RLData {
  const n = rewards.length;
  const flags = (rows: number[]): Uint8Array => { const f = new Uint8Array(n); for (const r of rows) f[r] = 1; return f; };
  return {
    size: n, obsDim: 1, actDim: 1,
    observations: new Float32Array(n), actions: new Float32Array(n), rewards: Float32Array.from(rewards),
    terminals: flags(terminals), timeouts: flags(timeouts),
  };
}

t('observationStats and normalizeObservations against float64', () => {
  const seed = freshSeed();
  const r = rng(seed);
  for (const [rows, dim] of [[1, 1], [3, 17], [257, 11], [1023, 3]] as const) {
    const obs = randn(rows * dim, r, 3);
    for (let i = 0; i < rows; i++) obs[i * dim] = 5; // a constant feature
    const stats = observationStats(obs, dim);
    for (let f = 0; f < dim; f++) {
      let mean = 0;
      for (let i = 0; i < rows; i++) mean += obs[i * dim + f]!;
      mean /= rows;
      let v = 0;
      for (let i = 0; i < rows; i++) v += (obs[i * dim + f]! - mean) ** 2;
      const std = Math.sqrt(v / rows);
      close(stats.mean[f]!, mean, 1e-6, `seed ${seed} mean`);
      close(stats.std[f]!, std, 1e-6, `seed ${seed} std`);
    }
    assert.is(stats.std[0], 0);
    const norm = normalizeObservations(obs, stats);
    for (let i = 0; i < obs.length; i++) {
      const f = i % dim;
      close(norm[i]!, (obs[i]! - stats.mean[f]!) / (stats.std[f]! + 1e-3), 1e-6, `seed ${seed} normalized`);
    }
    assert.is(norm[0], 0, 'a constant feature normalises to 0, not NaN');
    // One evaluation observation goes through the same function and gets the same values as its row.
    const last = rows - 1;
    assert.equal(normalizeObservations(obs.slice(last * dim, rows * dim), stats), norm.slice(last * dim, rows * dim));
  }
  assert.is(OBS_STD_EPS, 1e-3);
  assert.throws(() => observationStats(new Float32Array(7), 3), /\(rows, 3\)/);
  assert.throws(() => normalizeObservations(new Float32Array(4), observationStats(new Float32Array(3), 3)), /whole number of 3-feature rows/);
});

t('return range splits on terminals, timeouts and the step count; an unfinished tail is left out', () => {
  // episodes: [1,2] terminal | [3,4,5] timeout | [1,1,1,1] by count 4 | [10, 20] unfinished
  const d = rewardsOnly([1, 2, 3, 4, 5, 1, 1, 1, 1, 10, 20], [1], [4]);
  assert.equal(returnRange(d, { maxEpisodeSteps: 4 }), { min: 3, max: 12, episodes: 3 });
  // Without timeouts only the count splits after the terminal: [3,4,5,1], [1,1,1,10], then [20] unfinished.
  assert.equal(returnRange(d, { maxEpisodeSteps: 4, useTimeouts: false }), { min: 3, max: 13, episodes: 3 });
  assert.throws(() => returnRange(rewardsOnly([1, 2, 3])), /no complete episode in 3 rows/);
  const tf = rewardScaleLocomotion(d, { maxEpisodeSteps: 4 });
  assert.equal(tf, { preset: 'iql_locomotion', shift: 0, scale: 1000 / 9 });
  assert.throws(() => rewardScaleLocomotion(rewardsOnly([1, 1], [0, 1])), /every episode returns 1/);
});

t('iql_locomotion on the Hopper file uses the two real episode returns', async () => {
  const d = await readD4RL(FIXTURE);
  const returns = episodeRanges(d).map(([s, e]) => { let sum = 0; for (let i = s; i < e; i++) sum += d.rewards[i]!; return sum; });
  const tf = rewardPreset('iql_locomotion', d);
  close(tf.scale, 1000 / (Math.max(...returns) - Math.min(...returns)), 1e-9);
  assert.ok(tf.scale > 1300 && tf.scale < 1500, `scale ${tf.scale}`); // returns 3717.2 and 3717.9
  const scaled = applyRewardTransform(d.rewards, tf);
  close(scaled[17]!, d.rewards[17]! * tf.scale, 1e-6);
});

t('affine presets', () => {
  const d = rewardsOnly([0, 1, 0.5, 2, -1], [4]);
  const apply = (p: Parameters<typeof rewardPreset>[0]): number[] => [...applyRewardTransform(d.rewards, rewardPreset(p, d))];
  assert.equal(apply('none'), [0, 1, 0.5, 2, -1]);
  assert.equal(apply('iql_antmaze'), [-1, 0, -0.5, 1, -2]);
  assert.equal(apply('cql_antmaze'), [-2, 2, 0, 6, -6]);
  assert.equal(apply('antmaze_quarter'), [-0.5, 1.5, 0.5, 3.5, -2.5]);
  const mm = apply('minmax');
  assert.is(Math.min(...mm), -1);
  assert.is(Math.max(...mm), 1);
  close(mm[0]!, -1 / 3, 1e-6);
  const st = apply('standardize');
  const mean = st.reduce((a, b) => a + b, 0) / st.length;
  const std = Math.sqrt(st.reduce((a, b) => a + (b - mean) ** 2, 0) / st.length);
  close(mean, 0, 1e-6);
  close(std, 1, 1e-6);
  assert.throws(() => rewardPreset('standardize', rewardsOnly([2, 2], [1])), /standard deviation is 0/);
  assert.throws(() => rewardPreset('bogus' as never, d), /unknown preset 'bogus'/);
});

t('normalizedScore: reference table, name matching, explicit references, registration', () => {
  close(normalizedScore('hopper-medium-v2', 3234.3), 100);
  close(normalizedScore('hopper-medium-replay-v2', -20.272305), 0);
  close(normalizedScore('Hopper-v4', (3234.3 - 20.272305) / 2), 50);
  close(normalizedScore('mujoco/hopper/expert-v0', 3234.3), 100);
  close(normalizedScore('halfcheetah-medium-expert-v2', 12135.0), 100);
  close(normalizedScore('HalfCheetah-v4', -280.178953), 0);
  close(normalizedScore('walker2d-medium-v2', 4592.3), 100);
  close(normalizedScore('antmaze-umaze-diverse-v2', 0.5), 50);
  close(normalizedScore('ant-medium-v2', 3879.7), 100);
  close(normalizedScore('kitchen-partial-v0', 3), 75);
  close(normalizedScore('maze2d-large-v1', 273.99), 100);
  close(normalizedScore('maze2d-umaze-v1', 23.85), 0);
  close(normalizedScore('pen-human-v1', 3076.8331017826877), 100);
  close(normalizedScore('door-cloned-v1', -56.512833), 0);
  close(normalizedScore('hammer-expert-v1', 12794.134825156867), 100);
  close(normalizedScore('relocate-human-v1', -6.425911), 0);
  assert.is(referenceFamily('antmaze-large-play-v2'), 'antmaze');
  assert.is(referenceFamily('maze2d-medium-v1'), 'maze2d-medium');
  close(normalizedScore({ min: -10, max: 30 }, 10), 50);
  assert.throws(() => normalizedScore('CartPole-v1', 500), /no reference returns for 'CartPole-v1'; known families: halfcheetah, hopper/);
  assert.throws(() => normalizedScore('maze2d-open-v0', 1), /no reference returns/);
  registerReferenceScore('test-swing', { min: -1000, max: -100, source: 'test' });
  try {
    close(normalizedScore('Test-Swing-v1', -550), 50);
  } finally {
    delete REFERENCE_SCORES['test-swing'];
  }
  assert.throws(() => registerReferenceScore('Bad Name', { min: 0, max: 1, source: '' }), /lower-case/);
  assert.throws(() => registerReferenceScore('flat', { min: 1, max: 1, source: '' }), /distinct/);
});

t.run();

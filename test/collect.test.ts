// Dataset collection: flags, next observations and infos are checked by replaying the recorded actions in a
// fresh environment; files round-trip through the D4RL reader; the command line writes a readable file.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freshSeed } from './helpers.ts';
import { collect, episodeReturns, referenceReturns, CREATED_BY } from '../datasets/collect.ts';
import { encodeD4RL, readD4RL, qlearningDataset, type D4RLData } from '../datasets/d4rl.ts';
import { PendulumEnv } from '../envs/pendulum.ts';
import { MountainCarContinuousEnv } from '../envs/mountain_car.ts';
import { mountainCarBangBang, pendulumSwingUp, zeroPolicy } from '../envs/controllers.ts';
import { evaluate } from '../envs/evaluate.ts';
import type { Env } from '../envs/core.ts';
import { REFERENCE_SCORES, normalizedScore } from '../datasets/presets.ts';

const t = suite('collect');

/**
 * Replays every episode's recorded actions from reset(seed + i) and checks that the environment reproduces
 * the recorded observations, rewards, next observations, flags and physics state row by row.
 */
function replay(data: D4RLData, makeEnv: () => Env, seed: number): { returns: number[]; lengths: number[] } {
  const { obsDim, actDim } = data;
  const env = makeEnv();
  const returns: number[] = [];
  const lengths: number[] = [];
  let row = 0;
  for (let ep = 0; row < data.size; ep++) {
    let obs = env.reset(seed + ep);
    let ret = 0;
    let len = 0;
    for (;;) {
      assert.equal(Array.from(data.observations.subarray(row * obsDim, (row + 1) * obsDim)), Array.from(obs, Math.fround), `row ${row} obs`);
      const st = env.physicsState!();
      assert.equal(Array.from(data.infos!.qpos!.data.subarray(row * st.qpos.length, (row + 1) * st.qpos.length)), Array.from(st.qpos, Math.fround), `row ${row} qpos`);
      assert.equal(Array.from(data.infos!.qvel!.data.subarray(row * st.qvel.length, (row + 1) * st.qvel.length)), Array.from(st.qvel, Math.fround), `row ${row} qvel`);
      const action = data.actions.subarray(row * actDim, (row + 1) * actDim);
      const r = env.step(action);
      assert.is(data.rewards[row], Math.fround(r.reward), `row ${row} reward`);
      assert.equal(Array.from(data.nextObservations!.subarray(row * obsDim, (row + 1) * obsDim)), Array.from(r.obs, Math.fround), `row ${row} next obs`);
      ret += r.reward;
      len++;
      obs = r.obs;
      const ended = r.terminated || r.truncated;
      const last = row === data.size - 1;
      if (ended || !last) {
        assert.is(data.terminals[row], r.terminated ? 1 : 0, `row ${row} terminal`);
        assert.is(data.timeouts[row], r.truncated && !r.terminated ? 1 : 0, `row ${row} timeout`);
      } else {
        // a cut episode ends the data with neither flag
        assert.is(data.terminals[row], 0);
        assert.is(data.timeouts[row], 0);
      }
      row++;
      if (ended || row === data.size) break;
      // inside an episode the next observation is the following row's observation
      assert.equal(Array.from(data.nextObservations!.subarray((row - 1) * obsDim, row * obsDim)), Array.from(data.observations.subarray(row * obsDim, (row + 1) * obsDim)));
    }
    returns.push(ret);
    lengths.push(len);
  }
  env.close();
  return { returns, lengths };
}

t('Pendulum with action noise: rows replay exactly, timeouts every 200 steps, noise stays in the box', async () => {
  const seed = freshSeed() % 100000;
  const data = await collect(pendulumSwingUp(), () => new PendulumEnv(), { episodes: 5, noiseStd: 1.5, seed, numEnvs: 3, policyName: 'swingup' });
  assert.is(data.size, 1000);
  assert.is(data.obsDim, 3);
  assert.is(data.actDim, 1);
  const { lengths } = replay(data, () => new PendulumEnv(), seed);
  assert.equal(lengths, [200, 200, 200, 200, 200]);
  for (let i = 0; i < data.size; i++) {
    assert.is(data.timeouts[i], i % 200 === 199 ? 1 : 0);
    assert.is(data.terminals[i], 0);
  }
  assert.ok(data.actions.every((a) => a >= -2 && a <= 2));
  assert.ok(data.actions.some((a) => a === 2) && data.actions.some((a) => a === -2), 'noisy actions reach the bounds and are clipped there');
  // the noise really perturbs the controller's actions
  const clean = pendulumSwingUp()(data.observations, data.size) as Float32Array;
  let differ = 0;
  for (let i = 0; i < data.size; i++) if (clean[i] !== data.actions[i]) differ++;
  // (actions the controller saturates stay at the bound when the noise pushes outwards)
  assert.ok(differ > 700, `${differ} of 1000 actions carry noise`);
  assert.equal(data.infos!.qpos!.shape, [1000, 1]);
  const md = data.metadata!;
  assert.is(md.env_id, 'Pendulum-v1');
  assert.is(md.policy, 'swingup');
  assert.is(md.noise_std, 1.5);
  assert.is(md.seed, seed);
  assert.is(md.num_steps, 1000);
  assert.is(md.num_episodes, 5);
  assert.is(md.created_by, CREATED_BY);
  const rets = episodeReturns(data);
  assert.ok(Math.abs((md.return_mean as number) - rets.reduce((a, b) => a + b) / 5) < 1e-3);
});

t('without noise, episode returns equal an evaluation rollout with the same seeds, whatever the number of copies', async () => {
  const seed = freshSeed() % 100000;
  const ref = await evaluate(pendulumSwingUp(), () => new PendulumEnv(), { episodes: 6, seed, numEnvs: 1 });
  for (const numEnvs of [1, 4, 16]) {
    const data = await collect(pendulumSwingUp(), () => new PendulumEnv(), { episodes: 6, seed, numEnvs });
    const rets = episodeReturns(data);
    assert.is(rets.length, 6);
    rets.forEach((r, i) => assert.ok(Math.abs(r - ref.returns[i]!) < 1e-4 * Math.abs(ref.returns[i]!), `numEnvs ${numEnvs} episode ${i}: ${r} vs ${ref.returns[i]}`));
    // actions are exactly the controller's
    const clean = pendulumSwingUp()(data.observations, data.size) as Float32Array;
    assert.equal(Array.from(data.actions), Array.from(clean));
  }
});

t('MountainCar: terminals at the goal, timeouts at the limit, never both', async () => {
  const seed = freshSeed() % 100000;
  // with this noise bang-bang reaches the goal in 104-113 steps (median 107 over 240 episodes), so a limit at the
  // median makes both endings all but certain among 24 episodes (all on one side: about 2 * 0.5^24)
  const make = () => new MountainCarContinuousEnv({ maxEpisodeSteps: 107 });
  const data = await collect(mountainCarBangBang(), make, { episodes: 24, noiseStd: 0.3, seed, numEnvs: 5 });
  const { lengths } = replay(data, make, seed);
  let terminals = 0, timeouts = 0;
  for (let i = 0; i < data.size; i++) {
    terminals += data.terminals[i]!;
    timeouts += data.timeouts[i]!;
    assert.ok(!(data.terminals[i] && data.timeouts[i]));
    if (data.terminals[i]) assert.ok(data.nextObservations![i * 2]! >= 0.45, 'the true final observation is at the goal');
  }
  assert.is(terminals + timeouts, 24);
  assert.ok(terminals > 0 && timeouts > 0, `${terminals} terminals, ${timeouts} timeouts`);
  assert.ok(lengths.every((n) => n <= 107));
  // timeouts are truncations: the default transition view keeps them with done = 0
  const q = qlearningDataset(data);
  assert.is(q.size, data.size);
  for (let i = 0; i < q.size; i++) assert.is(q.dones[i], data.terminals[i]);
});

t('steps mode: exactly N rows, the same prefix as whole episodes, the cut episode carries no flag', async () => {
  const seed = freshSeed() % 100000;
  const whole = await collect(pendulumSwingUp(), () => new PendulumEnv(), { episodes: 3, noiseStd: 0.7, seed, numEnvs: 2 });
  for (const numEnvs of [1, 3, 8]) {
    const part = await collect(pendulumSwingUp(), () => new PendulumEnv(), { steps: 450, noiseStd: 0.7, seed, numEnvs });
    assert.is(part.size, 450);
    assert.equal(Array.from(part.observations), Array.from(whole.observations.subarray(0, 450 * 3)), `numEnvs ${numEnvs}`);
    assert.equal(Array.from(part.actions), Array.from(whole.actions.subarray(0, 450)));
    assert.is(part.timeouts[199], 1);
    assert.is(part.timeouts[399], 1);
    assert.is(part.timeouts[449], 0);
    assert.is(part.metadata!.num_episodes, 2);
    replay(part, () => new PendulumEnv(), seed);
  }
  const exact = await collect(pendulumSwingUp(), () => new PendulumEnv(), { steps: 400, seed, numEnvs: 4 });
  assert.is(exact.timeouts[399], 1, 'a cut on an episode boundary keeps the timeout');
});

t('a collected dataset round-trips through the D4RL writer and reader', async () => {
  const seed = freshSeed() % 100000;
  const data = await collect(mountainCarBangBang(), () => new MountainCarContinuousEnv(), {
    episodes: 3, noiseStd: 0.2, seed, policyName: 'bangbang', metadata: { note: 'test', ref_min_score: -33.5 },
  });
  const back = await readD4RL(await encodeD4RL(data), { expect: { obsDim: 2, actDim: 1 } });
  assert.is(back.size, data.size);
  for (const key of ['observations', 'actions', 'rewards', 'terminals', 'timeouts', 'nextObservations'] as const) {
    assert.equal(Array.from(back[key]!), Array.from(data[key]!), key);
  }
  assert.equal(Array.from(back.infos!.qpos!.data), Array.from(data.infos!.qpos!.data));
  assert.equal(back.infos!.qvel!.shape, [data.size, 1]);
  for (const [k, v] of Object.entries(data.metadata!)) assert.is(back.metadata![k], v, `metadata/${k}`);
  assert.is(back.metadata!.note, 'test');
  assert.equal(episodeReturns(back).length, 3);
});

t('reference returns: random below the expert, reproducible from the seed', async () => {
  const a = await referenceReturns(pendulumSwingUp(), () => new PendulumEnv(), { episodes: 8, seed: 77 });
  const b = await referenceReturns(pendulumSwingUp(), () => new PendulumEnv(), { episodes: 8, seed: 77, numEnvs: 3 });
  assert.ok(a.min < -800 && a.max > -400, `min ${a.min}, max ${a.max}`);
  assert.is(a.max, b.max);
  assert.is(a.min, b.min);
});

t('bad options and bad policies are reported', async () => {
  const make = () => new PendulumEnv();
  await rejects(collect(zeroPolicy(make()), make, { seed: 0 }), /exactly one of steps or episodes/);
  await rejects(collect(zeroPolicy(make()), make, { seed: 0, steps: 5, episodes: 2 }), /exactly one of steps or episodes/);
  await rejects(collect(zeroPolicy(make()), make, { seed: 0, episodes: 0 }), /episodes must be a positive integer/);
  await rejects(collect(zeroPolicy(make()), make, { seed: 0, episodes: 1, noiseStd: -1 }), /noiseStd/);
  await rejects(collect(() => new Float32Array(3), make, { seed: 0, episodes: 1 }), /returned 3 values for 1 observations/);
  await rejects(collect((_o, n) => new Float32Array(n).fill(Number.NaN), make, { seed: 0, episodes: 1 }), /non-finite/);
});

async function rejects(p: Promise<unknown>, re: RegExp): Promise<void> {
  try {
    await p;
  } catch (e) {
    assert.match((e as Error).message, re);
    return;
  }
  assert.unreachable(`expected an error matching ${re}`);
}

t('command line: writes a readable file with reference scores; bad input is a clear error', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'collect-'));
  try {
    const out = join(dir, 'mc.hdf5');
    const cli = join(import.meta.dirname, '..', 'datasets', 'collect.ts');
    const stdout = execFileSync(process.execPath, [cli, '--env', 'MountainCarContinuous-v0', '--policy', 'bangbang', '--episodes', '4',
      '--noise', '0.1', '--seed', '3', '--reference', '4', '--out', out], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
    assert.match(stdout, /wrote /);
    assert.match(stdout, /normalized score/);
    const d = await readD4RL(out);
    {
      assert.is(d.metadata!.env_id, 'MountainCarContinuous-v0');
      assert.is(d.metadata!.num_episodes, 4);
      assert.ok((d.metadata!.ref_max_score as number) > 80);
      assert.ok((d.metadata!.ref_min_score as number) < 0);
      for (const [args, re] of [
        [['--env', 'Nope-v0', '--policy', 'random', '--episodes', '1'], /unknown environment 'Nope-v0'/],
        [['--env', 'pendulum', '--policy', 'bangbang', '--episodes', '1'], /is for MountainCarContinuous-v0/],
        [['--env', 'pendulum', '--policy', 'random', '--episodes', '0'], /--episodes must be an integer >= 1/],
      ] as const) {
        let stderr = '';
        try {
          execFileSync(process.execPath, [cli, ...args, '--out', join(dir, 'x.hdf5')], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
        } catch (e) {
          stderr = String((e as { stderr: string }).stderr);
        }
        assert.match(stderr, re);
      }
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

t('the shipped pendulum-medium-v1 file: its references match the preset table, it scores medium, it replays', async () => {
  const path = join(import.meta.dirname, '..', 'datasets', 'data', 'pendulum-medium-v1.hdf5');
  const data = await readD4RL(path, { expect: { obsDim: 3, actDim: 1 } });
  assert.is(data.size, 50000);
  const md = data.metadata!;
  assert.is(md.env_id, 'Pendulum-v1');
  assert.is(md.ref_min_score, REFERENCE_SCORES.pendulum!.min);
  assert.is(md.ref_max_score, REFERENCE_SCORES.pendulum!.max);
  const rets = episodeReturns(data);
  assert.is(rets.length, 250);
  const score = rets.reduce((a, r) => a + normalizedScore('pendulum-medium-v1', r), 0) / rets.length;
  assert.ok(score > 40 && score < 70, `normalised score ${score}`);
  assert.ok(Math.abs(score - (md.normalized_score_mean as number)) < 1e-3);
  // the first episodes replay exactly in today's environment: the file and envs/pendulum.ts agree
  const head: D4RLData = {
    ...data, size: 2000, observations: data.observations.subarray(0, 6000), actions: data.actions.subarray(0, 2000),
    rewards: data.rewards.subarray(0, 2000), terminals: data.terminals.subarray(0, 2000), timeouts: data.timeouts.subarray(0, 2000),
    nextObservations: data.nextObservations!.subarray(0, 6000),
    infos: { qpos: { data: data.infos!.qpos!.data.subarray(0, 2000), shape: [2000, 1] }, qvel: { data: data.infos!.qvel!.data.subarray(0, 2000), shape: [2000, 1] } },
  };
  replay(head, () => new PendulumEnv(), md.seed as number);
});

t.run();

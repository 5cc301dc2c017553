// Fidelity of the MuJoCo locomotion environments to Gymnasium's v4 rules: spaces and observation layouts, reward
// and health formulas on constructed states, seeding, memory, and three checks against data from real Gymnasium:
// a Hopper-v4 expert's score, one-step replay of its recorded transitions, and random-policy returns.
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { HostRng } from '../engine/host-rng.ts';
import { readD4RL } from '../datasets/d4rl.ts';
import type { Env } from '../envs/core.ts';
import { LOCOMOTION, LocomotionEnv } from '../envs/locomotion.ts';
import { liveModelCount } from '../envs/mujoco.ts';
import type { MujocoEnv } from '../envs/mujoco.ts';
import { envIds, makeEnv, makeVecEnv } from '../envs/registry.ts';

const FIXTURES = path.join(path.dirname(fileURLToPath(import.meta.url)), 'fixtures');

const t = suite('envs-mujoco');

interface ExpertWeights {
  obs_mean: number[];
  obs_std: number[];
  hidden: { W: number[][]; b: number[] }[];
  out: { W: number[][]; b: number[] };
}

const expert = JSON.parse(readFileSync(path.join(FIXTURES, 'hopper-expert-v4-policy.json'), 'utf8')) as ExpertWeights;

/** The expert's mean action, clipped to the action box as the recorded rollouts were. */
function expertAction(obs: Float64Array): number[] {
  let h = Array.from(obs, (x, i) => (x - expert.obs_mean[i]!) / (expert.obs_std[i]! + 1e-6));
  const affine = (x: number[], layer: { W: number[][]; b: number[] }) =>
    layer.b.map((b, j) => x.reduce((s, xi, i) => s + xi * layer.W[i]![j]!, b));
  for (const layer of expert.hidden) h = affine(h, layer).map(Math.tanh);
  return affine(h, expert.out).map((a) => Math.min(1, Math.max(-1, a)));
}

function sumSquares(a: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i]! * a[i]!;
  return s;
}

function meanAndStdError(xs: number[]): { mean: number; sd: number; se: number } {
  const mean = xs.reduce((s, x) => s + x, 0) / xs.length;
  const sd = Math.sqrt(xs.reduce((s, x) => s + (x - mean) ** 2, 0) / (xs.length - 1));
  return { mean, sd, se: sd / Math.sqrt(xs.length) };
}

const SPECS = [
  { id: 'Hopper-v4', alias: 'hopper', obsDim: 11, actDim: 3, dt: 0.008, qpos0: [0, 1.25, 0, 0, 0, 0] },
  { id: 'Walker2d-v4', alias: 'walker2d', obsDim: 17, actDim: 6, dt: 0.008, qpos0: [0, 1.25, 0, 0, 0, 0, 0, 0, 0] },
  { id: 'HalfCheetah-v4', alias: 'halfcheetah', obsDim: 17, actDim: 6, dt: 0.05, qpos0: [0, 0, 0, 0, 0, 0, 0, 0, 0] },
];

t('spaces, dt, reset noise and observation layout (qpos[1:], velocities clipped for hopper and walker only)', async () => {
  for (const spec of SPECS) {
    const env = (await makeEnv(spec.alias, { seed: 3 })) as MujocoEnv;
    assert.is(env.id, spec.id);
    assert.is(env.obsDim, spec.obsDim);
    assert.is(env.actDim, spec.actDim);
    assert.is(env.maxEpisodeSteps, 1000);
    assert.equal(Array.from(env.actionLow), new Array(spec.actDim).fill(-1));
    assert.equal(Array.from(env.actionHigh), new Array(spec.actDim).fill(1));
    assert.ok(Math.abs(env.dt - spec.dt) < 1e-12, `${spec.id} dt ${env.dt}`);

    const obs = env.reset();
    assert.is(obs.length, spec.obsDim);
    const { qpos, qvel } = env.physicsState();
    const noise = spec.id === 'HalfCheetah-v4' ? 0.1 : 5e-3;
    qpos.forEach((q, i) => assert.ok(Math.abs(q - spec.qpos0[i]!) <= noise, `${spec.id} reset qpos[${i}] = ${q}`));
    assert.ok(qpos.some((q, i) => q !== spec.qpos0[i]), `${spec.id}: reset adds noise`);
    if (spec.id !== 'HalfCheetah-v4') qvel.forEach((v, i) => assert.ok(Math.abs(v) <= 5e-3, `${spec.id} reset qvel[${i}] = ${v}`));
    else assert.ok(Math.max(...qvel.map(Math.abs)) < 0.6 && qvel.some((v) => Math.abs(v) > 0.01), `${spec.id} reset qvel ${qvel}`);
    assert.equal(Array.from(obs), [...qpos.slice(1), ...qvel]);

    // physicsState hands out copies
    const copy = env.physicsState();
    copy.qpos[1] = 123;
    assert.is.not(env.physicsState().qpos[1], 123);

    const setQpos = spec.qpos0.map((q, i) => q + 0.01 * i);
    const setQvel = Array.from({ length: env.nv }, (_, i) => (i % 2 === 0 ? 15 : -0.5 * i));
    const setObs = env.setPhysicsState(setQpos, setQvel);
    const clip = spec.id === 'HalfCheetah-v4' ? (v: number) => v : (v: number) => Math.min(10, Math.max(-10, v));
    assert.equal(Array.from(setObs), [...setQpos.slice(1), ...setQvel.map(clip)]);
    assert.throws(() => env.step(new Float64Array(spec.actDim + 1)), /expected/);
    assert.throws(() => env.step(new Float64Array(spec.actDim).fill(NaN)), /NaN/);
    env.close();
    assert.throws(() => env.reset(), /closed/);
  }
  assert.is(liveModelCount(), 0);
});

t('reward formulas; the control cost uses the action as passed while MuJoCo clamps the control', async () => {
  for (const spec of SPECS) {
    const a = await makeEnv(spec.id, { seed: 11 });
    const b = await makeEnv(spec.id, { seed: 11 });
    a.reset();
    b.reset();
    const inBox = Array.from({ length: spec.actDim }, (_, i) => (i % 2 === 0 ? 1 : -0.3));
    const outside = inBox.map((v) => (v === 1 ? 2.5 : v));
    const x0 = a.physicsState!().qpos[0]!;
    const ra = a.step(outside);
    const rb = b.step(inBox);
    assert.equal(Array.from(ra.obs), Array.from(rb.obs), `${spec.id}: out-of-range control is clamped to the same physics`);
    const xVel = (a.physicsState!().qpos[0]! - x0) / spec.dt;
    const expected = spec.id === 'HalfCheetah-v4'
      ? xVel - 0.1 * sumSquares(outside)
      : xVel + 1 - 1e-3 * sumSquares(outside);
    assert.ok(Math.abs(ra.reward - expected) < 1e-9, `${spec.id} reward ${ra.reward} vs ${expected}`);
    assert.ok(ra.reward < rb.reward, `${spec.id}: a larger requested action costs more`);
    a.close();
    b.close();
  }
});

t('hopper health: strict bounds on height, angle and every entry of (qpos[2:], qvel)', async () => {
  const env = await LocomotionEnv.create(LOCOMOTION['Hopper-v4'], { seed: 0 });
  env.reset();
  const qpos0 = [0, 1.25, 0, -0.1, -0.1, 0.05];
  const zeros = [0, 0, 0, 0, 0, 0];
  const healthy = (qpos: number[], qvel: number[] = zeros) => {
    env.setPhysicsState(qpos, qvel);
    return env.isHealthy();
  };
  assert.ok(healthy(qpos0));
  assert.not.ok(healthy([0, 0.7, 0, -0.1, -0.1, 0.05]), 'z = 0.7 is unhealthy');
  assert.ok(healthy([0, 0.7001, 0, -0.1, -0.1, 0.05]));
  assert.not.ok(healthy([0, 1.25, 0.2, -0.1, -0.1, 0.05]), 'angle = 0.2 is unhealthy');
  assert.not.ok(healthy([0, 1.25, -0.2, -0.1, -0.1, 0.05]), 'angle = -0.2 is unhealthy');
  assert.ok(healthy([0, 1.25, 0.199, -0.1, -0.1, 0.05]));
  assert.ok(healthy([1e6, 1.25, 0, -0.1, -0.1, 0.05]), 'x position is not range-checked');
  assert.ok(healthy(qpos0, [99, 99, 0, 0, 0, 0]));
  assert.not.ok(healthy(qpos0, [100, 0, 0, 0, 0, 0]), 'x velocity is range-checked');
  assert.not.ok(healthy(qpos0, [0, 0, 0, 0, -100, 0]), 'joint velocity is range-checked');
  assert.not.ok(healthy([0, 1.25, 0, 0, 0, 0].map((q, i) => (i === 5 ? 100 : q))), 'joint position is range-checked');
  assert.not.ok(healthy([0, Number.NaN, 0, 0, 0, 0]), 'NaN is unhealthy');

  // a step that ends unhealthy terminates and still pays the healthy reward
  env.setPhysicsState([0, 0.5, 0, -0.1, -0.1, 0.05], zeros);
  const x0 = env.physicsState().qpos[0]!;
  const action = [0.2, -0.4, 0.6];
  const r = env.step(action);
  assert.ok(r.terminated);
  assert.not.ok(r.truncated);
  const xVel = (env.physicsState().qpos[0]! - x0) / env.dt;
  assert.ok(Math.abs(r.reward - (xVel + 1 - 1e-3 * sumSquares(action))) < 1e-9, `terminal reward ${r.reward}`);
  env.close();
});

t('walker2d health: 0.8 < z < 2 and -1 < angle < 1 only', async () => {
  const env = await LocomotionEnv.create(LOCOMOTION['Walker2d-v4'], { seed: 0 });
  env.reset();
  const zeros = new Array(9).fill(0);
  const healthy = (z: number, angle: number, qvel: number[] = zeros) => {
    env.setPhysicsState([0, z, angle, 0, 0, 0, 0, 0, 0], qvel);
    return env.isHealthy();
  };
  assert.ok(healthy(1.25, 0));
  assert.not.ok(healthy(0.8, 0));
  assert.ok(healthy(0.8001, 0));
  assert.not.ok(healthy(2, 0));
  assert.ok(healthy(1.999, 0));
  assert.not.ok(healthy(1.25, 1));
  assert.not.ok(healthy(1.25, -1));
  assert.ok(healthy(1.25, 0.999));
  assert.ok(healthy(1.25, 0, zeros.map(() => 500)), 'no state-range check');
  env.setPhysicsState([0, 0.6, 0, 0, 0, 0, 0, 0, 0], zeros);
  const r = env.step(new Float64Array(6));
  assert.ok(r.terminated);
  env.close();
});

t('halfcheetah never terminates; every environment truncates at step 1000', async () => {
  const env = await LocomotionEnv.create(LOCOMOTION['HalfCheetah-v4'], { seed: 0 });
  env.reset();
  env.setPhysicsState([0, -5, 3, 0, 0, 0, 0, 0, 0], [0, 0, 200, 0, 0, 0, 0, 0, 0]);
  assert.ok(env.isHealthy());
  env.reset();
  const rng = new HostRng(1);
  const action = new Float64Array(6);
  for (let i = 1; i <= 1000; i++) {
    for (let j = 0; j < 6; j++) action[j] = rng.uniform(-1, 1);
    const r = env.step(action);
    assert.not.ok(r.terminated);
    assert.is(r.truncated, i === 1000, `truncated at step ${i}`);
  }
  assert.is(env.episodeSteps, 1000);
  env.reset();
  assert.is(env.episodeSteps, 0);
  env.close();
});

t('seeding: equal seeds give identical trajectories, different seeds differ, reset(seed) reseeds', async () => {
  const rollout = (env: Env, seed: number | undefined, steps: number) => {
    const rng = new HostRng(99);
    const out: number[] = Array.from(env.reset(seed));
    const action = new Float64Array(env.actDim);
    for (let i = 0; i < steps; i++) {
      for (let j = 0; j < env.actDim; j++) action[j] = rng.uniform(-1, 1);
      const r = env.step(action);
      out.push(...r.obs, r.reward);
      if (r.terminated || r.truncated) out.push(...env.reset());
    }
    return out;
  };
  for (const spec of SPECS) {
    const a = await makeEnv(spec.id, { seed: 5 });
    const b = await makeEnv(spec.id, { seed: 5 });
    const c = await makeEnv(spec.id, { seed: 6 });
    const ra = rollout(a, undefined, 150);
    assert.equal(ra, rollout(b, undefined, 150), `${spec.id}: same constructor seed`);
    assert.not.equal(ra, rollout(c, undefined, 150), `${spec.id}: different seeds`);
    const again = rollout(a, 42, 60);
    assert.equal(again, rollout(c, 42, 60), `${spec.id}: reset(seed) reseeds`);
    const first = Array.from(a.reset(7));
    assert.not.equal(Array.from(a.reset()), first, `${spec.id}: reset() continues the stream`);
    assert.equal(Array.from(a.reset(7)), first);
    a.close();
    b.close();
    c.close();
  }
  const vec = await makeVecEnv('hopper', 3, { seed: 20 });
  const single = await makeEnv('hopper', { seed: 22 });
  const obs = vec.reset();
  assert.equal(Array.from(obs.subarray(2 * 11, 3 * 11)), Array.from(Float32Array.from(single.reset())), 'copy i is seeded with seed + i');
  vec.close();
  single.close();
});

t('memory: closing frees simulator data; 256 copies live at once; views survive heap growth', async () => {
  const modelsBefore = liveModelCount();
  const early = await LocomotionEnv.create(LOCOMOTION['Hopper-v4'], { seed: 1 });
  const twin = await LocomotionEnv.create(LOCOMOTION['Hopper-v4'], { seed: 1 });
  early.reset();
  twin.reset();
  for (let i = 0; i < 300; i++) {
    const env = await LocomotionEnv.create(LOCOMOTION['Hopper-v4'], { seed: i });
    env.reset();
    env.step([0.1, 0.1, 0.1]);
    env.close();
  }
  for (let round = 0; round < 2; round++) {
    const vec = await makeVecEnv('Hopper-v4', 256, { seed: round });
    vec.reset();
    const actions = new Float64Array(256 * 3).fill(0.3);
    for (let i = 0; i < 5; i++) {
      const r = vec.step(actions);
      assert.ok(r.obs.every(Number.isFinite));
    }
    vec.close();
  }
  // the wasm heap grew while `early` was alive, which detaches typed-array views taken before
  const action = [0.5, -0.5, 0.2];
  for (let i = 0; i < 10; i++) {
    const r1 = early.step(action);
    const r2 = twin.step(action);
    assert.is(r1.obs.length, 11);
    assert.equal(Array.from(r1.obs), Array.from(r2.obs));
  }
  early.close();
  twin.close();
  early.close();
  assert.is(liveModelCount(), modelsBefore);
});

t('registry: aliases, unknown ids and bad copy counts', async () => {
  for (const id of ['Hopper-v4', 'HalfCheetah-v4', 'Walker2d-v4', 'hopper', 'halfcheetah', 'walker2d']) {
    assert.ok(envIds().includes(id), id);
  }
  try {
    await makeEnv('Ant-v4');
    assert.unreachable('unknown id accepted');
  } catch (err) {
    assert.match(String(err), /unknown environment 'Ant-v4'.*Hopper-v4.*halfcheetah/);
  }
  try {
    await makeVecEnv('hopper', 0);
    assert.unreachable('zero copies accepted');
  } catch (err) {
    assert.match(String(err), /positive integer/);
  }
});

t('hopper: the Gymnasium Hopper-v4 expert scores about 3700 over 1000 steps without falling', async () => {
  const env = await makeEnv('Hopper-v4', { seed: 0 });
  let obs = env.reset();
  let ret = 0;
  for (let i = 1; i <= 1000; i++) {
    const r = env.step(expertAction(obs));
    ret += r.reward;
    obs = r.obs;
    assert.not.ok(r.terminated, `expert fell at step ${i}`);
    assert.is(r.truncated, i === 1000);
  }
  // recorded in Gymnasium: 3717.2 and 3717.9
  assert.ok(ret > 3500 && ret < 3900, `expert return ${ret}`);
  env.close();
});

t('hopper: one-step replay of recorded Gymnasium transitions', async () => {
  const data = await readD4RL(path.join(FIXTURES, 'hopper-expert-v4.hdf5'), { expect: { obsDim: 11, actDim: 3 } });
  const next = data.nextObservations!;
  const env = await LocomotionEnv.create(LOCOMOTION['Hopper-v4'], { seed: 0 });
  const errors: number[] = [];
  let rewardChecked = 0;
  for (let row = 0; row < data.size; row++) {
    const obs = data.observations.subarray(row * 11, row * 11 + 11);
    // clipped velocities hide the true state
    if (obs.subarray(5).some((v) => Math.abs(v) >= 10)) continue;
    env.reset();
    env.setPhysicsState([0, ...obs.subarray(0, 5)], obs.subarray(5));
    const raw = Array.from(data.actions.subarray(row * 3, row * 3 + 3));
    const r = env.step(raw);
    let err = 0;
    for (let i = 0; i < 11; i++) err = Math.max(err, Math.abs(r.obs[i]! - next[row * 11 + i]!));
    errors.push(err);
    if (err < 1e-5) {
      rewardChecked++;
      assert.ok(Math.abs(r.reward - data.rewards[row]!) < 1e-3, `row ${row}: reward ${r.reward} vs recorded ${data.rewards[row]}`);
    }
  }
  errors.sort((x, y) => x - y);
  const exact = errors.filter((e) => e < 1e-5).length / errors.length;
  const p95 = errors[Math.floor(0.95 * errors.length)]!;
  // Steps without ground contact match to float32 precision; steps with contact differ by about 1e-2
  // (MuJoCo 3.14 against the 2.3-era build that recorded the data). Measured: 74.5% exact, p95 1.4e-2, max 0.49.
  assert.ok(errors.length > 1500, `${errors.length} replayable rows`);
  assert.ok(exact > 0.7, `fraction replayed to 1e-5: ${exact}`);
  assert.ok(p95 < 0.05, `95th percentile error ${p95}`);
  assert.ok(errors[errors.length - 1]! < 1, `max error ${errors[errors.length - 1]}`);
  assert.ok(rewardChecked > 1000);
  env.close();
});

t('uniform random policy: average returns match a faithful port and D4RL reference minima', async () => {
  // reference: a JavaScript port on MuJoCo 3.14, 500 episodes; D4RL ref_min_score: 100 episodes, mujoco-py era
  const cases = [
    { id: 'hopper', episodes: 400, port: 17.9, portEpisodes: 500, d4rl: -20.27 },
    { id: 'walker2d', episodes: 400, port: 2.5, portEpisodes: 500, d4rl: 1.63 },
    { id: 'halfcheetah', episodes: 60, port: -283.7, portEpisodes: 500, d4rl: -280.18 },
  ];
  for (const c of cases) {
    const env = await makeEnv(c.id, { seed: 1000 });
    const rng = new HostRng(2024);
    const action = new Float64Array(env.actDim);
    const returns: number[] = [];
    env.reset();
    for (let ep = 0; ep < c.episodes; ep++) {
      let ret = 0;
      for (;;) {
        for (let j = 0; j < env.actDim; j++) action[j] = rng.uniform(-1, 1);
        const r = env.step(action);
        ret += r.reward;
        if (r.terminated || r.truncated) break;
      }
      returns.push(ret);
      env.reset();
    }
    env.close();
    const { mean, sd, se } = meanAndStdError(returns);
    // the difference of two sample means: both standard errors, our spread standing in for the reference's
    const tolerance = (episodesRef: number) => 4 * Math.sqrt(se * se + (sd * sd) / episodesRef);
    assert.ok(Math.abs(mean - c.port) < tolerance(c.portEpisodes),
      `${c.id}: mean ${mean.toFixed(2)} (se ${se.toFixed(2)}) vs port ${c.port}`);
    if (c.id !== 'hopper') {
      assert.ok(Math.abs(mean - c.d4rl) < tolerance(100), `${c.id}: mean ${mean.toFixed(2)} (se ${se.toFixed(2)}) vs D4RL ${c.d4rl}`);
    } else {
      // simulator drift: the hopper no longer matches the mujoco-py-era reference
      assert.ok(mean - c.d4rl > tolerance(100), `hopper: mean ${mean.toFixed(2)} unexpectedly near D4RL ${c.d4rl}`);
    }
  }
});

t.run();

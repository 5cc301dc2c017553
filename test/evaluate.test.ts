// Policy evaluation: batched parallel episodes give the same returns as sequential single-environment
// rollouts with the same seeds; episode counts, lengths, truncation, normalisation and the GPU adapter.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { gpu, freshSeed } from './helpers.ts';
import { evaluate, gpuPolicy, meanStd, type BatchPolicy } from '../envs/evaluate.ts';
import { PendulumEnv } from '../envs/pendulum.ts';
import { MountainCarContinuousEnv } from '../envs/mountain_car.ts';
import { mountainCarBangBang, pendulumSwingUp, randomPolicy, zeroPolicy } from '../envs/controllers.ts';
import { clamp, scale } from '../engine/ops/elementwise.ts';
import { slice } from '../engine/ops/shape.ts';
import { runtime } from '../engine/runtime.ts';
import type { Env } from '../envs/core.ts';

const t = suite('evaluate');
t.before(gpu);

/** One environment, one episode after another, one observation per policy call. */
function sequential(policy: BatchPolicy, env: Env, episodes: number, seed: number): { returns: number[]; lengths: number[] } {
  const returns: number[] = [];
  const lengths: number[] = [];
  for (let i = 0; i < episodes; i++) {
    let obs = env.reset(seed + i);
    let ret = 0;
    let len = 0;
    for (;;) {
      const a = policy(Float32Array.from(obs), 1) as Float32Array;
      const r = env.step(a);
      ret += r.reward;
      len++;
      obs = r.obs;
      if (r.terminated || r.truncated) break;
    }
    returns.push(ret);
    lengths.push(len);
  }
  return { returns, lengths };
}

t('batched episodes equal sequential rollouts with the same seeds, for any number of copies', async () => {
  const seed = freshSeed() % 1000000;
  const cases = [
    { make: () => new PendulumEnv(), policy: pendulumSwingUp() },
    { make: () => new MountainCarContinuousEnv(), policy: mountainCarBangBang() },
  ];
  for (const { make, policy } of cases) {
    const ref = sequential(policy, make(), 11, seed);
    for (const numEnvs of [1, 2, 4, 11, 32]) {
      const got = await evaluate(policy, make, { episodes: 11, seed, numEnvs });
      assert.equal(got.returns, ref.returns, `${make().id} numEnvs ${numEnvs} (seed ${seed})`);
      assert.equal(got.lengths, ref.lengths);
      const { mean, std } = meanStd(ref.returns);
      assert.ok(Math.abs(got.mean - mean) < 1e-9 && Math.abs(got.std - std) < 1e-9);
    }
  }
});

t('episodes are counted exactly; a batch holds only running episodes; every copy is closed', async () => {
  const sizes: number[] = [];
  let calls = 0;
  const seen: Array<[number, number]> = [];
  const closed: string[] = [];
  const make = () => {
    const env = new MountainCarContinuousEnv({ maxEpisodeSteps: 40 });
    const close = env.close.bind(env);
    env.close = () => { closed.push(env.id); close(); };
    return env;
  };
  const inner = mountainCarBangBang();
  const policy: BatchPolicy = (obs, n) => {
    calls++;
    sizes.push(n);
    assert.is(obs.length, n * 2);
    return inner(obs, n);
  };
  const res = await evaluate(policy, make, { episodes: 7, numEnvs: 3, seed: 5, onEpisode: (ret, len) => seen.push([ret, len]) });
  assert.is(res.returns.length, 7);
  assert.is(seen.length, 7);
  assert.equal(res.lengths, [40, 40, 40, 40, 40, 40, 40], 'a 40-step limit truncates every bang-bang episode');
  assert.equal([...seen].sort((a, b) => a[0] - b[0]), res.returns.map((r, i) => [r, res.lengths[i]!] as [number, number]).sort((a, b) => a[0] - b[0]));
  assert.ok(sizes.every((n) => n >= 1 && n <= 3));
  assert.is(sizes.reduce((a, b) => a + b, 0), 7 * 40, 'one action per environment step, none for finished episodes');
  assert.is(calls, 3 * 40, '7 episodes over 3 copies take 3 rounds of 40 steps');
  assert.is(closed.length, 3);
  // numEnvs larger than the episode count makes only as many copies as episodes
  closed.length = 0;
  await evaluate(zeroPolicy({ actDim: 1, actionLow: [-1], actionHigh: [1] }), make, { episodes: 2, numEnvs: 16 });
  assert.is(closed.length, 2);
});

t('lengths honour truncation and termination', async () => {
  const pend = await evaluate(zeroPolicy(new PendulumEnv()), () => new PendulumEnv(), { episodes: 5 });
  assert.equal(pend.lengths, [200, 200, 200, 200, 200]);
  const stuck = await evaluate(zeroPolicy(new MountainCarContinuousEnv()), () => new MountainCarContinuousEnv(), { episodes: 3 });
  assert.equal(stuck.lengths, [999, 999, 999]);
  assert.equal(stuck.returns, [0, 0, 0]);
  const goal = await evaluate(mountainCarBangBang(), () => new MountainCarContinuousEnv(), { episodes: 10, seed: 3 });
  assert.ok(goal.lengths.every((n) => n > 50 && n < 200), `terminated early: ${goal.lengths}`);
  assert.ok(goal.returns.every((r) => r > 80 && r < 100));
});

t('normalisation and the reference controllers', async () => {
  const lo = -1200, hi = -150;
  const res = await evaluate(pendulumSwingUp(), () => new PendulumEnv(), {
    episodes: 20, seed: 100, normalize: (r) => (100 * (r - lo)) / (hi - lo),
  });
  const norm = meanStd(res.returns.map((r) => (100 * (r - lo)) / (hi - lo)));
  assert.ok(Math.abs(res.normalizedMean! - norm.mean) < 1e-9);
  assert.ok(Math.abs(res.normalizedStd! - norm.std) < 1e-9);
  assert.ok(res.mean > -300, `swing-up scores ${res.mean}`);
  const random = await evaluate(randomPolicy(new PendulumEnv(), 1), () => new PendulumEnv(), { episodes: 20, seed: 100 });
  assert.ok(random.mean < -800, `random scores ${random.mean}`);
  assert.is(random.normalizedMean, undefined);
});

t('bad policies and options are reported and the copies still closed', async () => {
  let closed = 0;
  const make = () => {
    const env = new PendulumEnv();
    const close = env.close.bind(env);
    env.close = () => { closed++; close(); };
    return env;
  };
  await rejects(evaluate((_o, n) => new Float32Array(n + 1), make, { episodes: 2 }), /returned 3 values for 2 observations/);
  assert.is(closed, 2);
  await rejects(evaluate((_o, n) => new Float32Array(n).fill(Number.POSITIVE_INFINITY), make, { episodes: 1 }), /non-finite/);
  await rejects(evaluate(pendulumSwingUp(), make, { episodes: 0 }), /episodes must be a positive integer/);
  await rejects(evaluate(pendulumSwingUp(), make, { episodes: 2, numEnvs: 1.5 }), /numEnvs/);
});

t('gpuPolicy: a tensor policy evaluated on the GPU matches the same policy on the host', async () => {
  const seed = freshSeed() % 1000000;
  // u = clip(-1.5 thetadot, -2, 2): a damping controller as tensor ops
  const onGpu = gpuPolicy((obs) => clamp(scale(slice(obs, 2, 3, 1), -1.5), -2, 2));
  const onHost: BatchPolicy = (obs, n) => {
    const out = new Float32Array(n);
    for (let i = 0; i < n; i++) out[i] = Math.min(Math.max(Math.fround(-1.5 * obs[3 * i + 2]!), -2), 2);
    return out;
  };
  const before = runtime().stats.readbacks;
  const got = await evaluate(onGpu, () => new PendulumEnv({ maxEpisodeSteps: 25 }), { episodes: 6, numEnvs: 3, seed });
  const ref = await evaluate(onHost, () => new PendulumEnv({ maxEpisodeSteps: 25 }), { episodes: 6, numEnvs: 3, seed });
  assert.equal(got.returns, ref.returns);
  assert.is(runtime().stats.readbacks - before, 2 * 25, 'one readback per batched step');
  // a policy that returns its input (identity) is read back and the input is not disposed twice
  const echo = await gpuPolicy((x) => x)(Float32Array.of(1, 2, 3, 4), 2);
  assert.equal(Array.from(echo), [1, 2, 3, 4]);
  await rejects(Promise.resolve(gpuPolicy((x) => x)(new Float32Array(5), 2)), /do not split into 2 rows/);
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

t.run();

// Pendulum-v1 and MountainCarContinuous-v0 against float64 transcriptions of Gymnasium's step functions written
// here independently, plus time limits, termination, action clipping and seeding.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { rng, freshSeed } from './helpers.ts';
import { PendulumEnv, angleNormalize } from '../envs/pendulum.ts';
import { MountainCarContinuousEnv } from '../envs/mountain_car.ts';

const t = suite('envs-classic');

// ---- references ----

/** Python's float modulo: the result takes the sign of the divisor. */
function pyMod(a: number, b: number): number {
  const r = a % b;
  return r !== 0 && (r < 0) !== (b < 0) ? r + b : r;
}

function pendulumRef(th: number, thdot: number, action: number) {
  const u = action < -2 ? -2 : action > 2 ? 2 : action;
  const norm = pyMod(th + Math.PI, 2 * Math.PI) - Math.PI;
  const costs = norm * norm + 0.1 * thdot * thdot + 0.001 * u * u;
  let newthdot = thdot + ((3 * 10.0) / (2 * 1.0) * Math.sin(th) + (3.0 / (1.0 * 1.0 * 1.0)) * u) * 0.05;
  if (newthdot > 8) newthdot = 8;
  if (newthdot < -8) newthdot = -8;
  const newth = th + newthdot * 0.05;
  return { th: newth, thdot: newthdot, reward: -costs, obs: [Math.cos(newth), Math.sin(newth), newthdot].map(Math.fround) };
}

function mountainCarRef(x: number, v: number, action: number) {
  const force = Math.min(Math.max(action, -1.0), 1.0);
  let velocity = v + (force * 0.0015 - 0.0025 * Math.cos(3 * x));
  velocity = Math.max(-0.07, Math.min(0.07, velocity));
  let position = x + velocity;
  position = Math.max(-1.2, Math.min(0.6, position));
  if (position === -1.2 && velocity < 0) velocity = 0;
  const terminated = position >= 0.45 && velocity >= 0;
  const reward = (terminated ? 100.0 : 0) - action * action * 0.1;
  // Gymnasium keeps the state as a float32 array after each step
  return { x: Math.fround(position), v: Math.fround(velocity), reward, terminated };
}

function close(a: number, b: number, tol: number, msg: string): void {
  assert.ok(Math.abs(a - b) <= tol * Math.max(1, Math.abs(b)), `${msg}: got ${a}, expected ${b}`);
}

// ---- Pendulum ----

t('angleNormalize is Python-style ((x + pi) mod 2 pi) - pi over many periods', () => {
  const r = rng(freshSeed());
  for (let i = 0; i < 2000; i++) {
    const x = (r() - 0.5) * 200;
    const got = angleNormalize(x);
    close(got, pyMod(x + Math.PI, 2 * Math.PI) - Math.PI, 1e-12, `x=${x}`);
    assert.ok(got >= -Math.PI && got < Math.PI + 1e-12);
  }
  close(angleNormalize(3 * Math.PI), -Math.PI, 1e-12, '3 pi');
  close(angleNormalize(-0.5), -0.5, 0, '-0.5');
});

t('Pendulum steps match the float64 reference, including out-of-range actions and speed clipping', () => {
  const seed = freshSeed();
  const r = rng(seed);
  const env = new PendulumEnv();
  let sawSpeedClip = false;
  for (let ep = 0; ep < 5; ep++) {
    const obs0 = env.reset(seed + ep);
    let { qpos, qvel } = env.physicsState();
    let th = qpos[0]!;
    let thdot = qvel[0]!;
    assert.equal(Array.from(obs0), [Math.cos(th), Math.sin(th), thdot].map(Math.fround));
    for (let k = 0; k < 200; k++) {
      // actions well outside [-2, 2] half the time; otherwise full torque along the motion, which pumps energy
      // until the speed limit clips (in every episode by step 84 over 40000 episodes; fixed 15-step bang-bang
      // bursts missed it in all five episodes of 24 of 20000 seeds)
      const a = ep % 2 === 0 ? (r() - 0.5) * 8 : thdot >= 0 ? 2 : -2;
      const step = env.step([a]);
      const ref = pendulumRef(th, thdot, a);
      close(step.reward, ref.reward, 1e-12, `ep ${ep} step ${k} reward (seed ${seed})`);
      assert.equal(Array.from(step.obs), ref.obs, `ep ${ep} step ${k} obs (seed ${seed})`);
      assert.is(step.terminated, false);
      assert.is(step.truncated, k === 199, `truncated at step ${k}`);
      ({ qpos, qvel } = env.physicsState());
      close(qpos[0]!, ref.th, 1e-12, 'theta');
      close(qvel[0]!, ref.thdot, 1e-12, 'thetadot');
      th = ref.th;
      thdot = ref.thdot;
      if (Math.abs(thdot) === 8) sawSpeedClip = true;
    }
  }
  assert.ok(sawSpeedClip, 'the speed limit was exercised');
});

t('Pendulum clips the torque before both the dynamics and the cost', () => {
  const a = new PendulumEnv();
  const b = new PendulumEnv();
  a.reset(7);
  b.reset(7);
  for (let k = 0; k < 20; k++) {
    const big = k % 2 === 0 ? 50 : -3;
    const ra = a.step([big]);
    const rb = b.step([Math.sign(big) * 2]);
    assert.equal(Array.from(ra.obs), Array.from(rb.obs));
    assert.is(ra.reward, rb.reward);
  }
});

t('Pendulum: 200-step limit is a truncation, never a termination; stepping past it throws', () => {
  const env = new PendulumEnv({ seed: 3 });
  env.reset();
  for (let k = 1; k <= 200; k++) {
    const s = env.step([0.1]);
    assert.is(s.terminated, false);
    assert.is(s.truncated, k === 200);
  }
  assert.throws(() => env.step([0]), /after the episode ended/);
  assert.throws(() => new PendulumEnv().step([0]), /before reset/);
  assert.throws(() => { const e = new PendulumEnv(); e.reset(0); e.step([0, 1]); }, /1 action value/);
  const short = new PendulumEnv({ maxEpisodeSteps: 5 });
  short.reset(0);
  for (let k = 1; k <= 5; k++) assert.is(short.step([0]).truncated, k === 5);
});

t('Pendulum reset draws theta ~ U(-pi, pi), thetadot ~ U(-1, 1)', () => {
  const env = new PendulumEnv({ seed: freshSeed() });
  let sumTh = 0, sumDot = 0, maxAbsTh = 0, maxAbsDot = 0;
  const n = 4000;
  for (let i = 0; i < n; i++) {
    env.reset();
    const { qpos, qvel } = env.physicsState();
    assert.ok(qpos[0]! >= -Math.PI && qpos[0]! < Math.PI);
    assert.ok(qvel[0]! >= -1 && qvel[0]! < 1);
    sumTh += qpos[0]!;
    sumDot += qvel[0]!;
    maxAbsTh = Math.max(maxAbsTh, Math.abs(qpos[0]!));
    maxAbsDot = Math.max(maxAbsDot, Math.abs(qvel[0]!));
  }
  // the means of U(-a, a) over 4000 draws lie within 6 standard errors of 0 (two-sided 2e-9 each)
  assert.ok(Math.abs(sumTh / n) < (6 * Math.PI) / Math.sqrt(3 * n));
  assert.ok(Math.abs(sumDot / n) < 6 / Math.sqrt(3 * n));
  assert.ok(maxAbsTh > 3.1 && maxAbsDot > 0.99, 'draws span the range');
});

// ---- MountainCarContinuous ----

t('MountainCar steps match the float64 reference, through the left wall and to the goal', () => {
  const seed = freshSeed();
  const r = rng(seed);
  const env = new MountainCarContinuousEnv();
  let wallHits = 0;
  let goals = 0;
  for (let ep = 0; ep < 6; ep++) {
    const obs0 = env.reset(seed + ep);
    let x = env.physicsState().qpos[0]!;
    let v = env.physicsState().qvel[0]!;
    assert.ok(x >= -0.6 && x < -0.4, `reset position ${x}`);
    assert.is(v, 0);
    assert.equal(Array.from(obs0), [Math.fround(x), 0]);
    for (let k = 0; k < 999; k++) {
      // bang-bang on the velocity's sign (swings into the left wall, then reaches the goal), with some actions
      // outside [-1, 1] whose penalty must stay unclipped
      const dir = v >= 0 ? 1 : -1;
      const a = ep % 2 === 0 ? dir : dir * (0.5 + 1.5 * r());
      const step = env.step([a]);
      const ref = mountainCarRef(x, v, a);
      close(step.reward, ref.reward, 1e-12, `ep ${ep} step ${k} reward (seed ${seed})`);
      assert.equal(Array.from(step.obs), [ref.x, ref.v], `ep ${ep} step ${k} obs (seed ${seed})`);
      assert.is(step.terminated, ref.terminated, `ep ${ep} step ${k} terminated`);
      assert.is(step.truncated, k === 998);
      if (ref.x === Math.fround(-1.2) && ref.v === 0) wallHits++;
      x = ref.x;
      v = ref.v;
      if (step.terminated) {
        goals++;
        assert.ok(x >= 0.45 && v >= 0);
        assert.ok(step.reward > 99, 'goal bonus');
        break;
      }
    }
  }
  assert.ok(wallHits > 0, 'the left-wall velocity reset was exercised');
  assert.is(goals, 6, 'every episode reached the goal');
});

t('MountainCar clips the force but penalises the action as given', () => {
  const a = new MountainCarContinuousEnv();
  const b = new MountainCarContinuousEnv();
  a.reset(11);
  b.reset(11);
  for (let k = 0; k < 30; k++) {
    const big = k % 3 === 0 ? -4 : 2.5;
    const ra = a.step([big]);
    const rb = b.step([Math.sign(big)]);
    assert.equal(Array.from(ra.obs), Array.from(rb.obs));
    close(ra.reward, -0.1 * big * big, 1e-12, 'penalty on the unclipped action');
    close(rb.reward, -0.1, 1e-12, 'penalty on the clipped action');
  }
});

t('MountainCar: terminates only at the goal; the 999-step limit is a truncation', () => {
  const env = new MountainCarContinuousEnv({ seed: 5 });
  env.reset();
  for (let k = 1; k <= 999; k++) {
    const s = env.step([0]);
    assert.is(s.terminated, false, 'no termination without reaching the goal');
    assert.is(s.truncated, k === 999);
    assert.is(s.reward, 0);
    assert.ok(s.obs[0]! < 0.45);
  }
  assert.throws(() => env.step([0]), /after the episode ended/);
  // an episode that reaches the goal ends there and cannot be stepped on
  env.reset(5);
  let v = 0;
  let steps = 0;
  for (;;) {
    const s = env.step([v >= 0 ? 1 : -1]);
    steps++;
    v = s.obs[1]!;
    if (s.terminated) {
      assert.is(s.truncated, false);
      break;
    }
    assert.ok(steps < 999);
  }
  assert.throws(() => env.step([0]), /after the episode ended/);
});

// ---- seeding ----

t('seeding: the same seed gives the same episode, reset() without a seed continues the stream', () => {
  for (const make of [() => new PendulumEnv(), () => new MountainCarContinuousEnv()]) {
    const a = make();
    const b = make();
    const run = (env: PendulumEnv | MountainCarContinuousEnv, seed?: number) => {
      const out = [...env.reset(seed)];
      for (let k = 0; k < 50; k++) out.push(...env.step([Math.sin(k)]).obs);
      return out;
    };
    const first = run(a, 123);
    assert.equal(run(b, 123), first, `${a.id}: same seed, same episode`);
    const next = run(a);
    assert.not.equal(next, first, `${a.id}: an unseeded reset draws a new start`);
    assert.equal(run(b), next, `${a.id}: unseeded resets continue the seeded stream identically`);
    assert.not.equal(run(a, 124), first, `${a.id}: another seed, another start`);
    // the constructor's seed is the stream an unseeded first reset uses
    assert.equal(run(new (a.constructor as typeof PendulumEnv)({ seed: 123 })), first);
  }
});

t.run();

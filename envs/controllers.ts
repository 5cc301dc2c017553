// Scripted policies in the BatchPolicy shape: an expert for Pendulum (energy-shaping swing-up, then a saturated
// linear balance near the top), bang-bang control for MountainCar, and uniform random actions for any
// environment. They make datasets of known quality and give normalised scores their reference points.
import { HostRng } from '../engine/host-rng.ts';
import { PENDULUM } from './pendulum.ts';
import type { BatchPolicy } from './evaluate.ts';

/** What a policy needs to know about an environment's action space. */
export interface ActionSpace {
  readonly actDim: number;
  readonly actionLow: ArrayLike<number>;
  readonly actionHigh: ArrayLike<number>;
}

export interface SwingUpOptions {
  /** Gain of the energy pump u = k (E_top - E) thetadot. */
  energyGain?: number;
  /**
   * Balance feedback u = -(kTheta theta + kThetaDot thetadot), used once cos(theta) exceeds balanceCos
   * (default: the discrete LQR gains of pendulumBalanceGains()).
   */
  kTheta?: number;
  kThetaDot?: number;
  balanceCos?: number;
}

/**
 * Infinite-horizon discrete LQR gains [kTheta, kThetaDot] for Pendulum-v1 linearised at the top, with the
 * env's own step (thetadot' = thetadot + (3g/(2l) theta + 3/(m l^2) u) dt, theta' = theta + thetadot' dt) and,
 * by default, its own cost weights theta^2 + 0.1 thetadot^2 + 0.001 u^2. Solved by iterating the Riccati
 * recursion to a fixed point.
 */
export function pendulumBalanceGains(weights: { theta?: number; thetaDot?: number; torque?: number } = {}): [number, number] {
  const qTheta = weights.theta ?? 1;
  const qThetaDot = weights.thetaDot ?? 0.1;
  const r = weights.torque ?? 0.001;
  const { g, m, l, dt } = PENDULUM;
  const a = (3 * g) / (2 * l);
  const b = 3 / (m * l * l);
  // x = [theta, thetadot]; x' = A x + B u
  const A = [[1 + a * dt * dt, dt], [a * dt, 1]] as const;
  const B = [b * dt * dt, b * dt] as const;
  let p00 = qTheta, p01 = 0, p11 = qThetaDot;
  let k0 = 0, k1 = 0;
  for (let it = 0; it < 10000; it++) {
    const pb0 = p00 * B[0] + p01 * B[1];
    const pb1 = p01 * B[0] + p11 * B[1];
    const bpb = B[0] * pb0 + B[1] * pb1;
    // B' P A
    const bpa0 = pb0 * A[0][0] + pb1 * A[1][0];
    const bpa1 = pb0 * A[0][1] + pb1 * A[1][1];
    const nk0 = bpa0 / (r + bpb);
    const nk1 = bpa1 / (r + bpb);
    // A' P A
    const pa00 = p00 * A[0][0] + p01 * A[1][0], pa01 = p00 * A[0][1] + p01 * A[1][1];
    const pa10 = p01 * A[0][0] + p11 * A[1][0], pa11 = p01 * A[0][1] + p11 * A[1][1];
    const apa00 = A[0][0] * pa00 + A[1][0] * pa10;
    const apa01 = A[0][0] * pa01 + A[1][0] * pa11;
    const apa11 = A[0][1] * pa01 + A[1][1] * pa11;
    p00 = qTheta + apa00 - bpa0 * nk0;
    p01 = apa01 - bpa0 * nk1;
    p11 = qThetaDot + apa11 - bpa1 * nk1;
    const converged = Math.abs(nk0 - k0) + Math.abs(nk1 - k1) < 1e-12;
    k0 = nk0;
    k1 = nk1;
    if (converged) break;
  }
  return [k0, k1];
}

/**
 * Pendulum-v1 expert. With the env's dynamics thetaddot = 3g/(2l) sin(theta) + 3/(m l^2) u, the quantity
 * E = thetadot^2 / 2 + 3g/(2l) cos(theta) changes at the rate 3/(m l^2) u thetadot, so u proportional to
 * (E_top - E) thetadot drives E to its upright-at-rest value; near the top a linear state feedback (the
 * saturated LQR balance) catches and holds the pendulum.
 */
export function pendulumSwingUp(opts: SwingUpOptions = {}): BatchPolicy {
  const energyGain = opts.energyGain ?? 0.5;
  const [lqrTheta, lqrThetaDot] = pendulumBalanceGains();
  const kTheta = opts.kTheta ?? lqrTheta;
  const kThetaDot = opts.kThetaDot ?? lqrThetaDot;
  const balanceCos = opts.balanceCos ?? 0.85;
  const { g, l, maxTorque } = PENDULUM;
  const gravity = (3 * g) / (2 * l);
  const topEnergy = gravity;
  return (obs, n) => {
    if (obs.length !== n * 3) throw new Error(`pendulumSwingUp: expected ${n} x 3 observation values, got ${obs.length}`);
    const out = new Float32Array(n);
    for (let i = 0; i < n; i++) {
      const cos = obs[3 * i]!;
      const sin = obs[3 * i + 1]!;
      const thetaDot = obs[3 * i + 2]!;
      const theta = Math.atan2(sin, cos);
      let u: number;
      if (cos > balanceCos) {
        u = -(kTheta * theta + kThetaDot * thetaDot);
      } else {
        const energy = 0.5 * thetaDot * thetaDot + gravity * cos;
        u = energyGain * (topEnergy - energy) * thetaDot;
      }
      out[i] = Math.min(Math.max(u, -maxTorque), maxTorque);
    }
    return out;
  };
}

/** MountainCarContinuous-v0: full throttle in the direction of motion (forward when at rest). */
export function mountainCarBangBang(): BatchPolicy {
  return (obs, n) => {
    if (obs.length !== n * 2) throw new Error(`mountainCarBangBang: expected ${n} x 2 observation values, got ${obs.length}`);
    const out = new Float32Array(n);
    for (let i = 0; i < n; i++) out[i] = obs[2 * i + 1]! >= 0 ? 1 : -1;
    return out;
  };
}

/** Uniform random actions in the box, from a seeded host generator (drawn row by row, dimension by dimension). */
export function randomPolicy(space: ActionSpace, seed = 0): BatchPolicy {
  const rng = new HostRng(seed);
  const { actDim, actionLow, actionHigh } = space;
  return (_obs, n) => {
    const out = new Float32Array(n * actDim);
    for (let i = 0; i < n; i++) {
      for (let j = 0; j < actDim; j++) out[i * actDim + j] = rng.uniform(actionLow[j]!, actionHigh[j]!);
    }
    return out;
  };
}

/** All-zero actions (a do-nothing baseline). */
export function zeroPolicy(space: ActionSpace): BatchPolicy {
  return (_obs, n) => new Float32Array(n * space.actDim);
}

/** Scripted policies by name, and which environments each one is meant for (null: any). */
export const SCRIPTED_POLICIES: Readonly<Record<string, { envs: readonly string[] | null; description: string }>> = Object.freeze({
  swingup: { envs: ['Pendulum-v1'], description: 'energy-shaping swing-up with a linear balance near the top' },
  bangbang: { envs: ['MountainCarContinuous-v0'], description: 'full throttle in the direction of motion' },
  random: { envs: null, description: 'uniform random actions in the action box' },
  zero: { envs: null, description: 'all-zero actions' },
});

/** A scripted policy by name for an environment; throws with the valid names when there is none. */
export function scriptedPolicy(name: string, env: ActionSpace & { readonly id: string }, opts: { seed?: number } = {}): BatchPolicy {
  const entry = SCRIPTED_POLICIES[name];
  if (!entry) throw new Error(`unknown policy '${name}'; known: ${Object.keys(SCRIPTED_POLICIES).join(', ')}`);
  if (entry.envs && !entry.envs.includes(env.id)) {
    throw new Error(`policy '${name}' is for ${entry.envs.join(', ')}, not ${env.id}`);
  }
  switch (name) {
    case 'swingup':
      return pendulumSwingUp();
    case 'bangbang':
      return mountainCarBangBang();
    case 'random':
      return randomPolicy(env, opts.seed ?? 0);
    default:
      return zeroPolicy(env);
  }
}

// Pendulum-v1 (Gymnasium classic control): swing a frictionless pendulum up and hold it upright with a bounded
// torque. The step follows Gymnasium's order exactly: the cost is taken on the pre-step state, the new angular
// velocity is integrated and clipped first, and the angle then advances with the clipped velocity
// (semi-implicit Euler). The state is kept in float64, as Gymnasium's is; observations are float32 values.
// Reset noise comes from the engine's seeded host generator, so episodes are reproducible from a seed but do
// not match Gymnasium's PCG64 draws.
import { ClassicControlEnv } from './classic-control.ts';

export const PENDULUM = Object.freeze({
  maxSpeed: 8,
  maxTorque: 2,
  dt: 0.05,
  g: 10,
  m: 1,
  l: 1,
  maxEpisodeSteps: 200,
});

/** Gymnasium's angle_normalize: maps x into [-pi, pi) with a floored (Python-style) modulo. */
export function angleNormalize(x: number): number {
  const period = 2 * Math.PI;
  const shifted = x + Math.PI;
  return shifted - period * Math.floor(shifted / period) - Math.PI;
}

export class PendulumEnv extends ClassicControlEnv {
  readonly id = 'Pendulum-v1';
  readonly obsDim = 3;
  readonly actionLow = Float64Array.of(-PENDULUM.maxTorque);
  readonly actionHigh = Float64Array.of(PENDULUM.maxTorque);

  private theta = 0;
  private thetaDot = 0;

  constructor(opts: { seed?: number; maxEpisodeSteps?: number } = {}) {
    super(opts, PENDULUM.maxEpisodeSteps);
  }

  protected resetState(): void {
    this.theta = this.rng.uniform(-Math.PI, Math.PI);
    this.thetaDot = this.rng.uniform(-1, 1);
  }

  protected advance(action: number): { reward: number; terminated: boolean } {
    const { g, m, l, dt, maxSpeed, maxTorque } = PENDULUM;
    const u = Math.min(Math.max(action, -maxTorque), maxTorque);
    const th = this.theta;
    const thDot = this.thetaDot;
    const cost = angleNormalize(th) ** 2 + 0.1 * thDot ** 2 + 0.001 * u ** 2;
    let newThDot = thDot + ((3 * g) / (2 * l) * Math.sin(th) + 3 / (m * l ** 2) * u) * dt;
    newThDot = Math.min(Math.max(newThDot, -maxSpeed), maxSpeed);
    this.theta = th + newThDot * dt;
    this.thetaDot = newThDot;
    return { reward: -cost, terminated: false };
  }

  physicsState(): { qpos: Float64Array; qvel: Float64Array } {
    return { qpos: Float64Array.of(this.theta), qvel: Float64Array.of(this.thetaDot) };
  }

  protected observation(): Float64Array {
    return Float64Array.of(Math.fround(Math.cos(this.theta)), Math.fround(Math.sin(this.theta)), Math.fround(this.thetaDot));
  }
}

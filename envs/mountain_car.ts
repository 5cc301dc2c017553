// MountainCarContinuous-v0 (Gymnasium classic control): an underpowered car must rock back and forth to climb
// to the flag at x = 0.45. The update order, clipping and left-wall rule follow Gymnasium's step; the reward's
// action penalty uses the action as given, before clipping, as Gymnasium's does. Gymnasium stores the state as
// float32 after every step (the reset state stays float64 until the first step), so the state is rounded to
// f32 at the same point here and the arithmetic in between is float64.
import { HostRng } from '../engine/init.ts';
import type { Env, StepResult } from './core.ts';

export const MOUNTAIN_CAR = Object.freeze({
  minAction: -1,
  maxAction: 1,
  minPosition: -1.2,
  maxPosition: 0.6,
  maxSpeed: 0.07,
  goalPosition: 0.45,
  goalVelocity: 0,
  power: 0.0015,
  maxEpisodeSteps: 999,
});

export class MountainCarContinuousEnv implements Env {
  readonly id = 'MountainCarContinuous-v0';
  readonly obsDim = 2;
  readonly actDim = 1;
  readonly actionLow = Float64Array.of(MOUNTAIN_CAR.minAction);
  readonly actionHigh = Float64Array.of(MOUNTAIN_CAR.maxAction);
  readonly maxEpisodeSteps: number;

  private rng: HostRng;
  private position = 0;
  private velocity = 0;
  private elapsed = 0;
  private running = false;

  /** Without a seed the generator is seeded from Math.random (as the registry documents). */
  constructor(opts: { seed?: number; maxEpisodeSteps?: number } = {}) {
    this.rng = new HostRng(opts.seed ?? Math.floor(Math.random() * 2 ** 32));
    this.maxEpisodeSteps = opts.maxEpisodeSteps ?? MOUNTAIN_CAR.maxEpisodeSteps;
  }

  reset(seed?: number): Float64Array {
    if (seed !== undefined) this.rng = new HostRng(seed);
    this.position = this.rng.uniform(-0.6, -0.4);
    this.velocity = 0;
    this.elapsed = 0;
    this.running = true;
    return this.observation();
  }

  step(action: ArrayLike<number>): StepResult {
    if (!this.running) throw new Error(`${this.id}: step() called before reset() or after the episode ended`);
    if (action.length !== 1) throw new Error(`${this.id}: expected 1 action value, got ${action.length}`);
    const c = MOUNTAIN_CAR;
    const a = action[0]!;
    const force = Math.min(Math.max(a, c.minAction), c.maxAction);
    let position = this.position;
    let velocity = this.velocity;
    velocity += force * c.power - 0.0025 * Math.cos(3 * position);
    if (velocity > c.maxSpeed) velocity = c.maxSpeed;
    if (velocity < -c.maxSpeed) velocity = -c.maxSpeed;
    position += velocity;
    if (position > c.maxPosition) position = c.maxPosition;
    if (position < c.minPosition) position = c.minPosition;
    if (position === c.minPosition && velocity < 0) velocity = 0;
    const terminated = position >= c.goalPosition && velocity >= c.goalVelocity;
    const reward = (terminated ? 100 : 0) - a ** 2 * 0.1;
    this.position = Math.fround(position);
    this.velocity = Math.fround(velocity);
    this.elapsed++;
    const truncated = this.elapsed >= this.maxEpisodeSteps;
    if (terminated || truncated) this.running = false;
    return { obs: this.observation(), reward, terminated, truncated };
  }

  physicsState(): { qpos: Float64Array; qvel: Float64Array } {
    return { qpos: Float64Array.of(this.position), qvel: Float64Array.of(this.velocity) };
  }

  close(): void {
    this.running = false;
  }

  private observation(): Float64Array {
    return Float64Array.of(Math.fround(this.position), Math.fround(this.velocity));
  }
}

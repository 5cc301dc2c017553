// MountainCarContinuous-v0 (Gymnasium classic control): an underpowered car must rock back and forth to climb
// to the flag at x = 0.45. The update order, clipping and left-wall rule follow Gymnasium's step; the reward's
// action penalty uses the action as given, before clipping, as Gymnasium's does. Gymnasium stores the state as
// float32 after every step (the reset state stays float64 until the first step), so the state is rounded to
// f32 at the same point here and the arithmetic in between is float64.
import { ClassicControlEnv } from './classic-control.ts';

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

export class MountainCarContinuousEnv extends ClassicControlEnv {
  readonly id = 'MountainCarContinuous-v0';
  readonly obsDim = 2;
  readonly actionLow = Float64Array.of(MOUNTAIN_CAR.minAction);
  readonly actionHigh = Float64Array.of(MOUNTAIN_CAR.maxAction);

  private position = 0;
  private velocity = 0;

  constructor(opts: { seed?: number; maxEpisodeSteps?: number } = {}) {
    super(opts, MOUNTAIN_CAR.maxEpisodeSteps);
  }

  protected resetState(): void {
    this.position = this.rng.uniform(-0.6, -0.4);
    this.velocity = 0;
  }

  protected advance(a: number): { reward: number; terminated: boolean } {
    const c = MOUNTAIN_CAR;
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
    return { reward, terminated };
  }

  physicsState(): { qpos: Float64Array; qvel: Float64Array } {
    return { qpos: Float64Array.of(this.position), qvel: Float64Array.of(this.velocity) };
  }

  protected observation(): Float64Array {
    return Float64Array.of(Math.fround(this.position), Math.fround(this.velocity));
  }
}

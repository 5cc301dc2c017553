// What the classic-control tasks share: a seeded host generator (drawn from Math.random without a seed, as the
// registry documents), the episode clock and its time limit, and the checks around step. A task gives its
// reset draw, its dynamics and its observation.
import { HostRng } from '../engine/host-rng.ts';
import type { Env, StepResult } from './core.ts';

export abstract class ClassicControlEnv implements Env {
  abstract readonly id: string;
  abstract readonly obsDim: number;
  readonly actDim = 1;
  abstract readonly actionLow: Float64Array;
  abstract readonly actionHigh: Float64Array;
  readonly maxEpisodeSteps: number;

  protected rng: HostRng;
  private elapsed = 0;
  private running = false;

  constructor(opts: { seed?: number; maxEpisodeSteps?: number }, defaultMaxEpisodeSteps: number) {
    this.rng = new HostRng(opts.seed ?? Math.floor(Math.random() * 2 ** 32));
    this.maxEpisodeSteps = opts.maxEpisodeSteps ?? defaultMaxEpisodeSteps;
  }

  reset(seed?: number): Float64Array {
    if (seed !== undefined) this.rng = new HostRng(seed);
    this.resetState();
    this.elapsed = 0;
    this.running = true;
    return this.observation();
  }

  step(action: ArrayLike<number>): StepResult {
    if (!this.running) throw new Error(`${this.id}: step() called before reset() or after the episode ended`);
    if (action.length !== 1) throw new Error(`${this.id}: expected 1 action value, got ${action.length}`);
    const { reward, terminated } = this.advance(action[0]!);
    this.elapsed++;
    const truncated = this.elapsed >= this.maxEpisodeSteps;
    if (terminated || truncated) this.running = false;
    return { obs: this.observation(), reward, terminated, truncated };
  }

  close(): void {
    this.running = false;
  }

  abstract physicsState(): { qpos: Float64Array; qvel: Float64Array };
  /** Draws the start state from this.rng. */
  protected abstract resetState(): void;
  /** One step of the dynamics under the action as given. */
  protected abstract advance(action: number): { reward: number; terminated: boolean };
  protected abstract observation(): Float64Array;
}

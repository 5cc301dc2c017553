// HalfCheetah-v4 (Gymnasium defaults, the rules D4RL's halfcheetah data was generated under): reward = forward
// velocity - 0.1 * |a|^2; never terminates, so only the 1000-step limit ends an episode.
// Observation (17) = qpos[1:] (8) and qvel (9), not clipped. Reset noise: qpos + U(-0.1, 0.1), qvel + 0.1 N(0, 1).

import { HALF_CHEETAH_XML } from './models/half_cheetah.ts';
import { MujocoEnv, loadMujoco } from './mujoco.ts';
import type { Mujoco, StepPhysics } from './mujoco.ts';

const RESET_NOISE = 0.1;
const CTRL_COST = 0.1;

export class HalfCheetahEnv extends MujocoEnv {
  private constructor(mj: Mujoco, seed?: number) {
    super(mj, { id: 'HalfCheetah-v4', xml: HALF_CHEETAH_XML, frameSkip: 5, obsDim: 17, maxEpisodeSteps: 1000 }, seed);
  }

  static async create(opts: { seed?: number } = {}): Promise<HalfCheetahEnv> {
    return new HalfCheetahEnv(await loadMujoco(), opts.seed);
  }

  protected addResetNoise(qpos: Float64Array, qvel: Float64Array): void {
    for (let i = 0; i < qpos.length; i++) qpos[i]! += this.rng.uniform(-RESET_NOISE, RESET_NOISE);
    for (let i = 0; i < qvel.length; i++) qvel[i]! += RESET_NOISE * this.rng.normal();
  }

  protected observe(): Float64Array {
    const obs = new Float64Array(17);
    obs.set(this.qpos.subarray(1), 0);
    obs.set(this.qvel, 8);
    return obs;
  }

  protected reward({ xVelocity, actionSquaredSum }: StepPhysics): number {
    return xVelocity - CTRL_COST * actionSquaredSum;
  }

  protected healthy(): boolean {
    return true;
  }
}

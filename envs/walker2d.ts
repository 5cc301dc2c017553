// Walker2d-v4 (Gymnasium defaults, the rules D4RL's walker2d data was generated under): reward = forward velocity
// + 1 (healthy reward, also paid on the step that ends the episode) - 1e-3 * |a|^2; the episode ends unless
// 0.8 < z < 2 and -1 < angle < 1. Observation (17) = qpos[1:] (8) and qvel (9) clipped to [-10, 10].

import { WALKER2D_XML } from './models/walker2d.ts';
import { MujocoEnv, copyClipped, loadMujoco } from './mujoco.ts';
import type { Mujoco, StepPhysics } from './mujoco.ts';

const RESET_NOISE = 5e-3;
const HEALTHY_REWARD = 1;
const CTRL_COST = 1e-3;
const HEALTHY_Z_MIN = 0.8;
const HEALTHY_Z_MAX = 2;
const HEALTHY_ANGLE = 1;
const VELOCITY_CLIP = 10;

export class Walker2dEnv extends MujocoEnv {
  private constructor(mj: Mujoco, seed?: number) {
    super(mj, { id: 'Walker2d-v4', xml: WALKER2D_XML, frameSkip: 4, obsDim: 17, maxEpisodeSteps: 1000 }, seed);
  }

  static async create(opts: { seed?: number } = {}): Promise<Walker2dEnv> {
    return new Walker2dEnv(await loadMujoco(), opts.seed);
  }

  protected addResetNoise(qpos: Float64Array, qvel: Float64Array): void {
    for (let i = 0; i < qpos.length; i++) qpos[i]! += this.rng.uniform(-RESET_NOISE, RESET_NOISE);
    for (let i = 0; i < qvel.length; i++) qvel[i]! += this.rng.uniform(-RESET_NOISE, RESET_NOISE);
  }

  protected observe(): Float64Array {
    const obs = new Float64Array(17);
    obs.set(this.qpos.subarray(1), 0);
    copyClipped(obs, 8, this.qvel, -VELOCITY_CLIP, VELOCITY_CLIP);
    return obs;
  }

  protected reward({ xVelocity, actionSquaredSum }: StepPhysics): number {
    return xVelocity + HEALTHY_REWARD - CTRL_COST * actionSquaredSum;
  }

  protected healthy(): boolean {
    const z = this.qpos[1]!;
    const angle = this.qpos[2]!;
    return z > HEALTHY_Z_MIN && z < HEALTHY_Z_MAX && angle > -HEALTHY_ANGLE && angle < HEALTHY_ANGLE;
  }
}

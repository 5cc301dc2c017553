// Hopper-v4 (Gymnasium defaults, the rules D4RL's hopper data was generated under): reward = forward velocity
// + 1 (healthy reward, also paid on the step that ends the episode) - 1e-3 * |a|^2; the episode ends when the
// torso drops to z <= 0.7, tilts to |angle| >= 0.2, or any of qpos[2:], qvel leaves (-100, 100).
// Observation (11) = qpos[1:] (z, angle, thigh, leg, foot) and qvel clipped to [-10, 10].

import { HOPPER_XML } from './models/hopper.ts';
import { MujocoEnv, copyClipped, loadMujoco } from './mujoco.ts';
import type { Mujoco, StepPhysics } from './mujoco.ts';

const RESET_NOISE = 5e-3;
const HEALTHY_REWARD = 1;
const CTRL_COST = 1e-3;
const HEALTHY_Z_MIN = 0.7;
const HEALTHY_ANGLE = 0.2;
const HEALTHY_STATE = 100;
const VELOCITY_CLIP = 10;

export class HopperEnv extends MujocoEnv {
  private constructor(mj: Mujoco, seed?: number) {
    super(mj, { id: 'Hopper-v4', xml: HOPPER_XML, frameSkip: 4, obsDim: 11, maxEpisodeSteps: 1000 }, seed);
  }

  static async create(opts: { seed?: number } = {}): Promise<HopperEnv> {
    return new HopperEnv(await loadMujoco(), opts.seed);
  }

  protected addResetNoise(qpos: Float64Array, qvel: Float64Array): void {
    for (let i = 0; i < qpos.length; i++) qpos[i]! += this.rng.uniform(-RESET_NOISE, RESET_NOISE);
    for (let i = 0; i < qvel.length; i++) qvel[i]! += this.rng.uniform(-RESET_NOISE, RESET_NOISE);
  }

  protected observe(): Float64Array {
    const obs = new Float64Array(11);
    obs.set(this.qpos.subarray(1), 0);
    copyClipped(obs, 5, this.qvel, -VELOCITY_CLIP, VELOCITY_CLIP);
    return obs;
  }

  protected reward({ xVelocity, actionSquaredSum }: StepPhysics): number {
    return xVelocity + HEALTHY_REWARD - CTRL_COST * actionSquaredSum;
  }

  protected healthy(): boolean {
    const z = this.qpos[1]!;
    const angle = this.qpos[2]!;
    if (!(z > HEALTHY_Z_MIN) || !(angle > -HEALTHY_ANGLE && angle < HEALTHY_ANGLE)) return false;
    for (let i = 2; i < this.nq; i++) if (!inOpenRange(this.qpos[i]!, HEALTHY_STATE)) return false;
    for (let i = 0; i < this.nv; i++) if (!inOpenRange(this.qvel[i]!, HEALTHY_STATE)) return false;
    return true;
  }
}

function inOpenRange(x: number, bound: number): boolean {
  return x > -bound && x < bound;
}

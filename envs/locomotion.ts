// The MuJoCo locomotion tasks as one table: Gymnasium v4's rules (the ones D4RL's data was generated under) are
// the same shape for every planar robot (observation qpos[1:] then qvel, reward forward velocity + a healthy
// bonus - a control cost, termination when unhealthy, uniform reset noise on qpos), and a row of LOCOMOTION says
// how each task fills it in.
import { HALF_CHEETAH_XML } from './models/half_cheetah.ts';
import { HOPPER_XML } from './models/hopper.ts';
import { WALKER2D_XML } from './models/walker2d.ts';
import { MujocoEnv, copyClipped, loadMujoco, type Mujoco, type StepPhysics } from './mujoco.ts';

export interface LocomotionSpec {
  id: string;
  xml: string;
  /** mj_step calls per environment step. */
  frameSkip: number;
  obsDim: number;
  /** qpos + U(-resetNoise, resetNoise); qvel the same, or + resetNoise N(0, 1) with qvelNoise 'normal'. */
  resetNoise: number;
  qvelNoise: 'uniform' | 'normal';
  /** The observation's velocities clipped to [-velocityClip, velocityClip] (null: not clipped). */
  velocityClip: number | null;
  /** Paid every step, also the one that ends the episode. */
  healthyReward: number;
  ctrlCost: number;
  /** Healthy while zMin < z (< zMax), |angle| < maxAngle and, with stateBound, every qpos[2:] and qvel in (-stateBound, stateBound); null: always. */
  health: { zMin: number; zMax?: number; maxAngle: number; stateBound?: number } | null;
}

export const LOCOMOTION: Readonly<Record<'Hopper-v4' | 'Walker2d-v4' | 'HalfCheetah-v4', LocomotionSpec>> = Object.freeze({
  'Hopper-v4': {
    id: 'Hopper-v4', xml: HOPPER_XML, frameSkip: 4, obsDim: 11, resetNoise: 5e-3, qvelNoise: 'uniform', velocityClip: 10,
    healthyReward: 1, ctrlCost: 1e-3, health: { zMin: 0.7, maxAngle: 0.2, stateBound: 100 },
  },
  'Walker2d-v4': {
    id: 'Walker2d-v4', xml: WALKER2D_XML, frameSkip: 4, obsDim: 17, resetNoise: 5e-3, qvelNoise: 'uniform', velocityClip: 10,
    healthyReward: 1, ctrlCost: 1e-3, health: { zMin: 0.8, zMax: 2, maxAngle: 1 },
  },
  // never terminates: only the 1000-step limit ends an episode
  'HalfCheetah-v4': {
    id: 'HalfCheetah-v4', xml: HALF_CHEETAH_XML, frameSkip: 5, obsDim: 17, resetNoise: 0.1, qvelNoise: 'normal', velocityClip: null,
    healthyReward: 0, ctrlCost: 0.1, health: null,
  },
});

export class LocomotionEnv extends MujocoEnv {
  private readonly task: LocomotionSpec;

  private constructor(mj: Mujoco, task: LocomotionSpec, seed?: number) {
    super(mj, { id: task.id, xml: task.xml, frameSkip: task.frameSkip, obsDim: task.obsDim, maxEpisodeSteps: 1000 }, seed);
    this.task = task;
  }

  static async create(task: LocomotionSpec, opts: { seed?: number } = {}): Promise<LocomotionEnv> {
    return new LocomotionEnv(await loadMujoco(), task, opts.seed);
  }

  protected addResetNoise(qpos: Float64Array, qvel: Float64Array): void {
    const { resetNoise: noise, qvelNoise } = this.task;
    for (let i = 0; i < qpos.length; i++) qpos[i]! += this.rng.uniform(-noise, noise);
    for (let i = 0; i < qvel.length; i++) qvel[i]! += qvelNoise === 'normal' ? noise * this.rng.normal() : this.rng.uniform(-noise, noise);
  }

  protected observe(): Float64Array {
    const obs = new Float64Array(this.task.obsDim);
    obs.set(this.qpos.subarray(1), 0);
    const clip = this.task.velocityClip;
    if (clip === null) obs.set(this.qvel, this.nq - 1);
    else copyClipped(obs, this.nq - 1, this.qvel, -clip, clip);
    return obs;
  }

  protected reward({ xVelocity, actionSquaredSum }: StepPhysics): number {
    return xVelocity + this.task.healthyReward - this.task.ctrlCost * actionSquaredSum;
  }

  protected healthy(): boolean {
    const h = this.task.health;
    if (!h) return true;
    const z = this.qpos[1]!;
    const angle = this.qpos[2]!;
    if (!(z > h.zMin && (h.zMax === undefined || z < h.zMax)) || !(angle > -h.maxAngle && angle < h.maxAngle)) return false;
    if (h.stateBound === undefined) return true;
    const inRange = (x: number) => x > -h.stateBound! && x < h.stateBound!;
    for (let i = 2; i < this.nq; i++) if (!inRange(this.qpos[i]!)) return false;
    for (let i = 0; i < this.nv; i++) if (!inRange(this.qvel[i]!)) return false;
    return true;
  }
}

// MuJoCo (official WebAssembly build) as the simulator behind the Gymnasium locomotion environments: loads the
// module once, compiles each model once and shares it between copies (reference counted), and provides the base
// class holding one MjData with the step procedure of Gymnasium's MujocoEnv (ctrl <- action, mj_step frame_skip
// times, mj_rnePostConstraint). Embind handles are not garbage-collected, so close() frees what a copy holds.

import loadMujocoModule from '@mujoco/mujoco';
import type { MainModule, MjData, MjModel } from '@mujoco/mujoco';
import { HostRng } from '../engine/host-rng.ts';
import type { Env, StepResult } from './core.ts';

export type Mujoco = MainModule;

let modulePromise: Promise<Mujoco> | null = null;

/** The MuJoCo module, loaded on first use (about 0.1-0.2 s) and shared by every environment. */
export function loadMujoco(): Promise<Mujoco> {
  if (modulePromise === null) {
    modulePromise = loadMujocoModule().catch((err: unknown) => {
      modulePromise = null;
      throw err;
    });
  }
  return modulePromise;
}

interface SharedModel {
  model: MjModel;
  timestep: number;
  users: number;
}

const sharedModels = new Map<string, SharedModel>();

/** A compiled model borrowed from the cache; release() deletes it when its last user lets go. */
export interface ModelLease {
  readonly model: MjModel;
  /** The model's integration step (opt.timestep), read once at compilation. */
  readonly timestep: number;
  release(): void;
}

/** How many compiled models are alive (each is deleted when its last environment closes). */
export function liveModelCount(): number {
  return sharedModels.size;
}

/** Compiles `xml` (or reuses the compilation of an identical string) and lends it out. */
export function acquireModel(mj: Mujoco, xml: string): ModelLease {
  let shared = sharedModels.get(xml);
  if (shared === undefined) {
    const model = mj.MjModel.from_xml_string(xml);
    // `opt` hands out a new handle per access that refers into the model; deleting the handle leaves the model intact
    const opt = model.opt;
    const timestep = opt.timestep;
    opt.delete();
    shared = { model, timestep, users: 0 };
    sharedModels.set(xml, shared);
  }
  const entry = shared;
  entry.users++;
  let released = false;
  return {
    model: entry.model,
    timestep: entry.timestep,
    release() {
      if (released) return;
      released = true;
      entry.users--;
      if (entry.users === 0) {
        sharedModels.delete(xml);
        entry.model.delete();
      }
    },
  };
}

/** What a Gymnasium MuJoCo environment fixes besides its model and formulas. */
export interface MujocoEnvSpec {
  id: string;
  xml: string;
  /** mj_step calls per environment step. */
  frameSkip: number;
  obsDim: number;
  maxEpisodeSteps: number;
}

/** What the physics produced during one environment step, handed to the environment's reward rule. */
export interface StepPhysics {
  /** Forward velocity of the root, (qpos[0] after - qpos[0] before) / dt. */
  xVelocity: number;
  /** Sum of squared action entries, as passed (unclipped). */
  actionSquaredSum: number;
}

/**
 * One copy of a MuJoCo environment. Subclasses give the observation, reward, health and reset-noise rules;
 * reset and step follow Gymnasium's MujocoEnv: reset = mj_resetData, qpos0/zero velocity plus noise, mj_forward.
 */
export abstract class MujocoEnv implements Env {
  readonly id: string;
  readonly obsDim: number;
  readonly actDim: number;
  readonly actionLow: Float64Array;
  readonly actionHigh: Float64Array;
  readonly maxEpisodeSteps: number;
  readonly frameSkip: number;
  /** Seconds of simulated time per environment step (timestep * frameSkip). */
  readonly dt: number;
  readonly nq: number;
  readonly nv: number;

  protected readonly mj: Mujoco;
  protected readonly model: MjModel;
  protected rng: HostRng;
  protected readonly initQpos: Float64Array;
  private readonly lease: ModelLease;
  private data: MjData | null;
  // live views into the wasm heap; re-taken when heap growth detaches them (their length drops to 0)
  protected qpos: Float64Array;
  protected qvel: Float64Array;
  private ctrl: Float64Array;
  private elapsedSteps = 0;
  private started = false;

  protected constructor(mj: Mujoco, spec: MujocoEnvSpec, seed?: number) {
    this.mj = mj;
    this.lease = acquireModel(mj, spec.xml);
    this.model = this.lease.model;
    try {
      this.data = new mj.MjData(this.model);
    } catch (err) {
      this.lease.release();
      throw new Error(`${spec.id}: could not create simulator data (${errorText(err)}); close unused environments to free wasm memory`);
    }
    this.id = spec.id;
    this.obsDim = spec.obsDim;
    this.maxEpisodeSteps = spec.maxEpisodeSteps;
    this.frameSkip = spec.frameSkip;
    this.dt = this.lease.timestep * spec.frameSkip;
    this.nq = this.model.nq;
    this.nv = this.model.nv;
    this.actDim = this.model.nu;
    const ctrlRange = Float64Array.from(this.model.actuator_ctrlrange as Float64Array);
    this.actionLow = new Float64Array(this.actDim);
    this.actionHigh = new Float64Array(this.actDim);
    for (let i = 0; i < this.actDim; i++) {
      this.actionLow[i] = ctrlRange[2 * i]!;
      this.actionHigh[i] = ctrlRange[2 * i + 1]!;
    }
    this.initQpos = Float64Array.from(this.model.qpos0 as Float64Array);
    this.rng = new HostRng(seed ?? entropySeed());
    this.qpos = this.data.qpos as Float64Array;
    this.qvel = this.data.qvel as Float64Array;
    this.ctrl = this.data.ctrl as Float64Array;
  }

  /** Adds the environment's reset noise to the initial state (qpos0, zero velocities) in place. */
  protected abstract addResetNoise(qpos: Float64Array, qvel: Float64Array): void;
  /** The observation of the current state (a fresh array). */
  protected abstract observe(): Float64Array;
  /** The step's reward, from the physics summary and the current (post-step) state. */
  protected abstract reward(physics: StepPhysics): number;
  /** The health rule on the current state. */
  protected abstract healthy(): boolean;

  /** Whether the current state is healthy; a step that ends unhealthy ends the episode (terminated). */
  isHealthy(): boolean {
    this.liveData();
    return this.healthy();
  }

  reset(seed?: number): Float64Array {
    const data = this.liveData();
    if (seed !== undefined) this.rng = new HostRng(seed);
    this.mj.mj_resetData(this.model, data);
    const qpos = Float64Array.from(this.initQpos);
    const qvel = new Float64Array(this.nv);
    this.addResetNoise(qpos, qvel);
    this.writeState(qpos, qvel);
    this.elapsedSteps = 0;
    this.started = true;
    return this.observe();
  }

  step(action: ArrayLike<number>): StepResult {
    const data = this.liveData();
    if (!this.started) throw new Error(`${this.id}.step: call reset() before the first step`);
    if (action.length !== this.actDim) {
      throw new Error(`${this.id}.step: expected ${this.actDim} action values, got ${action.length}`);
    }
    let actionSquaredSum = 0;
    for (let i = 0; i < this.actDim; i++) {
      const a = action[i]!;
      if (!Number.isFinite(a)) throw new Error(`${this.id}.step: action[${i}] is ${a}`);
      this.ctrl[i] = a;
      actionSquaredSum += a * a;
    }
    const xBefore = this.qpos[0]!;
    for (let k = 0; k < this.frameSkip; k++) this.mj.mj_step(this.model, data);
    // Gymnasium calls this so cfrc_ext and friends are current; kept for identical data even though no rule here reads them
    this.mj.mj_rnePostConstraint(this.model, data);
    const xVelocity = (this.qpos[0]! - xBefore) / this.dt;
    this.elapsedSteps++;
    return {
      obs: this.observe(),
      reward: this.reward({ xVelocity, actionSquaredSum }),
      terminated: !this.healthy(),
      truncated: this.elapsedSteps >= this.maxEpisodeSteps,
    };
  }

  /** Copies of the generalised positions and velocities. */
  physicsState(): { qpos: Float64Array; qvel: Float64Array } {
    this.liveData();
    return { qpos: this.qpos.slice(), qvel: this.qvel.slice() };
  }

  /**
   * Sets positions and velocities and recomputes derived quantities (Gymnasium's set_state); the episode's step
   * count and the solver's warm start are kept. Returns the observation of the new state.
   */
  setPhysicsState(qpos: ArrayLike<number>, qvel: ArrayLike<number>): Float64Array {
    this.liveData();
    if (qpos.length !== this.nq || qvel.length !== this.nv) {
      throw new Error(`${this.id}.setPhysicsState: expected qpos ${this.nq} and qvel ${this.nv} values, got ${qpos.length} and ${qvel.length}`);
    }
    this.writeState(qpos, qvel);
    this.started = true;
    return this.observe();
  }

  /** Steps taken in the current episode. */
  get episodeSteps(): number {
    return this.elapsedSteps;
  }

  get closed(): boolean {
    return this.data === null;
  }

  close(): void {
    if (this.data === null) return;
    this.data.delete();
    this.data = null;
    this.lease.release();
  }

  private writeState(qpos: ArrayLike<number>, qvel: ArrayLike<number>): void {
    const data = this.liveData();
    for (let i = 0; i < this.nq; i++) this.qpos[i] = qpos[i]!;
    for (let i = 0; i < this.nv; i++) this.qvel[i] = qvel[i]!;
    this.mj.mj_forward(this.model, data);
  }

  /** The MjData, with the cached heap views refreshed if the wasm memory grew since they were taken. */
  private liveData(): MjData {
    const data = this.data;
    if (data === null) throw new Error(`${this.id}: environment is closed`);
    if (this.qpos.length === 0) {
      this.qpos = data.qpos as Float64Array;
      this.qvel = data.qvel as Float64Array;
      this.ctrl = data.ctrl as Float64Array;
    }
    return data;
  }
}

/** A fresh seed when none is given, as Gymnasium seeds from OS entropy. */
function entropySeed(): number {
  return Math.floor(Math.random() * 2 ** 32);
}

function errorText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/** Writes `values` clipped to [lo, hi] into `out` from `offset`. */
export function copyClipped(out: Float64Array, offset: number, values: Float64Array, lo: number, hi: number): void {
  for (let i = 0; i < values.length; i++) out[offset + i] = Math.min(hi, Math.max(lo, values[i]!));
}

// The environment interface every simulator in envs/ implements, and a vector of copies stepped together.
// Semantics follow Gymnasium: reset(seed) starts an episode, step returns (obs, reward, terminated, truncated);
// `terminated` is a true end of the MDP (the robot fell), `truncated` is the time limit, which each environment
// enforces itself at `maxEpisodeSteps`.

export interface StepResult {
  obs: Float64Array;
  reward: number;
  terminated: boolean;
  truncated: boolean;
}

export interface Env {
  /** Gymnasium id this environment reproduces, e.g. 'Hopper-v4'. */
  readonly id: string;
  readonly obsDim: number;
  readonly actDim: number;
  readonly actionLow: Float64Array;
  readonly actionHigh: Float64Array;
  readonly maxEpisodeSteps: number;
  /** Starts an episode; a seed reseeds the environment's own generator (reset noise), none continues it. */
  reset(seed?: number): Float64Array;
  /** Advances one step. The action is used as given (clipping, if any, is the simulator's rule). */
  step(action: ArrayLike<number>): StepResult;
  /** The simulator's generalised positions and velocities (MuJoCo qpos/qvel), recorded as infos/qpos, infos/qvel. */
  physicsState?(): { qpos: Float64Array; qvel: Float64Array };
  /** Frees simulator memory; the environment is unusable afterwards. */
  close(): void;
}

export interface VecStepResult {
  /** [num * obsDim] next observations; for an environment whose episode just ended, its reset observation. */
  obs: Float32Array;
  rewards: Float64Array;
  terminated: Uint8Array;
  truncated: Uint8Array;
  /** The last observation of each episode that ended on this step (before the automatic reset), else null. */
  finalObs: (Float64Array | null)[];
}

/**
 * N copies of one environment stepped together, observations packed row-major into one Float32Array so a batch
 * goes to the GPU policy in one write. Episodes that end are reset at once (Gymnasium's same-step autoreset):
 * `obs` then holds the new episode's first observation and `finalObs` the old episode's last one.
 */
export class VecEnv {
  readonly envs: readonly Env[];
  readonly num: number;
  readonly obsDim: number;
  readonly actDim: number;

  constructor(envs: readonly Env[]) {
    if (envs.length === 0) throw new Error('VecEnv: needs at least one environment');
    const first = envs[0]!;
    for (const env of envs) {
      if (env.obsDim !== first.obsDim || env.actDim !== first.actDim) {
        throw new Error(`VecEnv: all environments must share dimensions; ${env.id} has obs ${env.obsDim}, act ${env.actDim}, ` +
          `${first.id} has obs ${first.obsDim}, act ${first.actDim}`);
      }
    }
    this.envs = envs;
    this.num = envs.length;
    this.obsDim = first.obsDim;
    this.actDim = first.actDim;
  }

  /** Resets every copy; with a seed, copy i gets seed + i, and later automatic resets continue each copy's stream. */
  reset(seed?: number): Float32Array {
    const obs = new Float32Array(this.num * this.obsDim);
    this.envs.forEach((env, i) => obs.set(env.reset(seed === undefined ? undefined : seed + i), i * this.obsDim));
    return obs;
  }

  step(actions: ArrayLike<number>): VecStepResult {
    if (actions.length !== this.num * this.actDim) {
      throw new Error(`VecEnv.step: expected ${this.num} x ${this.actDim} = ${this.num * this.actDim} action values, got ${actions.length}`);
    }
    const out: VecStepResult = {
      obs: new Float32Array(this.num * this.obsDim),
      rewards: new Float64Array(this.num),
      terminated: new Uint8Array(this.num),
      truncated: new Uint8Array(this.num),
      finalObs: new Array<Float64Array | null>(this.num).fill(null),
    };
    const action = new Float64Array(this.actDim);
    this.envs.forEach((env, i) => {
      for (let j = 0; j < this.actDim; j++) action[j] = actions[i * this.actDim + j]!;
      const r = env.step(action);
      out.rewards[i] = r.reward;
      out.terminated[i] = r.terminated ? 1 : 0;
      out.truncated[i] = r.truncated ? 1 : 0;
      if (r.terminated || r.truncated) {
        out.finalObs[i] = r.obs;
        out.obs.set(env.reset(), i * this.obsDim);
      } else {
        out.obs.set(r.obs, i * this.obsDim);
      }
    });
    return out;
  }

  close(): void {
    for (const env of this.envs) env.close();
  }
}

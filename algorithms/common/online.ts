// Online RL: an agent interacting with vector environments, its transitions kept in a GPU replay store and its
// gradient updates recorded once per variant and replayed. The loop (warm-up with uniform random actions,
// updates per transition, periodic deterministic evaluation, progress, log, checkpoints holding the replay
// store, resume) is shared by every online agent (SAC, SDAC) and by the dataset recipe, which watches the
// transitions and evaluations through hooks.
import type { Module } from '../../engine/nn.ts';
import type { Tensor } from '../../engine/tensor.ts';
import type { ReplayStore } from '../../datasets/replay.ts';
import type { CheckpointParts } from './run.ts';
import type { RunContext } from './offline.ts';

/** What the loop needs from an online agent. */
export interface OnlineAgent {
  readonly obsDim: number;
  readonly actDim: number;
  /** The policy network alone: the dataset recipe saves it (engine/safetensors saveModule) as a policy snapshot
   *  and loads snapshots back into it (loadModule) to collect data. */
  readonly actor: Module;
  /** Everything a checkpoint holds (networks incl. targets, optimisers, generators). */
  readonly parts: CheckpointParts;
  /** Actions in [-1, 1] for the rows of obs [n, obsDim] (raw, unnormalised observations). explore = true: the
   *  behaviour policy used to collect data (SAC: a sample; SDAC: best-of-particles plus noise); false: the
   *  deterministic evaluation policy. Eager; called under tidy by the loop, which reads the result back. */
  act(obs: Tensor, explore: boolean): Tensor;
  /** One gradient update on a minibatch the agent samples from `store` itself. Returns its losses as GPU
   *  tensors (scalars or [1]). Recorded once per variant and replayed: no readbacks, no host writes, random
   *  numbers from Generators, learning rates from AdamW schedules, per-step scalars (temperature) on the GPU. */
  update(store: ReplayStore, variant: number): Record<string, Tensor>;
  /** Variant of the 0-based update index u (e.g. 1 when delayed actor/target/temperature updates also run). */
  updateVariant?(u: number): number;
  /** Scalars worth logging at log points (e.g. the temperature alpha); may read back. */
  stats?(): Promise<Record<string, number>>;
  dispose(): void;
}

export interface OnlineConfig {
  /** Id or alias understood by envs/registry.ts. */
  env: string;
  seed: number;
  /** Vector envs stepped together (SAC default 1, SDAC default 5). */
  numEnvs: number;
  /** Total environment transitions (all copies together). */
  envSteps: number;
  /** Transitions collected with uniform random actions before any update. */
  warmupSteps: number;
  /** Gradient updates per collected transition (default 1); replayed with replay(k). */
  updatesPerStep: number;
  replayCapacity: number;
  /** Env transitions between evaluations (0: only at the end). */
  evalEvery: number;
  evalEpisodes: number;
  /** Env transitions between progress/log lines. */
  logEvery: number;
  /** Env transitions between checkpoints. */
  checkpointEvery: number;
}

/** Host copies of what the loop collects, in collection order, for the dataset recipe. Actions in env units. */
export interface CollectedTransitions {
  observations: Float32Array;
  actions: Float32Array;
  rewards: Float32Array;
  nextObservations: Float32Array;
  terminals: Uint8Array;
  timeouts: Uint8Array;
  /** Which vector-env copy each row came from. */
  envIndex: Uint16Array;
}

export interface OnlineHooks {
  onTransitions?(t: CollectedTransitions, envStepsSoFar: number): void;
  onEvaluation?(r: { envSteps: number; mean: number; std: number; returns: number[] }): void | Promise<void>;
}

export interface OnlineResult {
  envSteps: number;
  updates: number;
  ms: number;
  evals: { envSteps: number; mean: number; std: number }[];
}

export async function trainOnline(
  agent: OnlineAgent,
  cfg: OnlineConfig,
  ctx: RunContext,
  opts: { hooks?: OnlineHooks; checkpoint?: string; resume?: boolean } = {},
): Promise<OnlineResult> {
  void agent; void cfg; void ctx; void opts;
  throw new Error('trainOnline: not implemented yet');
}

// Scoring a policy in the environment a dataset was recorded in: observations z-scored with the training
// statistics, actions mapped to the environment's box, the D4RL-normalised score.
import type { Tensor } from '../../engine/tensor.ts';
import { normalizeObservations, normalizedScore, type ObservationStats } from '../../datasets/presets.ts';
import { evaluate, gpuPolicy, type BatchPolicy, type EvaluateResult } from '../../envs/evaluate.ts';
import { makeEnv } from '../../envs/registry.ts';
import type { ActionBox } from './action-box.ts';

/** The evaluation settings evaluatePolicy reads. */
export interface EvalConfig {
  env: string;
  evalEpisodes: number;
  /** Episode i is reset with evalSeed + i. */
  evalSeed: number;
}

/** A policy on raw environment observations: z-scored with the training statistics, mapped to the env's box. */
export function envPolicy(act: (obs: Tensor) => Tensor, stats: ObservationStats | null, box: ActionBox): BatchPolicy {
  const gpu = gpuPolicy(act);
  return async (obs, n) => box.fromUnit(await gpu(stats ? normalizeObservations(obs, stats) : obs, n));
}

export async function evaluatePolicy(policy: BatchPolicy, cfg: EvalConfig): Promise<EvaluateResult> {
  return evaluate(policy, () => makeEnv(cfg.env), {
    episodes: cfg.evalEpisodes,
    numEnvs: Math.min(cfg.evalEpisodes, 20),
    seed: cfg.evalSeed,
    normalize: (ret) => normalizedScore(cfg.env, ret),
  });
}

// SRPO's settings: the paper code's defaults (thu-ml/SRPO train_behavior.py / train_critic.py / train_policy.py),
// its per-task temperature beta, and a quick preset that runs the three phases end to end on the repository's
// Pendulum dataset in minutes on a software GPU.
import type { RewardPreset } from '../../datasets/presets.ts';
import type { SrpoWeighting } from '../../kernels/srpo.ts';
import { TASK_ENVS } from '../../datasets/builtin.ts';
import { PENDULUM_QUICK_RUN } from '../common/pendulum-quick.ts';

export interface SrpoConfig {
  /** Preset name: a D4RL task (hopper-medium-v2, ...) or 'pendulum-quick'. */
  task: string;
  /** HDF5 file in D4RL's layout, or a built-in dataset name (see BUILTIN_DATASETS). */
  dataset: string;
  /** Environment id for evaluation (envs/registry.ts). */
  env: string;
  seed: number;

  // data
  rewardPreset: RewardPreset;
  /** z-score observations with the dataset's statistics (the same transform at evaluation). */
  normalizeObs: boolean;

  // phase 1: behaviour model (ScoreNet_IDQL on the VP-SDE)
  behaviorSteps: number;
  behaviorBatch: number;
  behaviorLr: number;
  behaviorHidden: number;
  behaviorBlocks: number;
  behaviorDropout: number;
  /** Gaussian Fourier features of the time (64 in the paper) and the width of the time-conditioning MLP (128). */
  behaviorEmbedDim: number;
  behaviorCondDim: number;

  // phase 2: IQL critic
  criticSteps: number;
  criticBatch: number;
  criticLr: number;
  criticHidden: number[];
  expectile: number;
  discount: number;
  /** Polyak rate of the target Q. */
  targetTau: number;

  // phase 3: policy extraction
  actorSteps: number;
  actorBatch: number;
  actorLr: number;
  actorHidden: number;
  /** Hidden layers of the actor MLP (2 on locomotion, 4 on antmaze). */
  actorLayers: number;
  /** Temperature: weight of the critic's action gradient. */
  beta: number;
  weighting: SrpoWeighting;
  /** eps - z instead of eps. */
  baseline: boolean;
  /** Divide the critic's action gradient by its RMS over the action dims (antmaze). */
  normalizeQGrad: boolean;
  /** Diffusion time range of the score regulariser. */
  tMin: number;
  tMax: number;

  // evaluation and bookkeeping
  /** Actor steps between evaluations (0: only at the end). */
  evalEvery: number;
  evalEpisodes: number;
  /** Episode i of an evaluation is reset with evalSeed + i (SRPO: 1001 + i). */
  evalSeed: number;
  /** Evaluate the behaviour model itself (DPM-Solver samples, one per state) as a behaviour-cloning baseline. */
  bcEval: boolean;
  /** DPM-Solver++ steps for behaviour sampling. */
  bcSolverSteps: number;
  /** Steps between log lines (losses are read back and checked for NaN/Inf this often). */
  logEvery: number;
  /** Steps between checkpoints within a phase (each phase also writes one at its end). */
  checkpointEvery: number;
}

/**
 * The paper's settings for D4RL locomotion: behaviour 2M steps at batch 2048 with AdamW 3e-4; critic 1.5M steps
 * at batch 256, [256, 256] ReLU, expectile 0.7, discount 0.99, Polyak 0.005; actor 1M steps at batch 256, Adam
 * 3e-4 with cosine annealing, [256, 256] ReLU + Tanh, w(t) = sigma_t^2, t in [0.02, 0.98]; 20 evaluation
 * episodes every 20k steps. Observations as the files hold them: the paper's code does not z-score them (its
 * networks take raw D4RL observations; the quick presets z-score).
 */
export const PAPER_DEFAULTS: Omit<SrpoConfig, 'task' | 'dataset' | 'env' | 'beta'> = Object.freeze({
  seed: 0,
  rewardPreset: 'iql_locomotion',
  normalizeObs: false,
  behaviorSteps: 2_000_000,
  behaviorBatch: 2048,
  behaviorLr: 3e-4,
  behaviorHidden: 256,
  behaviorBlocks: 3,
  behaviorDropout: 0.1,
  behaviorEmbedDim: 64,
  behaviorCondDim: 128,
  criticSteps: 1_500_000,
  criticBatch: 256,
  criticLr: 3e-4,
  criticHidden: [256, 256],
  expectile: 0.7,
  discount: 0.99,
  targetTau: 0.005,
  actorSteps: 1_000_000,
  actorBatch: 256,
  actorLr: 3e-4,
  actorHidden: 256,
  actorLayers: 2,
  weighting: 'VDS',
  baseline: false,
  normalizeQGrad: false,
  tMin: 0.02,
  tMax: 0.98,
  evalEvery: 20_000,
  evalEpisodes: 20,
  evalSeed: 1001,
  bcEval: false,
  bcSolverSteps: 15,
  logEvery: 1000,
  checkpointEvery: 50_000,
}) as Omit<SrpoConfig, 'task' | 'dataset' | 'env' | 'beta'>;

/** beta per D4RL task ("temperature_coefficients" of the paper's code), all -v2. */
export const TASK_BETA: Readonly<Record<string, number>> = Object.freeze({
  'halfcheetah-medium-v2': 0.2,
  'halfcheetah-medium-replay-v2': 0.2,
  'halfcheetah-medium-expert-v2': 0.01,
  'hopper-medium-v2': 0.05,
  'hopper-medium-replay-v2': 0.2,
  'hopper-medium-expert-v2': 0.01,
  'walker2d-medium-v2': 0.05,
  'walker2d-medium-replay-v2': 0.5,
  'walker2d-medium-expert-v2': 0.1,
  'antmaze-umaze-v2': 0.02,
  'antmaze-umaze-diverse-v2': 0.04,
  'antmaze-medium-play-v2': 0.08,
  'antmaze-medium-diverse-v2': 0.05,
  'antmaze-large-play-v2': 0.06,
  'antmaze-large-diverse-v2': 0.05,
});

/**
 * The default run: the shipped Pendulum dataset (250 swing-up episodes with action noise of std 3), small
 * networks and a few thousand steps per phase, so the three phases and the evaluation finish in minutes on a
 * software GPU.
 *
 * Rewards use the 'minmax' preset (Pendulum's per-step cost in [-16.3, 0] mapped onto [-1, 1]) rather than
 * iql_locomotion (x1000 / return range = x1.11 here) or none: with 200-step episodes and discount 0.99 those
 * leave Q spanning about +-1100, which Adam cannot fit in a few thousand steps, while minmax values span about
 * +-100. With the same critic settings the greedy argmax-Q policy scored 88-101 with minmax and 47 with
 * iql_locomotion. The critic also tracks its target faster (Polyak 0.1, batch 1024, lr 3e-3) so values
 * propagate over the 100-step horizon within the phase. beta 0.1 was the best of 0.02-1 on this data (0.02
 * leaves the noisy behaviour's modes in charge; 0.3 and above over-trust the critic's action gradient), and
 * 4000 actor steps scored 101.5-102.7 over seeds 0-2 where 2000 left one seed at 88.
 */
export const QUICK_PENDULUM: SrpoConfig = Object.freeze({
  ...PAPER_DEFAULTS,
  ...PENDULUM_QUICK_RUN,
  behaviorSteps: 3000,
  behaviorBatch: 256,
  behaviorLr: 1e-3,
  behaviorHidden: 64,
  behaviorBlocks: 2,
  behaviorEmbedDim: 32,
  behaviorCondDim: 32,
  criticSteps: 5000,
  criticBatch: 1024,
  criticLr: 3e-3,
  criticHidden: [64, 64],
  targetTau: 0.1,
  actorSteps: 4000,
  actorBatch: 256,
  actorLr: 1e-3,
  actorHidden: 64,
  actorLayers: 2,
  beta: 0.1,
  evalEvery: 2000,
}) as SrpoConfig;

/**
 * A short Hopper run on the repository's small expert fixture (2 episodes, 2000 transitions; no D4RL download):
 * the quick preset's network sizes, hopper-medium-expert's beta 0.01, 'minmax' rewards (iql_locomotion is
 * undefined here: both episodes return about 3717, so 1000 / (max - min) explodes), 5 evaluation episodes.
 * The score weighting w(t) = alpha_t / sigma_t replaces sigma_t^2: after a few thousand behaviour steps the
 * model's predictions at large t, which sigma_t^2 weights most, still lean toward the actions of other states,
 * and the actor inherited that bias (measured on the same behaviour model and critic: sigma_t^2 scored 7,
 * alpha_t / sigma_t 83, stable 80; the diffusion samples themselves scored 103).
 */
export const QUICK_HOPPER: SrpoConfig = Object.freeze({
  ...QUICK_PENDULUM,
  task: 'hopper-quick',
  dataset: 'hopper-expert-v4',
  env: 'Hopper-v4',
  beta: 0.01,
  weighting: 'score',
  behaviorSteps: 8000,
  criticSteps: 4000,
  criticBatch: 256,
  actorSteps: 4000,
  evalEvery: 0,
  evalEpisodes: 5,
}) as SrpoConfig;

const QUICK_PRESETS: Readonly<Record<string, SrpoConfig>> = Object.freeze({ 'pendulum-quick': QUICK_PENDULUM, 'hopper-quick': QUICK_HOPPER });

export const TASK_NAMES: readonly string[] = [...Object.keys(QUICK_PRESETS), ...Object.keys(TASK_BETA)];

/**
 * The configuration a task name selects: a quick preset ('pendulum-quick', 'hopper-quick'), or a D4RL task with the paper's settings and its beta
 * (antmaze: expectile 0.9, iql_antmaze rewards, 4 actor layers, normalised Q gradient). D4RL tasks have no
 * shipped data: pass the file with --dataset.
 */
export function taskConfig(task: string): SrpoConfig {
  const quick = QUICK_PRESETS[task];
  if (quick) return { ...quick, criticHidden: [...quick.criticHidden] };
  const beta = TASK_BETA[task];
  if (beta === undefined) {
    const err = new Error(`unknown task '${task}'; known: ${TASK_NAMES.join(', ')}`);
    (err as { userFacing?: boolean }).userFacing = true;
    throw err;
  }
  const family = task.split('-')[0]!;
  const antmaze = family === 'antmaze';
  return {
    ...PAPER_DEFAULTS,
    criticHidden: [...PAPER_DEFAULTS.criticHidden],
    task,
    dataset: '',
    env: TASK_ENVS[family] ?? '',
    beta,
    ...(antmaze ? { expectile: 0.9, rewardPreset: 'iql_antmaze' as const, actorLayers: 4, normalizeQGrad: true } : {}),
  };
}

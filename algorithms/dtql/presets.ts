// DTQL's settings: the paper code's defaults and per-task table (TianyuCodings/Diffusion_Trusted_Q_Learning
// main.py, agents/dtql.py), and a quick preset that runs pretraining, training and evaluation on the repository's
// Pendulum dataset in minutes on a software GPU.
import type { RewardPreset } from '../../datasets/presets.ts';
import { BUILTIN_DATASETS, envForDataset } from '../srpo/presets.ts';

export { BUILTIN_DATASETS, envForDataset };

export interface DtqlConfig {
  /** Preset name: a D4RL task (hopper-medium-v2, ...) or 'pendulum-quick'. */
  task: string;
  /** HDF5 file in D4RL's layout, or a built-in dataset name (see BUILTIN_DATASETS). */
  dataset: string;
  /** Environment id for evaluation (envs/registry.ts). */
  env: string;
  seed: number;

  // data
  rewardPreset: RewardPreset;
  /** z-score observations with the dataset's statistics (the same transform at evaluation). The paper: off. */
  normalizeObs: boolean;

  // schedule: pretraining (behaviour diffusion + critic), then training (critic, behaviour, actor per step)
  pretrainSteps: number;
  trainSteps: number;
  batch: number;
  /** Adam learning rate of the behaviour model and the actor. */
  lr: number;
  /** Cosine decay to 0 over the training phase for all three optimisers (the pretraining keeps its rate). */
  lrDecay: boolean;

  // behaviour diffusion (EDM, DTQLDenoiserNet)
  behaviorHidden: number;

  // one-step actor (Gaussian, tanh-squashed)
  actorHidden: number;
  actorLayers: number;
  /** Weight of the trust-region loss. */
  alpha: number;
  /** Weight of the data actions' negative log-likelihood under the actor (0 on MuJoCo, 1 on AntMaze). */
  gamma: number;

  // IQL critic (twin Q with LayerNorm + Mish, V regressed to the online Q)
  criticHidden: number[];
  /** The paper keeps the critic at 3e-4 whatever the task's lr. */
  criticLr: number;
  expectile: number;
  discount: number;
  /** Polyak rate of the target Q (used only to pick among the candidate actions). */
  targetTau: number;

  // evaluation and bookkeeping
  /** Candidate actions per state at evaluation, one picked from softmax(min Q_target). */
  candidates: number;
  /** Training steps between evaluations (0: only at the end). */
  evalEvery: number;
  evalEpisodes: number;
  /** Episode i of an evaluation is reset with evalSeed + i. */
  evalSeed: number;
  /** Evaluate behaviour cloning baselines (the diffusion model's samples and an MSE-fitted MLP). */
  bcEval: boolean;
  /** EDM Heun network evaluations per behaviour sample. */
  bcSamplerSteps: number;
  /** Steps of the MSE-fitted MLP baseline. */
  bcMlpSteps: number;
  /** Steps between log lines (losses are read back and checked for NaN/Inf this often). */
  logEvery: number;
  /** Steps between checkpoints within a phase (each phase also writes one at its end). */
  checkpointEvery: number;
}

/**
 * The paper's settings for D4RL locomotion: 50k pretraining steps, 1M training steps at batch 256, behaviour and
 * actor Adam 3e-4, critic Adam 3e-4, [256 x 3] everywhere, expectile 0.7, discount 0.99, Polyak 0.005, 1024
 * candidates at evaluation, raw rewards and observations, 10 episodes every 50k steps.
 */
export const PAPER_DEFAULTS: Omit<DtqlConfig, 'task' | 'dataset' | 'env'> = Object.freeze({
  seed: 0,
  rewardPreset: 'none',
  normalizeObs: false,
  pretrainSteps: 50_000,
  trainSteps: 1_000_000,
  batch: 256,
  lr: 3e-4,
  lrDecay: false,
  behaviorHidden: 256,
  actorHidden: 256,
  actorLayers: 3,
  alpha: 1,
  gamma: 0,
  criticHidden: [256, 256, 256],
  criticLr: 3e-4,
  expectile: 0.7,
  discount: 0.99,
  targetTau: 0.005,
  candidates: 1024,
  evalEvery: 50_000,
  evalEpisodes: 10,
  evalSeed: 100,
  bcEval: false,
  bcSamplerSteps: 18,
  bcMlpSteps: 10_000,
  logEvery: 1000,
  checkpointEvery: 50_000,
}) as Omit<DtqlConfig, 'task' | 'dataset' | 'env'>;

export interface TaskSettings {
  lr: number;
  alpha: number;
  gamma: number;
  lrDecay: boolean;
  /** Training epochs of 1000 steps. */
  epochs: number;
  batch: number;
  expectile: number;
}

const t = (lr: number, alpha: number, gamma: number, lrDecay: boolean, epochs: number, batch: number, expectile: number): TaskSettings =>
  Object.freeze({ lr, alpha, gamma, lrDecay, epochs, batch, expectile });

/** The paper code's offline_hyperparameters (the -v2 / -v1 / -v0 names its main.py lists). */
export const TASK_SETTINGS: Readonly<Record<string, TaskSettings>> = Object.freeze({
  'halfcheetah-medium-v2': t(3e-4, 1, 0, false, 1000, 256, 0.7),
  'halfcheetah-medium-replay-v2': t(3e-4, 5, 0, false, 1000, 256, 0.7),
  'halfcheetah-medium-expert-v2': t(3e-4, 50, 0, false, 1000, 256, 0.7),
  'hopper-medium-v2': t(1e-4, 5, 0, true, 1000, 256, 0.7),
  'hopper-medium-replay-v2': t(3e-4, 5, 0, false, 1000, 256, 0.7),
  'hopper-medium-expert-v2': t(3e-4, 20, 0, false, 1000, 256, 0.7),
  'walker2d-medium-v2': t(3e-4, 5, 0, true, 1000, 256, 0.7),
  'walker2d-medium-replay-v2': t(3e-4, 5, 0, true, 1000, 256, 0.7),
  'walker2d-medium-expert-v2': t(3e-4, 5, 0, true, 1000, 256, 0.7),
  'antmaze-umaze-v2': t(3e-4, 1, 1, false, 500, 2048, 0.9),
  'antmaze-umaze-diverse-v2': t(3e-5, 1, 1, true, 500, 2048, 0.9),
  'antmaze-medium-play-v2': t(3e-4, 1, 1, false, 400, 2048, 0.9),
  'antmaze-medium-diverse-v2': t(3e-4, 1, 1, false, 400, 2048, 0.9),
  'antmaze-large-play-v2': t(3e-4, 1, 1, false, 350, 2048, 0.9),
  'antmaze-large-diverse-v2': t(3e-4, 0.5, 1, false, 300, 2048, 0.9),
  'pen-human-v1': t(3e-5, 1500, 0, true, 300, 256, 0.9),
  'pen-cloned-v1': t(1e-5, 1500, 0, false, 200, 256, 0.7),
  'kitchen-complete-v0': t(1e-4, 200, 0, true, 500, 256, 0.7),
  'kitchen-partial-v0': t(1e-4, 100, 0, true, 1000, 256, 0.7),
  'kitchen-mixed-v0': t(3e-4, 200, 0, true, 500, 256, 0.7),
});

/**
 * The default run: the shipped Pendulum dataset (250 swing-up episodes with action noise), networks of width 64
 * and a few thousand steps per phase, so both phases and the evaluations finish in minutes on a software GPU.
 *
 * What differs from the paper, and why: rewards use the 'minmax' preset (Pendulum's per-step cost mapped onto
 * [-1, 1]; raw costs leave Q spanning about -1500..0, which Adam cannot fit in a few thousand steps) and
 * observations are z-scored, as in SRPO's quick preset; the critic learns at 3e-3 with batch 256 and its target
 * tracks at Polyak 0.05 so that values propagate over the swing-up horizon within the run. The behaviour model
 * and actor learn at 1e-3.
 *
 * Measured (seed 0, 10 episodes): this preset does not yet beat behaviour cloning. After 1000 / 2000 training
 * steps the policy scored 18.8 (alpha 1), 17.2 / 0.4 (alpha 5) and -17.6 / 11.6 (alpha 20), against 94.5 for the
 * MSE-fitted MLP and 59.8 for the dataset; the policy's mean action sits on the bounds for 63% of the data's
 * states (the noisy behaviour data puts much of its mass on the bounds, so the trust region does not hold the
 * critic's push there). Selection among 64 candidates, one sample and the mean action all scored alike.
 */
export const QUICK_PENDULUM: DtqlConfig = Object.freeze({
  ...PAPER_DEFAULTS,
  task: 'pendulum-quick',
  dataset: 'pendulum-medium-v1',
  env: 'Pendulum-v1',
  rewardPreset: 'minmax',
  normalizeObs: true,
  pretrainSteps: 2000,
  trainSteps: 2000,
  batch: 256,
  lr: 1e-3,
  behaviorHidden: 64,
  actorHidden: 64,
  actorLayers: 3,
  alpha: 1,
  gamma: 0,
  criticHidden: [64, 64, 64],
  criticLr: 3e-3,
  targetTau: 0.05,
  candidates: 64,
  evalEvery: 1000,
  evalEpisodes: 20,
  evalSeed: 1001,
  bcEval: true,
  bcMlpSteps: 3000,
  logEvery: 100,
  checkpointEvery: 1000,
}) as DtqlConfig;

const QUICK_PRESETS: Readonly<Record<string, DtqlConfig>> = Object.freeze({ 'pendulum-quick': QUICK_PENDULUM });

export const TASK_NAMES: readonly string[] = [...Object.keys(QUICK_PRESETS), ...Object.keys(TASK_SETTINGS)];

/** The project's environment for a task family (null where the project has none: antmaze, pen, kitchen). */
function envForTask(task: string): string {
  return envForDataset(task) ?? '';
}

/**
 * The configuration a task name selects: the quick preset, or a D4RL task with the paper's settings and its row
 * of the table (antmaze: iql_antmaze rewards, 100 evaluation episodes). D4RL tasks have no shipped data: pass
 * the file with --dataset.
 */
export function taskConfig(task: string): DtqlConfig {
  const quick = QUICK_PRESETS[task];
  if (quick) return { ...quick, criticHidden: [...quick.criticHidden] };
  const s = TASK_SETTINGS[task];
  if (!s) {
    const err = new Error(`unknown task '${task}'; known: ${TASK_NAMES.join(', ')}`);
    (err as { userFacing?: boolean }).userFacing = true;
    throw err;
  }
  const family = task.split('-')[0]!;
  return {
    ...PAPER_DEFAULTS,
    criticHidden: [...PAPER_DEFAULTS.criticHidden],
    task,
    dataset: '',
    env: envForTask(task),
    lr: s.lr,
    alpha: s.alpha,
    gamma: s.gamma,
    lrDecay: s.lrDecay,
    trainSteps: s.epochs * 1000,
    batch: s.batch,
    expectile: s.expectile,
    ...(family === 'antmaze' ? { rewardPreset: 'iql_antmaze' as const, evalEpisodes: 100 } : {}),
    ...(task.endsWith('-v2') ? {} : { evalEpisodes: 100 }),
  };
}

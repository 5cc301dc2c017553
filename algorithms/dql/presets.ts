// Diffusion-QL's settings: the paper code's defaults and per-task table (Zhendong-Wang/Diffusion-Policies-for-
// Offline-RL main.py, agents/ql_diffusion.py), and a quick preset that trains and evaluates on the repository's
// Pendulum dataset in minutes on a software GPU. The gradient-norm table is also EDP's (sail-sg/edp hps.py).
import type { DiffusionPolicyConfig } from '../common/diffusion-policy.ts';
import { envForDataset } from '../../datasets/builtin.ts';
import { PENDULUM_QUICK_RUN } from '../common/pendulum-quick.ts';


export interface DqlConfig extends DiffusionPolicyConfig {
  /** Weight of the normalised Q term: actor loss = L_bc + eta q_loss. */
  eta: number;
}

/**
 * The paper's locomotion settings: T = 5 (vp), batch 256, Adam 3e-4 for policy and critic, discount 0.99,
 * Polyak 0.005 every step, EMA 0.995 every 5 steps from step 1000, eta 1, 2000 epochs x 1000 steps, next
 * actions by the EMA policy's full chain, 50 candidates at evaluation, raw rewards and observations.
 */
export const PAPER_DEFAULTS: Omit<DqlConfig, 'task' | 'dataset' | 'env'> = Object.freeze({
  seed: 0,
  rewardPreset: 'none',
  normalizeObs: false,
  trainSteps: 2_000_000,
  batch: 256,
  T: 5,
  actorHidden: 256,
  lr: 3e-4,
  criticHidden: [256, 256, 256],
  criticLr: 3e-4,
  discount: 0.99,
  targetTau: 0.005,
  gradClip: 0,
  emaDecay: 0.995,
  emaEvery: 5,
  emaStart: 1000,
  targetSampler: 'ddpm',
  targetSamplerSteps: 5,
  maxQBackup: false,
  maxQSamples: 10,
  evalSampler: 'ddpm',
  evalSamplerSteps: 5,
  candidates: 50,
  evalEvery: 50_000,
  evalEpisodes: 10,
  evalSeed: 100,
  bcEval: false,
  bcMlpSteps: 10_000,
  logEvery: 1000,
  checkpointEvery: 50_000,
  eta: 1,
}) as Omit<DqlConfig, 'task' | 'dataset' | 'env'>;

export interface TaskSettings {
  epochs: number;
  eta: number;
  lr: number;
  maxQBackup: boolean;
  rewardPreset: DqlConfig['rewardPreset'];
  evalEpisodes: number;
  /** Global gradient-norm clip (Diffusion-QL's gn, also EDP's). */
  gradClip: number;
}

const t = (epochs: number, eta: number, lr: number, maxQBackup: boolean, rewardPreset: DqlConfig['rewardPreset'], evalEpisodes: number, gradClip: number): TaskSettings =>
  Object.freeze({ epochs, eta, lr, maxQBackup, rewardPreset, evalEpisodes, gradClip });

/** The paper code's hyperparameters dict (D4RL -v2 locomotion, -v0 antmaze / kitchen, -v1 pen). */
export const TASK_SETTINGS: Readonly<Record<string, TaskSettings>> = Object.freeze({
  'halfcheetah-medium-v2': t(2000, 1, 3e-4, false, 'none', 10, 9),
  'hopper-medium-v2': t(2000, 1, 3e-4, false, 'none', 10, 9),
  'walker2d-medium-v2': t(2000, 1, 3e-4, false, 'none', 10, 1),
  'halfcheetah-medium-replay-v2': t(2000, 1, 3e-4, false, 'none', 10, 2),
  'hopper-medium-replay-v2': t(2000, 1, 3e-4, false, 'none', 10, 4),
  'walker2d-medium-replay-v2': t(2000, 1, 3e-4, false, 'none', 10, 4),
  'halfcheetah-medium-expert-v2': t(2000, 1, 3e-4, false, 'none', 10, 7),
  'hopper-medium-expert-v2': t(2000, 1, 3e-4, false, 'none', 10, 5),
  'walker2d-medium-expert-v2': t(2000, 1, 3e-4, false, 'none', 10, 5),
  'antmaze-umaze-v0': t(1000, 0.5, 3e-4, false, 'cql_antmaze', 100, 2),
  'antmaze-umaze-diverse-v0': t(1000, 2, 3e-4, true, 'cql_antmaze', 100, 3),
  'antmaze-medium-play-v0': t(1000, 2, 1e-3, true, 'cql_antmaze', 100, 2),
  'antmaze-medium-diverse-v0': t(1000, 3, 3e-4, true, 'cql_antmaze', 100, 1),
  'antmaze-large-play-v0': t(1000, 4.5, 3e-4, true, 'cql_antmaze', 100, 10),
  'antmaze-large-diverse-v0': t(1000, 3.5, 3e-4, true, 'cql_antmaze', 100, 7),
  'pen-human-v1': t(1000, 0.15, 3e-5, false, 'standardize', 100, 7),
  'pen-cloned-v1': t(1000, 0.1, 3e-5, false, 'standardize', 100, 8),
  'kitchen-complete-v0': t(250, 0.005, 3e-4, false, 'none', 100, 9),
  'kitchen-partial-v0': t(1000, 0.005, 3e-4, false, 'none', 100, 10),
  'kitchen-mixed-v0': t(1000, 0.005, 3e-4, false, 'none', 100, 10),
});

/**
 * The default run, and the base of EDP's: the shipped Pendulum dataset, width-64 networks and 2000 steps, so
 * training and the evaluations finish in minutes on a software GPU. As in the SRPO and DTQL quick presets,
 * rewards use 'minmax' and observations are z-scored, the critic learns at 3e-3 and its target tracks at Polyak
 * 0.05 so values propagate over the swing-up horizon within the run; the policy learns at 1e-3 and its EMA
 * starts at step 200 (of 2000, as 1000 of the paper's 2M).
 *
 * The evaluation picks among the 50 candidates by softmax(10 min Q'), not the papers' softmax(min Q'): with
 * 'minmax' rewards the candidates' Q' differ by about 1.5 from worst to best per state, so temperature 1 is close
 * to a uniform pick. Measured with the default run, 20 episodes, seeds 0 / 1 / 2: Diffusion-QL 102.7 / 102.7 /
 * 102.6 at 10 against 95.3 / 98.9 / 97.0 at 1; EDP-TD3 103.8 / 103.2 / 103.2 at 10 against 99.9 / 97.3 / 98.0
 * at 1; the MSE-fitted MLP 94.5 / 95.0 / 94.4.
 */
export const QUICK_PENDULUM_POLICY: Readonly<Partial<DiffusionPolicyConfig>> = Object.freeze({
  ...PENDULUM_QUICK_RUN,
  trainSteps: 2000,
  batch: 256,
  actorHidden: 64,
  lr: 1e-3,
  criticHidden: [64, 64, 64],
  criticLr: 3e-3,
  targetTau: 0.05,
  emaStart: 200,
  evalEvery: 1000,
  bcMlpSteps: 3000,
  selectTemperature: 10,
});

export const QUICK_PENDULUM: DqlConfig = Object.freeze({ ...PAPER_DEFAULTS, ...QUICK_PENDULUM_POLICY }) as DqlConfig;

const QUICK_PRESETS: Readonly<Record<string, DqlConfig>> = Object.freeze({ 'pendulum-quick': QUICK_PENDULUM });

export const TASK_NAMES: readonly string[] = [...Object.keys(QUICK_PRESETS), ...Object.keys(TASK_SETTINGS)];

/** The configuration a task name selects (D4RL tasks have no shipped data: pass the file with --dataset). */
export function taskConfig(task: string): DqlConfig {
  const quick = QUICK_PRESETS[task];
  if (quick) return { ...quick, criticHidden: [...quick.criticHidden] };
  const s = TASK_SETTINGS[task];
  if (!s) {
    const err = new Error(`unknown task '${task}'; known: ${TASK_NAMES.join(', ')}`);
    (err as { userFacing?: boolean }).userFacing = true;
    throw err;
  }
  return {
    ...PAPER_DEFAULTS,
    criticHidden: [...PAPER_DEFAULTS.criticHidden],
    task,
    dataset: '',
    env: envForDataset(task) ?? '',
    trainSteps: s.epochs * 1000,
    eta: s.eta,
    lr: s.lr,
    maxQBackup: s.maxQBackup,
    rewardPreset: s.rewardPreset,
    evalEpisodes: s.evalEpisodes,
    gradClip: s.gradClip,
  };
}

// EDP's settings: the paper code's defaults (sail-sg/edp diffusion/dql.py get_default_config, trainer.py), the
// gradient-norm table it shares with Diffusion-QL, and a quick preset that trains and evaluates on the
// repository's Pendulum dataset in minutes on a software GPU.
import type { DiffusionPolicyConfig } from '../common/diffusion-policy.ts';
import { PAPER_DEFAULTS as DQL_PAPER_DEFAULTS, QUICK_PENDULUM_POLICY, TASK_SETTINGS as DQL_TASKS } from '../dql/presets.ts';
import { envForDataset } from '../../datasets/builtin.ts';

export const BACKBONES = ['td3', 'crr', 'iql'] as const;
export type Backbone = (typeof BACKBONES)[number];

export function isBackbone(s: string): s is Backbone {
  return (BACKBONES as readonly string[]).includes(s);
}

export interface EdpConfig extends DiffusionPolicyConfig {
  backbone: Backbone;
  /** Weight of the diffusion loss (CRR's diff_coef; TD3 and IQL use 1). */
  diffCoef: number;
  /** Weight of the policy guide term (guide_coef). */
  guideCoef: number;
  /** TD3: lambda = alpha / stopgrad(mean |Q_j|). */
  alpha: number;
  /** CRR: w = min(crrMaxWeight, exp(adv / crrBeta)), adv against crrSamples actions ~ N(a0Hat, I). */
  crrBeta: number;
  crrMaxWeight: number;
  crrSamples: number;
  /** IQL: expectile of V, AWR inverse temperature and weight clip. */
  expectile: number;
  awrTemperature: number;
  awrMaxWeight: number;
}

/**
 * The paper code's defaults, which are Diffusion-QL's except: T = 100 on the scaled linear schedule (the schedule
 * is the behaviour model's), next actions and evaluation candidates by DPM-Solver (15 steps), an evaluation every
 * 10k steps, and the backbones' own settings. Batch 256, AdamW 3e-4 (no decay) for everything, discount 0.99,
 * Polyak 0.005 on the critic every step, target policy every 5 steps after step 1000, 2000 epochs x 1000 steps,
 * 50 candidates.
 */
const { eta: _dqlEta, ...DQL_DEFAULTS } = DQL_PAPER_DEFAULTS;
export const PAPER_DEFAULTS: Omit<EdpConfig, 'task' | 'dataset' | 'env'> = Object.freeze({
  ...DQL_DEFAULTS,
  T: 100,
  targetSampler: 'dpm',
  targetSamplerSteps: 15,
  evalSampler: 'dpm',
  evalSamplerSteps: 15,
  evalEvery: 10_000,
  backbone: 'td3',
  diffCoef: 1,
  guideCoef: 1,
  alpha: 2,
  crrBeta: 1,
  crrMaxWeight: 20,
  crrSamples: 10,
  expectile: 0.7,
  awrTemperature: 3,
  awrMaxWeight: 100,
}) as Omit<EdpConfig, 'task' | 'dataset' | 'env'>;

/**
 * The default run: the shipped Pendulum dataset with width-64 networks, T = 30 and 5-step DPM-Solver samples
 * for the critic's next actions, so 2000 steps and the evaluations finish in minutes on a software GPU; rewards
 * 'minmax', z-scored observations and a fast critic (lr 3e-3, Polyak 0.05) as in the other quick presets.
 * IQL changes a few settings on top: QUICK_BACKBONE_OVERRIDES.
 */
export const QUICK_PENDULUM: EdpConfig = Object.freeze({
  ...PAPER_DEFAULTS,
  ...QUICK_PENDULUM_POLICY,
  T: 30,
  targetSamplerSteps: 5,
  evalSamplerSteps: 10,
}) as EdpConfig;

/**
 * What the quick preset's selection temperature (10, from QUICK_PENDULUM_POLICY) and the IQL overrides did for
 * the likelihood backbones, measured with scripts/edp-probe.ts (seed 0 / 1, 20 episodes; MLP behaviour cloning
 * scores 94.5 on the same data):
 * - selectTemperature 10: their policies are advantage-weighted behaviour clones of data whose actions are
 *   mostly noise (a single policy sample scores 11-23, below the dataset's 59.8), so the score comes from the
 *   selection among the 50 candidates. With 'minmax' rewards (Pendulum's costs times 0.12) the candidates' min Q'
 *   differ by about 1.5 from worst to best and 0.6 from mean to best per state, so softmax(Q') at EDP's
 *   temperature 1 is close to a uniform pick: CRR scored 93.8 +- 21.1 with it and 102.5 +- 7.5 at 10 (the same as
 *   the argmax), IQL 69.0 +- 45.9 and 75.4 +- 50.3.
 * - IQL: target Q at Polyak 0.1 (V regresses to it; DTQL's quick preset found the same lag helps its IQL critic):
 *   the critic's own greedy action over a 41-point grid scored 103.8 / 96.9 against 77.6 at Polyak 0.05 with
 *   expectile 0.9; and guideCoef 0.1: the weighted likelihood reaches eps_theta through a0Hat, whose gradient is
 *   sqrt(1 / abar_k - 1) (up to about 150 at T = 30) times the weight (up to 100), so at 1 it outweighs the
 *   diffusion loss 17 to 1 and the candidates cover the critic's best actions worse: softmax(10 Q') scored
 *   96.1 +- 16.0 / 77.8 +- 45.5 at 1 and 103.2 +- 7.7 / 101.6 +- 10.1 at 0.1 (awrTemperature 10 instead: 82.4).
 * The default runs with these (node algorithms/edp.ts --backbone crr|iql --seed 0 / 1 / 2, 20 episodes each):
 * CRR 102.5 +- 7.5 / 100.8 +- 10.1 / 102.2 +- 8.3, IQL 103.2 +- 7.7 / 98.0 +- 16.9 / 103.3 +- 7.6, against MLP
 * behaviour cloning 94.5 +- 13.6 / 95.0 +- 11.9 / 94.4 +- 14.1 in the same runs (before: CRR 92.3 +- 14.2, IQL
 * 80.9 +- 37.7 at seed 0). The policies alone stay weak: one sample per state scores 11-23, and the diffusion
 * model trained on its loss only (guideCoef 0) 9.8 +- 19.9.
 */
export const QUICK_BACKBONE_OVERRIDES: Readonly<Partial<Record<Backbone, Partial<EdpConfig>>>> = Object.freeze({
  iql: Object.freeze({ targetTau: 0.1, guideCoef: 0.1 }),
});

const QUICK_PRESETS: Readonly<Record<string, EdpConfig>> = Object.freeze({ 'pendulum-quick': QUICK_PENDULUM });

export const TASK_NAMES: readonly string[] = [...Object.keys(QUICK_PRESETS), ...Object.keys(DQL_TASKS)];

/**
 * The configuration a task name selects: the quick preset (with the backbone's overrides), or a D4RL task with the paper code's defaults, its
 * gradient-norm clip and reward preset (antmaze: r - 1 for IQL, (r - 0.5) 4 for TD3 and CRR; kitchen and pen:
 * min-max). D4RL tasks have no shipped data: pass the file with --dataset.
 */
export function taskConfig(task: string, backbone: Backbone = 'td3'): EdpConfig {
  const quick = QUICK_PRESETS[task];
  if (quick) return { ...quick, criticHidden: [...quick.criticHidden], backbone, ...QUICK_BACKBONE_OVERRIDES[backbone] };
  const s = DQL_TASKS[task];
  if (!s) {
    const err = new Error(`unknown task '${task}'; known: ${TASK_NAMES.join(', ')}`);
    (err as { userFacing?: boolean }).userFacing = true;
    throw err;
  }
  const family = task.split('-')[0]!;
  const rewardPreset: EdpConfig['rewardPreset'] =
    family === 'antmaze' ? (backbone === 'iql' ? 'iql_antmaze' : 'cql_antmaze') : family === 'kitchen' || family === 'pen' ? 'minmax' : 'none';
  return {
    ...PAPER_DEFAULTS,
    criticHidden: [...PAPER_DEFAULTS.criticHidden],
    task,
    dataset: '',
    env: envForDataset(task) ?? '',
    backbone,
    gradClip: s.gradClip,
    rewardPreset,
    evalEpisodes: s.evalEpisodes,
    ...(family === 'antmaze' && backbone === 'iql' ? { expectile: 0.9, awrTemperature: 10 } : {}),
  };
}

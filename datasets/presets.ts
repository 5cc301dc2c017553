// The papers' data presets, made explicit: observation z-scoring, reward transforms, and D4RL's normalised
// score with its reference table.
import type { D4RLData, Transitions } from './d4rl.ts';

/** Added to the standard deviation before dividing (CORL, SRPO/QGPO), so constant features stay finite. */
export const OBS_STD_EPS = 1e-3;

export interface ObservationStats {
  mean: Float32Array;
  /** Population standard deviation (divides by N, as numpy's default), without the epsilon. */
  std: Float32Array;
}

/** Per-feature mean and standard deviation of (rows, dim) observations, accumulated in float64. */
export function observationStats(obs: Float32Array, dim: number): ObservationStats {
  if (!Number.isInteger(dim) || dim < 1 || obs.length === 0 || obs.length % dim !== 0) {
    throw new Error(`observationStats: need a non-empty (rows, ${dim}) array, got ${obs.length} values`);
  }
  const rows = obs.length / dim;
  const sum = new Float64Array(dim);
  for (let i = 0; i < obs.length; i++) sum[i % dim]! += obs[i]!;
  const mean = sum.map((s) => s / rows);
  const squares = new Float64Array(dim);
  for (let i = 0; i < obs.length; i++) {
    const d = obs[i]! - mean[i % dim]!;
    squares[i % dim]! += d * d;
  }
  return { mean: Float32Array.from(mean), std: Float32Array.from(squares, (s) => Math.sqrt(s / rows)) };
}

/**
 * (s - mean) / (std + 1e-3) per feature, into a new array (or `out`). The one function for both training
 * data and evaluation observations, so the two can never drift apart; any number of rows.
 */
export function normalizeObservations(obs: Float32Array, stats: ObservationStats, out = new Float32Array(obs.length)): Float32Array {
  const dim = stats.mean.length;
  if (obs.length % dim !== 0 || out.length !== obs.length) {
    throw new Error(`normalizeObservations: ${obs.length} values into ${out.length} is not a whole number of ${dim}-feature rows`);
  }
  for (let i = 0; i < obs.length; i++) {
    const f = i % dim;
    out[i] = (obs[i]! - stats.mean[f]!) / (stats.std[f]! + OBS_STD_EPS);
  }
  return out;
}

/** Transitions with observations and next observations normalised by the same stats. */
export function normalizeTransitions(t: Transitions, stats: ObservationStats): Transitions {
  return { ...t, observations: normalizeObservations(t.observations, stats), nextObservations: normalizeObservations(t.nextObservations, stats) };
}

/**
 * Reward presets. Each is an affine map r' = (r + shift) * scale:
 * - 'none': unchanged.
 * - 'iql_locomotion': r * 1000 / (max_return - min_return) (CORL IQL, SRPO, QGPO).
 * - 'iql_antmaze': r - 1 (CORL IQL, SRPO, DTQL, EDP+IQL).
 * - 'cql_antmaze': (r - 0.5) * 4 (Diffusion-QL, EDP+TD3/CRR).
 * - 'antmaze_quarter': (r - 0.25) * 2 (an SRPO/QGPO code option).
 * - 'standardize': (r - mean) / std (Diffusion-QL on pen).
 * - 'minmax': rewards mapped onto [-1, 1] (EDP on kitchen and adroit).
 */
export type RewardPreset = 'none' | 'iql_locomotion' | 'iql_antmaze' | 'cql_antmaze' | 'antmaze_quarter' | 'standardize' | 'minmax';

export interface RewardTransform {
  preset: RewardPreset;
  shift: number;
  scale: number;
}

export interface ReturnRangeOptions {
  /** An episode also ends after this many steps without a flag (CORL/SRPO count 1000). Default 1000. */
  maxEpisodeSteps?: number;
  /**
   * End episodes at timeouts as well as terminals (default true: the true episode returns). CORL and SRPO
   * split on terminals and the step count only, and count steps on qlearning_dataset's rows (timeout rows
   * removed), so their windows drift from the real episodes; false reproduces the flag rule, not the drift.
   */
  useTimeouts?: boolean;
}

/**
 * Minimum and maximum undiscounted return over the dataset's complete episodes. An unfinished episode at
 * the end of the data is left out, as in CORL; a dataset with no complete episode is an error.
 */
export function returnRange(data: D4RLData, opts: ReturnRangeOptions = {}): { min: number; max: number; episodes: number } {
  const maxSteps = opts.maxEpisodeSteps ?? 1000;
  const useTimeouts = opts.useTimeouts ?? true;
  let min = Infinity;
  let max = -Infinity;
  let episodes = 0;
  let ret = 0;
  let steps = 0;
  for (let i = 0; i < data.size; i++) {
    ret += data.rewards[i]!;
    steps++;
    if (data.terminals[i] || (useTimeouts && data.timeouts[i]) || steps === maxSteps) {
      min = Math.min(min, ret);
      max = Math.max(max, ret);
      episodes++;
      ret = 0;
      steps = 0;
    }
  }
  if (episodes === 0) throw new Error(`returnRange: no complete episode in ${data.size} rows (no terminal, timeout or ${maxSteps}-step episode)`);
  return { min, max, episodes };
}

/** iql_locomotion: r * 1000 / (max_return - min_return) over the dataset's episodes. */
export function rewardScaleLocomotion(data: D4RLData, opts: ReturnRangeOptions = {}): RewardTransform {
  const { min, max } = returnRange(data, opts);
  if (!(max > min)) throw new Error(`rewardScaleLocomotion: every episode returns ${max}; the scale 1000 / (max - min) is undefined`);
  return { preset: 'iql_locomotion', shift: 0, scale: 1000 / (max - min) };
}

/** The transform a preset defines for this dataset (presets that need statistics compute them from data). */
export function rewardPreset(preset: RewardPreset, data: D4RLData, opts: ReturnRangeOptions = {}): RewardTransform {
  switch (preset) {
    case 'none': return { preset, shift: 0, scale: 1 };
    case 'iql_locomotion': return rewardScaleLocomotion(data, opts);
    case 'iql_antmaze': return { preset, shift: -1, scale: 1 };
    case 'cql_antmaze': return { preset, shift: -0.5, scale: 4 };
    case 'antmaze_quarter': return { preset, shift: -0.25, scale: 2 };
    case 'standardize': {
      const { mean, std } = observationStats(data.rewards, 1);
      if (!(std[0]! > 0)) throw new Error('rewardPreset standardize: every reward is equal; the standard deviation is 0');
      return { preset, shift: -mean[0]!, scale: 1 / std[0]! };
    }
    case 'minmax': {
      let lo = Infinity;
      let hi = -Infinity;
      for (const r of data.rewards) { lo = Math.min(lo, r); hi = Math.max(hi, r); }
      if (!(hi > lo)) throw new Error('rewardPreset minmax: every reward is equal; the range is 0');
      return { preset, shift: -(lo + hi) / 2, scale: 2 / (hi - lo) };
    }
    default:
      throw new Error(`rewardPreset: unknown preset '${preset as string}'; known: none, iql_locomotion, iql_antmaze, cql_antmaze, antmaze_quarter, standardize, minmax`);
  }
}

/** (r + shift) * scale into a new array. */
export function applyRewardTransform(rewards: Float32Array, tf: RewardTransform): Float32Array {
  return Float32Array.from(rewards, (r) => (r + tf.shift) * tf.scale);
}

/** Transitions with rewards transformed (other arrays shared). */
export function transformRewards(t: Transitions, tf: RewardTransform): Transitions {
  return { ...t, rewards: applyRewardTransform(t.rewards, tf) };
}

export interface ReferenceScore {
  /** Return of a uniform-random policy (D4RL: the mean over 100 episodes). */
  min: number;
  /** Return of the expert the benchmark scores against. */
  max: number;
  /** Where the numbers come from. */
  source: string;
}

const D4RL_INFOS = 'D4RL d4rl/infos.py';

/**
 * Reference returns by environment family (a dash-separated name matched against the tokens of an
 * environment or dataset name). Gym-MuJoCo v1/v2 datasets use the random-v0 values and Adroit v1 the
 * human-v0 values, as D4RL does. Other modules register their own families with registerReferenceScore.
 */
export const REFERENCE_SCORES: Record<string, ReferenceScore> = {
  halfcheetah: { min: -280.178953, max: 12135.0, source: D4RL_INFOS },
  hopper: { min: -20.272305, max: 3234.3, source: D4RL_INFOS },
  walker2d: { min: 1.629008, max: 4592.3, source: D4RL_INFOS },
  ant: { min: -325.6, max: 3879.7, source: D4RL_INFOS },
  antmaze: { min: 0.0, max: 1.0, source: `${D4RL_INFOS} (score = success rate)` },
  pen: { min: 96.262799, max: 3076.8331017826877, source: D4RL_INFOS },
  door: { min: -56.512833, max: 2880.5693087298737, source: D4RL_INFOS },
  hammer: { min: -274.856578, max: 12794.134825156867, source: D4RL_INFOS },
  relocate: { min: -6.425911, max: 4233.877797728884, source: D4RL_INFOS },
  kitchen: { min: 0.0, max: 4.0, source: D4RL_INFOS },
  'maze2d-umaze': { min: 23.85, max: 161.86, source: D4RL_INFOS },
  'maze2d-medium': { min: 13.13, max: 277.39, source: D4RL_INFOS },
  'maze2d-large': { min: 6.7, max: 273.99, source: D4RL_INFOS },
  pendulum: {
    min: -1281.8036339607909,
    max: -162.16375270197656,
    source: 'datasets/data/README.md: uniform random (min) and the scripted swing-up without noise (max), 100 episodes each',
  },
};

/** Adds or replaces a family's reference returns. */
export function registerReferenceScore(family: string, ref: ReferenceScore): void {
  if (!/^[a-z0-9]+(-[a-z0-9]+)*$/.test(family)) throw new Error(`registerReferenceScore: family must be lower-case dash-separated words, got '${family}'`);
  if (!(Number.isFinite(ref.min) && Number.isFinite(ref.max) && ref.max !== ref.min)) {
    throw new Error(`registerReferenceScore: '${family}' needs finite, distinct min and max, got ${ref.min} and ${ref.max}`);
  }
  REFERENCE_SCORES[family] = ref;
}

/**
 * The family a name belongs to: 'hopper-medium-replay-v2', 'Hopper-v4', 'mujoco/hopper/expert-v0' -> hopper;
 * 'maze2d-large-v1' -> maze2d-large; 'antmaze-umaze-diverse-v2' -> antmaze. The longest matching family wins.
 */
export function referenceFamily(envOrDatasetName: string): string {
  const tokens = envOrDatasetName.toLowerCase().replaceAll('_', '').split(/[^a-z0-9]+/).filter((s) => s.length > 0);
  let best: string | null = null;
  for (const family of Object.keys(REFERENCE_SCORES)) {
    const words = family.split('-');
    const found = tokens.some((_, i) => words.every((w, j) => tokens[i + j] === w));
    if (found && (best === null || words.length > best.split('-').length)) best = family;
  }
  if (best === null) {
    throw new Error(`normalizedScore: no reference returns for '${envOrDatasetName}'; known families: ${Object.keys(REFERENCE_SCORES).join(', ')}`);
  }
  return best;
}

/**
 * D4RL's normalised score x 100: 100 * (ret - min) / (max - min), for an environment or dataset name (see
 * referenceFamily) or explicit reference returns (e.g. a Minari dataset's ref_min_score/ref_max_score).
 * 0 is the random policy, 100 the expert; D4RL's get_normalized_score returns the same divided by 100.
 */
export function normalizedScore(envOrDataset: string | Pick<ReferenceScore, 'min' | 'max'>, ret: number): number {
  const ref = typeof envOrDataset === 'string' ? REFERENCE_SCORES[referenceFamily(envOrDataset)]! : envOrDataset;
  return (100 * (ret - ref.min)) / (ref.max - ref.min);
}

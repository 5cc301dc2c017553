// The training view of a D4RL-layout dataset: read and checked against the environment, observations z-scored,
// actions mapped into [-1, 1], rewards by the preset, all in a GPU replay store; and the data's own scores.
import { join } from 'node:path';
import { readD4RL, qlearningDataset, episodeRanges, type D4RLData, type Transitions } from '../../datasets/d4rl.ts';
import {
  normalizeObservations, normalizedScore, observationStats, rewardPreset, transformRewards,
  type ObservationStats, type RewardPreset, type RewardTransform,
} from '../../datasets/presets.ts';
import { ReplayStore } from '../../datasets/replay.ts';
import { makeEnv } from '../../envs/registry.ts';
import type { Env } from '../../envs/core.ts';
import { ActionBox } from './action-box.ts';
import { userError } from './cli.ts';
import { formatNumber, say } from './monitor.ts';
import { writeFileAtomic } from './run-files.ts';

/** The dataset settings prepareData reads. */
export interface DataConfig {
  normalizeObs: boolean;
  rewardPreset: RewardPreset;
  env: string;
}

export interface OfflineData {
  transitions: Transitions;
  store: ReplayStore;
  obsStats: ObservationStats | null;
  rewardTransform: RewardTransform;
  box: ActionBox;
  /** Dataset action values outside the box (clipped on the way in). */
  clippedActions: number;
  /** Mean and std of the dataset's own normalised episode scores (complete episodes), when known. */
  datasetScore: { mean: number; std: number; episodes: number } | null;
}

/** Normalised score of each complete episode of the data (D4RL x100), or null without reference returns. */
export function datasetScores(data: D4RLData, env: string): number[] | null {
  const scores: number[] = [];
  try {
    for (const [lo, hi] of episodeRanges(data)) {
      if (!(data.terminals[hi - 1] || data.timeouts[hi - 1])) continue;
      let ret = 0;
      for (let i = lo; i < hi; i++) ret += data.rewards[i]!;
      scores.push(normalizedScore(env, ret));
    }
  } catch {
    return null;
  }
  return scores;
}

/** Builds the training view of a dataset for an environment's action box. */
export function prepareData(data: D4RLData, box: ActionBox, cfg: DataConfig): OfflineData {
  if (data.actDim !== box.dim) throw userError(`dataset has ${data.actDim} action dims, the environment ${box.dim}`);
  const raw = qlearningDataset(data);
  const obsStats = cfg.normalizeObs ? observationStats(data.observations, data.obsDim) : null;
  const rewardTransform = rewardPreset(cfg.rewardPreset, data);
  const { actions, clipped } = box.toUnit(raw.actions);
  let transitions: Transitions = { ...raw, actions };
  if (obsStats) {
    transitions = { ...transitions, observations: normalizeObservations(raw.observations, obsStats), nextObservations: normalizeObservations(raw.nextObservations, obsStats) };
  }
  transitions = transformRewards(transitions, rewardTransform);
  const scores = datasetScores(data, cfg.env);
  let datasetScore: OfflineData['datasetScore'] = null;
  if (scores && scores.length) {
    const mean = scores.reduce((s, x) => s + x, 0) / scores.length;
    const std = Math.sqrt(scores.reduce((s, x) => s + (x - mean) ** 2, 0) / scores.length);
    datasetScore = { mean, std, episodes: scores.length };
  }
  return { transitions, store: ReplayStore.fromTransitions(transitions), obsStats, rewardTransform, box, clippedActions: clipped, datasetScore };
}

/**
 * The environment's dimensions and action box, the dataset read and checked against them, and its training
 * view; prints one line about the data and writes obs_stats.json into `dir` when observations are z-scored.
 * Any dimension mismatch stops here, before training.
 */
export async function loadOfflineData(
  cfg: DataConfig & { task: string },
  file: string,
  dir: string,
  opts: { quiet?: boolean },
): Promise<{ data: OfflineData; box: ActionBox }> {
  if (!cfg.env) throw userError(`no environment for task '${cfg.task}'; pass --env (known: Pendulum-v1, Hopper-v4, HalfCheetah-v4, Walker2d-v4)`);
  let env: Env;
  try {
    env = await makeEnv(cfg.env);
  } catch (err) {
    throw userError(err instanceof Error ? err.message : String(err));
  }
  const box = new ActionBox(env.actionLow, env.actionHigh);
  const envDims = { obsDim: env.obsDim, actDim: env.actDim };
  env.close();
  let raw: D4RLData;
  try {
    raw = await readD4RL(file, { expect: envDims });
  } catch (err) {
    throw userError(`${err instanceof Error ? err.message : String(err)} (environment ${cfg.env})`);
  }
  const data = prepareData(raw, box, cfg);
  const { obsDim, actDim } = data.transitions;
  say(opts, `data: ${file}, ${data.transitions.size} transitions, obs ${obsDim}, act ${actDim}; rewards '${cfg.rewardPreset}' (x${formatNumber(data.rewardTransform.scale)})` +
    (data.clippedActions ? `; ${data.clippedActions} action values clipped to the box` : '') +
    (data.datasetScore ? `; dataset score ${data.datasetScore.mean.toFixed(1)} +- ${data.datasetScore.std.toFixed(1)}` : ''));
  if (data.obsStats) {
    writeFileAtomic(join(dir, 'obs_stats.json'), JSON.stringify({ mean: [...data.obsStats.mean], std: [...data.obsStats.std] }));
  }
  return { data, box };
}

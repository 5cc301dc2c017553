// SAC settings per environment. 'default' is the paper's MuJoCo setting (256x2 ReLU networks, Adam 3e-4,
// batch 256, 1M replay, gamma 0.99, tau 0.005, target entropy -act_dim, 10k random warm-up steps, one update per
// step) with a budget that fits this project's machines; on Pendulum the same networks with a short warm-up and
// budget. 'quick' is small and short for a software GPU. 'long' (Pendulum) is the quick setting run longer.
import { CliError } from '../common/run.ts';
import { envKey, type OnlineCommandConfig } from '../common/online.ts';
import type { SacAgentConfig } from './agent.ts';

export interface SacConfig extends OnlineCommandConfig, SacAgentConfig {}

export const PRESET_NAMES = ['default', 'quick', 'long'] as const;

const MUJOCO = new Set(['hopper', 'halfcheetah', 'walker2d']);

/** The paper's MuJoCo settings. */
function paper(env: string): SacConfig {
  return {
    algorithm: 'sac',
    preset: 'default',
    env,
    seed: 0,
    numEnvs: 1,
    envSteps: 1_000_000,
    warmupSteps: 10_000,
    updatesPerStep: 1,
    replayCapacity: 1_000_000,
    evalEvery: 5000,
    evalEpisodes: 10,
    logEvery: 1000,
    checkpointEvery: 10_000,
    hidden: 256,
    layers: 2,
    actorLr: 3e-4,
    criticLr: 3e-4,
    alphaLr: 3e-4,
    batch: 256,
    gamma: 0.99,
    tau: 0.005,
    initAlpha: 1,
    autoAlpha: true,
    targetEntropy: null,
  };
}

/** The configuration of a preset for an environment (an alias or Gymnasium id). */
export function sacPreset(env: string, preset: string): SacConfig {
  const key = envKey(env);
  const cfg = paper(env);
  cfg.preset = preset;
  const pendulum = key === 'pendulum';
  if (preset === 'default') {
    if (pendulum) Object.assign(cfg, { envSteps: 6000, warmupSteps: 1000, evalEvery: 1000, logEvery: 200, checkpointEvery: 2000 });
    else if (!MUJOCO.has(key)) Object.assign(cfg, { envSteps: 100_000, warmupSteps: 5000 });
    return cfg;
  }
  if (preset === 'quick' || preset === 'long') {
    Object.assign(cfg, { hidden: 64, batch: 128, actorLr: 1e-3, criticLr: 1e-3, alphaLr: 1e-3, logEvery: 200 });
    if (pendulum) Object.assign(cfg, { envSteps: preset === 'quick' ? 4000 : 10_000, warmupSteps: 500, evalEvery: 1000, checkpointEvery: 2000, replayCapacity: 100_000 });
    else Object.assign(cfg, { envSteps: preset === 'quick' ? 20_000 : 100_000, warmupSteps: 2000, evalEvery: 2000, checkpointEvery: 5000, replayCapacity: 200_000 });
    return cfg;
  }
  throw new CliError(`unknown preset '${preset}'; known: ${PRESET_NAMES.join(', ')}`);
}

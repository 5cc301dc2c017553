// SAC settings per environment. 'paper' is the paper's MuJoCo setting everywhere (256x2 ReLU networks, Adam 3e-4,
// batch 256, 1M replay, gamma 0.99, tau 0.005, target entropy -act_dim, 10k random warm-up steps, one update per
// step, 1M env steps); 'default' is the same on the MuJoCo tasks, and on Pendulum small fast settings that reach
// the scripted controller's return in a few minutes on a software GPU. 'quick' is smaller and shorter; 'ci' is
// the test suite's Pendulum run.
import { CliError } from '../common/cli.ts';
import { envKey, paperMujocoRun, type OnlineCommandConfig } from '../common/online-command.ts';
import type { SacAgentConfig } from './agent.ts';

export interface SacConfig extends OnlineCommandConfig, SacAgentConfig {}

export const PRESET_NAMES = ['default', 'quick', 'ci', 'paper'] as const;

/**
 * Pendulum on this machine: 64-wide networks, faster targets and a shorter horizon than the paper's reach the
 * scripted controller's return within about two thousand updates; four copies share each policy call.
 */
const PENDULUM = {
  hidden: 64, batch: 256, actorLr: 1e-3, criticLr: 1e-3, alphaLr: 1e-3, initAlpha: 0.2, tau: 0.02, gamma: 0.97,
  numEnvs: 4, warmupSteps: 400, envSteps: 3000, evalEpisodes: 10, evalEvery: 500, logEvery: 200, checkpointEvery: 1000,
  replayCapacity: 100_000,
} as const;

/**
 * Pendulum in about a minute: a larger learning rate, faster targets and a shorter horizon still; learns in
 * under a thousand updates but is less steady afterwards than the default.
 */
const PENDULUM_QUICK = { batch: 128, actorLr: 3e-3, criticLr: 3e-3, alphaLr: 3e-3, tau: 0.05, gamma: 0.95, envSteps: 1600, evalEvery: 400 } as const;

/**
 * The test suite's Pendulum run: the quick settings evaluated every 200 env steps on 5 episodes, 2400 env steps
 * (seeds 0-3 came within 150 of the scripted controller's return at 1200-1800 env steps; the test requires every
 * evaluation from the first such one on to stay there).
 */
const CI = { envSteps: 2400, evalEvery: 200, evalEpisodes: 5 } as const;

const MUJOCO = new Set(['hopper', 'halfcheetah', 'walker2d']);

/** The paper's MuJoCo settings. */
function paper(env: string): SacConfig {
  return {
    ...paperMujocoRun('sac', env, { numEnvs: 1, warmupSteps: 10_000, updatesPerStep: 1, evalEvery: 5000 }),
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
  if (preset === 'paper') return cfg;
  if (preset === 'default') {
    if (pendulum) Object.assign(cfg, PENDULUM);
    else if (!MUJOCO.has(key)) Object.assign(cfg, { envSteps: 100_000, warmupSteps: 5000 });
    return cfg;
  }
  if (preset === 'quick') {
    if (pendulum) Object.assign(cfg, PENDULUM, PENDULUM_QUICK);
    else Object.assign(cfg, { hidden: 64, batch: 128, actorLr: 1e-3, criticLr: 1e-3, alphaLr: 1e-3, envSteps: 20_000, warmupSteps: 2000, evalEvery: 2000, logEvery: 500, checkpointEvery: 5000, replayCapacity: 200_000 });
    return cfg;
  }
  if (preset === 'ci') {
    Object.assign(cfg, PENDULUM, PENDULUM_QUICK, CI);
    return cfg;
  }
  throw new CliError(`unknown preset '${preset}'; known: ${PRESET_NAMES.join(', ')}`);
}

/** The presets as --help describes them. */
export const PRESET_HELP =
  "Presets: 'paper' is the paper's MuJoCo setting (256x2 ReLU networks, learning rate 3e-4, batch 256, 1M replay, " +
  "10k random warm-up steps, 1M env steps); 'default' is the same on Hopper, HalfCheetah and Walker2d (use --steps for a " +
  'budget that fits this machine) and on Pendulum small settings that reach the scripted controller in a few minutes ' +
  '(64x2 networks, batch 256, learning rate 1e-3, initial alpha 0.2, tau 0.02, gamma 0.97, 4 copies, 400 warm-up, ' +
  "3000 env steps). 'quick': MuJoCo 64x2 networks, batch 128, learning rate 1e-3, 2000 warm-up, 20k env steps; " +
  'Pendulum batch 128, learning rate 3e-3, tau 0.05, gamma 0.95, 1600 env steps (about a minute, less steady). ' +
  "'ci': the test suite's Pendulum run (the quick settings, evaluated every 200 env steps, at most 2400).";

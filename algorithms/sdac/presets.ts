// SDAC settings per environment. 'default' on MuJoCo is the paper's setting (scripts/train_mujoco.py: 5 vector
// envs, 30k random warm-up transitions, one update per vector step, 1M env steps, batch 256, 32 particles, 64
// reverse samples, 3 x 256 Mish networks, T = 20 with betas 0.8 linspace(1e-4, 0.999)); on Pendulum a small
// version that finishes on a software GPU in minutes. 'quick' is smaller and shorter still.
import { CliError } from '../common/cli.ts';
import { envKey, paperMujocoRun, type OnlineCommandConfig } from '../common/online-command.ts';
import { SDAC_PAPER_AGENT, type SDACAgentConfig } from './agent.ts';

export interface SDACConfig extends OnlineCommandConfig, SDACAgentConfig {}

export const PRESET_NAMES = ['default', 'quick'] as const;

const MUJOCO = new Set(['hopper', 'halfcheetah', 'walker2d']);

/** The paper's MuJoCo settings. */
function paper(env: string): SDACConfig {
  return {
    // one update per step of the 5 vector envs
    ...paperMujocoRun('sdac', env, { numEnvs: 5, warmupSteps: 30_000, updatesPerStep: 0.2, evalEvery: 10_000 }),
    ...SDAC_PAPER_AGENT,
    criticHidden: [...SDAC_PAPER_AGENT.criticHidden],
  };
}

/**
 * Pendulum, small: 64-wide networks, batch 64, 4 particles, 16 reverse samples, one update per transition, the
 * temperature adapted every 20 updates (so it moves within the short run), no learning-rate decay. The paper's
 * energy weights softmax(min Q 5 / alpha) stay: with 20 the 6000-step run ended at -354 +- 404 against
 * -263 +- 164 with 5 (the scripted swing-up controller: -185).
 */
const PENDULUM: Partial<SDACConfig> = {
  envSteps: 6000,
  warmupSteps: 1000,
  updatesPerStep: 1,
  replayCapacity: 100_000,
  evalEvery: 1000,
  logEvery: 250,
  checkpointEvery: 2000,
  batch: 64,
  actorHidden: 64,
  criticHidden: [64, 64, 64],
  actorLr: 1e-3,
  actorLrEnd: 1e-3,
  criticLr: 1e-3,
  particles: 4,
  reverseSamples: 16,
  alphaEvery: 20,
  alphaLr: 3e-2,
};

/** The configuration of a preset for an environment (an alias or Gymnasium id). */
export function sdacPreset(env: string, preset: string): SDACConfig {
  const key = envKey(env);
  const cfg = paper(env);
  cfg.preset = preset;
  const pendulum = key === 'pendulum';
  if (preset === 'default') {
    if (pendulum) Object.assign(cfg, PENDULUM);
    else if (!MUJOCO.has(key)) Object.assign(cfg, { envSteps: 100_000, warmupSteps: 5000 });
    return cfg;
  }
  if (preset === 'quick') {
    Object.assign(cfg, PENDULUM, { logEvery: 200 });
    if (pendulum) Object.assign(cfg, { envSteps: 3000, warmupSteps: 500, evalEvery: 1000 });
    else Object.assign(cfg, { envSteps: 20_000, warmupSteps: 2000, updatesPerStep: 0.2, evalEvery: 2000, checkpointEvery: 5000, replayCapacity: 200_000 });
    return cfg;
  }
  throw new CliError(`unknown preset '${preset}'; known: ${PRESET_NAMES.join(', ')}`);
}

/** The presets as --help describes them. */
export const PRESET_HELP =
  "Presets: 'default' is the paper's MuJoCo setting (3x256 Mish networks, batch 256, 5 vector envs, 30k random " +
  'warm-up, one update per vector step, 1M env steps: use --steps for a budget that fits this machine; every update ' +
  "runs 20-step chains over 8192 rows, so expect seconds per update on a software GPU); on Pendulum 64-wide networks, " +
  "batch 64, 4 particles, 16 reverse samples, temperature every 20 updates (lr 0.03), one update per transition, 6000 env steps. 'quick': the Pendulum " +
  'networks (3000 Pendulum env steps, or 20k MuJoCo env steps at one update per vector step).';

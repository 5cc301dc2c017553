// SAC: Soft Actor-Critic with automatic temperature and twin Q (Haarnoja et al. 2018), trained online in the
// project's environments; the baseline SDAC is compared against, and the agent the dataset recipe trains.
//
// `node algorithms/sac.ts --help` for the command line; with no arguments it runs the default Pendulum preset.
import { SacAgent } from './sac/agent.ts';
import { PRESET_HELP, PRESET_NAMES, sacPreset, type SacConfig } from './sac/presets.ts';
import { onlineCommandMain, runOnlineCommand, type OnlineCommand } from './common/online-command.ts';
import type { OptionSpec } from './common/cli.ts';

export { SacAgent, sacPreset, type SacConfig };

const SAC_OPTIONS = {
  hidden: { type: 'integer', positive: true, placeholder: 'n', description: 'hidden width of the actor and of each Q network' },
  layers: { type: 'integer', positive: true, placeholder: 'n', description: 'hidden ReLU layers of the actor and of each Q network' },
  lr: { type: 'number', nonNegative: true, description: 'learning rate of actor, critic and temperature' },
  'batch-size': { type: 'integer', positive: true, placeholder: 'n', description: 'minibatch size of every update' },
  gamma: { type: 'number', nonNegative: true, description: 'discount' },
  tau: { type: 'number', nonNegative: true, description: 'Polyak rate of the target critics' },
  alpha: { type: 'number', positive: true, description: 'starting temperature (fixed with --fixed-alpha)' },
  'fixed-alpha': { type: 'boolean', description: 'keep the temperature at --alpha instead of adapting it' },
  'target-entropy': { type: 'number', description: 'entropy the temperature steers to (default -act_dim)' },
} as const satisfies Record<string, OptionSpec>;

export const SAC_COMMAND: OnlineCommand<SacConfig, typeof SAC_OPTIONS> = {
  name: 'sac',
  title: 'SAC',
  description:
    'Soft Actor-Critic (Haarnoja et al., 2018) with automatic temperature: a tanh-Gaussian actor, twin Q critics with ' +
    'Polyak-averaged targets (tau 0.005, gamma 0.99), the temperature adapted towards the target entropy -act_dim.' +
    `\n\n${PRESET_HELP}`,
  presetNames: PRESET_NAMES,
  preset: sacPreset,
  options: SAC_OPTIONS,
  applyOptions(cfg, args) {
    if (args.hidden !== undefined) cfg.hidden = args.hidden;
    if (args.layers !== undefined) cfg.layers = args.layers;
    if (args.lr !== undefined) cfg.actorLr = cfg.criticLr = cfg.alphaLr = args.lr;
    if (args['batch-size'] !== undefined) cfg.batch = args['batch-size'];
    if (args.gamma !== undefined) cfg.gamma = args.gamma;
    if (args.tau !== undefined) {
      if (args.tau > 1) throw new Error('--tau must be in [0, 1]');
      cfg.tau = args.tau;
    }
    if (args.alpha !== undefined) cfg.initAlpha = args.alpha;
    if (args['fixed-alpha']) cfg.autoAlpha = false;
    if (args['target-entropy'] !== undefined) cfg.targetEntropy = args['target-entropy'];
  },
  makeAgent: (cfg, { obsDim, actDim }) => new SacAgent(obsDim, actDim, cfg),
  describe: (cfg) =>
    `${cfg.layers}x${cfg.hidden} ReLU, batch ${cfg.batch}, lr ${cfg.actorLr}, gamma ${cfg.gamma}, tau ${cfg.tau}, ` +
    `alpha ${cfg.autoAlpha ? `from ${cfg.initAlpha}, target entropy ${cfg.targetEntropy ?? '-act_dim'}` : `fixed ${cfg.initAlpha}`}`,
  examples: [
    'node algorithms/sac.ts',
    'node algorithms/sac.ts --env pendulum --preset quick',
    'node algorithms/sac.ts --env hopper --steps 50000',
    'node algorithms/sac.ts --env halfcheetah --preset quick --seed 1',
    'node algorithms/sac.ts --resume runs/sac-hopper-default-20260101-120000',
  ],
};

export const main = (argv?: string[]) => runOnlineCommand(SAC_COMMAND, argv);

await onlineCommandMain(import.meta.url, SAC_COMMAND);

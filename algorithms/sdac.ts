// SDAC: Soft Diffusion Actor-Critic (Ma et al., ICML 2025), a diffusion policy trained online by reweighted
// score matching with the Q-function as the energy, in the project's environments.
//
// `node algorithms/sdac.ts --help` for the command line; with no arguments it runs the default Pendulum preset.
import { SDACAgent } from './sdac/agent.ts';
import { PRESET_HELP, PRESET_NAMES, sdacPreset, type SDACConfig } from './sdac/presets.ts';
import { onlineCommandMain, runOnlineCommand, type OnlineCommand } from './common/online-command.ts';
import type { OptionSpec } from './common/cli.ts';

export { SDACAgent, sdacPreset, type SDACConfig };

const SDAC_OPTIONS = {
  'batch-size': { type: 'integer', positive: true, placeholder: 'n', description: 'minibatch size of every update' },
  hidden: { type: 'integer', positive: true, placeholder: 'n', description: 'hidden width of the noise network and of each Q network' },
  T: { type: 'integer', positive: true, placeholder: 'n', description: 'diffusion steps of the policy' },
  particles: { type: 'integer', positive: true, placeholder: 'n', description: 'reverse chains per state; the best by min Q is the action' },
  'reverse-samples': { type: 'integer', positive: true, placeholder: 'n', description: 'clean actions drawn per state in the policy loss (M)' },
  lr: { type: 'number', nonNegative: true, description: 'learning rate of the policy (its decay ends at a tenth of it) and the critic' },
  'alpha-lr': { type: 'number', nonNegative: true, description: 'learning rate of log alpha' },
  'alpha-every': { type: 'integer', positive: true, placeholder: 'n', description: 'updates between temperature updates (a multiple of 2)' },
  alpha: { type: 'number', positive: true, description: 'starting temperature (default 5)' },
  'energy-scale': { type: 'number', nonNegative: true, description: "policy-loss weights are softmax(min Q energy-scale / alpha) (the paper's 5)" },
} as const satisfies Record<string, OptionSpec>;

export const SDAC_COMMAND: OnlineCommand<SDACConfig, typeof SDAC_OPTIONS> = {
  name: 'sdac',
  title: 'SDAC',
  description:
    'Soft Diffusion Actor-Critic (Ma et al., 2025): a 20-step DDPM policy whose action is the best of 32 reverse chains ' +
    'by min Q plus Gaussian noise of std 0.1 alpha; twin Q critics regressed to 0.2 r + 0.99 min Q\'(s\', a\'); the ' +
    'policy trained by reweighted score matching (64 clean actions drawn back from the noised new action, weighted ' +
    'by softmax(min Q 5 / alpha)); policy and target updates every 2 updates, the temperature every 250 from the ' +
    'Gaussian entropy of the exploration noise towards -0.9 act_dim. Evaluation: the target policy, best of the ' +
    'particles, no noise.' +
    `\n\n${PRESET_HELP}`,
  presetNames: PRESET_NAMES,
  preset: sdacPreset,
  options: SDAC_OPTIONS,
  applyOptions(cfg, args) {
    if (args['batch-size'] !== undefined) cfg.batch = args['batch-size'];
    if (args.hidden !== undefined) {
      cfg.actorHidden = args.hidden;
      cfg.criticHidden = cfg.criticHidden.map(() => args.hidden!);
    }
    if (args.T !== undefined) cfg.T = args.T;
    if (args.particles !== undefined) cfg.particles = args.particles;
    if (args['reverse-samples'] !== undefined) cfg.reverseSamples = args['reverse-samples'];
    if (args.lr !== undefined) {
      cfg.actorLr = cfg.criticLr = args.lr;
      cfg.actorLrEnd = args.lr / 10;
    }
    if (args['alpha-lr'] !== undefined) cfg.alphaLr = args['alpha-lr'];
    if (args['alpha-every'] !== undefined) {
      if (args['alpha-every'] % cfg.delay !== 0) throw new Error(`--alpha-every must be a multiple of ${cfg.delay}`);
      cfg.alphaEvery = args['alpha-every'];
    }
    if (args.alpha !== undefined) cfg.initAlpha = args.alpha;
    if (args['energy-scale'] !== undefined) cfg.energyScale = args['energy-scale'];
  },
  makeAgent: (cfg, { obsDim, actDim }) => new SDACAgent(obsDim, actDim, cfg),
  describe: (cfg) =>
    `T ${cfg.T}, ${cfg.particles} particles, ${cfg.reverseSamples} reverse samples, policy ${cfg.actorDepth}x${cfg.actorHidden} Mish, ` +
    `critic ${cfg.criticHidden.join('x')} Mish, batch ${cfg.batch}, lr ${cfg.actorLr} (critic ${cfg.criticLr}), weights softmax(Q ${cfg.energyScale}/alpha), alpha from ${cfg.initAlpha} ` +
    `(every ${cfg.alphaEvery} updates, lr ${cfg.alphaLr})`,
  examples: [
    'node algorithms/sdac.ts',
    'node algorithms/sdac.ts --env pendulum --preset quick',
    'node algorithms/sdac.ts --env hopper --steps 50000',
    'node algorithms/sdac.ts --env hopper --preset quick --seed 1',
    'node algorithms/sdac.ts --resume runs/sdac-hopper-default-20260101-120000',
  ],
};

export const main = (argv?: string[]) => runOnlineCommand(SDAC_COMMAND, argv);

await onlineCommandMain(import.meta.url, SDAC_COMMAND);

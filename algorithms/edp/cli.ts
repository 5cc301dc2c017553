// EDP's command line beyond what every offline command takes: the backbone, its presets and flags.
import { CliError, type OptionSpec } from '../common/cli.ts';
import { DIFFUSION_POLICY_OPTIONS, applyDiffusionPolicyOptions } from '../common/diffusion-policy-cli.ts';
import type { OfflineCli } from '../common/offline-method.ts';
import { BACKBONES, TASK_NAMES, isBackbone, taskConfig, type EdpConfig } from './presets.ts';

const OPTIONS = {
  backbone: { type: 'string', default: 'td3', placeholder: 'td3|crr|iql', description: 'policy objective on the action approximation' },
  alpha: { type: 'number', nonNegative: true, description: 'TD3 backbone: weight of the normalised Q term (default 2)' },
  'guide-coef': { type: 'number', nonNegative: true, description: 'weight of the policy term against the diffusion loss (guide_coef, default 1)' },
  ...DIFFUSION_POLICY_OPTIONS,
} as const satisfies Record<string, OptionSpec>;

export const EDP_CLI: OfflineCli<EdpConfig, typeof OPTIONS> = {
  description:
    'Efficient Diffusion Policies (Kang et al., NeurIPS 2023): trains a long-chain diffusion policy whose policy ' +
    'term is computed at a one-call action approximation (TD3: normalised Q; CRR and IQL: advantage-weighted ' +
    'likelihood of the data actions), with a twin-Q critic (TD3, CRR: targets from the target policy by DPM-Solver; ' +
    'IQL: expectile V); evaluates it in the environment (50 DPM-Solver samples per state, one picked by softmax of ' +
    'the target Q) and prints its normalised score.\n\n' +
    'With no arguments it runs the quick preset with the TD3 backbone on the shipped Pendulum dataset (pendulum-medium-v1) ' +
    'and compares the result with behaviour cloning (an MLP fitted to the actions by mean squared error) and the ' +
    'dataset. Run directories are named runs/edp-<backbone>-<task>-<timestamp>.',
  examples: [
    'node algorithms/edp.ts',
    'node algorithms/edp.ts --backbone iql',
    'node algorithms/edp.ts --backbone crr --train-steps 4000',
    'node algorithms/edp.ts --task hopper-medium-v2 --dataset path/to/hopper-medium-v2.hdf5',
    'node algorithms/edp.ts --resume runs/edp-td3-pendulum-quick-20250101-120000',
  ],
  taskNames: TASK_NAMES,
  preset(args) {
    if (!isBackbone(args.backbone)) throw new CliError(`--backbone must be one of ${BACKBONES.join(', ')}, got '${args.backbone}'`);
    return taskConfig(args.task, args.backbone);
  },
  options: OPTIONS,
  apply(cfg, args) {
    applyDiffusionPolicyOptions(cfg, args);
    if (args.alpha !== undefined) cfg.alpha = args.alpha;
    if (args['guide-coef'] !== undefined) cfg.guideCoef = args['guide-coef'];
    if (cfg.T < 21) throw new CliError(`--T must be at least 21 for EDP's scaled linear schedule (its largest beta is 20/T), got ${cfg.T}`);
  },
  runName: (cfg) => `edp-${cfg.backbone}-${cfg.task}`,
};

// Diffusion-QL's command line beyond what every offline command takes: its presets and flags.
import type { OptionSpec } from '../common/cli.ts';
import { DIFFUSION_POLICY_OPTIONS, applyDiffusionPolicyOptions } from '../common/diffusion-policy-cli.ts';
import type { OfflineCli } from '../common/offline-method.ts';
import { TASK_NAMES, taskConfig, type DqlConfig } from './presets.ts';

const OPTIONS = {
  eta: { type: 'number', nonNegative: true, description: "weight of the Q term in the policy loss (default: the task's)" },
  ...DIFFUSION_POLICY_OPTIONS,
} as const satisfies Record<string, OptionSpec>;

export const DQL_CLI: OfflineCli<DqlConfig, typeof OPTIONS> = {
  description:
    'Diffusion-QL (Wang et al., ICLR 2023): trains a T-step diffusion policy on behaviour cloning plus a Q term ' +
    'backpropagated through the whole reverse chain, with a twin-Q critic whose targets come from the EMA policy; ' +
    'evaluates it in the environment (50 samples per state, one picked by softmax of the target Q) and prints its ' +
    'normalised score.\n\n' +
    'With no arguments it runs the quick preset on the shipped Pendulum dataset (pendulum-medium-v1) and compares the ' +
    'result with behaviour cloning (an MLP fitted to the actions by mean squared error) and the dataset itself.',
  examples: [
    'node algorithms/dql.ts',
    'node algorithms/dql.ts --T 10 --eta 2.5 --train-steps 4000',
    'node algorithms/dql.ts --task hopper-medium-v2 --dataset path/to/hopper-medium-v2.hdf5',
    'node algorithms/dql.ts --resume runs/dql-pendulum-quick-20250101-120000',
  ],
  taskNames: TASK_NAMES,
  preset: (args) => taskConfig(args.task),
  options: OPTIONS,
  apply(cfg, args) {
    applyDiffusionPolicyOptions(cfg, args);
    if (args.eta !== undefined) cfg.eta = args.eta;
  },
};

// SRPO's command line beyond what every offline command takes: its presets and the flags that set its phases.
import { assignDefined, type OptionSpec } from '../common/cli.ts';
import type { OfflineCli } from '../common/offline-method.ts';
import { TASK_NAMES, taskConfig, type SrpoConfig } from './presets.ts';

const OPTIONS = {
  'behavior-steps': { type: 'integer', nonNegative: true, placeholder: 'n', description: 'phase 1 steps' },
  'critic-steps': { type: 'integer', nonNegative: true, placeholder: 'n', description: 'phase 2 steps' },
  'actor-steps': { type: 'integer', nonNegative: true, placeholder: 'n', description: 'phase 3 steps' },
  'behavior-batch': { type: 'integer', positive: true, placeholder: 'n', description: 'phase 1 batch size' },
  'batch-size': { type: 'integer', positive: true, placeholder: 'n', description: 'phase 2 and 3 batch size' },
  beta: { type: 'number', nonNegative: true, description: "weight of the critic's action gradient (default: the task's)" },
  weighting: { type: 'string', choices: ['VDS', 'stable', 'score'], description: 'w(t): VDS sigma^2 (default), stable 1, score alpha/sigma' },
  baseline: { type: 'boolean', description: 'use eps - z instead of eps in the score term' },
} as const satisfies Record<string, OptionSpec>;

export const SRPO_CLI: OfflineCli<SrpoConfig, typeof OPTIONS> = {
  description:
    'Score Regularized Policy Optimization (Chen et al., ICLR 2024): trains a diffusion behaviour model (phase 1), an IQL ' +
    'critic (phase 2) and a deterministic one-step actor regularised by the behaviour score (phase 3), then evaluates ' +
    'the actor in the environment and prints its normalised score.\n\n' +
    'With no arguments it runs the quick preset on the shipped Pendulum dataset (pendulum-medium-v1) and compares the ' +
    'result with behaviour cloning (the behaviour model sampled with DPM-Solver, and an MLP fitted to the actions by ' +
    'mean squared error) and with the dataset itself.',
  examples: [
    'node algorithms/srpo.ts',
    'node algorithms/srpo.ts --task hopper-medium-v2 --dataset path/to/hopper-medium-v2.hdf5',
    'node algorithms/srpo.ts --dataset hopper-expert-v4 --task hopper-medium-expert-v2 --behavior-steps 20000',
    'node algorithms/srpo.ts --resume runs/srpo-pendulum-quick-20250101-120000',
    'node algorithms/srpo.ts --behavior runs/A/behavior.safetensors --critic runs/A/critic.safetensors --beta 0.1',
  ],
  taskNames: TASK_NAMES,
  preset: (args) => taskConfig(args.task),
  options: OPTIONS,
  apply(cfg, args) {
    assignDefined(cfg, {
      behaviorSteps: args['behavior-steps'],
      criticSteps: args['critic-steps'],
      actorSteps: args['actor-steps'],
      behaviorBatch: args['behavior-batch'],
      criticBatch: args['batch-size'],
      actorBatch: args['batch-size'],
      beta: args.beta,
      weighting: args.weighting as SrpoConfig['weighting'] | undefined,
    });
    if (args.baseline) cfg.baseline = true;
  },
};

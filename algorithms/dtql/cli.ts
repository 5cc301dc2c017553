// DTQL's command line beyond what every offline command takes: its presets and the flags that set its training.
import { assignDefined, type OptionSpec } from '../common/cli.ts';
import type { OfflineCli } from '../common/offline-method.ts';
import { TASK_NAMES, taskConfig, type DtqlConfig } from './presets.ts';

const OPTIONS = {
  'pretrain-steps': { type: 'integer', nonNegative: true, placeholder: 'n', description: 'pretraining steps (behaviour model and critic)' },
  'train-steps': { type: 'integer', nonNegative: true, placeholder: 'n', description: 'training steps (critic, behaviour model and actor)' },
  'batch-size': { type: 'integer', positive: true, placeholder: 'n', description: 'batch size of every update' },
  lr: { type: 'number', nonNegative: true, description: "learning rate of the behaviour model and the actor (default: the task's)" },
  alpha: { type: 'number', nonNegative: true, description: "weight of the trust-region loss (default: the task's)" },
  gamma: { type: 'number', nonNegative: true, description: "weight of the data actions' negative log-likelihood (default: the task's)" },
  candidates: { type: 'integer', positive: true, placeholder: 'n', description: 'one-step actions per state at evaluation, one picked by softmax(Q)' },
} as const satisfies Record<string, OptionSpec>;

export const DTQL_CLI: OfflineCli<DtqlConfig, typeof OPTIONS> = {
  description:
    'Diffusion Trusted Q-Learning (Chen et al., NeurIPS 2024): pretrains an EDM diffusion behaviour model and an IQL ' +
    'critic, then trains a one-step Gaussian-tanh policy to maximise Q under the trust-region loss (the diffusion loss ' +
    "at the policy's own actions) while the critic and behaviour model keep training; evaluates the policy in the " +
    'environment (candidate actions per state, one picked by softmax of the target Q) and prints its normalised score.\n\n' +
    'With no arguments it runs the quick preset on the shipped Pendulum dataset (pendulum-medium-v1) and compares the ' +
    'result with behaviour cloning (the diffusion model sampled with EDM Heun, and an MLP fitted to the actions by mean ' +
    'squared error) and with the dataset itself.',
  examples: [
    'node algorithms/dtql.ts',
    'node algorithms/dtql.ts --task hopper-medium-v2 --dataset path/to/hopper-medium-v2.hdf5',
    'node algorithms/dtql.ts --alpha 5 --train-steps 6000',
    'node algorithms/dtql.ts --resume runs/dtql-pendulum-quick-20250101-120000',
    'node algorithms/dtql.ts --pretrained runs/A/pretrain.safetensors --alpha 0.5',
  ],
  taskNames: TASK_NAMES,
  preset: (args) => taskConfig(args.task),
  options: OPTIONS,
  apply(cfg, args) {
    assignDefined(cfg, {
      pretrainSteps: args['pretrain-steps'],
      trainSteps: args['train-steps'],
      batch: args['batch-size'],
      lr: args.lr,
      alpha: args.alpha,
      gamma: args.gamma,
      candidates: args.candidates,
    });
  },
};

// The flags Diffusion-QL and EDP share beyond what every offline command takes.
import { assignDefined, type CliValues, type OptionSpec } from './cli.ts';
import type { DiffusionPolicyConfig } from './diffusion-policy.ts';

export const DIFFUSION_POLICY_OPTIONS = {
  'train-steps': { type: 'integer', nonNegative: true, placeholder: 'n', description: 'training steps (critic and policy per step)' },
  'batch-size': { type: 'integer', positive: true, placeholder: 'n', description: 'batch size' },
  lr: { type: 'number', nonNegative: true, description: "policy learning rate (default: the task's)" },
  'lr-decay': { type: 'boolean', description: "cosine decay of the policy's learning rate to 0 over the training steps" },
  T: { type: 'integer', positive: true, placeholder: 'n', description: 'diffusion steps of the policy' },
  'grad-clip': { type: 'number', nonNegative: true, description: "global gradient-norm clip (0: none; default: the task's)" },
  'max-q-backup': { type: 'boolean', description: 'critic target: max over 10 next actions per head, then min over heads' },
  candidates: { type: 'integer', positive: true, placeholder: 'n', description: "policy samples per state at evaluation, one picked by softmax(min Q')" },
  'select-temperature': { type: 'number', nonNegative: true, description: "multiplier of min Q' in the selection softmax (default: the task's; 10 in pendulum-quick, 1 in the papers' tasks)" },
} as const satisfies Record<string, OptionSpec>;

/** Writes the shared flags that were given into cfg. */
export function applyDiffusionPolicyOptions(cfg: DiffusionPolicyConfig, args: CliValues<typeof DIFFUSION_POLICY_OPTIONS>): void {
  assignDefined(cfg, {
    trainSteps: args['train-steps'],
    batch: args['batch-size'],
    lr: args.lr,
    T: args.T,
    gradClip: args['grad-clip'],
    candidates: args.candidates,
    selectTemperature: args['select-temperature'],
  });
  if (args['max-q-backup']) cfg.maxQBackup = true;
  if (args['lr-decay']) cfg.lrDecay = true;
}

// Diffusion-QL (Wang, Hunt, Zhou, ICLR 2023): the policy is a T-step diffusion model (T = 5, vp schedule)
// trained on behaviour cloning plus Q, with the Q term backpropagated through the whole reverse chain:
//   critic  y = r + 0.99 notDone min(Q1', Q2')(s', a'),  a' from the EMA policy's full chain (max-Q backup:
//           max over 10 a' per head, then min); loss MSE(Q1, y) + MSE(Q2, y); Polyak 0.005 every step
//   actor   a_new = reverse chain with gradient; q_loss = -mean Q1(s, a_new) / stopgrad(mean |Q2(s, a_new)|),
//           heads swapped with probability 0.5; loss = L_bc + eta q_loss
//   EMA     decay 0.995 every 5 steps from step 1000 (a copy before)
// Evaluation draws 50 actions per state with the online policy and picks one from softmax(min Q').
//
// `node algorithms/dql.ts --help` for the command line; with no arguments it runs the quick Pendulum preset.
import { backward, detach } from '../engine/autograd.ts';
import { add, scale } from '../engine/ops/elementwise.ts';
import { concat } from '../engine/ops/shape.ts';
import type { Generator } from '../engine/random.ts';
import { dispose as disposeEngine } from '../engine/runtime.ts';
import type { Tensor } from '../engine/tensor.ts';
import type { ReplayBatch } from '../datasets/replay.ts';
import { ddpmSample } from './diffusion/samplers.ts';
import { isMainModule, parseCli, runMain, type CliSpec, type OptionSpec } from './common/run.ts';
import { interruptible, openDevice, openRun, tuningLog } from './common/offline.ts';
import {
  COMMON_CLI_OPTIONS, NON_TRAINING_OPTIONS, SEED, TwinQCritic, applyCommonArgs, clippedStep, makeDiffusionActor, printSummary,
  randomHeadQLoss, runDiffusionPolicy, samplePolicy, updateTarget, withFrozen,
  type DiffusionActor, type DiffusionPolicyRunOptions, type DiffusionPolicySummary, type MethodModels,
} from './common/diffusion-policy.ts';
import { repeatRows } from './diffusion/select.ts';
import { BUILTIN_DATASETS, QUICK_PENDULUM, TASK_NAMES, taskConfig, type DqlConfig } from './dql/presets.ts';

export { taskConfig, QUICK_PENDULUM, type DqlConfig };

export interface DqlModels extends MethodModels {
  critic: TwinQCritic;
  cfg: DqlConfig;
}

/**
 * The policy's loss on a batch: L_bc + eta q_loss with a_new drawn through the reverse chain with gradient
 * (the critic's parameters off the tape). Returns the loss and its terms [L_bc, q_loss].
 */
export function actorLoss(actor: DiffusionActor, critic: TwinQCritic, cfg: DqlConfig, batch: ReplayBatch, gen: Generator): { loss: Tensor; bc: Tensor; q: Tensor } {
  const d = actor.diffusion;
  const bc = d.loss(batch.actions, batch.obs, gen);
  const rows = batch.obs.shape[0]!;
  const aNew = ddpmSample(d, batch.obs, { batch: rows, actionDim: batch.actions.shape[1]!, generator: gen, logVarMode: d.logVarMode, withGrad: true });
  const q = withFrozen([critic.q], () => {
    const [q1, q2] = critic.q.forward(batch.obs, aNew);
    return randomHeadQLoss(q1, q2, gen, 'other');
  });
  return { loss: add(bc, scale(q, cfg.eta)), bc, q };
}

/** One training step: critic (targets from the EMA policy's chain), policy, then the variant's EMA update. */
export function trainStep(actor: DiffusionActor, critic: TwinQCritic, cfg: DqlConfig, batch: ReplayBatch, gen: Generator, variant: number) {
  const n = cfg.maxQBackup ? cfg.maxQSamples : 1;
  const nextActions = samplePolicy(actor.target!, repeatRows(batch.nextObs, n), gen, 'ddpm', cfg.T);
  const qLoss = critic.update(batch, critic.nextValue(batch.nextObs, nextActions, n));
  const { loss, bc, q } = actorLoss(actor, critic, cfg, batch, gen);
  actor.optimizer.group.zeroGrad();
  backward(loss);
  clippedStep(actor.optimizer, cfg.gradClip);
  updateTarget(actor, cfg, variant);
  return { qLoss, actorLoss: detach(loss), terms: [concat([detach(bc), detach(q)]), ['bcLoss', 'qTerm']] as [Tensor, string[]] };
}

export function makeModels(obsDim: number, actDim: number, cfg: DqlConfig): DqlModels {
  const actor = makeDiffusionActor('dql', obsDim, actDim, cfg, true);
  const critic = new TwinQCritic(obsDim, actDim, {
    hidden: cfg.criticHidden, lr: cfg.criticLr, discount: cfg.discount, tau: cfg.targetTau, gradClip: cfg.gradClip, seed: cfg.seed * 16 + SEED.critic,
  });
  return {
    actor,
    critic,
    cfg,
    criticModules: critic.modules(),
    criticOptimizers: { critic: critic.optimizer },
    step: (batch, gen, variant) => trainStep(actor, critic, cfg, batch, gen, variant),
    dispose: () => {
      actor.optimizer.dispose();
      critic.dispose();
    },
  };
}

export function runDql(cfg: DqlConfig, opts: DiffusionPolicyRunOptions): Promise<DiffusionPolicySummary> {
  return runDiffusionPolicy('Diffusion-QL', cfg, (o, a) => makeModels(o, a, cfg), opts);
}


// =========================================================================================================
// Command line

const CLI_OPTIONS = {
  task: { type: 'string', default: 'pendulum-quick', placeholder: 'name', description: `preset: ${TASK_NAMES.join(', ')}` },
  eta: { type: 'number', nonNegative: true, description: "weight of the Q term in the policy loss (default: the task's)" },
  ...COMMON_CLI_OPTIONS,
} as const satisfies Record<string, OptionSpec>;

export const CLI: CliSpec<typeof CLI_OPTIONS> = {
  usage: 'node algorithms/dql.ts [options]',
  description:
    'Diffusion-QL (Wang et al., ICLR 2023): trains a T-step diffusion policy on behaviour cloning plus a Q term ' +
    'backpropagated through the whole reverse chain, with a twin-Q critic whose targets come from the EMA policy; ' +
    'evaluates it in the environment (50 samples per state, one picked by softmax of the target Q) and prints its ' +
    'normalised score.\n\n' +
    `With no arguments it runs the quick preset on the shipped Pendulum dataset (${Object.keys(BUILTIN_DATASETS)[0]}) and ` +
    'compares the result with behaviour cloning (an MLP fitted to the actions by mean squared error) and the dataset ' +
    'itself. Outputs go to runs/dql-<task>-<timestamp>/: config.json, log.jsonl, train.safetensors (weights, ' +
    'optimiser state, step), curves.svg and summary.json.',
  options: CLI_OPTIONS,
  examples: [
    'node algorithms/dql.ts',
    'node algorithms/dql.ts --T 10 --eta 2.5 --train-steps 4000',
    'node algorithms/dql.ts --task hopper-medium-v2 --dataset path/to/hopper-medium-v2.hdf5',
    'node algorithms/dql.ts --resume runs/dql-pendulum-quick-20250101-120000',
  ],
};

type CliArgs = NonNullable<ReturnType<typeof parseCli<typeof CLI_OPTIONS>>>;

export function configFromArgs(args: CliArgs): DqlConfig {
  const cfg = taskConfig(args.task);
  applyCommonArgs(cfg, args);
  if (args.eta !== undefined) cfg.eta = args.eta;
  return cfg;
}

const TRAINING_OPTIONS = Object.keys(CLI_OPTIONS).filter((k) => !NON_TRAINING_OPTIONS.includes(k));

export async function main(argv: string[] = process.argv.slice(2)): Promise<DiffusionPolicySummary | null> {
  const args = parseCli(CLI, argv);
  if (!args) return null;
  const { cfg, dir, resumed } = openRun<DqlConfig>(args, argv, TRAINING_OPTIONS, () => {
    const fresh = configFromArgs(args);
    return { cfg: fresh, name: `dql-${fresh.task}` };
  });
  const rt = await openDevice(args.device, { tune: args.tune, log: tuningLog(args.quiet) });
  if (!args.quiet) process.stderr.write(`Diffusion-QL ${cfg.task}: device ${rt.info.description || rt.info.vendor || 'unknown'} (${rt.info.adapterClass}); run directory ${dir}\n`);
  try {
    const summary = await interruptible(dir, 'node algorithms/dql.ts', (stopRequested) =>
      runDql(cfg, { dir, resume: resumed, quiet: args.quiet, stopRequested, eager: args.eager }),
    );
    printSummary(summary);
    return summary;
  } finally {
    disposeEngine();
  }
}

if (isMainModule(import.meta.url)) await runMain('dql', async () => void (await main()));

// DTQL: Diffusion Trusted Q-Learning (Chen, Wang, Zhou, NeurIPS 2024).
//
// A diffusion model clones the behaviour policy; a one-step Gaussian-tanh policy is trained to maximise Q while
// the diffusion loss evaluated at its own actions (the trust-region loss) keeps those actions where the behaviour
// model puts mass, without ever sampling the diffusion chain:
//   behaviour  D_phi on the EDM parameterisation, L_BC = E ||D_phi(a + sigma eps, sigma; s) - a||^2 / c_out^2
//   critic     IQL: twin Q (LayerNorm + Mish), V regressed to the online min Q by expectile, one joint step
//              (valueTarget 'target': to the Polyak-averaged target Q instead, as the quick Pendulum preset)
//   actor      L = alpha L_TR(a_theta) - mean min(Q1, Q2)(s, a_theta) + gamma (-mean log pi_theta(a_data | s)),
//              L_TR = E ||D_phi(a_theta + sigma eps, sigma; s) - a_theta||^2 / c_out^2, only theta stepped
// Pretraining fits the behaviour model and the critic; then every step updates critic, behaviour model and actor
// on one batch. Evaluation draws `candidates` one-step actions per state and picks one from softmax(min Q').
//
// `node algorithms/dtql.ts --help` for the command line; with no arguments it runs the quick Pendulum preset.
import { join } from 'node:path';
import { backward, detach, noGrad } from '../engine/autograd.ts';
import { zeros } from '../engine/basic.ts';
import { HostRng } from '../engine/init.ts';
import type { Module } from '../engine/nn.ts';
import { add, neg, scale, sub } from '../engine/ops/elementwise.ts';
import { mean } from '../engine/ops/reduce.ts';
import { concat } from '../engine/ops/shape.ts';
import { AdamW, cosineLR } from '../engine/optim.ts';
import { Generator } from '../engine/random.ts';
import { dispose as disposeEngine } from '../engine/runtime.ts';
import type { Tensor } from '../engine/tensor.ts';
import type { ObservationStats } from '../datasets/presets.ts';
import type { ReplayBatch, ReplayStore } from '../datasets/replay.ts';
import type { BatchPolicy, EvaluateResult } from '../envs/evaluate.ts';
import { makeBehaviorModel, type BehaviorModel } from './diffusion/behavior.ts';
import type { EDMDiffusion } from './diffusion/models.ts';
import { repeatRows, selectByCritic } from './diffusion/select.ts';
import { IQLCritic, IQL_DTQL } from './iql.ts';
import {
  CliError, JsonlLog, assignDefined, RUN_FILES, formatDuration, isMainModule, parseCli, removeStaleTemps, runMain, writeFileAtomic,
  type CliSpec, type OptionSpec, type ProgressStream,
} from './common/run.ts';
import {
  curvesSvg as offlineCurvesSvg, envPolicy, evaluatePolicy, interruptible, loadOfflineData, openDevice, openRun, ENGINE_CLI_OPTIONS, tuningLog, applyOfflineArgs, phaseStart, runPhase, say,
  type PhaseRun, type RunContext,
} from './common/offline.ts';
import { datasetPath, trainBcMlp } from './srpo.ts';
import type { ActionBox } from './srpo/actor.ts';
import { GaussianTanhActor } from './dtql/actor.ts';
import { BUILTIN_DATASETS, QUICK_PENDULUM, TASK_NAMES, taskConfig, type DtqlConfig } from './dtql/presets.ts';

export { taskConfig, QUICK_PENDULUM, type DtqlConfig };

export const PHASES = ['pretrain', 'train'] as const;
export type Phase = (typeof PHASES)[number];

/** Stream offsets, so networks and phases draw independent random numbers from one seed. */
const SEED = { behavior: 1, critic: 2, actor: 3, pretrain: 4, train: 5, bcSample: 7, select: 8, bcMlp: 9 } as const;

// =========================================================================================================
// Models

export interface DtqlModels {
  /** The toolkit's 'dtql' behaviour model: DTQLDenoiserNet with EDM preconditioning. */
  behavior: BehaviorModel;
  diffusion: EDMDiffusion;
  critic: IQLCritic;
  actor: GaussianTanhActor;
  behaviorOpt: AdamW;
  actorOpt: AdamW;
  cfg: DtqlConfig;
}

/** The three networks and the behaviour and actor optimisers (the critic holds its own). */
export function makeModels(obsDim: number, actDim: number, cfg: DtqlConfig): DtqlModels {
  const behavior = makeBehaviorModel('dtql', obsDim, actDim, { hidden: cfg.behaviorHidden, maxAction: 1, seed: cfg.seed * 16 + SEED.behavior });
  const critic = new IQLCritic(
    obsDim,
    actDim,
    { ...IQL_DTQL, hidden: [...cfg.criticHidden], lr: cfg.criticLr, expectile: cfg.expectile, discount: cfg.discount, tau: cfg.targetTau, valueTarget: cfg.valueTarget ?? 'online' },
    { seed: cfg.seed * 16 + SEED.critic },
  );
  const actor = new GaussianTanhActor(obsDim, actDim, { hidden: cfg.actorHidden, layers: cfg.actorLayers, rng: new HostRng(cfg.seed * 16 + SEED.actor) });
  const behaviorNet = behavior.net as unknown as Module;
  return {
    behavior,
    diffusion: behavior.diffusion as EDMDiffusion,
    critic,
    actor,
    behaviorOpt: new AdamW(behaviorNet.paramGroup(), { lr: cfg.lr }),
    actorOpt: new AdamW(actor.paramGroup(), { lr: cfg.lr }),
    cfg,
  };
}

export function disposeModels(m: DtqlModels): void {
  m.behaviorOpt.dispose();
  m.actorOpt.dispose();
  m.critic.dispose();
}

/** Runs fn with the modules' parameters off the tape: gradients flow through them to their inputs, not into them. */
function withFrozen<T>(modules: Module[], fn: () => T): T {
  const params = modules.flatMap((mod) => mod.parameters()).filter((p) => p.requiresGrad);
  for (const p of params) p.requiresGrad = false;
  try {
    return fn();
  } finally {
    for (const p of params) p.requiresGrad = true;
  }
}

// =========================================================================================================
// Training steps (recordable: no readbacks, no host writes, learning rates from the optimisers, no branches
// that change from step to step). Call inside tidy.

/** One Adam step of the behaviour model on its EDM loss; returns the loss. */
export function behaviorStep(m: DtqlModels, batch: ReplayBatch, gen: Generator): Tensor {
  const loss = m.behavior.loss(batch.actions, batch.obs, gen);
  m.behaviorOpt.group.zeroGrad();
  backward(loss);
  m.behaviorOpt.step();
  return loss;
}

/**
 * One Adam step of the actor on alpha L_TR - mean min Q(s, a) + gamma NLL(a_data). The behaviour network and
 * the online Q are frozen for the step, so only the actor's parameters get gradients. Returns the loss and its
 * terms [L_TR, mean min Q, NLL (0 when gamma is 0)].
 */
export function actorStep(m: DtqlModels, batch: ReplayBatch, gen: Generator): { loss: Tensor; terms: Tensor } {
  const { actor, diffusion, critic, actorOpt, cfg } = m;
  return withFrozen([m.behavior.net as unknown as Module, critic.q], () => {
    const a = actor.sample(batch.obs, gen);
    const trLoss = diffusion.trustRegionLoss(a, batch.obs, gen);
    const q = mean(critic.q.min(batch.obs, a));
    let loss = sub(scale(trLoss, cfg.alpha), q);
    let nll: Tensor | null = null;
    if (cfg.gamma > 0) {
      nll = neg(mean(actor.logProb(batch.obs, batch.actions)));
      loss = add(loss, scale(nll, cfg.gamma));
    }
    actorOpt.group.zeroGrad();
    backward(loss);
    actorOpt.step();
    return { loss: detach(loss), terms: concat([detach(trLoss), detach(q), nll ? detach(nll) : zeros([1])]) };
  });
}

export type StepLosses = Record<string, Tensor | [Tensor, string[]]>;

/** Pretraining: one behaviour step and one critic step on the same batch (the paper's order). */
export function pretrainStep(m: DtqlModels, batch: ReplayBatch, gen: Generator): StepLosses {
  const bcLoss = behaviorStep(m, batch, gen);
  const { qLoss, vLoss } = m.critic.update(batch);
  return { bcLoss, qLoss, vLoss };
}

/** Training: critic, behaviour model, then actor, on one batch (the paper's order). */
export function trainStep(m: DtqlModels, batch: ReplayBatch, gen: Generator): StepLosses {
  const { qLoss, vLoss } = m.critic.update(batch);
  const bcLoss = behaviorStep(m, batch, gen);
  const { loss, terms } = actorStep(m, batch, gen);
  return { qLoss, vLoss, bcLoss, actorLoss: loss, terms: [terms, ['trustRegion', 'qPolicy', 'nll']] };
}

/**
 * Cosine decay of every learning rate to 0 over the training phase (the lrDecay presets), as schedules inside
 * the optimisers so recorded steps follow them. All three follow the actor's step count, which is the training
 * step index whatever the behaviour model's and critic's optimisers counted in pretraining (and it is checkpointed
 * with the training phase); within a step the critic and behaviour model step before the actor, so all three see
 * the same index.
 */
export function useDecaySchedules(m: DtqlModels): void {
  const { cfg, actorOpt } = m;
  const factor = cosineLR(1, Math.max(1, cfg.trainSteps));
  actorOpt.schedule = (count) => cfg.lr * factor(count);
  m.behaviorOpt.schedule = () => cfg.lr * factor(actorOpt.stepCount);
  m.critic.setSchedule(() => cfg.criticLr * factor(actorOpt.stepCount));
}

// =========================================================================================================
// The phases as runnable units (what runDtql runs; tests drive them directly)

function criticParts(m: DtqlModels) {
  return { modules: m.critic.modules(), optimizers: { q: m.critic.qOptimizer, v: m.critic.vOptimizer } };
}

/** Pretraining over a replay store: the behaviour model and the critic. */
export function pretrainPhase(m: DtqlModels, store: ReplayStore, checkpoint: string): PhaseRun {
  const { cfg } = m;
  const gen = new Generator(cfg.seed * 16 + SEED.pretrain);
  const critic = criticParts(m);
  return {
    phase: 'pretrain',
    steps: cfg.pretrainSteps,
    checkpoint,
    parts: {
      modules: { behavior: m.behavior.net as unknown as Module, ...critic.modules },
      optimizers: { behavior: m.behaviorOpt, ...critic.optimizers },
      generators: { data: gen },
    },
    step: () => pretrainStep(m, store.sample(cfg.batch, gen), gen),
  };
}

/** Training: critic, behaviour model and actor; `evaluate` (optional) scores the policy at eval points. */
export function trainPhase(m: DtqlModels, store: ReplayStore, checkpoint: string, evaluate?: PhaseRun['evaluate']): PhaseRun {
  const { cfg } = m;
  if (cfg.lrDecay) useDecaySchedules(m);
  const gen = new Generator(cfg.seed * 16 + SEED.train);
  const critic = criticParts(m);
  return {
    phase: 'train',
    steps: cfg.trainSteps,
    checkpoint,
    parts: {
      modules: { behavior: m.behavior.net as unknown as Module, ...critic.modules, actor: m.actor },
      optimizers: { behavior: m.behaviorOpt, ...critic.optimizers, actor: m.actorOpt },
      generators: { data: gen },
    },
    evalEvery: cfg.evalEvery,
    evaluate,
    step: () => trainStep(m, store.sample(cfg.batch, gen), gen),
  };
}

// =========================================================================================================
// Policies

/**
 * DTQL's action selection: per state, `candidates` one-step actions, one drawn from softmax(min(Q1', Q2')),
 * [S, actDim]. No gradient.
 */
export function selectAction(m: DtqlModels, obs: Tensor, gen: Generator, candidates = m.cfg.candidates): Tensor {
  return noGrad(() => {
    const states = candidates === 1 ? obs : repeatRows(obs, candidates);
    const a = m.actor.sample(states, gen);
    if (candidates === 1) return a;
    return selectByCritic(a, m.critic.qTarget.min(states, a), candidates, gen);
  });
}

export function dtqlPolicy(m: DtqlModels, stats: ObservationStats | null, box: ActionBox, gen: Generator): BatchPolicy {
  return envPolicy((s) => selectAction(m, s, gen), stats, box);
}

/** Behaviour cloning by the diffusion model itself: one EDM Heun sample per state. */
export function behaviorPolicy(b: BehaviorModel, stats: ObservationStats | null, box: ActionBox, gen: Generator, steps: number): BatchPolicy {
  return envPolicy((s) => b.sample(s, 1, gen, { sampler: 'edm-heun', steps }), stats, box);
}

// =========================================================================================================
// The whole run

export interface DtqlRunOptions {
  /** Run directory (created if needed). */
  dir: string;
  /** Continue the phases found in `dir`. */
  resume?: boolean;
  /** Load the behaviour model and critic from a pretraining checkpoint and skip pretraining. */
  pretrainedFile?: string;
  stream?: ProgressStream;
  quiet?: boolean;
  /** Polled after every training step; true stops the run at a checkpoint (see PhaseInterrupted). */
  stopRequested?: () => boolean;
  /** Every step through autograd instead of replaying a recorded step (debugging). */
  eager?: boolean;
}

type Score = { mean: number; std: number };

export interface DtqlSummary {
  task: string;
  env: string;
  dataset: string;
  /** Normalised score of the final policy (D4RL x100). */
  score: Score & { returnMean: number; episodes: number };
  /** The behaviour model sampled with EDM Heun (behaviour cloning on the same data), when evaluated. */
  bcScore: Score | null;
  /** An MLP fitted to the actions by mean squared error (the other behaviour cloning), when evaluated. */
  bcMlpScore: Score | null;
  datasetScore: (Score & { episodes: number }) | null;
  /** Wall time per phase in seconds (this session; 0 for a phase loaded or already complete). */
  phaseSeconds: Record<Phase | 'evaluation' | 'setup', number>;
  totalSeconds: number;
  evals: { step: number; mean: number; std: number }[];
  dir: string;
}

/** Runs (or resumes) pretraining, training and the evaluations; writes everything under opts.dir. */
export async function runDtql(cfg: DtqlConfig, opts: DtqlRunOptions): Promise<DtqlSummary> {
  const tStart = performance.now();
  const dir = opts.dir;
  removeStaleTemps(dir);
  const log = new JsonlLog(join(dir, RUN_FILES.log));
  const ctx: RunContext = { cfg, log, stream: opts.stream, quiet: opts.quiet, stopRequested: opts.stopRequested, eager: opts.eager };
  const seconds: DtqlSummary['phaseSeconds'] = { setup: 0, pretrain: 0, train: 0, evaluation: 0 };

  const file = datasetPath(cfg.dataset);
  const { data, box } = await loadOfflineData(cfg, file, dir, opts);
  const { obsDim, actDim } = data.transitions;
  seconds.setup = (performance.now() - tStart) / 1000;

  const m = makeModels(obsDim, actDim, cfg);
  const paths: Record<Phase, string> = { pretrain: join(dir, 'pretrain.safetensors'), train: join(dir, 'train.safetensors') };
  let bcScore: Score | null = null;
  let bcMlpScore: Score | null = null;
  const allEvals: DtqlSummary['evals'] = [];
  const evalTimed = async (policy: BatchPolicy): Promise<EvaluateResult> => {
    const t = performance.now();
    const res = await evaluatePolicy(policy, cfg);
    seconds.evaluation += (performance.now() - t) / 1000;
    return res;
  };

  // ---- pretraining: behaviour model and critic
  {
    const run = pretrainPhase(m, data.store, paths.pretrain);
    const start = await phaseStart('pretrain', run.parts, paths.pretrain, { file: opts.pretrainedFile, resume: opts.resume, quiet: opts.quiet, log });
    if (start !== 'done') seconds.pretrain = (await runPhase(run, ctx, start)).ms / 1000;
    if (cfg.bcEval) {
      const res = await evalTimed(behaviorPolicy(m.behavior, data.obsStats, box, new Generator(cfg.seed * 16 + SEED.bcSample), cfg.bcSamplerSteps));
      bcScore = { mean: res.normalizedMean!, std: res.normalizedStd! };
      log.write({ phase: 'pretrain', bcEval: { ...bcScore, returnMean: res.mean } });
      say(opts, `behaviour cloning (diffusion samples, EDM Heun ${cfg.bcSamplerSteps} steps): score ${bcScore.mean.toFixed(1)} +- ${bcScore.std.toFixed(1)}`);
      const t = performance.now();
      const mlp = trainBcMlp(data.store, obsDim, actDim, {
        actorHidden: cfg.actorHidden, actorLayers: cfg.actorLayers, actorLr: cfg.lr, actorSteps: cfg.bcMlpSteps, actorBatch: cfg.batch, seed: cfg.seed,
      });
      seconds.evaluation += (performance.now() - t) / 1000;
      const res2 = await evalTimed(envPolicy((s) => mlp.forward(s), data.obsStats, box));
      bcMlpScore = { mean: res2.normalizedMean!, std: res2.normalizedStd! };
      log.write({ phase: 'pretrain', bcMlpEval: { ...bcMlpScore, returnMean: res2.mean } });
      say(opts, `behaviour cloning (MLP, mean squared error, ${cfg.bcMlpSteps} steps): score ${bcMlpScore.mean.toFixed(1)} +- ${bcMlpScore.std.toFixed(1)}`);
    }
  }

  // ---- training: critic, behaviour model and actor
  const policy = dtqlPolicy(m, data.obsStats, box, new Generator(cfg.seed * 16 + SEED.select));
  let final: EvaluateResult | null = null;
  {
    let evalMs = 0;
    const run = trainPhase(m, data.store, paths.train, async (step) => {
      const t = performance.now();
      const res = await evaluatePolicy(policy, cfg);
      evalMs += performance.now() - t;
      if (step === cfg.trainSteps) final = res;
      return { mean: res.normalizedMean!, std: res.normalizedStd!, returnMean: res.mean };
    });
    const start = await phaseStart('train', run.parts, paths.train, { resume: opts.resume, quiet: opts.quiet, log });
    if (start !== 'done') {
      const r = await runPhase(run, ctx, start);
      seconds.train = (r.ms - evalMs) / 1000;
      seconds.evaluation += evalMs / 1000;
      allEvals.push(...r.evals);
    }
  }
  if (!final) final = await evalTimed(policy);
  const result = final as EvaluateResult;
  const summary: DtqlSummary = {
    task: cfg.task,
    env: cfg.env,
    dataset: file,
    score: { mean: result.normalizedMean!, std: result.normalizedStd!, returnMean: result.mean, episodes: result.returns.length },
    bcScore,
    bcMlpScore,
    datasetScore: data.datasetScore,
    phaseSeconds: seconds,
    totalSeconds: (performance.now() - tStart) / 1000,
    evals: allEvals,
    dir,
  };
  log.write({ phase: 'summary', ...summary });
  writeFileAtomic(join(dir, RUN_FILES.summary), JSON.stringify(summary, null, 2));
  writeFileAtomic(join(dir, RUN_FILES.curves), curvesSvg(JsonlLog.read(log.path), { 'BC (diffusion)': bcScore, 'BC (MLP)': bcMlpScore, dataset: data.datasetScore }));
  data.store.dispose();
  disposeModels(m);
  return summary;
}

/** One SVG: the losses of each phase and the evaluation scores against the baselines, stacked. */
export function curvesSvg(records: Record<string, unknown>[], baselines: Record<string, { mean: number } | null> = {}): string {
  return offlineCurvesSvg(records, baselines, { phases: PHASES, evalPhase: 'train', policy: 'DTQL policy' });
}

// =========================================================================================================
// Command line

const CLI_OPTIONS = {
  task: { type: 'string', default: 'pendulum-quick', placeholder: 'name', description: `preset: ${TASK_NAMES.join(', ')}` },
  dataset: { type: 'string', placeholder: 'name|file', description: `D4RL-layout HDF5 file or a built-in dataset (${Object.keys(BUILTIN_DATASETS).join(', ')}); default: the task's` },
  env: { type: 'string', placeholder: 'id', description: 'evaluation environment (default: from the task or dataset name)' },
  seed: { type: 'integer', nonNegative: true, description: 'seed of every network and random stream (default 0)' },
  'pretrain-steps': { type: 'integer', nonNegative: true, placeholder: 'n', description: 'pretraining steps (behaviour model and critic)' },
  'train-steps': { type: 'integer', nonNegative: true, placeholder: 'n', description: 'training steps (critic, behaviour model and actor)' },
  'batch-size': { type: 'integer', positive: true, placeholder: 'n', description: 'batch size of every update' },
  lr: { type: 'number', nonNegative: true, description: "learning rate of the behaviour model and the actor (default: the task's)" },
  alpha: { type: 'number', nonNegative: true, description: "weight of the trust-region loss (default: the task's)" },
  gamma: { type: 'number', nonNegative: true, description: "weight of the data actions' negative log-likelihood (default: the task's)" },
  candidates: { type: 'integer', positive: true, placeholder: 'n', description: 'one-step actions per state at evaluation, one picked by softmax(Q)' },
  out: { type: 'string', placeholder: 'dir', description: 'run directory (default runs/dtql-<task>-<timestamp>)' },
  resume: { type: 'string', placeholder: 'dir', description: 'continue the run in dir from its last checkpoints, with its config.json' },
  pretrained: { type: 'string', placeholder: 'file', description: 'load the behaviour model and critic from a pretrain checkpoint and skip pretraining' },
  'eval-every': { type: 'integer', nonNegative: true, placeholder: 'n', description: 'training steps between evaluations (0: only at the end)' },
  'eval-episodes': { type: 'integer', positive: true, placeholder: 'n', description: 'episodes per evaluation' },
  'no-bc-eval': { type: 'boolean', description: 'skip the behaviour-cloning baselines (diffusion samples and MSE-fitted MLP)' },
  'log-every': { type: 'integer', positive: true, placeholder: 'n', description: 'steps between log lines and NaN checks' },
  'checkpoint-every': { type: 'integer', positive: true, placeholder: 'n', description: 'steps between checkpoints within a phase' },
  device: { type: 'string', default: 'auto', placeholder: 'auto|name', description: 'WebGPU adapter: auto, or part of an adapter name (e.g. llvmpipe, nvidia)' },
  quiet: { type: 'boolean', description: 'print only the summary' },
  ...ENGINE_CLI_OPTIONS,
} as const satisfies Record<string, OptionSpec>;

export const CLI: CliSpec<typeof CLI_OPTIONS> = {
  usage: 'node algorithms/dtql.ts [options]',
  description:
    'Diffusion Trusted Q-Learning (Chen et al., NeurIPS 2024): pretrains an EDM diffusion behaviour model and an IQL ' +
    'critic, then trains a one-step Gaussian-tanh policy to maximise Q under the trust-region loss (the diffusion loss ' +
    'at the policy\'s own actions) while the critic and behaviour model keep training; evaluates the policy in the ' +
    'environment (candidate actions per state, one picked by softmax of the target Q) and prints its normalised score.\n\n' +
    'With no arguments it runs the quick preset on the shipped Pendulum dataset (pendulum-medium-v1) and compares the ' +
    'result with behaviour cloning (the diffusion model sampled with EDM Heun, and an MLP fitted to the actions by mean ' +
    'squared error) and with the dataset itself. Outputs go to runs/dtql-<task>-<timestamp>/: config.json, log.jsonl, ' +
    'pretrain/train.safetensors (weights, optimiser state, step), curves.svg and summary.json.',
  options: CLI_OPTIONS,
  examples: [
    'node algorithms/dtql.ts',
    'node algorithms/dtql.ts --task hopper-medium-v2 --dataset path/to/hopper-medium-v2.hdf5',
    'node algorithms/dtql.ts --alpha 5 --train-steps 6000',
    'node algorithms/dtql.ts --resume runs/dtql-pendulum-quick-20250101-120000',
    'node algorithms/dtql.ts --pretrained runs/A/pretrain.safetensors --alpha 0.5',
  ],
};

type CliArgs = NonNullable<ReturnType<typeof parseCli<typeof CLI_OPTIONS>>>;

/** The configuration the command line asks for (preset, then dataset/env inference, then explicit options). */
export function configFromArgs(args: CliArgs): DtqlConfig {
  const cfg = taskConfig(args.task);
  applyOfflineArgs(cfg, args);
  assignDefined(cfg, {
    pretrainSteps: args['pretrain-steps'],
    trainSteps: args['train-steps'],
    batch: args['batch-size'],
    lr: args.lr,
    alpha: args.alpha,
    gamma: args.gamma,
    candidates: args.candidates,
  });
  return cfg;
}

/** Options that change training and therefore cannot be combined with --resume. */
const TRAINING_OPTIONS = Object.keys(CLI_OPTIONS).filter((k) => !['resume', 'device', 'quiet', 'out', 'eager', 'tune'].includes(k));

function printSummary(s: DtqlSummary): void {
  const line = (label: string, v: string) => console.log(`  ${label.padEnd(32)}${v}`);
  console.log(`\nDTQL ${s.task} on ${s.env} (${s.dataset})`);
  line('normalised score (DTQL policy)', `${s.score.mean.toFixed(1)} +- ${s.score.std.toFixed(1)}  (${s.score.episodes} episodes, mean return ${s.score.returnMean.toFixed(1)})`);
  if (s.bcScore) line('behaviour cloning (diffusion)', `${s.bcScore.mean.toFixed(1)} +- ${s.bcScore.std.toFixed(1)}`);
  if (s.bcMlpScore) line('behaviour cloning (MLP)', `${s.bcMlpScore.mean.toFixed(1)} +- ${s.bcMlpScore.std.toFixed(1)}`);
  if (s.datasetScore) line('dataset (behaviour policy)', `${s.datasetScore.mean.toFixed(1)} +- ${s.datasetScore.std.toFixed(1)}  (${s.datasetScore.episodes} episodes)`);
  const p = s.phaseSeconds;
  line('wall time', `setup ${formatDuration(p.setup * 1000)}, pretrain ${formatDuration(p.pretrain * 1000)}, train ${formatDuration(p.train * 1000)}, evaluation ${formatDuration(p.evaluation * 1000)}; total ${formatDuration(s.totalSeconds * 1000)}`);
  line('outputs', s.dir);
}

export async function main(argv: string[] = process.argv.slice(2)): Promise<DtqlSummary | null> {
  const args = parseCli(CLI, argv);
  if (!args) return null;
  const { cfg, dir, resumed } = openRun<DtqlConfig>(args, argv, TRAINING_OPTIONS, () => {
    const fresh = configFromArgs(args);
    return { cfg: fresh, name: `dtql-${fresh.task}` };
  });
  const rt = await openDevice(args.device, { tune: args.tune, log: tuningLog(args.quiet) });
  if (!args.quiet) {
    process.stderr.write(`DTQL ${cfg.task}: device ${rt.info.description || rt.info.vendor || 'unknown'} (${rt.info.adapterClass}); run directory ${dir}\n`);
  }
  try {
    const summary = await interruptible(dir, 'node algorithms/dtql.ts', (stopRequested) =>
      runDtql(cfg, { dir, resume: resumed, pretrainedFile: args.pretrained, quiet: args.quiet, stopRequested, eager: args.eager }),
    );
    printSummary(summary);
    return summary;
  } finally {
    disposeEngine();
  }
}

if (isMainModule(import.meta.url)) await runMain('dtql', async () => void (await main()));

// Behaviour models: a diffusion model of the data's actions given states, built the way each paper builds
// its own (network, schedule, loss, samplers), with one interface for training and sampling, so the policy
// algorithms (Diffusion-QL, EDP, SRPO, DTQL) and the behaviour-cloning command share them:
//   dql   DQLNoiseNet (Diffusion-QL's MLP) + DiscreteSchedule.vp(T), eps-MSE; DDPM / DDIM / DPM-Solver++
//   edp   DQLNoiseNet variant 'edp' + DiscreteSchedule.scaledLinear(T), eps-MSE; DDPM / DDIM / DPM-Solver++
//   srpo  IDQLScoreNet + VP-SDE, eps-MSE summed over dims; DPM-Solver++
//   dtql  DTQLDenoiserNet + EDM preconditioning; EDM Euler / Heun
// No Node built-ins here: training reads back one loss per reporting interval and nothing else.
import { backward, noGrad } from '../../engine/autograd.ts';
import { axpy_, fill_, zeros } from '../../engine/basic.ts';
import { HostRng } from '../../engine/host-rng.ts';
import { gather } from '../../engine/ops/shape.ts';
import { AdamW, clipScale, type LRSchedule } from '../../engine/optim.ts';
import type { Generator } from '../../engine/random.ts';
import { runtime } from '../../engine/runtime.ts';
import { recordStep, type RecordedStep } from '../../engine/record.ts';
import { keep, tensor, tidy, type Tensor } from '../../engine/tensor.ts';
import { DiscreteDiffusion, EDMDiffusion, VPSDEDiffusion, type NoiseNet } from './models.ts';
import { DQLNoiseNet, DTQLDenoiserNet, IDQLScoreNet } from './networks.ts';
import { ddimSample, ddpmSample, dpmSolverPPSample, edmSample, fusedUpdate } from './samplers.ts';
import { DiscreteSchedule, EDMSchedule, VPSDE } from './schedules.ts';
import { repeatRows } from './select.ts';

export const BEHAVIOR_KINDS = ['dql', 'edp', 'srpo', 'dtql'] as const;
export type BehaviorKind = (typeof BEHAVIOR_KINDS)[number];

/**
 * ddpm: ancestral over all T steps; ddim: deterministic DDIM; dpm: DPM-Solver++ singlestep order 3 (EDP's);
 * dpm-2m: DPM-Solver++ multistep order 2 (CleanDiffuser's); edm-euler / edm-heun: Karras et al.'s sampler.
 */
export const SAMPLER_NAMES = ['ddpm', 'ddim', 'dpm', 'dpm-2m', 'edm-euler', 'edm-heun'] as const;
export type SamplerName = (typeof SAMPLER_NAMES)[number];

export function isBehaviorKind(s: string): s is BehaviorKind {
  return (BEHAVIOR_KINDS as readonly string[]).includes(s);
}

export function isSamplerName(s: string): s is SamplerName {
  return (SAMPLER_NAMES as readonly string[]).includes(s);
}

/** The samplers a model kind supports, its default first. */
export function samplersFor(kind: BehaviorKind): readonly SamplerName[] {
  switch (kind) {
    case 'dql':
      return ['ddpm', 'ddim', 'dpm', 'dpm-2m'];
    case 'edp':
      return ['ddpm', 'ddim', 'dpm', 'dpm-2m'];
    case 'srpo':
      return ['dpm', 'dpm-2m'];
    case 'dtql':
      return ['edm-heun', 'edm-euler'];
  }
}

/** Default network evaluations of a sampler (DDPM and DDIM: every step of the chain). */
export const DEFAULT_SAMPLER_STEPS: Readonly<Record<SamplerName, number | null>> = Object.freeze({
  ddpm: null,
  ddim: null,
  dpm: 15,
  'dpm-2m': 15,
  'edm-euler': 18,
  'edm-heun': 18,
});

/** Diffusion steps of the discrete kinds when none are given: Diffusion-QL's D4RL T = 5, EDP's T = 100. */
export const DEFAULT_STEPS: Readonly<Record<'dql' | 'edp', number>> = Object.freeze({ dql: 5, edp: 100 });

export interface BehaviorModelOptions {
  /** Hidden width of the network (the papers' 256 by default; smaller nets train faster on a CPU adapter). */
  hidden?: number;
  /** Diffusion steps of dql / edp (defaults in DEFAULT_STEPS; edp's scaled-linear schedule needs T >= 21). */
  T?: number;
  /** Bound data predictions are clipped to (null: none). Default 1, the normalised action box. */
  maxAction?: number | null;
  /** Seed of the parameter initialisation (default: drawn from Math.random). */
  seed?: number;
  /** srpo: residual blocks (default 3) and dropout (default 0.1). */
  blocks?: number;
  dropout?: number;
  /** dtql: EDM's sigma_data (default 0.5). */
  sigmaData?: number;
}

/** The options that rebuild a model of the same structure (what a checkpoint's metadata records). */
export interface BehaviorConfig {
  kind: BehaviorKind;
  stateDim: number;
  actionDim: number;
  hidden: number;
  /** dql / edp only; null otherwise. */
  T: number | null;
  maxAction: number | null;
  blocks: number | null;
  dropout: number | null;
  sigmaData: number | null;
}

export interface SampleOptions {
  /** Default: the kind's first sampler (samplersFor). */
  sampler?: SamplerName;
  /** Network evaluations (ddim, dpm, dpm-2m, edm-*); default DEFAULT_SAMPLER_STEPS. */
  steps?: number;
  /** Initial standard-normal draw [rows, actionDim] (not consumed); drawn from the generator when absent. */
  noise?: Tensor;
  /**
   * dpm / dpm-2m: finish with the clipped data prediction at the solver's end time (one more network call), as
   * DPM-Solver's denoise_to_zero. Default true: the solver stops at t = 1/T of a discrete chain, whose noise
   * level (sigma 0.06 at T = 50, 0.44 at T = 5) would otherwise stay in the sample; DDPM and DDIM end on the
   * data prediction too.
   */
  denoiseToZero?: boolean;
}

type Diffusion = DiscreteDiffusion | VPSDEDiffusion | EDMDiffusion;

/**
 * A behaviour model: a noise network with its schedule. `stateDim` 0 makes it unconditional (cond null).
 * The network is a Module: its paramGroup() is what an optimiser steps and what checkpoints save.
 */
export class BehaviorModel {
  readonly config: BehaviorConfig;
  readonly net: NoiseNet;
  readonly diffusion: Diffusion;

  constructor(config: BehaviorConfig, net: NoiseNet, diffusion: Diffusion) {
    this.config = config;
    this.net = net;
    this.diffusion = diffusion;
  }

  get kind(): BehaviorKind {
    return this.config.kind;
  }
  get stateDim(): number {
    return this.config.stateDim;
  }
  get actionDim(): number {
    return this.config.actionDim;
  }
  get maxAction(): number | null {
    return this.config.maxAction;
  }
  get samplers(): readonly SamplerName[] {
    return samplersFor(this.config.kind);
  }

  /** Scalar [1] training loss of the kind at data actions [B, A] and states [B, S] (null when stateDim is 0). */
  loss(actions: Tensor, states: Tensor | null, gen: Generator): Tensor {
    this.checkData('BehaviorModel.loss', actions, states);
    return this.diffusion.loss(actions, states, gen);
  }

  /**
   * n actions per state: cond [S, stateDim] gives [S*n, A] state-major (rows s*n .. s*n+n-1 belong to state s,
   * the layout selectByCritic expects); cond null (stateDim 0) gives [n, A]. Runs in eval mode (no dropout)
   * and without gradients.
   */
  sample(cond: Tensor | null, n: number, gen: Generator, opts: SampleOptions = {}): Tensor {
    const sampler = opts.sampler ?? this.samplers[0]!;
    if (!this.samplers.includes(sampler)) {
      throw new Error(`BehaviorModel.sample: sampler '${sampler}' does not apply to a ${this.kind} model (use ${this.samplers.join(', ')})`);
    }
    if (!Number.isInteger(n) || n < 1) throw new Error(`BehaviorModel.sample: n must be a positive integer, got ${n}`);
    if (this.stateDim > 0) {
      if (!cond || cond.rank !== 2 || cond.shape[1] !== this.stateDim) {
        throw new Error(`BehaviorModel.sample: cond must be [S, ${this.stateDim}], got ${cond ? `[${cond.shape}]` : 'null'}`);
      }
    } else if (cond) {
      throw new Error(`BehaviorModel.sample: the model is unconditional (stateDim 0) but cond [${cond.shape}] was given`);
    }
    const steps = opts.steps ?? DEFAULT_SAMPLER_STEPS[sampler] ?? undefined;
    const module = this.net;
    const wasTraining = module.training;
    module.eval();
    try {
      return noGrad(() =>
        tidy(() => {
          const rows = cond ? cond.shape[0]! * n : n;
          const c = cond ? (n === 1 ? cond : repeatRows(cond, n)) : null;
          const common = { batch: rows, actionDim: this.actionDim, generator: gen, noise: opts.noise };
          const d = this.diffusion;
          switch (sampler) {
            case 'ddpm':
              return ddpmSample(d as DiscreteDiffusion, c, { ...common, logVarMode: (d as DiscreteDiffusion).logVarMode });
            case 'ddim':
              return ddimSample(d as DiscreteDiffusion, c, { ...common, steps });
            case 'dpm':
            case 'dpm-2m': {
              const vp = d as DiscreteDiffusion | VPSDEDiffusion;
              const multi = sampler === 'dpm-2m';
              const x = dpmSolverPPSample(vp, c, { ...common, steps, order: multi ? 2 : 3, method: multi ? 'multistep' : 'singlestep' });
              return (opts.denoiseToZero ?? true) ? denoiseToZero(vp, x, c) : x;
            }
            case 'edm-euler':
            case 'edm-heun':
              return edmSample(d as EDMDiffusion, c, { ...common, steps, method: sampler === 'edm-heun' ? 'heun' : 'euler' });
          }
        }),
      );
    } finally {
      module.train(wasTraining);
    }
  }

  /** Checkpoint metadata: the config as strings (see behaviorConfigFromMetadata). */
  metadata(): Record<string, string> {
    return { behavior: JSON.stringify(this.config) };
  }

  private checkData(op: string, actions: Tensor, states: Tensor | null): void {
    if (actions.rank !== 2 || actions.shape[1] !== this.actionDim) throw new Error(`${op}: actions must be [B, ${this.actionDim}], got [${actions.shape}]`);
    if (this.stateDim === 0) {
      if (states) throw new Error(`${op}: the model is unconditional (stateDim 0) but states [${states.shape}] were given`);
    } else if (!states || states.rank !== 2 || states.shape[0] !== actions.shape[0] || states.shape[1] !== this.stateDim) {
      throw new Error(`${op}: states must be [${actions.shape[0]}, ${this.stateDim}], got ${states ? `[${states.shape}]` : 'null'}`);
    }
  }
}

/** x0 = clip((x - sigma eps(x, tEnd)) / alpha) at the schedule's default end time. */
function denoiseToZero(model: DiscreteDiffusion | VPSDEDiffusion, x: Tensor, cond: Tensor | null): Tensor {
  const s = model.schedule;
  const t = s.tEndDefault;
  const alpha = Math.exp(s.marginalLogMeanCoeff(t));
  const sigma = s.marginalStd(t);
  return fusedUpdate({ x, m: model.eps(x, t, cond), pe: 1 / alpha, qe: -sigma / alpha, clip: model.maxAction, cx: 0, cd: 1 }).out;
}

function positiveInt(what: string, v: number): number {
  if (!Number.isInteger(v) || v < 1) throw new Error(`makeBehaviorModel: ${what} must be a positive integer, got ${v}`);
  return v;
}

/** A behaviour model of the given kind, as its paper builds it (see the file comment). */
export function makeBehaviorModel(kind: BehaviorKind, stateDim: number, actionDim: number, opts: BehaviorModelOptions = {}): BehaviorModel {
  if (!isBehaviorKind(kind)) throw new Error(`makeBehaviorModel: unknown kind '${String(kind)}' (${BEHAVIOR_KINDS.join(', ')})`);
  if (!Number.isInteger(stateDim) || stateDim < 0) throw new Error(`makeBehaviorModel: stateDim must be a non-negative integer, got ${stateDim}`);
  positiveInt('actionDim', actionDim);
  const hidden = positiveInt('hidden', opts.hidden ?? 256);
  const maxAction = opts.maxAction === undefined ? 1 : opts.maxAction;
  if (maxAction !== null && !(maxAction > 0 && Number.isFinite(maxAction))) throw new Error(`makeBehaviorModel: maxAction must be positive or null, got ${maxAction}`);
  const rng = new HostRng(opts.seed ?? Math.floor(Math.random() * 2 ** 32));
  const base = { kind, stateDim, actionDim, hidden, maxAction, T: null, blocks: null, dropout: null, sigmaData: null };
  if (kind === 'dql' || kind === 'edp') {
    const T = positiveInt('T', opts.T ?? DEFAULT_STEPS[kind]);
    if (kind === 'edp' && T < 21) throw new Error(`makeBehaviorModel: edp's scaled-linear schedule needs T >= 21 (its largest beta is 20/T), got ${T}`);
    const schedule = kind === 'dql' ? DiscreteSchedule.vp(T) : DiscreteSchedule.scaledLinear(T);
    const net = new DQLNoiseNet(stateDim, actionDim, { variant: kind, hidden, rng });
    const diffusion = new DiscreteDiffusion(net, schedule, { maxAction, logVarMode: kind });
    return new BehaviorModel({ ...base, T }, net, diffusion);
  }
  if (kind === 'srpo') {
    const blocks = positiveInt('blocks', opts.blocks ?? 3);
    const dropout = opts.dropout ?? 0.1;
    if (!(dropout >= 0 && dropout < 1)) throw new Error(`makeBehaviorModel: dropout must be in [0, 1), got ${dropout}`);
    const net = new IDQLScoreNet(stateDim, actionDim, { hidden, blocks, dropout, rng });
    return new BehaviorModel({ ...base, blocks, dropout }, net, new VPSDEDiffusion(net, new VPSDE(), { maxAction }));
  }
  const sigmaData = opts.sigmaData ?? 0.5;
  const net = new DTQLDenoiserNet(stateDim, actionDim, { hidden, rng });
  return new BehaviorModel({ ...base, sigmaData }, net, new EDMDiffusion(net, new EDMSchedule({ sigmaData }), { maxAction }));
}

/** Rebuilds the model a config describes (fresh weights; load a checkpoint into model.net). */
export function behaviorModelFromConfig(config: BehaviorConfig, seed?: number): BehaviorModel {
  return makeBehaviorModel(config.kind, config.stateDim, config.actionDim, {
    hidden: config.hidden,
    T: config.T ?? undefined,
    maxAction: config.maxAction,
    blocks: config.blocks ?? undefined,
    dropout: config.dropout ?? undefined,
    sigmaData: config.sigmaData ?? undefined,
    seed,
  });
}

/** The config a BehaviorModel.metadata() recorded, or null when the metadata has none. */
export function behaviorConfigFromMetadata(meta: Record<string, string>): BehaviorConfig | null {
  const text = meta['behavior'];
  if (!text) return null;
  const c = JSON.parse(text) as BehaviorConfig;
  if (!isBehaviorKind(c.kind)) throw new Error(`behaviour checkpoint: unknown kind '${String(c.kind)}'`);
  return c;
}

// ---- data ----

/** Minibatches of (actions, states) on the GPU. */
export interface BatchSource {
  readonly actionDim: number;
  /** 0 when there are no states. */
  readonly stateDim: number;
  /** Rows drawn uniformly with replacement from the generator; the tensors belong to the caller's scope. */
  sample(batch: number, gen: Generator): { actions: Tensor; states: Tensor | null };
}

/**
 * A BatchSource over arrays uploaded once: actions [n, actionDim], states [n, stateDim] or null. Each batch
 * is one index draw and one gather per array. dispose() frees the uploaded arrays.
 */
export class TensorBatchSource implements BatchSource {
  readonly actionDim: number;
  readonly stateDim: number;
  readonly size: number;
  private readonly actions: Tensor;
  private readonly states: Tensor | null;

  constructor(actions: Float32Array, actionDim: number, states: Float32Array | null = null, stateDim = 0) {
    positiveInt('TensorBatchSource actionDim', actionDim);
    if (actions.length % actionDim !== 0 || actions.length === 0) {
      throw new Error(`TensorBatchSource: ${actions.length} action values are not a positive whole number of rows of ${actionDim}`);
    }
    const n = actions.length / actionDim;
    if (states && (stateDim < 1 || states.length !== n * stateDim)) {
      throw new Error(`TensorBatchSource: states hold ${states.length} values, expected ${n} rows of stateDim ${stateDim}`);
    }
    this.actionDim = actionDim;
    this.stateDim = states ? stateDim : 0;
    this.size = n;
    this.actions = keep(tensor(actions, [n, actionDim]));
    this.states = states ? keep(tensor(states, [n, stateDim])) : null;
  }

  sample(batch: number, gen: Generator): { actions: Tensor; states: Tensor | null } {
    const idx = gen.randint([batch], this.size);
    const out = { actions: gather(this.actions, idx), states: this.states ? gather(this.states, idx) : null };
    idx.dispose();
    return out;
  }

  dispose(): void {
    this.actions.dispose();
    this.states?.dispose();
  }
}

// ---- training ----

export interface TrainProgress {
  /** Steps completed (counting from the first step of the whole run when resuming). */
  step: number;
  totalSteps: number;
  /** Mean loss over the steps since the previous report. */
  loss: number;
  lr: number;
  /** Steps per second of this call so far. */
  stepsPerSecond: number;
  etaSeconds: number;
}

export interface TrainBehaviorOptions {
  /** Optimisation steps to reach (a resumed run counts from startStep). */
  steps: number;
  batch: number;
  /** A constant learning rate or a schedule over the step index (e.g. cosineLR). */
  lr: number | LRSchedule;
  /** Source of minibatch indices and the losses' noise. */
  generator: Generator;
  /** Global gradient-norm clip (null: none, the default). */
  gradClip?: number | null;
  weightDecay?: number;
  /** An existing optimiser over model.net.paramGroup() (e.g. restored from a checkpoint). */
  optimizer?: AdamW;
  /** Steps already done (resuming). */
  startStep?: number;
  /** Steps between loss readbacks and onProgress calls (default 100); each readback waits for the GPU. */
  reportEvery?: number;
  onProgress?: (p: TrainProgress) => void | Promise<void>;
  /** Checked between steps: training stops early (after a final report) once it is aborted. */
  signal?: AbortSignal;
  /** Run every step through autograd instead of replaying a recorded step (for debugging); default false. */
  eager?: boolean;
}

export interface TrainBehaviorResult {
  optimizer: AdamW;
  /** Steps completed in total (startStep plus this call's). */
  step: number;
  /** Reported mean losses: history[i].loss is the mean over the steps after the previous entry up to .step. */
  history: { step: number; loss: number }[];
}

/**
 * Trains the behaviour model by AdamW on its own loss over minibatches from `data`. The network is in training
 * mode throughout. Throws if a reported loss is not finite.
 */
export async function trainBehavior(model: BehaviorModel, data: BatchSource, opts: TrainBehaviorOptions): Promise<TrainBehaviorResult> {
  if (data.actionDim !== model.actionDim || data.stateDim !== model.stateDim) {
    throw new Error(`trainBehavior: data has actionDim ${data.actionDim}, stateDim ${data.stateDim}; the model ${model.actionDim}, ${model.stateDim}`);
  }
  const startStep = opts.startStep ?? 0;
  positiveInt('trainBehavior batch', opts.batch);
  if (!Number.isInteger(opts.steps) || opts.steps < startStep) throw new Error(`trainBehavior: steps must be an integer >= startStep ${startStep}, got ${opts.steps}`);
  const every = opts.reportEvery ?? 100;
  positiveInt('trainBehavior reportEvery', every);
  const gradClip = opts.gradClip ?? null;
  if (gradClip !== null && !(gradClip > 0)) throw new Error(`trainBehavior: gradClip must be positive or null, got ${gradClip}`);
  const lrAt = typeof opts.lr === 'number' ? (() => opts.lr as number) : opts.lr;
  const module = model.net;
  const group = module.paramGroup();
  const optimizer = opts.optimizer ?? new AdamW(group, { lr: lrAt(startStep), weightDecay: opts.weightDecay ?? 0 });
  if (optimizer.group !== group) throw new Error('trainBehavior: the optimiser does not step this model\'s parameter group');
  // the learning rate follows the step index through the optimiser, so replayed steps follow it too
  const stepOffset = startStep - optimizer.stepCount;
  const previousSchedule = optimizer.schedule;
  optimizer.schedule = (count) => lrAt(count + stepOffset);
  module.train();
  const rt = runtime();
  const history: { step: number; loss: number }[] = [];
  const lossSum = keep(zeros([1]));
  let pending = 0;
  const t0 = performance.now();
  let step = startStep;
  const report = async () => {
    if (pending === 0) return;
    const mean = (await lossSum.read())[0]! / pending;
    fill_(lossSum, 0);
    pending = 0;
    if (!Number.isFinite(mean)) throw new Error(`trainBehavior: the ${model.kind} loss became ${mean} by step ${step}`);
    history.push({ step, loss: mean });
    const rate = (step - startStep) / Math.max(1e-9, (performance.now() - t0) / 1000);
    await opts.onProgress?.({ step, totalSteps: opts.steps, loss: mean, lr: lrAt(Math.max(0, step - 1)), stepsPerSecond: rate, etaSeconds: rate > 0 ? (opts.steps - step) / rate : Number.NaN });
  };
  const trainStep = () => {
    group.zeroGrad();
    const batch = data.sample(opts.batch, opts.generator);
    const loss = model.loss(batch.actions, batch.states, opts.generator);
    axpy_(lossSum, loss);
    backward(loss);
    if (gradClip !== null) optimizer.step(undefined, clipScale(group, gradClip).scale);
    else optimizer.step();
    return {};
  };
  let recorded: RecordedStep<Record<string, never>> | null = null;
  try {
    while (step < opts.steps && !opts.signal?.aborted) {
      // the first step runs eagerly (it builds every pipeline and lazily made buffer); the second is recorded
      // and later ones replay it
      if (opts.eager || step === startStep) {
        tidy(trainStep);
        rt.flush();
      } else if (!recorded) recorded = recordStep(trainStep);
      else recorded.replay();
      step++;
      pending++;
      if (step % every === 0) await report();
    }
    await report();
  } finally {
    recorded?.dispose();
    lossSum.dispose();
    optimizer.schedule = previousSchedule;
  }
  return { optimizer, step, history };
}

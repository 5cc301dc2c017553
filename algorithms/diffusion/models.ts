// Diffusion models: a noise network paired with a schedule, exposing the training losses (one fused noising
// dispatch, one network call, one fused loss) and the network evaluations samplers need.
//
// Every method allocates its intermediates without disposing them, because the autograd tape may still need
// them: call these inside tidy() (a training step usually is).
import { full } from '../../engine/basic.ts';
import type { Module } from '../../engine/nn.ts';
import { add, clamp, scale } from '../../engine/ops/elementwise.ts';
import type { Generator } from '../../engine/random.ts';
import type { Tensor } from '../../engine/tensor.ts';
import { edmLoss, epsMse, noiseDiscrete, noiseEDM, noiseVPSDE, predictX0 } from './losses.ts';
import type { DiscreteSchedule, EDMSchedule, VPSDE } from './schedules.ts';

/** A noise-conditioned network: x [B, D], time [B] (the schedule's networkTime), cond [B, S] or null. */
export interface NoiseNet extends Module {
  forward(x: Tensor, time: Tensor, cond: Tensor | null): Tensor;
}

function checkMaxAction(model: string, maxAction: number | null): number | null {
  if (maxAction !== null && !(maxAction > 0 && Number.isFinite(maxAction))) {
    throw new Error(`${model}: maxAction must be a positive number or null, got ${maxAction}`);
  }
  return maxAction;
}

function checkInputs(op: string, x: Tensor, cond: Tensor | null): number {
  if (x.rank !== 2) throw new Error(`${op}: x must be [B, D], got [${x.shape}]`);
  const rows = x.shape[0]!;
  if (cond && (cond.rank !== 2 || cond.shape[0] !== rows)) {
    throw new Error(`${op}: cond must be [${rows}, S] to match x [${x.shape}], got [${cond.shape}]`);
  }
  return rows;
}

function checkOutput(op: string, out: Tensor, x: Tensor): Tensor {
  if (out.rank !== 2 || out.shape[0] !== x.shape[0] || out.shape[1] !== x.shape[1]) {
    throw new Error(`${op}: the network returned [${out.shape}] for x [${x.shape}]; it must return x's shape`);
  }
  return out;
}

/** What every model holds: its noise network, its schedule and the bound of the data. */
abstract class ScheduledNet<S> {
  readonly net: NoiseNet;
  readonly schedule: S;
  readonly maxAction: number | null;
  private readonly name: string;

  constructor(name: string, net: NoiseNet, schedule: S, maxAction: number | null) {
    this.name = name;
    this.net = net;
    this.schedule = schedule;
    this.maxAction = checkMaxAction(name, maxAction);
  }

  /** The network at (input, time, cond), checked to return the shape of `like`; `op` names the caller in errors. */
  protected call(op: string, input: Tensor, time: Tensor, cond: Tensor | null, like: Tensor): Tensor {
    return checkOutput(`${this.name}.${op}`, this.net.forward(input, time, cond), like);
  }
}

export interface DiscreteDiffusionOptions {
  /** Bound of the data (actions); x0 estimates are clipped to it. null: no clipping. */
  maxAction: number | null;
  /** Posterior log-variance convention for ancestral sampling (default 'dql'). */
  logVarMode?: 'dql' | 'edp';
}

/** Diffusion-QL / EDP: eps-prediction over T integer steps, k ~ U{0..T-1} in training. */
export class DiscreteDiffusion extends ScheduledNet<DiscreteSchedule> {
  readonly logVarMode: 'dql' | 'edp';
  /** The schedule's posterior log variance in this model's convention. */
  readonly posteriorLogVariance: Float64Array;

  constructor(net: NoiseNet, schedule: DiscreteSchedule, opts: DiscreteDiffusionOptions) {
    super('DiscreteDiffusion', net, schedule, opts.maxAction);
    this.logVarMode = opts.logVarMode ?? 'dql';
    this.posteriorLogVariance = schedule.posteriorLogVariance(this.logVarMode);
  }

  /** Scalar [1]: mean over batch and dims of w_k (eps_theta(x_k, k, cond) - eps)^2 (w = 1 without stepWeights). */
  loss(x0: Tensor, cond: Tensor | null, gen: Generator, opts: { stepWeights?: Float64Array } = {}): Tensor {
    checkInputs('DiscreteDiffusion.loss', x0, cond);
    if (opts.stepWeights && opts.stepWeights.length !== this.schedule.steps) {
      throw new Error(`DiscreteDiffusion.loss: ${opts.stepWeights.length} step weights for a ${this.schedule.steps}-step schedule`);
    }
    const nb = noiseDiscrete(x0, this.schedule, gen);
    const eps = this.call('loss', nb.xt, nb.time, cond, x0);
    return epsMse(eps, nb.noise, opts.stepWeights ? { stepWeights: opts.stepWeights, steps: nb.time } : {});
  }

  /**
   * EDP's action approximation: one network call at a random step gives both the diffusion loss and
   * a0Hat = (x_k - sqrt(1 - alphaBar_k) eps_theta) / sqrt(alphaBar_k), clipped to +-maxAction, which carries the
   * gradient of whatever is computed from it into eps_theta (zero where clipped).
   */
  actionApproximation(x0: Tensor, cond: Tensor | null, gen: Generator): { loss: Tensor; a0Hat: Tensor } {
    checkInputs('DiscreteDiffusion.actionApproximation', x0, cond);
    const nb = noiseDiscrete(x0, this.schedule, gen);
    const eps = this.call('actionApproximation', nb.xt, nb.time, cond, x0);
    return { loss: epsMse(eps, nb.noise), a0Hat: predictX0(nb.xt, eps, nb.alpha, nb.sigma, this.maxAction) };
  }

  /** eps_theta at continuous time t of DPM-Solver's view (the network sees the fractional step). */
  eps(x: Tensor, t: number, cond: Tensor | null): Tensor {
    return this.epsAtNetworkTime(x, this.schedule.networkTime(t), cond, 'eps');
  }

  /** eps_theta at 0-based step k. */
  epsAtStep(x: Tensor, k: number, cond: Tensor | null): Tensor {
    if (!(k >= 0 && k <= this.schedule.steps - 1)) throw new Error(`DiscreteDiffusion.epsAtStep: step ${k} outside [0, ${this.schedule.steps - 1}]`);
    return this.epsAtNetworkTime(x, k, cond, 'epsAtStep');
  }

  private epsAtNetworkTime(x: Tensor, time: number, cond: Tensor | null, op: string): Tensor {
    const rows = checkInputs(`DiscreteDiffusion.${op}`, x, cond);
    return this.call(op, x, full([rows], time), cond, x);
  }
}

/** SRPO's behaviour model: eps-prediction on the VP-SDE, t ~ U(1e-3, 1) in training. */
export class VPSDEDiffusion extends ScheduledNet<VPSDE> {
  constructor(net: NoiseNet, schedule: VPSDE, opts: { maxAction: number | null }) {
    super('VPSDEDiffusion', net, schedule, opts.maxAction);
  }

  /** Scalar [1]: mean over the batch of sum over dims of (eps_theta(x_t, t, cond) - eps)^2. */
  loss(x0: Tensor, cond: Tensor | null, gen: Generator): Tensor {
    checkInputs('VPSDEDiffusion.loss', x0, cond);
    const nb = noiseVPSDE(x0, this.schedule, gen);
    const eps = this.call('loss', nb.xt, nb.time, cond, x0);
    return epsMse(eps, nb.noise, { reduction: 'sumDims' });
  }

  eps(x: Tensor, t: number, cond: Tensor | null): Tensor {
    const rows = checkInputs('VPSDEDiffusion.eps', x, cond);
    return this.call('eps', x, full([rows], this.schedule.networkTime(t)), cond, x);
  }
}

/** DTQL's behaviour model: EDM preconditioning, D(x; sigma) = cSkip x + cOut F(cIn x, ln(sigma)/4). */
export class EDMDiffusion extends ScheduledNet<EDMSchedule> {
  constructor(net: NoiseNet, schedule: EDMSchedule, opts: { maxAction: number | null }) {
    super('EDMDiffusion', net, schedule, opts.maxAction);
  }

  /** Scalar [1]: mean(((D(x0 + sigma z; sigma) - x0) / cOut)^2), sigma from the training distribution. */
  loss(x0: Tensor, cond: Tensor | null, gen: Generator): Tensor {
    checkInputs('EDMDiffusion.loss', x0, cond);
    const nb = noiseEDM(x0, this.schedule, gen);
    const F = this.call('loss', nb.netInput, nb.time, cond, x0);
    return edmLoss(F, nb.xt, x0, nb.sigma, this.schedule.sigmaData, this.maxAction);
  }

  /** The denoiser D(x; sigma), clamped to +-maxAction; differentiable in x (and the network). */
  denoise(x: Tensor, sigma: number, cond: Tensor | null): Tensor {
    const rows = checkInputs('EDMDiffusion.denoise', x, cond);
    if (!(sigma > 0)) throw new Error(`EDMDiffusion.denoise: sigma must be positive, got ${sigma}`);
    const c = this.schedule.precondition(sigma);
    const F = this.call('denoise', scale(x, c.cIn), full([rows], c.cNoise), cond, x);
    const D = add(scale(x, c.cSkip), scale(F, c.cOut));
    return this.maxAction === null ? D : clamp(D, -this.maxAction, this.maxAction);
  }

  /**
   * DTQL's trust-region loss L_TR at a one-step policy's actions `a`: the diffusion loss evaluated at a, whose
   * gradient flows into a (through the noised input, the network input and the target). backward() also
   * reaches the behaviour network's parameters; step only the policy's parameters with it, and clear the
   * behaviour network's gradients before its own update (or take grad() with respect to the policy).
   */
  trustRegionLoss(a: Tensor, cond: Tensor | null, gen: Generator): Tensor {
    checkInputs('EDMDiffusion.trustRegionLoss', a, cond);
    const nb = noiseEDM(a, this.schedule, gen);
    const F = this.call('trustRegionLoss', nb.netInput, nb.time, cond, a);
    return edmLoss(F, nb.xt, a, nb.sigma, this.schedule.sigmaData, this.maxAction);
  }
}

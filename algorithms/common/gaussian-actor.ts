// A tanh-squashed Gaussian policy (DTQL's one-step policy, the paper code's DiagGaussianActorTanhAction, and
// SAC's actor): an MLP s -> [mu, log sigma] with ReLU hidden layers and orthogonal initialisation, log sigma
// clamped (default [-5, 2]), actions maxAction * tanh(mu + sigma n) drawn with the reparameterisation trick, so
// the action carries the gradient of whatever is computed from it; SAC's log-probability of its own samples
// includes the tanh change of variables.
import { HostRng } from '../../engine/host-rng.ts';
import { MLP, Module } from '../../engine/nn.ts';
import { add, clamp, exp, log, mul, neg, scale, softplus, square, sub, tanh } from '../../engine/ops/elementwise.ts';
import { sum } from '../../engine/ops/reduce.ts';
import { slice } from '../../engine/ops/shape.ts';
import type { Generator } from '../../engine/random.ts';
import type { Tensor } from '../../engine/tensor.ts';

export const LOG_STD_MIN = -5;
export const LOG_STD_MAX = 2;
/** Added to maxAction before atanh in logProb, so data actions on the bound stay finite. */
export const ATANH_MARGIN = 1e-3;

export interface GaussianTanhActorOptions {
  hidden?: number;
  /** Hidden ReLU layers (default 3). */
  layers?: number;
  /** Actions lie in [-maxAction, maxAction]^D (default 1). */
  maxAction?: number;
  /** Clamp of log sigma (default LOG_STD_MIN, LOG_STD_MAX). */
  logStdMin?: number;
  logStdMax?: number;
  rng?: HostRng;
}

export class GaussianTanhActor extends Module {
  readonly obsDim: number;
  readonly actDim: number;
  readonly maxAction: number;
  readonly logStdMin: number;
  readonly logStdMax: number;
  readonly net: MLP;

  constructor(obsDim: number, actDim: number, opts: GaussianTanhActorOptions = {}) {
    super();
    const hidden = opts.hidden ?? 256;
    const layers = opts.layers ?? 3;
    for (const [name, v] of [['obsDim', obsDim], ['actDim', actDim], ['hidden', hidden], ['layers', layers]] as const) {
      if (!Number.isInteger(v) || v < 1) throw new Error(`GaussianTanhActor: ${name} must be a positive integer, got ${v}`);
    }
    this.obsDim = obsDim;
    this.actDim = actDim;
    this.maxAction = opts.maxAction ?? 1;
    if (!(this.maxAction > 0 && Number.isFinite(this.maxAction))) throw new Error(`GaussianTanhActor: maxAction must be a positive number, got ${this.maxAction}`);
    this.logStdMin = opts.logStdMin ?? LOG_STD_MIN;
    this.logStdMax = opts.logStdMax ?? LOG_STD_MAX;
    if (!(this.logStdMin < this.logStdMax)) throw new Error(`GaussianTanhActor: logStdMin (${this.logStdMin}) must be below logStdMax (${this.logStdMax})`);
    const widths = [obsDim, ...Array<number>(layers).fill(hidden), 2 * actDim];
    this.net = this.registerModule('net', new MLP(widths, { act: 'relu', init: 'orthogonal', rng: opts.rng ?? new HostRng(0) }));
  }

  private checkObs(op: string, obs: Tensor): void {
    if (obs.rank !== 2 || obs.shape[1] !== this.obsDim) throw new Error(`GaussianTanhActor.${op}: obs must be [B, ${this.obsDim}], got [${obs.shape}]`);
  }

  /** The Gaussian before the squashing: mean and clamped log standard deviation, each [B, actDim]. */
  distribution(obs: Tensor): { mu: Tensor; logStd: Tensor } {
    this.checkObs('distribution', obs);
    const out = this.net.forward(obs);
    const mu = slice(out, 0, this.actDim, 1);
    const logStd = clamp(slice(out, this.actDim, 2 * this.actDim, 1), this.logStdMin, this.logStdMax);
    return { mu, logStd };
  }

  /** a = maxAction tanh(mu + sigma n), n ~ N(0, I) from the generator; differentiable in the parameters. */
  sample(obs: Tensor, gen: Generator): Tensor {
    const { mu, logStd } = this.distribution(obs);
    const noise = gen.normal(mu.shape);
    const a = tanh(add(mu, mul(exp(logStd), noise)));
    return this.maxAction === 1 ? a : scale(a, this.maxAction);
  }

  /**
   * A reparameterised sample a = maxAction tanh(u), u = mu + sigma n, and its log-density under the squashed
   * distribution, [B, 1]: sum_d [log N(u_d; mu_d, sigma_d) - log(1 - tanh(u_d)^2)] - D log(maxAction), the
   * Jacobian term in the stable form 2 (log 2 - u - softplus(-2u)). Both differentiable in the parameters.
   */
  sampleWithLogProb(obs: Tensor, gen: Generator): { action: Tensor; logProb: Tensor } {
    const { mu, logStd } = this.distribution(obs);
    const noise = gen.normal(mu.shape);
    const u = add(mu, mul(exp(logStd), noise));
    const a = tanh(u);
    // log N(u; mu, sigma) = -n^2 / 2 - log sigma - log(2 pi) / 2, with n the drawn noise (a constant)
    const gaussian = sub(scale(square(noise), -0.5), add(logStd, 0.5 * Math.log(2 * Math.PI)));
    const logJacobian = scale(sub(sub(Math.LN2, u), softplus(scale(u, -2))), 2);
    let logProb = sum(sub(gaussian, logJacobian), { axis: -1, keepDim: true });
    if (this.maxAction !== 1) logProb = sub(logProb, this.actDim * Math.log(this.maxAction));
    return { action: this.maxAction === 1 ? a : scale(a, this.maxAction), logProb };
  }

  /** maxAction tanh(mu): the distribution's squashed mean, [B, actDim]. */
  meanAction(obs: Tensor): Tensor {
    const a = tanh(this.distribution(obs).mu);
    return this.maxAction === 1 ? a : scale(a, this.maxAction);
  }

  /**
   * sum_d log N(atanh(a_d / (maxAction + 1e-3)); mu_d, sigma_d), [B, 1]: the Gaussian's density at the
   * pre-squash value of given actions, without the tanh Jacobian (as the paper's code). Differentiable in the
   * parameters; the actions are constants.
   */
  logProb(obs: Tensor, actions: Tensor): Tensor {
    if (actions.rank !== 2 || actions.shape[1] !== this.actDim || actions.shape[0] !== obs.shape[0]) {
      throw new Error(`GaussianTanhActor.logProb: actions must be [${obs.shape[0]}, ${this.actDim}], got [${actions.shape}]`);
    }
    const { mu, logStd } = this.distribution(obs);
    const u = scale(actions, 1 / (this.maxAction + ATANH_MARGIN));
    // atanh(u) = (ln(1 + u) - ln(1 - u)) / 2
    const pre = scale(sub(log(add(u, 1)), log(sub(1, u))), 0.5);
    const z = mul(sub(pre, mu), exp(neg(logStd)));
    const perDim = sub(scale(square(z), -0.5), add(logStd, 0.5 * Math.log(2 * Math.PI)));
    return sum(perDim, { axis: -1, keepDim: true });
  }
}

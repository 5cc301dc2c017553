// Noise schedules of variance-preserving diffusion (x_t = alpha_t x0 + sigma_t eps, alpha_t^2 + sigma_t^2 = 1)
// and the EDM (Karras) parameterisation. Everything is float64 on the host; the GPU kernels receive the tables
// or the constants they need.
//
// Two views of a VP process live side by side:
// - the discrete DDPM chain of T steps (betas, cumulative products, posterior coefficients), trained with
//   integer steps k ~ U{0..T-1};
// - DPM-Solver's continuous-time view (VPSchedule), t in (0, 1], which samplers use for both the discrete
//   chain (log alpha interpolated between steps) and the VP-SDE of SRPO/QGPO.

/** DPM-Solver's continuous-time view of a VP process, t in (0, 1]: x_t = alpha_t x0 + sigma_t eps. */
export interface VPSchedule {
  /** log alpha_t */
  marginalLogMeanCoeff(t: number): number;
  /** sigma_t = sqrt(1 - alpha_t^2) */
  marginalStd(t: number): number;
  /** log alpha_t - log sigma_t (half the log signal-to-noise ratio); decreasing in t */
  marginalLambda(t: number): number;
  /** t with marginalLambda(t) = lambda */
  inverseLambda(lambda: number): number;
  /** The time value the noise network receives at continuous t. */
  networkTime(t: number): number;
  /** Smallest t a sampler should use (1/N for a discrete chain, 1e-3 for the VP-SDE). */
  readonly tEndDefault: number;
}

/** sqrt(1 - alpha^2) from log alpha, accurate when alpha is close to 1. */
function stdFromLogAlpha(logAlpha: number): number {
  return Math.sqrt(-Math.expm1(2 * logAlpha));
}

function lambdaFromLogAlpha(logAlpha: number): number {
  return logAlpha - 0.5 * Math.log(-Math.expm1(2 * logAlpha));
}

/** log alpha with lambda = log alpha - log sigma: alpha^2 = 1 / (1 + e^{-2 lambda}). */
function logAlphaFromLambda(lambda: number): number {
  const z = -2 * lambda;
  const softplus = z > 0 ? z + Math.log1p(Math.exp(-z)) : Math.log1p(Math.exp(z));
  return -0.5 * softplus;
}

/**
 * Piecewise-linear interpolation through (xs[i], ys[i]) with xs increasing, extended linearly past either end
 * with the slope of the nearest segment (as DPM-Solver's interpolate_fn does).
 */
function interpolate(x: number, xs: Float64Array, ys: Float64Array): number {
  const n = xs.length;
  if (n === 1) return ys[0]!;
  let lo: number;
  if (x <= xs[0]!) lo = 0;
  else if (x >= xs[n - 1]!) lo = n - 2;
  else {
    // largest lo with xs[lo] <= x, by bisection
    let a = 0;
    let b = n - 1;
    while (b - a > 1) {
      const m = (a + b) >> 1;
      if (xs[m]! <= x) a = m;
      else b = m;
    }
    lo = a;
  }
  const x0 = xs[lo]!;
  const x1 = xs[lo + 1]!;
  const y0 = ys[lo]!;
  const y1 = ys[lo + 1]!;
  return y0 + ((x - x0) * (y1 - y0)) / (x1 - x0);
}

/** numpy.linspace(start, stop, n) in float64. */
function linspace(start: number, stop: number, n: number): Float64Array {
  const out = new Float64Array(n);
  if (n === 1) {
    out[0] = start;
    return out;
  }
  const step = (stop - start) / (n - 1);
  for (let i = 0; i < n; i++) out[i] = start + i * step;
  out[n - 1] = stop;
  return out;
}

function checkSteps(name: string, T: number): void {
  if (!Number.isInteger(T) || T < 1) throw new Error(`DiscreteSchedule.${name}: T must be a positive integer, got ${T}`);
}

export class DiscreteSchedule implements VPSchedule {
  /** Diffusion-QL's vp_beta_schedule: alpha_t = exp(-b_min/T - (b_max - b_min)(2t - 1)/(2T^2)), t = 1..T. */
  static vp(T: number): DiscreteSchedule {
    checkSteps('vp', T);
    const bMin = 0.1;
    const bMax = 10;
    const betas = new Float64Array(T);
    for (let i = 0; i < T; i++) {
      const t = i + 1;
      betas[i] = -Math.expm1(-bMin / T - (0.5 * (bMax - bMin) * (2 * t - 1)) / (T * T));
    }
    return new DiscreteSchedule(betas);
  }

  /** beta = linspace(1e-4, 2e-2, T). */
  static linear(T: number): DiscreteSchedule {
    checkSteps('linear', T);
    return new DiscreteSchedule(linspace(1e-4, 2e-2, T));
  }

  /** EDP's default: s = 1000/T, beta = linspace(s 1e-4, s 0.02, T) (at T = 100: 1e-3 to 0.2). */
  static scaledLinear(T: number): DiscreteSchedule {
    checkSteps('scaledLinear', T);
    const s = 1000 / T;
    return new DiscreteSchedule(linspace(s * 1e-4, s * 0.02, T));
  }

  /**
   * Nichol & Dhariwal's cosine schedule: alphaBar(u) = cos((u + s)/(1 + s) pi/2)^2 with s = 0.008,
   * beta_k = min(1 - alphaBar((k+1)/T) / alphaBar(k/T), 0.999).
   */
  static cosine(T: number): DiscreteSchedule {
    checkSteps('cosine', T);
    const s = 0.008;
    const alphaBar = (u: number) => Math.cos(((u + s) / (1 + s)) * (Math.PI / 2)) ** 2;
    const betas = new Float64Array(T);
    for (let k = 0; k < T; k++) betas[k] = Math.min(1 - alphaBar((k + 1) / T) / alphaBar(k / T), 0.999);
    return new DiscreteSchedule(betas);
  }

  /** SDAC: beta = scale * linspace(1e-4, 0.999, T); the training script uses scale 0.8. */
  static sdac(T: number, scale = 0.8): DiscreteSchedule {
    checkSteps('sdac', T);
    if (!(scale > 0 && scale * 0.999 < 1)) throw new Error(`DiscreteSchedule.sdac: scale must be in (0, 1/0.999), got ${scale}`);
    const betas = linspace(1e-4, 0.999, T);
    for (let i = 0; i < T; i++) betas[i]! *= scale;
    return new DiscreteSchedule(betas);
  }

  readonly steps: number;
  readonly betas: Float64Array;
  readonly alphas: Float64Array;
  /** alphaBar_k = prod_{i <= k} alpha_i, k 0-based */
  readonly alphaBars: Float64Array;
  readonly sqrtAlphaBars: Float64Array;
  readonly sqrtOneMinusAlphaBars: Float64Array;
  /** Posterior q(x_{k-1} | x_k, x0) mean = coef1 x0 + coef2 x_k. */
  readonly posteriorMeanCoef1: Float64Array;
  readonly posteriorMeanCoef2: Float64Array;
  /** beta_k (1 - alphaBar_{k-1}) / (1 - alphaBar_k) ("fixed small"); entry 0 is 0. */
  readonly posteriorVariance: Float64Array;
  /** 0.5 log alphaBar_k: log alpha at t_k = (k+1)/N in the continuous view. */
  readonly logAlphas: Float64Array;
  /** t_k = (k + 1)/N. */
  readonly times: Float64Array;
  readonly tEndDefault: number;

  // the continuous view's inverse interpolates t over increasing log alpha
  private readonly logAlphasIncreasing: Float64Array;
  private readonly timesByLogAlpha: Float64Array;

  constructor(betas: Float64Array) {
    const T = betas.length;
    if (T < 1) throw new Error('DiscreteSchedule: needs at least one beta');
    for (let i = 0; i < T; i++) {
      const b = betas[i]!;
      if (!(b > 0 && b < 1)) throw new Error(`DiscreteSchedule: beta ${i} is ${b}; every beta must be in (0, 1)`);
    }
    this.steps = T;
    this.betas = Float64Array.from(betas);
    this.alphas = new Float64Array(T);
    this.alphaBars = new Float64Array(T);
    this.sqrtAlphaBars = new Float64Array(T);
    this.sqrtOneMinusAlphaBars = new Float64Array(T);
    this.posteriorMeanCoef1 = new Float64Array(T);
    this.posteriorMeanCoef2 = new Float64Array(T);
    this.posteriorVariance = new Float64Array(T);
    this.logAlphas = new Float64Array(T);
    this.times = new Float64Array(T);
    // log alphaBar as a sum of log1p terms keeps 1 - alphaBar accurate for small betas
    const oneMinusAlphaBar = new Float64Array(T);
    let logAlphaBar = 0;
    for (let k = 0; k < T; k++) {
      const b = this.betas[k]!;
      this.alphas[k] = 1 - b;
      logAlphaBar += Math.log1p(-b);
      this.alphaBars[k] = Math.exp(logAlphaBar);
      oneMinusAlphaBar[k] = -Math.expm1(logAlphaBar);
      this.sqrtAlphaBars[k] = Math.exp(0.5 * logAlphaBar);
      this.sqrtOneMinusAlphaBars[k] = Math.sqrt(oneMinusAlphaBar[k]!);
      this.logAlphas[k] = 0.5 * logAlphaBar;
      this.times[k] = (k + 1) / T;
    }
    for (let k = 0; k < T; k++) {
      const b = this.betas[k]!;
      const prevAlphaBar = k === 0 ? 1 : this.alphaBars[k - 1]!;
      const prevOneMinus = k === 0 ? 0 : oneMinusAlphaBar[k - 1]!;
      const denom = oneMinusAlphaBar[k]!;
      this.posteriorMeanCoef1[k] = (b * Math.sqrt(prevAlphaBar)) / denom;
      this.posteriorMeanCoef2[k] = (prevOneMinus * Math.sqrt(this.alphas[k]!)) / denom;
      this.posteriorVariance[k] = (b * prevOneMinus) / denom;
    }
    this.tEndDefault = 1 / T;
    this.logAlphasIncreasing = Float64Array.from(this.logAlphas).reverse();
    this.timesByLogAlpha = Float64Array.from(this.times).reverse();
  }

  /**
   * Log of the posterior variance with the repository's treatment of entry 0 (where the variance is 0):
   * 'dql' clamps at 1e-20, 'edp' (guided-diffusion) replaces entry 0 by entry 1.
   */
  posteriorLogVariance(mode: 'dql' | 'edp'): Float64Array {
    const v = this.posteriorVariance;
    const out = new Float64Array(this.steps);
    for (let k = 0; k < this.steps; k++) out[k] = Math.log(Math.max(v[k]!, 1e-20));
    if (mode === 'edp') {
      if (this.steps > 1) out[0] = Math.log(v[1]!);
    } else if (mode !== 'dql') {
      throw new Error(`DiscreteSchedule.posteriorLogVariance: mode must be 'dql' or 'edp', got ${String(mode)}`);
    }
    return out;
  }

  /** Extended linearly below t_0 = 1/N as DPM-Solver does; where that reaches alpha >= 1 it is an error. */
  marginalLogMeanCoeff(t: number): number {
    const logAlpha = interpolate(t, this.times, this.logAlphas);
    if (!(logAlpha < 0)) {
      throw new Error(`DiscreteSchedule: t = ${t} lies outside the ${this.steps}-step schedule (use t >= 1/N = ${1 / this.steps})`);
    }
    return logAlpha;
  }

  marginalStd(t: number): number {
    return stdFromLogAlpha(this.marginalLogMeanCoeff(t));
  }

  marginalLambda(t: number): number {
    return lambdaFromLogAlpha(this.marginalLogMeanCoeff(t));
  }

  inverseLambda(lambda: number): number {
    return interpolate(logAlphaFromLambda(lambda), this.logAlphasIncreasing, this.timesByLogAlpha);
  }

  /** The fractional 0-based step: t_k = (k+1)/N maps to k. */
  networkTime(t: number): number {
    return (t - 1 / this.steps) * this.steps;
  }

  /** Continuous time of 0-based step k. */
  stepTime(k: number): number {
    return (k + 1) / this.steps;
  }
}

/** The VP-SDE with linear beta(t) = beta0 + t (beta1 - beta0) (SRPO, QGPO): log alpha(t) = -t^2 (b1-b0)/4 - t b0/2. */
export class VPSDE implements VPSchedule {
  readonly beta0: number;
  readonly beta1: number;
  readonly tEndDefault = 1e-3;
  /** Training draws t ~ U(tMin, 1). */
  readonly tMin = 1e-3;

  constructor(beta0 = 0.1, beta1 = 20) {
    if (!(beta0 >= 0 && beta1 >= beta0 && beta1 > 0)) throw new Error(`VPSDE: need 0 <= beta0 <= beta1, beta1 > 0; got ${beta0}, ${beta1}`);
    this.beta0 = beta0;
    this.beta1 = beta1;
  }

  marginalLogMeanCoeff(t: number): number {
    return -0.25 * t * t * (this.beta1 - this.beta0) - 0.5 * t * this.beta0;
  }

  alpha(t: number): number {
    return Math.exp(this.marginalLogMeanCoeff(t));
  }

  sigma(t: number): number {
    return this.marginalStd(t);
  }

  marginalStd(t: number): number {
    return stdFromLogAlpha(this.marginalLogMeanCoeff(t));
  }

  marginalLambda(t: number): number {
    return lambdaFromLogAlpha(this.marginalLogMeanCoeff(t));
  }

  /** Solves (b1-b0)/4 t^2 + b0/2 t = L for t >= 0, with L = -log alpha; written without cancellation. */
  inverseLambda(lambda: number): number {
    const L = -logAlphaFromLambda(lambda);
    const d = this.beta1 - this.beta0;
    return (4 * L) / (Math.sqrt(this.beta0 * this.beta0 + 4 * d * L) + this.beta0);
  }

  networkTime(t: number): number {
    return t;
  }
}

export interface EDMOptions {
  sigmaData?: number;
  sigmaMin?: number;
  sigmaMax?: number;
  rho?: number;
}

/** EDM preconditioning coefficients at one noise level. */
export interface EDMCoefficients {
  cSkip: number;
  cOut: number;
  cIn: number;
  cNoise: number;
}

/**
 * Karras et al.'s EDM parameterisation as DTQL uses it: x = x0 + sigma eps, D(x; sigma) = cSkip x + cOut
 * F(cIn x, cNoise). Training draws sigma from a log-logistic (loc ln sigmaData, scale 0.5) truncated to
 * [sigmaMin, sigmaMax].
 */
export class EDMSchedule {
  readonly sigmaData: number;
  readonly sigmaMin: number;
  readonly sigmaMax: number;
  readonly rho: number;
  /** Location and scale of the training distribution of ln sigma (logistic). */
  readonly trainLoc: number;
  readonly trainScale = 0.5;

  constructor(opts: EDMOptions = {}) {
    this.sigmaData = opts.sigmaData ?? 0.5;
    this.sigmaMin = opts.sigmaMin ?? 0.002;
    this.sigmaMax = opts.sigmaMax ?? 80;
    this.rho = opts.rho ?? 7;
    if (!(this.sigmaData > 0)) throw new Error(`EDMSchedule: sigmaData must be positive, got ${this.sigmaData}`);
    if (!(this.sigmaMin > 0 && this.sigmaMax > this.sigmaMin)) {
      throw new Error(`EDMSchedule: need 0 < sigmaMin < sigmaMax, got ${this.sigmaMin}, ${this.sigmaMax}`);
    }
    if (!(this.rho > 0)) throw new Error(`EDMSchedule: rho must be positive, got ${this.rho}`);
    this.trainLoc = Math.log(this.sigmaData);
  }

  precondition(sigma: number): EDMCoefficients {
    const sd = this.sigmaData;
    const r = Math.sqrt(sigma * sigma + sd * sd);
    return { cSkip: (sd * sd) / (r * r), cOut: (sigma * sd) / r, cIn: 1 / r, cNoise: Math.log(sigma) / 4 };
  }

  /** n noise levels from sigmaMax down to sigmaMin, evenly spaced in sigma^(1/rho), then a final 0 (length n+1). */
  karrasSigmas(n: number): Float64Array {
    if (!Number.isInteger(n) || n < 1) throw new Error(`EDMSchedule.karrasSigmas: n must be a positive integer, got ${n}`);
    const out = new Float64Array(n + 1);
    const hi = this.sigmaMax ** (1 / this.rho);
    const lo = this.sigmaMin ** (1 / this.rho);
    for (let i = 0; i < n; i++) out[i] = (n === 1 ? hi : hi + (i / (n - 1)) * (lo - hi)) ** this.rho;
    out[n] = 0;
    return out;
  }

  /** CDF of the untruncated training distribution: sigmoid((ln sigma - loc)/scale). */
  logLogisticCdf(sigma: number): number {
    return 1 / (1 + Math.exp(-(Math.log(sigma) - this.trainLoc) / this.trainScale));
  }

  /** The training sigma for a uniform u in [0, 1]: the inverse CDF over [cdf(sigmaMin), cdf(sigmaMax)]. */
  trainingSigma(u: number): number {
    const lo = this.logLogisticCdf(this.sigmaMin);
    const hi = this.logLogisticCdf(this.sigmaMax);
    const v = lo + u * (hi - lo);
    return Math.exp(this.trainLoc + this.trainScale * Math.log(v / (1 - v)));
  }

  /** CDF of the truncated training distribution. */
  trainingSigmaCdf(sigma: number): number {
    if (sigma <= this.sigmaMin) return 0;
    if (sigma >= this.sigmaMax) return 1;
    const lo = this.logLogisticCdf(this.sigmaMin);
    const hi = this.logLogisticCdf(this.sigmaMax);
    return (this.logLogisticCdf(sigma) - lo) / (hi - lo);
  }
}

// Reverse-process samplers for diffusion policies: DDPM ancestral sampling, DDIM, DPM-Solver++ (singlestep and
// multistep, orders 1-3) and the EDM Euler/Heun samplers. Each step's update is one fused kernel
// (kernels/samplers.ts) whose coefficients are float64 host scalars passed as uniforms; nothing is read back, so
// a whole sample is encoded without waiting on the GPU. The network calls are whatever the model does.
//
// Models are structural: anything with the right schedule and method works (algorithms/diffusion/models.ts).
// Data predictions are clipped to [-maxAction, maxAction] when maxAction is a number (clip_denoised).
import { needsGrad, noGrad, record } from '../../engine/autograd.ts';
import { zeros } from '../../engine/basic.ts';
import { launch } from '../../engine/fused.ts';
import { clamp, scale } from '../../engine/ops/elementwise.ts';
import type { Generator } from '../../engine/random.ts';
import { empty, tidy, type Tensor } from '../../engine/tensor.ts';
import { flatGrid } from '../../kernels/common.ts';
import { samplerStepBackwardSource, samplerStepSource, stepVariantKey, type StepVariant } from '../../kernels/samplers.ts';
import type { DiscreteSchedule, EDMSchedule, VPSchedule } from './schedules.ts';

/** An epsilon-prediction network on DPM-Solver's continuous time t in (0, 1]. */
export interface EpsModel {
  schedule: VPSchedule;
  maxAction: number | null;
  eps(x: Tensor, t: number, cond: Tensor | null): Tensor;
}

/** An epsilon-prediction network on the integer steps k = 0..T-1 of a discrete chain. */
export interface DiscreteEpsModel {
  schedule: DiscreteSchedule;
  maxAction: number | null;
  epsAtStep(x: Tensor, k: number, cond: Tensor | null): Tensor;
}

/** An EDM denoiser D(x; sigma) (already preconditioned: it returns the data estimate). */
export interface EDMDenoiser {
  schedule: EDMSchedule;
  maxAction: number | null;
  denoise(x: Tensor, sigma: number, cond: Tensor | null): Tensor;
}

export interface SampleOptions {
  batch: number;
  actionDim: number;
  generator: Generator;
  /**
   * The initial standard normal draw [batch, actionDim] (scaled by the sampler's initial noise level where it
   * has one). Not consumed. Drawn from the generator when absent.
   */
  noise?: Tensor;
}

// ---- the fused update ----

export type UpdateNoise = { generator: Generator; std: number } | { tensor: Tensor; std: number };

/**
 * One fused sampler update:
 *   d   = clip(pe * at + qe * m)   (clip to +-clip when clip is a number)
 *   out = cx * x + cxe * at + cd * d + sum_j history[j].c * history[j].d + std * z   (then clipped to +-clipOut)
 * `at` is the point the model output m was evaluated at (x when absent). With writeData, d is returned too.
 * Differentiable in x, m, at and the history (noise is a constant).
 */
export interface UpdateSpec {
  x: Tensor;
  m: Tensor;
  at?: Tensor;
  pe: number;
  qe: number;
  clip?: number | null;
  cx: number;
  cxe?: number;
  cd: number;
  history?: { d: Tensor; c: number }[];
  noise?: UpdateNoise;
  writeData?: boolean;
  clipOut?: number | null;
}

function checkFiniteCoefficients(values: Record<string, number>): void {
  for (const [name, v] of Object.entries(values)) {
    if (!Number.isFinite(v)) throw new Error(`fusedUpdate: coefficient ${name} is ${v}`);
  }
}

export function fusedUpdate(spec: UpdateSpec): { out: Tensor; data: Tensor | null } {
  const { x, m } = spec;
  const at = spec.at ?? null;
  const history = spec.history ?? [];
  if (history.length > 2) throw new Error(`fusedUpdate: at most 2 history terms, got ${history.length}`);
  const operands: [string, Tensor][] = [['m', m], ...(at ? [['at', at] as [string, Tensor]] : []), ...history.map((h, i) => [`history ${i}`, h.d] as [string, Tensor])];
  if ('tensor' in (spec.noise ?? {})) operands.push(['noise', (spec.noise as { tensor: Tensor }).tensor]);
  for (const [name, t] of [['x', x] as [string, Tensor], ...operands]) {
    if (t.dtype !== 'f32') throw new Error(`fusedUpdate: ${name} must be f32, got ${t.dtype} [${t.shape}]`);
    if (t.size !== x.size) throw new Error(`fusedUpdate: ${name} [${t.shape}] does not match x [${x.shape}]`);
  }
  const clip = spec.clip ?? null;
  const cxe = spec.cxe ?? 0;
  const std = spec.noise?.std ?? 0;
  checkFiniteCoefficients({ pe: spec.pe, qe: spec.qe, cx: spec.cx, cxe, cd: spec.cd, std, ...Object.fromEntries(history.map((h, i) => [`c${i + 1}`, h.c])) });
  if (clip !== null && !(clip >= 0)) throw new Error(`fusedUpdate: clip bound must be a non-negative number, got ${clip}`);
  const inputs = [x, m, ...(at ? [at] : []), ...history.map((h) => h.d)];
  const grad = needsGrad(...inputs);
  // a clipped output's gradient mask would need the whole pre-clip sum again: with gradients it is a clamp op
  const fusedClipOut = grad ? null : (spec.clipOut ?? null);
  const variant: StepVariant = {
    separateEval: at !== null,
    history: history.length as 0 | 1 | 2,
    writeData: spec.writeData ?? false,
    noise: !spec.noise || std === 0 ? 'none' : 'generator' in spec.noise ? 'philox' : 'tensor',
    clipData: clip !== null,
    clipOut: fusedClipOut !== null,
  };
  const out = empty(x.shape);
  const data = variant.writeData ? empty(x.shape) : null;
  const n = x.size;
  let position = { key_lo: 0, key_hi: 0, base_lo: 0, base_hi: 0 };
  if (variant.noise === 'philox') position = (spec.noise as { generator: Generator }).generator.reserve(n);
  const buffers: Record<string, Tensor> = { x, m, out };
  if (at) buffers.xe = at;
  if (history[0]) buffers.h1 = history[0].d;
  if (history[1]) buffers.h2 = history[1].d;
  if (variant.noise === 'tensor') buffers.noise = (spec.noise as { tensor: Tensor }).tensor;
  if (data) buffers.dOut = data;
  const uniforms = {
    n,
    pe: spec.pe,
    qe: spec.qe,
    dLo: clip === null ? 0 : -clip,
    dHi: clip === null ? 0 : clip,
    cx: spec.cx,
    cxe,
    cd: spec.cd,
    c1: history[0]?.c ?? 0,
    c2: history[1]?.c ?? 0,
    sz: std,
    outLo: fusedClipOut === null ? 0 : -fusedClipOut,
    outHi: fusedClipOut === null ? 0 : fusedClipOut,
  };
  if (n > 0) launch(stepVariantKey(variant), () => samplerStepSource(variant), buffers, [uniforms, position], flatGrid(Math.ceil(n / 4)));
  if (grad) {
    const outputs = data ? [out, data] : [out];
    record('samplerStep', inputs, outputs, ([g, gD]) => {
      const gOut = g ?? zeros(x.shape);
      const evalPoint = at ?? x;
      const gm = empty(x.shape);
      const gxe = empty(x.shape);
      const hasDataGrad = !!gD;
      const bufs: Record<string, Tensor> = { g: gOut, xe: evalPoint, m, gm, gxe };
      if (gD) bufs.gD = gD;
      const u = { n, pe: spec.pe, qe: spec.qe, dLo: uniforms.dLo, dHi: uniforms.dHi, cd: spec.cd, cg: at ? cxe : spec.cx };
      const key = `samplerStepBackward_c${+(clip !== null)}_d${+hasDataGrad}`;
      if (n > 0) launch(key, () => samplerStepBackwardSource(clip !== null, hasDataGrad), bufs, u, flatGrid(n));
      const grads: (Tensor | null)[] = [at ? scale(gOut, spec.cx) : gxe, gm];
      if (at) grads.push(gxe);
      for (const h of history) grads.push(scale(gOut, h.c));
      return grads;
    });
  }
  const clipOut = spec.clipOut ?? null;
  if (grad && clipOut !== null) return { out: clamp(out, -clipOut, clipOut), data };
  return { out, data };
}

// ---- shared plumbing ----

function checkCommon(op: string, opts: SampleOptions, cond: Tensor | null): void {
  const { batch, actionDim } = opts;
  if (!Number.isInteger(batch) || batch < 1) throw new Error(`${op}: batch must be a positive integer, got ${batch}`);
  if (!Number.isInteger(actionDim) || actionDim < 1) throw new Error(`${op}: actionDim must be a positive integer, got ${actionDim}`);
  if (cond && cond.shape[0] !== batch) throw new Error(`${op}: cond [${cond.shape}] must have batch ${batch} rows`);
  const noise = opts.noise;
  if (noise && (noise.rank !== 2 || noise.shape[0] !== batch || noise.shape[1] !== actionDim)) {
    throw new Error(`${op}: noise [${noise.shape}] must be [${batch}, ${actionDim}]`);
  }
}

function checkModelOutput(op: string, y: Tensor, x: Tensor): Tensor {
  if (y.size !== x.size) throw new Error(`${op}: the model returned [${y.shape}] for x [${x.shape}]`);
  return y;
}

/**
 * Runs a sampler's steps. Without gradients every step runs in its own tidy scope and the tensors it replaces
 * are disposed at once, so memory stays flat over long chains; with gradients everything stays alive for the
 * backward pass (the caller's tidy scope ends their lives).
 */
class Chain {
  readonly withGrad: boolean;
  private readonly userOwned: Tensor | null;

  constructor(withGrad: boolean, userOwned: Tensor | null) {
    this.withGrad = withGrad;
    this.userOwned = userOwned;
  }

  step<T>(fn: () => T): T {
    return this.withGrad ? fn() : tidy(fn);
  }

  drop(...ts: (Tensor | null | undefined)[]): void {
    if (this.withGrad) return;
    for (const t of ts) if (t && t !== this.userOwned) t.dispose();
  }
}

function initialState(opts: SampleOptions, std: number): Tensor {
  if (opts.noise) return std === 1 ? opts.noise : scale(opts.noise, std);
  return opts.generator.normal([opts.batch, opts.actionDim], 0, std);
}

function run<T>(withGrad: boolean, fn: () => T): T {
  return withGrad ? fn() : noGrad(fn);
}

// ---- DDPM ----

export type LogVarMode = 'dql' | 'edp';

export interface DDPMStepOptions {
  maxAction: number | null;
  logVarMode?: LogVarMode;
  /** Source of the step's noise (drawn inline: the layout of generator.normal(x.shape) at its counter). */
  generator?: Generator;
  /** Pre-drawn standard normal noise of x's shape, used instead of the generator. */
  noise?: Tensor;
}

/**
 * One ancestral step x_k -> x_{k-1}: a0 = clip(x/sqrt(abar_k) - sqrt(1/abar_k - 1) eps), mean = c1 a0 + c2 x,
 * plus exp(logvar_k / 2) z for k > 0.
 */
export function ddpmStep(schedule: DiscreteSchedule, x: Tensor, eps: Tensor, k: number, opts: DDPMStepOptions): Tensor {
  const T = schedule.steps;
  if (!Number.isInteger(k) || k < 0 || k >= T) throw new Error(`ddpmStep: step ${k} is outside 0..${T - 1}`);
  const logVar = schedule.posteriorLogVariance(opts.logVarMode ?? 'dql')[k]!;
  const std = k > 0 ? Math.exp(0.5 * logVar) : 0;
  let noise: UpdateNoise | undefined;
  if (std > 0) {
    if (opts.noise) noise = { tensor: opts.noise, std };
    else if (opts.generator) noise = { generator: opts.generator, std };
    else throw new Error(`ddpmStep: step ${k} adds noise; give a generator or a noise tensor`);
  }
  const sqrtAbar = schedule.sqrtAlphaBars[k]!;
  return fusedUpdate({
    x,
    m: eps,
    pe: 1 / sqrtAbar,
    qe: -schedule.sqrtOneMinusAlphaBars[k]! / sqrtAbar,
    clip: opts.maxAction,
    cx: schedule.posteriorMeanCoef2[k]!,
    cd: schedule.posteriorMeanCoef1[k]!,
    noise,
  }).out;
}

export interface DDPMSampleOptions extends SampleOptions {
  logVarMode?: LogVarMode;
  /** Record the chain for backpropagation (Diffusion-QL's policy loss). */
  withGrad?: boolean;
}

/** Ancestral sampling over all T steps from x_T ~ N(0, I). Steps k > 0 draw their noise from the generator. */
export function ddpmSample(model: DiscreteEpsModel, cond: Tensor | null, opts: DDPMSampleOptions): Tensor {
  checkCommon('ddpmSample', opts, cond);
  const withGrad = opts.withGrad ?? false;
  return run(withGrad, () => {
    const chain = new Chain(withGrad, opts.noise ?? null);
    let x = initialState(opts, 1);
    for (let k = model.schedule.steps - 1; k >= 0; k--) {
      const prev = x;
      x = chain.step(() => {
        const eps = checkModelOutput('ddpmSample', model.epsAtStep(prev, k, cond), prev);
        return ddpmStep(model.schedule, prev, eps, k, { maxAction: model.maxAction, logVarMode: opts.logVarMode, generator: opts.generator });
      });
      chain.drop(prev);
    }
    return x;
  });
}

// ---- DDIM ----

/** `steps` distinct steps from T-1 down to 0, evenly spaced (rounded); one step is T-1 alone. */
export function ddimTimesteps(T: number, steps: number): number[] {
  if (!Number.isInteger(steps) || steps < 1 || steps > T) throw new Error(`ddimTimesteps: steps must be an integer in 1..${T}, got ${steps}`);
  if (steps === 1) return [T - 1];
  return Array.from({ length: steps }, (_, j) => Math.round(((T - 1) * (steps - 1 - j)) / (steps - 1)));
}

export interface DDIMSampleOptions extends SampleOptions {
  /** Network evaluations (default: every step of the chain). */
  steps?: number;
  /** 0 is deterministic DDIM; 1 with all steps is DDPM with the fixed-small variance. */
  eta?: number;
}

/**
 * DDIM over ddimTimesteps(T, steps). Each step clips the data prediction, re-derives the noise from it (as
 * guided-diffusion does) and moves to the previous selected step; the last step lands on the clipped data
 * prediction (abar_prev = 1).
 */
export function ddimSample(model: DiscreteEpsModel, cond: Tensor | null, opts: DDIMSampleOptions): Tensor {
  checkCommon('ddimSample', opts, cond);
  const sched = model.schedule;
  const eta = opts.eta ?? 0;
  if (!(eta >= 0)) throw new Error(`ddimSample: eta must be non-negative, got ${eta}`);
  const ks = ddimTimesteps(sched.steps, opts.steps ?? sched.steps);
  return noGrad(() => {
    const chain = new Chain(false, opts.noise ?? null);
    let x = initialState(opts, 1);
    ks.forEach((k, i) => {
      const kPrev = ks[i + 1];
      const abar = sched.alphaBars[k]!;
      const abarPrev = kPrev === undefined ? 1 : sched.alphaBars[kPrev]!;
      const sqrtAbar = sched.sqrtAlphaBars[k]!;
      const sqrtOneMinus = sched.sqrtOneMinusAlphaBars[k]!;
      const sigma = eta * Math.sqrt(((1 - abarPrev) / (1 - abar)) * (1 - abar / abarPrev));
      // x_prev = sqrt(abarPrev) a0 + c (x - sqrt(abar) a0) / sqrt(1 - abar) + sigma z
      const c = Math.sqrt(Math.max(0, 1 - abarPrev - sigma * sigma));
      const prev = x;
      x = chain.step(() => {
        const eps = checkModelOutput('ddimSample', model.epsAtStep(prev, k, cond), prev);
        return fusedUpdate({
          x: prev,
          m: eps,
          pe: 1 / sqrtAbar,
          qe: -sqrtOneMinus / sqrtAbar,
          clip: model.maxAction,
          cx: c / sqrtOneMinus,
          cd: Math.sqrt(abarPrev) - (c * sqrtAbar) / sqrtOneMinus,
          noise: sigma > 0 ? { generator: opts.generator, std: sigma } : undefined,
        }).out;
      });
      chain.drop(prev);
    });
    return x;
  });
}

// ---- DPM-Solver++ ----

export type SkipType = 'time-uniform' | 'logSNR';

/** n + 1 times from tStart to tEnd, uniform in t or in lambda (the log of alpha/sigma); the ends are exact. */
export function timeGrid(schedule: VPSchedule, skip: SkipType, tStart: number, tEnd: number, n: number): Float64Array {
  const out = new Float64Array(n + 1);
  if (skip === 'logSNR') {
    const l0 = schedule.marginalLambda(tStart);
    const l1 = schedule.marginalLambda(tEnd);
    for (let i = 1; i < n; i++) out[i] = schedule.inverseLambda(l0 + ((l1 - l0) * i) / n);
  } else if (skip === 'time-uniform') {
    for (let i = 1; i < n; i++) out[i] = tStart + ((tEnd - tStart) * i) / n;
  } else {
    throw new Error(`timeGrid: skip must be 'time-uniform' or 'logSNR', got ${String(skip)}`);
  }
  out[0] = tStart;
  out[n] = tEnd;
  return out;
}

/**
 * DPM-Solver's split of `steps` network evaluations into singlestep updates of at most `order`: order 3 uses
 * [3, ..., 3, 2, 1], [3, ..., 3, 1] or [3, ..., 3, 2] by steps mod 3; order 2 uses [2, ...] plus a final 1 when
 * steps is odd.
 */
export function singlestepOrders(steps: number, order: 1 | 2 | 3): number[] {
  if (order === 3) {
    const K = Math.floor(steps / 3) + 1;
    if (steps % 3 === 0) return [...Array<number>(K - 2).fill(3), 2, 1];
    if (steps % 3 === 1) return [...Array<number>(K - 1).fill(3), 1];
    return [...Array<number>(K - 1).fill(3), 2];
  }
  if (order === 2) return steps % 2 === 0 ? Array<number>(steps / 2).fill(2) : [...Array<number>((steps - 1) / 2).fill(2), 1];
  return Array<number>(steps).fill(1);
}

/**
 * One network evaluation of a singlestep DPM-Solver++ update and the fused update after it:
 *   d   = clip(pe in + qe eps(in, t))
 *   out = cx base + cd d + cD0 d0        (d0 term only when cD0 is not null; out clipped when clipOut)
 * where `in` is the named point ('x': the update's start, which is also `base`; 'x1', 'x2': its intermediate
 * points) and saveD0 keeps this evaluation's d as the update's d0.
 */
export interface SinglestepEval {
  input: 'x' | 'x1' | 'x2';
  output: 'x' | 'x1' | 'x2';
  t: number;
  pe: number;
  qe: number;
  cx: number;
  cd: number;
  cD0: number | null;
  saveD0: boolean;
  clipOut: boolean;
}

/**
 * The coefficients of a singlestep DPM-Solver++ run, one list of evaluations per update (see dpmSolverPPSample),
 * so that other implementations of the same sampler use the engine's numbers.
 */
export function dpmSolverSinglestepPlan(
  sched: VPSchedule,
  opts: { steps: number; order: 1 | 2 | 3; tStart: number; tEnd: number; skip: SkipType },
): SinglestepEval[][] {
  const { steps, order, tStart, tEnd, skip } = opts;
  const point = (t: number): VPPoint => ({
    t,
    alpha: Math.exp(sched.marginalLogMeanCoeff(t)),
    sigma: sched.marginalStd(t),
    lambda: sched.marginalLambda(t),
  });
  // d = (x - sigma eps) / alpha at the point the model was evaluated
  const at = (p: VPPoint) => ({ t: p.t, pe: 1 / p.alpha, qe: -p.sigma / p.alpha });
  const orders = singlestepOrders(steps, order);
  let outer: Float64Array;
  if (skip === 'logSNR') outer = timeGrid(sched, skip, tStart, tEnd, orders.length);
  else {
    const fine = timeGrid(sched, skip, tStart, tEnd, steps);
    outer = new Float64Array(orders.length + 1);
    let c = 0;
    outer[0] = fine[0]!;
    orders.forEach((o, i) => (outer[i + 1] = fine[(c += o)]!));
  }
  return orders.map((o, i) => {
    const clipOut = i === orders.length - 1;
    const s = point(outer[i]!);
    const t = point(outer[i + 1]!);
    const h = t.lambda - s.lambda;
    const phi1 = Math.expm1(-h);
    const ratio = t.sigma / s.sigma;
    if (o === 1) return [{ input: 'x', output: 'x', ...at(s), cx: ratio, cd: -t.alpha * phi1, cD0: null, saveD0: false, clipOut }];
    const inner = timeGrid(sched, skip, s.t, t.t, o);
    const s1 = point(inner[1]!);
    const r1 = (s1.lambda - s.lambda) / h;
    const first: SinglestepEval = { input: 'x', output: 'x1', ...at(s), cx: s1.sigma / s.sigma, cd: -s1.alpha * Math.expm1(-r1 * h), cD0: null, saveD0: true, clipOut: false };
    if (o === 2) {
      const c = (0.5 / r1) * t.alpha * phi1;
      return [first, { input: 'x1', output: 'x', ...at(s1), cx: ratio, cd: -c, cD0: -t.alpha * phi1 + c, saveD0: false, clipOut }];
    }
    const s2 = point(inner[2]!);
    const r2 = (s2.lambda - s.lambda) / h;
    const phi12 = Math.expm1(-r2 * h);
    const phi22 = phi12 / (r2 * h) + 1;
    const phi2 = phi1 / h + 1;
    const c1 = (r2 / r1) * s2.alpha * phi22;
    const c2 = (1 / r2) * t.alpha * phi2;
    return [
      first,
      { input: 'x1', output: 'x2', ...at(s1), cx: s2.sigma / s.sigma, cd: c1, cD0: -s2.alpha * phi12 - c1, saveD0: false, clipOut: false },
      { input: 'x2', output: 'x', ...at(s2), cx: ratio, cd: c2, cD0: -t.alpha * phi1 - c2, saveD0: false, clipOut },
    ];
  });
}

export interface DPMSolverOptions extends SampleOptions {
  /** Network evaluations (default 15, EDP's). */
  steps?: number;
  order?: 1 | 2 | 3;
  /** Start time (default 1: x_1 ~ N(0, I)). */
  tStart?: number;
  /** End time (default model.schedule.tEndDefault). */
  tEnd?: number;
  skip?: SkipType;
  method?: 'singlestep' | 'multistep';
  /** Multistep only: lower the order of the last steps when steps < 10 (DPM-Solver's default). */
  lowerOrderFinal?: boolean;
  /** Clip the returned sample to +-maxAction (default true; ignored when maxAction is null). */
  clipOutput?: boolean;
}

interface VPPoint {
  t: number;
  alpha: number;
  sigma: number;
  lambda: number;
}

/**
 * DPM-Solver++ (data prediction) with the data prediction clipped to +-maxAction. Defaults are EDP's: 15 steps,
 * order 3, singlestep, time-uniform skip, from t = 1 to the schedule's tEndDefault.
 *
 * Singlestep updates over [s, t] (h = lambda_t - lambda_s, phi1 = expm1(-h), phi2 = phi1/h + 1) place their
 * intermediate points on the same skip rule and use DPM-Solver's 'dpmsolver' forms: order 2
 *   x_t = (sigma_t/sigma_s) x - alpha_t phi1 d0 - (0.5/r1) alpha_t phi1 (d1 - d0),
 * order 3 (through s1 and s2 at r1 h and r2 h)
 *   x_t = (sigma_t/sigma_s) x - alpha_t phi1 d0 + (1/r2) alpha_t phi2 (d2 - d0).
 * Multistep order 3 uses the Taylor expansion of the exponential integrator, x_t = (sigma_t/sigma_s) x
 * - alpha_t phi1 d0 + alpha_t phi2 D1 - alpha_t h^2 phi3 d'' with phi3 = phi2/h - 1/2 and h^2 d'' estimated as
 * 2 (D1_0 - D1_1)/(r0 + r1). (The reference implementation weights that last term by 1/(r0 + r1) without the
 * factor 2, which makes its "third-order" multistep converge at second order.)
 */
export function dpmSolverPPSample(model: EpsModel, cond: Tensor | null, opts: DPMSolverOptions): Tensor {
  checkCommon('dpmSolverPPSample', opts, cond);
  const sched = model.schedule;
  const steps = opts.steps ?? 15;
  const order = opts.order ?? 3;
  const tStart = opts.tStart ?? 1;
  const tEnd = opts.tEnd ?? sched.tEndDefault;
  const skip = opts.skip ?? 'time-uniform';
  const method = opts.method ?? 'singlestep';
  if (!Number.isInteger(steps) || steps < 1) throw new Error(`dpmSolverPPSample: steps must be a positive integer, got ${steps}`);
  if (order !== 1 && order !== 2 && order !== 3) throw new Error(`dpmSolverPPSample: order must be 1, 2 or 3, got ${String(order)}`);
  if (!(tEnd > 0 && tEnd < tStart && tStart <= 1)) throw new Error(`dpmSolverPPSample: need 0 < tEnd < tStart <= 1, got tEnd ${tEnd}, tStart ${tStart}`);
  if (method === 'multistep' && steps < order) throw new Error(`dpmSolverPPSample: multistep order ${order} needs at least ${order} steps, got ${steps}`);
  if (method !== 'singlestep' && method !== 'multistep') throw new Error(`dpmSolverPPSample: method must be 'singlestep' or 'multistep', got ${String(method)}`);
  const clipOut = (opts.clipOutput ?? true) ? model.maxAction : null;
  const point = (t: number): VPPoint => ({
    t,
    alpha: Math.exp(sched.marginalLogMeanCoeff(t)),
    sigma: sched.marginalStd(t),
    lambda: sched.marginalLambda(t),
  });
  const eps = (x: Tensor, t: number) => checkModelOutput('dpmSolverPPSample', model.eps(x, t, cond), x);
  // d = (x - sigma eps) / alpha at the point the model was evaluated
  const dataPrediction = (p: VPPoint) => ({ pe: 1 / p.alpha, qe: -p.sigma / p.alpha, clip: model.maxAction });
  return noGrad(() => {
    const chain = new Chain(false, opts.noise ?? null);
    let x = initialState(opts, 1);
    if (method === 'singlestep') {
      for (const update of dpmSolverSinglestepPlan(sched, { steps, order, tStart, tEnd, skip })) {
        const prev = x;
        x = chain.step(() => {
          const points: Partial<Record<SinglestepEval['output'], Tensor>> = { x: prev };
          let d0: Tensor | null = null;
          for (const e of update) {
            const input = points[e.input]!;
            const res = fusedUpdate({
              x: prev,
              m: eps(input, e.t),
              ...(e.input === 'x' ? {} : { at: input }),
              pe: e.pe,
              qe: e.qe,
              clip: model.maxAction,
              cx: e.cx,
              cd: e.cd,
              history: e.cD0 === null ? [] : [{ d: d0!, c: e.cD0 }],
              writeData: e.saveD0,
              clipOut: e.clipOut ? clipOut : null,
            });
            if (e.saveD0) d0 = res.data;
            points[e.output] = res.out;
          }
          return points.x!;
        });
        chain.drop(prev);
      }
      return x;
    }

    // multistep: each update evaluates the model once at the current x and combines up to two earlier data
    // predictions, kept with their lambda
    const ts = timeGrid(sched, skip, tStart, tEnd, steps);
    const history: { d: Tensor; lambda: number }[] = [];
    let epsNow: Tensor | null = eps(x, ts[0]!);
    for (let i = 1; i <= steps; i++) {
      let o = Math.min(order, i);
      if ((opts.lowerOrderFinal ?? true) && steps < 10) o = Math.min(o, steps + 1 - i);
      const s = point(ts[i - 1]!);
      const t = point(ts[i]!);
      const coeffs = multistepCoefficients(o, s, t, history.map((hh) => hh.lambda));
      const keepData = order > 1 && i < steps;
      const prev = x;
      const m = epsNow!;
      const res = chain.step(() =>
        fusedUpdate({
          x: prev,
          m,
          ...dataPrediction(s),
          cx: t.sigma / s.sigma,
          cd: coeffs[0]!,
          history: coeffs.slice(1).map((c, j) => ({ d: history[history.length - 1 - j]!.d, c })),
          writeData: keepData,
          clipOut: i === steps ? clipOut : null,
        }),
      );
      x = res.out;
      chain.drop(prev, m);
      if (res.data) {
        history.push({ d: res.data, lambda: s.lambda });
        while (history.length > order - 1) chain.drop(history.shift()!.d);
      }
      epsNow = i < steps ? chain.step(() => eps(x, t.t)) : null;
    }
    for (const hh of history) chain.drop(hh.d);
    return x;
  });
}

/**
 * Coefficients of the newest data prediction d0 (at s) and the earlier ones d1, d2 (lambdas given oldest
 * first, the newest earlier one last) in a multistep DPM-Solver++ update of order o from s to t.
 */
function multistepCoefficients(o: number, s: VPPoint, t: VPPoint, lambdas: number[]): number[] {
  const h = t.lambda - s.lambda;
  const phi1 = Math.expm1(-h);
  const a = t.alpha;
  if (o === 1) return [-a * phi1];
  const l1 = lambdas[lambdas.length - 1]!;
  const r0 = (s.lambda - l1) / h;
  if (o === 2) return [-a * phi1 - (0.5 * a * phi1) / r0, (0.5 * a * phi1) / r0];
  const l2 = lambdas[lambdas.length - 2]!;
  const r1 = (l1 - l2) / h;
  const phi2 = phi1 / h + 1;
  const phi3 = phi2 / h - 0.5;
  // as combinations of [d0, d1, d2]
  const d10 = [1 / r0, -1 / r0, 0];
  const d11 = [0, 1 / r1, -1 / r1];
  const diff = d10.map((v, j) => v - d11[j]!);
  const D1 = d10.map((v, j) => v + (r0 / (r0 + r1)) * diff[j]!);
  const hSqSecond = diff.map((v) => (2 * v) / (r0 + r1));
  return [0, 1, 2].map((j) => (j === 0 ? -a * phi1 : 0) + a * phi2 * D1[j]! - a * phi3 * hSqSecond[j]!);
}

// ---- EDM ----

export interface EDMSampleOptions extends SampleOptions {
  /** Noise levels (default: the schedule's Karras sigmas); ignored when sigmas is given. */
  steps?: number;
  method?: 'euler' | 'heun';
  /** Decreasing noise levels, usually ending at 0 (then the result is the last clipped denoised estimate). */
  sigmas?: Float64Array;
  /** Clip the returned sample to +-maxAction (default true; ignored when maxAction is null). */
  clipOutput?: boolean;
}

/**
 * Karras et al.'s deterministic sampler: x = sigma_0 z, then per level dx/dsigma = (x - D(x; sigma))/sigma by
 * Euler, or Heun (a second denoiser call at the next level, skipped when that level is 0).
 */
export function edmSample(model: EDMDenoiser, cond: Tensor | null, opts: EDMSampleOptions): Tensor {
  checkCommon('edmSample', opts, cond);
  const method = opts.method ?? 'heun';
  if (method !== 'euler' && method !== 'heun') throw new Error(`edmSample: method must be 'euler' or 'heun', got ${String(method)}`);
  const sigmas = opts.sigmas ?? model.schedule.karrasSigmas(opts.steps ?? 18);
  if (sigmas.length < 2) throw new Error(`edmSample: need at least two noise levels, got ${sigmas.length}`);
  for (let i = 0; i < sigmas.length; i++) {
    const s = sigmas[i]!;
    const ok = i === sigmas.length - 1 ? s >= 0 && s < sigmas[i - 1]! : s > 0 && (i === 0 || s < sigmas[i - 1]!);
    if (!ok) throw new Error(`edmSample: sigmas must decrease strictly and stay positive until the last (>= 0); entry ${i} is ${s}`);
  }
  const clipOut = (opts.clipOutput ?? true) ? model.maxAction : null;
  const denoise = (x: Tensor, sigma: number) => checkModelOutput('edmSample', model.denoise(x, sigma, cond), x);
  const data = { pe: 0, qe: 1, clip: model.maxAction };
  return noGrad(() => {
    const chain = new Chain(false, opts.noise ?? null);
    let x = initialState(opts, sigmas[0]!);
    for (let i = 0; i + 1 < sigmas.length; i++) {
      const s = sigmas[i]!;
      const sn = sigmas[i + 1]!;
      const clipNow = i + 2 === sigmas.length ? clipOut : null;
      const prev = x;
      x = chain.step(() => {
        const D = denoise(prev, s);
        if (method === 'euler' || sn === 0) {
          return fusedUpdate({ x: prev, m: D, ...data, cx: sn / s, cd: 1 - sn / s, clipOut: clipNow }).out;
        }
        const euler = fusedUpdate({ x: prev, m: D, ...data, cx: sn / s, cd: 1 - sn / s, writeData: true });
        const D1 = denoise(euler.out, sn);
        const h = sn - s;
        return fusedUpdate({
          x: prev,
          m: D1,
          at: euler.out,
          ...data,
          cx: 1 + h / (2 * s),
          cxe: h / (2 * sn),
          cd: -h / (2 * sn),
          history: [{ d: euler.data!, c: -h / (2 * s) }],
          clipOut: clipNow,
        }).out;
      });
      chain.drop(prev);
    }
    return x;
  });
}

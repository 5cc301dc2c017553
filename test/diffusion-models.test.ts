// Diffusion models wired to a small linear noise network: every loss, the x0 estimate, the network calls of
// the samplers and the trust-region gradient, against float64 references that redraw the same time and noise
// from the same Philox position.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { allClose, freshSeed, gpu, gradCheck, randn, randu, rng } from './helpers.ts';
import { Generator } from '../engine/random.ts';
import { HostRng } from '../engine/host-rng.ts';
import { Linear, Module } from '../engine/nn.ts';
import { concat, reshape } from '../engine/ops/shape.ts';
import { scale } from '../engine/ops/elementwise.ts';
import { tensor, tidy, type Tensor } from '../engine/tensor.ts';
import { DiscreteSchedule, EDMSchedule, VPSDE } from '../algorithms/diffusion/schedules.ts';
import { noiseDiscrete, noiseEDM, noiseVPSDE, type NoisedBatch } from '../algorithms/diffusion/losses.ts';
import { DiscreteDiffusion, EDMDiffusion, VPSDEDiffusion, type NoiseNet } from '../algorithms/diffusion/models.ts';

const t = suite('diffusion-models');
t.before(gpu);

/** out = W [x, time * timeScale, cond] + b. */
class LinearNoiseNet extends Module implements NoiseNet {
  readonly lin: Linear;
  readonly timeScale: number;
  readonly dim: number;
  readonly condDim: number;

  constructor(dim: number, condDim: number, timeScale: number, seed: number) {
    super();
    this.dim = dim;
    this.condDim = condDim;
    this.timeScale = timeScale;
    this.lin = this.registerModule('lin', new Linear(dim + 1 + condDim, dim, { rng: new HostRng(seed) }));
  }

  forward(x: Tensor, time: Tensor, cond: Tensor | null): Tensor {
    const parts = [x, scale(reshape(time, [x.shape[0]!, 1]), this.timeScale)];
    if (cond) parts.push(cond);
    return this.lin.forward(concat(parts));
  }

  /** The same network in float64 on the host, from its current parameters. */
  async host(): Promise<(x: ArrayLike<number>, time: ArrayLike<number>, cond: ArrayLike<number> | null) => Float64Array> {
    const W = await this.lin.weight.read();
    const b = await this.lin.bias!.read();
    const { dim, condDim, timeScale } = this;
    const width = dim + 1 + condDim;
    return (x, time, cond) => {
      const rows = time.length;
      const out = new Float64Array(rows * dim);
      for (let r = 0; r < rows; r++) {
        const input = [...Array.from({ length: dim }, (_, d) => x[r * dim + d]!), time[r]! * timeScale];
        for (let s = 0; s < condDim; s++) input.push(cond![r * condDim + s]!);
        for (let j = 0; j < dim; j++) {
          let acc = b[j]!;
          for (let i = 0; i < width; i++) acc += W[j * width + i]! * input[i]!;
          out[r * dim + j] = acc;
        }
      }
      return out;
    };
  }
}

interface HostBatch {
  xt: Float32Array;
  noise: Float32Array;
  time: Float32Array;
  alpha: Float32Array;
  sigma: Float32Array;
}

/** The batch a model draws from Generator(seed) at counter 0 for these x0, read back. */
async function redraw(draw: (x0: Tensor, gen: Generator) => NoisedBatch, x0: Float32Array, rows: number, dim: number, seed: number): Promise<HostBatch> {
  const nb = draw(tensor(x0, [rows, dim]), new Generator(seed));
  const out = {
    xt: (await nb.xt.read()) as Float32Array,
    noise: (await nb.noise.read()) as Float32Array,
    time: (await nb.time.read()) as Float32Array,
    alpha: (await nb.alpha.read()) as Float32Array,
    sigma: (await nb.sigma.read()) as Float32Array,
  };
  for (const v of Object.values(nb)) (v as Tensor).dispose();
  return out;
}

const CASES: [number, number, number][] = [
  [1, 1, 0],
  [3, 2, 4],
  [257, 3, 0],
  [1023, 6, 4],
];

function meanSq(a: ArrayLike<number>, b: ArrayLike<number>, w: (i: number) => number = () => 1): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += w(i) * (a[i]! - b[i]!) ** 2;
  return s / a.length;
}

const scalar = async (f: () => Tensor): Promise<number> => (await tidy(f).read())[0]!;

/**
 * Absolute slack for comparing a float32 mean of squared residuals with its float64 value. Each residual is
 * a difference of float32 terms no larger than 1 + the largest |value| given, and can cancel far below them:
 * with one element the loss is that residual squared and a relative bound alone fails whenever it nearly
 * vanishes. Each residual may be off by 2e-6 times that size (about 16 rounding steps); `perRow` is the
 * number of residuals summed into each averaged term.
 */
function cancellationAtol(ref: number, perRow: number, ...values: (ArrayLike<number> | null)[]): number {
  let largest = 0;
  for (const v of values) if (v) for (let i = 0; i < v.length; i++) largest = Math.max(largest, Math.abs(v[i]!));
  const d = 2e-6 * (1 + largest);
  return 2 * d * Math.sqrt(perRow * Math.abs(ref)) + perRow * d * d;
}

t('DiscreteDiffusion: loss (with and without step weights) is the eps MSE at the drawn steps', async () => {
  const sched = DiscreteSchedule.scaledLinear(100);
  for (const [rows, dim, condDim] of CASES) {
    const seed = freshSeed();
    const r = rng(seed);
    const net = new LinearNoiseNet(dim, condDim, 0.01, seed);
    const model = new DiscreteDiffusion(net, sched, { maxAction: 1 });
    const x0 = randu(rows * dim, r, -1, 1);
    const cond = condDim ? randn(rows * condDim, r) : null;
    const weights = Float64Array.from({ length: 100 }, () => r());
    const condT = () => (cond ? tensor(cond, [rows, condDim]) : null);
    const loss = await scalar(() => model.loss(tensor(x0, [rows, dim]), condT(), new Generator(seed)));
    const weighted = await scalar(() => model.loss(tensor(x0, [rows, dim]), condT(), new Generator(seed), { stepWeights: weights }));
    const b = await redraw((x, g) => noiseDiscrete(x, sched, g), x0, rows, dim, seed);
    const eps = (await net.host())(b.xt, b.time, cond);
    const what = `[${rows}, ${dim}] cond ${condDim} seed ${seed}`;
    const plain = meanSq(eps, b.noise);
    allClose([loss], [plain], 2e-5, cancellationAtol(plain, 1, b.xt, b.noise, eps, cond), `loss ${what}`);
    // the step weights lie in [0, 1)
    const stepWeighted = meanSq(eps, b.noise, (i) => weights[b.time[Math.floor(i / dim)]!]!);
    allClose([weighted], [stepWeighted], 2e-5, cancellationAtol(plain, 1, b.xt, b.noise, eps, cond), `weighted loss ${what}`);
    net.parameters().forEach((p) => p.dispose());
  }
});

t('DiscreteDiffusion: action approximation (loss, clipped a0Hat, gradient through eps_theta)', async () => {
  const sched = DiscreteSchedule.vp(20);
  for (const [rows, dim, condDim] of [[1, 1, 2], [3, 2, 4], [257, 3, 3], [1023, 6, 1]] as [number, number, number][]) {
    for (const maxAction of [null, 1]) {
      const seed = freshSeed();
      const r = rng(seed);
      const net = new LinearNoiseNet(dim, condDim, 0.05, seed);
      const model = new DiscreteDiffusion(net, sched, { maxAction });
      const x0 = randu(rows * dim, r, -1, 1);
      const cond = randn(rows * condDim, r);
      const b = await redraw((x, g) => noiseDiscrete(x, sched, g), x0, rows, dim, seed);
      const host = await net.host();
      const a0 = (c: ArrayLike<number>) => {
        const eps = host(b.xt, b.time, c);
        return Array.from(eps, (e, i) => {
          const row = Math.floor(i / dim);
          const v = (b.xt[i]! - b.sigma[row]! * e) / b.alpha[row]!;
          return maxAction === null ? v : Math.min(maxAction, Math.max(-maxAction, v));
        });
      };
      const out = tidy(() => model.actionApproximation(tensor(x0, [rows, dim]), tensor(cond, [rows, condDim]), new Generator(seed)));
      const loss = await out.loss.read();
      const a0Hat = await out.a0Hat.read();
      out.loss.dispose();
      out.a0Hat.dispose();
      const what = `[${rows}, ${dim}] clip ${maxAction} seed ${seed}`;
      const epsHost = host(b.xt, b.time, cond);
      const want = meanSq(epsHost, b.noise);
      allClose(loss, [want], 2e-5, cancellationAtol(want, 1, b.xt, b.noise, epsHost, cond), `loss ${what}`);
      // dividing by alpha (down to ~0.08 here) magnifies f32 rounding of x_t - sigma eps
      allClose(a0Hat, a0(cond), 1e-4, 2e-5, `a0Hat ${what}`);
      if (rows <= 257) {
        await gradCheck(
          (c) => model.actionApproximation(tensor(x0, [rows, dim]), c, new Generator(seed)).a0Hat,
          (c) => a0(c),
          [{ data: cond, shape: [rows, condDim] }],
          { seed, what: `a0Hat d/d cond ${what}`, eps: 1e-6, rtol: 2e-3 },
        );
      }
      net.parameters().forEach((p) => p.dispose());
    }
  }
});

t('DiscreteDiffusion: eps at continuous t feeds the fractional step, epsAtStep the step', async () => {
  const N = 50;
  const sched = DiscreteSchedule.linear(N);
  const [rows, dim, condDim] = [5, 3, 2];
  const seed = freshSeed();
  const r = rng(seed);
  const net = new LinearNoiseNet(dim, condDim, 0.02, seed);
  const model = new DiscreteDiffusion(net, sched, { maxAction: null, logVarMode: 'edp' });
  assert.equal([...model.posteriorLogVariance], [...sched.posteriorLogVariance('edp')]);
  const x = randn(rows * dim, r);
  const cond = randn(rows * condDim, r);
  const host = await net.host();
  for (const [tt, expectTime] of [[sched.stepTime(7), 7], [sched.stepTime(0), 0], [0.4234, (0.4234 - 1 / N) * N]] as [number, number][]) {
    const out = await tidy(() => model.eps(tensor(x, [rows, dim]), tt, tensor(cond, [rows, condDim]))).read();
    allClose(out, host(x, new Array<number>(rows).fill(expectTime), cond), 1e-5, 1e-6, `eps at t ${tt}`);
  }
  const atStep = await tidy(() => model.epsAtStep(tensor(x, [rows, dim]), 31, tensor(cond, [rows, condDim]))).read();
  allClose(atStep, host(x, new Array<number>(rows).fill(31), cond), 1e-5, 1e-6, 'epsAtStep 31');
  assert.throws(() => tidy(() => model.epsAtStep(tensor(x, [rows, dim]), 50, null)), /outside/);
  net.parameters().forEach((p) => p.dispose());
});

t('VPSDEDiffusion: loss is the batch mean of the squared error summed over dims; eps at t', async () => {
  const sde = new VPSDE();
  for (const [rows, dim, condDim] of CASES) {
    const seed = freshSeed();
    const r = rng(seed);
    const net = new LinearNoiseNet(dim, condDim, 1, seed);
    const model = new VPSDEDiffusion(net, sde, { maxAction: 1 });
    const x0 = randu(rows * dim, r, -1, 1);
    const cond = condDim ? randn(rows * condDim, r) : null;
    const loss = await scalar(() => model.loss(tensor(x0, [rows, dim]), cond ? tensor(cond, [rows, condDim]) : null, new Generator(seed)));
    const b = await redraw((x, g) => noiseVPSDE(x, sde, g), x0, rows, dim, seed);
    const host = await net.host();
    for (let i = 0; i < rows; i++) assert.ok(b.time[i]! >= 1e-3 && b.time[i]! < 1, 't in [1e-3, 1)');
    const epsHost = host(b.xt, b.time, cond);
    const want = meanSq(epsHost, b.noise) * dim;
    allClose([loss], [want], 2e-5, cancellationAtol(want, dim, b.xt, b.noise, epsHost, cond), `loss [${rows}, ${dim}] seed ${seed}`);
    const out = await tidy(() => model.eps(tensor(x0, [rows, dim]), 0.3, cond ? tensor(cond, [rows, condDim]) : null)).read();
    allClose(out, host(x0, new Array<number>(rows).fill(0.3), cond), 1e-5, 1e-6, 'eps at t 0.3');
    net.parameters().forEach((p) => p.dispose());
  }
});

type HostNet = (x: ArrayLike<number>, time: ArrayLike<number>, cond: ArrayLike<number> | null) => Float64Array;

/** The EDM denoiser's output before any clip, in float64, for actions a and a drawn batch (sigma, z). */
function edmDenoisedHost(F: HostNet, a: ArrayLike<number>, b: HostBatch, cond: ArrayLike<number> | null, dim: number): Float64Array {
  const sd = 0.5;
  const xt = Array.from(a, (v, i) => v + b.sigma[Math.floor(i / dim)]! * b.noise[i]!);
  const cIn = Array.from(b.sigma, (s) => 1 / Math.sqrt(s * s + sd * sd));
  const netIn = xt.map((v, i) => v * cIn[Math.floor(i / dim)]!);
  const cNoise = Array.from(b.sigma, (s) => Math.log(s) / 4);
  const f = F(netIn, cNoise, cond);
  return Float64Array.from(xt, (v, i) => {
    const sg = b.sigma[Math.floor(i / dim)]!;
    return ((sd * sd) / (sg * sg + sd * sd)) * v + ((sg * sd) / Math.sqrt(sg * sg + sd * sd)) * f[i]!;
  });
}

/**
 * Slack for the EDM loss as for cancellationAtol, per element: the residual (D - a) / c_out is a difference
 * of terms of size (|c_skip x_t| + |c_out F| + |a|) / c_out, large when sigma is small.
 */
function edmCancellationAtol(F: HostNet, a: ArrayLike<number>, b: HostBatch, cond: ArrayLike<number> | null, dim: number, maxAction: number | null): number {
  const sd = 0.5;
  const xt = Array.from(a, (v, i) => v + b.sigma[Math.floor(i / dim)]! * b.noise[i]!);
  const f = F(xt.map((v, i) => v / Math.sqrt(b.sigma[Math.floor(i / dim)]! ** 2 + sd * sd)), Array.from(b.sigma, (s) => Math.log(s) / 4), cond);
  let atol = 0;
  for (let i = 0; i < xt.length; i++) {
    const sg = b.sigma[Math.floor(i / dim)]!;
    const cSkip = (sd * sd) / (sg * sg + sd * sd);
    const cOut = (sg * sd) / Math.sqrt(sg * sg + sd * sd);
    let D = cSkip * xt[i]! + cOut * f[i]!;
    if (maxAction !== null) D = Math.min(maxAction, Math.max(-maxAction, D));
    const e = Math.abs((D - a[i]!) / cOut);
    const d = (2e-6 * (Math.abs(cSkip * xt[i]!) + Math.abs(cOut * f[i]!) + Math.abs(a[i]!))) / cOut;
    atol += (2 * e * d + d * d) / xt.length;
  }
  return atol;
}

/** EDM loss in float64 for actions a and a drawn batch (sigma, z), with the network F. */
function edmHost(F: HostNet, a: ArrayLike<number>, b: HostBatch, cond: ArrayLike<number> | null, dim: number, maxAction: number | null): number {
  const sd = 0.5;
  const rows = b.sigma.length;
  const denoised = edmDenoisedHost(F, a, b, cond, dim);
  let s = 0;
  for (let i = 0; i < rows * dim; i++) {
    const sg = b.sigma[Math.floor(i / dim)]!;
    const cOut = (sg * sd) / Math.sqrt(sg * sg + sd * sd);
    let D = denoised[i]!;
    if (maxAction !== null) D = Math.min(maxAction, Math.max(-maxAction, D));
    s += ((D - a[i]!) / cOut) ** 2;
  }
  return s / (rows * dim);
}

t('EDMDiffusion: loss, denoiser and the trust-region gradient into the actions', async () => {
  const edm = new EDMSchedule();
  for (const [rows, dim, condDim] of CASES) {
    for (const maxAction of [null, 1]) {
      const seed = freshSeed();
      const r = rng(seed);
      const net = new LinearNoiseNet(dim, condDim, 1, seed);
      const model = new EDMDiffusion(net, edm, { maxAction });
      const x0 = randu(rows * dim, r, -1, 1);
      const cond = condDim ? randn(rows * condDim, r) : null;
      const condT = () => (cond ? tensor(cond, [rows, condDim]) : null);
      const host = await net.host();
      const b = await redraw((x, g) => noiseEDM(x, edm, g), x0, rows, dim, seed);
      // The finite-difference check below fails when a probe (1e-6) moves a denoised value across the clip, or
      // when float32 and float64 put one on different sides of it; rows with a denoised value within 1e-3 of
      // the clip get new actions (the drawn sigma and noise do not depend on them).
      for (let pass = 0; maxAction !== null; pass++) {
        const denoised = edmDenoisedHost(host, x0, b, cond, dim);
        const near = [...Array(rows).keys()].filter((row) => denoised.subarray(row * dim, (row + 1) * dim).some((v) => Math.abs(Math.abs(v) - maxAction) < 1e-3));
        if (near.length === 0) break;
        assert.ok(pass < 50, 'denoised values keep landing on the clip');
        for (const row of near) x0.set(randu(dim, r, -1, 1), row * dim);
      }
      const what = `[${rows}, ${dim}] clip ${maxAction} seed ${seed}`;
      const loss = await scalar(() => model.loss(tensor(x0, [rows, dim]), condT(), new Generator(seed)));
      const tr = await scalar(() => model.trustRegionLoss(tensor(x0, [rows, dim]), condT(), new Generator(seed)));
      const ref = edmHost(host, x0, b, cond, dim, maxAction);
      const atol = edmCancellationAtol(host, x0, b, cond, dim, maxAction);
      allClose([loss], [ref], 1e-4, atol, `loss ${what}`);
      allClose([tr], [ref], 1e-4, atol, `trust-region loss ${what}`);
      // denoiser at a fixed sigma
      const sigma = 0.7;
      const c = edm.precondition(sigma);
      const x = randn(rows * dim, r);
      const f = host(x.map((v) => v * c.cIn), new Array<number>(rows).fill(c.cNoise), cond);
      const Dref = Array.from(f, (fv, i) => {
        const v = c.cSkip * x[i]! + c.cOut * fv;
        return maxAction === null ? v : Math.min(maxAction, Math.max(-maxAction, v));
      });
      const D = await tidy(() => model.denoise(tensor(x, [rows, dim]), sigma, condT())).read();
      allClose(D, Dref, 1e-5, 1e-6, `denoise ${what}`);
      if (rows <= 257) {
        await gradCheck(
          (a) => model.trustRegionLoss(a, condT(), new Generator(seed)),
          (a) => [edmHost(host, a, b, cond, dim, maxAction)],
          [{ data: x0, shape: [rows, dim] }],
          { seed, what: `trust-region d/d a ${what}`, eps: 1e-6, rtol: 2e-3 },
        );
      }
      net.parameters().forEach((p) => p.dispose());
    }
  }
});

t('bad arguments are clear errors', () => {
  const net = new LinearNoiseNet(2, 0, 1, 1);
  assert.throws(() => new DiscreteDiffusion(net, DiscreteSchedule.linear(10), { maxAction: 0 }), /maxAction/);
  const model = new DiscreteDiffusion(net, DiscreteSchedule.linear(10), { maxAction: null });
  tidy(() => {
    assert.throws(() => model.loss(tensor([1, 2], [2]), null, new Generator(1)), /x must be \[B, D\]/);
    assert.throws(() => model.loss(tensor([1, 2], [1, 2]), tensor([1, 2], [2, 1]), new Generator(1)), /cond must be \[1, S\]/);
    assert.throws(() => model.loss(tensor([1, 2], [1, 2]), null, new Generator(1), { stepWeights: new Float64Array(3) }), /3 step weights/);
    const edm = new EDMDiffusion(net, new EDMSchedule(), { maxAction: 1 });
    assert.throws(() => edm.denoise(tensor([1, 2], [1, 2]), 0, null), /sigma must be positive/);
  });
  net.parameters().forEach((p) => p.dispose());
});

t.run();

// Noise schedules against values computed here from the papers' formulas (written independently of the
// implementation: plain products instead of log sums, closed forms instead of tables) and a few literals.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { DiscreteSchedule, EDMSchedule, VPSDE, type VPSchedule } from '../algorithms/diffusion/schedules.ts';
import { allClose } from './helpers.ts';

const t = suite('schedules');

function close(a: number, b: number, rtol: number, what: string, atol = 0): void {
  assert.ok(Math.abs(a - b) <= atol + rtol * Math.abs(b), `${what}: ${a} vs ${b}`);
}

/** alphaBar, posterior coefficients and variance from betas by the textbook formulas. */
function naiveTables(betas: ArrayLike<number>) {
  const T = betas.length;
  const alphaBar: number[] = [];
  let prod = 1;
  for (let k = 0; k < T; k++) {
    prod *= 1 - betas[k]!;
    alphaBar.push(prod);
  }
  const c1: number[] = [];
  const c2: number[] = [];
  const v: number[] = [];
  for (let k = 0; k < T; k++) {
    const prev = k === 0 ? 1 : alphaBar[k - 1]!;
    c1.push((betas[k]! * Math.sqrt(prev)) / (1 - alphaBar[k]!));
    c2.push(((1 - prev) * Math.sqrt(1 - betas[k]!)) / (1 - alphaBar[k]!));
    v.push((betas[k]! * (1 - prev)) / (1 - alphaBar[k]!));
  }
  return { alphaBar, c1, c2, v };
}

t('scaled linear (EDP default): literal end points and linear spacing', () => {
  const s = DiscreteSchedule.scaledLinear(100);
  assert.is(s.steps, 100);
  close(s.betas[0]!, 1e-3, 1e-12, 'beta_0');
  close(s.betas[99]!, 0.2, 1e-12, 'beta_99');
  close(s.betas[50]! - s.betas[49]!, (0.2 - 1e-3) / 99, 1e-9, 'spacing');
  const s1000 = DiscreteSchedule.scaledLinear(1000);
  close(s1000.betas[0]!, 1e-4, 1e-12, 'T=1000 beta_0');
  close(s1000.betas[999]!, 0.02, 1e-12, 'T=1000 beta_999');
});

t('linear and SDAC betas', () => {
  for (const T of [1, 5, 100]) {
    const s = DiscreteSchedule.linear(T);
    close(s.betas[0]!, 1e-4, 1e-12, 'linear beta_0');
    if (T > 1) close(s.betas[T - 1]!, 0.02, 1e-12, 'linear last beta');
  }
  const sdac = DiscreteSchedule.sdac(20);
  close(sdac.betas[0]!, 0.8e-4, 1e-12, 'sdac beta_0');
  close(sdac.betas[19]!, 0.8 * 0.999, 1e-12, 'sdac beta_19');
  close(sdac.betas[7]!, 0.8 * (1e-4 + (7 * (0.999 - 1e-4)) / 19), 1e-12, 'sdac beta_7');
  close(DiscreteSchedule.sdac(20, 0.3).betas[19]!, 0.3 * 0.999, 1e-12, 'sdac scale 0.3');
});

t('vp (Diffusion-QL): betas from alpha_t = exp(-bmin/T - (bmax-bmin)(2t-1)/(2T^2))', () => {
  for (const T of [1, 5, 100]) {
    const s = DiscreteSchedule.vp(T);
    for (let i = 0; i < T; i++) {
      const tt = i + 1;
      const alpha = Math.exp(-0.1 / T - (0.5 * (10 - 0.1) * (2 * tt - 1)) / (T * T));
      close(s.betas[i]!, 1 - alpha, 1e-9, `vp(${T}) beta_${i}`);
      close(s.alphas[i]!, alpha, 1e-12, `vp(${T}) alpha_${i}`);
    }
  }
  // log alphaBar_{T-1} = -(bmin + (bmax - bmin)/2): the chain ends at the VP-SDE's alpha(1)^2 with b0 .1, b1 10
  const s = DiscreteSchedule.vp(50);
  close(Math.log(s.alphaBars[49]!), -(0.1 + 9.9 / 2), 1e-9, 'vp log alphaBar_T');
});

t('cosine: alphaBar follows cos^2((u + s)/(1 + s) pi/2) normalised, betas clipped at 0.999', () => {
  const T = 50;
  const s = DiscreteSchedule.cosine(T);
  const f = (u: number) => Math.cos(((u + 0.008) / 1.008) * (Math.PI / 2)) ** 2;
  for (let k = 0; k < T - 1; k++) close(s.alphaBars[k]!, f((k + 1) / T) / f(0), 1e-9, `cosine alphaBar_${k}`);
  close(s.betas[T - 1]!, 0.999, 1e-12, 'last beta clipped');
  for (let k = 0; k < T; k++) assert.ok(s.betas[k]! <= 0.999 && s.betas[k]! > 0, `beta_${k} in (0, 0.999]`);
});

t('tables: cumulative products, square roots and posterior terms', () => {
  for (const s of [DiscreteSchedule.vp(7), DiscreteSchedule.scaledLinear(100), DiscreteSchedule.cosine(20), DiscreteSchedule.sdac(20)]) {
    const ref = naiveTables(s.betas);
    allClose(s.alphaBars, ref.alphaBar, 1e-10, 0, 'alphaBar');
    allClose(s.sqrtAlphaBars, ref.alphaBar.map(Math.sqrt), 1e-10, 0, 'sqrt alphaBar');
    allClose(s.sqrtOneMinusAlphaBars, ref.alphaBar.map((a) => Math.sqrt(1 - a)), 1e-9, 0, 'sqrt(1 - alphaBar)');
    allClose(s.posteriorMeanCoef1, ref.c1, 1e-9, 0, 'posterior coef1');
    allClose(s.posteriorMeanCoef2, ref.c2, 1e-9, 0, 'posterior coef2');
    allClose(s.posteriorVariance, ref.v, 1e-9, 1e-300, 'posterior variance');
    assert.is(s.posteriorVariance[0], 0);
    // the posterior mean of a consistent pair: x_k = sqrt(aBar_k) x0 with no noise gives sqrt(aBar_{k-1}) x0
    for (let k = 1; k < s.steps; k++) {
      const mean = s.posteriorMeanCoef1[k]! + s.posteriorMeanCoef2[k]! * s.sqrtAlphaBars[k]!;
      close(mean, s.sqrtAlphaBars[k - 1]!, 1e-9, `posterior mean at step ${k}`);
    }
  }
});

t('posterior log variance: dql clamps at 1e-20, edp repeats entry 1', () => {
  const s = DiscreteSchedule.scaledLinear(25);
  const dql = s.posteriorLogVariance('dql');
  const edp = s.posteriorLogVariance('edp');
  close(dql[0]!, Math.log(1e-20), 1e-12, 'dql entry 0');
  close(edp[0]!, Math.log(s.posteriorVariance[1]!), 1e-12, 'edp entry 0');
  for (let k = 1; k < 25; k++) {
    close(dql[k]!, Math.log(s.posteriorVariance[k]!), 1e-12, `dql ${k}`);
    assert.is(edp[k], dql[k]);
  }
  assert.throws(() => s.posteriorLogVariance('x' as 'dql'), /mode/);
});

function checkVPConsistency(s: VPSchedule, ts: number[], what: string): void {
  for (const tt of ts) {
    const la = s.marginalLogMeanCoeff(tt);
    const sd = s.marginalStd(tt);
    close(Math.exp(2 * la) + sd * sd, 1, 1e-12, `${what}: alpha^2 + sigma^2 at ${tt}`);
    close(s.marginalLambda(tt), la - Math.log(sd), 1e-9, `${what}: lambda at ${tt}`, 1e-12);
    close(s.inverseLambda(s.marginalLambda(tt)), tt, 1e-8, `${what}: inverseLambda at ${tt}`, 1e-12);
  }
  for (let i = 1; i < ts.length; i++) {
    assert.ok(s.marginalLambda(ts[i]!) < s.marginalLambda(ts[i - 1]!), `${what}: lambda decreasing`);
  }
}

t('discrete schedule as DPM-Solver sees it: t_k = (k+1)/N, log alpha linear between steps', () => {
  const N = 100;
  const s = DiscreteSchedule.scaledLinear(N);
  assert.is(s.tEndDefault, 1 / N);
  for (const k of [0, 1, 37, 98, 99]) {
    const tk = (k + 1) / N;
    close(s.marginalLogMeanCoeff(tk), 0.5 * Math.log(s.alphaBars[k]!), 1e-12, `log alpha at t_${k}`);
    close(s.networkTime(tk), k, 1e-9, `network time at t_${k}`, 1e-9);
  }
  // halfway between t_36 and t_37
  const mid = 0.5 * (0.37 + 0.38);
  close(s.marginalLogMeanCoeff(mid), 0.25 * (Math.log(s.alphaBars[36]!) + Math.log(s.alphaBars[37]!)), 1e-12, 'midpoint');
  close(s.networkTime(mid), 36.5, 1e-9, 'fractional step');
  checkVPConsistency(s, [0.01, 0.0137, 0.2, 0.5, 0.77, 0.999, 1], 'discrete');
  const fine = DiscreteSchedule.linear(1000);
  checkVPConsistency(fine, [0.001, 0.0015, 0.3, 1], 'discrete T=1000');
  assert.throws(() => s.marginalStd(0.001), /outside/);
});

t('VP-SDE: closed forms, literal values at t = 1', () => {
  const s = new VPSDE();
  assert.is(s.networkTime(0.3), 0.3);
  assert.is(s.tEndDefault, 1e-3);
  // log alpha = -1/2 int_0^t beta(u) du with beta(u) = 0.1 + 19.9 u
  for (const tt of [1e-3, 0.1, 0.5, 1]) {
    const la = -0.5 * (0.1 * tt + (19.9 * tt * tt) / 2);
    close(s.marginalLogMeanCoeff(tt), la, 1e-12, `log alpha ${tt}`);
    close(s.alpha(tt), Math.exp(la), 1e-12, `alpha ${tt}`);
    close(s.sigma(tt), Math.sqrt(1 - Math.exp(2 * la)), 1e-9, `sigma ${tt}`);
  }
  close(s.marginalLogMeanCoeff(1), -5.025, 1e-12, 'log alpha(1) literal');
  // small t: sigma^2 ~ beta0 t, where 1 - exp(...) would cancel
  close(s.sigma(1e-7) ** 2, 0.1 * 1e-7, 1e-5, 'sigma^2 at tiny t');
  checkVPConsistency(s, [1e-3, 0.01, 0.25, 0.5, 0.9, 1], 'vpsde');
  checkVPConsistency(new VPSDE(0.1, 10), [1e-3, 0.5, 1], 'vpsde b1 10');
  checkVPConsistency(new VPSDE(1, 1), [1e-3, 0.5, 1], 'vpsde constant beta');
});

t('EDM: preconditioning, Karras sigmas, training sigma distribution', () => {
  const e = new EDMSchedule();
  assert.is(e.sigmaData, 0.5);
  assert.is(e.sigmaMin, 0.002);
  assert.is(e.sigmaMax, 80);
  assert.is(e.rho, 7);
  for (const sigma of [0.002, 0.1, 0.5, 3, 80]) {
    const c = e.precondition(sigma);
    const d2 = sigma * sigma + 0.25;
    close(c.cSkip, 0.25 / d2, 1e-12, 'cSkip');
    close(c.cOut, (sigma * 0.5) / Math.sqrt(d2), 1e-12, 'cOut');
    close(c.cIn, 1 / Math.sqrt(d2), 1e-12, 'cIn');
    close(c.cNoise, Math.log(sigma) / 4, 1e-12, 'cNoise', 1e-15);
    // unit-variance training target: cSkip^2 sd^2 ... EDM's identity cSkip * sigma^2 + ... reduces to
    close(c.cSkip + (c.cOut * c.cOut) / (0.5 * 0.5), 1, 1e-12, 'cSkip + cOut^2/sd^2');
  }
  const sig = e.karrasSigmas(5);
  assert.is(sig.length, 6);
  close(sig[0]!, 80, 1e-12, 'first sigma');
  close(sig[4]!, 0.002, 1e-12, 'last sigma');
  assert.is(sig[5], 0);
  const r = (80 ** (1 / 7) + 0.5 * (0.002 ** (1 / 7) - 80 ** (1 / 7))) ** 7;
  close(sig[2]!, r, 1e-12, 'middle sigma');
  for (let i = 1; i < 5; i++) assert.ok(sig[i]! < sig[i - 1]!, 'decreasing');
  const one = e.karrasSigmas(1);
  assert.equal([...one], [80, 0]);
  // training distribution: inverse CDF of the truncated log-logistic, CDF round trip, median near sigmaData
  const cdf = (x: number) => 1 / (1 + Math.exp(-(Math.log(x) - Math.log(0.5)) / 0.5));
  const lo = cdf(0.002);
  const hi = cdf(80);
  for (const u of [1e-6, 0.1, 0.5, 0.9, 1 - 1e-6]) {
    const sigma = e.trainingSigma(u);
    close((cdf(sigma) - lo) / (hi - lo), u, 1e-7, `training sigma cdf at ${u}`, 1e-9);
    close(e.trainingSigmaCdf(sigma), u, 1e-7, `trainingSigmaCdf at ${u}`, 1e-9);
  }
  close(e.trainingSigma(0), 0.002, 1e-7, 'u = 0 gives sigmaMin');
  close(e.trainingSigma(1), 80, 1e-6, 'u = 1 gives sigmaMax');
  close(e.trainingSigma(0.5), 0.5, 1e-3, 'median');
  const custom = new EDMSchedule({ sigmaData: 1, sigmaMin: 0.01, sigmaMax: 10, rho: 3 });
  close(custom.karrasSigmas(3)[1]!, ((10 ** (1 / 3) + 0.01 ** (1 / 3)) / 2) ** 3, 1e-12, 'custom rho');
  close(custom.precondition(1).cSkip, 0.5, 1e-12, 'custom cSkip');
});

t('bad arguments are errors', () => {
  assert.throws(() => DiscreteSchedule.linear(0), /positive integer/);
  assert.throws(() => DiscreteSchedule.scaledLinear(10), /beta 5/); // s = 100 pushes betas past 1
  assert.throws(() => new DiscreteSchedule(Float64Array.of(0.1, 1)), /beta 1/);
  assert.throws(() => new VPSDE(2, 1), /beta0/);
  assert.throws(() => new EDMSchedule({ sigmaMin: 5, sigmaMax: 1 }), /sigmaMin/);
  assert.throws(() => new EDMSchedule().karrasSigmas(0), /positive/);
});

t.run();

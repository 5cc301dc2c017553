// SRPO: the fused surrogate loss against float64, its gradient by finite differences, and the three phases on
// tiny settings (losses fall, gradients finite, resume reproduces the uninterrupted run), the toy bandit.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { allClose, freshSeed, gpu, gradCheck, poisonNext, randn, randu, rng } from './helpers.ts';
import { backward } from '../engine/autograd.ts';
import { tensor, tidy, type Tensor } from '../engine/tensor.ts';
import { srpoSurrogateLoss, SRPO_LOSS_CHUNK, type SrpoWeighting } from '../algorithms/srpo/loss.ts';
import { VPSDE } from '../algorithms/diffusion/schedules.ts';

const t = suite('srpo');
t.before(gpu);

interface LossCase {
  rows: number;
  dim: number;
  a: Float32Array;
  eps: Float32Array;
  z: Float32Array;
  g: Float32Array;
  alpha: Float32Array;
  sigma: Float32Array;
}

function lossCase(rows: number, dim: number, r: () => number): LossCase {
  const sde = new VPSDE();
  const times = randu(rows, r, 0.02, 0.98);
  return {
    rows,
    dim,
    a: randu(rows * dim, r, -1, 1),
    eps: randn(rows * dim, r),
    z: randn(rows * dim, r),
    g: randn(rows * dim, r, 3),
    alpha: Float32Array.from(times, (tt) => sde.alpha(tt)),
    sigma: Float32Array.from(times, (tt) => sde.sigma(tt)),
  };
}

/** float64 reference: [loss, score term, guide term] and the per-element gradient. */
function lossRef(c: LossCase, a: ArrayLike<number>, beta: number, weighting: SrpoWeighting, baseline: boolean, normalize: boolean) {
  let loss = 0;
  let score = 0;
  let guide = 0;
  const grad = new Float64Array(c.rows * c.dim);
  for (let b = 0; b < c.rows; b++) {
    const s = c.sigma[b]!;
    const w = weighting === 'VDS' ? s * s : weighting === 'stable' ? 1 : c.alpha[b]! / s;
    let sq = 0;
    for (let d = 0; d < c.dim; d++) sq += c.g[b * c.dim + d]! ** 2;
    const inv = normalize ? 1 / Math.sqrt(sq / c.dim) : 1;
    let ea = 0;
    let ga = 0;
    for (let d = 0; d < c.dim; d++) {
      const i = b * c.dim + d;
      const e = c.eps[i]! - (baseline ? c.z[i]! : 0);
      const gq = c.g[i]! * inv;
      ea += e * a[i]!;
      ga += gq * a[i]!;
      grad[i] = (w * e - beta * gq) / c.rows;
    }
    loss += w * ea - beta * ga;
    score += w * ea;
    guide += ga;
  }
  return { values: [loss / c.rows, score / c.rows, guide / c.rows], grad };
}

function upload(c: LossCase) {
  return {
    a: tensor(c.a, [c.rows, c.dim]),
    eps: tensor(c.eps, [c.rows, c.dim]),
    z: tensor(c.z, [c.rows, c.dim]),
    g: tensor(c.g, [c.rows, c.dim]),
    alpha: tensor(c.alpha, [c.rows]),
    sigma: tensor(c.sigma, [c.rows]),
  };
}

t('fused surrogate loss, terms and gradient match float64 for every weighting, baseline and normalisation', async () => {
  const seed = freshSeed();
  const r = rng(seed);
  const shapes: [number, number][] = [[1, 1], [3, 2], [17, 6], [256, 3], [257, 1], [1023, 17], [SRPO_LOSS_CHUNK + 5, 2]];
  let k = 0;
  for (const [rows, dim] of shapes) {
    for (const weighting of ['VDS', 'stable', 'score'] as const) {
      const baseline = k % 2 === 1;
      const normalize = k % 3 === 2;
      k++;
      const c = lossCase(rows, dim, r);
      const beta = 0.05 + r();
      const ref = lossRef(c, c.a, beta, weighting, baseline, normalize);
      const g = upload(c);
      g.a.requiresGrad = true;
      poisonNext([rows, dim]);
      const out = srpoSurrogateLoss(g.a, g.eps, g.g, g.alpha, g.sigma, { beta, weighting, noise: baseline ? g.z : null, normalizeQGrad: normalize });
      const what = `seed ${seed} [${rows}, ${dim}] ${weighting} baseline ${baseline} normalize ${normalize}`;
      backward(out.loss);
      const loss = await out.loss.read();
      const terms = await out.terms.read();
      allClose([loss[0]!, terms[0]!, terms[1]!], ref.values, 1e-4, 1e-5, `${what}: loss and terms`);
      allClose(await g.a.grad!.read(), ref.grad, 1e-4, 1e-7, `${what}: d loss / d a`);
      out.loss.dispose();
      out.terms.dispose();
      g.a.grad!.dispose();
      for (const x of Object.values(g)) x.dispose();
    }
  }
});

t('surrogate loss gradient passes gradCheck (finite differences of the float64 reference)', async () => {
  const seed = freshSeed();
  const r = rng(seed);
  for (const [rows, dim, weighting, baseline, normalize] of [
    [5, 3, 'VDS', false, false],
    [9, 2, 'score', true, true],
  ] as const) {
    const c = lossCase(rows, dim, r);
    const g = upload(c);
    const beta = 0.3;
    await gradCheck(
      (a: Tensor) => srpoSurrogateLoss(a, g.eps, g.g, g.alpha, g.sigma, { beta, weighting, noise: baseline ? g.z : null, normalizeQGrad: normalize }).loss,
      (a: Float64Array) => [lossRef(c, a, beta, weighting, baseline, normalize).values[0]!],
      [{ data: c.a, shape: [rows, dim] }],
      { seed, what: `seed ${seed} ${weighting}` },
    );
    for (const x of Object.values(g)) x.dispose();
  }
});

t('surrogate loss rejects mismatched shapes with the op name', () => {
  tidy(() => {
    const a = tensor(new Float32Array(6), [3, 2]);
    const bad = tensor(new Float32Array(4), [2, 2]);
    const rowsT = tensor(new Float32Array(3), [3]);
    assert.throws(() => srpoSurrogateLoss(a, bad, a, rowsT, rowsT, { beta: 1 }), /srpoSurrogateLoss: eps must be f32 \[3, 2\]/);
    assert.throws(() => srpoSurrogateLoss(a, a, a, bad, rowsT, { beta: 1 }), /alpha must be f32 \[3\]/);
  });
});

t.run();

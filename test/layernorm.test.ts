import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { gpu, poison, randn, rng, freshSeed, allClose, gradCheck, poisonNext } from './helpers.ts';
import { empty, tensor, tidy, type Tensor } from '../engine/tensor.ts';
import { runtime } from '../engine/runtime.ts';
import { backward } from '../engine/autograd.ts';
import { layerNorm } from '../engine/ops/layernorm.ts';
import { reduceTuning } from '../engine/ops/reduce.ts';

const t = suite('layernorm');
t.before(gpu);
t.after.each(() => {
  reduceTuning.rowThreads = 'auto';
});


/** float64 layer norm over rows of length cols. */
function refLayerNorm(x: ArrayLike<number>, cols: number, gamma: ArrayLike<number> | null, beta: ArrayLike<number> | null, eps = 1e-5): number[] {
  const out: number[] = [];
  for (let base = 0; base < x.length; base += cols) {
    let mu = 0;
    for (let c = 0; c < cols; c++) mu += x[base + c]!;
    mu /= cols;
    let v = 0;
    for (let c = 0; c < cols; c++) v += (x[base + c]! - mu) ** 2;
    const r = 1 / Math.sqrt(v / cols + eps);
    for (let c = 0; c < cols; c++) out.push((x[base + c]! - mu) * r * (gamma ? gamma[c]! : 1) + (beta ? beta[c]! : 0));
  }
  return out;
}

/**
 * float64 gradients of sum(layerNorm(x) * g) by the closed form (checked against finite differences
 * separately), for shapes too large to difference element by element.
 */
function refLayerNormGrads(x: ArrayLike<number>, cols: number, gamma: ArrayLike<number>, g: ArrayLike<number>, eps = 1e-5) {
  const dx: number[] = [];
  const dgamma = new Float64Array(cols);
  const dbeta = new Float64Array(cols);
  const rstd: number[] = [];
  for (let base = 0; base < x.length; base += cols) {
    let mu = 0;
    for (let c = 0; c < cols; c++) mu += x[base + c]!;
    mu /= cols;
    let v = 0;
    for (let c = 0; c < cols; c++) v += (x[base + c]! - mu) ** 2;
    const r = 1 / Math.sqrt(v / cols + eps);
    rstd.push(r);
    let m1 = 0;
    let m2 = 0;
    for (let c = 0; c < cols; c++) {
      const xh = (x[base + c]! - mu) * r;
      const gh = g[base + c]! * gamma[c]!;
      m1 += gh / cols;
      m2 += (gh * xh) / cols;
      dgamma[c] = dgamma[c]! + g[base + c]! * xh;
      dbeta[c] = dbeta[c]! + g[base + c]!;
    }
    for (let c = 0; c < cols; c++) {
      const xh = (x[base + c]! - mu) * r;
      dx.push(r * (g[base + c]! * gamma[c]! - m1 - xh * m2));
    }
  }
  return { dx, dgamma: Array.from(dgamma), dbeta: Array.from(dbeta), rstd };
}

const ROWS = [1, 3, 17, 255, 257, 1023];
const COLS = [1, 3, 17, 256, 1023];

t('forward matches float64 over awkward shapes, both row strategies, with and without affine parameters', async () => {
  const r = rng(freshSeed());
  for (const rows of ROWS) {
    for (const cols of COLS) {
      // a large common offset checks that the variance is taken about the mean, not as E[x^2] - E[x]^2
      const offset = (rows + cols) % 2 === 0 ? 0 : 300;
      const data = randn(rows * cols, r, 2).map((v) => v + offset);
      const gData = randn(cols, r);
      const bData = randn(cols, r);
      const x = tensor(data, [rows, cols]);
      const gamma = tensor(gData, [cols]);
      const beta = tensor(bData, [cols]);
      const strategies = rows <= 257 || cols <= 17 ? [1, 64] : [1];
      for (const threads of strategies) {
        reduceTuning.rowThreads = threads;
        const variants: [Tensor | null, Tensor | null][] = threads === 1 ? [[gamma, beta], [null, null], [gamma, null], [null, beta]] : [[gamma, beta]];
        for (const [gm, bt] of variants) {
          poisonNext([rows, cols]);
          const y = layerNorm(x, gm, bt);
          const got = (await y.read()) as Float32Array;
          y.dispose();
          const ref = refLayerNorm(data, cols, gm ? gData : null, bt ? bData : null);
          // outputs are O(10) sums of xhat * gamma and beta; at offset 300 the input is only known to ulp(300) / std
          const atol = offset ? 1e-4 : 2e-5;
          allClose(got, ref, 2e-5, atol, `layerNorm [${rows}, ${cols}] threads ${threads} gamma ${!!gm} beta ${!!bt} offset ${offset}`);
        }
      }
      x.dispose();
      gamma.dispose();
      beta.dispose();
    }
  }
});

t('eps and higher-rank inputs', async () => {
  const r = rng(freshSeed());
  const data = randn(2 * 3 * 8, r, 1e-3);
  const x = tensor(data, [2, 3, 8]);
  for (const eps of [1e-5, 0.1]) {
    const y = layerNorm(x, null, null, eps);
    assert.equal([...y.shape], [2, 3, 8]);
    allClose((await y.read()) as Float32Array, refLayerNorm(data, 8, null, null, eps), 1e-4, 1e-5, `eps ${eps}`);
    y.dispose();
  }
  // a constant row normalises to beta without NaN
  const c = tensor(new Float32Array(8).fill(7), [1, 8]);
  const beta = tensor([...Array(8).keys()], [8]);
  const yc = layerNorm(c, null, beta);
  assert.equal(Array.from(await yc.read()), [...Array(8).keys()]);
  yc.dispose();
  tidy(() => {
    assert.throws(() => layerNorm(x, tensor([1, 2], [2]), null), /layerNorm: gamma must be an f32 tensor of shape \[8\] for x \[2,3,8\], got f32 \[2\]/);
    assert.throws(() => layerNorm(empty([3, 0]), null, null), /layerNorm: the last axis of \[3,0\] is empty/);
  });
  x.dispose();
  c.dispose();
  beta.dispose();
});

t('backward passes a finite-difference check for x, gamma and beta', async () => {
  const r = rng(freshSeed());
  for (const threads of [1, 64]) {
    reduceTuning.rowThreads = threads;
    for (const [rows, cols] of [[1, 3], [3, 17], [17, 5], [4, 256]] as const) {
      const what = `[${rows}, ${cols}] threads ${threads}`;
      const xIn = () => ({ data: randn(rows * cols, r), shape: [rows, cols] });
      const pIn = () => ({ data: randn(cols, r), shape: [cols] });
      await gradCheck((x, g, b) => layerNorm(x, g, b), (x, g, b) => refLayerNorm(x, cols, g, b), [xIn(), pIn(), pIn()], { what: `affine ${what}` });
      await gradCheck((x) => layerNorm(x, null, null), (x) => refLayerNorm(x, cols, null, null), [xIn()], { what: `plain ${what}` });
      await gradCheck((x, g) => layerNorm(x, g, null), (x, g) => refLayerNorm(x, cols, g, null), [xIn(), pIn()], { what: `gamma only ${what}` });
      await gradCheck((x, b) => layerNorm(x, null, b, 0.01), (x, b) => refLayerNorm(x, cols, null, b, 0.01), [xIn(), pIn()], { what: `beta only ${what}` });
    }
  }
});

t('backward over many rows: chunked parameter gradients and every dx element', async () => {
  const r = rng(freshSeed());
  for (const [rows, cols] of [[1023, 17], [257, 256], [4000, 3]] as const) {
    const xData = randn(rows * cols, r);
    const gmData = randn(cols, r);
    const gData = randn(rows * cols, r);
    const x = tensor(xData, [rows, cols]);
    const gamma = tensor(gmData, [cols]);
    const beta = tensor(randn(cols, r), [cols]);
    for (const t of [x, gamma, beta]) t.requiresGrad = true;
    poisonNext([rows, cols]);
    poisonNext([cols]);
    tidy(() => backward(layerNorm(x, gamma, beta), tensor(gData, [rows, cols])));
    const ref = refLayerNormGrads(xData, cols, gmData, gData);
    const what = `[${rows}, ${cols}]`;
    // dx = rstd * (a difference of O(|g * gamma|) terms): compare each row on that scale
    const dx = (await x.grad!.read()) as Float32Array;
    for (let row = 0; row < rows; row++) {
      const span = (a: ArrayLike<number>) => Array.from({ length: cols }, (_, c) => a[row * cols + c]!);
      const scaleRow = ref.rstd[row]! * Math.max(1, ...span(gData).map((v, c) => Math.abs(v * gmData[c]!)));
      allClose(span(dx), span(ref.dx), 0, 1e-5 * scaleRow, `dx ${what} row ${row}`);
    }
    const scale = Math.sqrt(rows);
    allClose((await gamma.grad!.read()) as Float32Array, ref.dgamma, 1e-4, 1e-5 * scale, `dgamma ${what}`);
    allClose((await beta.grad!.read()) as Float32Array, ref.dbeta, 1e-4, 1e-5 * scale, `dbeta ${what}`);
    for (const t of [x, gamma, beta]) {
      t.grad!.dispose();
      t.dispose();
    }
  }
});

t.run();

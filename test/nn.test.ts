import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { gpu, rng, freshSeed, randn, randu, allClose, gradCheck, act64, sigmoid64, softplus64 } from './helpers.ts';
import { backward } from '../engine/autograd.ts';
import { HostRng, manualSeed } from '../engine/host-rng.ts';
import { orthogonal, torchLinearInit } from '../engine/initializers.ts';
import {
  Dropout, GaussianFourierProjection, LayerNorm, Linear, MLP, MLPResNet, Module, ResidualBlock, Sequential, SinusoidalPosEmb,
  type Activation,
} from '../engine/nn.ts';
import { dropout } from '../engine/ops/dropout.ts';
import { fourierFeatures } from '../engine/ops/fourier.ts';
import { Generator } from '../engine/random.ts';
import { tensor, tidy, type Tensor } from '../engine/tensor.ts';

const t = suite('nn');
t.before(gpu);

// ---- float64 references ----

/** act(x W^T + b) for x [rows, inF], W [outF, inF]. */
function linear64(x: ArrayLike<number>, rows: number, w: ArrayLike<number>, b: ArrayLike<number> | null, inF: number, outF: number, act: Activation = 'identity'): Float64Array {
  const y = new Float64Array(rows * outF);
  for (let r = 0; r < rows; r++) {
    for (let o = 0; o < outF; o++) {
      let s = b ? b[o]! : 0;
      for (let i = 0; i < inF; i++) s += x[r * inF + i]! * w[o * inF + i]!;
      y[r * outF + o] = act64(act, s);
    }
  }
  return y;
}

function layerNorm64(x: ArrayLike<number>, rows: number, dim: number, g: ArrayLike<number> | null, b: ArrayLike<number> | null, eps = 1e-5): Float64Array {
  const y = new Float64Array(rows * dim);
  for (let r = 0; r < rows; r++) {
    let mu = 0;
    for (let i = 0; i < dim; i++) mu += x[r * dim + i]!;
    mu /= dim;
    let v = 0;
    for (let i = 0; i < dim; i++) v += (x[r * dim + i]! - mu) ** 2;
    v /= dim;
    const inv = 1 / Math.sqrt(v + eps);
    for (let i = 0; i < dim; i++) y[r * dim + i] = (x[r * dim + i]! - mu) * inv * (g ? g[i]! : 1) + (b ? b[i]! : 0);
  }
  return y;
}

async function host(m: Module): Promise<Map<string, Float32Array>> {
  const out = new Map<string, Float32Array>();
  for (const { name, tensor: p } of m.namedTensors()) out.set(name, (await p.read()) as Float32Array);
  return out;
}

async function read(x: Tensor): Promise<Float32Array> {
  return (await x.read()) as Float32Array;
}

/** Overwrites every parameter with random values (so LayerNorm gains, zero biases etc. are exercised). */
function randomize(m: Module, r: () => number, scale = 0.5): void {
  for (const { tensor: p } of m.namedParameters()) p.set(randn(p.size, r, scale));
}

// ---- init ----

t('HostRng is reproducible and has the right moments', () => {
  const a = new HostRng(7);
  const b = new HostRng(7);
  const c = new HostRng(8);
  const xs = Array.from({ length: 5 }, () => a.next());
  assert.equal(xs, Array.from({ length: 5 }, () => b.next()));
  assert.not.equal(xs, Array.from({ length: 5 }, () => c.next()));
  const r = new HostRng(freshSeed());
  const n = 200000;
  let su = 0, su2 = 0, sn = 0, sn2 = 0, sn4 = 0;
  for (let i = 0; i < n; i++) {
    const u = r.next();
    assert.ok(u >= 0 && u < 1);
    su += u;
    su2 += u * u;
    const z = r.normal();
    sn += z;
    sn2 += z * z;
    sn4 += z ** 4;
  }
  // standard errors at n = 200000: uniform mean 0.00065, variance 0.00017; normal mean 0.0022, E z^2 0.0032,
  // E z^4 0.022 (Var z^4 = 96). Every bound is 6 or more of them (two-sided 2e-9 each).
  assert.ok(Math.abs(su / n - 0.5) < 0.004, `uniform mean ${su / n}`);
  assert.ok(Math.abs(su2 / n - su ** 2 / n ** 2 - 1 / 12) < 0.002, 'uniform variance');
  assert.ok(Math.abs(sn / n) < 0.0135, `normal mean ${sn / n}`);
  assert.ok(Math.abs(sn2 / n - 1) < 0.019, `normal variance ${sn2 / n}`);
  // z^4 is skewed (skewness 10), which moves the 6-sigma point of its mean by about 0.13 sigma: 0.15 is 6.8
  assert.ok(Math.abs(sn4 / n - 3) < 0.15, `normal kurtosis ${sn4 / n}`);
});

t('PyTorch default Linear init: U(-1/sqrt(in), 1/sqrt(in)) for weight and bias', () => {
  for (const [inF, outF] of [[1, 3], [17, 255], [256, 256]] as const) {
    const { weight, bias } = torchLinearInit(inF, outF, new HostRng(freshSeed()));
    const bound = 1 / Math.sqrt(inF);
    assert.is(weight.length, inF * outF);
    assert.is(bias.length, outF);
    for (const arr of [weight, bias]) {
      let s = 0, s2 = 0, maxAbs = 0;
      for (const v of arr) {
        s += v;
        s2 += v * v;
        maxAbs = Math.max(maxAbs, Math.abs(v));
      }
      assert.ok(maxAbs <= bound, `|w| ${maxAbs} within ${bound}`);
      if (arr.length >= 4000) {
        const n = arr.length;
        // 6 standard errors: the mean's is bound / sqrt(3 n) and the relative one of the mean square sqrt(0.8 / n).
        // A fixed 0.02 bound was 2.3 standard errors at n = 4335 and failed in 39 of 2000 draws.
        assert.ok(Math.abs(s / n) < (6 * bound) / Math.sqrt(3 * n), `mean ${s / n}`);
        assert.ok(Math.abs(s2 / n / (bound * bound / 3) - 1) < 6 * Math.sqrt(0.8 / n), `variance ${s2 / n} vs ${bound * bound / 3}`);
        assert.ok(maxAbs > 0.99 * bound, 'fills the interval');
      }
    }
  }
});

/** Gram-Schmidt in float64 of the same Gaussian draws: R has a positive diagonal, as the sign-corrected QR. */
function orthogonalReference(rows: number, cols: number, gain: number, seed: number): Float64Array {
  const r = new HostRng(seed);
  const drawn = Array.from({ length: rows * cols }, () => r.normal());
  const tall = rows >= cols;
  const m = tall ? rows : cols;
  const n = tall ? cols : rows;
  const col = (j: number) => Float64Array.from({ length: m }, (_, i) => (tall ? drawn[i * cols + j]! : drawn[j * cols + i]!));
  const qs: Float64Array[] = [];
  for (let j = 0; j < n; j++) {
    const v = col(j);
    for (let pass = 0; pass < 2; pass++) {
      for (const q of qs) {
        let d = 0;
        for (let i = 0; i < m; i++) d += q[i]! * v[i]!;
        for (let i = 0; i < m; i++) v[i] = v[i]! - d * q[i]!;
      }
    }
    const norm = Math.sqrt(v.reduce((s, x) => s + x * x, 0));
    qs.push(v.map((x) => x / norm));
  }
  const out = new Float64Array(rows * cols);
  for (let i = 0; i < rows; i++) for (let j = 0; j < cols; j++) out[i * cols + j] = gain * (tall ? qs[j]![i]! : qs[i]![j]!);
  return out;
}

t('orthogonal init: W W^T = gain^2 I (or W^T W), equal to the sign-corrected QR of the Gaussian draws', () => {
  for (const [rows, cols, gain] of [[1, 1, 1], [64, 64, 1], [50, 20, Math.SQRT2], [20, 50, 0.01], [3, 257, 1]] as const) {
    const seed = freshSeed();
    const w = orthogonal(rows, cols, gain, new HostRng(seed));
    allClose(w, orthogonalReference(rows, cols, gain, seed), 1e-5, 1e-6 * gain, `orthogonal ${rows}x${cols} vs Gram-Schmidt`);
    // the orthonormal side: rows when wide or square, columns when tall
    const k = Math.min(rows, cols);
    const gram = new Float64Array(k * k);
    const ident = new Float64Array(k * k);
    for (let a = 0; a < k; a++) {
      ident[a * k + a] = gain * gain;
      for (let b = 0; b < k; b++) {
        let s = 0;
        if (rows <= cols) for (let j = 0; j < cols; j++) s += w[a * cols + j]! * w[b * cols + j]!;
        else for (let i = 0; i < rows; i++) s += w[i * cols + a]! * w[i * cols + b]!;
        gram[a * k + b] = s;
      }
    }
    allClose(gram, ident, 0, 2e-6 * gain * gain, `orthogonality ${rows}x${cols}`);
  }
});

// ---- modules: structure ----

class Twin extends Module {
  readonly q1: MLP;
  readonly q2: MLP;
  readonly drop: Dropout;
  constructor(rng: HostRng) {
    super();
    this.q1 = this.registerModule('q1', new MLP([4, 8, 1], { rng }));
    this.q2 = this.registerModule('q2', new MLP([4, 8, 1], { rng }));
    this.drop = this.registerModule('drop', new Dropout(0.5, new Generator(1)));
  }
}

t('module tree: dotted names, train/eval, cached paramGroup, copyFrom', async () => {
  const r = new HostRng(freshSeed());
  const m = new Twin(r);
  assert.equal(
    m.namedParameters().map((e) => e.name),
    ['q1.layers.0.weight', 'q1.layers.0.bias', 'q1.layers.1.weight', 'q1.layers.1.bias', 'q2.layers.0.weight', 'q2.layers.0.bias', 'q2.layers.1.weight', 'q2.layers.1.bias'],
  );
  assert.equal(m.parameters().map((p) => p.shape), [[8, 4], [8], [1, 8], [1], [8, 4], [8], [1, 8], [1]]);
  assert.is(m.numParameters(), 2 * (32 + 8 + 8 + 1));
  assert.ok(m.parameters().every((p) => p.requiresGrad));
  assert.ok(m.training && m.q1.layers.layers[0]!.training && m.drop.training);
  m.eval();
  assert.ok(!m.training && !m.q1.layers.layers[1]!.training && !m.drop.training);
  m.train();
  assert.ok(m.drop.training);
  assert.throws(() => m.registerModule('q1', new Linear(1, 1)), /already registered/);
  assert.throws(() => m.registerModule('a.b', new Linear(1, 1)), /invalid member name/);

  const before = await host(m);
  const g = m.paramGroup();
  assert.is(m.paramGroup(), g, 'cached');
  assert.equal(g.entries.map((e) => e.name), m.namedParameters().map((e) => e.name));
  const after = await host(m);
  for (const [name, v] of before) assert.equal(after.get(name), v, `${name} survives packing`);
  assert.throws(() => m.q1.paramGroup(), /already packed/);
  assert.throws(() => m.registerParameter('extra', tensor([1])), /after paramGroup/);

  const target = new Twin(new HostRng(freshSeed()));
  target.copyFrom(m);
  const copied = await host(target);
  for (const [name, v] of after) assert.equal(copied.get(name), v, `${name} copied`);
  assert.throws(() => target.copyFrom(new MLP([4, 8, 1])), /modules differ/);

  // the same seed gives the same network
  manualSeed(123);
  const a = await host(new MLP([3, 5, 2]));
  manualSeed(123);
  const b = await host(new MLP([3, 5, 2]));
  for (const [name, v] of a) assert.equal(b.get(name), v, name);
});

// ---- modules: forward against float64 references ----

t('Linear forward for every activation and awkward shapes, rank 1 and 3 inputs', async () => {
  const r = rng(freshSeed());
  const acts: Activation[] = ['identity', 'relu', 'mish', 'silu', 'tanh', 'sigmoid'];
  const cases: [number, number, number][] = [[1, 1, 1], [3, 17, 5], [257, 3, 33], [17, 255, 1], [2, 64, 64]];
  let k = 0;
  for (const [rows, inF, outF] of cases) {
    for (const bias of [true, false]) {
      const act = acts[k++ % acts.length]!;
      const lin = new Linear(inF, outF, { act, bias, rng: new HostRng(freshSeed()) });
      const p = await host(lin);
      const x = randn(rows * inF, r);
      tidy(() => undefined);
      const y = await read(tidy(() => lin.forward(tensor(x, [rows, inF]))));
      allClose(y, linear64(x, rows, p.get('weight')!, bias ? p.get('bias')! : null, inF, outF, act), 2e-5, 2e-5, `Linear ${rows}x${inF}->${outF} ${act} bias=${bias}`);
    }
  }
  const lin = new Linear(4, 3, { act: 'tanh', rng: new HostRng(freshSeed()) });
  const p = await host(lin);
  const x = randn(2 * 5 * 4, r);
  const y3 = tidy(() => lin.forward(tensor(x, [2, 5, 4])));
  assert.equal(y3.shape, [2, 5, 3]);
  allClose(await read(y3), linear64(x, 10, p.get('weight')!, p.get('bias')!, 4, 3, 'tanh'), 2e-5, 2e-5, 'Linear rank 3');
  const y1 = tidy(() => lin.forward(tensor(x.subarray(0, 4), [4])));
  assert.equal(y1.shape, [3]);
  allClose(await read(y1), linear64(x, 1, p.get('weight')!, p.get('bias')!, 4, 3, 'tanh'), 2e-5, 2e-5, 'Linear rank 1');
  assert.throws(() => lin.forward(tensor(x.subarray(0, 10), [2, 5])), /does not end in 4/);
  y3.dispose();
  y1.dispose();
  const orth = new Linear(40, 30, { init: 'orthogonal', gain: 2, rng: new HostRng(3) });
  const po = await host(orth);
  allClose(po.get('weight')!, orthogonal(30, 40, 2, new HostRng(3)), 0, 0, 'orthogonal Linear weight');
  assert.ok(po.get('bias')!.every((v) => v === 0), 'orthogonal Linear bias is zero');
});

function mlp64(x: ArrayLike<number>, rows: number, widths: number[], p: Map<string, Float32Array>, act: Activation, outAct: Activation, layerNorm = false): Float64Array {
  let h: ArrayLike<number> = x;
  const n = widths.length - 1;
  for (let i = 0; i < n; i++) {
    const last = i === n - 1;
    const a = last ? outAct : layerNorm ? 'identity' : act;
    h = linear64(h, rows, p.get(`layers.${i}.weight`)!, p.get(`layers.${i}.bias`)!, widths[i]!, widths[i + 1]!, a);
    if (layerNorm && !last) {
      h = layerNorm64(h, rows, widths[i + 1]!, p.get(`norms.${i}.weight`)!, p.get(`norms.${i}.bias`)!).map((z) => act64(act, z));
    }
  }
  return Float64Array.from(h);
}

t('MLP forward (fused and with LayerNorm) matches the float64 reference', async () => {
  const r = rng(freshSeed());
  for (const [rows, widths, act, outAct, ln] of [
    [1, [2, 64, 64, 1], 'mish', 'identity', false],
    [257, [3, 17, 5], 'relu', 'tanh', false],
    [33, [6, 16, 16, 16, 2], 'mish', 'identity', true],
  ] as [number, number[], Activation, Activation, boolean][]) {
    const mlp = new MLP(widths, { act, outAct, layerNorm: ln, rng: new HostRng(freshSeed()) });
    if (ln) randomize(mlp, r);
    const p = await host(mlp);
    const x = randn(rows * widths[0]!, r);
    const y = tidy(() => mlp.forward(tensor(x, [rows, widths[0]!])));
    assert.equal(y.shape, [rows, widths[widths.length - 1]!]);
    allClose(await read(y), mlp64(x, rows, widths, p, act, outAct, ln), 1e-4, 3e-5, `MLP [${widths}] ${act}/${outAct} ln=${ln}`);
    y.dispose();
  }
});

t('LayerNorm forward (affine and not) matches the float64 reference', async () => {
  const r = rng(freshSeed());
  for (const [rows, dim] of [[1, 1], [3, 17], [257, 64], [2, 1023]] as const) {
    for (const affine of [true, false]) {
      const ln = new LayerNorm(dim, { affine, eps: 1e-5 });
      if (affine) randomize(ln, r, 1);
      const p = await host(ln);
      // an offset keeps the mean far from zero, the case where a one-pass variance would lose precision
      const x = randn(rows * dim, r, 2).map((v) => v + 3);
      const y = tidy(() => ln.forward(tensor(x, [rows, dim])));
      const ref = layerNorm64(x, rows, dim, affine ? p.get('weight')! : null, affine ? p.get('bias')! : null);
      allClose(await read(y), ref, 1e-4, 1e-4, `LayerNorm ${rows}x${dim} affine=${affine}`);
      y.dispose();
    }
  }
  assert.equal(new LayerNorm(4, { affine: false }).namedParameters(), []);
});

/** A Generator's uniform draw at the same stream position: the mask the dropout kernel must have used. */
async function maskFrom(seed: number, counter: number, n: number, p: number): Promise<Float64Array> {
  const g = new Generator(seed);
  g.counter = counter;
  const u = g.uniform([n]);
  const v = await read(u);
  u.dispose();
  return Float64Array.from(v, (x) => (x >= p ? 1 / (1 - p) : 0));
}

t('Dropout: keep rate, 1/(1-p) scaling, Generator mask, backward mask, eval identity', async () => {
  const r = rng(freshSeed());
  const p = 0.3;
  for (const n of [1, 3, 257, 100003]) {
    const seed = freshSeed() % 1000000;
    const gen = new Generator(seed);
    gen.counter = 5;
    const x = randu(n, r, 0.5, 2);
    const xt = tensor(x);
    xt.requiresGrad = true;
    const gout = randn(n, r);
    const y = dropout(xt, p, gen);
    assert.is(gen.counter, 5 + Math.ceil(n / 4), 'generator advanced by the blocks used');
    backward(y, tensor(gout));
    const yv = await read(y);
    const gx = await read(xt.grad!);
    const mask = await maskFrom(seed, 5, n, p);
    allClose(yv, Array.from(x, (v, i) => v * mask[i]!), 1e-6, 0, `dropout forward n=${n}`);
    allClose(gx, Array.from(gout, (v, i) => v * mask[i]!), 1e-6, 0, `dropout backward n=${n}`);
    if (n > 100000) {
      const dropped = yv.reduce((s, v) => s + (v === 0 ? 1 : 0), 0) / n;
      const sigma = Math.sqrt((p * (1 - p)) / n);
      // 6 binomial standard errors (two-sided 2e-9)
      assert.ok(Math.abs(dropped - p) < 6 * sigma, `drop rate ${dropped} vs ${p}`);
      let mean = 0;
      for (const v of yv) mean += v;
      mean /= n;
      // E[y] = E[x] = 1.25; the sd of the mean is sqrt(E[y^2] - 1.25^2) / sqrt(n) = 0.97 / sqrt(n) = 0.0031,
      // so 0.02 is 6.5 of it
      assert.ok(Math.abs(mean - 1.25) < 0.02, `mean preserved: ${mean}`);
      const again = await read(dropout(xt, p, gen));
      assert.ok(again.some((v, i) => (v === 0) !== (yv[i] === 0)), 'a second draw has a new mask');
    }
    xt.grad!.dispose();
    xt.dispose();
    y.dispose();
  }
  const layer = new Dropout(0.5, new Generator(9));
  const x = tensor(randn(64, r));
  const y = layer.forward(x);
  assert.ok((await read(y)).some((v) => v === 0));
  layer.eval();
  assert.is(layer.forward(x), x, 'eval is the identity');
  assert.is(new Dropout(0, new Generator(1)).forward(x), x, 'p = 0 is the identity');
  assert.ok((await read(dropout(x, 1, new Generator(1)))).every((v) => v === 0), 'p = 1 drops everything');
  assert.throws(() => new Dropout(1.5, new Generator(1)), /p must be in \[0, 1\]/);
});

function block64(x: ArrayLike<number>, rows: number, f: number, p: Map<string, Float32Array>, prefix: string, act: Activation, mask: ArrayLike<number> | null): Float64Array {
  const xd = mask ? Array.from(x, (v, i) => v * mask[i]!) : x;
  const h = layerNorm64(xd, rows, f, p.get(`${prefix}layer_norm.weight`)!, p.get(`${prefix}layer_norm.bias`)!);
  const h1 = linear64(h, rows, p.get(`${prefix}fc1.weight`)!, p.get(`${prefix}fc1.bias`)!, f, 4 * f, act);
  const h2 = linear64(h1, rows, p.get(`${prefix}fc2.weight`)!, p.get(`${prefix}fc2.bias`)!, 4 * f, f);
  return h2.map((v, i) => v + x[i]!);
}

t('residual block and MLPResNet match x + fc2(act(fc1(LN(dropout(x))))) in eval and train', async () => {
  const r = rng(freshSeed());
  const rows = 17;
  const f = 12;
  const seed = freshSeed() % 1000000;
  const block = new ResidualBlock(f, { act: 'mish', dropout: 0.25, generator: new Generator(seed), rng: new HostRng(freshSeed()) });
  assert.equal(block.namedParameters().map((e) => e.name), ['layer_norm.weight', 'layer_norm.bias', 'fc1.weight', 'fc1.bias', 'fc2.weight', 'fc2.bias']);
  randomize(block, r);
  const p = await host(block);
  const x = randn(rows * f, r);
  block.eval();
  const ye = tidy(() => block.forward(tensor(x, [rows, f])));
  allClose(await read(ye), block64(x, rows, f, p, '', 'mish', null), 1e-4, 3e-5, 'block eval');
  block.train();
  const yt = tidy(() => block.forward(tensor(x, [rows, f])));
  const mask = await maskFrom(seed, 0, rows * f, 0.25);
  allClose(await read(yt), block64(x, rows, f, p, '', 'mish', mask), 1e-4, 3e-5, 'block train (dropout on the input branch only)');
  ye.dispose();
  yt.dispose();

  const net = new MLPResNet(5, 3, { hidden: 8, blocks: 2, rng: new HostRng(freshSeed()) });
  assert.equal(net.namedParameters().map((e) => e.name).filter((n) => !n.startsWith('blocks.1')), [
    'fc.weight', 'fc.bias', 'blocks.0.layer_norm.weight', 'blocks.0.layer_norm.bias', 'blocks.0.fc1.weight', 'blocks.0.fc1.bias',
    'blocks.0.fc2.weight', 'blocks.0.fc2.bias', 'out_fc.weight', 'out_fc.bias',
  ]);
  randomize(net, r);
  net.eval();
  const pn = await host(net);
  const xn = randn(rows * 5, r);
  let h: ArrayLike<number> = linear64(xn, rows, pn.get('fc.weight')!, pn.get('fc.bias')!, 5, 8);
  for (const b of [0, 1]) h = block64(h, rows, 8, pn, `blocks.${b}.`, 'mish', null);
  const ref = linear64(Array.from(h, (v) => act64('mish', v)), rows, pn.get('out_fc.weight')!, pn.get('out_fc.bias')!, 8, 3);
  const yn = tidy(() => net.forward(tensor(xn, [rows, 5])));
  allClose(await read(yn), ref, 1e-4, 3e-5, 'MLPResNet eval');
  yn.dispose();
});

// ---- time embeddings ----

/**
 * With roundArg the argument is rounded as the kernel forms it in f32 (the rest in float64); gradient checks
 * need it unrounded, since finite differences of a rounded function are noise.
 */
function fourier64(ts: ArrayLike<number>, freqs: ArrayLike<number>, order: 'sin-cos' | 'cos-sin', freqScale = 1, roundArg = true): Float64Array {
  const h = freqs.length;
  const out = new Float64Array(ts.length * 2 * h);
  const f32 = roundArg ? Math.fround : (v: number) => v;
  for (let b = 0; b < ts.length; b++) {
    for (let j = 0; j < h; j++) {
      const arg = f32(f32(ts[b]! * freqs[j]!) * f32(freqScale));
      const [first, second] = order === 'sin-cos' ? [Math.sin(arg), Math.cos(arg)] : [Math.cos(arg), Math.sin(arg)];
      out[b * 2 * h + j] = first;
      out[b * 2 * h + h + j] = second;
    }
  }
  return out;
}

t('SinusoidalPosEmb (Diffusion-QL and EDP layouts) and GaussianFourierProjection', async () => {
  const r = rng(freshSeed());
  const steps = Float32Array.from({ length: 257 }, (_, i) => (i === 256 ? 999 : Math.floor(r() * 1000)));
  const dql = new SinusoidalPosEmb(16);
  const dqlFreqs = Float32Array.from({ length: 8 }, (_, i) => Math.exp((-i * Math.log(10000)) / 7));
  allClose(await read(dql.freqs), dqlFreqs, 0, 0, 'DQL frequencies exp(-i ln(1e4)/7)');
  const y = tidy(() => dql.forward(tensor(steps, [257, 1])));
  assert.equal(y.shape, [257, 16]);
  allClose(await read(y), fourier64(steps, dqlFreqs, 'sin-cos'), 0, 2e-6, 'DQL embedding of timesteps 0..999');
  y.dispose();
  const edp = new SinusoidalPosEmb(16, { order: 'cos-sin', shift: 0 });
  const edpFreqs = Float32Array.from({ length: 8 }, (_, i) => Math.exp((-i * Math.log(10000)) / 8));
  const ts = randu(33, r, 0, 100);
  const ye = tidy(() => edp.forward(tensor(ts)));
  allClose(await read(ye), fourier64(ts, edpFreqs, 'cos-sin'), 0, 2e-6, 'EDP embedding');
  ye.dispose();
  assert.throws(() => new SinusoidalPosEmb(15), /even integer/);

  const gfp = new GaussianFourierProjection(64, 30, { rng: new HostRng(freshSeed()) });
  assert.equal(gfp.namedBuffers().map((e) => e.name), ['W']);
  assert.equal(gfp.namedParameters(), []);
  const w = await read(gfp.W);
  assert.is(w.length, 32);
  const sd = Math.sqrt(w.reduce((s, v) => s + v * v, 0) / 32);
  assert.ok(sd > 15 && sd < 45, `W has scale about 30: ${sd}`);
  const tt = randu(65, r, 1e-3, 1);
  const yg = tidy(() => gfp.forward(tensor(tt, [65, 1])));
  assert.equal(yg.shape, [65, 64]);
  allClose(await read(yg), fourier64(tt, w, 'sin-cos', 2 * Math.PI), 0, 2e-6, 'Gaussian Fourier projection');
  yg.dispose();
});

// ---- gradients ----

t('gradients: Fourier features in t, LayerNorm / residual block / MLP inputs by finite differences', async () => {
  const r = rng(freshSeed());
  const freqs = Float32Array.from({ length: 4 }, (_, i) => Math.exp(-i));
  const ft = tensor(freqs);
  for (const order of ['sin-cos', 'cos-sin'] as const) {
    await gradCheck((x) => fourierFeatures(x, ft, { order, freqScale: 1.5 }), (x) => fourier64(x, freqs, order, 1.5, false), [{ data: randu(7, r, -3, 3), shape: [7] }], {
      what: `fourier ${order}`,
    });
  }
  const ln = new LayerNorm(6);
  randomize(ln, r, 1);
  const pl = await host(ln);
  await gradCheck((x) => ln.forward(x), (x) => layerNorm64(x, 3, 6, pl.get('weight')!, pl.get('bias')!), [{ data: randn(18, r), shape: [3, 6] }], { what: 'LayerNorm input' });
  const block = new ResidualBlock(4, { dropout: 0, rng: new HostRng(freshSeed()) });
  randomize(block, r);
  const pb = await host(block);
  await gradCheck((x) => block.forward(x), (x) => block64(x, 3, 4, pb, '', 'mish', null), [{ data: randn(12, r), shape: [3, 4] }], { what: 'residual block input' });
  const mlp = new MLP([3, 7, 5, 2], { act: 'mish', outAct: 'tanh', rng: new HostRng(freshSeed()) });
  const pm = await host(mlp);
  await gradCheck((x) => mlp.forward(x), (x) => mlp64(x, 4, [3, 7, 5, 2], pm, 'mish', 'tanh'), [{ data: randn(12, r), shape: [4, 3] }], { what: 'MLP input' });
});

t('gradients: every parameter of a small MLP, packed in its group, by finite differences', async () => {
  const r = rng(freshSeed());
  const widths = [3, 6, 5, 2];
  const rows = 4;
  const mlp = new MLP(widths, { act: 'mish', outAct: 'identity', rng: new HostRng(freshSeed()) });
  const group = mlp.paramGroup();
  const p = await host(mlp);
  const x = randn(rows * 3, r);
  const w = randn(rows * 2, r);
  group.zeroGrad();
  // two backward passes accumulate: the group's gradients must be twice the single-pass ones
  for (let pass = 0; pass < 2; pass++) {
    tidy(() => {
      const y = mlp.forward(tensor(x, [rows, 3]));
      backward(y, tensor(w, y.shape));
    });
  }
  const objective = (params: Map<string, Float32Array | Float64Array>) => {
    const y = mlp64(x, rows, widths, params as Map<string, Float32Array>, 'mish', 'identity');
    return y.reduce((s, v, i) => s + v * w[i]!, 0);
  };
  for (const { name, tensor: param } of mlp.namedParameters()) {
    const g = await read(param.gradSlot!);
    const base = Float64Array.from(p.get(name)!);
    const num: number[] = [];
    const ana: number[] = [];
    for (let j = 0; j < base.length; j++) {
      const h = 1e-5;
      const orig = base[j]!;
      const params = new Map<string, Float32Array | Float64Array>(p);
      params.set(name, base);
      base[j] = orig + h;
      const fp = objective(params);
      base[j] = orig - h;
      const fm = objective(params);
      base[j] = orig;
      num.push((2 * (fp - fm)) / (2 * h));
      ana.push(g[j]!);
    }
    allClose(ana, num, 1e-3, 1e-4, `d/d ${name}`);
  }
  const flat = await read(group.grads);
  assert.ok(flat.some((v) => v !== 0) && flat.every((v) => Number.isFinite(v)));
});

t('Sequential chains layers with children named 0, 1, ...', async () => {
  const r = rng(freshSeed());
  const seq = new Sequential([new Linear(3, 4, { act: 'relu', rng: new HostRng(1) }), new LayerNorm(4), new Linear(4, 2, { rng: new HostRng(2) })]);
  assert.equal(seq.namedParameters().map((e) => e.name), ['0.weight', '0.bias', '1.weight', '1.bias', '2.weight', '2.bias']);
  const p = await host(seq);
  const x = randn(15, r);
  let h: ArrayLike<number> = linear64(x, 5, p.get('0.weight')!, p.get('0.bias')!, 3, 4, 'relu');
  h = layerNorm64(h, 5, 4, p.get('1.weight')!, p.get('1.bias')!);
  const y = tidy(() => seq.forward(tensor(x, [5, 3])));
  allClose(await read(y), linear64(h, 5, p.get('2.weight')!, p.get('2.bias')!, 4, 2), 1e-4, 3e-5, 'Sequential');
  y.dispose();
});

t.run();

import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { gpu, poison, randn, randu, rng, freshSeed, allClose, gradCheck, poisonNext, sigmoid64, softplus64 } from './helpers.ts';
import { empty, tensor, tidy, viewOf, type Tensor } from '../engine/tensor.ts';
import { runtime } from '../engine/runtime.ts';
import { backward } from '../engine/autograd.ts';
import * as E from '../engine/ops/elementwise.ts';

const t = suite('elementwise');
t.before(gpu);

// ---- float64 references ----

function refBroadcast(shapes: number[][]): number[] {
  const rank = Math.max(...shapes.map((s) => s.length));
  return Array.from({ length: rank }, (_, d) => {
    const sizes = shapes.map((s) => s[d - (rank - s.length)] ?? 1);
    const big = sizes.filter((n) => n !== 1);
    if (big.some((n) => n !== big[0])) throw new Error('no broadcast');
    return big[0] ?? 1;
  });
}

const count = (s: readonly number[]) => s.reduce((a, b) => a * b, 1);

/** f applied over the broadcast of the inputs, in float64. */
function refMap(shapes: number[][], data: ArrayLike<number>[], f: (...v: number[]) => number): Float64Array {
  const shape = refBroadcast(shapes);
  const n = count(shape);
  const out = new Float64Array(n);
  const coord = new Array<number>(shape.length);
  for (let i = 0; i < n; i++) {
    let rest = i;
    for (let d = shape.length - 1; d >= 0; d--) {
      coord[d] = rest % shape[d]!;
      rest = Math.floor(rest / shape[d]!);
    }
    const vals = shapes.map((s, k) => {
      let off = 0;
      for (let j = 0; j < s.length; j++) {
        const c = s[j] === 1 ? 0 : coord[j + shape.length - s.length]!;
        off = off * s[j]! + c;
      }
      return data[k]![off]!;
    });
    out[i] = f(...vals);
  }
  return out;
}

/** Sums g of `shape` down to `target` in float64. */
function refSumTo(g: ArrayLike<number>, shape: number[], target: number[]): Float64Array {
  const out = new Float64Array(count(target));
  const coord = new Array<number>(shape.length);
  for (let i = 0; i < g.length; i++) {
    let rest = i;
    for (let d = shape.length - 1; d >= 0; d--) {
      coord[d] = rest % shape[d]!;
      rest = Math.floor(rest / shape[d]!);
    }
    let off = 0;
    for (let j = 0; j < target.length; j++) off = off * target[j]! + (target[j] === 1 ? 0 : coord[j + shape.length - target.length]!);
    out[off]! += g[i]!;
  }
  return out;
}

/** f32 rounding in a sum grows with the magnitudes summed, not with the (possibly cancelling) result. */
function sumTolerance(g: Float32Array, shape: number[], target: number[]): number {
  const magnitudes = refSumTo(Float32Array.from(g, Math.abs), shape, target);
  return 1e-6 + 3e-7 * Math.max(0, ...magnitudes);
}

const sigmoid = sigmoid64;
const softplus = softplus64;
const refPow = (x: number, e: number) => (x < 0 && Math.abs(e % 2) === 1 ? -(Math.abs(x) ** e) : Math.abs(x) ** e);


type Gen = (n: number, r: () => number) => Float32Array;
const normal: Gen = (n, r) => randn(n, r);
const positive: Gen = (n, r) => randu(n, r, 0.5, 3);
const awayFromZero: Gen = (n, r) => Float32Array.from(randu(n, r, 0.5, 2), (v) => (r() < 0.5 ? -v : v));
/** Small integers, so comparisons meet ties. */
const ints: Gen = (n, r) => Float32Array.from({ length: n }, () => Math.floor(r() * 5) - 2);
/** Quarter and three-quarter offsets from integers: two such values never lie within 0.5 of each other. */
const quarter: Gen = (n, r) => Float32Array.from({ length: n }, () => Math.floor(r() * 6) - 3 + 0.25);
const threeQuarter: Gen = (n, r) => Float32Array.from({ length: n }, () => Math.floor(r() * 6) - 3 + 0.75);

interface BinaryCase {
  name: string;
  op: (a: E.Operand, b: E.Operand) => Tensor;
  ref: (a: number, b: number) => number;
  genA: Gen;
  genB: Gen;
  rtol?: number;
}

const BINARY: BinaryCase[] = [
  { name: 'add', op: E.add, ref: (a, b) => a + b, genA: normal, genB: normal },
  { name: 'sub', op: E.sub, ref: (a, b) => a - b, genA: normal, genB: normal },
  { name: 'mul', op: E.mul, ref: (a, b) => a * b, genA: normal, genB: normal },
  { name: 'div', op: E.div, ref: (a, b) => a / b, genA: normal, genB: awayFromZero },
  { name: 'minimum', op: E.minimum, ref: Math.min, genA: ints, genB: ints },
  { name: 'maximum', op: E.maximum, ref: Math.max, genA: ints, genB: ints },
  { name: 'gt', op: E.gt, ref: (a, b) => +(a > b), genA: ints, genB: ints },
  { name: 'ge', op: E.ge, ref: (a, b) => +(a >= b), genA: ints, genB: ints },
  { name: 'lt', op: E.lt, ref: (a, b) => +(a < b), genA: ints, genB: ints },
  { name: 'le', op: E.le, ref: (a, b) => +(a <= b), genA: ints, genB: ints },
  { name: 'eq', op: E.eq, ref: (a, b) => +(a === b), genA: ints, genB: ints },
  { name: 'ne', op: E.ne, ref: (a, b) => +(a !== b), genA: ints, genB: ints },
];

const SHAPE_PAIRS: [number[], number[]][] = [
  [[17, 1], [1, 255]],
  [[3, 1, 5], [4, 5]],
  [[1], [257]],
  [[1023], [1]],
  [[], [3, 17]],
  [[2, 3, 4, 5], [3, 1, 5]],
  [[2, 1, 4, 1], [1, 3, 1, 6]],
  [[2, 3, 4, 5, 6], [4, 5, 6]],
  [[70000], [70000]],
  [[1, 70000], [1]],
  [[255, 1, 3], [1, 280, 1]],
];

t('broadcastShapes follows NumPy and names bad shapes', () => {
  assert.equal(E.broadcastShapes([17, 1], [1, 255]), [17, 255]);
  assert.equal(E.broadcastShapes([3, 1, 5], [4, 5]), [3, 4, 5]);
  assert.equal(E.broadcastShapes([], [2, 3]), [2, 3]);
  assert.equal(E.broadcastShapes([0, 1], [1, 4]), [0, 4]);
  assert.throws(() => E.broadcastShapes([2, 3], [4]), /\[2, 3\] and \[4\]/);
  assert.throws(() => tidy(() => E.add(tensor([1, 2, 3, 4, 5, 6], [2, 3]), tensor([1, 2], [2]))), /add: .*\[2, 3\].*\[2\]/);
  assert.equal(tidy(() => E.add(tensor([], [0, 3]), tensor([1, 2, 3], [3])).shape), [0, 3]);
  // five axes that alternate between broadcast and not cannot be merged into four
  assert.throws(() => tidy(() => E.add(tensor(new Float32Array(8), [2, 1, 2, 1, 2]), tensor(new Float32Array(4), [2, 1, 2, 1]))), /add: .*at most 4/);
});

t('binary ops and comparisons match float64 over broadcasting shapes', async () => {
  const r = rng(freshSeed());
  for (const [sa, sb] of SHAPE_PAIRS) {
    const outSize = count(refBroadcast([sa, sb]));
    for (const c of BINARY) {
      const a = c.genA(count(sa), r);
      const b = c.genB(count(sb), r);
      const ref = refMap([sa, sb], [a, b], c.ref);
      const what = `${c.name} ${JSON.stringify(sa)} with ${JSON.stringify(sb)}`;
      const got = await tidy(() => {
        const ta = tensor(a, sa);
        const tb = tensor(b, sb);
        poisonNext(outSize);
        return c.op(ta, tb);
      }).read();
      allClose(got, ref, c.rtol ?? 1e-6, 1e-6, what);
    }
  }
});

t('binary ops with a number on either side', async () => {
  const r = rng(freshSeed());
  const shape = [5, 257];
  const x = awayFromZero(count(shape), r);
  const s = -1.75;
  for (const c of BINARY) {
    const left = refMap([shape], [x], (v) => c.ref(s, v));
    const right = refMap([shape], [x], (v) => c.ref(v, s));
    const [gl, gr] = await Promise.all(
      tidy(() => {
        const tx = tensor(x, shape);
        poisonNext(count(shape), 'f32', 4);
        return [c.op(s, tx), c.op(tx, s)];
      }).map(async (y) => {
        assert.equal(y.shape, shape);
        const v = await y.read();
        y.dispose();
        return v;
      }),
    );
    allClose(gl!, left, 1e-6, 1e-6, `${c.name}(number, x)`);
    allClose(gr!, right, 1e-6, 1e-6, `${c.name}(x, number)`);
  }
  assert.throws(() => E.add(1 as unknown as Tensor, 2), /add: at least one operand must be a tensor/);
});

interface UnaryCase {
  name: string;
  op: (x: Tensor) => Tensor;
  ref: (x: number) => number;
  gen: Gen;
  rtol?: number;
}

const UNARY: UnaryCase[] = [
  { name: 'neg', op: E.neg, ref: (x) => -x, gen: normal },
  { name: 'exp', op: E.exp, ref: Math.exp, gen: normal, rtol: 3e-6 },
  { name: 'log', op: E.log, ref: Math.log, gen: positive, rtol: 3e-6 },
  { name: 'sqrt', op: E.sqrt, ref: Math.sqrt, gen: positive },
  { name: 'square', op: E.square, ref: (x) => x * x, gen: normal },
  { name: 'abs', op: E.abs, ref: Math.abs, gen: normal },
  { name: 'relu', op: E.relu, ref: (x) => Math.max(x, 0), gen: normal },
  { name: 'sigmoid', op: E.sigmoid, ref: sigmoid, gen: normal, rtol: 3e-6 },
  { name: 'tanh', op: E.tanh, ref: Math.tanh, gen: normal, rtol: 3e-6 },
  { name: 'softplus', op: E.softplus, ref: softplus, gen: normal, rtol: 3e-6 },
  { name: 'silu', op: E.silu, ref: (x) => x * sigmoid(x), gen: normal, rtol: 3e-6 },
  { name: 'mish', op: E.mish, ref: (x) => x * Math.tanh(softplus(x)), gen: normal, rtol: 3e-6 },
  { name: 'scale', op: (x) => E.scale(x, -0.37), ref: (x) => x * Math.fround(-0.37), gen: normal },
  { name: 'pow3', op: (x) => E.pow(x, 3), ref: (x) => x ** 3, gen: normal, rtol: 1e-5 },
  { name: 'pow2.5', op: (x) => E.pow(x, 2.5), ref: (x) => x ** 2.5, gen: positive, rtol: 1e-5 },
  { name: 'pow-2', op: (x) => E.pow(x, -2), ref: (x) => x ** -2, gen: awayFromZero, rtol: 1e-5 },
  { name: 'pow0', op: (x) => E.pow(x, 0), ref: () => 1, gen: ints },
];

t('unary ops and activations match float64 over awkward sizes', async () => {
  const r = rng(freshSeed());
  for (const n of [1, 3, 17, 255, 257, 1023, 70000]) {
    for (const c of UNARY) {
      const x = c.gen(n, r);
      const ref = Float64Array.from(x, c.ref);
      const got = await tidy(() => {
        const tx = tensor(x, [n]);
        poisonNext(n);
        return c.op(tx);
      }).read();
      allClose(got, ref, c.rtol ?? 1e-6, 1e-6, `${c.name} n=${n}`);
    }
  }
});

t('activations stay finite for large inputs; activation() dispatches by name', async () => {
  const x = Float32Array.from([-200, -60, -20, -1e-3, 0, 1e-3, 20, 60, 200]);
  const refs: Record<string, (v: number) => number> = {
    relu: (v) => Math.max(v, 0),
    sigmoid,
    tanh: Math.tanh,
    softplus,
    silu: (v) => v * sigmoid(v),
    mish: (v) => v * Math.tanh(softplus(v)),
  };
  for (const [name, ref] of Object.entries(refs)) {
    const got = await tidy(() => E.activation(tensor(x), name as E.ActivationName)).read();
    allClose(got, Float64Array.from(x, ref), 3e-6, 1e-6, `activation ${name}`);
  }
  const tx = tensor(x);
  assert.is(E.activation(tx, 'identity'), tx);
  tx.dispose();
  assert.throws(() => tidy(() => E.activation(tensor([1]), 'gelu' as E.ActivationName)), /unknown activation 'gelu'/);
});

t("mish and its derivative match float64 from -80 to 80, across the formula's clamp at 20", async () => {
  const z = Float32Array.from({ length: 641 }, (_, i) => -80 + i * 0.25);
  z.set([19.999, 20, 20.001, -1e-4, 1e-4], 0);
  const mish = (v: number) => v * Math.tanh(softplus64(v));
  // d/dz z tanh(sp(z)) = tanh(sp(z)) + z sigmoid(z) sech^2(sp(z))
  const dmish = (v: number) => Math.tanh(softplus64(v)) + (v * sigmoid64(v)) / Math.cosh(softplus64(v)) ** 2;
  const tz = tensor(z);
  tz.requiresGrad = true;
  const y = E.mish(tz);
  tidy(() => backward(y, tensor(new Float32Array(z.length).fill(1))));
  // relative, even in the far negative tail; f32 exp itself loses about |z| ulp there (z = -45: 3e-6)
  allClose(await y.read(), Float64Array.from(z, mish), 1e-5, 1e-30, 'mish');
  allClose(await tz.grad!.read(), Float64Array.from(z, dmish), 1e-5, 1e-30, "mish'");
  y.dispose();
  tz.grad!.dispose();
  tz.dispose();
});

t('pow keeps the sign of a negative base under odd exponents', async () => {
  const x = Float32Array.from([-2, -1.5, 0, 1.5, 2]);
  allClose(await tidy(() => E.pow(tensor(x), 3)).read(), [-8, -3.375, 0, 3.375, 8], 1e-6, 1e-6, 'pow 3');
  allClose(await tidy(() => E.pow(tensor(x), 2)).read(), [4, 2.25, 0, 2.25, 4], 1e-6, 1e-6, 'pow 2');
  allClose(await tidy(() => E.pow(tensor(x), 0)).read(), [1, 1, 1, 1, 1], 0, 0, 'pow 0');
  assert.ok(refPow(-2, 3) === -8);
});

t('clamp with number and tensor bounds, where with broadcasting', async () => {
  const r = rng(freshSeed());
  const xs = [4, 5];
  const x = randn(20, r, 2);
  const lo = randu(5, r, -1.5, -0.2);
  const hi = randu(4, r, 0.2, 1.5);
  const clampRef = (v: number, l: number, h: number) => Math.min(Math.max(v, l), h);
  allClose(await tidy(() => E.clamp(tensor(x, xs), -0.5, 0.75)).read(), refMap([xs], [x], (v) => clampRef(v, -0.5, 0.75)), 0, 0, 'clamp numbers');
  const got = await tidy(() => E.clamp(tensor(x, xs), tensor(lo, [1, 5]), tensor(hi, [4, 1]))).read();
  allClose(got, refMap([xs, [1, 5], [4, 1]], [x, lo, hi], clampRef), 0, 0, 'clamp tensors');
  const mixed = await tidy(() => E.clamp(tensor(x, xs), tensor(lo, [5]), 1)).read();
  allClose(mixed, refMap([xs, [5]], [x, lo], (v, l) => clampRef(v, l, 1)), 0, 0, 'clamp tensor and number');
  assert.throws(() => tidy(() => E.clamp(tensor(x, xs), tensor(randn(12, r), [3, 4, 1]), 1)), /clamp: .*\[4, 5\]/);

  for (const [sc, sa, sb] of [
    [[3, 1, 5], [4, 5], [3, 4, 1]],
    [[257], [1], [257]],
    [[2, 1, 3, 1], [1, 4, 1, 5], [5]],
    [[1], [70000], [70000]],
  ]) {
    const cond = Float32Array.from({ length: count(sc!) }, () => +(r() < 0.5));
    const a = randn(count(sa!), r);
    const b = randn(count(sb!), r);
    const ref = refMap([sc!, sa!, sb!], [cond, a, b], (c, u, v) => (c !== 0 ? u : v));
    const got = await tidy(() => {
      const ins = [tensor(cond, sc), tensor(a, sa), tensor(b, sb)] as const;
      poisonNext(ref.length);
      return E.where(...ins);
    }).read();
    allClose(got, ref, 0, 0, `where ${JSON.stringify([sc, sa, sb])}`);
  }
  const cond = Float32Array.from([1, 0, 0, 1, 1]);
  const ws = await tidy(() => E.where(tensor(cond), tensor(x.slice(0, 5)), 0)).read();
  allClose(ws, Array.from(cond, (c, i) => (c ? x[i]! : 0)), 0, 0, 'where with a number');
});

t('sumToShape sums over broadcast axes, in one or several passes', async () => {
  const r = rng(freshSeed());
  const cases: [number[], number[]][] = [
    [[3, 4, 5], [4, 5]],
    [[3, 4, 5], [3, 1, 5]],
    [[3, 4, 5], [3, 4, 1]],
    [[3, 4, 5], [1]],
    [[3, 4, 5], []],
    [[3, 4, 5], [5]],
    [[2, 3, 4, 5], [2, 1, 4, 1]],
    [[2, 3, 4, 5, 6], [3, 1, 5, 1]],
    [[3, 2, 4, 2, 5, 2, 3], [2, 1, 2, 1, 2, 1]],
    [[70000], [1]],
    [[300, 257], [1, 257]],
    [[1000, 3], [3]],
    [[2, 600, 3], [2, 1, 3]],
    [[17, 255], [17, 1]],
    [[70000, 1], [1, 1]],
    [[0, 5], [1, 5]],
  ];
  for (const [shape, target] of cases) {
    const g = randn(count(shape), r);
    const ref = refSumTo(g, shape, target);
    const got = await tidy(() => {
      const tg = tensor(g, shape);
      poisonNext(Math.max(1, ref.length));
      const s = E.sumToShape(tg, target);
      assert.equal(s.shape, target);
      return s;
    }).read();
    allClose(got, ref, 1e-5, sumTolerance(g, shape, target), `sumToShape ${JSON.stringify(shape)} -> ${JSON.stringify(target)}`);
  }
  const lifted = await tidy(() => E.sumToShape(tensor(Float32Array.from([1, 2, 3, 4, 5, 6]), [2, 3]), [1, 1, 3])).read();
  allClose(lifted, [5, 7, 9], 0, 0, 'sumToShape to a target with extra leading axes');
  // nothing to sum: same storage, new shape
  const g = tensor(randn(20, r), [1, 4, 5]);
  const same = E.sumToShape(g, [4, 5]);
  assert.equal(same.shape, [4, 5]);
  assert.is(same.storage, g.storage);
  allClose(await same.read(), await g.read(), 0, 0, 'sumToShape without summing');
  same.dispose();
  g.dispose();
  assert.throws(() => tidy(() => E.sumToShape(tensor(randn(12, r), [3, 4]), [3])), /\[3\] is not broadcastable to \[3, 4\]/);
});

t('operands and outputs may be views at an offset into a larger buffer', async () => {
  const r = rng(freshSeed());
  const host = randn(256, r);
  const whole = tensor(host);
  const view = viewOf(whole.storage.buffer, 256, [3, 40]);
  const row = viewOf(whole.storage.buffer, 768, [1, 40]);
  const got = await tidy(() => E.mul(E.add(view, row), 2)).read();
  allClose(got, refMap([[3, 40], [1, 40]], [host.slice(64, 184), host.slice(192, 232)], (u, v) => 2 * (u + v)), 1e-6, 1e-6, 'views');
  const sums = await tidy(() => E.sumToShape(view, [40])).read();
  allClose(sums, refSumTo(host.slice(64, 184), [3, 40], [40]), 1e-6, 1e-6, 'sum of a view');
  view.dispose();
  row.dispose();
  whole.dispose();
});

t('launches that spill into a second grid dimension cover every element', async () => {
  const r = rng(freshSeed());
  const saved = E.launchLimits.maxWorkgroupsPerDim;
  E.launchLimits.maxWorkgroupsPerDim = 5;
  try {
    const a = randn(70000, r);
    const b = randn(70000 / 7, r);
    const got = await tidy(() => {
      const ta = tensor(a, [7, 10000]);
      const tb = tensor(b, [10000]);
      poisonNext(70000);
      return E.mul(E.add(ta, 1), tb);
    }).read();
    allClose(got, refMap([[7, 10000], [10000]], [a, b], (u, v) => (Math.fround(u + 1)) * v), 1e-6, 1e-6, 'spilled map');
    const sum = await tidy(() => E.sumToShape(tensor(a), [1])).read();
    allClose(sum, [a.reduce((s, v) => s + v, 0)], 1e-5, sumTolerance(a, [70000], [1]), 'spilled reduce');
  } finally {
    E.launchLimits.maxWorkgroupsPerDim = saved;
  }
});

// ---- gradients ----

const data = (shape: number[], gen: Gen, r: () => number) => ({ data: gen(count(shape), r), shape });

t('binary gradients with broadcasting match finite differences', async () => {
  const r = rng(freshSeed());
  const pairs: [number[], number[]][] = [
    [[3, 1, 5], [4, 5]],
    [[17, 1], [1, 6]],
    [[2, 3], [2, 3]],
    [[4], [1]],
  ];
  const cases: { name: string; op: (a: Tensor, b: Tensor) => Tensor; ref: (a: number, b: number) => number; genA: Gen; genB: Gen }[] = [
    { name: 'add', op: E.add, ref: (a, b) => a + b, genA: normal, genB: normal },
    { name: 'sub', op: E.sub, ref: (a, b) => a - b, genA: normal, genB: normal },
    { name: 'mul', op: E.mul, ref: (a, b) => a * b, genA: normal, genB: normal },
    { name: 'div', op: E.div, ref: (a, b) => a / b, genA: normal, genB: awayFromZero },
    { name: 'minimum', op: E.minimum, ref: Math.min, genA: quarter, genB: threeQuarter },
    { name: 'maximum', op: E.maximum, ref: Math.max, genA: quarter, genB: threeQuarter },
  ];
  for (const [sa, sb] of pairs) {
    for (const c of cases) {
      await gradCheck(c.op, (a, b) => refMap([sa, sb], [a!, b!], c.ref), [data(sa, c.genA, r), data(sb, c.genB, r)], {
        seed: freshSeed(),
        what: `${c.name} ${JSON.stringify(sa)} with ${JSON.stringify(sb)}`,
      });
    }
  }
});

t('gradients through number operands and repeated inputs', async () => {
  const r = rng(freshSeed());
  const s = [3, 7];
  const cases: [string, (x: Tensor) => Tensor, (x: number) => number, Gen][] = [
    ['sub(2, x)', (x) => E.sub(2, x), (x) => 2 - x, normal],
    ['div(2, x)', (x) => E.div(2, x), (x) => 2 / x, awayFromZero],
    ['div(x, 4)', (x) => E.div(x, 4), (x) => x / 4, normal],
    ['minimum(x, 0.5)', (x) => E.minimum(x, 0.5), (x) => Math.min(x, 0.5), quarter],
    ['maximum(-1, x)', (x) => E.maximum(-1, x), (x) => Math.max(-1, x), threeQuarter],
    ['add(x, x)', (x) => E.add(x, x), (x) => 2 * x, normal],
    ['mul(x, x)', (x) => E.mul(x, x), (x) => x * x, normal],
    ['sub(x, x)', (x) => E.sub(x, x), () => 0, normal],
  ];
  for (const [what, op, ref, gen] of cases) {
    await gradCheck(op, (x) => Float64Array.from(x!, ref), [data(s, gen, r)], { seed: freshSeed(), what });
  }
});

t('unary and activation gradients match finite differences', async () => {
  const r = rng(freshSeed());
  const awayFromKink: Gen = (n, rr) => Float32Array.from(randu(n, rr, 0.1, 2.5), (v) => (rr() < 0.5 ? -v : v));
  const cases: [string, (x: Tensor) => Tensor, (x: number) => number, Gen][] = [
    ['neg', E.neg, (x) => -x, normal],
    ['exp', E.exp, Math.exp, normal],
    ['log', E.log, Math.log, positive],
    ['sqrt', E.sqrt, Math.sqrt, positive],
    ['square', E.square, (x) => x * x, normal],
    ['abs', E.abs, Math.abs, awayFromKink],
    ['relu', E.relu, (x) => Math.max(x, 0), awayFromKink],
    ['sigmoid', E.sigmoid, sigmoid, (n, rr) => randn(n, rr, 3)],
    ['tanh', E.tanh, Math.tanh, (n, rr) => randn(n, rr, 2)],
    ['softplus', E.softplus, softplus, (n, rr) => randn(n, rr, 3)],
    ['silu', E.silu, (x) => x * sigmoid(x), (n, rr) => randn(n, rr, 3)],
    ['mish', E.mish, (x) => x * Math.tanh(softplus(x)), (n, rr) => randn(n, rr, 3)],
    ['scale', (x) => E.scale(x, 1.5), (x) => 1.5 * x, normal],
    ['pow 3', (x) => E.pow(x, 3), (x) => x ** 3, normal],
    ['pow 1.5', (x) => E.pow(x, 1.5), (x) => x ** 1.5, positive],
    ['pow -1', (x) => E.pow(x, -1), (x) => 1 / x, awayFromZero],
  ];
  for (const [what, op, ref, gen] of cases) {
    await gradCheck(op, (x) => Float64Array.from(x!, ref), [data([5, 9], gen, r)], { seed: freshSeed(), what });
  }
});

t('clamp and where gradients match finite differences', async () => {
  const r = rng(freshSeed());
  // x on a grid of odd tenths, bounds on even tenths: never within 0.1 of each other
  const offGrid: Gen = (n, rr) => Float32Array.from({ length: n }, () => (Math.floor(rr() * 12) - 6) * 0.2 + 0.1);
  const clampRef = (v: number, l: number, h: number) => Math.min(Math.max(v, l), h);
  await gradCheck((x) => E.clamp(x, -0.4, 0.6), (x) => Float64Array.from(x!, (v) => clampRef(v, -0.4, 0.6)), [data([4, 6], offGrid, r)], {
    seed: freshSeed(),
    what: 'clamp numbers',
  });
  const lo = { data: Float32Array.from({ length: 6 }, (_, i) => -0.4 - (i % 3) * 0.2), shape: [1, 6] };
  const hi = { data: Float32Array.from({ length: 4 }, (_, i) => 0.4 + (i % 2) * 0.4), shape: [4, 1] };
  await gradCheck(
    (x, l, h) => E.clamp(x, l, h),
    (x, l, h) => refMap([[4, 6], [1, 6], [4, 1]], [x!, l!, h!], clampRef),
    [data([4, 6], offGrid, r), lo, hi],
    { seed: freshSeed(), what: 'clamp tensors' },
  );
  const cond = tensor(Float32Array.from({ length: 15 }, () => +(r() < 0.5)), [3, 1, 5]);
  const condHost = await cond.read();
  await gradCheck(
    (a, b) => E.where(cond, a, b),
    (a, b) => refMap([[3, 1, 5], [4, 5], [3, 4, 1]], [condHost, a!, b!], (c, u, v) => (c ? u : v)),
    [data([4, 5], normal, r), data([3, 4, 1], normal, r)],
    { seed: freshSeed(), what: 'where' },
  );
  await gradCheck((a) => E.where(cond, 1, a), (a) => refMap([[3, 1, 5], [4, 5]], [condHost, a!], (c, u) => (c ? 1 : u)), [data([4, 5], normal, r)], {
    seed: freshSeed(),
    what: 'where with a number',
  });
  cond.dispose();
});

t('minimum and maximum send the gradient at a tie to the first operand', async () => {
  const a = Float32Array.from([1, 2, 3, 4]);
  const b = Float32Array.from([1, 5, 3, 0]);
  for (const [name, op, aWins] of [
    ['minimum', E.minimum, (u: number, v: number) => u <= v],
    ['maximum', E.maximum, (u: number, v: number) => u >= v],
  ] as const) {
    const ta = tensor(a);
    const tb = tensor(b);
    ta.requiresGrad = tb.requiresGrad = true;
    tidy(() => backward(op(ta, tb), tensor([10, 20, 30, 40])));
    const g = [10, 20, 30, 40];
    assert.equal(Array.from(await ta.grad!.read()), g.map((x, i) => (aWins(a[i]!, b[i]!) ? x : 0)), `${name} d/da`);
    assert.equal(Array.from(await tb.grad!.read()), g.map((x, i) => (aWins(a[i]!, b[i]!) ? 0 : x)), `${name} d/db`);
    for (const x of [ta, tb]) {
      x.grad!.dispose();
      x.dispose();
    }
  }
});

t('a chain of ops accumulates gradients into shared inputs', async () => {
  const r = rng(freshSeed());
  // y = sigmoid(x * w + b) * x - relu(x), with w broadcast over rows and b a scalar-shaped tensor
  const xs = [6, 4];
  const x = quarter(24, r);
  const w = normal(4, r);
  const b = normal(1, r);
  const ref = (xv: Float64Array, wv: Float64Array, bv: Float64Array) =>
    refMap([xs, [4], [1]], [xv, wv, bv], (xe, we, be) => sigmoid(xe * we + be) * xe - Math.max(xe, 0));
  await gradCheck(
    (tx, tw, tb) => E.sub(E.mul(E.sigmoid(E.add(E.mul(tx, tw), tb)), tx), E.relu(tx)),
    (xv, wv, bv) => ref(xv!, wv!, bv!),
    [{ data: x, shape: xs }, { data: w, shape: [4] }, { data: b, shape: [1] }],
    { seed: freshSeed(), what: 'chain' },
  );
  // comparisons record nothing
  const tx = tensor(x, xs);
  tx.requiresGrad = true;
  tidy(() => {
    const m = E.gt(tx, 0);
    assert.not.ok(m.requiresGrad);
    backward(E.mul(E.where(m, tx, 0), 2));
  });
  const gx = await tx.grad!.read();
  allClose(gx, Array.from(x, (v) => (v > 0 ? 2 : 0)), 0, 0, 'masked gradient');
  tx.grad!.dispose();
  tx.dispose();
});

t.run();

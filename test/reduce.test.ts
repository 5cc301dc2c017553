import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { gpu, poison, randn, rng, freshSeed, allClose, gradCheck, poisonNext } from './helpers.ts';
import { empty, tensor, tidy, type Tensor } from '../engine/tensor.ts';
import { runtime } from '../engine/runtime.ts';
import { backward } from '../engine/autograd.ts';
import { logSoftmax, logsumexp, max, mean, reduceTuning, softmax, sum } from '../engine/ops/reduce.ts';

const t = suite('reduce');
t.before(gpu);
t.after.each(() => {
  reduceTuning.rowThreads = 'auto';
});


// ---- float64 references over rows of length cols ----

function refRows(x: ArrayLike<number>, cols: number, f: (row: number[]) => number): number[] {
  const out: number[] = [];
  for (let r = 0; r * cols < x.length || (cols === 0 && r === 0); r++) out.push(f(Array.from({ length: cols }, (_, c) => x[r * cols + c]!)));
  return out;
}
const refSum = (row: number[]) => row.reduce((a, b) => a + b, 0);
const refMax = (row: number[]) => row.reduce((a, b) => Math.max(a, b), -Infinity);
const refLse = (row: number[]) => {
  const m = refMax(row);
  return m + Math.log(row.reduce((a, b) => a + Math.exp(b - m), 0));
};
function refRowMap(x: ArrayLike<number>, cols: number, f: (row: number[]) => number[]): number[] {
  const out: number[] = [];
  for (let r = 0; r * cols < x.length; r++) out.push(...f(Array.from({ length: cols }, (_, c) => x[r * cols + c]!)));
  return out;
}
const refSoftmax = (row: number[]) => {
  const l = refLse(row);
  return row.map((v) => Math.exp(v - l));
};
const refLogSoftmax = (row: number[]) => {
  const l = refLse(row);
  return row.map((v) => v - l);
};
const absRowSums = (x: ArrayLike<number>, cols: number) => refRows(x, cols, (row) => row.reduce((a, b) => a + Math.abs(b), 0));

async function readAndFree(y: Tensor): Promise<Float32Array> {
  const v = (await y.read()) as Float32Array;
  y.dispose();
  return v;
}

const ROWS = [1, 3, 17, 255, 257, 1023];
const COLS = [1, 3, 17, 256, 1023];

t('last-axis reductions and softmax family match float64 over awkward shapes, both row strategies', async () => {
  const r = rng(freshSeed());
  for (const rows of ROWS) {
    for (const cols of COLS) {
      const data = randn(rows * cols, r, 2);
      const x = tensor(data, [rows, cols]);
      const sums = refRows(data, cols, refSum);
      const tol = Math.max(...absRowSums(data, cols)) * 2e-6;
      const refs: Record<string, number[]> = {
        sum: sums,
        mean: sums.map((s) => s / cols),
        max: refRows(data, cols, refMax),
        logsumexp: refRows(data, cols, refLse),
        softmax: refRowMap(data, cols, refSoftmax),
        logSoftmax: refRowMap(data, cols, refLogSoftmax),
      };
      const ops: Record<string, (x: Tensor) => Tensor> = {
        sum: (x) => sum(x, { axis: -1 }),
        mean: (x) => mean(x, { axis: -1 }),
        max: (x) => max(x, { axis: -1 }),
        logsumexp,
        softmax,
        logSoftmax,
      };
      // Every strategy on every shape would be slow on a software adapter; the workgroup one is checked on a subset.
      const strategies: (1 | 64)[] = rows <= 257 || cols <= 17 ? [1, 64] : [1];
      for (const threads of strategies) {
        reduceTuning.rowThreads = threads;
        for (const [name, op] of Object.entries(ops)) {
          const rowWise = name === 'softmax' || name === 'logSoftmax';
          poisonNext(rowWise ? [rows, cols] : [rows]);
          const y = op(x);
          assert.equal([...y.shape], rowWise ? [rows, cols] : [rows], `${name} shape`);
          const got = await readAndFree(y);
          const what = `${name} [${rows}, ${cols}] threads ${threads}`;
          if (name === 'sum') allClose(got, refs.sum!, 0, tol, what);
          else if (name === 'mean') allClose(got, refs.mean!, 0, tol / cols, what);
          else if (name === 'max') allClose(got, refs.max!, 0, 0, what);
          else allClose(got, refs[name]!, 2e-6, 2e-6, what);
        }
      }
      x.dispose();
    }
  }
});

t('reductions over every element of large tensors', async () => {
  const r = rng(freshSeed());
  for (const n of [1, 3, 17, 255, 257, 1023, 4096, 4097, 100000, 1000003]) {
    const data = randn(n, r);
    const x = tensor(data, [n]);
    const s = data.reduce((a, b) => a + b, 0);
    const abs = data.reduce((a, b) => a + Math.abs(b), 0);
    const m = refMax(Array.from(data));
    for (const threads of n > 100000 ? ['auto' as const] : ['auto' as const, 1, 64]) {
      reduceTuning.rowThreads = threads;
      const what = `n ${n} threads ${threads}`;
      poisonNext([1]);
      allClose(await readAndFree(sum(x)), [s], 0, abs * 1e-6, `sum ${what}`);
      poisonNext([1]);
      allClose(await readAndFree(mean(x)), [s / n], 0, (abs / n) * 1e-6, `mean ${what}`);
      poisonNext([1]);
      allClose(await readAndFree(max(x)), [m], 0, 0, `max ${what}`);
    }
    x.dispose();
  }
});

t('long rows reduce over the last axis in chunked passes', async () => {
  const r = rng(freshSeed());
  for (const [rows, cols] of [[1, 100000], [3, 4097], [17, 5000], [2, 300001]] as const) {
    const data = randn(rows * cols, r);
    const x = tensor(data, [rows, cols]);
    const sums = refRows(data, cols, refSum);
    const abs = absRowSums(data, cols);
    const maxes = refRows(data, cols, refMax);
    for (const threads of ['auto' as const, 1, 64]) {
      reduceTuning.rowThreads = threads;
      const what = `[${rows}, ${cols}] threads ${threads}`;
      poisonNext([rows]);
      const s = await readAndFree(sum(x, { axis: -1 }));
      sums.forEach((v, i) => allClose([s[i]!], [v], 0, abs[i]! * 1e-6, `sum ${what} row ${i}`));
      poisonNext([rows]);
      const m = await readAndFree(mean(x, { axis: -1 }));
      sums.forEach((v, i) => allClose([m[i]!], [v / cols], 0, (abs[i]! / cols) * 1e-6, `mean ${what} row ${i}`));
      poisonNext([rows]);
      allClose(await readAndFree(max(x, { axis: -1 })), maxes, 0, 0, `max ${what}`);
    }
    x.dispose();
  }
});

t('row counts beyond one grid dimension spill into y for both row strategies', async () => {
  // 65535 workgroups per dimension: more rows than 65535 workgroups, or than 65535 x 64 invocations
  for (const [rows, threads] of [[70000, 64], [4200000, 1]] as const) {
    reduceTuning.rowThreads = threads;
    const data = new Float32Array(rows * 2).map((_, i) => (i * 7919) % 13);
    const x = tensor(data, [rows, 2]);
    poisonNext([rows]);
    const got = await readAndFree(sum(x, { axis: -1 }));
    const ref = Array.from({ length: rows }, (_, r) => data[2 * r]! + data[2 * r + 1]!);
    allClose(got, ref, 0, 0, `rows ${rows} threads ${threads}`);
    x.dispose();
  }
});

t('default axis, keepDim and higher ranks give the documented shapes', async () => {
  const r = rng(freshSeed());
  const data = randn(2 * 3 * 5, r);
  const x = tensor(data, [2, 3, 5]);
  tidy(() => {
    assert.equal([...sum(x).shape], [1]);
    assert.equal([...sum(x, { keepDim: true }).shape], [1, 1, 1]);
    assert.equal([...mean(x, { axis: -1 }).shape], [2, 3]);
    assert.equal([...max(x, { axis: 2, keepDim: true } as never).shape], [2, 3, 1]);
    assert.equal([...logsumexp(x).shape], [2, 3]);
    assert.equal([...sum(tensor([1, 2, 3]), { axis: -1 }).shape], [1]);
    assert.throws(() => sum(x, { axis: 0 as never }), /axis 0/);
  });
  const got = await readAndFree(max(x, { axis: -1, keepDim: true }));
  allClose(got, refRows(data, 5, refMax), 0, 0, 'max keepDim');
  x.dispose();
});

t('logsumexp, softmax and logSoftmax stay finite and exact at large offsets', async () => {
  const r = rng(freshSeed());
  for (const offset of [80, -80, 1000, -1000]) {
    for (const cols of [1, 17, 1023]) {
      const rows = 5;
      const data = randn(rows * cols, r, 3).map((v) => v + offset);
      // one row with an enormous spread: a single large value among tiny ones
      for (let c = 0; c < cols; c++) data[c] = c === cols - 1 ? offset + 100 : offset - 100;
      const x = tensor(data, [rows, cols]);
      // f32 inputs near |offset| are only known to ulp(offset); outputs that subtract the offset inherit that
      const atol = Math.abs(offset) * 2e-7 + 2e-6;
      for (const threads of [1, 64]) {
        reduceTuning.rowThreads = threads;
        const what = `offset ${offset} cols ${cols} threads ${threads}`;
        allClose(await readAndFree(logsumexp(x)), refRows(data, cols, refLse), 1e-6, atol, `logsumexp ${what}`);
        allClose(await readAndFree(softmax(x)), refRowMap(data, cols, refSoftmax), 1e-5, 1e-7, `softmax ${what}`);
        allClose(await readAndFree(logSoftmax(x)), refRowMap(data, cols, refLogSoftmax), 1e-6, atol, `logSoftmax ${what}`);
      }
      x.dispose();
    }
  }
});

t('max sends its gradient to the first of tied maxima', async () => {
  // last axis: rows with ties in different places
  const rows = 4;
  const cols = 300;
  const data = new Float32Array(rows * cols).fill(-1);
  const ties = [[0, 299], [5, 6, 7], [299], [100, 200, 250]];
  ties.forEach((cs, row) => cs.forEach((c) => (data[row * cols + c] = 3)));
  for (const threads of [1, 64]) {
    reduceTuning.rowThreads = threads;
    const x = tensor(data, [rows, cols]);
    x.requiresGrad = true;
    tidy(() => backward(max(x, { axis: -1 }), tensor([1, 2, 3, 4], [rows])));
    const g = await x.grad!.read();
    const expected = new Float32Array(rows * cols);
    ties.forEach((cs, row) => (expected[row * cols + cs[0]!] = row + 1));
    assert.equal(g, expected, `threads ${threads}`);
    x.grad!.dispose();
    x.dispose();
  }
  // long rows: ties in different chunks of a multi-pass row reduction
  {
    const longCols = 9000;
    const d = new Float32Array(2 * longCols).fill(0);
    for (const c of [8999, 5000, 4500]) d[c] = 2;
    for (const c of [300, 299, 8000]) d[longCols + c] = 2;
    for (const threads of [1, 64]) {
      reduceTuning.rowThreads = threads;
      const x = tensor(d, [2, longCols]);
      x.requiresGrad = true;
      tidy(() => backward(max(x, { axis: -1 }), tensor([1, 2], [2])));
      const g = await x.grad!.read();
      const nonzero = [...g.keys()].filter((i) => g[i] !== 0);
      assert.equal(nonzero, [4500, longCols + 299], `long rows threads ${threads}`);
      assert.equal([g[4500], g[longCols + 299]], [1, 2]);
      x.grad!.dispose();
      x.dispose();
    }
  }
  // every element: ties across chunks of the multi-pass reduction
  const n = 100000;
  const big = new Float32Array(n).fill(0);
  for (const i of [99999, 70000, 300, 4097]) big[i] = 5;
  for (const threads of [1, 64]) {
    reduceTuning.rowThreads = threads;
    const x = tensor(big, [n]);
    x.requiresGrad = true;
    tidy(() => backward(max(x)));
    const g = await x.grad!.read();
    const nonzero = [...g.keys()].filter((i) => g[i] !== 0);
    assert.equal(nonzero, [300], `threads ${threads}`);
    assert.is(g[300], 1);
    x.grad!.dispose();
    x.dispose();
  }
});

/** Largest minus second largest of each row (Infinity for a row of one). */
const topGaps = (x: ArrayLike<number>, cols: number) =>
  refRows(x, cols, (row) => {
    const sorted = [...row].sort((a, b) => b - a);
    return sorted.length > 1 ? sorted[0]! - sorted[1]! : Infinity;
  });

t('backward of every reduction passes a finite-difference check', async () => {
  const r = rng(freshSeed());
  // For max, each row's (and the whole input's) largest value stays at least 1e-2 above the next one: a probe
  // (a step of 1e-4 max(1, |x|)) that swaps the maximum makes the central difference disagree with the
  // gradient. A float64 replica of these checks failed in 4e-3 of fresh runs without this.
  const clearMaxInput = (rows: number, cols: number) => {
    for (;;) {
      const data = randn(rows * cols, r);
      if ([...topGaps(data, cols), ...topGaps(data, rows * cols)].every((g) => g >= 1e-2)) return [{ data, shape: [rows, cols] }];
    }
  };
  for (const threads of [1, 64]) {
    reduceTuning.rowThreads = threads;
    for (const [rows, cols] of [[1, 1], [3, 17], [17, 3], [5, 256]] as const) {
      const shape = [rows, cols];
      const input = () => [{ data: randn(rows * cols, r), shape }];
      const what = (n: string) => `${n} [${shape}] threads ${threads}`;
      await gradCheck((x) => sum(x, { axis: -1 }), (x) => refRows(x, cols, refSum), input(), { what: what('sum -1') });
      await gradCheck((x) => sum(x), (x) => [refSum(Array.from(x))], input(), { what: what('sum all') });
      await gradCheck((x) => mean(x, { axis: -1, keepDim: true }), (x) => refRows(x, cols, (row) => refSum(row) / cols), input(), { what: what('mean -1') });
      await gradCheck((x) => mean(x), (x) => [refSum(Array.from(x)) / x.length], input(), { what: what('mean all') });
      await gradCheck((x) => max(x, { axis: -1 }), (x) => refRows(x, cols, refMax), clearMaxInput(rows, cols), { what: what('max -1') });
      await gradCheck((x) => max(x), (x) => [refMax(Array.from(x))], clearMaxInput(rows, cols), { what: what('max all') });
      await gradCheck(logsumexp, (x) => refRows(x, cols, refLse), input(), { what: what('logsumexp') });
      await gradCheck(softmax, (x) => refRowMap(x, cols, refSoftmax), input(), { what: what('softmax') });
      await gradCheck(logSoftmax, (x) => refRowMap(x, cols, refLogSoftmax), input(), { what: what('logSoftmax') });
    }
  }
});

t('large-offset gradients of the softmax family stay finite and correct', async () => {
  const r = rng(freshSeed());
  for (const offset of [80, -80]) {
    const shape = [3, 17];
    const input = () => [{ data: randn(51, r).map((v) => v + offset), shape }];
    // finite differences at |x| ~ 80 use steps ~1e-2, so compare a little more loosely
    const opts = { what: `offset ${offset}`, eps: 1e-5, rtol: 2e-3, atol: 2e-4 };
    await gradCheck(logsumexp, (x) => refRows(x, 17, refLse), input(), opts);
    await gradCheck(softmax, (x) => refRowMap(x, 17, refSoftmax), input(), opts);
    await gradCheck(logSoftmax, (x) => refRowMap(x, 17, refLogSoftmax), input(), opts);
  }
});

t('clear errors for unsupported inputs', () => {
  tidy(() => {
    assert.throws(() => max(empty([0])), /max: \[0\] has no elements/);
    assert.throws(() => softmax(empty([3, 0])), /softmax: the last axis of \[3,0\] is empty/);
    assert.throws(() => sum(empty([4], 'u32')), /sum: needs an f32 tensor/);
  });
});

t.run();

import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { gpu, poison, randn, rng, freshSeed, gradCheck, poisonNext } from './helpers.ts';
import { empty, numel, tensor, tidy, type DType, type Tensor } from '../engine/tensor.ts';
import { runtime } from '../engine/runtime.ts';
import { backward } from '../engine/autograd.ts';
import { concat, gather, gatherTuning, reshape, slice, transpose2d } from '../engine/ops/shape.ts';
import { logSoftmax } from '../engine/ops/reduce.ts';

const t = suite('shape');
t.before(gpu);

// inputs a test makes along the way, disposed after it
const scratch: Tensor[] = [];
function temp(x: Tensor): Tensor {
  scratch.push(x);
  return x;
}
t.after.each(() => {
  for (const x of scratch.splice(0)) x.dispose();
});


async function readAndFree(y: Tensor): Promise<Float32Array | Uint32Array | Int32Array> {
  const v = await y.read();
  y.dispose();
  return v;
}

// ---- float64 references on row-major data ----

/** Splits a shape at axis into (rows before, size of axis, inner after). */
function split(shape: readonly number[], axis: number): [number, number, number] {
  return [numel(shape.slice(0, axis)), shape[axis]!, numel(shape.slice(axis + 1))];
}

function refConcat(xs: ArrayLike<number>[], shapes: number[][], axis: number): number[] {
  const [rows, , inner] = split(shapes[0]!, axis);
  const out: number[] = [];
  for (let r = 0; r < rows; r++) {
    xs.forEach((x, i) => {
      const w = shapes[i]![axis]! * inner;
      for (let c = 0; c < w; c++) out.push(x[r * w + c]!);
    });
  }
  return out;
}

function refSlice(x: ArrayLike<number>, shape: number[], start: number, end: number, axis: number): number[] {
  const [rows, dim, inner] = split(shape, axis);
  const out: number[] = [];
  for (let r = 0; r < rows; r++) for (let c = start * inner; c < end * inner; c++) out.push(x[r * dim * inner + c]!);
  return out;
}

function refGather(x: ArrayLike<number>, nRows: number, cols: number, idx: ArrayLike<number>): number[] {
  const out: number[] = [];
  for (let b = 0; b < idx.length; b++) {
    const j = idx[b]!;
    for (let c = 0; c < cols; c++) out.push(j >= 0 && j < nRows ? x[j * cols + c]! : 0);
  }
  return out;
}

function refTranspose(x: ArrayLike<number>, rows: number, cols: number): number[] {
  const out: number[] = [];
  for (let c = 0; c < cols; c++) for (let r = 0; r < rows; r++) out.push(x[r * cols + c]!);
  return out;
}

const ROWS = [1, 3, 17, 255, 257, 1023];
const COLS = [1, 3, 17, 256, 1023];

t('reshape shares storage, infers -1 and carries gradients', async () => {
  const r = rng(freshSeed());
  const data = randn(6 * 35, r);
  const x = tensor(data, [6, 35]);
  const y = reshape(x, [-1, 5, 7]);
  assert.equal([...y.shape], [6, 5, 7]);
  assert.is(y.storage, x.storage, 'no copy');
  assert.equal(await y.read(), data);
  assert.throws(() => reshape(x, [4, -1]), /reshape: \[6,35\] \(210 elements\) cannot be viewed as \[4,-1\]/);
  assert.throws(() => reshape(x, [-1, -1]), /cannot be viewed/);
  assert.throws(() => reshape(x, [211]), /cannot be viewed/);
  y.dispose();
  x.dispose();
  const ref = (v: Float64Array) => {
    const out: number[] = [];
    for (let row = 0; row < 10; row++) {
      const xs = Array.from(v.subarray(row * 21, row * 21 + 21));
      const m = Math.max(...xs);
      const l = m + Math.log(xs.reduce((a, b) => a + Math.exp(b - m), 0));
      out.push(...xs.map((q) => q - l));
    }
    return out;
  };
  // a shape change that moves row boundaries: the gradient must land on the original elements
  await gradCheck((x) => reshape(logSoftmax(reshape(x, [10, 21])), [15, 14]), ref, [{ data: randn(210, r), shape: [15, 14] }], { what: 'reshape' });
});

t('concat along the last axis matches the reference over awkward shapes', async () => {
  const r = rng(freshSeed());
  for (const rows of ROWS) {
    for (const widths of [[1], [1, 3], [17, 256, 1], [1023, 3], [3, 17, 256, 1, 5]]) {
      const datas = widths.map((w) => randn(rows * w, r));
      const shapes = widths.map((w) => [rows, w]);
      const xs = datas.map((d, i) => tensor(d, shapes[i]));
      const total = widths.reduce((a, b) => a + b, 0);
      poisonNext([rows, total]);
      const y = concat(xs);
      assert.equal([...y.shape], [rows, total]);
      assert.equal(Array.from(await readAndFree(y)), refConcat(datas, shapes, 1), `concat rows ${rows} widths ${widths}`);
      for (const x of xs) x.dispose();
    }
  }
});

t('concat along other axes, of integer tensors, and its errors', async () => {
  const r = rng(freshSeed());
  const shapes = [[2, 3, 4], [2, 1, 4], [2, 5, 4]];
  const datas = shapes.map((s) => randn(numel(s), r));
  const xs = datas.map((d, i) => tensor(d, shapes[i]));
  const mid = concat(xs, 1);
  assert.equal([...mid.shape], [2, 9, 4]);
  assert.equal(Array.from(await readAndFree(mid)), refConcat(datas, shapes, 1));
  const a = tensor([1, 2, 3, 4, 5, 6], [3, 2]);
  const b = tensor([7, 8], [1, 2]);
  const lead = concat([a, b], 0);
  assert.equal(Array.from(await readAndFree(lead)), [1, 2, 3, 4, 5, 6, 7, 8]);
  const u = tensor([1, 0xffffffff, 3], [3, 1], 'u32');
  const v = tensor([4, 5, 6], [3, 1], 'u32');
  poisonNext([3, 2], 'u32');
  const uv = concat([u, v]);
  assert.is(uv.dtype, 'u32');
  assert.equal(Array.from(await readAndFree(uv)), [1, 4, 0xffffffff, 5, 3, 6]);
  assert.throws(() => concat([]), /concat: no inputs/);
  assert.throws(() => concat([a, b]), /concat: shapes \[3,2\], \[1,2\] differ outside axis 1/);
  assert.throws(() => concat([a, u]), /concat: dtypes differ/);
  for (const x of [...xs, a, b, u, v]) x.dispose();
});

t('concat backward passes a finite-difference check', async () => {
  const r = rng(freshSeed());
  const shapes = [[3, 2], [3, 17], [3, 1]];
  await gradCheck(
    (a, b, c) => concat([a, b, c]),
    (a, b, c) => refConcat([a, b, c], shapes, 1),
    shapes.map((s) => ({ data: randn(numel(s), r), shape: s })),
    { what: 'concat -1' },
  );
  const shapes0 = [[2, 3, 2], [1, 3, 2]];
  await gradCheck(
    (a, b) => concat([a, b], 0),
    (a, b) => [...a, ...b],
    shapes0.map((s) => ({ data: randn(numel(s), r), shape: s })),
    { what: 'concat 0' },
  );
  // an input without requiresGrad gets none, the others still do
  const a = tensor(randn(6, r), [3, 2]);
  const b = tensor(randn(3, r), [3, 1]);
  b.requiresGrad = true;
  tidy(() => backward(concat([a, b]), tensor([1, 2, 3, 4, 5, 6, 7, 8, 9], [3, 3])));
  assert.is(a.grad, null);
  assert.equal(Array.from(await b.grad!.read()), [3, 6, 9]);
  b.grad!.dispose();
  a.dispose();
  b.dispose();
});

t('slice along the last axis matches the reference over awkward shapes', async () => {
  const r = rng(freshSeed());
  for (const rows of ROWS) {
    for (const cols of COLS) {
      const data = randn(rows * cols, r);
      const x = tensor(data, [rows, cols]);
      const ranges: [number, number][] = [[0, cols], [0, 1], [cols - 1, cols], [Math.floor(cols / 3), Math.ceil((2 * cols) / 3)], [cols, cols]];
      for (const [s, e] of ranges) {
        poisonNext([rows, e - s]);
        const y = slice(x, s, e);
        assert.equal([...y.shape], [rows, e - s]);
        assert.equal(Array.from(await readAndFree(y)), refSlice(data, [rows, cols], s, e, 1), `slice [${rows}, ${cols}] [${s}, ${e})`);
      }
      x.dispose();
    }
  }
});

t('slice with negative bounds and other axes, and its errors', async () => {
  const x = tensor(Array.from({ length: 24 }, (_, i) => i), [2, 3, 4]);
  assert.equal(Array.from(await readAndFree(slice(x, -3, -1))), refSlice([...Array(24).keys()], [2, 3, 4], 1, 3, 2));
  assert.equal(Array.from(await readAndFree(slice(x, 1, 3, 1))), refSlice([...Array(24).keys()], [2, 3, 4], 1, 3, 1));
  assert.equal(Array.from(await readAndFree(slice(x, 1, 2, 0))), [...Array(24).keys()].slice(12));
  assert.throws(() => slice(x, 2, 5), /slice: \[2, 5\) is not a range of axis 2 \(size 4\)/);
  assert.throws(() => slice(x, 0, 1, 3), /slice: axis 3 is out of range/);
  x.dispose();
});

t('slice backward passes a finite-difference check', async () => {
  const r = rng(freshSeed());
  for (const [shape, s, e, axis] of [[[5, 17], 3, 11, -1], [[4, 1], 0, 1, -1], [[3, 4, 5], 1, 3, 1]] as const) {
    await gradCheck((x) => slice(x, s, e, axis), (x) => refSlice(x, [...shape], s, e, axis < 0 ? shape.length - 1 : axis), [{ data: randn(numel(shape), r), shape: [...shape] }], {
      what: `slice [${shape}] [${s}, ${e}) axis ${axis}`,
    });
  }
});

t('gather picks rows by u32 and i32 indices over awkward shapes', async () => {
  const r = rng(freshSeed());
  const cases: [number, number, number][] = [];
  for (const n of ROWS) for (const cols of COLS) cases.push([n, cols, [1, 3, 17, 256, 1023][cases.length % 5]!]);
  for (const [nRows, cols, batch] of cases) {
    const data = randn(nRows * cols, r);
    const x = tensor(data, [nRows, cols]);
    for (const dtype of ['u32', 'i32'] as const) {
      const idx = Array.from({ length: batch }, () => Math.floor(r() * nRows));
      const indices = tensor(idx, [batch], dtype);
      poisonNext([batch, cols]);
      const y = gather(x, indices);
      assert.equal([...y.shape], [batch, cols]);
      assert.equal(Array.from(await readAndFree(y)), refGather(data, nRows, cols, idx), `gather [${nRows}, ${cols}] by ${batch} ${dtype}`);
      indices.dispose();
    }
    x.dispose();
  }
});

t('gather writes zeros for out-of-range indices and keeps trailing axes', async () => {
  const r = rng(freshSeed());
  // cols 2: an unguarded index 2^31 would wrap to row 0 instead of reading past the end
  for (const cols of [2, 3, 4]) {
    const nRows = 5;
    const data = randn(nRows * cols, r);
    const x = tensor(data, [nRows, cols]);
    const iIdx = [4, -1, 5, 0, -2147483648, 2147483647];
    poisonNext([6, cols]);
    const yi = gather(x, temp(tensor(iIdx, [6], 'i32')));
    assert.equal(Array.from(await readAndFree(yi)), refGather(data, nRows, cols, iIdx), `i32 cols ${cols}`);
    const uIdx = [0xffffffff, 5, 1, 0x80000000];
    poisonNext([4, cols]);
    const yu = gather(x, temp(tensor(uIdx, [4], 'u32')));
    assert.equal(Array.from(await readAndFree(yu)), refGather(data, nRows, cols, uIdx), `u32 cols ${cols}`);
    x.dispose();
  }
  const x3 = tensor([...Array(24).keys()], [3, 2, 4]);
  const y3 = gather(x3, temp(tensor([2, 0, 2, 1], [2, 2], 'u32')));
  assert.equal([...y3.shape], [2, 2, 2, 4]);
  assert.equal(Array.from(await readAndFree(y3)), refGather([...Array(24).keys()], 3, 8, [2, 0, 2, 1]));
  const labels = tensor([10, 20, 30], [3], 'i32');
  const picked = gather(labels, temp(tensor([2, 2, 0], [3], 'u32')));
  assert.is(picked.dtype, 'i32');
  assert.equal(Array.from(await readAndFree(picked)), [30, 30, 10]);
  assert.throws(() => gather(x3, temp(tensor([0], [1]))), /gather: indices must be u32 or i32, got f32/);
  x3.dispose();
  labels.dispose();
});

t('gather from a tensor larger than one binding reads it in aligned windows', async () => {
  const r = rng(freshSeed());
  try {
    for (const [nRows, cols, windowBytes] of [[1023, 3, 1000], [257, 8, 256], [255, 17, 5000], [100, 256, 1024]] as const) {
      gatherTuning.maxWindowBytes = windowBytes;
      const data = randn(nRows * cols, r);
      const x = tensor(data, [nRows, cols]);
      for (const dtype of ['u32', 'i32'] as const) {
        const idx = Array.from({ length: 300 }, () => Math.floor(r() * (nRows + 10)) - (dtype === 'i32' ? 5 : 0));
        idx[0] = nRows - 1;
        idx[1] = 0;
        poisonNext([300, cols]);
        const y = gather(x, temp(tensor(idx, [300], dtype)));
        assert.equal(Array.from(await readAndFree(y)), refGather(data, nRows, cols, idx), `windowed gather [${nRows}, ${cols}] window ${windowBytes} ${dtype}`);
      }
      x.dispose();
    }
  } finally {
    gatherTuning.maxWindowBytes = null;
  }
});

t('gather backward: finite differences with repeats and out-of-range indices, both scatter strategies', async () => {
  const r = rng(freshSeed());
  // B <= N: owner per distinct index; B > N: owner per row of x
  for (const [nRows, cols, batch] of [[17, 3, 9], [7, 33, 5], [3, 40, 23], [1, 5, 4], [255, 4, 64]] as const) {
    const idx = Array.from({ length: batch }, () => Math.floor(r() * (nRows + 2)) - 1);
    idx[batch - 1] = idx[0]!;
    const indices = tensor(idx, [batch], 'i32');
    await gradCheck((x) => gather(x, indices), (x) => refGather(x, nRows, cols, idx), [{ data: randn(nRows * cols, r), shape: [nRows, cols] }], {
      what: `gather [${nRows}, ${cols}] by ${batch}`,
      probes: 64,
    });
    indices.dispose();
  }
});

t('gather backward sums repeated rows exactly and deterministically', async () => {
  const r = rng(freshSeed());
  for (const [nRows, batch] of [[300, 257], [20, 257]] as const) {
    const cols = 37;
    const idx = Array.from({ length: batch }, () => Math.floor(r() * 20));
    const gData = randn(batch * cols, r);
    const expected = new Float64Array(nRows * cols);
    idx.forEach((j, b) => {
      for (let c = 0; c < cols; c++) expected[j * cols + c] = expected[j * cols + c]! + gData[b * cols + c]!;
    });
    const runs: Float32Array[] = [];
    for (let run = 0; run < 2; run++) {
      const x = tensor(new Float32Array(nRows * cols), [nRows, cols]);
      x.requiresGrad = true;
      tidy(() => backward(gather(x, tensor(idx, [batch], 'u32')), tensor(gData, [batch, cols])));
      runs.push((await x.grad!.read()) as Float32Array);
      x.grad!.dispose();
      x.dispose();
    }
    assert.equal(runs[0], runs[1], 'bitwise identical across runs');
    const worst = runs[0]!.reduce((m, v, i) => Math.max(m, Math.abs(v - expected[i]!)), 0);
    assert.ok(worst < 1e-4, `N ${nRows}: worst error ${worst}`);
  }
});

t('transpose2d matches the reference and its backward passes a finite-difference check', async () => {
  const r = rng(freshSeed());
  for (const rows of ROWS) {
    for (const cols of COLS) {
      if (rows * cols > 300000) continue;
      const data = randn(rows * cols, r);
      const x = tensor(data, [rows, cols]);
      poisonNext([cols, rows]);
      const y = transpose2d(x);
      assert.equal([...y.shape], [cols, rows]);
      assert.equal(Array.from(await readAndFree(y)), refTranspose(data, rows, cols), `transpose [${rows}, ${cols}]`);
      x.dispose();
    }
  }
  await gradCheck(transpose2d, (x) => refTranspose(x, 5, 17), [{ data: randn(85, r), shape: [5, 17] }], { what: 'transpose2d' });
  tidy(() => assert.throws(() => transpose2d(empty([2, 3, 4])), /transpose2d: needs a rank-2 tensor/));
});

t.run();

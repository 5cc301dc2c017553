import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { gpu, randn, rng, freshSeed, allClose } from './helpers.ts';
import { AdamW, clipGradNorm, clipScale, constantLR, cosineLR, gradNorm, polyakUpdate } from '../engine/optim.ts';
import { ParamGroup, parameter } from '../engine/params.ts';
import { runtime } from '../engine/runtime.ts';
import { empty, keep, tensor, type Tensor } from '../engine/tensor.ts';
import { fill_ } from '../engine/basic.ts';

// ---- groups and host-side data ----

function makeGroup(sizes: number[], r: () => number): ParamGroup {
  return new ParamGroup(sizes.map((n, i) => ({ name: `p${i}`, tensor: parameter(randn(n, r), [n], `p${i}`) })));
}

/** Which floats of the flat buffers belong to a parameter (the rest is padding). */
function liveMask(group: ParamGroup): Uint8Array {
  const mask = new Uint8Array(group.length);
  group.entries.forEach((e, i) => mask.fill(1, group.offsets[i]!, group.offsets[i]! + e.tensor.size));
  return mask;
}

/** Random values where the mask is set, zero in the padding. */
function maskedRandn(mask: Uint8Array, r: () => number, scale = 1): Float32Array {
  const x = randn(mask.length, r, scale);
  for (let i = 0; i < mask.length; i++) if (!mask[i]) x[i] = 0;
  return x;
}

/**
 * A stand-in with ParamGroup's fields but a length that is not a multiple of 4, so the scalar (width 1)
 * kernels run too; real groups are always padded to the binding alignment.
 */
function oddGroup(n: number, r: () => number): { group: ParamGroup; mask: Uint8Array } {
  const values = keep(tensor(randn(n, r), [n]));
  const grads = keep(fill_(empty([n]), 0));
  const fake = { entries: [{ name: 'w', tensor: values }], offsets: [0], length: n, values, grads };
  return { group: fake as unknown as ParamGroup, mask: new Uint8Array(n).fill(1) };
}

// ---- float64 references ----

interface AdamState {
  p: Float64Array;
  m: Float64Array;
  v: Float64Array;
  t: number;
}

/** One step of torch.optim.AdamW (maximize off, amsgrad off) in float64. */
function adamwRef(s: AdamState, g: ArrayLike<number>, lr: number, beta1: number, beta2: number, eps: number, wd: number): void {
  s.t += 1;
  const bc1 = 1 - Math.pow(beta1, s.t);
  const bc2 = 1 - Math.pow(beta2, s.t);
  for (let i = 0; i < s.p.length; i++) {
    s.p[i] = s.p[i]! * (1 - lr * wd);
    s.m[i] = beta1 * s.m[i]! + (1 - beta1) * g[i]!;
    s.v[i] = beta2 * s.v[i]! + (1 - beta2) * g[i]! * g[i]!;
    const denom = Math.sqrt(s.v[i]!) / Math.sqrt(bc2) + eps;
    s.p[i] = s.p[i]! - (lr / bc1) * (s.m[i]! / denom);
  }
}

function maxAbs(x: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < x.length; i++) m = Math.max(m, Math.abs(x[i]!));
  return m;
}

function norm64(x: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < x.length; i++) s += x[i]! * x[i]!;
  return Math.sqrt(s);
}

async function readAll(...ts: Tensor[]): Promise<Float32Array[]> {
  const out: Float32Array[] = [];
  for (const t of ts) out.push((await t.read()) as Float32Array);
  return out;
}

function assertPaddingZero(x: Float32Array, mask: Uint8Array, what: string): void {
  for (let i = 0; i < mask.length; i++) if (!mask[i]) assert.is(x[i], 0, `${what}: padding at ${i} is ${x[i]}`);
}

const SIZES = [1, 3, 17, 255, 257, 1023];

const t = suite('optim');
t.before(gpu);

t('AdamW matches a float64 reference over several steps (weight decay, bias correction, lr per step)', async () => {
  const r = rng(freshSeed());
  for (const which of ['group', 'odd'] as const) {
    const { group, mask } = which === 'group' ? (() => { const g = makeGroup(SIZES, r); return { group: g, mask: liveMask(g) }; })() : oddGroup(1023, r);
    const [p0] = await readAll(group.values);
    const state: AdamState = { p: Float64Array.from(p0!), m: new Float64Array(group.length), v: new Float64Array(group.length), t: 0 };
    const opts = { lr: 3e-2, betas: [0.8, 0.99] as [number, number], eps: 1e-8, weightDecay: 0.1 };
    const opt = new AdamW(group, opts);
    const lrs = [undefined, 1e-2, 5e-3, undefined, 2e-2, 0];
    for (let step = 0; step < lrs.length; step++) {
      // a mix of large and tiny gradients so both regimes of m / (sqrt(v) + eps) are exercised
      const g = maskedRandn(mask, r, step % 2 === 0 ? 1 : 1e-3);
      group.grads.set(g);
      const lr = lrs[step];
      const before = runtime().stats.dispatches;
      opt.step(lr);
      assert.is(runtime().stats.dispatches - before, 1, 'one dispatch per step');
      adamwRef(state, g, lr ?? opts.lr, opts.betas[0], opts.betas[1], opts.eps, opts.weightDecay);
      assert.is(opt.stepCount, step + 1);
      if (step === 2 || step === lrs.length - 1) {
        const [p, m, v] = await readAll(group.values, opt.m, opt.v);
        allClose(p!, state.p, 1e-5, 1e-6, `${which} AdamW p after step ${step + 1}`);
        // m can cancel to far below the size of its terms, so its absolute tolerance follows the largest m
        allClose(m!, state.m, 1e-5, 1e-6 * maxAbs(state.m), `${which} AdamW m after step ${step + 1}`);
        allClose(v!, state.v, 1e-5, 1e-12, `${which} AdamW v after step ${step + 1}`);
        for (const [x, name] of [[p!, 'p'], [m!, 'm'], [v!, 'v']] as const) assertPaddingZero(x, mask, `${which} ${name}`);
      }
    }
    // the parameter tensors are views of the flat buffer, so they see the update
    if (which === 'group') {
      const last = group.entries[SIZES.length - 1]!.tensor;
      const off = group.offsets[SIZES.length - 1]!;
      allClose(await last.read(), state.p.subarray(off, off + last.size), 1e-5, 1e-6, 'parameter view after AdamW');
    }
    opt.dispose();
  }
});

t('AdamW defaults follow PyTorch except weight decay 0', () => {
  const group = makeGroup([5], rng(1));
  const opt = new AdamW(group, { lr: 1e-3 });
  assert.equal(opt.betas, [0.9, 0.999]);
  assert.is(opt.eps, 1e-8);
  assert.is(opt.weightDecay, 0);
  assert.throws(() => new AdamW(group, { lr: 1e-3, betas: [1, 0.9] }), /betas\[0\]/);
  assert.throws(() => new AdamW(group, { lr: -1 }), /lr/);
  opt.dispose();
});

t('clipGradNorm matches the reference when clipping and when not', async () => {
  const r = rng(freshSeed());
  // the large group gives more than 256 partial sums, so the finishing workgroup loops over them
  for (const { group, mask } of [
    (() => { const g = makeGroup(SIZES, r); return { group: g, mask: liveMask(g) }; })(),
    (() => { const g = makeGroup([300007, 5], r); return { group: g, mask: liveMask(g) }; })(),
    oddGroup(70001, r),
  ]) {
    for (const clipping of [true, false]) {
      const g = maskedRandn(mask, r, 0.1);
      group.grads.set(g);
      const ref = norm64(g);
      const maxNorm = clipping ? ref * 0.3 : ref * 2;
      const before = runtime().stats.dispatches;
      const norm = clipGradNorm(group, maxNorm);
      assert.ok(runtime().stats.dispatches - before <= 3, 'at most three dispatches');
      const readsBefore = runtime().stats.readbacks;
      const got = await norm.item();
      assert.is(runtime().stats.readbacks - readsBefore, 1, 'only the explicit read of the norm');
      allClose([got], [ref], 1e-5, 0, `norm (length ${group.length})`);
      const factor = Math.min(1, maxNorm / (ref + 1e-6));
      const [after] = await readAll(group.grads);
      allClose(after!, Array.from(g, (x) => x * factor), 1e-5, 1e-9, `clipped grads (length ${group.length}, clipping ${clipping})`);
      if (clipping) allClose([norm64(after!)], [maxNorm], 1e-5, 0, 'norm after clipping');
      else assert.equal(after, g, 'no clipping leaves the gradients bit for bit');
      assertPaddingZero(after!, mask, 'clipped grads');
      norm.dispose();
    }
  }
});

t('gradNorm and clipScale leave the gradients alone; the scale fuses into AdamW', async () => {
  const r = rng(freshSeed());
  const group = makeGroup([17, 255, 1000], r);
  const mask = liveMask(group);
  const g = maskedRandn(mask, r);
  group.grads.set(g);
  const ref = norm64(g);
  const n = gradNorm(group);
  allClose([await n.item()], [ref], 1e-5, 0, 'gradNorm');
  n.dispose();

  const maxNorm = ref / 4;
  const before = runtime().stats.dispatches;
  const { norm, scale } = clipScale(group, maxNorm);
  assert.is(runtime().stats.dispatches - before, 2, 'clipScale dispatches');
  allClose([await norm.item()], [ref], 1e-5, 0, 'clipScale norm');
  allClose([await scale.item()], [maxNorm / (ref + 1e-6)], 1e-5, 0, 'clipScale factor');
  assert.equal(await group.grads.read(), g, 'gradients unchanged');

  const [p0] = await readAll(group.values);
  const state: AdamState = { p: Float64Array.from(p0!), m: new Float64Array(group.length), v: new Float64Array(group.length), t: 0 };
  const opt = new AdamW(group, { lr: 1e-2, weightDecay: 0.01 });
  opt.step(undefined, scale);
  const factor = Math.min(1, maxNorm / (ref + 1e-6));
  adamwRef(state, Array.from(g, (x) => x * factor), 1e-2, 0.9, 0.999, 1e-8, 0.01);
  const [p, m] = await readAll(group.values, opt.m);
  allClose(p!, state.p, 1e-5, 1e-6, 'AdamW with fused clip: p');
  allClose(m!, state.m, 1e-5, 1e-9, 'AdamW with fused clip: m');
  assert.throws(() => opt.step(1e-3, group.values), /gradScale/);
  norm.dispose();
  scale.dispose();
  opt.dispose();
});

t('polyakUpdate matches the reference, is exact at tau 0 and 1, and checks layouts', async () => {
  const r = rng(freshSeed());
  for (const sizes of [SIZES, [4099, 2, 64]]) {
    const target = makeGroup(sizes, r);
    const source = makeGroup(sizes, r);
    const [t0, s0] = await readAll(target.values, source.values);
    const tau = 0.005 + 0.3 * r();
    const before = runtime().stats.dispatches;
    polyakUpdate(target, source, tau);
    assert.is(runtime().stats.dispatches - before, 1, 'one dispatch');
    const [t1] = await readAll(target.values);
    allClose(t1!, Array.from(t0!, (x, i) => (1 - tau) * x + tau * s0![i]!), 1e-6, 1e-7, `polyak tau ${tau}`);
    polyakUpdate(target, source, 0);
    assert.equal(await target.values.read(), t1, 'tau 0 leaves the target');
    polyakUpdate(target, source, 1);
    assert.equal(await target.values.read(), s0, 'tau 1 copies the source');
    assertPaddingZero((await target.values.read()) as Float32Array, liveMask(target), 'polyak');
  }
  const r2 = rng(7);
  const a = makeGroup([3, 5], r2);
  assert.throws(() => polyakUpdate(a, makeGroup([5, 3], r2), 0.1), /layout/);
  assert.throws(() => polyakUpdate(a, makeGroup([3, 5, 1], r2), 0.1), /layout/);
  assert.throws(() => polyakUpdate(a, makeGroup([3, 6], r2), 0.1), /layout/);
  assert.throws(() => polyakUpdate(a, a, 0.1), /same group/);
  assert.throws(() => polyakUpdate(a, makeGroup([3, 5], r2), 1.5), /tau/);
  const odd = oddGroup(1023, r2);
  const odd2 = oddGroup(1023, r2);
  const [o1, o2] = await readAll(odd.group.values, odd2.group.values);
  polyakUpdate(odd.group, odd2.group, 0.25);
  allClose(await odd.group.values.read(), Array.from(o1!, (x, i) => 0.75 * x + 0.25 * o2![i]!), 1e-6, 1e-7, 'polyak width 1');
});

t('learning-rate schedules', () => {
  const c = constantLR(3e-4);
  assert.is(c(0), 3e-4);
  assert.is(c(123456), 3e-4);

  const close = (a: number, b: number, what: string) => assert.ok(Math.abs(a - b) <= 1e-12 * Math.max(1, Math.abs(b)), `${what}: ${a} vs ${b}`);
  const cos = cosineLR(1e-3, 100);
  close(cos(0), 1e-3, 'cosine start');
  close(cos(50), 5e-4, 'cosine middle');
  close(cos(25), 1e-3 * (1 + Math.SQRT1_2) / 2, 'cosine quarter');
  close(cos(100), 0, 'cosine end');
  close(cos(1000), 0, 'cosine after the end');

  const warm = cosineLR(1e-3, 110, { warmup: 10, min: 1e-4 });
  close(warm(0), 1e-4, 'warm-up first step');
  close(warm(4), 5e-4, 'warm-up middle');
  close(warm(9), 1e-3, 'warm-up last step');
  close(warm(10), 1e-3, 'cosine after warm-up');
  close(warm(60), 1e-4 + 0.9e-3 / 2, 'cosine middle after warm-up');
  close(warm(110), 1e-4, 'cosine end at min');
  close(warm(5000), 1e-4, 'stays at min');
  for (let s = 11; s < 110; s++) assert.ok(warm(s) <= warm(s - 1), `cosine decreasing at ${s}`);

  assert.throws(() => cosineLR(1e-3, 10, { warmup: 10 }), /warmup/);
  assert.throws(() => cosineLR(1e-3, 0), /totalSteps/);
  assert.throws(() => cosineLR(1e-3, 10, { min: 1e-2 }), /min/);
});

t.run();


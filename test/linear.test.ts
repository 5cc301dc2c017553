import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { gpu, poison, randn, rng, freshSeed, gradCheck, allClose, act64, type GradInput } from './helpers.ts';
import { tensor, empty, tidy } from '../engine/tensor.ts';
import { ACTIVATIONS, type Activation } from '../kernels/common.ts';
import { linear, linearTuning, matmulInto, setMatmulFamily, setMatmulSubgroups } from '../engine/ops/matmul.ts';

const t = suite('linear');
t.before(gpu);
t.after(() => {
  setMatmulFamily('auto');
  setMatmulSubgroups('auto');
  linearTuning.backward = 'auto';
});

/** float64 act(x W^T + b), and the pre-activation. */
function refLinear(x: ArrayLike<number>, w: ArrayLike<number>, b: ArrayLike<number> | null, batch: number, inF: number, outF: number, act: Activation) {
  const z = new Float64Array(batch * outF);
  for (let i = 0; i < batch; i++) {
    for (let o = 0; o < outF; o++) {
      let s = b ? b[o]! : 0;
      for (let k = 0; k < inF; k++) s += x[i * inF + k]! * w[o * inF + k]!;
      z[i * outF + o] = s;
    }
  }
  return { y: z.map((v) => act64(act, v)), z };
}

/**
 * Inputs for a finite-difference check of linear(x, w, b, act). For ReLU every pre-activation is kept at
 * least 1e-2 from 0 (the draw is repeated otherwise, about one draw in eight): a probe moves a pre-activation
 * by up to about 2e-3, and one that straddles the kink makes the central difference disagree with the
 * gradient. Without this a ReLU check failed in about 2e-3 of fresh draws (a float64 replica of the check,
 * 1e5 draws).
 */
function linearInputs(r: () => number, batch: number, inF: number, outF: number, act: Activation, wScale: number, bias: boolean): GradInput[] {
  for (;;) {
    const x = randn(batch * inF, r);
    const w = randn(outF * inF, r, wScale);
    const b = bias ? randn(outF, r) : null;
    if (act !== 'relu' || refLinear(x, w, b, batch, inF, outF, act).z.every((v) => Math.abs(v) >= 1e-2)) {
      return [{ data: x, shape: [batch, inF] }, { data: w, shape: [outF, inF] }, ...(b ? [{ data: b, shape: [outF] }] : [])];
    }
  }
}

const VARIANTS = [
  { name: 'register', family: 'register', subgroups: 'auto' },
  { name: 'register-solo', family: 'register', subgroups: 'off' },
  { name: 'tiled', family: 'tiled', subgroups: 'auto' },
] as const;

// One shape per activation (in ACTIVATIONS order): mostly odd sizes (scalar reads and writes), and vec4
// layouts for two of them; each family sees each layout without building every combination, and the
// odd-sized ones share kernels with the backward tests below.
const FORWARD_SHAPES: [number, number, number][] = [
  [1, 17, 1],
  [37, 21, 33],
  [64, 32, 48],
  [3, 5, 255],
  [257, 13, 7],
  [24, 36, 36],
];

for (const v of VARIANTS) {
  // The epilogue does not depend on how the product was formed, so the per-invocation variant runs two.
  const acts = v.name === 'register-solo' ? ['identity', 'mish'] : ACTIVATIONS;
  t(`${v.name}: forward for ${acts.length === ACTIVATIONS.length ? 'every activation' : acts.join(', ')} against float64`, async () => {
    setMatmulFamily(v.family);
    setMatmulSubgroups(v.subgroups);
    const r = rng(freshSeed());
    for (let ai = 0; ai < ACTIVATIONS.length; ai++) {
      const act = ACTIVATIONS[ai]!;
      if (!acts.includes(act)) continue;
      const [batch, inF, outF] = FORWARD_SHAPES[ai]!;
      const x = randn(batch * inF, r);
      const w = randn(outF * inF, r, 1 / Math.sqrt(inF));
      const b = randn(outF, r);
      const got = await tidy(() => linear(tensor(x, [batch, inF]), tensor(w, [outF, inF]), tensor(b, [outF]), act)).read();
      const want = refLinear(x, w, b, batch, inF, outF, act).y;
      allClose(got, want, 1e-4, 1e-5, `${v.name} ${act} ${batch}x${inF}->${outF}`);
    }
  });
}

t('epilogue writes the pre-activation and handles a missing bias (poisoned outputs)', async () => {
  setMatmulFamily('auto');
  setMatmulSubgroups('auto');
  const r = rng(freshSeed());
  for (const [batch, inF, outF, withBias] of [
    [19, 9, 13, true],
    [16, 8, 12, false],
  ] as const) {
    const x = randn(batch * inF, r);
    const w = randn(outF * inF, r);
    const b = randn(outF, r);
    const tx = tensor(x, [batch, inF]);
    const tw = tensor(w, [outF, inF]);
    const tb = tensor(b, [outF]);
    const y = poison(empty([batch, outF]));
    const z = poison(empty([batch, outF]));
    matmulInto(y, tx, tw, { transB: true, bias: withBias ? tb : null, act: 'mish', pre: z });
    const want = refLinear(x, w, withBias ? b : null, batch, inF, outF, 'mish');
    allClose(await y.read(), want.y, 1e-4, 1e-5, `mish output ${batch}x${inF}->${outF}`);
    allClose(await z.read(), want.z, 1e-4, 1e-5, `pre-activation ${batch}x${inF}->${outF}`);
    for (const tt of [tx, tw, tb, y, z]) tt.dispose();
  }
});

t('critic head: batch 1 and one output, forward and backward', async () => {
  setMatmulFamily('auto');
  setMatmulSubgroups('auto');
  const r = rng(freshSeed());
  for (const [batch, inF] of [
    [1, 17],
    [33, 17],
  ] as const) {
    await gradCheck(
      (x, w, b) => linear(x, w, b, 'identity'),
      (x, w, b) => refLinear(x, w, b, batch, inF, 1, 'identity').y,
      [
        { data: randn(batch * inF, r), shape: [batch, inF] },
        { data: randn(inF, r), shape: [1, inF] },
        { data: randn(1, r), shape: [1] },
      ],
      { what: `head ${batch}x${inF}->1`, seed: freshSeed() },
    );
  }
});

// Backward for every activation in both families; the register family runs with its default (dZ written
// once) and, for two activations, with act' fused into the products' reads.
const BACKWARD_CASES: { family: 'register' | 'tiled'; mode: 'auto' | 'fused'; acts: readonly Activation[] }[] = [
  { family: 'register', mode: 'auto', acts: ACTIVATIONS },
  { family: 'tiled', mode: 'auto', acts: ACTIVATIONS },
  { family: 'register', mode: 'fused', acts: ['silu', 'tanh'] },
];

for (const c of BACKWARD_CASES) {
  t(`${c.family} (${c.mode}): backward for x, weight and bias by finite differences`, async () => {
    setMatmulFamily(c.family);
    setMatmulSubgroups('auto');
    linearTuning.backward = c.mode;
    const r = rng(freshSeed());
    const [batch, inF, outF] = [5, 7, 6];
    for (const act of c.acts) {
      await gradCheck(
        (x, w, b) => linear(x, w, b, act),
        (x, w, b) => refLinear(x, w, b, batch, inF, outF, act).y,
        linearInputs(r, batch, inF, outF, act, 0.5, true),
        { what: `${c.family} ${c.mode} ${act}`, seed: freshSeed() },
      );
    }
    linearTuning.backward = 'auto';
  });
}

t('bias gradient summed four columns at a time (out % 4 == 0), both families', async () => {
  const r = rng(freshSeed());
  const [batch, inF, outF] = [37, 5, 8];
  for (const family of ['register', 'tiled'] as const) {
    setMatmulFamily(family);
    await gradCheck(
      (x, w, b) => linear(x, w, b, 'tanh'),
      (x, w, b) => refLinear(x, w, b, batch, inF, outF, 'tanh').y,
      [
        { data: randn(batch * inF, r), shape: [batch, inF] },
        { data: randn(outF * inF, r, 0.5), shape: [outF, inF] },
        { data: randn(outF, r), shape: [outF] },
      ],
      { what: `${family} tanh ${batch}x${inF}->${outF}`, seed: freshSeed() },
    );
  }
  setMatmulFamily('auto');
});

t('linear without bias: gradients for x and weight', async () => {
  setMatmulFamily('auto');
  const r = rng(freshSeed());
  const [batch, inF, outF] = [5, 7, 6];
  await gradCheck(
    (x, w) => linear(x, w, null, 'relu'),
    (x, w) => refLinear(x, w, null, batch, inF, outF, 'relu').y,
    linearInputs(r, batch, inF, outF, 'relu', 1, false),
    { what: 'no bias relu', seed: freshSeed() },
  );
});

t('shape errors name the op and the shapes', () => {
  tidy(() => {
    assert.throws(() => linear(empty([3, 4]), empty([5, 6]), null), /linear: x \[3,4\] and weight \[5,6\] disagree/);
    assert.throws(() => linear(empty([3, 4]), empty([5, 4]), empty([4])), /linear: bias \[4\] should be \[5\]/);
  });
});

t.run();

import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { gpu, poison, randn, rng, freshSeed, act64 } from './helpers.ts';
import { tensor, empty, tidy } from '../engine/tensor.ts';
import { runtime } from '../engine/runtime.ts';
import type { Activation } from '../kernels/common.ts';
import {
  linear,
  matmulConfigFor,
  matmulConfigKey,
  matmulInto,
  matmulSubgroupSize,
  parseMatmulConfig,
  setMatmulFamily,
  setMatmulSubgroups,
  type GemmExtras,
  type MatmulConfig,
} from '../engine/ops/matmul.ts';
import {
  allMatmulCandidates,
  clearTuning,
  exportTuning,
  importTuning,
  matmulCandidates,
  tuneMatmul,
  tunedShapeClasses,
  tuningAdapterKey,
  type TuneShape,
} from '../engine/tune.ts';
import { prepareMatmulTuning, saveMatmulTuning, tuningCachePath } from '../algorithms/common/tuning-cache.ts';

const t = suite('tune');
t.before(gpu);
t.after(() => {
  clearTuning();
  setMatmulFamily('auto');
  setMatmulSubgroups('auto');
});

type Grad = { act: Activation; fromOutput: boolean };

/** float64 epilogue(op(A) op(B)) with an optional prologue A * act'(from) and bias + activation. */
function reference(
  a: Float32Array,
  b: Float32Array,
  from: Float32Array | null,
  bias: Float32Array | null,
  shape: TuneShape,
  act: Activation,
  grad: Grad | null,
): { y: Float64Array; z: Float64Array; scale: Float64Array } {
  const { M, K, N, transA, transB } = shape;
  const y = new Float64Array(M * N);
  const z = new Float64Array(M * N);
  const scale = new Float64Array(M * N);
  const aAt = (i: number, k: number) => {
    const idx = transA ? k * M + i : i * K + k;
    let v = a[idx]!;
    if (grad) v *= derivative(grad, from![idx]!);
    return v;
  };
  for (let i = 0; i < M; i++) {
    for (let j = 0; j < N; j++) {
      let s = bias ? bias[j]! : 0;
      let sa = bias ? Math.abs(bias[j]!) : 0;
      for (let k = 0; k < K; k++) {
        const p = aAt(i, k) * (transB ? b[j * K + k]! : b[k * N + j]!);
        s += p;
        sa += Math.abs(p);
      }
      z[i * N + j] = s;
      y[i * N + j] = act64(act, s);
      scale[i * N + j] = sa;
    }
  }
  return { y, z, scale };
}

function derivative(g: Grad, v: number): number {
  if (g.fromOutput) {
    if (g.act === 'relu') return v > 0 ? 1 : 0;
    if (g.act === 'tanh') return 1 - v * v;
    if (g.act === 'sigmoid') return v * (1 - v);
    return 1;
  }
  const h = 1e-6;
  return (act64(g.act, v + h) - act64(g.act, v - h)) / (2 * h);
}

interface Case {
  name: string;
  transA: boolean;
  transB: boolean;
  shapes: [number, number, number][];
  act?: Activation;
  bias?: boolean;
  pre?: boolean;
  grad?: Grad;
}

// Each case is one kernel specialisation per configuration: odd sizes read and write scalars, the others
// have every contiguous axis a multiple of 4 (vec4). Sizes 1, 3, 17, 255 and 257 hit every partial tile.
const CASES: Case[] = [
  { name: 'A B', transA: false, transB: false, shapes: [[1, 1, 1], [3, 17, 255], [257, 3, 17], [17, 257, 3]] },
  { name: 'A B^T + bias, mish, pre', transA: false, transB: true, shapes: [[1, 3, 1], [255, 17, 3], [3, 257, 17]], act: 'mish', bias: true, pre: true },
  { name: "A^T*silu'(pre) B", transA: true, transB: false, shapes: [[17, 3, 257], [1, 255, 3]], grad: { act: 'silu', fromOutput: false } },
  { name: 'A^T B^T + bias, tanh', transA: true, transB: true, shapes: [[3, 1, 17], [257, 17, 1]], act: 'tanh', bias: true },
  { name: 'A B^T + bias, relu (vec4)', transA: false, transB: true, shapes: [[257, 20, 36], [3, 256, 12]], act: 'relu', bias: true },
  { name: "A*relu'(out) B (vec4)", transA: false, transB: false, shapes: [[255, 36, 20]], grad: { act: 'relu', fromOutput: true } },
  { name: 'A^T B (vec4)', transA: true, transB: false, shapes: [[36, 257, 20], [4, 1, 4]] },
];

async function checkConfig(config: MatmulConfig, r: () => number): Promise<void> {
  for (const c of CASES) {
    for (const [M, K, N] of c.shapes) {
      const shape: TuneShape = { M, K, N, transA: c.transA, transB: c.transB };
      const a = randn(M * K, r);
      const b = randn(K * N, r);
      const bias = c.bias ? randn(N, r) : null;
      const from = c.grad ? (c.grad.fromOutput ? Float32Array.from(randn(M * K, r), Math.tanh) : randn(M * K, r)) : null;
      const act = c.act ?? 'identity';
      const want = reference(a, b, from, bias, shape, act, c.grad ?? null);
      const what = `${matmulConfigKey(config)} ${c.name} ${M}x${K}x${N}`;
      await tidy(() => {
        const ta = tensor(a, c.transA ? [K, M] : [M, K]);
        const tb = tensor(b, c.transB ? [N, K] : [K, N]);
        const out = poison(empty([M, N]));
        const pre = c.pre ? poison(empty([M, N])) : null;
        const extras: GemmExtras = { act, pre };
        if (bias) extras.bias = tensor(bias);
        if (c.grad && from) extras.gradThrough = { act: c.grad.act, from: tensor(from, ta.shape), fromOutput: c.grad.fromOutput };
        matmulInto(out, ta, tb, { transA: c.transA, transB: c.transB, config, ...extras });
        return Promise.all([out.read(), pre ? pre.read() : Promise.resolve(null)]);
      }).then(([got, gotPre]) => {
        for (let i = 0; i < M * N; i++) {
          const tol = 2e-6 * Math.sqrt(K + 1) * (want.scale[i]! + 1) + 1e-6;
          if (!(Math.abs(got[i]! - want.y[i]!) <= tol)) {
            assert.unreachable(`${what}: element ${i} is ${got[i]}, reference ${want.y[i]} (tol ${tol})`);
          }
          if (gotPre && !(Math.abs(gotPre[i]! - want.z[i]!) <= tol)) {
            assert.unreachable(`${what}: pre-activation ${i} is ${gotPre[i]}, reference ${want.z[i]}`);
          }
        }
      });
    }
  }
}

t('every candidate configuration matches float64 on awkward shapes, transposes and epilogues', async () => {
  const r = rng(freshSeed());
  const subgroups = matmulSubgroupSize() !== null;
  const all = allMatmulCandidates();
  assert.ok(all.some((c) => c.family === 'tiled') && all.some((c) => c.family === 'register'));
  for (const config of all) {
    if (config.family === 'register' && config.shared && !subgroups) continue;
    await checkConfig(config, r);
  }
});

function fakeResults(ranking: Record<string, Record<string, number>>, shapes: Record<string, TuneShape>): string {
  const classes: Record<string, unknown> = {};
  for (const [cls, ms] of Object.entries(ranking)) classes[cls] = { shape: shapes[cls], ms, date: '' };
  return JSON.stringify({ format: 'webdiffuser-matmul-tuning', version: 1, adapters: { [tuningAdapterKey()]: { classes } } });
}

const FORWARD_NARROW: TuneShape = { M: 256, K: 17, N: 256, transA: false, transB: true };
const HIDDEN_DX: TuneShape = { M: 256, K: 256, N: 256, transA: false, transB: false };

t('the chosen configuration is what the next product and layer use', async () => {
  clearTuning();
  setMatmulFamily('auto');
  setMatmulSubgroups('off');
  const rt = runtime();
  // Watches the kernels dispatched (an own-property wrapper over the runtime's dispatch).
  const usedKernel = (fn: () => void): string => {
    const names: string[] = [];
    const original = rt.dispatch;
    rt.dispatch = function (this: typeof rt, ...args: Parameters<typeof rt.dispatch>) {
      names.push(args[0].name);
      return original.apply(this, args);
    };
    try {
      tidy(fn);
    } finally {
      delete (rt as { dispatch?: unknown }).dispatch;
    }
    const products = names.filter((n) => n.startsWith('matmul_'));
    assert.ok(products.length >= 1, 'a product was dispatched');
    return products[0]!;
  };
  const untuned = matmulConfigKey(matmulConfigFor(100, 17, 200, { transB: true }));
  importTuning(
    fakeResults(
      {
        'nT:M-S-M': { 'register-solo-r8-c2': 1, 'tiled-t16-r4': 2, [untuned]: 3 },
        'nn:M-M-M': { 'tiled-t64-r8': 1, 'register-solo-r8-c1': 2 },
        // a default within 5% of the fastest keeps its place
        'TT:M-M-M': { 'tiled-t64-r8': 1, 'tiled-t32-r4': 1.04, 'register-solo-r8-c2': 1.01 },
      },
      { 'nT:M-S-M': FORWARD_NARROW, 'nn:M-M-M': HIDDEN_DX, 'TT:M-M-M': { M: 256, K: 256, N: 256, transA: true, transB: true } },
    ),
  );
  assert.is(matmulConfigKey(matmulConfigFor(100, 17, 200, { transB: true })), 'register-solo-r8-c2');
  const name = usedKernel(() => void matmulInto(empty([100, 200]), empty([100, 17]), empty([200, 17]), { transB: true }));
  assert.ok(name.startsWith('matmul_register-solo-r8-c2_'), name);
  // linear's forward is the same product class
  const viaLinear = usedKernel(() => void linear(empty([100, 17]), empty([200, 17]), empty([200]), 'relu'));
  assert.ok(viaLinear.startsWith('matmul_register-solo-r8-c2_'), viaLinear);
  // a forced family takes that family's best
  setMatmulFamily('tiled');
  assert.is(matmulConfigKey(matmulConfigFor(100, 17, 200, { transB: true })), 'tiled-t16-r4');
  setMatmulFamily('auto');
  assert.is(matmulConfigKey(matmulConfigFor(300, 300, 300)), 'tiled-t64-r8');
  assert.is(matmulConfigKey(matmulConfigFor(300, 300, 300, { transA: true, transB: true })), 'tiled-t32-r4');
  // a class without results follows the best over all classes (geometric mean of time over the class's best,
  // four times for a class that lacks it): tiled-t64-r8 is (4 * 1 * 1)^(1/3), register-solo-r8-c2 (1 * 4 * 1.01)^(1/3)
  const overall = matmulConfigKey(matmulConfigFor(3000, 3000, 3000, { transA: true, transB: false }));
  assert.is(overall, 'tiled-t64-r8');
  // and the product is right with the configuration it picked
  const r = rng(freshSeed());
  const a = randn(255 * 17, r);
  const b = randn(257 * 17, r);
  const got = await tidy(() => {
    const out = empty([255, 257]);
    matmulInto(out, tensor(a, [255, 17]), tensor(b, [257, 17]), { transB: true });
    return out.read();
  });
  const want = reference(a, b, null, null, { M: 255, K: 17, N: 257, transA: false, transB: true }, 'identity', null);
  for (let i = 0; i < want.y.length; i += 97) assert.ok(Math.abs(got[i]! - want.y[i]!) <= 1e-4 * (want.scale[i]! + 1), `element ${i}`);
  clearTuning();
  assert.is(matmulConfigKey(matmulConfigFor(100, 17, 200, { transB: true })), untuned);
  setMatmulSubgroups('auto');
});

t('tuneMatmul times the candidates, installs the fastest and skips tuned classes', async () => {
  clearTuning();
  const shape: TuneShape = { M: 17, K: 257, N: 3, transA: false, transB: false };
  const report = await tuneMatmul({ shapes: [shape], budgetMs: 20000 });
  assert.is(report.measured.length, 1);
  const m = report.measured[0]!;
  assert.is(m.shapeClass, 'nn:S-M-S');
  assert.is(m.candidates.length, matmulCandidates().length);
  for (let i = 1; i < m.candidates.length; i++) assert.ok(m.candidates[i - 1]!.ms <= m.candidates[i]!.ms, 'fastest first');
  for (const c of m.candidates) assert.ok(c.ms > 0 && Number.isFinite(c.gflops) && c.samples >= 1, c.config);
  const defaults = ['register-shared-r32-c1', 'register-solo-r8-c1', 'tiled-t32-r4'];
  const chosenTiming = m.candidates.find((c) => c.config === m.chosen)!;
  assert.ok(
    m.chosen === m.candidates[0]!.config || (defaults.includes(m.chosen) && chosenTiming.ms <= 1.05 * m.candidates[0]!.ms),
    `chosen ${m.chosen}: the fastest or a default within 5%`,
  );
  assert.is(matmulConfigKey(matmulConfigFor(shape.M, shape.K, shape.N)), m.chosen);
  assert.equal(tunedShapeClasses(), ['nn:S-M-S']);
  const again = await tuneMatmul({ shapes: [shape], budgetMs: 20000 });
  assert.is(again.measured.length, 0);
  assert.is(again.alreadyTuned.length, 1);
  const none = await tuneMatmul({ shapes: [{ ...shape, M: 3000 }], budgetMs: 0 });
  assert.is(none.measured.length, 0);
  assert.is(none.remaining.length, 1);
  clearTuning();
});

t('export and import round-trip', () => {
  clearTuning();
  assert.equal(JSON.parse(exportTuning()).adapters, {});
  const text = fakeResults(
    { 'nT:M-S-M': { 'register-solo-r8-c2': 1.5, 'tiled-t32-r4': 2.25 }, 'nn:M-M-M': { 'tiled-t64-r8': 0.5 } },
    { 'nT:M-S-M': FORWARD_NARROW, 'nn:M-M-M': HIDDEN_DX },
  );
  importTuning(text);
  const exported = exportTuning();
  const doc = JSON.parse(exported);
  assert.equal(doc.adapters[tuningAdapterKey()].classes['nT:M-S-M'].ms, { 'register-solo-r8-c2': 1.5, 'tiled-t32-r4': 2.25 });
  assert.equal(doc.adapters[tuningAdapterKey()].classes['nT:M-S-M'].shape, FORWARD_NARROW);
  clearTuning();
  assert.equal(tunedShapeClasses(), []);
  importTuning(doc);
  assert.is(exportTuning(), exported);
  assert.equal(tunedShapeClasses().sort(), ['nT:M-S-M', 'nn:M-M-M']);
  // another adapter's results are carried but not used here
  const other = JSON.parse(exported);
  other.adapters = { 'acme|gpu|x|y|matmul-v1': other.adapters[tuningAdapterKey()] };
  clearTuning();
  importTuning(other);
  assert.equal(tunedShapeClasses(), []);
  assert.ok(exportTuning().includes('acme|gpu|x|y|matmul-v1'));
  // keepExisting leaves held classes alone
  clearTuning();
  importTuning(text);
  const changed = JSON.parse(text);
  changed.adapters[tuningAdapterKey()].classes['nn:M-M-M'].ms = { 'register-solo-r8-c1': 9 };
  importTuning(changed, { keepExisting: true });
  assert.equal(JSON.parse(exportTuning()).adapters[tuningAdapterKey()].classes['nn:M-M-M'].ms, { 'tiled-t64-r8': 0.5 });
  importTuning(changed);
  assert.equal(JSON.parse(exportTuning()).adapters[tuningAdapterKey()].classes['nn:M-M-M'].ms, { 'register-solo-r8-c1': 9 });
  clearTuning();
});

t('a malformed import is a clear error and changes nothing', () => {
  clearTuning();
  const good = JSON.parse(
    fakeResults({ 'nT:M-S-M': { 'register-solo-r8-c2': 1 } }, { 'nT:M-S-M': FORWARD_NARROW }),
  );
  importTuning(good);
  const before = exportTuning();
  const key = tuningAdapterKey();
  const broken = (edit: (d: any) => void) => {
    const d = structuredClone(good);
    edit(d);
    return d;
  };
  const bad: [unknown, RegExp][] = [
    ['{not json', /importTuning: not JSON/],
    [[1, 2], /importTuning: expected an object/],
    [broken((d) => (d.format = 'other')), /format is "other"/],
    [broken((d) => (d.version = 99)), /version 99 is not supported/],
    [broken((d) => (d.adapters = 3)), /"adapters" is not an object/],
    [broken((d) => (d.adapters[key].classes = null)), /classes is not an object/],
    [broken((d) => (d.adapters[key].classes['xx'] = d.adapters[key].classes['nT:M-S-M'])), /"xx" is not a shape class/],
    [broken((d) => (d.adapters[key].classes['nT:M-S-M'].shape.M = -1)), /shape\.M is not a positive integer/],
    [broken((d) => (d.adapters[key].classes['nT:M-S-M'].shape.K = 256)), /not of class nT:M-S-M/],
    [broken((d) => (d.adapters[key].classes['nT:M-S-M'].ms = {})), /ms is not a non-empty object/],
    [broken((d) => (d.adapters[key].classes['nT:M-S-M'].ms['register-solo-r8-c2'] = 'fast')), /is not a positive number/],
    [broken((d) => (d.adapters[key].classes['nT:M-S-M'].ms['register-shared-r30-c1'] = 1)), /rows must be a multiple of 4/],
    [broken((d) => (d.adapters[key].classes['nT:M-S-M'].ms['warp-speed'] = 1)), /"warp-speed" is not a kernel configuration/],
  ];
  for (const [doc, message] of bad) {
    assert.throws(() => importTuning(doc), message, String(message));
    assert.is(exportTuning(), before, `unchanged after ${message}`);
  }
  assert.throws(() => parseMatmulConfig('tiled-t48-r4'), /tile must be 16, 32 or 64/);
  clearTuning();
});

t('the tuning cache file: path from the environment, save, load, a damaged file ignored', async () => {
  assert.is(tuningCachePath({ WEBDIFFUSER_TUNING_CACHE: 'off' }), null);
  assert.is(tuningCachePath({ WEBDIFFUSER_TUNING_CACHE: '/x/y.json' }), '/x/y.json');
  assert.match(tuningCachePath({ XDG_CACHE_HOME: '/c' }) ?? '', /webdiffuser[\\/]matmul-tuning\.json$/);
  const dir = mkdtempSync(join(tmpdir(), 'wd-tune-'));
  try {
    const path = join(dir, 'sub', 'tuning.json');
    clearTuning();
    importTuning(fakeResults({ 'nT:M-S-M': { 'register-solo-r8-c2': 1 } }, { 'nT:M-S-M': FORWARD_NARROW }));
    assert.is(saveMatmulTuning(path), path);
    const saved = readFileSync(path, 'utf8');
    clearTuning();
    const loaded = await prepareMatmulTuning({ path, budgetMs: 0 });
    assert.is(loaded.classes, 1);
    assert.equal(tunedShapeClasses(), ['nT:M-S-M']);
    assert.is(matmulConfigKey(matmulConfigFor(256, 17, 256, { transB: true })), 'register-solo-r8-c2');
    clearTuning();
    writeFileSync(path, '{"format": "webdiffuser-matmul-tuning", "version": 1, "adapters": [');
    const lines: string[] = [];
    const damaged = await prepareMatmulTuning({ path, budgetMs: 0, log: (l) => lines.push(l) });
    assert.is(damaged.classes, 0);
    assert.ok(lines.some((l) => l.includes('ignored') && l.includes('not JSON')), lines.join('\n'));
    writeFileSync(path, saved);
    await prepareMatmulTuning({ path, budgetMs: 0 });
    assert.equal(tunedShapeClasses(), ['nT:M-S-M']);
  } finally {
    clearTuning();
    rmSync(dir, { recursive: true, force: true });
  }
});

t.run();

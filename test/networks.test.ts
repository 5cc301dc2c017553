import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { act64, allClose, freshSeed, gpu, gradCheck, randn, randu, rng } from './helpers.ts';
import { backward } from '../engine/autograd.ts';
import { HostRng } from '../engine/host-rng.ts';
import type { Module } from '../engine/nn.ts';
import { loadModule, saveModule } from '../engine/safetensors.ts';
import { tensor, tidy, type Tensor } from '../engine/tensor.ts';
import { DQLNoiseNet, DTQLDenoiserNet, IDQLScoreNet } from '../algorithms/diffusion/networks.ts';
import type { NoiseNet } from '../algorithms/diffusion/models.ts';

const t = suite('networks');
t.before(gpu);

// ---- float64 references, reading weights by state-dict name ----

type Weights = Map<string, ArrayLike<number>>;

async function weightsOf(m: Module): Promise<Map<string, Float64Array>> {
  const out = new Map<string, Float64Array>();
  for (const { name, tensor: p } of m.namedTensors()) out.set(name, Float64Array.from((await p.read()) as Float32Array));
  return out;
}

function get(w: Weights, name: string): ArrayLike<number> {
  const v = w.get(name);
  if (!v) throw new Error(`reference: no tensor "${name}"`);
  return v;
}

/** act(x W^T + b) with W = w[name.weight] [outF, inF]. */
function linear64(w: Weights, name: string, x: ArrayLike<number>, rows: number, inF: number, outF: number, act: 'identity' | 'mish' = 'identity'): Float64Array {
  const W = get(w, `${name}.weight`);
  const b = get(w, `${name}.bias`);
  const y = new Float64Array(rows * outF);
  for (let r = 0; r < rows; r++) {
    for (let o = 0; o < outF; o++) {
      let s = b[o]!;
      for (let i = 0; i < inF; i++) s += x[r * inF + i]! * W[o * inF + i]!;
      y[r * outF + o] = act64(act, s);
    }
  }
  return y;
}

function concat64(rows: number, parts: { data: ArrayLike<number>; width: number }[]): { data: Float64Array; width: number } {
  const width = parts.reduce((s, p) => s + p.width, 0);
  const data = new Float64Array(rows * width);
  for (let r = 0; r < rows; r++) {
    let off = 0;
    for (const p of parts) {
      for (let j = 0; j < p.width; j++) data[r * width + off + j] = p.data[r * p.width + j]!;
      off += p.width;
    }
  }
  return { data, width };
}

/** With roundArg the argument is rounded as the kernel forms it in f32; finite differences need it unrounded. */
function fourier64(ts: ArrayLike<number>, freqs: ArrayLike<number>, order: 'sin-cos' | 'cos-sin', freqScale: number, roundArg: boolean): Float64Array {
  const h = freqs.length;
  const f32 = roundArg ? Math.fround : (v: number) => v;
  const out = new Float64Array(ts.length * 2 * h);
  for (let b = 0; b < ts.length; b++) {
    for (let j = 0; j < h; j++) {
      const arg = f32(f32(ts[b]! * freqs[j]!) * f32(freqScale));
      out[b * 2 * h + j] = order === 'sin-cos' ? Math.sin(arg) : Math.cos(arg);
      out[b * 2 * h + h + j] = order === 'sin-cos' ? Math.cos(arg) : Math.sin(arg);
    }
  }
  return out;
}

function layerNorm64(x: ArrayLike<number>, rows: number, dim: number, g: ArrayLike<number>, b: ArrayLike<number>): Float64Array {
  const y = new Float64Array(rows * dim);
  for (let r = 0; r < rows; r++) {
    let mu = 0;
    for (let i = 0; i < dim; i++) mu += x[r * dim + i]!;
    mu /= dim;
    let v = 0;
    for (let i = 0; i < dim; i++) v += (x[r * dim + i]! - mu) ** 2;
    v /= dim;
    const inv = 1 / Math.sqrt(v + 1e-5);
    for (let i = 0; i < dim; i++) y[r * dim + i] = (x[r * dim + i]! - mu) * inv * g[i]! + b[i]!;
  }
  return y;
}

/** Frequencies of the sinusoidal embedding: exp(-i ln(1e4) / (half - shift)), rounded to f32 as stored. */
function sinusoidalFreqs(dim: number, shift: 0 | 1): Float64Array {
  const half = dim / 2;
  return Float64Array.from({ length: half }, (_, i) => Math.fround(Math.exp((-i * Math.log(10000)) / (half - shift))));
}

interface Dims {
  rows: number;
  stateDim: number;
  actionDim: number;
}

/** Diffusion-QL's MLP (variant 'edp': EDP's embedding and input order). */
function dql64(w: Weights, d: Dims & { hidden: number; depth: number; timeDim: number; variant: 'dql' | 'edp' }, x: ArrayLike<number>, ts: ArrayLike<number>, s: ArrayLike<number>, roundArg = true): Float64Array {
  const { rows, stateDim: S, actionDim: D, hidden: H, timeDim: T } = d;
  const edp = d.variant === 'edp';
  const emb = fourier64(ts, sinusoidalFreqs(T, edp ? 0 : 1), edp ? 'cos-sin' : 'sin-cos', 1, roundArg);
  const tEmb = linear64(w, 'time_mlp.3', linear64(w, 'time_mlp.1', emb, rows, T, 2 * T, 'mish'), rows, 2 * T, T);
  const parts = edp
    ? [{ data: s, width: S }, { data: x, width: D }, { data: tEmb, width: T }]
    : [{ data: x, width: D }, { data: tEmb, width: T }, { data: s, width: S }];
  let h = concat64(rows, parts.filter((p) => p.width > 0));
  for (let i = 0; i < d.depth; i++) h = { data: linear64(w, `mid_layer.${2 * i}`, h.data, rows, h.width, H, 'mish'), width: H };
  return linear64(w, 'final_layer', h.data, rows, H, D);
}

/** SRPO's ScoreNet_IDQL in eval mode (no dropout). */
function idql64(w: Weights, d: Dims & { hidden: number; blocks: number; embedDim: number; condDim: number }, x: ArrayLike<number>, ts: ArrayLike<number>, s: ArrayLike<number>, roundArg = true): Float64Array {
  const { rows, stateDim: S, actionDim: D, hidden: H, embedDim: E, condDim: C } = d;
  const emb = fourier64(ts, get(w, 'embed.0.W'), 'sin-cos', 2 * Math.PI, roundArg);
  const tEmb = linear64(w, 'cond_model.2', linear64(w, 'cond_model.0', emb, rows, E, C, 'mish'), rows, C, C);
  const input = concat64(rows, [{ data: x, width: D }, { data: s, width: S }, { data: tEmb, width: C }].filter((p) => p.width > 0));
  let h = linear64(w, 'main.fc', input.data, rows, input.width, H);
  for (let k = 0; k < d.blocks; k++) {
    const p = `main.blocks.${k}`;
    const n = layerNorm64(h, rows, H, get(w, `${p}.layer_norm.weight`), get(w, `${p}.layer_norm.bias`));
    const inner = linear64(w, `${p}.fc2`, linear64(w, `${p}.fc1`, n, rows, H, 4 * H, 'mish'), rows, 4 * H, H);
    h = h.map((v, i) => v + inner[i]!);
  }
  return linear64(w, 'main.out_fc', h.map((v) => act64('mish', v)), rows, H, D);
}

/** DTQL's ScoreNetwork F. */
function dtql64(w: Weights, d: Dims & { hidden: number; depth: number; timeDim: number }, x: ArrayLike<number>, ts: ArrayLike<number>, s: ArrayLike<number>, roundArg = true): Float64Array {
  const { rows, stateDim: S, actionDim: D, hidden: H, timeDim: T } = d;
  const emb = fourier64(ts, sinusoidalFreqs(T, 1), 'sin-cos', 1, roundArg);
  const tEmb = linear64(w, 'embed.3', linear64(w, 'embed.1', emb, rows, T, 2 * T, 'mish'), rows, 2 * T, T);
  const input = concat64(rows, [{ data: x, width: D }, { data: s, width: S }, { data: tEmb, width: T }].filter((p) => p.width > 0));
  let h = linear64(w, 'layers.layers.0', input.data, rows, input.width, H);
  for (let i = 1; i <= d.depth; i++) h = linear64(w, `layers.layers.${2 * i - 1}`, h, rows, H, H, 'mish');
  return linear64(w, `layers.layers.${2 * d.depth + 1}`, h, rows, H, D);
}

/** Overwrites every parameter (not buffers) with N(0, scale^2) values, so LayerNorm gains and biases matter. */
function randomize(m: Module, r: () => number, scale = 0.5): void {
  for (const { tensor: p } of m.namedParameters()) p.set(randn(p.size, r, scale));
}

async function forwardHost(net: NoiseNet, x: Float32Array, ts: Float32Array, s: Float32Array | null, rows: number, D: number, S: number): Promise<Float32Array> {
  const y = tidy(() => net.forward(tensor(x, [rows, D]), tensor(ts, [rows]), s && S > 0 ? tensor(s, [rows, S]) : null));
  assert.equal(y.shape, [rows, D], 'output shape');
  const out = (await y.read()) as Float32Array;
  y.dispose();
  return out;
}

// ---- structure: names and parameter counts ----

function linearNames(prefix: string): string[] {
  return [`${prefix}.weight`, `${prefix}.bias`];
}

t('parameter names follow the PyTorch state dicts; counts equal the PyTorch models (by formula)', () => {
  const lin = (i: number, o: number) => i * o + o;
  for (const [S, D] of [[17, 6], [11, 3], [2, 2], [0, 2]] as const) {
    const dql = new DQLNoiseNet(S, D);
    assert.equal(dql.namedTensors().map((e) => e.name), [
      ...linearNames('time_mlp.1'), ...linearNames('time_mlp.3'),
      ...linearNames('mid_layer.0'), ...linearNames('mid_layer.2'), ...linearNames('mid_layer.4'),
      ...linearNames('final_layer'),
    ]);
    // agents/model.py MLP(state_dim, action_dim, t_dim=16): sum(p.numel() for p in model.parameters())
    const dqlTorch = lin(16, 32) + lin(32, 16) + lin(S + D + 16, 256) + 2 * lin(256, 256) + lin(256, D);
    assert.is(dql.numParameters(), dqlTorch, `DQL S=${S} D=${D}`);
    assert.is(new DQLNoiseNet(S, D, { variant: 'edp' }).numParameters(), dqlTorch, 'EDP has the same layer sizes');

    const dtql = new DTQLDenoiserNet(S, D);
    assert.equal(dtql.namedTensors().map((e) => e.name), [
      ...linearNames('embed.1'), ...linearNames('embed.3'),
      ...[0, 1, 3, 5, 7].flatMap((i) => linearNames(`layers.layers.${i}`)),
    ]);
    // ScoreNetwork(action_dim, hidden_dim=256, time_embed_dim=16, cond_dim, num_hidden_layers=4, output_dim)
    const dtqlTorch = lin(16, 32) + lin(32, 16) + lin(D + S + 16, 256) + 3 * lin(256, 256) + lin(256, D);
    assert.is(dtql.numParameters(), dtqlTorch, `DTQL S=${S} D=${D}`);
  }
  // DTQL's toy network: hidden 128, time_embed_dim 4, cond_dim 1
  assert.is(new DTQLDenoiserNet(1, 2, { hidden: 128, timeDim: 4 }).numParameters(), lin(4, 8) + lin(8, 4) + lin(2 + 1 + 4, 128) + 3 * lin(128, 128) + lin(128, 2));

  const S = 11, D = 3, blocks = 3;
  const idql = new IDQLScoreNet(S, D);
  const names = idql.namedTensors().map((e) => e.name);
  const blockNames = (k: number) => [
    `main.blocks.${k}.layer_norm.weight`, `main.blocks.${k}.layer_norm.bias`,
    ...linearNames(`main.blocks.${k}.fc1`), ...linearNames(`main.blocks.${k}.fc2`),
  ];
  assert.equal(names, [
    'embed.0.W',
    ...linearNames('main.fc'), ...[0, 1, 2].flatMap(blockNames), ...linearNames('main.out_fc'),
    ...linearNames('cond_model.0'), ...linearNames('cond_model.2'),
  ]);
  // SRPO's count includes W (an nn.Parameter with requires_grad=False) and each block's unused `residual`
  // Linear(256, 256); here W is a buffer and the unused layer does not exist
  const block = 2 * 256 + lin(256, 1024) + lin(1024, 256);
  const idqlTorch = 32 + lin(D + S + 128, 256) + blocks * (block + lin(256, 256)) + lin(256, D) + lin(64, 128) + lin(128, 128);
  assert.is(idql.numParameters(), idqlTorch - 32 - blocks * lin(256, 256));
  assert.equal(idql.namedBuffers().map((e) => e.name), ['embed.0.W']);
});

t('default initialisation is PyTorch Linear init: U(+-1/sqrt(fan_in)) for weights and biases', async () => {
  const net = new DTQLDenoiserNet(5, 3, { rng: new HostRng(freshSeed()) });
  for (const { name, tensor: p } of net.namedParameters()) {
    const fanIn = name.endsWith('.weight') ? p.shape[1]! : (net.namedParameters().find((e) => e.name === name.replace(/bias$/, 'weight'))!.tensor.shape[1]!);
    const v = (await p.read()) as Float32Array;
    const bound = 1 / Math.sqrt(fanIn);
    const maxAbs = v.reduce((m, x) => Math.max(m, Math.abs(x)), 0);
    assert.ok(maxAbs <= bound && (v.length < 200 || maxAbs > 0.9 * bound), `${name}: max |w| ${maxAbs}, bound ${bound}`);
  }
  // the same rng seed reproduces the network
  const seed = freshSeed();
  const a = await weightsOf(new IDQLScoreNet(3, 2, { hidden: 8, blocks: 1, rng: new HostRng(seed) }));
  const b = await weightsOf(new IDQLScoreNet(3, 2, { hidden: 8, blocks: 1, rng: new HostRng(seed) }));
  for (const [name, v] of a) assert.equal(Array.from(v), Array.from(b.get(name)!), name);
});

t('shape and input validation', () => {
  const net = new DQLNoiseNet(3, 2, { hidden: 8 });
  tidy(() => {
    const x = tensor(new Float32Array(8), [4, 2]);
    const time = tensor(new Float32Array(4), [4]);
    const s = tensor(new Float32Array(12), [4, 3]);
    assert.equal(net.forward(x, time, s).shape, [4, 2]);
    assert.equal(net.forward(x, tensor(new Float32Array(4), [4, 1]), s).shape, [4, 2], 'time as [B, 1]');
    assert.throws(() => net.forward(x, time, null), /cond is null/);
    assert.throws(() => net.forward(x, time, tensor(new Float32Array(8), [4, 2])), /cond must be \[4, 3\]/);
    assert.throws(() => net.forward(tensor(new Float32Array(12), [4, 3]), time, s), /x must be \[B, 2\]/);
    assert.throws(() => net.forward(x, tensor(new Float32Array(3), [3]), s), /time must be \[4\]/);
    const free = new DTQLDenoiserNet(0, 2, { hidden: 8, timeDim: 4 });
    assert.equal(free.forward(x, time, null).shape, [4, 2], 'stateDim 0 takes cond null');
    assert.throws(() => free.forward(x, time, s), /stateDim 0/);
  });
  assert.throws(() => new DQLNoiseNet(3, 2, { variant: 'ddpm' as 'dql' }), /unknown variant/);
  assert.throws(() => new IDQLScoreNet(-1, 2), /stateDim/);
  assert.throws(() => new DTQLDenoiserNet(1, 0), /actionDim/);
});

// ---- forward values against float64 ----

t('DQLNoiseNet (dql and edp variants, with and without state) matches its float64 reference', async () => {
  const r = rng(freshSeed());
  for (const variant of ['dql', 'edp'] as const) {
    for (const [rows, S, D] of [[5, 3, 2], [1, 0, 3], [33, 7, 6]] as const) {
      const dims = { rows, stateDim: S, actionDim: D, hidden: 8, depth: 3, timeDim: 16, variant };
      const net = new DQLNoiseNet(S, D, { variant, hidden: 8, rng: new HostRng(freshSeed()) });
      randomize(net, r);
      const x = randn(rows * D, r);
      const ts = Float32Array.from({ length: rows }, () => Math.floor(r() * 100));
      const s = randn(rows * S, r);
      const got = await forwardHost(net, x, ts, s, rows, D, S);
      const want = dql64(await weightsOf(net), dims, x, ts, s);
      allClose(got, want, 1e-4, 1e-5, `DQL ${variant} rows=${rows} S=${S} D=${D}`);
    }
  }
});

t('IDQLScoreNet (eval) matches its float64 reference', async () => {
  const r = rng(freshSeed());
  for (const [rows, S, D, blocks] of [[5, 3, 2, 2], [1, 0, 2, 1], [17, 4, 3, 3]] as const) {
    const dims = { rows, stateDim: S, actionDim: D, hidden: 8, blocks, embedDim: 8, condDim: 6 };
    const net = new IDQLScoreNet(S, D, { hidden: 8, blocks, embedDim: 8, condDim: 6, rng: new HostRng(freshSeed()) }).eval();
    randomize(net, r);
    const x = randn(rows * D, r);
    const ts = randu(rows, r, 1e-3, 1);
    const s = randn(rows * S, r);
    const got = await forwardHost(net, x, ts, s, rows, D, S);
    const want = idql64(await weightsOf(net), dims, x, ts, s);
    allClose(got, want, 1e-4, 1e-5, `IDQL rows=${rows} S=${S} D=${D} blocks=${blocks}`);
  }
});

t('DTQLDenoiserNet matches its float64 reference (no activation after the first layer)', async () => {
  const r = rng(freshSeed());
  for (const [rows, S, D, timeDim] of [[5, 1, 2, 4], [1, 0, 2, 16], [20, 6, 3, 16]] as const) {
    const dims = { rows, stateDim: S, actionDim: D, hidden: 8, depth: 3, timeDim };
    const net = new DTQLDenoiserNet(S, D, { hidden: 8, timeDim, rng: new HostRng(freshSeed()) });
    randomize(net, r);
    const x = randn(rows * D, r);
    // c_noise = ln(sigma)/4 for sigma in [0.002, 80]
    const ts = Float32Array.from({ length: rows }, () => Math.log(0.002 * (80 / 0.002) ** r()) / 4);
    const s = randn(rows * S, r);
    const got = await forwardHost(net, x, ts, s, rows, D, S);
    const w = await weightsOf(net);
    allClose(got, dtql64(w, dims, x, ts, s), 1e-4, 1e-5, `DTQL rows=${rows} S=${S} D=${D}`);
    // the quirk is real: putting a Mish after layer 0 changes the output
    const mishFirst = (() => {
      const alt = new Map(w);
      const emb = fourier64(ts, sinusoidalFreqs(timeDim, 1), 'sin-cos', 1, true);
      const tEmb = linear64(alt, 'embed.3', linear64(alt, 'embed.1', emb, rows, timeDim, 2 * timeDim, 'mish'), rows, 2 * timeDim, timeDim);
      const input = concat64(rows, [{ data: x, width: D }, { data: s, width: S }, { data: tEmb, width: timeDim }].filter((p) => p.width > 0));
      let h = linear64(alt, 'layers.layers.0', input.data, rows, input.width, 8, 'mish');
      for (let i = 1; i <= dims.depth; i++) h = linear64(alt, `layers.layers.${2 * i - 1}`, h, rows, 8, 8, 'mish');
      return linear64(alt, 'layers.layers.7', h, rows, 8, D);
    })();
    const diff = mishFirst.reduce((m, v, i) => Math.max(m, Math.abs(v - got[i]!)), 0);
    assert.ok(diff > 1e-3, `a Mish after the first layer would differ (max diff ${diff})`);
  }
});

t('full-size networks (default widths) match their float64 references', async () => {
  const r = rng(freshSeed());
  const S = 11, D = 3;
  {
    const rows = 257;
    const net = new DQLNoiseNet(S, D, { rng: new HostRng(freshSeed()) });
    const x = randn(rows * D, r);
    const ts = Float32Array.from({ length: rows }, () => Math.floor(r() * 5));
    const s = randn(rows * S, r);
    const want = dql64(await weightsOf(net), { rows, stateDim: S, actionDim: D, hidden: 256, depth: 3, timeDim: 16, variant: 'dql' }, x, ts, s);
    allClose(await forwardHost(net, x, ts, s, rows, D, S), want, 1e-4, 1e-5, 'DQL 256 x 3, batch 257');
  }
  {
    const rows = 33;
    const net = new IDQLScoreNet(S, D, { rng: new HostRng(freshSeed()) }).eval();
    const x = randn(rows * D, r);
    const ts = randu(rows, r, 1e-3, 1);
    const s = randn(rows * S, r);
    const want = idql64(await weightsOf(net), { rows, stateDim: S, actionDim: D, hidden: 256, blocks: 3, embedDim: 64, condDim: 128 }, x, ts, s);
    allClose(await forwardHost(net, x, ts, s, rows, D, S), want, 1e-4, 1e-5, 'ScoreNet_IDQL 256, 3 blocks, batch 33');
  }
  {
    const rows = 65;
    const net = new DTQLDenoiserNet(S, D, { rng: new HostRng(freshSeed()) });
    const x = randn(rows * D, r);
    const ts = randu(rows, r, -1.5, 1.1);
    const s = randn(rows * S, r);
    const want = dtql64(await weightsOf(net), { rows, stateDim: S, actionDim: D, hidden: 256, depth: 3, timeDim: 16 }, x, ts, s);
    allClose(await forwardHost(net, x, ts, s, rows, D, S), want, 1e-4, 1e-5, 'DTQL F 256, batch 65');
  }
});

// ---- gradients ----

/** Checks d(sum(out * w))/d(param) for a few entries of every parameter against finite differences of the reference. */
async function paramGradCheck(
  net: Module & NoiseNet,
  ref: (w: Weights) => Float64Array,
  x: Float32Array, ts: Float32Array, s: Float32Array, rows: number, D: number, S: number,
  r: () => number, what: string,
): Promise<void> {
  const w0 = await weightsOf(net);
  const outW = randn(rows * D, r);
  // earlier backward passes (e.g. a gradCheck on the inputs) leave gradients on the parameters
  for (const p of net.parameters()) {
    p.grad?.dispose();
    p.grad = null;
  }
  tidy(() => {
    const y = net.forward(tensor(x, [rows, D]), tensor(ts, [rows]), S > 0 ? tensor(s, [rows, S]) : null);
    backward(y, tensor(outW, y.shape));
  });
  const objective = (w: Weights) => ref(w).reduce((acc, v, i) => acc + v * outW[i]!, 0);
  for (const { name, tensor: p } of net.namedParameters()) {
    assert.ok(p.grad, `${what}: ${name} received a gradient`);
    const g = (await p.grad!.read()) as Float32Array;
    p.grad!.dispose();
    p.grad = null;
    const values = w0.get(name)!;
    const ana: number[] = [];
    const num: number[] = [];
    for (let probe = 0; probe < 3; probe++) {
      const j = Math.floor(r() * values.length);
      const orig = values[j]!;
      const h = 1e-5 * Math.max(1, Math.abs(orig));
      values[j] = orig + h;
      const fp = objective(w0);
      values[j] = orig - h;
      const fm = objective(w0);
      values[j] = orig;
      num.push((fp - fm) / (2 * h));
      ana.push(g[j]!);
    }
    allClose(ana, num, 2e-3, 2e-4, `${what}: d/d ${name}`);
  }
}

t('gradients reach x, the state, the time input and every parameter (finite differences)', async () => {
  const r = rng(freshSeed());
  const rows = 4, S = 3, D = 2;
  const x = randn(rows * D, r);
  const s = randn(rows * S, r);

  // Diffusion-QL and EDP: time is a step index, small enough for finite differences in t
  for (const variant of ['dql', 'edp'] as const) {
    const dims = { rows, stateDim: S, actionDim: D, hidden: 6, depth: 2, timeDim: 8, variant };
    const net = new DQLNoiseNet(S, D, { variant, hidden: 6, depth: 2, timeDim: 8, rng: new HostRng(freshSeed()) });
    randomize(net, r);
    const w = await weightsOf(net);
    const ts = randu(rows, r, 0, 5);
    await gradCheck(
      (xt, tt, st) => net.forward(xt, tt, st),
      (xv, tv, sv) => dql64(w, dims, xv, tv, sv, false),
      [{ data: x, shape: [rows, D] }, { data: ts, shape: [rows] }, { data: s, shape: [rows, S] }],
      { what: `DQL ${variant} inputs`, rtol: 2e-3, atol: 2e-4 },
    );
    await paramGradCheck(net, (wv) => dql64(wv, dims, x, ts, s, false), x, ts, s, rows, D, S, r, `DQL ${variant}`);
  }

  // ScoreNet_IDQL in eval mode, with a small Fourier scale so the time derivative is well conditioned
  {
    const dims = { rows, stateDim: S, actionDim: D, hidden: 6, blocks: 2, embedDim: 8, condDim: 6 };
    const net = new IDQLScoreNet(S, D, { hidden: 6, blocks: 2, embedDim: 8, condDim: 6, fourierScale: 1, rng: new HostRng(freshSeed()) }).eval();
    randomize(net, r);
    const w = await weightsOf(net);
    const ts = randu(rows, r, 0.05, 1);
    await gradCheck(
      (xt, tt, st) => net.forward(xt, tt, st),
      (xv, tv, sv) => idql64(w, dims, xv, tv, sv, false),
      [{ data: x, shape: [rows, D] }, { data: ts, shape: [rows] }, { data: s, shape: [rows, S] }],
      { what: 'IDQL inputs', rtol: 2e-3, atol: 2e-4 },
    );
    await paramGradCheck(net, (wv) => idql64(wv, dims, x, ts, s, false), x, ts, s, rows, D, S, r, 'IDQL');
    assert.is(net.fourier.W.grad, null, 'the fixed Fourier frequencies get no gradient');
  }

  // DTQL's F
  {
    const dims = { rows, stateDim: S, actionDim: D, hidden: 6, depth: 3, timeDim: 4 };
    const net = new DTQLDenoiserNet(S, D, { hidden: 6, timeDim: 4, rng: new HostRng(freshSeed()) });
    randomize(net, r);
    const w = await weightsOf(net);
    const ts = randu(rows, r, -1.5, 1.1);
    await gradCheck(
      (xt, tt, st) => net.forward(xt, tt, st),
      (xv, tv, sv) => dtql64(w, dims, xv, tv, sv, false),
      [{ data: x, shape: [rows, D] }, { data: ts, shape: [rows] }, { data: s, shape: [rows, S] }],
      { what: 'DTQL inputs', rtol: 2e-3, atol: 2e-4 },
    );
    await paramGradCheck(net, (wv) => dtql64(wv, dims, x, ts, s, false), x, ts, s, rows, D, S, r, 'DTQL');
  }
});

// ---- modes and checkpoints ----

t('IDQLScoreNet: eval() disables dropout (deterministic), train() does not', async () => {
  const r = rng(freshSeed());
  const rows = 16, S = 3, D = 2;
  const net = new IDQLScoreNet(S, D, { hidden: 16, blocks: 2, rng: new HostRng(freshSeed()) });
  const x = randn(rows * D, r);
  const ts = randu(rows, r, 1e-3, 1);
  const s = randn(rows * S, r);
  assert.ok(net.training, 'modules start in training mode');
  const train1 = await forwardHost(net, x, ts, s, rows, D, S);
  const train2 = await forwardHost(net, x, ts, s, rows, D, S);
  net.eval();
  const eval1 = await forwardHost(net, x, ts, s, rows, D, S);
  const eval2 = await forwardHost(net, x, ts, s, rows, D, S);
  assert.equal(Array.from(eval1), Array.from(eval2), 'eval is deterministic');
  allClose(eval1, idql64(await weightsOf(net), { rows, stateDim: S, actionDim: D, hidden: 16, blocks: 2, embedDim: 64, condDim: 128 }, x, ts, s), 1e-4, 1e-5, 'eval is the dropout-free network');
  const differs = (a: Float32Array, b: Float32Array) => a.some((v, i) => Math.abs(v - b[i]!) > 1e-6);
  assert.ok(differs(train1, train2), 'training mode draws a fresh dropout mask per call');
  assert.ok(differs(train1, eval1), 'training mode differs from eval');
  net.train();
  assert.ok(differs(await forwardHost(net, x, ts, s, rows, D, S), eval1), 'train() turns dropout back on');
  // no dropout in the MLP networks: train and eval agree
  const dql = new DQLNoiseNet(S, D, { hidden: 8 });
  const a = await forwardHost(dql, x, Float32Array.from(ts, (v) => Math.floor(v * 5)), s, rows, D, S);
  dql.eval();
  const b = await forwardHost(dql, x, Float32Array.from(ts, (v) => Math.floor(v * 5)), s, rows, D, S);
  assert.equal(Array.from(a), Array.from(b));
});

t('a checkpoint saved from one network loads into another of the same shape (names line up)', async () => {
  const r = rng(freshSeed());
  const rows = 3, S = 2, D = 2;
  const x = randn(rows * D, r);
  const ts = randu(rows, r, 0.01, 1);
  const s = randn(rows * S, r);
  const make = [
    (seed: number) => new DQLNoiseNet(S, D, { hidden: 8, rng: new HostRng(seed) }),
    (seed: number) => new IDQLScoreNet(S, D, { hidden: 8, blocks: 1, rng: new HostRng(seed) }).eval(),
    (seed: number) => new DTQLDenoiserNet(S, D, { hidden: 8, timeDim: 4, rng: new HostRng(seed) }),
  ];
  for (const build of make) {
    const a = build(freshSeed());
    const b = build(freshSeed());
    const ya = await forwardHost(a, x, ts, s, rows, D, S);
    assert.ok((await forwardHost(b, x, ts, s, rows, D, S)).some((v, i) => v !== ya[i]), 'differently seeded networks differ');
    loadModule(b, await saveModule(a));
    assert.equal(Array.from(await forwardHost(b, x, ts, s, rows, D, S)), Array.from(ya), `${a.constructor.name}: same outputs after loading`);
  }
});

t.run();

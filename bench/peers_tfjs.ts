// TensorFlow.js peers of bench/peers.ts: the same training steps written with tfjs ops (WebGPU backend on the
// engine's adapter, or the wasm backend), the networks, batch sizes, optimisers and number of parameter updates
// of the engine's steps. tfjs is an optional dependency: it is imported at run time, typed here by the small
// part of its API these steps use, and a backend that cannot load is reported as skipped with the reason.
import { registerHooks } from 'node:module';
import { CHECK_ROWS, checkBeta, checkBias, checkGamma, checkInputs, checkWeight, type DdpmTable, type DpmUpdate, type PeerTables } from './peers_plan.ts';

/** The tfjs tensor API used below (a structural subset of @tensorflow/tfjs-core 4.x). */
interface TfTensor {
  readonly shape: number[];
  data(): Promise<ArrayLike<number>>;
  dispose(): void;
}
interface TfVariable extends TfTensor {
  readonly name: string;
  assign(value: TfTensor): void;
}
type TensorArg = TfTensor | number;
interface TfOptimizer {
  applyGradients(grads: Record<string, TfTensor>): void;
  dispose(): void;
}
interface Tf {
  version_core: string;
  setBackend(name: string): Promise<boolean>;
  ready(): Promise<void>;
  getBackend(): string;
  env(): { set(flag: string, value: unknown): void; getAsync(flag: string): Promise<unknown> };
  tidy<T extends TfTensor | Record<string, TfTensor> | void>(fn: () => T): T;
  dispose(x: unknown): void;
  variable(initial: TfTensor, trainable?: boolean): TfVariable;
  keep<T extends TfTensor>(x: T): T;
  randomNormal(shape: number[], mean?: number, std?: number): TfTensor;
  randomUniform(shape: number[], min?: number, max?: number, dtype?: 'float32' | 'int32'): TfTensor;
  zeros(shape: number[]): TfTensor;
  ones(shape: number[]): TfTensor;
  matMul(a: TfTensor, b: TfTensor): TfTensor;
  fused: { matMul(o: { a: TfTensor; b: TfTensor; bias?: TfTensor; activation?: 'linear' | 'relu' }): TfTensor };
  add(a: TensorArg, b: TensorArg): TfTensor;
  sub(a: TensorArg, b: TensorArg): TfTensor;
  mul(a: TensorArg, b: TensorArg): TfTensor;
  div(a: TensorArg, b: TensorArg): TfTensor;
  minimum(a: TensorArg, b: TensorArg): TfTensor;
  clipByValue(x: TfTensor, lo: number, hi: number): TfTensor;
  log(x: TfTensor): TfTensor;
  abs(x: TfTensor): TfTensor;
  cast(x: TfTensor, dtype: 'float32' | 'int32'): TfTensor;
  tensor1d(values: number[], dtype?: 'float32' | 'int32'): TfTensor;
  fill(shape: number[], value: number): TfTensor;
  zerosLike(x: TfTensor): TfTensor;
  customGrad(f: (x: TfTensor) => { value: TfTensor; gradFunc: (dy: TfTensor) => TfTensor }): (x: TfTensor) => TfTensor;
  relu(x: TfTensor): TfTensor;
  neg(x: TfTensor): TfTensor;
  tanh(x: TfTensor): TfTensor;
  softplus(x: TfTensor): TfTensor;
  sin(x: TfTensor): TfTensor;
  cos(x: TfTensor): TfTensor;
  exp(x: TfTensor): TfTensor;
  sqrt(x: TfTensor): TfTensor;
  rsqrt(x: TfTensor): TfTensor;
  square(x: TfTensor): TfTensor;
  concat(xs: TfTensor[], axis?: number): TfTensor;
  split(x: TfTensor, sizes: number[], axis?: number): TfTensor[];
  gather(x: TfTensor, indices: TfTensor, axis?: number): TfTensor;
  reshape(x: TfTensor, shape: number[]): TfTensor;
  sum(x: TfTensor, axis?: number, keepDims?: boolean): TfTensor;
  mean(x: TfTensor, axis?: number, keepDims?: boolean): TfTensor;
  moments(x: TfTensor, axis?: number, keepDims?: boolean): { mean: TfTensor; variance: TfTensor };
  dropout(x: TfTensor, rate: number): TfTensor;
  grad(f: (x: TfTensor) => TfTensor): (x: TfTensor) => TfTensor;
  variableGrads(f: () => TfTensor, varList?: TfVariable[]): { value: TfTensor; grads: Record<string, TfTensor> };
  train: { adam(lr: number, beta1?: number, beta2?: number, epsilon?: number): TfOptimizer };
}

export type TfjsBackend = 'webgpu' | 'wasm';

/** A loaded backend, or why it could not be loaded. */
export type TfjsLoad = { tf: Tf; backend: TfjsBackend; version: string; detail: string } | { skipped: string };

// Dawn's GPU object must stay referenced while any device made from it lives (the process crashes otherwise)
let dawnGpu: GPU | null = null;

function message(err: unknown): string {
  return err instanceof Error ? err.message.split('\n')[0]! : String(err);
}

const TFJS_CORE = '@tensorflow/tfjs-core';
let gradientsRegistered = false;

/**
 * tfjs-core's Node bundle registers no gradients (the @tensorflow/tfjs umbrella bundles them, along with
 * layers, converter, data and WebGL: some 220 MB more to install). They are registered from core's own ES
 * module files, whose relative imports leave out the extension: a resolve hook scoped to that folder adds it.
 * The gradient registry and the engine live on the global object, so the bundle's engine finds them.
 */
async function registerGradients(): Promise<void> {
  if (gradientsRegistered) return;
  registerHooks({
    resolve(specifier, context, next) {
      const inCore = context.parentURL?.includes(`/${TFJS_CORE}/dist/`) ?? false;
      if (inCore && specifier.startsWith('.') && !specifier.endsWith('.js')) return next(`${specifier}.js`, context);
      return next(specifier, context);
    },
  });
  await import(`${TFJS_CORE}/dist/register_all_gradients.js`);
  gradientsRegistered = true;
}

async function importTf(): Promise<Tf> {
  // a variable specifier keeps the type checker from requiring the optional package
  const tf = (await import(TFJS_CORE)) as Tf;
  await registerGradients();
  return tf;
}

/**
 * The WebGPU backend registers itself only when navigator.gpu exists at import time, so the GPU object goes
 * there first: the engine's own (it reads navigator.gpu too) when set, else a Dawn instance from `webgpu`.
 */
export async function exposeNavigatorGpu(): Promise<void> {
  const g = globalThis as { navigator?: { gpu?: GPU } };
  if (g.navigator?.gpu) return;
  const { create, globals } = (await import('webgpu')) as { create(flags: string[]): GPU; globals: object };
  Object.assign(globalThis, globals);
  dawnGpu = create([]);
  if (g.navigator) Object.defineProperty(g.navigator, 'gpu', { value: dawnGpu, configurable: true });
  else Object.defineProperty(globalThis, 'navigator', { value: { gpu: dawnGpu }, configurable: true, writable: true });
}

export async function loadTfjs(backend: TfjsBackend): Promise<TfjsLoad> {
  let tf: Tf;
  try {
    if (backend === 'webgpu') await exposeNavigatorGpu();
    tf = await importTf();
    const pkg = backend === 'webgpu' ? '@tensorflow/tfjs-backend-webgpu' : '@tensorflow/tfjs-backend-wasm';
    await import(pkg);
  } catch (err) {
    return { skipped: `tfjs not installed or not loadable (${message(err)}); install the optional dependencies with npm install` };
  }
  let detail = '';
  try {
    if (!(await tf.setBackend(backend))) return { skipped: `tfjs backend '${backend}' failed to initialise` };
    await tf.ready();
    if (backend === 'wasm') {
      const threads = (await tf.env().getAsync('WASM_HAS_MULTITHREAD_SUPPORT')) === true;
      const simd = (await tf.env().getAsync('WASM_HAS_SIMD_SUPPORT')) === true;
      // the threaded build starts its workers from blob: URLs, which Node's worker_threads refuse
      detail = `XNNPACK, ${simd ? 'SIMD' : 'no SIMD'}, ${threads ? 'threads' : '1 thread (no threaded build under Node)'}`;
    } else {
      detail = 'WebGPU';
    }
  } catch (err) {
    return { skipped: `tfjs backend '${backend}' failed: ${message(err)}` };
  }
  return { tf, backend, version: tf.version_core, detail };
}

// ---------------------------------------------------------------------------------------------------------
// Networks

interface Dense {
  w: TfVariable;
  b: TfVariable;
}

function dense(tf: Tf, inDim: number, outDim: number, trainable = true): Dense {
  const bound = 1 / Math.sqrt(inDim);
  return { w: tf.variable(tf.randomUniform([inDim, outDim], -bound, bound), trainable), b: tf.variable(tf.zeros([outDim]), trainable) };
}

function applyDense(tf: Tf, l: Dense, x: TfTensor, relu = false): TfTensor {
  return tf.fused.matMul({ a: x, b: l.w, bias: l.b, activation: relu ? 'relu' : 'linear' });
}

function vars(layers: Dense[]): TfVariable[] {
  return layers.flatMap((l) => [l.w, l.b]);
}

/** ReLU MLP; the last layer is linear (then tanh when asked). */
function mlp(tf: Tf, widths: number[], trainable = true): Dense[] {
  return widths.slice(1).map((w, i) => dense(tf, widths[i]!, w, trainable));
}

function applyMlp(tf: Tf, layers: Dense[], x: TfTensor, outTanh = false): TfTensor {
  let h = x;
  layers.forEach((l, i) => (h = applyDense(tf, l, h, i < layers.length - 1)));
  return outTanh ? tf.tanh(h) : h;
}

function mish(tf: Tf, x: TfTensor): TfTensor {
  return tf.mul(x, tf.tanh(tf.softplus(x)));
}

/** SRPO's ScoreNet_IDQL at the paper sizes: Fourier time features, residual LayerNorm MLP with dropout. */
class ScoreNet {
  readonly tf: Tf;
  readonly W: TfTensor;
  readonly cond: Dense[];
  readonly fc: Dense;
  readonly blocks: { gamma: TfVariable; beta: TfVariable; fc1: Dense; fc2: Dense }[];
  readonly outFc: Dense;

  constructor(tf: Tf, obsDim: number, actDim: number, trainable: boolean, hidden = 256, nBlocks = 3, embed = 64, condDim = 128) {
    this.tf = tf;
    this.W = tf.randomNormal([1, embed / 2], 0, 30 * 2 * Math.PI);
    this.cond = [dense(tf, embed, condDim, trainable), dense(tf, condDim, condDim, trainable)];
    this.fc = dense(tf, actDim + obsDim + condDim, hidden, trainable);
    this.blocks = Array.from({ length: nBlocks }, () => ({
      gamma: tf.variable(tf.ones([hidden]), trainable),
      beta: tf.variable(tf.zeros([hidden]), trainable),
      fc1: dense(tf, hidden, 4 * hidden, trainable),
      fc2: dense(tf, 4 * hidden, hidden, trainable),
    }));
    this.outFc = dense(tf, hidden, actDim, trainable);
  }

  variables(): TfVariable[] {
    return [...vars(this.cond), ...vars([this.fc]), ...this.blocks.flatMap((b) => [b.gamma, b.beta, ...vars([b.fc1, b.fc2])]), ...vars([this.outFc])];
  }

  forward(x: TfTensor, t: TfTensor, s: TfTensor, training: boolean): TfTensor {
    const tf = this.tf;
    const proj = tf.matMul(t, this.W);
    const emb = applyDense(tf, this.cond[1]!, mish(tf, applyDense(tf, this.cond[0]!, tf.concat([tf.sin(proj), tf.cos(proj)], 1))));
    let h = applyDense(tf, this.fc, tf.concat([x, s, emb], 1));
    for (const b of this.blocks) {
      const d = training ? tf.dropout(h, 0.1) : h;
      const { mean, variance } = tf.moments(d, -1, true);
      const n = tf.add(tf.mul(tf.mul(tf.sub(d, mean), tf.rsqrt(tf.add(variance, 1e-5))), b.gamma), b.beta);
      h = tf.add(h, applyDense(tf, b.fc2, mish(tf, applyDense(tf, b.fc1, n))));
    }
    return applyDense(tf, this.outFc, mish(tf, h));
  }
}


// ---- the diffusion-policy networks (algorithms/dtql.ts, edp.ts, dql.ts)

interface Norm {
  gamma: TfVariable;
  beta: TfVariable;
}

/** Linear (+ LayerNorm) + Mish hidden layers; the last layer linear (Mish too with mishOut). */
interface MishMlp {
  layers: Dense[];
  norms: Norm[] | null;
}

function mishMlp(tf: Tf, widths: number[], layerNorm = false, trainable = true): MishMlp {
  const layers = mlp(tf, widths, trainable);
  const norms = layerNorm ? layers.slice(0, -1).map((l) => ({ gamma: tf.variable(tf.ones([l.b.shape[0]!]), trainable), beta: tf.variable(tf.zeros([l.b.shape[0]!]), trainable) })) : null;
  return { layers, norms };
}

function mishMlpVars(m: MishMlp): TfVariable[] {
  return [...vars(m.layers), ...(m.norms ?? []).flatMap((n) => [n.gamma, n.beta])];
}

function layerNorm(tf: Tf, x: TfTensor, n: Norm): TfTensor {
  const { mean, variance } = tf.moments(x, -1, true);
  return tf.add(tf.mul(tf.mul(tf.sub(x, mean), tf.rsqrt(tf.add(variance, 1e-5))), n.gamma), n.beta);
}

function applyMishMlp(tf: Tf, m: MishMlp, x: TfTensor, mishOut = false): TfTensor {
  let h = x;
  m.layers.forEach((l, i) => {
    h = applyDense(tf, l, h);
    const hidden = i < m.layers.length - 1;
    if (hidden && m.norms) h = layerNorm(tf, h, m.norms[i]!);
    if (hidden || mishOut) h = mish(tf, h);
  });
  return h;
}

/** Twin Q, each head concat(s, a) -> 3 x (Linear 256[, LayerNorm], Mish) -> 1. */
function mishTwinQ(tf: Tf, obsDim: number, actDim: number, layerNorm = false, trainable = true): MishMlp[] {
  return [mishMlp(tf, [obsDim + actDim, 256, 256, 256, 1], layerNorm, trainable), mishMlp(tf, [obsDim + actDim, 256, 256, 256, 1], layerNorm, trainable)];
}

function twinQForward(tf: Tf, q: MishMlp[], s: TfTensor, a: TfTensor): [TfTensor, TfTensor] {
  const sa = tf.concat([s, a], 1);
  return [applyMishMlp(tf, q[0]!, sa), applyMishMlp(tf, q[1]!, sa)];
}

/** Sinusoidal embedding (16) -> Linear 32 -> Mish -> Linear 16 (Diffusion-QL's time_mlp, DTQL's embed). */
class TimeMlp {
  readonly order: 'sin-cos' | 'cos-sin';
  readonly freqs: TfTensor;
  readonly fc: Dense[];

  constructor(tf: Tf, order: 'sin-cos' | 'cos-sin', shift: 0 | 1, dim = 16) {
    const half = dim / 2;
    this.order = order;
    this.freqs = tf.reshape(tf.tensor1d(Array.from({ length: half }, (_, i) => Math.exp((-i * Math.log(10000)) / (half - shift)))), [1, half]);
    this.fc = [dense(tf, dim, 2 * dim), dense(tf, 2 * dim, dim)];
  }

  forward(tf: Tf, t: TfTensor): TfTensor {
    const arg = tf.matMul(tf.reshape(t, [t.shape[0]!, 1]), this.freqs);
    const parts = this.order === 'sin-cos' ? [tf.sin(arg), tf.cos(arg)] : [tf.cos(arg), tf.sin(arg)];
    return applyDense(tf, this.fc[1]!, mish(tf, applyDense(tf, this.fc[0]!, tf.concat(parts, 1))));
  }
}

/** Diffusion-QL's noise MLP (dql: [x, t_emb, s]) and EDP's (edp: [s, x, t_emb]): 3 x (256, Mish) -> act. */
class NoiseNet {
  readonly variant: 'dql' | 'edp';
  readonly time: TimeMlp;
  readonly body: MishMlp;

  constructor(tf: Tf, obsDim: number, actDim: number, variant: 'dql' | 'edp') {
    this.variant = variant;
    this.time = variant === 'dql' ? new TimeMlp(tf, 'sin-cos', 1) : new TimeMlp(tf, 'cos-sin', 0);
    this.body = mishMlp(tf, [obsDim + actDim + 16, 256, 256, 256, actDim]);
  }

  variables(): TfVariable[] {
    return [...vars(this.time.fc), ...mishMlpVars(this.body)];
  }

  forward(tf: Tf, x: TfTensor, t: TfTensor, s: TfTensor): TfTensor {
    const te = this.time.forward(tf, t);
    return applyMishMlp(tf, this.body, tf.concat(this.variant === 'dql' ? [x, te, s] : [s, x, te], 1));
  }
}

/** DTQL's EDM network F: Linear(concat[x, s, t_emb]) -> 3 x (Linear 256, Mish) -> act. */
class DtqlDenoiser {
  readonly time: TimeMlp;
  readonly first: Dense;
  readonly body: MishMlp;

  constructor(tf: Tf, obsDim: number, actDim: number) {
    this.time = new TimeMlp(tf, 'sin-cos', 1);
    this.first = dense(tf, actDim + obsDim + 16, 256);
    this.body = mishMlp(tf, [256, 256, 256, 256, actDim]);
  }

  variables(): TfVariable[] {
    return [...vars(this.time.fc), ...vars([this.first]), ...mishMlpVars(this.body)];
  }

  forward(tf: Tf, x: TfTensor, t: TfTensor, s: TfTensor): TfTensor {
    return applyMishMlp(tf, this.body, applyDense(tf, this.first, tf.concat([x, s, this.time.forward(tf, t)], 1)));
  }
}

/** Ancestral sampling over the whole chain, the x0 estimate clipped to +-1 (Diffusion-QL's p_sample_loop). */
function ddpmChain(tf: Tf, net: NoiseNet, s: TfTensor, tab: DdpmTable, actDim: number): TfTensor {
  const rows = s.shape[0]!;
  let x = tf.randomNormal([rows, actDim]);
  for (let k = tab.T - 1; k >= 0; k--) {
    const eps = net.forward(tf, x, tf.fill([rows], k), s);
    const x0 = tf.clipByValue(tf.add(tf.mul(x, 1 / tab.sqrtAlphaBar[k]!), tf.mul(eps, -tab.sqrtOneMinusAlphaBar[k]! / tab.sqrtAlphaBar[k]!)), -1, 1);
    x = tf.add(tf.mul(x0, tab.coef1[k]!), tf.mul(x, tab.coef2[k]!));
    if (k > 0) x = tf.add(x, tf.mul(tf.randomNormal([rows, actDim]), tab.std[k]!));
  }
  return x;
}

/** DPM-Solver++ (EDP's 15 evaluations, singlestep order 3) as bench/peers_plan.ts lists its updates. */
function dpmSample(tf: Tf, net: NoiseNet, s: TfTensor, plan: DpmUpdate[], actDim: number): TfTensor {
  const rows = s.shape[0]!;
  const pts: Record<string, TfTensor> = { x: tf.randomNormal([rows, actDim]) };
  let d0: TfTensor | null = null;
  for (const u of plan) {
    const input = pts[u.input]!;
    const eps = net.forward(tf, input, tf.fill([rows], u.time), s);
    const d = tf.clipByValue(tf.add(tf.mul(input, u.pe), tf.mul(eps, u.qe)), -1, 1);
    let out = tf.add(tf.mul(pts.x!, u.cx), tf.mul(d, u.cd));
    if (u.cHist !== 0) out = tf.add(out, tf.mul(d0!, u.cHist));
    if (u.saveD0) d0 = d;
    pts[u.output] = u.clipOut ? tf.clipByValue(out, -1, 1) : out;
  }
  return pts.x!;
}

/** -mean Q_j / stopgrad(mean |Q_k|), head j drawn on the host (k = j: EDP; the other head: Diffusion-QL). */
function randomHeadQLoss(tf: Tf, q1: TfTensor, q2: TfTensor, same: boolean): TfTensor {
  const [a, b] = Math.random() < 0.5 ? [q1, q2] : [q2, q1];
  return tf.neg(tf.div(tf.mean(a), stopGradient(tf, tf.mean(tf.abs(same ? a : b)))));
}

/** x as a constant of the tape (tfjs-core has no stop-gradient op: an identity whose gradient is zero). */
function stopGradient(tf: Tf, x: TfTensor): TfTensor {
  return tf.customGrad((y: TfTensor) => ({ value: tf.mul(y, 1), gradFunc: (dy: TfTensor) => tf.zerosLike(dy) }))(x);
}

// ---------------------------------------------------------------------------------------------------------
// The steps

/** A case ready to time: `step` runs one training step, `sync` waits until every step so far has finished. */
export interface PeerCase {
  step(): void;
  /** The diffusion-policy steps: one step, its losses read back (bench/peers.ts --check). */
  check?(): Promise<Record<string, number>>;
  sync(): Promise<void>;
  dispose(): void;
}

export interface PeerSizes {
  obsDim: number;
  actDim: number;
  transitions: number;
  /** Constants of the diffusion-policy steps (bench/peers_plan.ts), needed by dtql-step, edp-step and dql-step. */
  tables?: PeerTables;
}

const BETA0 = 0.1;
const BETA1 = 20;

/**
 * Adam(W) over `params`: minimize takes the gradients of the loss with respect to them only (other variables on
 * the way are constants), clips them to a global norm when clip > 0 (as torch's clip_grad_norm_: scale
 * min(1, clip / (norm + 1e-6)), computed on the device), and returns the loss (disposed by the caller's tidy).
 */
function adamW(tf: Tf, lr: number, weightDecay: number, params: TfVariable[], clip = 0) {
  const opt = tf.train.adam(lr, 0.9, 0.999, 1e-8);
  return {
    opt,
    minimize(loss: () => TfTensor): TfTensor {
      const { value, grads } = tf.variableGrads(loss, params);
      if (clip > 0) {
        const names = Object.keys(grads);
        const norm = tf.sqrt(names.map((n) => tf.sum(tf.square(grads[n]!))).reduce((a, b) => tf.add(a, b)));
        const scale = tf.minimum(tf.div(clip, tf.add(norm, 1e-6)), 1);
        for (const n of names) grads[n] = tf.mul(grads[n]!, scale);
      }
      // decoupled decay as torch.optim.AdamW: p <- p (1 - lr wd), then the Adam update
      if (weightDecay > 0) for (const p of params) p.assign(tf.mul(p, 1 - lr * weightDecay));
      opt.applyGradients(grads);
      tf.dispose(Object.values(grads));
      return value;
    },
  };
}

/** alpha_t x0 + sigma_t z on the VP-SDE with t ~ U(tMin, tMax); t as [B, 1]. */
function vpNoise(tf: Tf, x0: TfTensor, tMin: number, tMax: number) {
  const rows = x0.shape[0]!;
  const t = tf.randomUniform([rows, 1], tMin, tMax);
  const z = tf.randomNormal(x0.shape);
  const logAlpha = tf.sub(tf.mul(tf.square(t), -0.25 * (BETA1 - BETA0)), tf.mul(t, 0.5 * BETA0));
  const alpha = tf.exp(logAlpha);
  const sigma2 = tf.sub(1, tf.exp(tf.mul(logAlpha, 2)));
  return { xt: tf.add(tf.mul(alpha, x0), tf.mul(tf.sqrt(sigma2), z)), t, z, sigma2 };
}

export type PeerCaseName = 'iql-critic' | 'srpo-behavior-2048' | 'srpo-behavior-256' | 'srpo-actor' | 'dtql-step' | 'edp-step' | 'dql-step' | 'matmul-1024';

function tablesOf(sizes: PeerSizes): PeerTables {
  if (!sizes.tables) throw new Error('the diffusion-policy steps need the tables of bench/peers_plan.ts');
  return sizes.tables;
}

/** A case whose step is `once` in a tidy scope; check() runs it once and reads its losses back. */
function withOnce(tf: Tf, c: PeerCase, once: () => Record<string, TfTensor>, disposeOptimizers: () => void): PeerCase {
  const disposeHeld = c.dispose;
  c.step = () => tf.dispose(tf.tidy(once));
  c.check = async () => {
    const losses = tf.tidy(once);
    const out: Record<string, number> = {};
    for (const [k, t] of Object.entries(losses)) out[k] = (await t.data())[0]!;
    tf.dispose(losses);
    return out;
  };
  c.dispose = () => {
    disposeOptimizers();
    disposeHeld();
  };
  return c;
}

export function tfjsCase(tf: Tf, name: PeerCaseName, sizes: PeerSizes): PeerCase {
  const { obsDim, actDim, transitions } = sizes;
  const width = 2 * obsDim + actDim + 2;
  const held: TfTensor[] = [];
  const keep = <T extends TfTensor>(t: T): T => (held.push(t), t);
  // rows [obs, action, reward, next obs, not done], as the engine's replay store
  const data = keep(tf.tidy(() => tf.concat([tf.randomUniform([transitions, width - 1], -1, 1), tf.ones([transitions, 1])], 1)));
  const sample = (batch: number) => tf.split(tf.gather(data, tf.randomUniform([batch], 0, transitions, 'int32')), [obsDim, actDim, 1, obsDim, 1], 1);
  let last: TfVariable;
  const done: PeerCase = {
    step() {},
    async sync() {
      // the last update's parameter is written after everything before it, in queue order
      const s = tf.tidy(() => tf.sum(last));
      await s.data();
      s.dispose();
    },
    dispose() {
      tf.dispose(held);
    },
  };
  const own = (xs: TfVariable[]) => (held.push(...xs), xs);

  switch (name) {
    case 'iql-critic': {
      const q = [mlp(tf, [obsDim + actDim, 256, 256, 1]), mlp(tf, [obsDim + actDim, 256, 256, 1])];
      const qTarget = [mlp(tf, [obsDim + actDim, 256, 256, 1], false), mlp(tf, [obsDim + actDim, 256, 256, 1], false)];
      const v = mlp(tf, [obsDim, 256, 256, 1]);
      const qVars = own(vars(q.flat()));
      const targetVars = own(vars(qTarget.flat()));
      const vVars = own(vars(v));
      tf.tidy(() => targetVars.forEach((t, i) => t.assign(qVars[i]!)));
      const qOpt = adamW(tf, 3e-4, 0, qVars);
      const vOpt = adamW(tf, 3e-4, 0, vVars);
      const expectile = 0.7;
      const tau = 0.005;
      last = targetVars[targetVars.length - 1]!;
      done.step = () =>
        tf.tidy(() => {
          const [obs, act, rew, nextObs, notDone] = sample(256) as [TfTensor, TfTensor, TfTensor, TfTensor, TfTensor];
          const sa = tf.concat([obs, act], 1);
          const nextV = applyMlp(tf, v, nextObs);
          const qMin = tf.minimum(applyMlp(tf, qTarget[0]!, sa), applyMlp(tf, qTarget[1]!, sa));
          vOpt.minimize(() => {
            // |tau - 1(u < 0)| u^2 written with relu: tfjs has no gradient through a comparison
            const u = tf.sub(qMin, applyMlp(tf, v, obs));
            return tf.mean(tf.add(tf.mul(tf.square(tf.relu(u)), expectile), tf.mul(tf.square(tf.relu(tf.neg(u))), 1 - expectile)));
          });
          const target = tf.add(rew, tf.mul(tf.mul(notDone, nextV), 0.99));
          qOpt.minimize(() => {
            const l1 = tf.mean(tf.square(tf.sub(applyMlp(tf, q[0]!, sa), target)));
            const l2 = tf.mean(tf.square(tf.sub(applyMlp(tf, q[1]!, sa), target)));
            return tf.mul(tf.add(l1, l2), 0.5);
          });
          targetVars.forEach((t, i) => t.assign(tf.add(tf.mul(t, 1 - tau), tf.mul(qVars[i]!, tau))));
        });
      done.dispose = () => {
        qOpt.opt.dispose();
        vOpt.opt.dispose();
        tf.dispose(held);
      };
      return done;
    }
    case 'srpo-behavior-2048':
    case 'srpo-behavior-256': {
      const batch = name === 'srpo-behavior-2048' ? 2048 : 256;
      const net = new ScoreNet(tf, obsDim, actDim, true);
      keep(net.W);
      const params = own(net.variables());
      const opt = adamW(tf, 3e-4, 0.01, params);
      last = params[params.length - 1]!;
      done.step = () =>
        tf.tidy(() => {
          const [obs, act] = sample(batch) as [TfTensor, TfTensor];
          const { xt, t, z } = vpNoise(tf, act, 1e-3, 1);
          opt.minimize(() => tf.mean(tf.sum(tf.square(tf.sub(net.forward(xt, t, obs, true), z)), 1)));
        });
      done.dispose = () => {
        opt.opt.dispose();
        tf.dispose(held);
      };
      return done;
    }
    case 'srpo-actor': {
      const actor = mlp(tf, [obsDim, 256, 256, actDim]);
      const behavior = new ScoreNet(tf, obsDim, actDim, false);
      keep(behavior.W);
      own(behavior.variables());
      const qTarget = [mlp(tf, [obsDim + actDim, 256, 256, 1], false), mlp(tf, [obsDim + actDim, 256, 256, 1], false)];
      own(vars(qTarget.flat()));
      const params = own(vars(actor));
      const opt = adamW(tf, 3e-4, 0, params);
      const beta = 0.05;
      last = params[params.length - 1]!;
      const meanQ = (obs: TfTensor) => (a: TfTensor) => {
        const sa = tf.concat([obs, a], 1);
        return tf.mul(tf.add(tf.sum(applyMlp(tf, qTarget[0]!, sa)), tf.sum(applyMlp(tf, qTarget[1]!, sa))), 0.5);
      };
      done.step = () =>
        tf.tidy(() => {
          const obs = sample(256)[0]!;
          // the loss's constants (behaviour eps at a noised action, target-Q action gradient) come from an
          // untaped forward of the actor: tfjs has no stop-gradient, so the actor runs forward again under the
          // tape (a [256, 256] MLP at batch 256, a few percent of the step)
          const a0 = applyMlp(tf, actor, obs, true);
          const { xt, t, sigma2 } = vpNoise(tf, a0, 0.02, 0.98);
          const eps = behavior.forward(xt, t, obs, false);
          const g = tf.grad(meanQ(obs))(a0);
          opt.minimize(() => {
            const a = applyMlp(tf, actor, obs, true);
            const score = tf.sum(tf.mul(eps, a), 1, true);
            const guide = tf.sum(tf.mul(g, a), 1, true);
            return tf.mean(tf.sub(tf.mul(sigma2, score), tf.mul(guide, beta)));
          });
        });
      done.dispose = () => {
        opt.opt.dispose();
        tf.dispose(held);
      };
      return done;
    }
    case 'dtql-step': {
      const { edm } = tablesOf(sizes);
      const q = mishTwinQ(tf, obsDim, actDim, true);
      const qTarget = mishTwinQ(tf, obsDim, actDim, true, false);
      const v = mishMlp(tf, [obsDim, 256, 256, 256, 1]);
      const behavior = new DtqlDenoiser(tf, obsDim, actDim);
      keep(behavior.time.freqs);
      const actor = mlp(tf, [obsDim, 256, 256, 256, 2 * actDim]);
      const qVars = own(q.flatMap(mishMlpVars));
      const targetVars = own(qTarget.flatMap(mishMlpVars));
      const vVars = own(mishMlpVars(v));
      const bVars = own(behavior.variables());
      const aVars = own(vars(actor));
      tf.tidy(() => targetVars.forEach((t, i) => t.assign(qVars[i]!)));
      const qOpt = adamW(tf, 3e-4, 0, qVars);
      const vOpt = adamW(tf, 3e-4, 0, vVars);
      const bOpt = adamW(tf, 1e-4, 0, bVars);
      const aOpt = adamW(tf, 1e-4, 0, aVars);
      const [expectile, tau, alpha, sd] = [0.7, 0.005, 5, edm.sigmaData];
      // sigma from the truncated log-logistic, D = clip(c_skip x_t + c_out F(c_in x_t, ln(sigma)/4)), mean ((D - x0)/c_out)^2
      const edmLoss = (x0: TfTensor, s: TfTensor) => {
        const rows = x0.shape[0]!;
        const u = tf.add(tf.mul(tf.randomUniform([rows, 1]), edm.cdfHi - edm.cdfLo), edm.cdfLo);
        const sigma = tf.exp(tf.add(tf.mul(tf.log(tf.div(u, tf.sub(1, u))), edm.scale), edm.loc));
        const xt = tf.add(x0, tf.mul(sigma, tf.randomNormal(x0.shape)));
        const r = tf.sqrt(tf.add(tf.square(sigma), sd * sd));
        const cOut = tf.div(tf.mul(sigma, sd), r);
        const f = behavior.forward(tf, tf.div(xt, r), tf.reshape(tf.mul(tf.log(sigma), 0.25), [rows]), s);
        const d = tf.clipByValue(tf.add(tf.mul(tf.div(sd * sd, tf.square(r)), xt), tf.mul(cOut, f)), -1, 1);
        return tf.mean(tf.square(tf.div(tf.sub(d, x0), cOut)));
      };
      last = aVars[aVars.length - 1]!;
      const once = () => {
        const [obs, act, rew, nextObs, notDone] = sample(256) as [TfTensor, TfTensor, TfTensor, TfTensor, TfTensor];
        // critic: V to the online min Q by expectile and Q to r + 0.99 V(s'), one gradient of the sum, two Adam steps
        const target = tf.add(rew, tf.mul(tf.mul(notDone, applyMishMlp(tf, v, nextObs)), 0.99));
        const { value: criticLoss, grads } = tf.variableGrads(() => {
          const [q1, q2] = twinQForward(tf, q, obs, act);
          const u = tf.sub(stopGradient(tf, tf.minimum(q1, q2)), applyMishMlp(tf, v, obs));
          const vLoss = tf.mean(tf.add(tf.mul(tf.square(tf.relu(u)), expectile), tf.mul(tf.square(tf.relu(tf.neg(u))), 1 - expectile)));
          const qLoss = tf.add(tf.mean(tf.square(tf.sub(q1, target))), tf.mean(tf.square(tf.sub(q2, target))));
          return tf.add(vLoss, qLoss);
        }, [...vVars, ...qVars]);
        const part = (vs: TfVariable[]) => Object.fromEntries(vs.map((x) => [x.name, grads[x.name]!]));
        vOpt.opt.applyGradients(part(vVars));
        qOpt.opt.applyGradients(part(qVars));
        targetVars.forEach((t, i) => t.assign(tf.add(tf.mul(t, 1 - tau), tf.mul(qVars[i]!, tau))));
        const bcLoss = bOpt.minimize(() => edmLoss(act, obs));
        // one-step actor: alpha L_TR(a) - mean min Q(s, a); only the actor's variables get gradients
        const actorLoss = aOpt.minimize(() => {
          const [mu, logStd] = tf.split(applyMlp(tf, actor, obs), [actDim, actDim], 1) as [TfTensor, TfTensor];
          const a = tf.tanh(tf.add(mu, tf.mul(tf.exp(tf.clipByValue(logStd, -5, 2)), tf.randomNormal(mu.shape))));
          const [q1, q2] = twinQForward(tf, q, obs, a);
          return tf.sub(tf.mul(edmLoss(a, obs), alpha), tf.mean(tf.minimum(q1, q2)));
        });
        return { criticLoss, bcLoss, actorLoss };
      };
      return withOnce(tf, done, once, () => [qOpt, vOpt, bOpt, aOpt].forEach((o) => o.opt.dispose()));
    }
    case 'edp-step':
    case 'dql-step': {
      // Diffusion-QL (T 5, Q term through the whole chain) and EDP-TD3 (T 100, action approximation): the critic on
      // targets from the target policy (DDPM chain; DPM-Solver++ 15), Polyak; the policy step; both clipped to
      // gradient norm 9 (hopper-medium-v2). The target policy's update (every 5th step) is outside the timed step,
      // as on the engine side.
      const kind = name === 'dql-step' ? 'dql' : 'edp';
      const tables = tablesOf(sizes);
      const tab = tables[kind];
      const actor = new NoiseNet(tf, obsDim, actDim, kind);
      const target = new NoiseNet(tf, obsDim, actDim, kind);
      keep(actor.time.freqs);
      keep(target.time.freqs);
      const q = mishTwinQ(tf, obsDim, actDim);
      const qTarget = mishTwinQ(tf, obsDim, actDim, false, false);
      const aVars = own(actor.variables());
      const tVars = own(target.variables());
      const qVars = own(q.flatMap(mishMlpVars));
      const qtVars = own(qTarget.flatMap(mishMlpVars));
      tf.tidy(() => {
        tVars.forEach((t, i) => t.assign(aVars[i]!));
        qtVars.forEach((t, i) => t.assign(qVars[i]!));
      });
      const aOpt = adamW(tf, 3e-4, 0, aVars, 9);
      const qOpt = adamW(tf, 3e-4, 0, qVars, 9);
      const sab = keep(tf.tensor1d(tab.sqrtAlphaBar));
      const s1m = keep(tf.tensor1d(tab.sqrtOneMinusAlphaBar));
      const tau = 0.005;
      last = aVars[aVars.length - 1]!;
      const once = () => {
        const [obs, act, rew, nextObs, notDone] = sample(256) as [TfTensor, TfTensor, TfTensor, TfTensor, TfTensor];
        const nextA = kind === 'dql' ? ddpmChain(tf, target, nextObs, tables.dql, actDim) : dpmSample(tf, target, nextObs, tables.edp.dpm, actDim);
        const [n1, n2] = twinQForward(tf, qTarget, nextObs, nextA);
        const y = tf.add(rew, tf.mul(tf.mul(notDone, tf.minimum(n1, n2)), 0.99));
        const qLoss = qOpt.minimize(() => {
          const [q1, q2] = twinQForward(tf, q, obs, act);
          return tf.add(tf.mean(tf.square(tf.sub(q1, y))), tf.mean(tf.square(tf.sub(q2, y))));
        });
        qtVars.forEach((t, i) => t.assign(tf.add(tf.mul(t, 1 - tau), tf.mul(qVars[i]!, tau))));
        const k = tf.randomUniform([256], 0, tab.T, 'int32');
        const a1 = tf.reshape(tf.gather(sab, k), [256, 1]);
        const s1 = tf.reshape(tf.gather(s1m, k), [256, 1]);
        const z = tf.randomNormal([256, actDim]);
        const xk = tf.add(tf.mul(a1, act), tf.mul(s1, z));
        const time = tf.cast(k, 'float32');
        let diffLoss: TfTensor | null = null;
        const actorLoss = aOpt.minimize(() => {
          const eps = actor.forward(tf, xk, time, obs);
          // kept out of the gradient's scope, so the step can return it
          const diff = (diffLoss = tf.keep(tf.mean(tf.square(tf.sub(eps, z)))));
          if (kind === 'dql') {
            const [q1, q2] = twinQForward(tf, q, obs, ddpmChain(tf, actor, obs, tables.dql, actDim));
            return tf.add(diff, randomHeadQLoss(tf, q1, q2, false));
          }
          const a0 = tf.clipByValue(tf.div(tf.sub(xk, tf.mul(s1, eps)), a1), -1, 1);
          const [q1, q2] = twinQForward(tf, q, obs, a0);
          return tf.add(diff, tf.mul(randomHeadQLoss(tf, q1, q2, true), 2));
        });
        return { qLoss, actorLoss, diffLoss: diffLoss! };
      };
      return withOnce(tf, done, once, () => [aOpt, qOpt].forEach((o) => o.opt.dispose()));
    }
    case 'matmul-1024': {
      const a = keep(tf.randomNormal([1024, 1024]));
      const b = keep(tf.randomNormal([1024, 1024]));
      let out: TfTensor | null = null;
      done.step = () => {
        out?.dispose();
        out = tf.matMul(a, b);
      };
      done.sync = async () => {
        if (out) await out.data();
      };
      done.dispose = () => {
        out?.dispose();
        tf.dispose(held);
      };
      return done;
    }
  }
}

// ---------------------------------------------------------------------------------------------------------
// --check: the networks of the diffusion-policy steps on formula weights and inputs

function formulaDense(tf: Tf, l: Dense): void {
  const [inputs, outputs] = l.w.shape as [number, number];
  const w = new Array<number>(inputs * outputs);
  for (let i = 0; i < inputs; i++) for (let j = 0; j < outputs; j++) w[i * outputs + j] = checkWeight(outputs, inputs, j, i);
  tf.tidy(() => {
    l.w.assign(tf.reshape(tf.tensor1d(w), [inputs, outputs]));
    l.b.assign(tf.tensor1d(Array.from({ length: outputs }, (_, j) => checkBias(outputs, j))));
  });
}

function formulaMishMlp(tf: Tf, m: MishMlp): void {
  m.layers.forEach((l) => formulaDense(tf, l));
  for (const n of m.norms ?? []) {
    const d = n.gamma.shape[0]!;
    tf.tidy(() => {
      n.gamma.assign(tf.tensor1d(Array.from({ length: d }, (_, j) => checkGamma(j))));
      n.beta.assign(tf.tensor1d(Array.from({ length: d }, (_, j) => checkBeta(j))));
    });
  }
}

/**
 * The networks of a diffusion-policy step (the classes its step uses) with the formula weights of
 * bench/peers_plan.ts, evaluated on its formula inputs: each output flattened row-major.
 */
export async function tfjsForwards(tf: Tf, name: PeerCaseName, obsDim: number, actDim: number): Promise<Record<string, number[]>> {
  const kind = name === 'dtql-step' ? 'dtql' : name === 'edp-step' ? 'edp' : 'dql';
  const inp = checkInputs(obsDim, actDim, kind);
  const rows = CHECK_ROWS;
  const owned: TfTensor[] = [];
  const outputs: Record<string, TfTensor> = {};
  const s = tf.reshape(tf.tensor1d(inp.s), [rows, obsDim]);
  const a = tf.reshape(tf.tensor1d(inp.a), [rows, actDim]);
  const t = tf.tensor1d(inp.t);
  owned.push(s, a, t);
  try {
    if (kind === 'dtql') {
      const q = mishTwinQ(tf, obsDim, actDim, true);
      const v = mishMlp(tf, [obsDim, 256, 256, 256, 1]);
      const behavior = new DtqlDenoiser(tf, obsDim, actDim);
      const actor = mlp(tf, [obsDim, 256, 256, 256, 2 * actDim]);
      owned.push(...q.flatMap(mishMlpVars), ...mishMlpVars(v), ...behavior.variables(), behavior.time.freqs, ...vars(actor));
      q.forEach((h) => formulaMishMlp(tf, h));
      formulaMishMlp(tf, v);
      behavior.time.fc.forEach((l) => formulaDense(tf, l));
      formulaDense(tf, behavior.first);
      formulaMishMlp(tf, behavior.body);
      actor.forEach((l) => formulaDense(tf, l));
      [outputs.q1, outputs.q2] = twinQForward(tf, q, s, a);
      outputs.v = applyMishMlp(tf, v, s);
      outputs.denoiser = behavior.forward(tf, a, t, s);
      outputs.actor = applyMlp(tf, actor, s);
    } else {
      const net = new NoiseNet(tf, obsDim, actDim, kind);
      owned.push(...net.variables(), net.time.freqs);
      net.time.fc.forEach((l) => formulaDense(tf, l));
      formulaMishMlp(tf, net.body);
      outputs.eps = net.forward(tf, a, t, s);
      if (kind === 'edp') {
        const q = mishTwinQ(tf, obsDim, actDim);
        owned.push(...q.flatMap(mishMlpVars));
        q.forEach((h) => formulaMishMlp(tf, h));
        [outputs.q1, outputs.q2] = twinQForward(tf, q, s, a);
      }
    }
    const out: Record<string, number[]> = {};
    for (const [k, x] of Object.entries(outputs)) out[k] = Array.from(await x.data());
    return out;
  } finally {
    tf.dispose([...owned, ...Object.values(outputs)]);
  }
}

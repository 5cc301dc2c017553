// TensorFlow.js peers of bench/peers.ts: the same training steps written with tfjs ops (WebGPU backend on the
// engine's adapter, or the wasm backend), the networks, batch sizes, optimisers and number of parameter updates
// of the engine's steps. tfjs is an optional dependency: it is imported at run time, typed here by the small
// part of its API these steps use, and a backend that cannot load is reported as skipped with the reason.
import { registerHooks } from 'node:module';

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
  tidy<T>(fn: () => T): T;
  dispose(x: unknown): void;
  variable(initial: TfTensor, trainable?: boolean): TfVariable;
  randomNormal(shape: number[], mean?: number, std?: number): TfTensor;
  randomUniform(shape: number[], min?: number, max?: number, dtype?: 'float32' | 'int32'): TfTensor;
  zeros(shape: number[]): TfTensor;
  ones(shape: number[]): TfTensor;
  matMul(a: TfTensor, b: TfTensor): TfTensor;
  fused: { matMul(o: { a: TfTensor; b: TfTensor; bias?: TfTensor; activation?: 'linear' | 'relu' }): TfTensor };
  add(a: TensorArg, b: TensorArg): TfTensor;
  sub(a: TensorArg, b: TensorArg): TfTensor;
  mul(a: TensorArg, b: TensorArg): TfTensor;
  minimum(a: TensorArg, b: TensorArg): TfTensor;
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

// ---------------------------------------------------------------------------------------------------------
// The steps

/** A case ready to time: `step` runs one training step, `sync` waits until every step so far has finished. */
export interface PeerCase {
  step(): void;
  sync(): Promise<void>;
  dispose(): void;
}

export interface PeerSizes {
  obsDim: number;
  actDim: number;
  transitions: number;
}

const BETA0 = 0.1;
const BETA1 = 20;

function adamW(tf: Tf, lr: number, weightDecay: number, params: TfVariable[]) {
  const opt = tf.train.adam(lr, 0.9, 0.999, 1e-8);
  return {
    opt,
    minimize(loss: () => TfTensor): void {
      const { value, grads } = tf.variableGrads(loss, params);
      // decoupled decay as torch.optim.AdamW: p <- p (1 - lr wd), then the Adam update
      if (weightDecay > 0) for (const p of params) p.assign(tf.mul(p, 1 - lr * weightDecay));
      opt.applyGradients(grads);
      tf.dispose([value, grads]);
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

export type PeerCaseName = 'iql-critic' | 'srpo-behavior-2048' | 'srpo-behavior-256' | 'srpo-actor' | 'matmul-1024';

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

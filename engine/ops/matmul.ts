// Matrix products with autograd: matmul (2-D, optional transposes) and the fused layer y = act(x W^T + b)
// with W in PyTorch's [out, in] layout. Bias and activation are applied as the product is written. The
// layer's backward folds act' into the reads of dY by the two products that need it (dX = dZ W,
// dW = dZ^T x) and by the column sum that gives db; with the register family it writes dZ once instead.
import { kernel, type Kernel } from '../kernel.ts';
import { runtime, type Runtime } from '../runtime.ts';
import { empty, type Tensor } from '../tensor.ts';
import { needsGrad, record } from '../autograd.ts';
import { flatGrid, ACTIVATIONS, type Activation } from '../../kernels/common.ts';
import {
  columnSumSource,
  gradThroughSource,
  needsPreActivation,
  MATMUL_KERNELS_VERSION,
  registerMatmulSource,
  registerTile,
  specKey,
  tiledMatmulSource,
  tiledTile,
  type MatmulSpec,
  type MatmulTile,
} from '../../kernels/matmul.ts';

export type { Activation } from '../../kernels/common.ts';
export type MatmulFamily = 'register' | 'tiled';

let familySetting: MatmulFamily | 'auto' = 'auto';
let subgroupSetting: 'auto' | 'off' = 'auto';

/**
 * Forces a kernel family ('auto': the tuned choice per shape class when tuning results exist for this
 * adapter, else register-blocked on software adapters and workgroup tiles on GPUs).
 */
export function setMatmulFamily(f: MatmulFamily | 'auto'): void {
  if (f !== 'auto' && f !== 'register' && f !== 'tiled') throw new Error(`setMatmulFamily: unknown family "${String(f)}"`);
  familySetting = f;
}

/** The forced family, or the adapter class's default (tuning may choose otherwise per shape class). */
export function matmulFamily(): MatmulFamily {
  if (familySetting !== 'auto') return familySetting;
  return runtime().info.adapterClass === 'software' ? 'register' : 'tiled';
}

/**
 * Whether the register family may share loads across a subgroup ('auto', when the device has subgroups of
 * one fixed size) or must read per invocation ('off'; for tests and comparisons).
 */
export function setMatmulSubgroups(mode: 'auto' | 'off'): void {
  subgroupSetting = mode;
}

function adapterInfo(rt: Runtime): { subgroupMinSize?: number; subgroupMaxSize?: number; vendor?: string; architecture?: string; device?: string; description?: string } | undefined {
  return (rt.device as GPUDevice & { adapterInfo?: GPUAdapterInfo & { subgroupMinSize?: number; subgroupMaxSize?: number } }).adapterInfo;
}

/** The fixed subgroup size the register family shares loads across, or null. */
export function matmulSubgroupSize(): number | null {
  if (subgroupSetting === 'off') return null;
  const rt = runtime();
  if (!rt.info.features.includes('subgroups')) return null;
  const info = adapterInfo(rt);
  const lo = info?.subgroupMinSize;
  const hi = info?.subgroupMaxSize;
  // The workgroup is one subgroup of exactly this size; a size range would break the lane arithmetic.
  if (!lo || lo !== hi || lo < 4 || lo > 64 || (lo & (lo - 1)) !== 0) return null;
  return lo;
}

// ---- kernel configurations and their selection ----

/**
 * One kernel configuration. register: `shared` loads across a subgroup (rows per subgroup tile) or reads
 * per invocation (rows per invocation); `colGroups` groups of four columns per lane. tiled: a square output
 * tile of `tile` and `rowsPerThread` x 4 outputs per invocation.
 */
export type MatmulConfig =
  | { family: 'register'; shared: boolean; rows: number; colGroups: number }
  | { family: 'tiled'; tile: number; rowsPerThread: number };

/** The configuration's name, e.g. 'register-shared-r32-c1', 'register-solo-r8-c2', 'tiled-t64-r8'. */
export function matmulConfigKey(c: MatmulConfig): string {
  return c.family === 'register' ? `register-${c.shared ? 'shared' : 'solo'}-r${c.rows}-c${c.colGroups}` : `tiled-t${c.tile}-r${c.rowsPerThread}`;
}

const CONFIG_PATTERN = /^(?:register-(shared|solo)-r(\d+)-c(\d+)|tiled-t(\d+)-r(\d+))$/;
const parsedConfigs = new Map<string, MatmulConfig>();

/** The configuration named by matmulConfigKey(); throws on a name no kernel of this version accepts. */
export function parseMatmulConfig(key: string): MatmulConfig {
  const known = parsedConfigs.get(key);
  if (known) return known;
  const m = CONFIG_PATTERN.exec(key);
  if (!m) throw new Error(`matmul: "${key}" is not a kernel configuration (expected e.g. register-shared-r32-c1 or tiled-t32-r4)`);
  let c: MatmulConfig;
  if (m[1]) {
    const rows = Number(m[2]);
    const colGroups = Number(m[3]);
    if (rows < 4 || rows > 128 || rows % 4 !== 0 || colGroups < 1 || colGroups > 4) {
      throw new Error(`matmul: "${key}": rows must be a multiple of 4 in 4..128 and column groups 1..4`);
    }
    c = { family: 'register', shared: m[1] === 'shared', rows, colGroups };
  } else {
    const tile = Number(m[4]);
    const rowsPerThread = Number(m[5]);
    if (![16, 32, 64].includes(tile) || (rowsPerThread !== 4 && rowsPerThread !== 8) || rowsPerThread > tile) {
      throw new Error(`matmul: "${key}": tile must be 16, 32 or 64 and rows per invocation 4 or 8`);
    }
    c = { family: 'tiled', tile, rowsPerThread };
  }
  parsedConfigs.set(key, c);
  return c;
}

/** The untuned configuration of a family (today's constants). */
export function defaultMatmulConfig(family: MatmulFamily, shared = matmulSubgroupSize() !== null): MatmulConfig {
  if (family === 'tiled') return { family: 'tiled', tile: 32, rowsPerThread: 4 };
  return shared ? { family: 'register', shared: true, rows: 32, colGroups: 1 } : { family: 'register', shared: false, rows: 8, colGroups: 1 };
}

function sizeBucket(n: number): string {
  return n <= 64 ? 'S' : n <= 512 ? 'M' : 'L';
}

/**
 * The shape class a product is tuned for: its transposes and, per dimension, S (<= 64), M (<= 512) or L.
 * E.g. 'nT:M-S-M' is x W^T with a few hundred rows, a narrow K and a few hundred outputs (M-K-N order).
 */
export function matmulShapeClass(transA: boolean, transB: boolean, M: number, K: number, N: number): string {
  return `${transA ? 'T' : 'n'}${transB ? 'T' : 'n'}:${sizeBucket(M)}-${sizeBucket(K)}-${sizeBucket(N)}`;
}

/** Tuning results for one adapter: configuration names, fastest first, per shape class and over all. */
export interface MatmulRanking {
  classes: ReadonlyMap<string, readonly string[]>;
  overall: readonly string[];
}

const rankings = new Map<string, MatmulRanking>();
const adapterKeys = new WeakMap<Runtime, string>();

/**
 * Identity of the adapter and of the generated kernels that tuning results belong to: vendor, architecture,
 * device, description and the kernels' version.
 */
export function matmulAdapterKey(): string {
  const rt = runtime();
  let key = adapterKeys.get(rt);
  if (key === undefined) {
    const info = adapterInfo(rt);
    const parts = [rt.info.vendor, rt.info.architecture, info?.device ?? '', rt.info.description, `matmul-v${MATMUL_KERNELS_VERSION}`];
    key = parts.join('|');
    adapterKeys.set(rt, key);
  }
  return key;
}

/** Installs (or with null, removes) the ranking products use on the adapter with this key. */
export function setMatmulRanking(adapterKey: string, ranking: MatmulRanking | null): void {
  if (ranking) {
    for (const list of [...ranking.classes.values(), ranking.overall]) for (const k of list) parseMatmulConfig(k);
    rankings.set(adapterKey, ranking);
  } else {
    rankings.delete(adapterKey);
  }
}

/** The ranking installed for this adapter key, if any. */
export function matmulRanking(adapterKey: string): MatmulRanking | null {
  return rankings.get(adapterKey) ?? null;
}

/**
 * The configuration a product of this shape uses now: the fastest tuned one for its shape class (else the
 * fastest over all classes) that the forced family and subgroup setting allow, else the family's default.
 */
export function matmulConfigFor(M: number, K: number, N: number, opts: MatmulOptions = {}): MatmulConfig {
  const shared = matmulSubgroupSize() !== null;
  const ranking = rankings.get(matmulAdapterKey());
  if (ranking) {
    const lists = [ranking.classes.get(matmulShapeClass(opts.transA ?? false, opts.transB ?? false, M, K, N)), ranking.overall];
    for (const list of lists) {
      if (!list) continue;
      for (const key of list) {
        const c = parseMatmulConfig(key);
        if (familySetting !== 'auto' && c.family !== familySetting) continue;
        if (c.family === 'register' && c.shared && !shared) continue;
        return c;
      }
    }
  }
  return defaultMatmulConfig(matmulFamily(), shared);
}

export interface MatmulOptions {
  transA?: boolean;
  transB?: boolean;
}

/** Fused epilogue and prologue of one product (everything beyond C = op(A) op(B)). */
export interface GemmExtras {
  /** Added to every row of C: a [N] tensor. */
  bias?: Tensor | null;
  /** Applied after the bias. */
  act?: Activation;
  /** Receives act's input (C + bias) when given: same shape as the output. */
  pre?: Tensor | null;
  /**
   * A is a gradient dY flowing back through `act`: the product uses dY * act'(.) elementwise, with act'
   * evaluated from `from` (a tensor laid out like A: the saved pre-activation, or the activation's output
   * when `fromOutput`).
   */
  gradThrough?: { act: Activation; from: Tensor; fromOutput: boolean } | null;
}

function dims(a: Tensor, b: Tensor, transA: boolean, transB: boolean, op: string): { M: number; K: number; N: number } {
  if (a.rank !== 2 || b.rank !== 2) throw new Error(`${op}: operands must be 2-D, got [${a.shape}] and [${b.shape}]`);
  if (a.dtype !== 'f32' || b.dtype !== 'f32') throw new Error(`${op}: operands must be f32, got ${a.dtype} and ${b.dtype}`);
  const M = transA ? a.shape[1]! : a.shape[0]!;
  const K = transA ? a.shape[0]! : a.shape[1]!;
  const Kb = transB ? b.shape[1]! : b.shape[0]!;
  const N = transB ? b.shape[0]! : b.shape[1]!;
  if (K !== Kb) {
    throw new Error(
      `${op}: inner dimensions differ: A [${a.shape}]${transA ? '^T' : ''} has K=${K}, B [${b.shape}]${transB ? '^T' : ''} has K=${Kb}`,
    );
  }
  return { M, K, N };
}

function programFor(spec: MatmulSpec, c: MatmulConfig): { k: Kernel; tile: MatmulTile } {
  const name = matmulConfigKey(c);
  if (c.family === 'tiled') {
    const cfg = { tile: c.tile, rowsPerThread: c.rowsPerThread };
    return { k: kernel(`matmul_${name}_${specKey(spec)}`, () => tiledMatmulSource(spec, cfg)), tile: tiledTile(cfg) };
  }
  let subgroup: number | null = null;
  if (c.shared) {
    subgroup = matmulSubgroupSize();
    if (subgroup === null) throw new Error(`matmul: configuration ${name} needs subgroups of one fixed size, which this device lacks`);
  }
  const cfg = { subgroup, rows: c.rows, colGroups: c.colGroups };
  return {
    k: kernel(`matmul_${name}_s${subgroup ?? 0}_${specKey(spec)}`, () => registerMatmulSource(spec, cfg)),
    tile: registerTile(cfg),
  };
}

/** The kernel specialisation of a product with this layout and these extras. */
function productSpec(
  M: number,
  K: number,
  N: number,
  transA: boolean,
  transB: boolean,
  x: { bias: boolean; act: Activation; pre: boolean; grad: { act: Activation; fromOutput: boolean } | null },
): MatmulSpec {
  // vec4 views need whole vec4s: the contiguous axis a multiple of 4 and the operand not empty (K = 0).
  return {
    transA,
    transB,
    vecA: K > 0 && (transA ? M : K) % 4 === 0,
    vecB: K > 0 && (transB ? K : N) % 4 === 0,
    vecC: N % 4 === 0,
    bias: x.bias,
    act: x.act,
    writePre: x.pre,
    gradAct: x.grad ? x.grad.act : null,
    gradFrom: x.grad?.fromOutput ? 'out' : 'pre',
  };
}

export interface MatmulIntoOptions extends MatmulOptions, GemmExtras {
  /** Run this kernel configuration instead of the one matmulConfigFor() picks (tuning, tests). */
  config?: MatmulConfig;
}

/**
 * out = epilogue(op(A) op(B)) without autograd. `out` is [M, N] and must not share a buffer with any input.
 */
export function matmulInto(out: Tensor, a: Tensor, b: Tensor, opts: MatmulIntoOptions = {}): Tensor {
  const transA = opts.transA ?? false;
  const transB = opts.transB ?? false;
  const { M, K, N } = dims(a, b, transA, transB, 'matmul');
  if (out.rank !== 2 || out.shape[0] !== M || out.shape[1] !== N) throw new Error(`matmul: output [${out.shape}] should be [${M}, ${N}]`);
  const bias = opts.bias ?? null;
  if (bias && (bias.size !== N || bias.dtype !== 'f32')) throw new Error(`matmul: bias [${bias.shape}] should have ${N} elements`);
  const pre = opts.pre ?? null;
  if (pre && pre.size !== M * N) throw new Error(`matmul: pre-activation [${pre.shape}] should have ${M * N} elements`);
  const grad = opts.gradThrough ?? null;
  if (grad && grad.from.size !== a.size) throw new Error(`matmul: act' source [${grad.from.shape}] should match A [${a.shape}]`);
  const act = opts.act ?? 'identity';
  if (!ACTIVATIONS.includes(act)) throw new Error(`matmul: unknown activation "${String(act)}"`);
  if (M === 0 || N === 0) return out;
  const spec = productSpec(M, K, N, transA, transB, { bias: bias !== null, act, pre: pre !== null, grad });
  const { k, tile } = programFor(spec, opts.config ?? matmulConfigFor(M, K, N, { transA, transB }));
  const buffers: Record<string, Tensor> = { a, b, out };
  if (bias) buffers.bias = bias;
  if (pre) buffers.pre = pre;
  if (grad) buffers.az = grad.from;
  runtime().dispatch(k, buffers, { M, N, K }, [Math.ceil(N / tile.cols), Math.ceil(M / tile.rows), 1]);
  return out;
}

/** Gradients of C = op(A) op(B) with respect to A and B (as stored, transposes undone). */
function matmulGrads(g: Tensor, a: Tensor, b: Tensor, transA: boolean, transB: boolean): [Tensor | null, Tensor | null] {
  let da: Tensor | null = null;
  let db: Tensor | null = null;
  if (a.requiresGrad) {
    // dA' = dC op(B)^T; when A is stored transposed, dA = (dA')^T = op(B) dC^T.
    da = transA ? matmul(b, g, { transA: transB, transB: true }) : matmul(g, b, { transB: !transB });
  }
  if (b.requiresGrad) {
    // dB' = op(A)^T dC; when B is stored transposed, dB = dC^T op(A).
    db = transB ? matmul(g, a, { transA: true, transB: transA }) : matmul(a, g, { transA: !transA });
  }
  return [da, db];
}

/** C = op(A) op(B) for 2-D tensors, op(X) = X or X^T. */
export function matmul(a: Tensor, b: Tensor, opts: MatmulOptions = {}): Tensor {
  const transA = opts.transA ?? false;
  const transB = opts.transB ?? false;
  const { M, N } = dims(a, b, transA, transB, 'matmul');
  const out = matmulInto(empty([M, N]), a, b, { transA, transB });
  if (needsGrad(a, b)) record('matmul', [a, b], [out], ([g]) => matmulGrads(g!, a, b, transA, transB));
  return out;
}

/** sum over rows of g * act'(from) for a [rows, cols] gradient: the bias gradient of a layer. */
function columnSum(g: Tensor, through: { act: Activation; from: Tensor; fromOutput: boolean } | null, into: Tensor | null = null): Tensor {
  const cols = g.shape[g.rank - 1]!;
  const rows = g.size / cols;
  const out = into ?? empty([cols]);
  const from = through?.fromOutput ? 'out' : 'pre';
  const vec = cols % 4 === 0 && rows > 0;
  const k = kernel(`matmulColumnSum_${through ? `${through.act}-${from}` : 'plain'}_${vec ? 'v' : 's'}`, () =>
    columnSumSource(through ? through.act : null, from, vec),
  );
  const buffers: Record<string, Tensor> = { g, out };
  if (through) buffers.gz = through.from;
  runtime().dispatch(k, buffers, { rows, cols }, flatGrid(vec ? cols / 4 : cols, 64));
  return out;
}

/**
 * How linear's backward applies act': 'fused' folds it into the reads of dY by both products and the column
 * sum; 'separate' first writes dZ once (an elementwise pass) and runs plain products. 'auto' picks fused,
 * except for the register family, where every lane re-reads its rows of dY once per column tile and one
 * extra pass costs less.
 */
export const linearTuning: { backward: 'auto' | 'fused' | 'separate' } = { backward: 'auto' };

function separateGradPass(batch: number, outF: number, inF: number): boolean {
  if (linearTuning.backward !== 'auto') return linearTuning.backward === 'separate';
  return matmulConfigFor(batch, outF, inF).family === 'register';
}

/** g * act'(from) as a new tensor. */
function gradThrough(g: Tensor, through: { act: Activation; from: Tensor; fromOutput: boolean }): Tensor {
  const out = empty(g.shape);
  const from = through.fromOutput ? 'out' : 'pre';
  const vec = g.size % 4 === 0 && g.size > 0;
  const k = kernel(`matmulGradThrough_${through.act}-${from}_${vec ? 'v' : 's'}`, () => gradThroughSource(through.act, from, vec));
  const n = vec ? g.size / 4 : g.size;
  runtime().dispatch(k, { g, gz: through.from, out }, { n }, flatGrid(n));
  return out;
}

/**
 * y = act(x W^T + b): x [B, in], weight [out, in] (PyTorch layout), bias [out] or null. Differentiable in
 * x, weight and bias. The pre-activation is stored only when a backward will need it (silu and mish; relu,
 * tanh and sigmoid take act' from the output).
 */
export function linear(x: Tensor, weight: Tensor, bias: Tensor | null, act: Activation = 'identity'): Tensor {
  if (x.rank !== 2) throw new Error(`linear: x must be [batch, in], got [${x.shape}]`);
  if (weight.rank !== 2) throw new Error(`linear: weight must be [out, in], got [${weight.shape}]`);
  if (x.shape[1] !== weight.shape[1]) throw new Error(`linear: x [${x.shape}] and weight [${weight.shape}] disagree on in-features`);
  const outF = weight.shape[0]!;
  if (bias && (bias.rank !== 1 || bias.size !== outF)) throw new Error(`linear: bias [${bias.shape}] should be [${outF}]`);
  if (!ACTIVATIONS.includes(act)) throw new Error(`linear: unknown activation "${String(act)}"`);
  const batch = x.shape[0]!;
  const inputs = bias ? [x, weight, bias] : [x, weight];
  const grad = needsGrad(...inputs);
  const y = empty([batch, outF]);
  const pre = grad && needsPreActivation(act) ? empty([batch, outF]) : null;
  matmulInto(y, x, weight, { transB: true, bias, act, pre });
  if (!grad) return y;
  record('linear', inputs, [y], ([gy], into) => {
    let g = gy!;
    let through = act === 'identity' ? null : { act, from: pre ?? y, fromOutput: pre === null };
    if (through && separateGradPass(batch, outF, x.shape[1]!)) {
      g = gradThrough(g, through);
      through = null;
    }
    let dx: Tensor | null = null;
    let dw: Tensor | null = null;
    let db: Tensor | null = null;
    if (x.requiresGrad) dx = matmulInto(empty([batch, x.shape[1]!]), g, weight, { gradThrough: through });
    // the parameters' zeroed gradient slots, when offered, receive the products directly
    if (weight.requiresGrad) dw = matmulInto(into[1] ?? empty([outF, x.shape[1]!]), g, x, { transA: true, gradThrough: through });
    if (bias?.requiresGrad) db = columnSum(g, through, into[2] ?? null);
    return bias ? [dx, dw, db] : [dx, dw];
  });
  return y;
}

// Matrix products with autograd: matmul (2-D, optional transposes) and the fused layer y = act(x W^T + b)
// with W in PyTorch's [out, in] layout. Bias and activation are applied as the product is written. The
// layer's backward folds act' into the reads of dY by the two products that need it (dX = dZ W,
// dW = dZ^T x) and by the column sum that gives db; with the register family it writes dZ once instead.
import { kernel, type Kernel } from '../kernel.ts';
import { runtime } from '../runtime.ts';
import { empty, type Tensor } from '../tensor.ts';
import { needsGrad, record } from '../autograd.ts';
import { flatGrid, ACTIVATIONS, type Activation } from '../../kernels/common.ts';
import {
  columnSumSource,
  gradThroughSource,
  needsPreActivation,
  registerMatmulSource,
  registerTile,
  specKey,
  tiledMatmulSource,
  TILED_TILE,
  type MatmulSpec,
  type MatmulTile,
  type RegisterConfig,
} from '../../kernels/matmul.ts';

export type { Activation } from '../../kernels/common.ts';
export type MatmulFamily = 'register' | 'tiled';

let familySetting: MatmulFamily | 'auto' = 'auto';
let subgroupSetting: 'auto' | 'off' = 'auto';

/** Forces a kernel family ('auto': register-blocked on software adapters, workgroup tiles on GPUs). */
export function setMatmulFamily(f: MatmulFamily | 'auto'): void {
  if (f !== 'auto' && f !== 'register' && f !== 'tiled') throw new Error(`setMatmulFamily: unknown family "${String(f)}"`);
  familySetting = f;
}

/** The family the next product will use. */
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

/** The fixed subgroup size the register family shares loads across, or null. */
export function matmulSubgroupSize(): number | null {
  if (subgroupSetting === 'off') return null;
  const rt = runtime();
  if (!rt.info.features.includes('subgroups')) return null;
  const info = (rt.device as GPUDevice & { adapterInfo?: { subgroupMinSize?: number; subgroupMaxSize?: number } }).adapterInfo;
  const lo = info?.subgroupMinSize;
  const hi = info?.subgroupMaxSize;
  // The workgroup is one subgroup of exactly this size; a size range would break the lane arithmetic.
  if (!lo || lo !== hi || lo < 4 || lo > 64 || (lo & (lo - 1)) !== 0) return null;
  return lo;
}

/** Rows per subgroup tile of the register family (rounded to a multiple of the subgroup size). */
export const matmulTuning: { sharedRows: number } = { sharedRows: 32 };

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

function programFor(spec: MatmulSpec): { k: Kernel; tile: MatmulTile } {
  if (matmulFamily() === 'tiled') {
    return { k: kernel(`matmulTiled_${specKey(spec)}`, () => tiledMatmulSource(spec)), tile: TILED_TILE };
  }
  const cfg: RegisterConfig = { subgroup: matmulSubgroupSize(), rows: matmulTuning.sharedRows };
  return {
    k: kernel(`matmulRegister_s${cfg.subgroup ?? 0}r${cfg.rows}_${specKey(spec)}`, () => registerMatmulSource(spec, cfg)),
    tile: registerTile(cfg),
  };
}

/**
 * out = epilogue(op(A) op(B)) without autograd. `out` is [M, N] and must not share a buffer with any input.
 */
export function matmulInto(out: Tensor, a: Tensor, b: Tensor, opts: MatmulOptions & GemmExtras = {}): Tensor {
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
  // vec4 views need whole vec4s: the contiguous axis a multiple of 4 and the operand not empty (K = 0).
  const spec: MatmulSpec = {
    transA,
    transB,
    vecA: K > 0 && (transA ? M : K) % 4 === 0,
    vecB: K > 0 && (transB ? K : N) % 4 === 0,
    vecC: N % 4 === 0,
    bias: bias !== null,
    act,
    writePre: pre !== null,
    gradAct: grad ? grad.act : null,
    gradFrom: grad?.fromOutput ? 'out' : 'pre',
  };
  const { k, tile } = programFor(spec);
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
function columnSum(g: Tensor, through: { act: Activation; from: Tensor; fromOutput: boolean } | null): Tensor {
  const cols = g.shape[g.rank - 1]!;
  const rows = g.size / cols;
  const out = empty([cols]);
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

function separateGradPass(): boolean {
  if (linearTuning.backward !== 'auto') return linearTuning.backward === 'separate';
  return matmulFamily() === 'register';
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
  record('linear', inputs, [y], ([gy]) => {
    let g = gy!;
    let through = act === 'identity' ? null : { act, from: pre ?? y, fromOutput: pre === null };
    if (through && separateGradPass()) {
      g = gradThrough(g, through);
      through = null;
    }
    let dx: Tensor | null = null;
    let dw: Tensor | null = null;
    let db: Tensor | null = null;
    if (x.requiresGrad) dx = matmulInto(empty([batch, x.shape[1]!]), g, weight, { gradThrough: through });
    if (weight.requiresGrad) dw = matmulInto(empty([outF, x.shape[1]!]), g, x, { transA: true, gradThrough: through });
    if (bias?.requiresGrad) db = columnSum(g, through);
    return bias ? [dx, dw, db] : [dx, dw];
  });
  return y;
}

// Elementwise ops with NumPy broadcasting and their gradients. Every op is a row of the table below: a WGSL
// expression over named operands for the forward, and one expression per operand (in terms of the output
// gradient `g` and the operands) whose sum over that operand's broadcast axes is its gradient. A number
// operand travels in the uniform struct, so `add(x, 1)` allocates nothing but its output.
import { kernel } from '../kernel.ts';
import { runtime } from '../runtime.ts';
import { empty, numel, reshapeStorage, Tensor } from '../tensor.ts';
import { needsGrad, record } from '../autograd.ts';
import { flatGrid, actDerivative, actForward, ACTIVATIONS, type Activation } from '../../kernels/common.ts';
import {
  EW_RANK,
  MAP_PER_THREAD,
  MAP_WG,
  REDUCE_WG,
  mapSource,
  reduceSource,
  type MapVariant,
  type OperandSpec,
} from '../../kernels/elementwise.ts';

export type Operand = Tensor | number;

interface Arg {
  name: string;
  value: Operand;
}

/**
 * Largest workgroup count per grid dimension before a launch spills into y (WebGPU's guaranteed minimum).
 * Tests lower it to cover the spilled layout with small tensors.
 */
export const launchLimits = { maxWorkgroupsPerDim: 65535 };

/** Reduction steps one invocation sums before the partial sums are added in a further pass. */
const REDUCE_CHUNK = 256;

const fmt = (s: readonly number[]) => `[${s.join(', ')}]`;

/** The NumPy broadcast of shapes: aligned at the right, each dimension equal or 1. */
export function broadcastShapes(...shapes: (readonly number[])[]): number[] {
  const rank = Math.max(0, ...shapes.map((s) => s.length));
  const out: number[] = [];
  for (let d = 0; d < rank; d++) {
    let size = 1;
    for (const s of shapes) {
      const k = s.length - rank + d;
      const v = k >= 0 ? s[k]! : 1;
      if (v === 1 || v === size) continue;
      if (size !== 1) throw new Error(`broadcastShapes: shapes ${shapes.map(fmt).join(' and ')} do not broadcast`);
      size = v;
    }
    out.push(size);
  }
  return out;
}

/** Row-major strides of `shape` read as a tensor of rank `rank`, 0 along axes where it has extent 1. */
function broadcastStrides(shape: readonly number[], rank: number): number[] {
  const strides = new Array<number>(rank).fill(0);
  let s = 1;
  for (let k = shape.length - 1; k >= 0; k--) {
    const d = rank - shape.length + k;
    if (shape[k]! !== 1) strides[d] = s;
    s *= shape[k]!;
  }
  return strides;
}

interface Layout {
  dims: number[];
  strides: number[][];
  reduced: boolean[];
}

/**
 * Drops extent-1 axes and merges neighbours that every operand walks contiguously (and, for a reduction, that
 * are both kept or both reduced). Fewer axes mean cheaper index arithmetic and shapes of any rank.
 */
function mergeAxes(dims: readonly number[], strides: number[][], reduced: readonly boolean[]): Layout {
  const out: Layout = { dims: [], strides: strides.map(() => []), reduced: [] };
  for (let d = 0; d < dims.length; d++) {
    const n = dims[d]!;
    if (n === 1) continue;
    const last = out.dims.length - 1;
    if (last >= 0 && out.reduced[last] === reduced[d] && strides.every((s, k) => out.strides[k]![last] === s[d]! * n)) {
      out.dims[last] = out.dims[last]! * n;
      strides.forEach((s, k) => (out.strides[k]![last] = s[d]!));
    } else {
      out.dims.push(n);
      strides.forEach((s, k) => out.strides[k]!.push(s[d]!));
      out.reduced.push(reduced[d]!);
    }
  }
  return out;
}

function tooManyAxes(op: string, shape: readonly number[], layout: Layout): Error {
  return new Error(`${op}: shape ${fmt(shape)} with these broadcasts needs ${layout.dims.length} index axes; at most ${EW_RANK} are supported`);
}

function padFront<T>(xs: T[], fillValue: T): T[] {
  return [...new Array<T>(EW_RANK - xs.length).fill(fillValue), ...xs];
}

const exprByName = new Map<string, string>();

function kernelKey(kind: string, name: string, expr: string, specs: OperandSpec[], variant: string): string {
  const prev = exprByName.get(name);
  if (prev === undefined) exprByName.set(name, expr);
  else if (prev !== expr) throw new Error(`elementwise program name ${name} is used for two expressions`);
  return `${kind}_${name}(${specs.map((s) => (s.kind === 'tensor' ? s.name : `${s.name}#`)).join(',')})${variant}`;
}

function checkOperands(op: string, args: Arg[]): { specs: OperandSpec[]; tensors: Arg[] } {
  const specs: OperandSpec[] = [];
  const tensors: Arg[] = [];
  for (const a of args) {
    if (a.value instanceof Tensor) {
      if (a.value.dtype !== 'f32') throw new Error(`${op}: operand ${a.name} has dtype ${a.value.dtype}; elementwise ops take f32`);
      specs.push({ name: a.name, kind: 'tensor' });
      tensors.push(a);
    } else {
      if (typeof a.value !== 'number') throw new Error(`${op}: operand ${a.name} is neither a tensor nor a number`);
      specs.push({ name: a.name, kind: 'scalar' });
    }
  }
  return { specs, tensors };
}

/** Dispatches out = expr over `shape`, allocating the output with `resultShape` (same size). */
function runMap(name: string, expr: string, args: Arg[], shape: readonly number[], resultShape: readonly number[] = shape): Tensor {
  const { specs, tensors } = checkOperands(name, args);
  const out = empty(resultShape);
  const n = out.size;
  const layout = mergeAxes(
    shape,
    tensors.map((t) => broadcastStrides((t.value as Tensor).shape, shape.length)),
    shape.map(() => false),
  );
  if (layout.dims.length > EW_RANK) throw tooManyAxes(name, shape, layout);
  const variant: MapVariant = layout.dims.length <= 1 ? 'flat' : 'nd';
  const uniforms: Record<string, number> = { n };
  const buffers: Record<string, Tensor> = { out };
  if (variant === 'nd') {
    const dims = padFront(layout.dims, 1);
    for (let d = 1; d < EW_RANK; d++) uniforms[`d${d}`] = dims[d]!;
  }
  tensors.forEach((t, k) => {
    buffers[`x_${t.name}`] = t.value as Tensor;
    const st = layout.strides[k]!;
    if (variant === 'flat') uniforms[`${t.name}_s`] = st[0] ?? 0;
    else padFront(st, 0).forEach((s, d) => (uniforms[`${t.name}_s${d}`] = s));
  });
  for (const a of args) if (!(a.value instanceof Tensor)) uniforms[`${a.name}_v`] = a.value;
  const k = kernel(kernelKey('map', name, expr, specs, variant), () => mapSource(expr, specs, variant));
  runtime().dispatch(k, buffers, uniforms, flatGrid(Math.ceil(n / MAP_PER_THREAD), MAP_WG, launchLimits.maxWorkgroupsPerDim));
  return out;
}

/** Sums expr, evaluated over `shape`, over the axes where `target` (broadcastable to shape) has extent 1. */
function runReduce(name: string, expr: string, args: Arg[], shape: readonly number[], target: readonly number[]): Tensor {
  const { specs, tensors } = checkOperands(name, args);
  const rank = shape.length;
  const targetStrides = broadcastStrides(target, rank);
  const aligned = shape.map((_, d) => target[d - (rank - target.length)] ?? 1);
  const reduced = shape.map((n, d) => aligned[d] === 1 && n !== 1);
  const layout = mergeAxes(shape, [...tensors.map((t) => broadcastStrides((t.value as Tensor).shape, rank)), targetStrides], reduced);
  const kept = numel(target);
  const total = numel(shape);
  if (kept === 0) return empty(target);
  if (layout.dims.length > EW_RANK) return reduceInStages(name, expr, args, shape, target, reduced);
  const steps = total / kept;
  const chunk = steps <= REDUCE_CHUNK ? Math.max(steps, 1) : REDUCE_CHUNK;
  const parts = Math.max(1, Math.ceil(steps / chunk));
  const out = empty(parts === 1 ? target : [parts, kept]);
  const dims = padFront(layout.dims, 1);
  const red = padFront(layout.reduced, false);
  const uniforms: Record<string, number> = { kept, total: parts * kept, reduced: steps, chunk };
  for (let d = 1; d < EW_RANK; d++) {
    uniforms[`kd${d}`] = red[d] ? 1 : dims[d]!;
    uniforms[`rd${d}`] = red[d] ? dims[d]! : 1;
  }
  const buffers: Record<string, Tensor> = { out };
  tensors.forEach((t, k) => {
    buffers[`x_${t.name}`] = t.value as Tensor;
    padFront(layout.strides[k]!, 0).forEach((s, d) => (uniforms[`${t.name}_s${d}`] = s));
  });
  for (const a of args) if (!(a.value instanceof Tensor)) uniforms[`${a.name}_v`] = a.value;
  const k = kernel(kernelKey('reduce', name, expr, specs, ''), () => reduceSource(expr, specs));
  runtime().dispatch(k, buffers, uniforms, flatGrid(parts * kept, REDUCE_WG, launchLimits.maxWorkgroupsPerDim));
  if (parts === 1) return out;
  const partial = reshapeStorage(out, [parts, ...target]);
  out.dispose();
  const sum = runReduce('sum', 'a', [{ name: 'a', value: partial }], partial.shape, target);
  partial.dispose();
  return sum;
}

/**
 * A reduction whose kept and reduced axes alternate too often for one pass: the first reduced axis is summed
 * alone (over the expression's values, materialised unless they already are one contiguous tensor), then the
 * rest, each pass needing fewer index axes.
 */
function reduceInStages(name: string, expr: string, args: Arg[], shape: readonly number[], target: readonly number[], reduced: boolean[]): Tensor {
  const lone = args.length === 1 ? args[0]!.value : null;
  const contiguous = lone instanceof Tensor && expr === args[0]!.name && lone.size === numel(shape);
  const values = contiguous ? lone : runMap(name, expr, args, shape);
  const axis = reduced.indexOf(true);
  const mid = shape.map((n, d) => (d === axis ? 1 : n));
  const stage = runReduce('sum', 'a', [{ name: 'a', value: values }], shape, mid);
  if (values !== lone) values.dispose();
  const result = runReduce('sum', 'a', [{ name: 'a', value: stage }], mid, target);
  stage.dispose();
  return result;
}

function checkReducible(op: string, shape: readonly number[], target: readonly number[]): void {
  const ok =
    target.length <= shape.length &&
    target.every((n, k) => {
      const full = shape[shape.length - target.length + k]!;
      return n === full || n === 1;
    });
  if (!ok) throw new Error(`${op}: shape ${fmt(target)} is not broadcastable to ${fmt(shape)}`);
}

/**
 * expr evaluated over `shape` and summed down to `target` (which may also add leading axes of extent 1).
 * When nothing is summed and expr is a lone tensor operand, that tensor's storage is returned under the
 * target shape without a copy.
 */
function mapToShape(name: string, expr: string, args: Arg[], shape: readonly number[], target: readonly number[]): Tensor {
  const lead = target.length - shape.length;
  if (lead > 0 && target.slice(0, lead).every((n) => n === 1)) {
    const inner = mapToShape(name, expr, args, shape, target.slice(lead));
    const shaped = reshapeStorage(inner, target);
    inner.dispose();
    return shaped;
  }
  checkReducible(name, shape, target);
  const only = args.length === 1 ? args[0]! : null;
  const lone = only && only.value instanceof Tensor && expr === only.name ? only.value : null;
  if (numel(target) === numel(shape)) return lone ? reshapeStorage(lone, target) : runMap(name, expr, args, shape, target);
  // every plain sum shares one program, whatever the operand is called
  return lone ? runReduce('sum', 'a', [{ name: 'a', value: lone }], shape, target) : runReduce(name, expr, args, shape, target);
}

/**
 * Sums a gradient over the axes along which an input of `shape` was broadcast, giving a tensor of `shape`
 * (`shape` broadcasts to g's shape, or is it with leading axes of extent 1). When no axis is summed the result
 * shares g's storage (no copy).
 */
export function sumToShape(g: Tensor, shape: readonly number[]): Tensor {
  return mapToShape('sum', 'a', [{ name: 'a', value: g }], g.shape, shape);
}

// ---- the op table ----

interface OpDef {
  name: string;
  operands: readonly string[];
  forward: string;
  /** Per operand: d(out)/d(operand) times g, or null where no gradient flows. Absent: not differentiable. */
  grads?: readonly (string | null)[];
}

function uses(expr: string, name: string): boolean {
  return new RegExp(`\\b${name}\\b`).test(expr);
}

function apply(def: OpDef, values: readonly Operand[]): Tensor {
  const args: Arg[] = def.operands.map((name, i) => ({ name, value: values[i]! }));
  const tensorArgs = args.filter((a) => a.value instanceof Tensor);
  if (tensorArgs.length === 0) throw new Error(`${def.name}: at least one operand must be a tensor`);
  const inputs = tensorArgs.map((a) => a.value as Tensor);
  let shape: number[];
  try {
    shape = broadcastShapes(...inputs.map((t) => t.shape));
  } catch {
    throw new Error(`${def.name}: operand shapes ${inputs.map((t) => fmt(t.shape)).join(', ')} do not broadcast`);
  }
  const out = runMap(def.name, def.forward, args, shape);
  const grads = def.grads;
  if (grads && needsGrad(...inputs)) {
    record(def.name, inputs, [out], ([g]) =>
      tensorArgs.map((a) => {
        const t = a.value as Tensor;
        const expr = grads[def.operands.indexOf(a.name)];
        if (!expr || !t.requiresGrad || !g) return null;
        // only the operands the gradient expression reads are bound
        const gargs = [{ name: 'g', value: g }, ...args].filter((x) => uses(expr, x.name));
        return mapToShape(`${def.name}_d${a.name}`, expr, gargs, shape, t.shape);
      }),
    );
  }
  return out;
}

const binary = (name: string, forward: string, ga: string | null, gb: string | null): OpDef => ({
  name,
  operands: ['a', 'b'],
  forward,
  grads: [ga, gb],
});
const unary = (name: string, forward: string, grad: string): OpDef => ({ name, operands: ['a'], forward, grads: [grad] });
const compare = (name: string, test: string): OpDef => ({ name, operands: ['a', 'b'], forward: `select(0.0, 1.0, ${test})` });

const OPS = {
  add: binary('add', 'a + b', 'g', 'g'),
  sub: binary('sub', 'a - b', 'g', '-g'),
  mul: binary('mul', 'a * b', 'g * b', 'g * a'),
  div: binary('div', 'a / b', 'g / b', '-g * a / (b * b)'),
  // ties send the whole gradient to the first operand
  minimum: binary('minimum', 'min(a, b)', 'select(0.0, g, a <= b)', 'select(0.0, g, b < a)'),
  maximum: binary('maximum', 'max(a, b)', 'select(0.0, g, a >= b)', 'select(0.0, g, b > a)'),
  pow: { name: 'pow', operands: ['a', 'ex'], forward: 'wd_pow(a, ex)', grads: ['g * ex * wd_pow(a, ex - 1.0)', null] } as OpDef,
  neg: unary('neg', '-a', '-g'),
  exp: unary('exp', 'exp(a)', 'g * exp(a)'),
  log: unary('log', 'log(a)', 'g / a'),
  sqrt: unary('sqrt', 'sqrt(a)', 'g * 0.5 / sqrt(a)'),
  square: unary('square', 'a * a', '2.0 * g * a'),
  abs: unary('abs', 'abs(a)', 'g * sign(a)'),
  softplus: unary('softplus', 'wd_softplus(a)', 'g * wd_sigmoid(a)'),
  // the gradient reaches x inside [lo, hi] (ends included) and the bound that is active outside it
  clamp: {
    name: 'clamp',
    operands: ['a', 'lo', 'hi'],
    forward: 'min(max(a, lo), hi)',
    grads: ['select(0.0, g, a >= lo && a <= hi)', 'select(0.0, g, a < lo)', 'select(0.0, g, a > hi)'],
  } as OpDef,
  where: {
    name: 'where',
    operands: ['cond', 'a', 'b'],
    forward: 'select(b, a, cond != 0.0)',
    grads: [null, 'select(0.0, g, cond != 0.0)', 'select(g, 0.0, cond != 0.0)'],
  } as OpDef,
  gt: compare('gt', 'a > b'),
  ge: compare('ge', 'a >= b'),
  lt: compare('lt', 'a < b'),
  le: compare('le', 'a <= b'),
  eq: compare('eq', 'a == b'),
  ne: compare('ne', 'a != b'),
};

const activationDefs = new Map<Activation, OpDef>(
  ACTIVATIONS.filter((a) => a !== 'identity').map((a) => [a, unary(a, actForward(a, 'a'), `g * ${actDerivative(a, 'a')}`)]),
);

// ---- binary ----

/** a + b, broadcasting; either side may be a number. */
export const add = (a: Operand, b: Operand): Tensor => apply(OPS.add, [a, b]);
/** a - b, broadcasting; either side may be a number. */
export const sub = (a: Operand, b: Operand): Tensor => apply(OPS.sub, [a, b]);
/** a * b, broadcasting; either side may be a number. */
export const mul = (a: Operand, b: Operand): Tensor => apply(OPS.mul, [a, b]);
/** a / b, broadcasting; either side may be a number. */
export const div = (a: Operand, b: Operand): Tensor => apply(OPS.div, [a, b]);
/** Elementwise min; at a tie the gradient goes to a. */
export const minimum = (a: Operand, b: Operand): Tensor => apply(OPS.minimum, [a, b]);
/** Elementwise max; at a tie the gradient goes to a. */
export const maximum = (a: Operand, b: Operand): Tensor => apply(OPS.maximum, [a, b]);
/**
 * x^ex for a number ex. A negative x keeps its sign under an odd integer exponent and is taken by absolute
 * value otherwise (ex should then be an integer); 0^ex is 1 for ex = 0 and 0 otherwise.
 */
export const pow = (x: Tensor, ex: number): Tensor => apply(OPS.pow, [x, ex]);
/** x * s for a number s. */
export const scale = (x: Tensor, s: number): Tensor => apply(OPS.mul, [x, s]);

// ---- unary ----

export const neg = (x: Tensor): Tensor => apply(OPS.neg, [x]);
export const exp = (x: Tensor): Tensor => apply(OPS.exp, [x]);
export const log = (x: Tensor): Tensor => apply(OPS.log, [x]);
export const sqrt = (x: Tensor): Tensor => apply(OPS.sqrt, [x]);
export const square = (x: Tensor): Tensor => apply(OPS.square, [x]);
/** |x|; the gradient at 0 is 0. */
export const abs = (x: Tensor): Tensor => apply(OPS.abs, [x]);
/** log(1 + e^x), computed without overflow. */
export const softplus = (x: Tensor): Tensor => apply(OPS.softplus, [x]);

export type ActivationName = Activation | 'softplus';

/** Applies an activation by name. 'identity' returns x itself (no copy). */
export function activation(x: Tensor, act: ActivationName): Tensor {
  if (act === 'identity') return x;
  if (act === 'softplus') return softplus(x);
  const def = activationDefs.get(act);
  if (!def) throw new Error(`activation: unknown activation '${act as string}'`);
  return apply(def, [x]);
}

/** max(x, 0); the gradient at 0 is 0. */
export const relu = (x: Tensor): Tensor => activation(x, 'relu');
export const mish = (x: Tensor): Tensor => activation(x, 'mish');
export const silu = (x: Tensor): Tensor => activation(x, 'silu');
export const tanh = (x: Tensor): Tensor => activation(x, 'tanh');
export const sigmoid = (x: Tensor): Tensor => activation(x, 'sigmoid');

// ---- selection ----

/**
 * min(max(x, lo), hi), with lo <= hi numbers or tensors broadcastable to x. The gradient passes to x where
 * lo <= x <= hi and to a bound tensor where that bound is active.
 */
export function clamp(x: Tensor, lo: Operand, hi: Operand): Tensor {
  const shapes = [lo, hi].filter((v): v is Tensor => v instanceof Tensor).map((t) => t.shape);
  const shape = broadcastShapes(x.shape, ...shapes);
  if (shape.length !== x.rank || shape.some((n, d) => n !== x.shape[d])) {
    throw new Error(`clamp: bounds of shapes ${shapes.map(fmt).join(', ')} do not broadcast to x ${fmt(x.shape)}`);
  }
  return apply(OPS.clamp, [x, lo, hi]);
}

/** cond ? a : b elementwise, broadcasting all three; cond is an f32 tensor of 0/1 (any nonzero is true). */
export const where = (cond: Tensor, a: Operand, b: Operand): Tensor => apply(OPS.where, [cond, a, b]);

// ---- comparisons: f32 0/1, not differentiable ----

export const gt = (a: Operand, b: Operand): Tensor => apply(OPS.gt, [a, b]);
export const ge = (a: Operand, b: Operand): Tensor => apply(OPS.ge, [a, b]);
export const lt = (a: Operand, b: Operand): Tensor => apply(OPS.lt, [a, b]);
export const le = (a: Operand, b: Operand): Tensor => apply(OPS.le, [a, b]);
export const eq = (a: Operand, b: Operand): Tensor => apply(OPS.eq, [a, b]);
export const ne = (a: Operand, b: Operand): Tensor => apply(OPS.ne, [a, b]);

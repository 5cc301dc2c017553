// The action gradient of a twin-Q critic, g = d/da (Q1(s, a) + Q2(s, a)) / 2 (SRPO's guidance, DTQL's and
// EDP's actor term), in one fused dispatch (kernels/critic-grad.ts) instead of an autograd forward and backward
// through both heads. The result is a detached tensor: nothing is recorded on the tape, nothing is read back
// and nothing is written from the host, so a call can sit inside a recorded training step.
import { detach, grad, isGradEnabled, tapeLength } from '../../engine/autograd.ts';
import { copy_, full } from '../../engine/basic.ts';
import { kernel } from '../../engine/kernel.ts';
import { Linear } from '../../engine/nn.ts';
import { matmulSubgroupSize } from '../../engine/ops/matmul.ts';
import { concat } from '../../engine/ops/shape.ts';
import { runtime, type BufferBinding } from '../../engine/runtime.ts';
import { empty, tidy, viewOf, type Tensor } from '../../engine/tensor.ts';
import {
  biasField,
  criticGradGrid,
  criticGradKey,
  criticGradSource,
  criticGradWorkgroupBytes,
  weightField,
  widthField,
  type CriticGradSpec,
} from '../../kernels/critic-grad.ts';
import type { TwinQ } from './critic-nets.ts';

/** Launch shape of the fused kernel; tuning only (every choice gives the same result). */
export interface CriticGradTuning {
  /** Batch rows per workgroup (halved until the activations fit in workgroup memory). */
  rows: number;
  /** Invocations per workgroup. */
  workgroup: number;
  /** Groups of four hidden units per invocation per pass. */
  groups: number;
  /** Share activation reads across a subgroup (used only where the device has one fixed subgroup size equal to workgroup). */
  subgroup?: boolean;
}

/**
 * Measured with bench/critic-grad.ts. Software adapters run a workgroup on one core and pay per barrier and
 * per lane-read, so they want many rows per workgroup (each weight read feeds more rows); GPUs want more
 * workgroups in flight, so fewer rows each.
 */
export function defaultCriticGradTuning(): CriticGradTuning {
  return runtime().info.adapterClass === 'software'
    ? { rows: 16, workgroup: 8, groups: 1, subgroup: true }
    : { rows: 4, workgroup: 64, groups: 1, subgroup: false };
}

export interface TwinQActionGradOptions {
  /**
   * Default: 'autograd' on software adapters (measured faster there), else 'auto'. 'auto': fused when the
   * heads allow it, else autograd; 'fused' throws when they do not.
   */
  path?: 'auto' | 'fused' | 'autograd';
  tuning?: Partial<CriticGradTuning>;
}

/** The result of twinQActionGradAndValues: g [B, actDim] and [Q1, Q2] per row, [B, 2]; both detached. */
export interface ActionGradAndValues {
  grad: Tensor;
  values: Tensor;
}

function headLinears(q: TwinQ): [Linear[], Linear[]] {
  const linears = (head: TwinQ['q1']) => head.layers.layers.map((l) => l as Linear);
  return [linears(q.q1), linears(q.q2)];
}

/**
 * Why the fused kernel cannot compute this critic's gradient, or null when it can. It covers MLP heads with
 * biases, a ReLU or Mish between layers and an identity output; LayerNorm heads (DTQL's critic) are left to
 * the autograd path.
 */
export function fusedCriticGradUnsupported(q: TwinQ): string | null {
  for (const head of [q.q1, q.q2]) {
    if (head.norms.length > 0) return 'LayerNorm heads';
    if (head.act !== 'relu' && head.act !== 'mish') return `activation ${head.act}`;
    const layers = head.layers.layers;
    for (let i = 0; i < layers.length; i++) {
      const l = layers[i];
      if (!(l instanceof Linear)) return 'a head layer that is not Linear';
      if (!l.bias) return 'Linear layers without bias';
      const want = i === layers.length - 1 ? 'identity' : head.act;
      if (l.act !== want) return `layer ${i} activation ${l.act}`;
    }
    if (layers.length < 2) return 'a head without hidden layers';
    if ((layers[layers.length - 1] as Linear).outFeatures !== 1) return 'a head with more than one output';
  }
  return null;
}

interface PackedWeights {
  binding: BufferBinding;
  /** Element offsets relative to the binding, per head: [weight, bias] per Linear layer. */
  offsets: [number, number][][];
  /** A gathered copy made for this call (parameters not in one flat buffer); the caller disposes it. */
  scratch: Tensor | null;
}

/**
 * The heads' parameters as one binding. Parameters packed in one flat group (the usual case: the critic's
 * paramGroup()) are bound in place; otherwise they are copied into one scratch buffer first (a few more
 * dispatches).
 */
function packWeights(linears: [Linear[], Linear[]]): PackedWeights {
  const rt = runtime();
  const align = rt.device.limits.minStorageBufferOffsetAlignment;
  const tensors = linears.flatMap((ls) => ls.flatMap((l) => [l.weight, l.bias!]));
  const buffer = tensors[0]!.storage.buffer;
  const inPlace = tensors.every((t) => t.storage.buffer === buffer && t.storage.byteOffset % 16 === 0);
  if (inPlace) {
    let lo = Infinity;
    let hi = 0;
    for (const t of tensors) {
      lo = Math.min(lo, t.storage.byteOffset);
      hi = Math.max(hi, t.storage.byteOffset + t.size * 4);
    }
    const start = Math.floor(lo / align) * align;
    const end = Math.min(buffer.size, Math.ceil(hi / 16) * 16);
    const offsets = linears.map((ls) => ls.map((l): [number, number] => [(l.weight.storage.byteOffset - start) / 4, (l.bias!.storage.byteOffset - start) / 4]));
    return { binding: { buffer, offset: start, size: end - start }, offsets, scratch: null };
  }
  const alignFloats = Math.max(4, align / 4);
  let total = 0;
  const place = (t: Tensor) => {
    const at = total;
    total += Math.ceil(t.size / alignFloats) * alignFloats;
    return at;
  };
  const offsets = linears.map((ls) => ls.map((l): [number, number] => [place(l.weight), place(l.bias!)]));
  const scratch = empty([total]);
  linears.forEach((ls, h) =>
    ls.forEach((l, j) => {
      const [wo, bo] = offsets[h]![j]!;
      for (const [t, at] of [[l.weight, wo], [l.bias!, bo]] as const) {
        const slot = viewOf(scratch.storage.buffer, scratch.storage.byteOffset + at * 4, t.shape);
        copy_(slot, t);
        slot.dispose();
      }
    }),
  );
  return { binding: scratch.binding(), offsets, scratch };
}

function checkInputs(op: string, q: TwinQ, obs: Tensor, actions: Tensor): number {
  const B = obs.shape[0] ?? 0;
  if (obs.dtype !== 'f32' || obs.rank !== 2 || obs.shape[1] !== q.obsDim || B < 1) {
    throw new Error(`${op}: obs must be a non-empty f32 [B, ${q.obsDim}] tensor, got ${obs.dtype} [${obs.shape}]`);
  }
  if (actions.dtype !== 'f32' || actions.rank !== 2 || actions.shape[0] !== B || actions.shape[1] !== q.actDim) {
    throw new Error(`${op}: actions must be an f32 [${B}, ${q.actDim}] tensor, got ${actions.dtype} [${actions.shape}]`);
  }
  return B;
}

interface Result {
  grad: Tensor;
  values: Tensor | null;
}

function fusedActionGrad(q: TwinQ, obs: Tensor, actions: Tensor, B: number, values: boolean, tuningOpts: Partial<CriticGradTuning>): Result | null {
  const rt = runtime();
  const limits = rt.device.limits;
  const tuning = { ...defaultCriticGradTuning(), ...tuningOpts };
  const linears = headLinears(q);
  const hidden = linears[0].slice(0, -1).map((l) => l.outFeatures);
  const maxHidden = Math.max(...hidden);
  const workgroup = Math.max(1, Math.min(tuning.workgroup, limits.maxComputeInvocationsPerWorkgroup));
  const spec: CriticGradSpec = {
    depth: hidden.length,
    act: q.q1.act as 'relu' | 'mish',
    rows: Math.max(1, tuning.rows),
    workgroup,
    groups: Math.max(1, tuning.groups),
    cap: Math.ceil(maxHidden / 32) * 32,
    vec4: hidden.every((w) => w % 4 === 0),
    values,
  };
  const sg = tuning.subgroup ? matmulSubgroupSize() : null;
  const fits = () => {
    spec.subgroup = sg !== null && spec.vec4 && spec.workgroup === sg && spec.rows % sg === 0;
    return criticGradWorkgroupBytes(spec) <= limits.maxComputeWorkgroupStorageSize;
  };
  while (spec.rows > 1 && !fits()) spec.rows >>= 1;
  if (!fits()) return null;

  const packed = packWeights(linears);
  const inDim = q.obsDim + q.actDim;
  const uniforms: Record<string, number> = {
    batch: B,
    obsDim: q.obsDim,
    actDim: q.actDim,
    obsCol: q.inputOrder === 'sa' ? 0 : q.actDim,
    actCol: q.inputOrder === 'sa' ? q.obsDim : 0,
    inDim,
  };
  hidden.forEach((w, i) => (uniforms[widthField(i + 1)] = w));
  ([1, 2] as const).forEach((h) =>
    packed.offsets[h - 1]!.forEach(([wo, bo], j) => {
      uniforms[weightField(h, j)] = wo;
      uniforms[biasField(h, j)] = bo;
    }),
  );
  const out = empty([B, q.actDim]);
  const qvals = values ? empty([B, 2]) : null;
  const k = kernel(criticGradKey(spec), () => criticGradSource(spec));
  const buffers: Record<string, Tensor | BufferBinding> = { obs, actions, params: packed.binding, grad: out };
  if (qvals) buffers.qvals = qvals;
  rt.dispatch(k, buffers, uniforms, criticGradGrid(B, spec.rows, limits.maxComputeWorkgroupsPerDimension));
  packed.scratch?.dispose();
  return { grad: out, values: qvals };
}

/** The same quantities through autograd (both heads forward, then backward to the actions). */
function autogradActionGrad(op: string, q: TwinQ, obs: Tensor, actions: Tensor, values: boolean): Result {
  if (!isGradEnabled()) throw new Error(`${op}: the autograd path (taken for ${fusedCriticGradUnsupported(q) ?? 'this call'}) needs recording; do not call it inside noGrad`);
  // entries recorded onto an empty tape are cleared; behind a caller's entries they stay and cost nothing
  // in its next backward, as no gradient flows into them
  const clear = tapeLength() === 0;
  return tidy(() => {
    const a = detach(actions);
    a.requiresGrad = true;
    const [q1, q2] = q.forward(obs, a);
    const half = full(q1.shape, 0.5);
    const g = grad([q1, q2], [a], [half, half], { clear })[0]!;
    return { grad: g, values: values ? concat([detach(q1), detach(q2)], 1) : null };
  });
}

function actionGrad(op: string, q: TwinQ, obs: Tensor, actions: Tensor, values: boolean, opts: TwinQActionGradOptions): Result {
  const B = checkInputs(op, q, obs, actions);
  // On software adapters the autograd path's register-blocked matmuls measured faster than the fused kernel
  // (bench/critic-grad.ts: each weight read there feeds 32 rows, the fused kernel's at most 16, bounded by
  // workgroup memory), so 'auto' keeps autograd there; GPUs get the single dispatch.
  const path = opts.path ?? (runtime().info.adapterClass === 'software' ? 'autograd' : 'auto');
  if (path !== 'autograd') {
    const why = fusedCriticGradUnsupported(q);
    if (why === null) {
      const r = fusedActionGrad(q, obs, actions, B, values, opts.tuning ?? {});
      if (r) return r;
      if (path === 'fused') throw new Error(`${op}: hidden widths too large for the fused kernel's workgroup memory`);
    } else if (path === 'fused') {
      throw new Error(`${op}: the fused kernel does not cover ${why}`);
    }
  }
  return autogradActionGrad(op, q, obs, actions, values);
}

/**
 * d/da (Q1(s, a) + Q2(s, a)) / 2 per row, [B, actDim], detached. One dispatch for MLP heads on GPUs; heads
 * with LayerNorm (or hidden layers too wide for workgroup memory), and every call on a software adapter
 * unless opts.path says 'fused', take the autograd path, which must not run inside noGrad.
 */
export function twinQActionGrad(q: TwinQ, obs: Tensor, actions: Tensor, opts: TwinQActionGradOptions = {}): Tensor {
  return actionGrad('twinQActionGrad', q, obs, actions, false, opts).grad;
}

/** twinQActionGrad plus [Q1(s, a), Q2(s, a)] per row ([B, 2]), which the fused pass computes anyway. */
export function twinQActionGradAndValues(q: TwinQ, obs: Tensor, actions: Tensor, opts: TwinQActionGradOptions = {}): ActionGradAndValues {
  const r = actionGrad('twinQActionGradAndValues', q, obs, actions, true, opts);
  return { grad: r.grad, values: r.values! };
}

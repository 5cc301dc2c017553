// Reverse-mode autodiff as a tape: each differentiable op appends one node (its inputs, its outputs and a
// hand-written backward) in execution order; backward walks the tape in reverse and sums gradients.
import { axpy_, clone, ones, zeros } from './basic.ts';
import { Tensor, keep, tidy } from './tensor.ts';

/**
 * A backward. `destinations[i]`, when given, is where input i's gradient may be written directly (a
 * parameter's zeroed gradient slot): a backward that writes there returns that very tensor, which saves the
 * separate accumulation. Ignoring it is always correct.
 */
export type GradFn = (gradOutputs: (Tensor | null)[], destinations: readonly (Tensor | null)[]) => (Tensor | null)[];

interface Node {
  name: string;
  inputs: Tensor[];
  outputs: Tensor[];
  backward: GradFn;
}

let tape: Node[] = [];
let gradEnabled = true;

export function isGradEnabled(): boolean {
  return gradEnabled;
}

/** Runs fn without recording: nothing inside is differentiated. */
export function noGrad<T>(fn: () => T): T {
  const prev = gradEnabled;
  gradEnabled = false;
  try {
    return fn();
  } finally {
    gradEnabled = prev;
  }
}

/** True when an op on these inputs must be recorded. */
export function needsGrad(...inputs: (Tensor | null | undefined)[]): boolean {
  if (!gradEnabled) return false;
  for (const t of inputs) if (t && t.requiresGrad) return true;
  return false;
}

/**
 * Records an op. Call it after computing the outputs; backward receives one gradient per output (null where
 * no gradient flowed) and returns one per input (null for inputs that need none).
 */
export function record(name: string, inputs: Tensor[], outputs: Tensor[], backward: GradFn): void {
  if (!needsGrad(...inputs)) return;
  for (const o of outputs) o.requiresGrad = true;
  tape.push({ name, inputs, outputs, backward });
}

/** A tensor that shares storage but is cut from the tape. */
export function detach(t: Tensor): Tensor {
  const d = new Tensor(t.storage, t.shape, t.dtype);
  d.name = t.name;
  return d;
}

/** Forgets the recorded ops (their tensors stay alive until their scopes end). */
export function clearTape(): void {
  tape = [];
}

export function tapeLength(): number {
  return tape.length;
}

/**
 * Sums gradients copy-on-write: a backward may hand the same tensor to several inputs (add passes its output
 * gradient straight through), so a stored gradient is cloned before the first in-place accumulation into it.
 */
function addGrad(grads: Map<Tensor, Tensor>, owned: Set<Tensor>, t: Tensor, g: Tensor): void {
  if (g === t.gradSlot && !grads.has(t)) {
    // written straight into the parameter's slot: further contributions add to it in place
    owned.add(g);
    grads.set(t, g);
    return;
  }
  let prev = grads.get(t);
  if (!prev) {
    grads.set(t, g);
    return;
  }
  if (!owned.has(prev)) {
    prev = clone(prev);
    owned.add(prev);
    grads.set(t, prev);
  }
  axpy_(prev, g);
}

/**
 * Walks the tape backwards from the given outputs and returns the gradient map. Tensors in `stopAt`-free
 * regions are skipped cheaply: a node runs only if one of its outputs has a gradient.
 */
function runBackward(outputs: Tensor[], gradOutputs: Tensor[], intoSlots: boolean): Map<Tensor, Tensor> {
  const grads = new Map<Tensor, Tensor>();
  const owned = new Set<Tensor>();
  // parameters whose slots were zeroed since their last backward may receive their first gradient in place
  const produced = new Set<Tensor>();
  if (intoSlots) for (const node of tape) for (const o of node.outputs) produced.add(o);
  const destinationFor = (inp: Tensor): Tensor | null =>
    intoSlots && inp.gradSlot && inp.slotState?.zeroed && inp.requiresGrad && !grads.has(inp) && !produced.has(inp) ? inp.gradSlot : null;
  outputs.forEach((o, i) => addGrad(grads, owned, o, gradOutputs[i]!));
  const prev = gradEnabled;
  gradEnabled = false;
  try {
    for (let n = tape.length - 1; n >= 0; n--) {
      const node = tape[n]!;
      let any = false;
      const gouts = node.outputs.map((o) => {
        const g = grads.get(o) ?? null;
        if (g) any = true;
        return g;
      });
      if (!any) continue;
      const gins = node.backward(gouts, node.inputs.map(destinationFor));
      node.inputs.forEach((inp, i) => {
        const g = gins[i];
        if (!g || !inp.requiresGrad) return;
        if (g.size !== inp.size) throw new Error(`backward of ${node.name}: gradient for input ${i} has shape [${g.shape}], input has [${inp.shape}]`);
        addGrad(grads, owned, inp, g);
      });
    }
  } finally {
    gradEnabled = prev;
  }
  return grads;
}

function seed(outputs: Tensor[], gradOutputs?: Tensor[]): Tensor[] {
  return outputs.map((o, i) => gradOutputs?.[i] ?? ones(o.shape));
}

/**
 * Accumulates d(loss)/d(leaf) into every leaf's `.grad` (or its gradSlot) and clears the tape.
 * Leaves are tensors with requiresGrad that no recorded op produced.
 */
export function backward(loss: Tensor, gradLoss?: Tensor): void {
  tidy(() => {
    const produced = new Set<Tensor>();
    for (const node of tape) for (const o of node.outputs) produced.add(o);
    const grads = runBackward([loss], seed([loss], gradLoss ? [gradLoss] : undefined), true);
    for (const [t, g] of grads) {
      if (produced.has(t) || !t.requiresGrad) continue;
      if (t.gradSlot) {
        if (g !== t.gradSlot) axpy_(t.gradSlot, g);
        t.grad = t.gradSlot;
        if (t.slotState) t.slotState.zeroed = false;
      } else if (t.grad) {
        axpy_(t.grad, g);
      } else {
        t.grad = keep(clone(g));
      }
    }
  });
  clearTape();
}

/**
 * Gradients of the outputs (weighted by gradOutputs, ones by default) with respect to any tensors, including
 * non-leaf inputs such as an action fed to a critic. Leaves' `.grad` is untouched; the tape is kept unless
 * `clear` is set. An input the outputs do not depend on gets zeros.
 */
export function grad(outputs: Tensor[], inputs: Tensor[], gradOutputs?: Tensor[], opts: { clear?: boolean } = {}): Tensor[] {
  const result = tidy(() => {
    const grads = runBackward(outputs, seed(outputs, gradOutputs), false);
    return inputs.map((x) => {
      const g = grads.get(x);
      if (!g) return zeros(x.shape);
      return clone(g);
    });
  });
  if (opts.clear) clearTape();
  return result;
}

// Writing this project's networks as state dicts of PyTorch modules: the tensors of a module by name, an MLP's
// `layers.i` (and `norms.i`) as the entries of an nn.Sequential that interleaves activations (and LayerNorms),
// and a first layer's input columns reordered where a paper's code joins its inputs the other way round.
import type { Module } from '../../engine/nn.ts';
import { encodeSafetensors, type SafetensorsEntry } from '../../engine/safetensors.ts';

export type TorchEntry = SafetensorsEntry & { data: Float32Array };

/** Every tensor of a module, by its name in the module. */
export async function tensorsOf(m: Module): Promise<Map<string, TorchEntry>> {
  const out = new Map<string, TorchEntry>();
  for (const { name, tensor } of m.namedTensors()) out.set(name, { name, shape: tensor.shape, data: (await tensor.read()) as Float32Array });
  return out;
}

/** The tensors whose names start with `prefix` + '.', with the prefix removed. */
export function under(from: Map<string, TorchEntry>, prefix: string): Map<string, TorchEntry> {
  return new Map([...from].filter(([n]) => n.startsWith(`${prefix}.`)).map(([n, e]) => [n.slice(prefix.length + 1), e]));
}

/** A first layer's weight [out, S + A] over [state, action] as the weight over [action, state]. */
export function stateActionToActionState(w: Float32Array, shape: readonly number[], dims: { stateDim: number; actionDim: number }): Float32Array {
  const [rows, cols] = shape as [number, number];
  const { stateDim: S, actionDim: A } = dims;
  if (cols !== S + A) throw new Error(`torch export: first layer has ${cols} inputs, expected ${S} + ${A}`);
  const out = new Float32Array(w.length);
  for (let r = 0; r < rows; r++) {
    out.set(w.subarray(r * cols + S, r * cols + S + A), r * cols);
    out.set(w.subarray(r * cols, r * cols + S), r * cols + A);
  }
  return out;
}

/**
 * An MLP's tensors (`layers.i.*`, and `norms.i.*` with LayerNorms) as nn.Sequential entries under `prefix`:
 * Linear i at `stride * i`, its LayerNorm at `stride * i + 1` (stride 2: Linear, activation; 3: Linear,
 * LayerNorm, activation). With `actionFirst`, the first layer takes [action, state] instead of [state, action].
 */
export function sequential(from: Map<string, TorchEntry>, prefix: string, opts: { stride: number; actionFirst?: { stateDim: number; actionDim: number } }): TorchEntry[] {
  const out: TorchEntry[] = [];
  for (const [name, e] of from) {
    const m = /^(layers|norms)\.(\d+)\.(weight|bias)$/.exec(name);
    if (!m) throw new Error(`torch export: unexpected tensor '${name}' in an MLP`);
    const index = opts.stride * Number(m[2]) + (m[1] === 'norms' ? 1 : 0);
    const reorder = opts.actionFirst && m[1] === 'layers' && m[2] === '0' && m[3] === 'weight';
    out.push({ name: `${prefix}.${index}.${m[3]}`, shape: e.shape, data: reorder ? stateActionToActionState(e.data, e.shape, opts.actionFirst!) : e.data });
  }
  return out;
}

/** What every exported file says about itself besides the module's own metadata. */
export interface ExportContext {
  /** The z-scoring the run applied to observations ({ mean, std }), or null: observations as the files hold them. */
  obsNormalization: { mean: number[]; std: number[] } | null;
  /** The environment's bounds the [-1, 1] actions map to. */
  actionBox: { low: number[]; high: number[] };
}

/** One state dict as safetensors bytes, with the export's metadata. */
export function torchFile(entries: TorchEntry[], method: string, module: string, context: ExportContext, extra: Record<string, string> = {}): Uint8Array {
  return encodeSafetensors(entries, {
    format: 'pytorch-state-dict',
    method,
    module,
    obs_normalization: context.obsNormalization ? JSON.stringify(context.obsNormalization) : 'none',
    action_box: JSON.stringify(context.actionBox),
    ...extra,
  });
}

// SRPO's networks in the layout of the paper's PyTorch code, so a model trained here loads there with
// strict=True: the behaviour model (ScoreNet_IDQL, whose blocks also hold a `residual` Linear that is never
// used when widths match: written as zeros), the critic (Critic: q0, q0_target and vf, each an nn.Sequential of
// Linear and activation, so Linear i is entry 2i) and the actor (Dirac_Policy: net). The paper's TwinQ joins
// [action, state] where this project joins [state, action]: the first layer's input columns are reordered.
// What the networks do not hold goes into each file's metadata: the observation normalisation the run used
// (none in the paper's code) and the action box the [-1, 1] outputs map to.
import type { Module } from '../../engine/nn.ts';
import { encodeSafetensors, type SafetensorsEntry } from '../../engine/safetensors.ts';
import type { IQLCritic } from '../common/iql.ts';
import type { SrpoModels } from '../srpo.ts';

type Entry = SafetensorsEntry & { data: Float32Array };

async function entries(m: Module): Promise<Map<string, Entry>> {
  const out = new Map<string, Entry>();
  for (const { name, tensor } of m.namedTensors()) out.set(name, { name, shape: tensor.shape, data: (await tensor.read()) as Float32Array });
  return out;
}

/** An MLP's `layers.i` as an nn.Sequential whose Linear i is entry 2i, under `prefix`. */
function sequential(from: Map<string, Entry>, prefix: string, reorder?: { stateDim: number; actionDim: number }): Entry[] {
  const out: Entry[] = [];
  for (const [name, e] of from) {
    const m = /^(?:.*\.)?layers\.(\d+)\.(weight|bias)$/.exec(name);
    if (!m) throw new Error(`torch export: unexpected tensor '${name}' in an MLP`);
    const index = Number(m[1]);
    let data = e.data;
    if (reorder && index === 0 && m[2] === 'weight') data = stateActionToActionState(e.data, e.shape, reorder);
    out.push({ name: `${prefix}.${2 * index}.${m[2]}`, shape: e.shape, data });
  }
  return out;
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

function headsOf(twin: Map<string, Entry>, head: 'q1' | 'q2'): Map<string, Entry> {
  return new Map([...twin].filter(([n]) => n.startsWith(`${head}.`)));
}

export interface TorchExport {
  behavior: Uint8Array;
  critic: Uint8Array;
  actor: Uint8Array;
}

/**
 * The three state dicts as safetensors bytes. `obsNormalization` is the run's z-scoring ({ mean, std }) or
 * null; `actionBox` the environment's bounds the [-1, 1] outputs map to.
 */
export async function exportSrpoToTorch(
  m: SrpoModels,
  dims: { stateDim: number; actionDim: number },
  context: { obsNormalization: { mean: number[]; std: number[] } | null; actionBox: { low: number[]; high: number[] } },
): Promise<TorchExport> {
  const metadata = (module: string, extra: Record<string, string> = {}) => ({
    format: 'pytorch-state-dict',
    method: 'SRPO',
    module,
    obs_normalization: context.obsNormalization ? JSON.stringify(context.obsNormalization) : 'none',
    action_box: JSON.stringify(context.actionBox),
    ...extra,
  });

  // behaviour: the names already match; each block's unused residual Linear is added as zeros
  const behavior = [...(await entries(m.behavior.net)).values()];
  const blocks = new Set(behavior.map((e) => /^main\.blocks\.(\d+)\./.exec(e.name)?.[1]).filter((b): b is string => b !== undefined));
  const hidden = behavior.find((e) => e.name === 'main.fc.weight')!.shape[0]!;
  for (const b of blocks) {
    behavior.push({ name: `main.blocks.${b}.residual.weight`, shape: [hidden, hidden], data: new Float32Array(hidden * hidden) });
    behavior.push({ name: `main.blocks.${b}.residual.bias`, shape: [hidden], data: new Float32Array(hidden) });
  }

  const critic = m.critic as IQLCritic;
  const q = await entries(critic.q);
  const qTarget = await entries(critic.qTarget);
  const criticEntries = [
    ...sequential(headsOf(q, 'q1'), 'q0.q1', dims), ...sequential(headsOf(q, 'q2'), 'q0.q2', dims),
    ...sequential(headsOf(qTarget, 'q1'), 'q0_target.q1', dims), ...sequential(headsOf(qTarget, 'q2'), 'q0_target.q2', dims),
    ...sequential(await entries(critic.v), 'vf.v'),
  ];
  const actor = sequential(await entries(m.actor), 'net');
  return {
    behavior: encodeSafetensors(behavior, metadata('behavior')),
    critic: encodeSafetensors(criticEntries, metadata('critic', { input_order: 'action,state' })),
    actor: encodeSafetensors(actor, metadata('actor')),
  };
}

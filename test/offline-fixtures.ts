// Small offline RL fixtures shared by the Diffusion-QL and EDP tests: synthetic transitions, a log recorder,
// and readers of parameters and gradients.
import * as assert from 'uvu/assert';
import type { Module } from '../engine/nn.ts';
import type { ParamGroup } from '../engine/params.ts';
import type { Transitions } from '../datasets/d4rl.ts';
import { randn, rng } from './helpers.ts';

/** States N(0, 1); actions tanh of the state plus noise, in [-1, 1]; reward -rewardScale (a - tanh(s))^2, terminal. */
export function syntheticTransitions(n: number, obsDim: number, actDim: number, seed: number, rewardScale = 1): Transitions {
  const r = rng(seed);
  const obs = randn(n * obsDim, r);
  const actions = new Float32Array(n * actDim);
  const rewards = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    let pen = 0;
    for (let d = 0; d < actDim; d++) {
      const mean = Math.tanh(obs[i * obsDim + (d % obsDim)]!);
      const a = Math.max(-1, Math.min(1, mean + 0.3 * randn(1, r)[0]!));
      actions[i * actDim + d] = a;
      pen += (a - mean) ** 2;
    }
    rewards[i] = -rewardScale * pen;
  }
  return { size: n, obsDim, actDim, observations: obs, actions, rewards, nextObservations: randn(n * obsDim, r), dones: new Float32Array(n).fill(1) };
}

export function recorder() {
  const records: Record<string, unknown>[] = [];
  return { records, write: (rec: Record<string, unknown>) => void records.push(rec) };
}

export const series = (records: Record<string, unknown>[], phase: string, key: string): number[] =>
  records.filter((r) => r['phase'] === phase && typeof r[key] === 'number').map((r) => r[key] as number);

export async function allFinite(group: ParamGroup, what: string): Promise<void> {
  const g = await group.grads.read();
  assert.ok(g.every((x) => Number.isFinite(x)), `${what}: gradients finite`);
  assert.ok(g.some((x) => x !== 0), `${what}: gradients not all zero`);
}

export async function parameterValues(m: Module): Promise<number[]> {
  const out: number[] = [];
  for (const p of m.parameters()) out.push(...(await p.read()));
  return out;
}

export const quietContext = <C>(cfg: C, log: { write(r: Record<string, unknown>): void } | null = null) => ({ cfg, log, quiet: true, stream: { write: () => true } });

// Where a recorded training step's time goes: GPU time per kernel family from timestamp queries around every
// dispatch (engine/record.ts's profile), beside the step's wall time, host time and dispatch count.
import type { DispatchTiming } from '../engine/record.ts';

/** The part of a recorded step `profileStep` needs. */
interface Profilable {
  readonly dispatchCount: number;
  readonly canProfile: boolean;
  profile(steps?: number): Promise<DispatchTiming[]>;
}

export interface FamilyTime {
  family: string;
  /** Dispatches of this family per step. */
  dispatches: number;
  /** Median GPU ms per step over the profiled steps. */
  ms: number;
}

export interface StepProfile {
  dispatches: number;
  /** Sum of the families' medians: GPU time per step with a compute pass per dispatch. */
  gpuMs: number;
  /** Slowest first. */
  families: FamilyTime[];
  profiledSteps: number;
}

/**
 * A kernel's family: its name up to the first '_' ('matmul', 'matmulColumnSum', 'adamw', ...). The rest of a
 * name is the generator's key (shapes, layouts, epilogues), which would split one family into many rows.
 */
export function kernelFamily(kernel: string): string {
  return kernel.split('_')[0]!;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

/**
 * Profiles `steps` steps after one profiled step that is thrown away (it pays the first-use costs), and takes
 * each family's median time per step. Null where the device cannot time.
 */
export async function profileStep(rec: Profilable, steps: number): Promise<StepProfile | null> {
  if (!rec.canProfile) return null;
  await rec.profile(1);
  const timings = await rec.profile(steps);
  const perStep = rec.dispatchCount;
  const byFamily = new Map<string, { dispatches: number; ms: number[] }>();
  for (let step = 0; step < steps; step++) {
    const totals = new Map<string, number>();
    for (const t of timings.slice(step * perStep, (step + 1) * perStep)) {
      const f = kernelFamily(t.kernel);
      totals.set(f, (totals.get(f) ?? 0) + t.ms);
      if (step === 0) {
        const entry = byFamily.get(f) ?? { dispatches: 0, ms: [] };
        entry.dispatches++;
        byFamily.set(f, entry);
      }
    }
    for (const [f, ms] of totals) byFamily.get(f)!.ms.push(ms);
  }
  const families = [...byFamily].map(([family, e]) => ({ family, dispatches: e.dispatches, ms: median(e.ms) })).sort((a, b) => b.ms - a.ms);
  return { dispatches: perStep, gpuMs: families.reduce((a, f) => a + f.ms, 0), families, profiledSteps: steps };
}

/** A few lines for the terminal: the step's totals, then its families slowest first (the rest summed). */
export function formatProfile(title: string, p: StepProfile, wallMs: number | undefined, hostMs: number | undefined, top = 8): string {
  const wall = wallMs === undefined ? '' : `, replayed ${wallMs.toFixed(2)} ms/step wall`;
  const host = hostMs === undefined ? '' : `, host ${hostMs.toFixed(2)} ms`;
  const lines = [`${title}: ${p.dispatches} dispatches, GPU ${p.gpuMs.toFixed(2)} ms/step timed per dispatch${wall}${host}`];
  const shown = p.families.slice(0, top);
  const rest = p.families.slice(top);
  const row = (name: string, n: number, ms: number) =>
    `    ${name.padEnd(28)} ${String(n).padStart(4)} disp ${ms.toFixed(2).padStart(8)} ms ${((100 * ms) / p.gpuMs).toFixed(1).padStart(5)}%  ${(ms / n).toFixed(3)} ms/disp`;
  for (const f of shown) lines.push(row(f.family, f.dispatches, f.ms));
  if (rest.length > 0) {
    lines.push(row(`(${rest.length} more families)`, rest.reduce((a, f) => a + f.dispatches, 0), rest.reduce((a, f) => a + f.ms, 0)));
  }
  return lines.join('\n');
}

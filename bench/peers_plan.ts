// Host-side constants of the diffusion-policy steps that the peers of bench/peers.ts need, computed once from the
// engine's own schedules so every implementation uses the same numbers: the Diffusion-QL chain (vp, T = 5), EDP's
// noising table (scaled linear, T = 100) and its DPM-Solver++ target sampler (15 evaluations, singlestep order 3,
// time-uniform) as a flat list of updates, and DTQL's EDM training distribution. Plain numbers only, so the
// PyTorch peer receives the same object as JSON. Also the formulas of the weights and inputs that --check
// builds every implementation's networks from.
import { DiscreteSchedule, EDMSchedule } from '../algorithms/diffusion/schedules.ts';
import { dpmSolverSinglestepPlan, type SinglestepEval } from '../algorithms/diffusion/samplers.ts';

/** One ancestral DDPM chain: per 0-based step k (run from T - 1 down to 0) the fused update's coefficients. */
export interface DdpmTable {
  T: number;
  sqrtAlphaBar: number[];
  sqrtOneMinusAlphaBar: number[];
  /** posterior mean = coef1 clip(x0 estimate) + coef2 x_k */
  coef1: number[];
  coef2: number[];
  /** standard deviation of the added noise (0 at k = 0) */
  std: number[];
}

/**
 * One network evaluation of a DPM-Solver++ run and the update after it: the engine's SinglestepEval with the
 * network's time instead of the continuous t, and the d0 coefficient as 0 where the update has no d0 term.
 */
export type DpmUpdate = Omit<SinglestepEval, 't' | 'cD0'> & { time: number; cHist: number };

export interface PeerTables {
  /** Diffusion-QL: vp schedule, T = 5. */
  dql: DdpmTable;
  /** EDP: scaled linear schedule, T = 100: noising table and the target sampler. */
  edp: { T: number; sqrtAlphaBar: number[]; sqrtOneMinusAlphaBar: number[]; dpm: DpmUpdate[] };
  /** DTQL's EDM: log-logistic training sigmas truncated to [sigmaMin, sigmaMax]. */
  edm: { sigmaData: number; sigmaMin: number; sigmaMax: number; loc: number; scale: number; cdfLo: number; cdfHi: number };
}

function ddpmTable(s: DiscreteSchedule): DdpmTable {
  const logVar = s.posteriorLogVariance('dql');
  return {
    T: s.steps,
    sqrtAlphaBar: [...s.sqrtAlphaBars],
    sqrtOneMinusAlphaBar: [...s.sqrtOneMinusAlphaBars],
    coef1: [...s.posteriorMeanCoef1],
    coef2: [...s.posteriorMeanCoef2],
    std: Array.from(logVar, (v, k) => (k > 0 ? Math.exp(0.5 * v) : 0)),
  };
}

/** The engine's dpmSolverPPSample (singlestep, time-uniform, data prediction clipped to +-1) as a list of updates. */
function dpmPlan(sched: DiscreteSchedule, steps: number, order: 1 | 2 | 3): DpmUpdate[] {
  const plan = dpmSolverSinglestepPlan(sched, { steps, order, tStart: 1, tEnd: sched.tEndDefault, skip: 'time-uniform' });
  return plan.flat().map(({ t, cD0, ...rest }) => ({ ...rest, time: sched.networkTime(t), cHist: cD0 ?? 0 }));
}

/** The tables at the hopper-medium-v2 settings of the three modules (Diffusion-QL T 5, EDP T 100 with 15 DPM-Solver++ steps). */
export function peerTables(opts: { dqlT?: number; edpT?: number; dpmSteps?: number } = {}): PeerTables {
  const edp = DiscreteSchedule.scaledLinear(opts.edpT ?? 100);
  const edm = new EDMSchedule({ sigmaData: 0.5 });
  return {
    dql: ddpmTable(DiscreteSchedule.vp(opts.dqlT ?? 5)),
    edp: { T: edp.steps, sqrtAlphaBar: [...edp.sqrtAlphaBars], sqrtOneMinusAlphaBar: [...edp.sqrtOneMinusAlphaBars], dpm: dpmPlan(edp, opts.dpmSteps ?? 15, 3) },
    edm: {
      sigmaData: edm.sigmaData, sigmaMin: edm.sigmaMin, sigmaMax: edm.sigmaMax, loc: edm.trainLoc, scale: edm.trainScale,
      cdfLo: edm.logLogisticCdf(edm.sigmaMin), cdfHi: edm.logLogisticCdf(edm.sigmaMax),
    },
  };
}

// ---- --check: weights and inputs by formula, so every implementation builds the same networks without a
// weight transfer (PyTorch computes the same formulas in bench/peers_torch.py)

/** Weight [out][in] of a Linear layer with `inputs` inputs and `outputs` outputs, element (j, i). */
export function checkWeight(outputs: number, inputs: number, j: number, i: number): number {
  return (0.5 * Math.sin(0.37 * i + 0.71 * j + 0.013 * inputs + 0.029 * outputs)) / Math.sqrt(inputs);
}

export function checkBias(outputs: number, j: number): number {
  return 0.05 * Math.cos(0.91 * j + 0.031 * outputs);
}

/** LayerNorm scale and shift of feature j. */
export function checkGamma(j: number): number {
  return 1 + 0.1 * Math.sin(0.5 * j);
}

export function checkBeta(j: number): number {
  return 0.05 * Math.cos(0.3 * j);
}

export const CHECK_ROWS = 8;

/** Inputs of the forward check, row-major: states [8, obs], actions [8, act] and the network time per row. */
export function checkInputs(obsDim: number, actDim: number, time: 'dql' | 'edp' | 'dtql'): { s: number[]; a: number[]; t: number[] } {
  const s: number[] = [];
  const a: number[] = [];
  const t: number[] = [];
  for (let b = 0; b < CHECK_ROWS; b++) {
    for (let i = 0; i < obsDim; i++) s.push(Math.sin(0.37 * b + 1.1 * i + 0.2));
    for (let j = 0; j < actDim; j++) a.push(0.8 * Math.cos(0.53 * b + 0.9 * j));
    t.push(time === 'dql' ? b % 5 : time === 'edp' ? (13 * b) % 100 : -1.5 + 0.3 * b);
  }
  return { s, a, t };
}

// Diffusion-QL and EDP (TD3, CRR, IQL) on Diffusion-QL's four-cluster bandit (rewards 3 / 0 / 1.5 / 5 at
// (-0.8, 0.8), (-0.8, -0.8), (0.8, 0.8), (0.8, -0.8); one step, notDone 0). For each method it reports the
// share of the actions selected at evaluation (50 policy samples per state, one drawn from
// softmax(selectTemperature min Q')) and of the raw policy samples within 0.2 of the best cluster; for
// behaviour cloning (EDP's policy with the guide term off) the share of samples on each of the four clusters.
// A method passes when >= 95% of its selected actions lie within 0.2 of (0.8, -0.8); behaviour cloning passes
// when each cluster holds >= 10% of its samples.
//
//   node scripts/diffusion-policy-toy.ts [--methods bc,dql,edp-td3,edp-crr,edp-iql] [--steps 1500] [--seed 0]
import { parseArgs } from 'node:util';
import { noGrad } from '../engine/autograd.ts';
import { init, dispose } from '../engine/runtime.ts';
import { Generator } from '../engine/random.ts';
import { tensor, tidy } from '../engine/tensor.ts';
import { ReplayStore } from '../datasets/replay.ts';
import { toyDataset } from '../datasets/toy.ts';
import { runPhase } from '../algorithms/common/phase.ts';
import { selectAction, trainPhase, type MethodModels } from '../algorithms/common/diffusion-policy.ts';
import { makeModels as makeDql, taskConfig as dqlTask, type DqlConfig } from '../algorithms/dql.ts';
import { makeModels as makeEdp, taskConfig as edpTask, type EdpConfig } from '../algorithms/edp.ts';

export const TOY_METHODS = ['bc', 'dql', 'edp-td3', 'edp-crr', 'edp-iql'] as const;
export type ToyMethod = (typeof TOY_METHODS)[number];

/**
 * Settings shared by every method: small networks, policy lr 1e-2 decayed to 0 by a cosine over the run (the
 * papers' lr_decay option), global gradient-norm clip 1 (their per-task gn), one-step critic whose target
 * follows at once, target policy = the policy, and a selection softmax over 3 min Q' (Q here spans 0..5, so
 * temperature 1 leaves ~2% of picks on the 3-reward cluster and ~5% between clusters).
 */
const COMMON = {
  actorHidden: 64,
  criticHidden: [64, 64],
  batch: 256,
  lr: 1e-2,
  lrDecay: true,
  gradClip: 1,
  criticLr: 3e-3,
  targetTau: 1,
  emaStart: 0,
  emaEvery: 1,
  emaDecay: 0,
  logEvery: 100,
  checkpointEvery: 1_000_000,
  candidates: 50,
  selectTemperature: 3,
} as const;

/**
 * Per method: Diffusion-QL with T = 10 (its chain is backpropagated; T = 5 leaves ancestral samples blurred
 * towards the mean of the clusters) and eta 0.05; EDP with T = 50 (the paper's toy T), 5-step DPM-Solver next
 * actions, TD3 alpha 0.25 (the config's Diffusion-QL-style value), CRR and IQL guide_coef 1e-3; behaviour
 * cloning is EDP's policy with the guide term off (guideCoef 0). The critic extrapolates past the best
 * cluster (Q(1, -1) ~ 5.8 against 5.0 at its centre), so a Q term at eta 2.5 (even 0.25 through Diffusion-QL's
 * chain) or alpha 2 drives the policy into the box corner (1, -1), 0.28 from the centre; the likelihood terms' gradient through a0Hat grows as
 * sqrt((1 - abar_k) / abar_k) (~150 at the top of the chain) times weights up to 100, which at guide_coef 1
 * starves the low-noise steps of the diffusion fit.
 */
export function toyConfig(method: ToyMethod, steps: number, seed: number): DqlConfig | EdpConfig {
  const base = { ...COMMON, criticHidden: [...COMMON.criticHidden], trainSteps: steps, seed };
  if (method === 'dql') return { ...dqlTask('pendulum-quick'), ...base, T: 10, eta: 0.05 };
  const backbone = method === 'edp-crr' ? 'crr' : method === 'edp-iql' ? 'iql' : 'td3';
  const guideCoef = method === 'bc' ? 0 : backbone === 'td3' ? 1 : 1e-3;
  return { ...edpTask('pendulum-quick', backbone), ...base, T: 50, targetSamplerSteps: 5, evalSamplerSteps: 15, alpha: 0.25, guideCoef };
}

/** The pass rule: >= 95% of selected actions on the best cluster; behaviour cloning: >= 10% on every cluster. */
export function toyPasses(r: Pick<ToyResult, 'method' | 'selectedBest' | 'clusters'>): boolean {
  return r.method === 'bc' ? r.clusters.every((c) => c >= 0.1) : r.selectedBest >= 0.95;
}

export interface ToyResult {
  method: ToyMethod;
  /** Share of the selected actions (softmax over selectTemperature min Q' among 50 candidates) within 0.2 of (0.8, -0.8). */
  selectedBest: number;
  /** Share of the raw policy samples within 0.2 of (0.8, -0.8). */
  sampledBest: number;
  /** Share of the raw policy samples within 0.2 of each centre, in the dataset's order. */
  clusters: number[];
  /** Mean of the selected actions. */
  selectedMean: [number, number];
  seconds: number;
}

/** Trains `method` on the bandit and measures `samples` actions at the state 0. */
export async function runToy(method: ToyMethod, steps: number, seed: number, samples = 1000): Promise<ToyResult> {
  const t0 = performance.now();
  const toy = toyDataset('dql-bandit', 10_000, 2022);
  const n = toy.rewards.length;
  const obsDim = toy.stateDim;
  const store = ReplayStore.fromTransitions({
    size: n, obsDim, actDim: 2, observations: toy.states, actions: toy.actions, rewards: toy.rewards, nextObservations: toy.states, dones: new Float32Array(n).fill(1),
  });
  const cfg = toyConfig(method, steps, seed);
  const m: MethodModels = method === 'dql' ? makeDql(obsDim, 2, cfg as DqlConfig) : makeEdp(obsDim, 2, cfg as EdpConfig);
  try {
    await runPhase(trainPhase(m, cfg, store, '/dev/null'), { cfg, log: null, quiet: true, stream: { write: () => true } });
    const gen = new Generator(seed * 16 + 13);
    const states = tensor(new Float32Array(samples * obsDim), [samples, obsDim]);
    const sampler = cfg.evalSampler === 'dpm' ? { sampler: 'dpm' as const, steps: cfg.evalSamplerSteps } : { sampler: 'ddpm' as const };
    const raw = tidy(() => noGrad(() => m.actor.model.sample(states, 1, gen, sampler)));
    const selectOpts = { candidates: cfg.candidates, sampler: cfg.evalSampler, steps: cfg.evalSamplerSteps, temperature: cfg.selectTemperature ?? 1 };
    const chosen = tidy(() => selectAction(m.actor.model, m.critic, states, gen, selectOpts));
    const [a, s] = [await raw.read(), await chosen.read()];
    for (const x of [raw, chosen, states]) x.dispose();
    const centers = toy.modes!.centers;
    const near = (v: ArrayLike<number>, k: number, c: number[]) => Math.hypot(v[2 * k]! - c[0]!, v[2 * k + 1]! - c[1]!) < 0.2;
    const share = (v: ArrayLike<number>, c: number[]) => {
      let hits = 0;
      for (let k = 0; k < samples; k++) if (near(v, k, c)) hits++;
      return hits / samples;
    };
    let mx = 0;
    let my = 0;
    for (let k = 0; k < samples; k++) {
      mx += s[2 * k]! / samples;
      my += s[2 * k + 1]! / samples;
    }
    return { method, selectedMean: [mx, my], selectedBest: share(s, [0.8, -0.8]), sampledBest: share(a, [0.8, -0.8]), clusters: centers.map((c) => share(a, c)), seconds: (performance.now() - t0) / 1000 };
  } finally {
    m.dispose();
    store.dispose();
  }
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      methods: { type: 'string', default: TOY_METHODS.join(',') },
      steps: { type: 'string', default: '1500' },
      seed: { type: 'string', default: '0' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) {
    console.log(`usage: node scripts/diffusion-policy-toy.ts [--methods ${TOY_METHODS.join(',')}] [--steps n] [--seed s]`);
    return;
  }
  const methods = values.methods.split(',');
  for (const name of methods) if (!(TOY_METHODS as readonly string[]).includes(name)) throw new Error(`unknown method '${name}' (${TOY_METHODS.join(', ')})`);
  await init();
  try {
    let failed = 0;
    for (const method of methods as ToyMethod[]) {
      const r = await runToy(method, Number(values.steps), Number(values.seed));
      const pct = (x: number) => `${(100 * x).toFixed(1)}%`;
      const pass = toyPasses(r);
      if (!pass) failed++;
      console.log(
        `${pass ? 'PASS' : 'FAIL'} ${method}: selected on best ${pct(r.selectedBest)}, samples on best ${pct(r.sampledBest)}, samples per cluster [${r.clusters.map(pct).join(', ')}], mean selected (${r.selectedMean.map((v) => v.toFixed(2)).join(', ')}); ${r.seconds.toFixed(1)}s`,
      );
    }
    process.exitCode = failed > 0 ? 1 : 0;
  } finally {
    dispose();
  }
}

if (import.meta.url === `file://${process.argv[1]}`) await main();

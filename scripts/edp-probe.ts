// Diagnostics for EDP on a dataset: trains one backbone (the quick Pendulum preset with --set overrides), then
// scores the trained policy under several action-selection rules on the same weights: candidates drawn from
// softmax(temperature * min Q') for each temperature asked for, the argmax of min Q', and a single policy sample
// (no critic: the diffusion policy alone), and the critic's own greedy action over a grid ('grid', 1-D actions). It also prints how far apart the candidates' Q values are per state
// (the spread the selection softmax sees) and, with --bc, the MSE-fitted MLP on the same data and seed.
//
//   node scripts/edp-probe.ts [--backbone iql] [--set '{"lr": 3e-4}'] [--seed 0] [--temps 1,3,10,argmax,single,grid]
//                             [--episodes 20] [--bc]
import { mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { noGrad } from '../engine/autograd.ts';
import { max, mean } from '../engine/ops/reduce.ts';
import { reshape } from '../engine/ops/shape.ts';
import { neg, sub } from '../engine/ops/elementwise.ts';
import { Generator } from '../engine/random.ts';
import { dispose } from '../engine/runtime.ts';
import { tensor, tidy, type Tensor } from '../engine/tensor.ts';
import { JsonlLog } from '../algorithms/common/monitor.ts';
import { envPolicy, evaluatePolicy } from '../algorithms/common/evaluation.ts';
import { loadOfflineData } from '../algorithms/common/offline-data.ts';
import { openDevice } from '../algorithms/common/command.ts';
import { runPhase, type RunContext } from '../algorithms/common/phase.ts';
import { trainPhase } from '../algorithms/common/diffusion-policy.ts';
import { repeatRows, selectByCritic } from '../algorithms/diffusion/select.ts';
import { makeModels, taskConfig, type EdpConfig, type EdpModels } from '../algorithms/edp.ts';
import { isBackbone } from '../algorithms/edp/presets.ts';
import { datasetPath } from '../datasets/builtin.ts';
import { trainBcMlp } from '../algorithms/common/baselines.ts';
import { normalizedScore } from '../datasets/presets.ts';

const GRID = 41;

/**
 * Per state: `candidates` policy samples, one chosen by `rule` (a temperature, 'argmax' or 'single'), or with
 * 'grid' the critic alone: the argmax of min Q' over GRID evenly spaced actions in [-1, 1] (1-D actions only).
 */
function act(m: EdpModels, obs: Tensor, gen: Generator, rule: string): Tensor {
  return noGrad(() => {
    const { cfg } = m;
    if (rule === 'grid') {
      const S = obs.shape[0]!;
      const grid = new Float32Array(S * GRID);
      for (let s = 0; s < S; s++) for (let k = 0; k < GRID; k++) grid[s * GRID + k] = -1 + (2 * k) / (GRID - 1);
      const a = tensor(grid, [S * GRID, 1]);
      return selectByCritic(a, m.critic.qTarget.min(repeatRows(obs, GRID), a), GRID, gen, { mode: 'argmax' });
    }
    const sampler = cfg.evalSampler === 'dpm' ? ({ sampler: 'dpm', steps: cfg.evalSamplerSteps } as const) : ({ sampler: 'ddpm' } as const);
    if (rule === 'single') return m.actor.model.sample(obs, 1, gen, sampler);
    const n = cfg.candidates;
    const a = m.actor.model.sample(obs, n, gen, sampler);
    const q = m.critic.qTarget.min(repeatRows(obs, n), a);
    return rule === 'argmax' ? selectByCritic(a, q, n, gen, { mode: 'argmax' }) : selectByCritic(a, q, n, gen, { temperature: Number(rule) });
  });
}

/** Mean over data states of (max - min) and of (max - mean) of min Q' over the candidates. */
async function candidateSpread(m: EdpModels, obs: Tensor, gen: Generator): Promise<{ range: number; aboveMean: number }> {
  const n = m.cfg.candidates;
  const S = obs.shape[0]!;
  const out = tidy(() =>
    noGrad(() => {
      const a = m.actor.model.sample(obs, n, gen, { sampler: 'dpm', steps: m.cfg.evalSamplerSteps });
      const q = reshape(m.critic.qTarget.min(repeatRows(obs, n), a), [S, n]);
      const hi = max(q, { axis: -1, keepDim: true });
      return [mean(sub(hi, neg(max(neg(q), { axis: -1, keepDim: true })))), mean(sub(hi, mean(q, { axis: -1, keepDim: true })))];
    }),
  );
  const [r, am] = await Promise.all(out.map((t) => t.read()));
  for (const t of out) t.dispose();
  return { range: r![0]!, aboveMean: am![0]! };
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      backbone: { type: 'string', default: 'iql' },
      set: { type: 'string', default: '{}' },
      seed: { type: 'string', default: '0' },
      temps: { type: 'string', default: '1,3,10,argmax,single' },
      episodes: { type: 'string', default: '20' },
      'eval-every': { type: 'string', default: '0' },
      bc: { type: 'boolean', default: false },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) {
    console.log("usage: node scripts/edp-probe.ts [--backbone td3|crr|iql] [--set '{json config overrides}'] [--seed s] [--temps 1,3,10,argmax,single,grid] [--episodes n] [--eval-every n] [--bc]");
    return;
  }
  const backbone = values.backbone!;
  if (!isBackbone(backbone)) throw new Error(`--backbone: td3, crr or iql, got ${backbone}`);
  const cfg: EdpConfig = { ...taskConfig('pendulum-quick', backbone), seed: Number(values.seed), ...(JSON.parse(values.set!) as Partial<EdpConfig>) };
  cfg.evalEpisodes = Number(values.episodes);
  await openDevice('auto');
  const dir = join(tmpdir(), `edp-probe-${process.pid}`);
  mkdirSync(dir, { recursive: true });
  const { data, box } = await loadOfflineData(cfg, datasetPath(cfg.dataset), dir, { quiet: true });
  const { obsDim, actDim } = data.transitions;
  const ctx: RunContext = { cfg, log: new JsonlLog(join(dir, 'log.jsonl')), quiet: true, stream: process.stderr };
  const rules = values.temps!.split(',');
  const evalGen = new Generator(cfg.seed * 16 + 8);
  const score = async (name: string, policy: (s: Tensor) => Tensor) => {
    const t = performance.now();
    const r = await evaluatePolicy(envPolicy(policy, data.obsStats, box), cfg);
    const failed = r.returns.filter((ret) => normalizedScore(cfg.env, ret) < 50).length;
    console.log(`${name}: ${r.normalizedMean!.toFixed(1)} +- ${r.normalizedStd!.toFixed(1)} (${failed} of ${r.returns.length} episodes below 50; ${((performance.now() - t) / 1000).toFixed(0)}s)`);
    return r.normalizedMean!;
  };
  console.log(`EDP-${cfg.backbone} seed ${cfg.seed}, overrides ${values.set}`);
  if (values.bc) {
    const mlp = trainBcMlp(data.store, obsDim, actDim, { hidden: cfg.actorHidden, layers: 3, lr: 1e-3, steps: cfg.bcMlpSteps, batch: cfg.batch, seed: cfg.seed });
    await score(`behaviour cloning (MLP, ${cfg.bcMlpSteps} steps)`, (s) => mlp.forward(s));
  }
  // data states (already normalised) for the candidate spread
  const nStates = 500;
  const sObs = new Float32Array(nStates * obsDim);
  for (let i = 0; i < nStates; i++) {
    const j = Math.floor((i * data.transitions.size) / nStates);
    sObs.set(data.transitions.observations.subarray(j * obsDim, (j + 1) * obsDim), i * obsDim);
  }
  const obsStates = tensor(sObs, [nStates, obsDim]);
  const m = makeModels(obsDim, actDim, cfg);
  const report = async (step: number) => {
    const spread = await candidateSpread(m, obsStates, new Generator(3));
    console.log(`step ${step}: min Q' over ${cfg.candidates} candidates per data state: max - min ${spread.range.toFixed(3)}, max - mean ${spread.aboveMean.toFixed(3)}`);
    let best = -Infinity;
    for (const rule of rules) best = Math.max(best, await score(`  step ${step} ${Number.isNaN(Number(rule)) ? rule : `softmax(${rule} Q')`}`, (s) => act(m, s, evalGen, rule)));
    return { mean: best, std: 0 };
  };
  const t0 = performance.now();
  const every = Number(values['eval-every']);
  const run = trainPhase(m, cfg, data.store, join(dir, 'train.safetensors'));
  await runPhase({ ...run, evaluate: every > 0 ? report : undefined, evalEvery: every }, { ...ctx, cfg: { ...cfg, checkpointEvery: 1_000_000 } }, 0);
  console.log(`train ${((performance.now() - t0) / 1000).toFixed(0)}s`);
  if (!(every > 0 && cfg.trainSteps % every === 0)) await report(cfg.trainSteps);
  obsStates.dispose();
  data.store.dispose();
  m.dispose();
}

await main();
dispose();

// Diagnostics for DTQL on a dataset: pretrains (or loads) the behaviour model and critic, scores the critic's
// greedy policy (argmax of min Q over an action grid) and optionally the behaviour model's samples, then trains
// the one-step policy and scores it (candidate selection and mean action) with statistics of its actions on the
// data's states: share on the bounds, correlation with the data's actions and with the greedy-Q action.
//
//   node scripts/dtql-probe.ts [--set '{"alpha": 5}'] [--pretrained file] [--save-pretrain file] [--episodes 10]
//                              [--bc] [--no-train]
import { mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { Generator } from '../engine/random.ts';
import { dispose } from '../engine/runtime.ts';
import { tensor, tidy, type Tensor } from '../engine/tensor.ts';
import { JsonlLog } from '../algorithms/common/monitor.ts';
import { envPolicy, evaluatePolicy } from '../algorithms/common/evaluation.ts';
import { loadOfflineData } from '../algorithms/common/offline-data.ts';
import { openDevice } from '../algorithms/common/command.ts';
import { phaseStart, runPhase, type PhaseRun, type RunContext } from '../algorithms/common/phase.ts';
import { IQLCritic, IQL_DTQL, type IQLConfig } from '../algorithms/common/iql.ts';
import { repeatRows, selectByCritic } from '../algorithms/diffusion/select.ts';
import { disposeModels, makeModels, pretrainPhase, selectAction, taskConfig, trainPhase, type DtqlConfig, type DtqlModels } from '../algorithms/dtql.ts';
import { datasetPath } from '../datasets/builtin.ts';

const GRID = 41;

/** Per state, the grid action (GRID points over [-1, 1] per dimension; 1-D only) with the largest min Q. */
function greedyQ(m: DtqlModels, obs: Tensor, target: boolean): Tensor {
  const S = obs.shape[0]!;
  const grid = new Float32Array(S * GRID);
  for (let s = 0; s < S; s++) for (let k = 0; k < GRID; k++) grid[s * GRID + k] = -1 + (2 * k) / (GRID - 1);
  const a = tensor(grid, [S * GRID, 1]);
  const states = repeatRows(obs, GRID);
  const q = (target ? m.critic.qTarget : m.critic.q).min(states, a);
  return selectByCritic(a, q, GRID, new Generator(0), { mode: 'argmax' });
}

function corr(x: Float32Array, y: Float32Array): number {
  const n = x.length;
  let mx = 0, my = 0;
  for (let i = 0; i < n; i++) { mx += x[i]!; my += y[i]!; }
  mx /= n; my /= n;
  let sxy = 0, sxx = 0, syy = 0;
  for (let i = 0; i < n; i++) { const dx = x[i]! - mx, dy = y[i]! - my; sxy += dx * dy; sxx += dx * dx; syy += dy * dy; }
  return sxy / Math.sqrt(sxx * syy);
}

async function actionStats(m: DtqlModels, obs: Float32Array, actions: Float32Array, obsDim: number): Promise<Record<string, number>> {
  const n = actions.length;
  const o = tensor(obs, [n, obsDim]);
  const [meanA, greedy, logStd] = await Promise.all(
    tidy(() => [m.actor.meanAction(o), greedyQ(m, o, false), m.actor.distribution(o).logStd]).map(async (t) => {
      const v = (await t.read()) as Float32Array;
      t.dispose();
      return v;
    }),
  );
  o.dispose();
  let bounds = 0, greedyBounds = 0, ls = 0, agree = 0;
  for (let i = 0; i < n; i++) {
    if (Math.abs(meanA![i]!) > 0.95) bounds++;
    if (Math.abs(greedy![i]!) > 0.95) greedyBounds++;
    if (Math.sign(meanA![i]!) === Math.sign(greedy![i]!)) agree++;
    ls += logStd![i]!;
  }
  return {
    meanAtBounds: bounds / n,
    greedyAtBounds: greedyBounds / n,
    corrData: corr(meanA!, actions),
    corrGreedy: corr(meanA!, greedy!),
    signAgreeGreedy: agree / n,
    greedyCorrData: corr(greedy!, actions),
    meanLogStd: ls / n,
  };
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      set: { type: 'string', default: '{}' },
      pretrained: { type: 'string' },
      'save-pretrain': { type: 'string' },
      episodes: { type: 'string', default: '10' },
      bc: { type: 'boolean', default: false },
      'no-train': { type: 'boolean', default: false },
      'greedy-every': { type: 'boolean', default: false },
      /** Train only the critic for this many steps (its own settings from --set), greedy-Q scores every 1000. */
      'critic-only': { type: 'string' },
      critic: { type: 'string', default: '{}' },
    },
  });
  const cfg: DtqlConfig = { ...taskConfig('pendulum-quick'), ...(JSON.parse(values.set!) as Partial<DtqlConfig>) };
  cfg.evalEpisodes = Number(values.episodes);
  await openDevice('auto');
  const dir = join(tmpdir(), `dtql-probe-${process.pid}`);
  mkdirSync(dir, { recursive: true });
  const { data, box } = await loadOfflineData(cfg, datasetPath(cfg.dataset), dir, { quiet: true });
  const { obsDim, actDim } = data.transitions;
  const log = new JsonlLog(join(dir, 'log.jsonl'));
  const ctx: RunContext = { cfg, log, quiet: true, stream: process.stderr };
  const m = makeModels(obsDim, actDim, cfg);
  const score = async (name: string, act: (s: Tensor) => Tensor) => {
    const r = await evaluatePolicy(envPolicy(act, data.obsStats, box), cfg);
    console.log(`${name}: ${r.normalizedMean!.toFixed(1)} +- ${r.normalizedStd!.toFixed(1)}`);
    return r.normalizedMean!;
  };
  const t0 = performance.now();
  if (values['critic-only']) {
    const steps = Number(values['critic-only']);
    const over = JSON.parse(values.critic!) as Partial<IQLConfig> & { batch?: number };
    const critic = new IQLCritic(obsDim, actDim, { ...IQL_DTQL, hidden: [...cfg.criticHidden], lr: cfg.criticLr, expectile: cfg.expectile, discount: cfg.discount, tau: cfg.targetTau, ...over }, { seed: 2 });
    const mm = { ...m, critic } as DtqlModels;
    const g = new Generator(4);
    const batch = over.batch ?? cfg.batch;
    const run: PhaseRun = {
      phase: 'critic', steps, checkpoint: join(dir, 'critic.safetensors'),
      parts: { modules: critic.modules(), optimizers: { q: critic.qOptimizer, v: critic.vOptimizer }, generators: { data: g } },
      evalEvery: 1000,
      evaluate: async (step) => {
        const a = await score(`  critic step ${step} greedy Q (online)`, (s) => greedyQ(mm, s, false));
        return { mean: a, std: 0 };
      },
      step: () => { const { qLoss, vLoss } = critic.update(data.store.sample(batch, g)); return { qLoss, vLoss }; },
    };
    await runPhase(run, { ...ctx, cfg: { ...cfg, checkpointEvery: 1_000_000 } }, 0);
    console.log(`critic ${((performance.now() - t0) / 1000).toFixed(0)}s`);
    return;
  }
  const pre = pretrainPhase(m, data.store, values['save-pretrain'] ?? join(dir, 'pretrain.safetensors'));
  const start = await phaseStart('pretrain', pre.parts, pre.checkpoint, { file: values.pretrained, quiet: true, log });
  if (start !== 'done') await runPhase(pre, ctx, start);
  console.log(`pretrain ${((performance.now() - t0) / 1000).toFixed(0)}s`);
  // a sample of the data's states and actions for the action statistics
  const nStats = 2000;
  const idx = Array.from({ length: nStats }, (_, i) => Math.floor((i * data.transitions.size) / nStats));
  const sObs = new Float32Array(nStats * obsDim);
  const sAct = new Float32Array(nStats * actDim);
  idx.forEach((j, i) => {
    sObs.set(data.transitions.observations.subarray(j * obsDim, (j + 1) * obsDim), i * obsDim);
    sAct.set(data.transitions.actions.subarray(j * actDim, (j + 1) * actDim), i * actDim);
  });
  await score('greedy Q (online) after pretrain', (s) => greedyQ(m, s, false));
  if (values.bc) await score(`behaviour samples (EDM Heun ${cfg.bcSamplerSteps})`, (s) => {
    const p = m.behavior.sample(s, 1, new Generator(7), { sampler: 'edm-heun', steps: cfg.bcSamplerSteps });
    return p;
  });
  if (values.bc) {
    const o = tensor(sObs, [nStats, obsDim]);
    for (const steps of [cfg.bcSamplerSteps, 40]) {
      const b = m.behavior.sample(o, 1, new Generator(9), { sampler: 'edm-heun', steps });
      const v = (await b.read()) as Float32Array;
      b.dispose();
      let hi = 0, lo = 0, mean = 0;
      for (const x of v) { if (x > 0.95) hi++; if (x < -0.95) lo++; mean += x; }
      let dhi = 0, dlo = 0, dmean = 0;
      for (const x of sAct) { if (x > 0.95) dhi++; if (x < -0.95) dlo++; dmean += x; }
      console.log(`behaviour samples (Heun ${steps}) on data states: corr with data actions ${corr(v, sAct).toFixed(3)}, ` +
        `>0.95 ${(hi / nStats).toFixed(3)} (data ${(dhi / nStats).toFixed(3)}), <-0.95 ${(lo / nStats).toFixed(3)} (data ${(dlo / nStats).toFixed(3)}), mean ${(mean / nStats).toFixed(3)} (data ${(dmean / nStats).toFixed(3)})`);
    }
    o.dispose();
  }
  if (values['no-train']) return;
  const gen = new Generator(8);
  const t1 = performance.now();
  const run = trainPhase(m, data.store, join(dir, 'train.safetensors'));
  run.evalEvery = cfg.evalEvery;
  run.evaluate = async (step) => {
    const stats = await actionStats(m, sObs, sAct, obsDim);
    console.log(`step ${step}: ${Object.entries(stats).map(([k, v]) => `${k} ${v.toFixed(3)}`).join(', ')}`);
    const sel = await score(`  step ${step} policy (${cfg.candidates} candidates)`, (s) => selectAction(m, s, gen));
    await score(`  step ${step} mean action`, (s) => m.actor.meanAction(s));
    if (values['greedy-every'] || step === cfg.trainSteps) await score(`  step ${step} greedy Q (online)`, (s) => greedyQ(m, s, false));
    return { mean: sel, std: 0 };
  };
  await runPhase(run, ctx, 0);
  console.log(`train ${((performance.now() - t1) / 1000).toFixed(0)}s`);
  data.store.dispose();
  disposeModels(m);
}

await main();
dispose();

// SRPO timings at the paper's sizes: one training step of each phase (behaviour: ScoreNet_IDQL, batch 2048;
// critic: IQL [256, 256], batch 256; actor: the surrogate loss with the behaviour score and the target-Q
// gradient, batch 256), and the cost of an action: the one-step actor against sampling the behaviour model with
// DPM-Solver++ (15 steps) and DDPM ancestral sampling, at batch 1 and 256. The sampler-to-actor time ratio is
// SRPO's headline speed-up. Prints a table and writes the numbers as JSON.
import { mkdirSync, writeFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { init, type Runtime } from '../engine/runtime.ts';
import { tensor, tidy, type Tensor } from '../engine/tensor.ts';
import { noGrad } from '../engine/autograd.ts';
import { DiscreteSchedule } from '../algorithms/diffusion/schedules.ts';
import { ddpmSample, dpmSolverPPSample, type DiscreteEpsModel } from '../algorithms/diffusion/samplers.ts';
import { CliError, parseCli, runMain, type CliSpec } from '../algorithms/common/cli.ts';
import type { SrpoBehavior } from '../algorithms/srpo.ts';
import { HOPPER_SIZE_OPTIONS, srpoBench, srpoSteps, timeIt } from './common.ts';

const OPTIONS = {
  quick: { type: 'boolean', description: 'fewer timed repetitions (for software adapters)' },
  'ddpm-steps': { type: 'integer', positive: true, default: 100, description: 'steps of the DDPM chain (the VP-SDE discretised uniformly in t)' },
  ...HOPPER_SIZE_OPTIONS,
} as const;

const CLI: CliSpec<typeof OPTIONS> = {
  usage: 'node bench/srpo.ts [--quick] [--obs N] [--act N] [--ddpm-steps N] [--out DIR]',
  description:
    'Times one training step of each SRPO phase at the paper sizes (behaviour batch 2048 with ScoreNet_IDQL 256 x 3 ' +
    'blocks; critic and actor batch 256, [256, 256]) on random data, and the time to produce actions: the SRPO actor ' +
    '(one forward pass) against the behaviour diffusion model sampled with DPM-Solver++ (15 steps) and with DDPM, at ' +
    'batch 1 and 256, each including the read-back of the actions. Each case runs an untimed warm-up first.',
  options: OPTIONS,
};

interface Row {
  case: string;
  batch: number;
  msPerCall: number;
  perSecond: number;
  unit: string;
  networkEvals?: number;
}

/** The VP-SDE discretised into T ancestral steps at t_k = (k + 1)/T, as a DDPM model over the same network. */
function ddpmView(b: SrpoBehavior, T: number): DiscreteEpsModel {
  const sde = b.diffusion.schedule;
  const betas = new Float64Array(T);
  let prev = 0;
  for (let k = 0; k < T; k++) {
    const logAbar = 2 * sde.marginalLogMeanCoeff((k + 1) / T);
    betas[k] = -Math.expm1(logAbar - prev);
    prev = logAbar;
  }
  const schedule = new DiscreteSchedule(betas);
  return { schedule, maxAction: 1, epsAtStep: (x, k, cond) => b.diffusion.eps(x, (k + 1) / T, cond) };
}

async function main(): Promise<void> {
  const args = parseCli(CLI);
  if (!args) return;
  const rt: Runtime = await init();
  const quick = args.quick === true;
  const { obs: obsDim, act: actDim } = args;
  if (args['ddpm-steps'] < 2) throw new CliError('--ddpm-steps must be at least 2');
  const bench = srpoBench(obsDim, actDim);
  const { cfg, behavior, actor, gen } = bench;
  const steps = srpoSteps(bench);
  const rows: Row[] = [];
  const add = (row: Row) => {
    rows.push(row);
    const n = row.networkEvals !== undefined ? String(row.networkEvals) : '';
    console.log(`${row.case.padEnd(34)} ${String(row.batch).padStart(6)} ${n.padStart(6)} ${row.msPerCall.toFixed(2).padStart(10)} ${row.perSecond.toFixed(1).padStart(12)} ${row.unit}`);
  };
  console.log(`host ${hostname()}, node ${process.version}, adapter ${rt.info.description || rt.info.vendor} (${rt.info.adapterClass}); obs ${obsDim}, act ${actDim}${quick ? ', quick' : ''}`);
  console.log(`${'case'.padEnd(34)} ${'batch'.padStart(6)} ${'NFE'.padStart(6)} ${'ms/call'.padStart(10)} ${'per second'.padStart(12)}`);

  // ---- training steps
  const reps = (full: number, q: number) => (quick ? q : full);
  let ms = await timeIt(reps(20, 2), 1, () => tidy(() => void steps.behavior()));
  add({ case: 'phase 1 behaviour step', batch: cfg.behaviorBatch, msPerCall: ms, perSecond: 1000 / ms, unit: 'steps/s' });
  ms = await timeIt(reps(100, 10), 3, () => tidy(() => void steps.critic()));
  add({ case: 'phase 2 critic step', batch: cfg.criticBatch, msPerCall: ms, perSecond: 1000 / ms, unit: 'steps/s' });
  ms = await timeIt(reps(100, 10), 3, () => tidy(() => void steps.actor()));
  add({ case: 'phase 3 actor step', batch: cfg.actorBatch, msPerCall: ms, perSecond: 1000 / ms, unit: 'steps/s' });

  // ---- producing actions (read back to the host, as an environment loop needs them)
  behavior.net.eval();
  const ddpm = ddpmView(behavior, args['ddpm-steps']);
  const ratios: Record<string, number> = {};
  for (const batch of [1, 256]) {
    const obs = tensor(Float32Array.from({ length: batch * obsDim }, (_, k) => Math.sin(k)), [batch, obsDim]);
    const act = async (f: () => Tensor) => {
      const a = tidy(() => noGrad(f));
      await a.read();
      a.dispose();
    };
    const actorMs = await timeIt(reps(200, 20), 5, () => act(() => actor.forward(obs)));
    add({ case: 'SRPO actor', batch, networkEvals: 1, msPerCall: actorMs, perSecond: (1000 * batch) / actorMs, unit: 'actions/s' });
    const dpmMs = await timeIt(reps(20, 3), 1, () => act(() => dpmSolverPPSample(behavior.diffusion, obs, { batch, actionDim: actDim, generator: gen, steps: 15 })));
    add({ case: 'behaviour DPM-Solver++', batch, networkEvals: 15, msPerCall: dpmMs, perSecond: (1000 * batch) / dpmMs, unit: 'actions/s' });
    const ddpmMs = await timeIt(reps(5, 1), 1, () => act(() => ddpmSample(ddpm, obs, { batch, actionDim: actDim, generator: gen })));
    add({ case: 'behaviour DDPM', batch, networkEvals: args['ddpm-steps'], msPerCall: ddpmMs, perSecond: (1000 * batch) / ddpmMs, unit: 'actions/s' });
    ratios[`dpmSolver/actor@${batch}`] = dpmMs / actorMs;
    ratios[`ddpm/actor@${batch}`] = ddpmMs / actorMs;
    obs.dispose();
  }
  console.log(`speed-up of the actor: ${Object.entries(ratios).map(([k, v]) => `${k} ${v.toFixed(1)}x`).join(', ')}`);

  const tag = (rt.info.adapterClass === 'software' ? 'software' : rt.info.vendor || 'gpu').replace(/[^a-z0-9-]/gi, '_');
  mkdirSync(args.out, { recursive: true });
  const file = `${args.out}/srpo-${tag}.json`;
  writeFileSync(
    file,
    `${JSON.stringify({ host: hostname(), node: process.version, adapter: rt.info.description, adapterClass: rt.info.adapterClass, quick, obsDim, actDim, ddpmSteps: args['ddpm-steps'], date: new Date().toISOString(), rows, ratios }, null, 2)}\n`,
  );
  console.log(`wrote ${file}`);
  bench.dispose();
}

await runMain('bench/srpo', main);

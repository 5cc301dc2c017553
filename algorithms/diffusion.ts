// Behaviour cloning with a diffusion model on a toy dataset: trains one of the papers' behaviour models
// (algorithms/diffusion/behavior.ts), then samples it with each of its samplers and writes a picture of data
// vs samples, the loss curve, sample-quality numbers and a checkpoint.
//
// `node algorithms/diffusion.ts --help` for the command line.
import { join } from 'node:path';
import { zeros } from '../engine/basic.ts';
import { cosineLR, constantLR } from '../engine/optim.ts';
import { Generator } from '../engine/random.ts';
import { dispose as disposeEngine, init, type Runtime } from '../engine/runtime.ts';
import { saveModule } from '../engine/safetensors.ts';
import { TOY_NAMES, isToyName, toyDataset, type ToyData } from '../datasets/toy.ts';
import {
  BEHAVIOR_KINDS,
  DEFAULT_SAMPLER_STEPS,
  SAMPLER_NAMES,
  TensorBatchSource,
  isSamplerName,
  makeBehaviorModel,
  samplersFor,
  trainBehavior,
  type BehaviorKind,
  type SamplerName,
} from './diffusion/behavior.ts';
import { mmd, modeMass, type ModeMass } from './diffusion/metrics.ts';
import { lineSvg, scatterSvg, type ScatterPanel } from './common/svg.ts';
import { CliError, parseCli, runMain, type CliSpec, type OptionSpec } from './common/cli.ts';
import { GpuChurnGuard, JsonlLog, Progress, formatDuration, formatNumber } from './common/monitor.ts';
import { createRunDir, removeStaleTemps, writeFileAtomic } from './common/run-files.ts';
import { writePicture } from './common/picture.ts';

const OPTIONS = {
  dataset: { type: 'string', default: 'toy:8gaussians', placeholder: 'toy:name', description: `toy:<name> with name one of ${TOY_NAMES.join(', ')}` },
  model: { type: 'string', default: 'dql', choices: BEHAVIOR_KINDS, description: 'behaviour model family' },
  steps: { type: 'integer', default: 4000, positive: true, description: 'training steps' },
  batch: { type: 'integer', default: 256, positive: true, description: 'minibatch size' },
  lr: { type: 'number', default: 3e-3, positive: true, description: 'peak AdamW learning rate' },
  'lr-schedule': { type: 'string', default: 'cosine', choices: ['cosine', 'constant'], description: 'cosine: 5% linear warm-up, then cosine decay to 0' },
  hidden: { type: 'integer', positive: true, description: 'hidden width of the network (default 256, or 64 on a software adapter)' },
  T: { type: 'integer', positive: true, description: 'diffusion steps of dql / edp (default 50 for dql, the Diffusion-QL toy setting; 100 for edp)' },
  samplers: { type: 'string', placeholder: 'list', description: `comma-separated samplers to evaluate, from ${SAMPLER_NAMES.join(', ')} (default: all the model has)` },
  'sample-steps': { type: 'integer', positive: true, description: 'network evaluations of ddim / dpm / dpm-2m / edm-* (default: ddim all T, dpm 15, edm 18)' },
  samples: { type: 'integer', default: 2000, positive: true, description: 'samples per sampler (and per held-out data draw)' },
  'train-size': { type: 'integer', default: 10000, positive: true, description: 'dataset size drawn for training' },
  seed: { type: 'integer', nonNegative: true, default: 0, description: 'seed of data, initialisation and sampling' },
  'checkpoint-every': { type: 'integer', default: 1000, positive: true, description: 'steps between checkpoint writes' },
  out: { type: 'string', placeholder: 'dir', description: 'output directory (default runs/diffusion-<dataset>-<model>-<timestamp>)' },
} as const satisfies Record<string, OptionSpec>;

const CLI: CliSpec<typeof OPTIONS> = {
  usage: 'node algorithms/diffusion.ts [options]',
  description:
    "Trains a diffusion behaviour model on a toy dataset, as one of the papers builds it: dql (Diffusion-QL's MLP, vp schedule, " +
    'eps-MSE), edp (the same MLP in EDP\'s variant, scaled-linear schedule), srpo (IDQL ScoreNet on the VP-SDE) or dtql (DTQL\'s ' +
    'network with EDM preconditioning). Then it samples the model with each of its samplers and writes samples.svg (held-out data ' +
    'next to each sampler\'s samples), loss.svg, metrics.json (MMD^2 and per-mode mass of each sampler against held-out data, and ' +
    'the same numbers for a second held-out draw as the noise floor), behavior.safetensors (the network, with its configuration in ' +
    'the metadata; rewritten every --checkpoint-every steps and when Ctrl-C stops training) and config.json.',
  options: OPTIONS,
  examples: [
    'node algorithms/diffusion.ts --dataset toy:8gaussians',
    'node algorithms/diffusion.ts --dataset toy:dql-bandit-bc --model dql --steps 3000 --lr 1e-2 --hidden 64',
    'node algorithms/diffusion.ts --dataset toy:swissroll --model dtql --samplers edm-heun,edm-euler',
  ],
};

function parseDataset(spec: string): ToyData['name'] {
  const [kind, name] = spec.includes(':') ? [spec.slice(0, spec.indexOf(':')), spec.slice(spec.indexOf(':') + 1)] : ['', spec];
  if (kind !== 'toy') throw new CliError(`--dataset must be toy:<name> (only toy datasets are supported here), got '${spec}'`);
  if (!isToyName(name)) throw new CliError(`unknown toy dataset '${name}'; known: ${TOY_NAMES.join(', ')}`);
  return name;
}

function parseSamplers(text: string | undefined, kind: BehaviorKind): SamplerName[] {
  const valid = samplersFor(kind);
  if (text === undefined) return [...valid];
  const names = text.split(',').map((s) => s.trim()).filter((s) => s.length > 0);
  if (names.length === 0) throw new CliError('--samplers is empty');
  for (const n of names) {
    if (!isSamplerName(n)) throw new CliError(`unknown sampler '${n}'; known: ${SAMPLER_NAMES.join(', ')}`);
    if (!valid.includes(n)) throw new CliError(`sampler '${n}' does not apply to a ${kind} model; use ${valid.join(', ')}`);
  }
  return [...new Set(names as SamplerName[])];
}

export interface SamplerReport {
  mmd2: number;
  modeMass: ModeMass | null;
  seconds: number;
  /** Network evaluations per sample. */
  nfe: number;
}

/** Network evaluations of a sampler run: solver steps, plus DPM-Solver's final data prediction, or Heun's second calls. */
function networkEvaluations(sampler: SamplerName, steps: number): number {
  if (sampler === 'dpm' || sampler === 'dpm-2m') return steps + 1;
  if (sampler === 'edm-heun') return 2 * steps - 1;
  return steps;
}

/** Radius of a mode for modeMass: 4 standard deviations holds all but 0.03% of a 2-D Gaussian. */
const MODE_RADIUS_STDS = 4;

async function main(): Promise<void> {
  const args = parseCli(CLI);
  if (!args) return;
  const dataset = parseDataset(args.dataset);
  const kind = args.model as BehaviorKind;
  const samplers = parseSamplers(args.samplers, kind);
  if (kind === 'edp' && args.T !== undefined && args.T < 21) throw new CliError(`--T must be at least 21 for edp (its scaled-linear schedule's largest beta is 20/T), got ${args.T}`);
  if ((kind === 'srpo' || kind === 'dtql') && args.T !== undefined) throw new CliError(`--T applies to dql and edp only; ${kind} uses a continuous-time schedule`);
  const T = kind === 'dql' ? (args.T ?? 50) : kind === 'edp' ? (args.T ?? 100) : undefined;
  if (T !== undefined && samplers.includes('ddim') && (args['sample-steps'] ?? 0) > T) {
    throw new CliError(`--sample-steps ${args['sample-steps']} exceeds the chain's ${T} steps (ddim takes a subset of them)`);
  }
  const seed = args.seed;

  const rt: Runtime = await init();
  const software = rt.info.adapterClass === 'software';
  const hidden = args.hidden ?? (software ? 64 : 256);
  const data = toyDataset(dataset, args['train-size'], seed);
  const model = makeBehaviorModel(kind, data.stateDim, data.actionDim, { hidden, T, maxAction: data.maxAction, seed });
  const dir = createRunDir(`diffusion-${dataset}-${kind}`, { out: args.out });
  removeStaleTemps(dir);
  const config = {
    dataset: `toy:${dataset}`,
    model: kind,
    behavior: model.config,
    steps: args.steps,
    batch: args.batch,
    lr: args.lr,
    lrSchedule: args['lr-schedule'],
    samplers,
    sampleSteps: args['sample-steps'] ?? null,
    samples: args.samples,
    trainSize: args['train-size'],
    seed,
    adapter: rt.info.description || rt.info.vendor,
    adapterClass: rt.info.adapterClass,
    parameters: model.net.numParameters(),
  };
  writeFileAtomic(join(dir, 'config.json'), `${JSON.stringify(config, null, 2)}\n`);
  console.log(`writing to ${dir}`);
  console.log(
    `${kind} on toy:${dataset} (${data.actions.length / 2} actions, state ${data.stateDim}, max action ${data.maxAction ?? 'none'}): ` +
      `hidden ${hidden}${T ? `, T ${T}` : ''}, ${config.parameters} parameters; ${args.steps} steps of batch ${args.batch}, lr ${args.lr} (${args['lr-schedule']}); seed ${seed}` +
      (args.hidden === undefined && software ? ' [software adapter: --hidden 64 by default]' : ''),
  );

  // ---- training, Ctrl-C safe ----
  const checkpointPath = join(dir, 'behavior.safetensors');
  const writeCheckpoint = async (step: number) => {
    writeFileAtomic(checkpointPath, await saveModule(model.net, { ...model.metadata(), step: String(step) }));
  };
  const stop = new AbortController();
  const onInterrupt = () => {
    if (stop.signal.aborted) {
      console.error('\ninterrupted again: quitting without saving');
      process.exit(130);
    }
    stop.abort();
    console.error('\nstopping after this step and saving the checkpoint (Ctrl-C again to quit at once)');
  };
  process.on('SIGINT', onInterrupt);
  const log = new JsonlLog(join(dir, 'log.jsonl'));
  const progress = new Progress('train', args.steps);
  const churn = new GpuChurnGuard();
  const source = new TensorBatchSource(data.actions, data.actionDim, data.stateDim > 0 ? data.states : null, data.stateDim);
  const lr = args['lr-schedule'] === 'cosine' ? cosineLR(args.lr, args.steps, { warmup: Math.floor(args.steps / 20) }) : constantLR(args.lr);
  let lastCheckpoint = 0;
  const trainStart = performance.now();
  const result = await trainBehavior(model, source, {
    steps: args.steps,
    batch: args.batch,
    lr,
    generator: new Generator(seed),
    reportEvery: Math.max(1, Math.min(100, Math.floor(args.steps / 50))),
    signal: stop.signal,
    onProgress: async (p) => {
      progress.update(p.step, { loss: p.loss, lr: p.lr });
      log.write({ step: p.step, loss: p.loss, lr: p.lr, stepsPerSecond: p.stepsPerSecond });
      churn.check();
      if (p.step - lastCheckpoint >= args['checkpoint-every']) {
        await writeCheckpoint(p.step);
        lastCheckpoint = p.step;
      }
    },
  });
  source.dispose();
  const trainSeconds = (performance.now() - trainStart) / 1000;
  progress.finish(result.step);
  await writeCheckpoint(result.step);
  process.off('SIGINT', onInterrupt);
  const stopped = result.step < args.steps;
  console.log(`${stopped ? `stopped at step ${result.step}` : 'trained'} in ${formatDuration(trainSeconds * 1000)}; checkpoint ${checkpointPath}`);
  const losses = result.history.map((h) => h.loss);
  writePicture(
    join(dir, 'loss.svg'),
    lineSvg([{ name: `${kind} loss`, x: result.history.map((h) => h.step), y: losses }], {
      title: `${kind} behaviour loss on toy:${dataset}`,
      xLabel: 'step',
      yLabel: 'loss (mean per report interval)',
      // a log axis only pays off over more than a decade
      logY: losses.length > 1 && Math.max(...losses) > 10 * Math.min(...losses),
    }),
  );

  // ---- sampling and sample quality ----
  const n = args.samples;
  const heldOut = toyDataset(dataset, n, seed + 1).actions;
  const second = toyDataset(dataset, n, seed + 2).actions;
  const modes = data.modes;
  const massOf = (a: Float32Array) => (modes ? modeMass(a, 2, modes.centers, MODE_RADIUS_STDS * modes.std) : null);
  const fmt = (m: ModeMass | null) => (m ? ` mode mass [${m.fractions.map((f) => f.toFixed(3)).join(' ')}] outside ${m.outside.toFixed(3)}` : '');
  const floor = { mmd2: mmd(second, heldOut, 2), modeMass: massOf(second) };
  console.log(`noise floor (held-out data vs a second draw): MMD^2 ${formatNumber(floor.mmd2)}${fmt(floor.modeMass)}`);
  const cond = data.stateDim > 0 ? zeros([1, data.stateDim]) : null;
  const gen = new Generator(seed + 3);
  const reports: Record<string, SamplerReport> = {};
  const panels: ScatterPanel[] = [{ title: 'held-out data', points: heldOut, color: '#444444' }];
  for (const sampler of samplers) {
    const steps = sampler === 'ddpm' ? T! : (args['sample-steps'] ?? DEFAULT_SAMPLER_STEPS[sampler] ?? T!);
    const t0 = performance.now();
    const x = model.sample(cond, n, gen, { sampler, steps: args['sample-steps'] });
    const a = (await x.read()) as Float32Array;
    x.dispose();
    const seconds = (performance.now() - t0) / 1000;
    const report: SamplerReport = { mmd2: mmd(a, heldOut, 2), modeMass: massOf(a), seconds, nfe: networkEvaluations(sampler, steps) };
    reports[sampler] = report;
    console.log(`${sampler.padEnd(9)} MMD^2 ${formatNumber(report.mmd2)}${fmt(report.modeMass)} (${n} samples, ${report.nfe} network calls, ${seconds.toFixed(2)} s)`);
    panels.push({ title: `${sampler} (MMD² ${formatNumber(report.mmd2)})`, points: a });
  }
  cond?.dispose();
  const svgPath = join(dir, 'samples.svg');
  writePicture(svgPath, scatterSvg(panels, { maxPoints: 2000 }));
  writeFileAtomic(
    join(dir, 'metrics.json'),
    `${JSON.stringify(
      {
        dataset: `toy:${dataset}`,
        model: kind,
        steps: result.step,
        stoppedEarly: stopped,
        trainSeconds,
        finalLoss: result.history.at(-1)?.loss ?? null,
        samples: n,
        modeRadius: modes ? MODE_RADIUS_STDS * modes.std : null,
        noiseFloor: floor,
        samplers: reports,
      },
      null,
      2,
    )}\n`,
  );
  console.log(`wrote ${svgPath}, loss.svg, metrics.json, config.json`);
  disposeEngine();
}

await runMain('diffusion', main);

// Writes a trained run's networks in the layout of its paper's PyTorch code (SRPO, DTQL, Diffusion-QL): one
// safetensors file per network, loadable there with strict=True, the observation normalisation and the action box
// in each file's metadata. The mappings are algorithms/<method>/export.ts.
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { dispose, init } from '../engine/runtime.ts';
import { makeEnv } from '../envs/registry.ts';
import { CliError, parseCli, runMain, type CliSpec } from '../algorithms/common/cli.ts';
import type { OfflineConfig, OfflineMethod } from '../algorithms/common/offline-method.ts';
import { loadCheckpoint, writeFileAtomic } from '../algorithms/common/run-files.ts';
import type { ExportContext } from '../algorithms/common/torch-layout.ts';
import { DQL, type DqlModels } from '../algorithms/dql.ts';
import { exportDqlToTorch } from '../algorithms/dql/export.ts';
import { DTQL, type DtqlModels } from '../algorithms/dtql.ts';
import { exportDtqlToTorch } from '../algorithms/dtql/export.ts';
import { SRPO, type SrpoModels } from '../algorithms/srpo.ts';
import { exportSrpoToTorch } from '../algorithms/srpo/export.ts';

/** A method that exports: how its run is recognised, and the export of its built and loaded models. */
interface Exporter {
  method: OfflineMethod<OfflineConfig, unknown>;
  /** A setting only this method's config.json has. */
  marker: string;
  write(m: unknown, dims: { stateDim: number; actionDim: number }, context: ExportContext): Promise<Record<string, Uint8Array>>;
}

const EXPORTERS: Exporter[] = [
  { method: SRPO as never, marker: 'behaviorSteps', write: (m, dims, c) => exportSrpoToTorch(m as SrpoModels, dims, c) },
  { method: DTQL as never, marker: 'pretrainSteps', write: (m, _dims, c) => exportDtqlToTorch(m as DtqlModels, c) },
  { method: DQL as never, marker: 'eta', write: (m, _dims, c) => exportDqlToTorch(m as DqlModels, c) },
];

const OPTIONS = {
  run: { type: 'string', placeholder: 'dir', description: 'a finished SRPO, DTQL or Diffusion-QL run directory' },
  out: { type: 'string', placeholder: 'dir', description: 'where the files go (default: <run>/torch)' },
} as const;

const CLI: CliSpec<typeof OPTIONS> = {
  usage: 'node scripts/export-torch.ts --run DIR [--out DIR]',
  description:
    "Writes a run's networks as state dicts of its paper's PyTorch modules, one safetensors file each, loadable there " +
    'with strict=True. SRPO: behavior (ScoreNet_IDQL), critic (Critic: q0, q0_target, vf; its TwinQ takes [action, ' +
    'state]), actor (Dirac_Policy). DTQL: behavior (ScoreNetwork), critic and critic_target (Critic), actor ' +
    '(DiagGaussianActorTanhAction). Diffusion-QL: actor (the MLP of Diffusion_QL.model), critic (Critic). Each ' +
    "file's metadata says how observations go in (obs_normalization: 'none', or the z-scoring's mean and std) and " +
    'what the [-1, 1] actions map to (action_box). EDP is written in JAX and has no such export.',
  options: OPTIONS,
  examples: ['node scripts/export-torch.ts --run runs/srpo-pendulum-quick-20260101-120000'],
};

async function main(): Promise<void> {
  const args = parseCli(CLI);
  if (!args) return;
  if (!args.run) throw new CliError('--run is required (see --help)');
  const configPath = join(args.run, 'config.json');
  if (!existsSync(configPath)) throw new CliError(`--run: ${configPath} not found`);
  const cfg = JSON.parse(readFileSync(configPath, 'utf8')) as OfflineConfig & Record<string, unknown>;
  const exporter = EXPORTERS.find((e) => e.marker in cfg);
  if (!exporter || ('backbone' in cfg)) throw new CliError(`--run: ${args.run} is not an SRPO, DTQL or Diffusion-QL run`);
  const env = await makeEnv(cfg.env);
  const dims = { stateDim: env.obsDim, actionDim: env.actDim };
  const actionBox = { low: [...env.actionLow], high: [...env.actionHigh] };
  env.close();
  await init();
  try {
    const { method } = exporter;
    const m = method.build(dims.stateDim, dims.actionDim, cfg);
    // every phase's checkpoint holds the networks as they were at its end; the last phase's are the final ones
    for (const phase of method.phases) {
      const run = phase.make(m, cfg, null as never, join(args.run, `${phase.name}.safetensors`));
      loadCheckpoint(run.checkpoint, { modules: run.parts.modules });
      run.finish?.();
    }
    const statsPath = join(args.run, 'obs_stats.json');
    const obsNormalization = cfg.normalizeObs && existsSync(statsPath) ? (JSON.parse(readFileSync(statsPath, 'utf8')) as { mean: number[]; std: number[] }) : null;
    const files = await exporter.write(m, dims, { obsNormalization, actionBox });
    const out = args.out ?? join(args.run, 'torch');
    mkdirSync(out, { recursive: true });
    for (const [name, bytes] of Object.entries(files)) writeFileAtomic(join(out, `${name}.safetensors`), bytes);
    method.dispose(m);
    console.log(`wrote ${Object.keys(files).map((n) => `${n}.safetensors`).join(', ')} to ${out}`);
  } finally {
    dispose();
  }
}

await runMain('export-torch', main);

// Writes a trained run's networks in the layout of the paper's PyTorch code (SRPO for now): one safetensors file
// per network, loadable there with strict=True; the observation normalisation and the action box in each file's
// metadata. See algorithms/srpo/export.ts for the mapping.
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { dispose, init } from '../engine/runtime.ts';
import { makeEnv } from '../envs/registry.ts';
import { CliError, parseCli, runMain, type CliSpec } from '../algorithms/common/cli.ts';
import { loadCheckpoint, writeFileAtomic } from '../algorithms/common/run-files.ts';
import { SRPO } from '../algorithms/srpo.ts';
import { exportSrpoToTorch } from '../algorithms/srpo/export.ts';
import type { SrpoConfig } from '../algorithms/srpo/presets.ts';

const OPTIONS = {
  run: { type: 'string', placeholder: 'dir', description: 'a finished SRPO run directory (config.json, behavior/critic/actor.safetensors)' },
  out: { type: 'string', placeholder: 'dir', description: 'where the three files go (default: <run>/torch)' },
} as const;

const CLI: CliSpec<typeof OPTIONS> = {
  usage: 'node scripts/export-torch.ts --run DIR [--out DIR]',
  description:
    "Writes an SRPO run's behaviour model, critic and actor as state dicts of the paper's PyTorch modules " +
    '(ScoreNet_IDQL; Critic with q0, q0_target, vf; Dirac_Policy), as safetensors files: behavior.safetensors, ' +
    'critic.safetensors, actor.safetensors. The critic takes [action, state] as the paper\'s TwinQ does. Observations ' +
    "go in as the run saw them (metadata obs_normalization: 'none', or the z-scoring's mean and std) and actions " +
    'come out in [-1, 1] (metadata action_box: the environment\'s bounds).',
  options: OPTIONS,
  examples: ['node scripts/export-torch.ts --run runs/srpo-pendulum-quick-20260101-120000'],
};

async function main(): Promise<void> {
  const args = parseCli(CLI);
  if (!args) return;
  if (!args.run) throw new CliError('--run is required (see --help)');
  const configPath = join(args.run, 'config.json');
  if (!existsSync(configPath)) throw new CliError(`--run: ${configPath} not found`);
  const cfg = JSON.parse(readFileSync(configPath, 'utf8')) as SrpoConfig;
  if (!('behaviorSteps' in cfg) || !('actorSteps' in cfg)) throw new CliError(`--run: ${args.run} is not an SRPO run (only SRPO exports for now)`);
  const env = await makeEnv(cfg.env);
  const dims = { stateDim: env.obsDim, actionDim: env.actDim };
  const actionBox = { low: [...env.actionLow], high: [...env.actionHigh] };
  env.close();
  await init();
  try {
    const m = SRPO.build(dims.stateDim, dims.actionDim, cfg);
    loadCheckpoint(join(args.run, 'behavior.safetensors'), { modules: { behavior: m.behavior.net } });
    loadCheckpoint(join(args.run, 'critic.safetensors'), { modules: m.critic.modules() });
    loadCheckpoint(join(args.run, 'actor.safetensors'), { modules: { actor: m.actor } });
    const statsPath = join(args.run, 'obs_stats.json');
    const obsNormalization = cfg.normalizeObs && existsSync(statsPath) ? (JSON.parse(readFileSync(statsPath, 'utf8')) as { mean: number[]; std: number[] }) : null;
    const files = await exportSrpoToTorch(m, dims, { obsNormalization, actionBox });
    const out = args.out ?? join(args.run, 'torch');
    mkdirSync(out, { recursive: true });
    for (const [name, bytes] of Object.entries(files)) writeFileAtomic(join(out, `${name}.safetensors`), bytes);
    SRPO.dispose(m);
    console.log(`wrote ${Object.keys(files).map((n) => `${n}.safetensors`).join(', ')} to ${out}`);
  } finally {
    dispose();
  }
}

await runMain('export-torch', main);

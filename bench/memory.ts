// Memory over a long replayed run: a small critic trained for many steps through the phase runner (recorded
// step replayed, losses read back every log interval, the GPU-object guard), with the process's resident set
// size sampled along the way. A flat line means nothing grows per step.
//
//   node bench/memory.ts [--steps 100000] [--every 10000]
import { join } from 'node:path';
import { init, dispose } from '../engine/runtime.ts';
import { Generator } from '../engine/random.ts';
import { IQLCritic } from '../algorithms/common/iql.ts';
import { parseCli, runMain, type CliSpec } from '../algorithms/common/cli.ts';
import { runPhase } from '../algorithms/common/phase.ts';
import { randomStore } from './common.ts';
import { mkdtempSync, rmSync, mkdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';

const OPTIONS = {
  steps: { type: 'integer', positive: true, default: 100_000, placeholder: 'n', description: 'training steps' },
  every: { type: 'integer', positive: true, default: 10_000, placeholder: 'n', description: 'steps between RSS samples' },
  out: { type: 'string', default: 'bench/results', placeholder: 'dir', description: 'where the JSON goes' },
} as const;

const CLI: CliSpec<typeof OPTIONS> = {
  usage: 'node bench/memory.ts [--steps N] [--every N]',
  description: "Trains IQL's critic ([64, 64], batch 256) for --steps replayed steps through the phase runner and samples the resident set size every --every steps.",
  options: OPTIONS,
  examples: ['node bench/memory.ts', 'node bench/memory.ts --steps 20000 --every 2000'],
};

async function main(): Promise<void> {
  const args = parseCli(CLI);
  if (!args) return;
  await init();
  const store = randomStore(11, 3, 100_000, 1);
  const critic = new IQLCritic(11, 3, { hidden: [64, 64] }, { seed: 1 });
  const gen = new Generator(2);
  const scratch = mkdtempSync(join(tmpdir(), 'wd-memory-'));
  const samples: { step: number; rssMiB: number; heapMiB: number }[] = [];
  const sample = (step: number) => {
    const m = process.memoryUsage();
    samples.push({ step, rssMiB: m.rss / 2 ** 20, heapMiB: m.heapUsed / 2 ** 20 });
    process.stderr.write(`step ${step}: rss ${(m.rss / 2 ** 20).toFixed(1)} MiB, heap ${(m.heapUsed / 2 ** 20).toFixed(1)} MiB\n`);
  };
  const t0 = performance.now();
  for (let done = 0; done < args.steps; done += args.every) {
    const steps = Math.min(args.every, args.steps - done);
    await runPhase(
      {
        phase: 'critic',
        steps: done + steps,
        checkpoint: join(scratch, 'critic.safetensors'),
        parts: { modules: critic.modules(), optimizers: critic.optimizers(), generators: { data: gen } },
        step: () => {
          const { qLoss, vLoss } = critic.update(store.sample(256, gen));
          return { qLoss, vLoss };
        },
      },
      { cfg: { logEvery: 1000, checkpointEvery: 10 ** 9 }, log: null, quiet: true, stream: { write: () => true } },
      done,
    );
    sample(done + steps);
  }
  const seconds = (performance.now() - t0) / 1000;
  const first = samples[0]!;
  const last = samples[samples.length - 1]!;
  const result = { steps: args.steps, seconds, samples, rssGrowthMiB: last.rssMiB - first.rssMiB };
  console.log(`${args.steps} steps in ${seconds.toFixed(0)} s; RSS ${first.rssMiB.toFixed(1)} MiB after ${first.step} steps, ${last.rssMiB.toFixed(1)} MiB after ${last.step}`);
  mkdirSync(args.out, { recursive: true });
  writeFileSync(join(args.out, 'memory.json'), `${JSON.stringify(result, null, 2)}\n`);
  rmSync(scratch, { recursive: true, force: true });
  critic.dispose();
  store.dispose();
  dispose();
}

await runMain('memory', main);

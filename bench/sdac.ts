// SDAC's update at the paper's MuJoCo setting (SDAC_PAPER_AGENT: batch 256, 32 particles through a 20-step chain
// for the critic's targets, 64 reverse samples for the policy loss, 3 x 256 networks): each update variant
// recorded and replayed as the online loop runs it, on random transitions at Hopper sizes, and the mean cost of
// an update over the paper's schedule of variants. Prints a table (and, with --profile, where the GPU time goes)
// and writes the numbers as JSON.
import { mkdirSync, writeFileSync } from 'node:fs';
import { hostname, loadavg } from 'node:os';
import { init } from '../engine/runtime.ts';
import { recordStep } from '../engine/record.ts';
import { tidy } from '../engine/tensor.ts';
import { parseCli, runMain, type CliSpec } from '../algorithms/common/cli.ts';
import { SDAC_PAPER_AGENT, SDACAgent, sdacUpdateVariant, UPDATE_CRITIC, UPDATE_POLICY, UPDATE_TEMPERATURE } from '../algorithms/sdac/agent.ts';
import { HOPPER_SIZE_OPTIONS, randomStore, timeItWithCpu } from './common.ts';
import { formatProfile, profileStep, type StepProfile } from './step-profile.ts';

const OPTIONS = {
  quick: { type: 'boolean', description: 'one timed update per variant instead of three' },
  profile: { type: 'boolean', description: 'also profile each replayed variant: GPU time per kernel family (timestamp queries)' },
  ...HOPPER_SIZE_OPTIONS,
} as const;

const CLI: CliSpec<typeof OPTIONS> = {
  usage: 'node bench/sdac.ts [--quick] [--profile] [--obs N] [--act N] [--out DIR]',
  description:
    "Times SDAC's update at the paper's MuJoCo setting on 100k random transitions: the critic-only update, the update " +
    'that also trains the policy and the targets (every 2nd), and the one that also adapts the temperature (every ' +
    '250th), each recorded once and replayed as the online loop does, after an untimed warm-up. Reports wall and CPU ' +
    "ms per update, dispatches, and the mean over the paper's schedule of variants.",
  options: OPTIONS,
  examples: ['node bench/sdac.ts --quick', 'node bench/sdac.ts --profile'],
};

const VARIANTS = [
  { id: UPDATE_CRITIC, name: 'critic' },
  { id: UPDATE_POLICY, name: 'critic + policy + targets' },
  { id: UPDATE_TEMPERATURE, name: 'critic + policy + targets + temperature' },
] as const;

interface Row {
  variant: string;
  msPerUpdate: number;
  cpuMsPerUpdate: number;
  dispatches: number;
  /** Share of updates of this variant over the paper's schedule. */
  share: number;
  profile?: StepProfile | null;
}

async function main(): Promise<void> {
  const args = parseCli(CLI);
  if (!args) return; // --help
  const rt = await init(args.profile ? { dawnFlags: ['disable-dawn-features=timestamp_quantization'] } : {});
  const reps = args.quick ? 1 : 3;
  const cycle = SDAC_PAPER_AGENT.alphaEvery;
  const agent = new SDACAgent(args.obs, args.act, { ...SDAC_PAPER_AGENT, seed: 0 });
  const store = randomStore(args.obs, args.act);
  const load0 = loadavg()[0]!;
  const rows: Row[] = [];
  for (const v of VARIANTS) {
    process.stderr.write(`[bench/sdac] ${v.name}: warm-up, record, ${reps} timed\n`);
    tidy(() => void agent.update(store, v.id));
    const rec = recordStep(() => agent.update(store, v.id));
    try {
      const t = await timeItWithCpu(reps, 1, () => rec.replay());
      let count = 0;
      for (let u = 0; u < cycle; u++) if (sdacUpdateVariant(SDAC_PAPER_AGENT, u) === v.id) count++;
      const row: Row = { variant: v.name, msPerUpdate: t.ms, cpuMsPerUpdate: t.cpuMs, dispatches: rec.dispatchCount, share: count / cycle };
      if (args.profile) row.profile = await profileStep(rec, reps);
      rows.push(row);
    } finally {
      rec.dispose();
    }
  }
  const meanMs = rows.reduce((a, r) => a + r.share * r.msPerUpdate, 0);
  const meanCpu = rows.reduce((a, r) => a + r.share * r.cpuMsPerUpdate, 0);

  console.log(`\nSDAC update, paper setting, obs ${args.obs} act ${args.act}, ${rt.info.description} (${rt.info.adapterClass})`);
  console.log(`${'variant'.padEnd(42)} ${'ms'.padStart(9)} ${'cpu ms'.padStart(9)} ${'disp'.padStart(6)} ${'share'.padStart(7)}`);
  for (const r of rows) {
    console.log(`${r.variant.padEnd(42)} ${r.msPerUpdate.toFixed(1).padStart(9)} ${r.cpuMsPerUpdate.toFixed(1).padStart(9)} ${String(r.dispatches).padStart(6)} ${(100 * r.share).toFixed(1).padStart(6)}%`);
  }
  console.log(`${'mean over the schedule'.padEnd(42)} ${meanMs.toFixed(1).padStart(9)} ${meanCpu.toFixed(1).padStart(9)}`);
  console.log(`load average (1 min) ${load0.toFixed(1)} at the start, ${loadavg()[0]!.toFixed(1)} at the end`);
  if (args.profile) {
    console.log('\nprofile (a compute pass per dispatch; families slowest first):');
    for (const r of rows) console.log(r.profile ? formatProfile(r.variant, r.profile, r.msPerUpdate, undefined) : `${r.variant}: the device lacks 'timestamp-query'`);
  }

  agent.dispose();
  store.dispose();
  const tag = (rt.info.adapterClass === 'software' ? 'software' : rt.info.vendor || 'gpu').replace(/[^a-z0-9-]/gi, '_');
  mkdirSync(args.out, { recursive: true });
  const file = `${args.out}/sdac-${tag}.json`;
  const report = {
    host: hostname(),
    adapter: rt.info.description,
    date: new Date().toISOString(),
    command: `node bench/sdac.ts ${process.argv.slice(2).join(' ')}`.trim(),
    loadAverage: { start: load0, end: loadavg()[0] },
    config: SDAC_PAPER_AGENT,
    rows,
    meanMsPerUpdate: meanMs,
    meanCpuMsPerUpdate: meanCpu,
  };
  writeFileSync(file, `${JSON.stringify(report, null, 2)}\n`);
  console.log(`wrote ${file}`);
}

await runMain('bench/sdac', main);

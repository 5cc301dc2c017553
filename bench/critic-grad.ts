// Twin-Q action gradient g = d/da (Q1 + Q2) / 2: the fused single-dispatch kernel against the autograd path
// (both heads forward, then backward to the actions, as IQLCritic.targetQGrad did), per call, at the batch
// sizes SRPO and DTQL use. With --sweep, also every launch shape of the fused kernel in a small grid, so the
// defaults in algorithms/common/critic-grad.ts can be checked on a new adapter. Prints a table and writes JSON.
import { parseArgs } from 'node:util';
import { mkdirSync, writeFileSync } from 'node:fs';
import { init } from '../engine/runtime.ts';
import { HostRng } from '../engine/host-rng.ts';
import { tensor, tidy, type Tensor } from '../engine/tensor.ts';
import { TwinQ, type CriticActivation } from '../algorithms/common/critic-nets.ts';
import { defaultCriticGradTuning, twinQActionGrad, type CriticGradTuning, type TwinQActionGradOptions } from '../algorithms/common/critic-grad.ts';

const { values: args } = parseArgs({
  options: {
    batch: { type: 'string', default: '256,2048' },
    obs: { type: 'string', default: '11' },
    act: { type: 'string', default: '3' },
    hidden: { type: 'string', default: '256,256' },
    activation: { type: 'string', default: 'relu' },
    reps: { type: 'string', default: '7' },
    calls: { type: 'string', default: '10' },
    sweep: { type: 'boolean', default: false },
    out: { type: 'string', default: 'bench/results' },
    help: { type: 'boolean', short: 'h', default: false },
  },
});
if (args.help) {
  console.log(`usage: node bench/critic-grad.ts [--batch 256,2048] [--obs 11] [--act 3] [--hidden 256,256]
                               [--activation relu|mish] [--reps 7] [--calls 10] [--sweep] [--out DIR]

Times the twin-Q action gradient per call: the fused kernel (one dispatch) against the autograd path.
  --batch L       comma-separated batch sizes (default 256,2048)
  --obs, --act    state and action dimensions (default 11 and 3, Hopper)
  --hidden L      hidden widths of each Q head (default 256,256)
  --activation A  relu (default) or mish
  --reps N        timed repetitions (median reported; default 7, after one warm-up)
  --calls N       calls per repetition, submitted together (default 10)
  --sweep         also time the fused kernel over a grid of launch shapes (rows, workgroup, groups)
  --out DIR       where critic-grad-<adapter>.json is written (default bench/results)`);
  process.exit(0);
}

function intList(name: string, s: string): number[] {
  const xs = s.split(',').map((x) => Number(x.trim()));
  if (xs.length === 0 || xs.some((x) => !Number.isInteger(x) || x < 1)) {
    console.error(`--${name} must be a comma-separated list of positive integers, got "${s}"`);
    process.exit(2);
  }
  return xs;
}
const batches = intList('batch', args.batch);
const [obsDim] = intList('obs', args.obs);
const [actDim] = intList('act', args.act);
const hidden = intList('hidden', args.hidden);
const [reps] = intList('reps', args.reps);
const [calls] = intList('calls', args.calls);
if (args.activation !== 'relu' && args.activation !== 'mish') {
  console.error(`--activation must be relu or mish, got "${args.activation}"`);
  process.exit(2);
}
const activation = args.activation as CriticActivation;

const rt = await init();
const info = rt.info;
console.log(`adapter: ${info.description || info.vendor} (${info.adapterClass}); TwinQ obs ${obsDim} act ${actDim} hidden [${hidden}] ${activation}`);
console.log(`median of ${reps} repetitions of ${calls} calls; default fused launch ${JSON.stringify(defaultCriticGradTuning())}`);

const rng = new HostRng(1);
const q = new TwinQ(obsDim!, actDim!, { hidden, act: activation, rng });
q.paramGroup();
// as IQLCritic's target network: parameters off the tape, so the autograd path computes no weight gradients
for (const p of q.parameters()) p.requiresGrad = false;

function random(n: number): Float32Array {
  return Float32Array.from({ length: n }, () => rng.next() * 2 - 1);
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

function cpuMs(): number {
  const c = process.cpuUsage();
  return (c.user + c.system) / 1000;
}

/**
 * Median wall ms per call, median process CPU ms per call (the software rasteriser's threads run in this
 * process, so on a shared machine this is the steadier figure) and dispatches per call.
 */
async function time(obs: Tensor, actions: Tensor, opts: TwinQActionGradOptions): Promise<{ ms: number; cpuMs: number; dispatches: number }> {
  const once = () => tidy(() => void twinQActionGrad(q, obs, actions, opts));
  once();
  await rt.sync();
  const d0 = rt.stats.dispatches;
  once();
  const dispatches = rt.stats.dispatches - d0;
  await rt.sync();
  const samples: number[] = [];
  const cpu: number[] = [];
  for (let r = 0; r < reps!; r++) {
    const t0 = performance.now();
    const c0 = cpuMs();
    for (let i = 0; i < calls!; i++) once();
    await rt.sync();
    samples.push((performance.now() - t0) / calls!);
    cpu.push((cpuMs() - c0) / calls!);
  }
  return { ms: median(samples), cpuMs: median(cpu), dispatches };
}

interface Row {
  batch: number;
  path: string;
  tuning?: CriticGradTuning;
  ms: number;
  cpuMs: number;
  dispatches: number;
}
const rows: Row[] = [];
function report(r: Row): void {
  rows.push(r);
  const t = r.tuning;
  const what = t ? `fused rows ${t.rows} wg ${t.workgroup} groups ${t.groups}${t.subgroup ? ' sg' : ''}` : r.path;
  console.log(
    `B ${String(r.batch).padStart(5)}  ${what.padEnd(36)} ${r.ms.toFixed(2).padStart(9)} ms/call  ${r.cpuMs.toFixed(2).padStart(9)} cpu-ms/call  ${String(r.dispatches).padStart(3)} dispatches`,
  );
}

const grid: CriticGradTuning[] = [];
if (args.sweep) {
  for (const rowsPer of [4, 8, 16]) {
    for (const workgroup of [8, 64]) for (const groups of [1, 2]) grid.push({ rows: rowsPer, workgroup, groups, subgroup: workgroup === 8 });
  }
}

for (const B of batches) {
  const obs = tensor(random(B * obsDim!), [B, obsDim!]);
  const actions = tensor(random(B * actDim!), [B, actDim!]);
  const autograd = await time(obs, actions, { path: 'autograd' });
  report({ batch: B, path: 'autograd', ...autograd });
  const fused = await time(obs, actions, { path: 'fused' });
  report({ batch: B, path: 'fused', ...fused });
  console.log(`B ${String(B).padStart(5)}  fused vs autograd: ${(autograd.ms / fused.ms).toFixed(2)}x wall, ${(autograd.cpuMs / fused.cpuMs).toFixed(2)}x cpu`);
  for (const tuning of grid) {
    try {
      report({ batch: B, path: 'fused', tuning, ...(await time(obs, actions, { path: 'fused', tuning })) });
    } catch (err) {
      console.log(`B ${B} tuning ${JSON.stringify(tuning)} failed: ${(err as Error).message.split('\n')[0]}`);
    }
  }
  obs.dispose();
  actions.dispose();
}

const tag = (info.adapterClass === 'software' ? 'software' : info.vendor || 'gpu').replace(/[^a-z0-9-]/gi, '_');
mkdirSync(args.out, { recursive: true });
const file = `${args.out}/critic-grad-${tag}.json`;
writeFileSync(
  file,
  JSON.stringify({ adapter: info.description, adapterClass: info.adapterClass, obsDim, actDim, hidden, activation, reps, calls, date: new Date().toISOString(), rows }, null, 2),
);
console.log(`wrote ${file}`);

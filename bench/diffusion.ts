// Diffusion-policy cost per action: sampling with each paper's network and sampler (DDPM over T = 5, 20, 100
// steps, DPM-Solver++ 15 steps of order 3, EDM Heun) for one state, 256 states, and 50 candidates for each of
// 256 states scored by a small critic with one kept per state; and the behaviour model's training step
// (forward, backward, AdamW) at batch 256 and 2048 for each model kind. Weights are untrained: the cost does
// not depend on them. Median of repeated runs after a warm-up, each ended by a GPU sync. Prints a markdown
// table and writes the numbers as JSON.
import { mkdirSync, writeFileSync } from 'node:fs';
import { backward, noGrad } from '../engine/autograd.ts';
import { HostRng } from '../engine/host-rng.ts';
import { MLP } from '../engine/nn.ts';
import { concat } from '../engine/ops/shape.ts';
import { AdamW } from '../engine/optim.ts';
import { Generator } from '../engine/random.ts';
import { dispose as disposeEngine, init } from '../engine/runtime.ts';
import { keep, tidy, type Tensor } from '../engine/tensor.ts';
import { makeBehaviorModel, type BehaviorKind, type BehaviorModel, type SamplerName } from '../algorithms/diffusion/behavior.ts';
import { repeatRows, selectByCritic } from '../algorithms/diffusion/select.ts';
import { parseCli, runMain, type CliSpec, type OptionSpec } from '../algorithms/common/cli.ts';

const OPTIONS = {
  reps: { type: 'integer', positive: true, description: 'most timed repetitions per case, median reported (default 5, quick 2); a case whose warm-up call took t seconds gets at most --budget / t' },
  budget: { type: 'number', default: 20, positive: true, description: 'seconds of timed calls a case may take (at least one call is timed)' },
  quick: { type: 'boolean', description: 'fewer repetitions, and 32 states in the candidate-selection case unless --selection-states is given' },
  'state-dim': { type: 'integer', default: 17, positive: true, description: 'state size (17: HalfCheetah)' },
  'action-dim': { type: 'integer', default: 6, positive: true, description: 'action size (6: HalfCheetah)' },
  candidates: { type: 'integer', default: 50, positive: true, description: 'candidate actions per state in the selection case' },
  states: { type: 'integer', default: 256, positive: true, description: 'states of the batched case' },
  'selection-states': { type: 'integer', positive: true, description: 'states of the candidate-selection case (default --states; 32 with --quick)' },
  only: { type: 'string', choices: ['sampling', 'training'], description: 'run one half only' },
  out: { type: 'string', default: 'bench/results', placeholder: 'dir', description: 'directory of the JSON results' },
} as const satisfies Record<string, OptionSpec>;

const CLI: CliSpec<typeof OPTIONS> = {
  usage: 'node bench/diffusion.ts [options]',
  description:
    'Times diffusion-policy sampling per action and the behaviour model training step on the current WebGPU adapter, with the ' +
    "papers' networks at full size: DDPM with T = 5, 20, 100 on Diffusion-QL's 3 x 256 Mish MLP; DPM-Solver++ (15 steps, order 3, " +
    "singlestep, no final denoising call) on EDP's MLP (T = 100) and on SRPO's IDQL ScoreNet (VP-SDE); EDM Heun over 18 noise levels " +
    "on DTQL's network. Each sampler runs for 1 state, for --states states, and for --candidates actions per state with a " +
    '[state + action, 256, 256, 1] ReLU critic and softmax selection of one action per state. Training: one AdamW step on the ' +
    "model's own loss at batch 256 and 2048 for dql (T = 5), edp (T = 100), srpo and dtql. Prints a markdown table and writes " +
    'DIR/diffusion-<adapter>.json.',
  options: OPTIONS,
  examples: ['node bench/diffusion.ts --quick', 'node bench/diffusion.ts --only sampling --reps 3'],
};

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

interface SamplerCase {
  name: string;
  kind: BehaviorKind;
  T?: number;
  sampler: SamplerName;
  steps?: number;
  /** Network evaluations per sample. */
  nfe: number;
}

const SAMPLER_CASES: SamplerCase[] = [
  { name: 'DDPM T=5 (Diffusion-QL MLP)', kind: 'dql', T: 5, sampler: 'ddpm', nfe: 5 },
  { name: 'DDPM T=20 (Diffusion-QL MLP)', kind: 'dql', T: 20, sampler: 'ddpm', nfe: 20 },
  { name: 'DDPM T=100 (Diffusion-QL MLP)', kind: 'dql', T: 100, sampler: 'ddpm', nfe: 100 },
  { name: 'DPM-Solver++ 15 (EDP MLP, T=100)', kind: 'edp', T: 100, sampler: 'dpm', steps: 15, nfe: 15 },
  { name: 'DPM-Solver++ 15 (SRPO ScoreNet, VP-SDE)', kind: 'srpo', sampler: 'dpm', steps: 15, nfe: 15 },
  { name: 'EDM Heun 18 (DTQL net)', kind: 'dtql', sampler: 'edm-heun', steps: 18, nfe: 35 },
];

const TRAIN_CASES: { kind: BehaviorKind; T?: number; label: string }[] = [
  { kind: 'dql', T: 5, label: 'dql (MLP, T=5)' },
  { kind: 'edp', T: 100, label: 'edp (MLP, T=100)' },
  { kind: 'srpo', label: 'srpo (IDQL ScoreNet)' },
  { kind: 'dtql', label: 'dtql (EDM net)' },
];

interface SamplingRow {
  case: string;
  nfe: number;
  batch: string;
  /** Rows the sampler runs over. */
  rows: number;
  /** Actions delivered (one per state). */
  actions: number;
  ms: number;
  usPerAction: number;
  actionsPerSecond: number;
}

interface TrainingRow {
  model: string;
  batch: number;
  parameters: number;
  ms: number;
  samplesPerSecond: number;
}

async function main(): Promise<void> {
  const args = parseCli(CLI);
  if (!args) return;
  const reps = args.reps ?? (args.quick ? 2 : 5);
  const S = args['state-dim'];
  const A = args['action-dim'];
  const K = args.candidates;
  const B = args.states;
  const SB = args['selection-states'] ?? (args.quick ? 32 : B);
  const rt = await init();
  const seed = Date.now() >>> 0;
  const gen = new Generator(seed);

  /**
   * Median seconds of fn per call, after one untimed call (pipelines compile there); each repetition ends with
   * a GPU sync. Slow cases get fewer repetitions, so that their timed calls fit in the budget.
   */
  const time = async (fn: () => void, inner = 1): Promise<number> => {
    const w0 = performance.now();
    fn();
    await rt.sync();
    const warm = (performance.now() - w0) / 1000;
    const n = Math.max(1, Math.min(reps, Math.floor(args.budget / Math.max(warm * inner, 1e-6))));
    const samples: number[] = [];
    for (let r = 0; r < n; r++) {
      const t0 = performance.now();
      for (let i = 0; i < inner; i++) fn();
      await rt.sync();
      samples.push((performance.now() - t0) / 1000 / inner);
    }
    return median(samples);
  };

  console.log(`adapter: ${rt.info.description || rt.info.vendor} (${rt.info.adapterClass}); state ${S}, action ${A}; median of ${reps} after a warm-up`);
  const sampling: SamplingRow[] = [];
  const training: TrainingRow[] = [];

  if (args.only !== 'training') {
    const critic = new MLP([S + A, 256, 256, 1], { act: 'relu', rng: new HostRng(seed) });
    const states = keep(gen.normal([B, S]));
    const selectionStates = SB === B ? states : keep(gen.normal([SB, S]));
    const one = keep(gen.normal([1, S]));
    console.log('\n| sampler | NFE | batch | ms / call | us / action | actions / s |\n|---|---:|---|---:|---:|---:|');
    for (const c of SAMPLER_CASES) {
      const model: BehaviorModel = makeBehaviorModel(c.kind, S, A, { T: c.T, seed });
      model.net.eval();
      const sample = (cond: Tensor, n: number) => model.sample(cond, n, gen, { sampler: c.sampler, steps: c.steps, denoiseToZero: false });
      const variants: [string, number, number, () => void][] = [
        ['1', 1, 1, () => tidy(() => void sample(one, 1))],
        [String(B), B, B, () => tidy(() => void sample(states, 1))],
        [
          `${K} x ${SB} + critic`,
          K * SB,
          SB,
          () =>
            tidy(() =>
              noGrad(() => {
                const candidates = sample(selectionStates, K);
                const q = critic.forward(concat([repeatRows(selectionStates, K), candidates]));
                selectByCritic(candidates, q, K, gen);
              }),
            ),
        ],
      ];
      for (const [label, rows, actions, fn] of variants) {
        const s = await time(fn);
        const row: SamplingRow = { case: c.name, nfe: c.nfe, batch: label, rows, actions, ms: s * 1000, usPerAction: (s * 1e6) / actions, actionsPerSecond: actions / s };
        sampling.push(row);
        console.log(`| ${c.name} | ${c.nfe} | ${label} | ${row.ms.toFixed(2)} | ${row.usPerAction.toFixed(1)} | ${row.actionsPerSecond.toFixed(0)} |`);
      }
    }
    if (selectionStates !== states) selectionStates.dispose();
    states.dispose();
    one.dispose();
  }

  if (args.only !== 'sampling') {
    console.log('\n| model | parameters | batch | ms / step | samples / s |\n|---|---:|---:|---:|---:|');
    for (const c of TRAIN_CASES) {
      const model = makeBehaviorModel(c.kind, S, A, { T: c.T, seed });
      const net = model.net;
      const group = net.paramGroup();
      const opt = new AdamW(group, { lr: 3e-4 });
      for (const batch of [256, 2048]) {
        const x0 = keep(gen.uniform([batch, A], -1, 1));
        const s = keep(gen.normal([batch, S]));
        const step = () => {
          tidy(() => {
            group.zeroGrad();
            backward(model.loss(x0, s, gen));
            opt.step();
          });
          // one submit per step, as training loops do, so buffers and bind groups are reused
          rt.flush();
        };
        const sec = await time(step, args.quick ? 2 : 5);
        const row: TrainingRow = { model: c.label, batch, parameters: net.numParameters(), ms: sec * 1000, samplesPerSecond: batch / sec };
        training.push(row);
        console.log(`| ${c.label} | ${row.parameters} | ${batch} | ${row.ms.toFixed(2)} | ${row.samplesPerSecond.toFixed(0)} |`);
        x0.dispose();
        s.dispose();
      }
      opt.dispose();
    }
  }

  const info = rt.info;
  const tag = (info.adapterClass === 'software' ? 'software' : info.vendor || 'gpu').replace(/[^a-z0-9-]/gi, '_');
  mkdirSync(args.out, { recursive: true });
  const file = `${args.out}/diffusion-${tag}.json`;
  writeFileSync(
    file,
    `${JSON.stringify({ adapter: info.description, adapterClass: info.adapterClass, reps, budgetSeconds: args.budget, quick: args.quick ?? false, stateDim: S, actionDim: A, candidates: K, states: B, selectionStates: SB, date: new Date().toISOString(), sampling, training }, null, 2)}\n`,
  );
  console.log(`\nwrote ${file}`);
  disposeEngine();
}

await runMain('bench/diffusion', main);

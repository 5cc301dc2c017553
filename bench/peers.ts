// The engine against real peers, side by side in one run on one machine: the training steps of the SRPO
// phases at D4RL Hopper sizes (IQL critic, SRPO behaviour at batch 2048 and 256, SRPO actor), one training
// iteration of DTQL, EDP (TD3) and Diffusion-QL (T = 5) at their hopper-medium-v2 settings, and a 1024^3
// matmul, each written the same way in TensorFlow.js (WebGPU on the engine's adapter; wasm with XNNPACK) and
// PyTorch (eager, CPU or CUDA). The engine side calls the project's own step functions (bench/common.ts,
// algorithms/dtql.ts, edp.ts, dql.ts);
// it runs eagerly and, where engine/record.ts exists, as a recorded step replayed. A peer that cannot load is
// reported as skipped with the reason. Prints a table and writes the numbers as JSON.
import { execFile } from 'node:child_process';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { cpus, hostname, loadavg } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { init, type Runtime } from '../engine/runtime.ts';
import { Generator } from '../engine/random.ts';
import { tensor, tidy, type Tensor } from '../engine/tensor.ts';
import { noGrad } from '../engine/autograd.ts';
import { LayerNorm, Linear, type Module } from '../engine/nn.ts';
import { matmul } from '../engine/ops/matmul.ts';
import { CliError, parseCli, runMain, type CliSpec } from '../algorithms/common/cli.ts';
import { HOPPER_SIZE_OPTIONS, srpoBench, srpoSteps } from './common.ts';
import { exposeNavigatorGpu, loadTfjs, tfjsCase, tfjsForwards, type PeerCaseName, type TfjsBackend } from './peers_tfjs.ts';
import { CHECK_ROWS, checkBeta, checkBias, checkGamma, checkInputs, checkWeight, peerTables, type PeerTables } from './peers_plan.ts';
import * as dtql from '../algorithms/dtql.ts';
import * as edp from '../algorithms/edp.ts';
import * as dql from '../algorithms/dql.ts';
import { formatProfile, profileStep, type StepProfile } from './step-profile.ts';

interface CaseSpec {
  name: PeerCaseName;
  title: string;
  batch: number;
  /** Timed steps (full run, --quick) and untimed warm-up steps. */
  steps: { full: number; quick: number };
  warmup: number;
  /** Floating-point operations per step, where a rate is meaningful. */
  flops?: number;
  /** What the step holds and where the implementations differ, printed under the table. */
  note?: string;
}

const CASES: readonly CaseSpec[] = [
  { name: 'iql-critic', title: 'IQL critic step', batch: 256, steps: { full: 30, quick: 6 }, warmup: 2 },
  { name: 'srpo-behavior-2048', title: 'SRPO behaviour step', batch: 2048, steps: { full: 5, quick: 1 }, warmup: 1 },
  { name: 'srpo-behavior-256', title: 'SRPO behaviour step', batch: 256, steps: { full: 15, quick: 3 }, warmup: 1 },
  { name: 'srpo-actor', title: 'SRPO actor step', batch: 256, steps: { full: 30, quick: 6 }, warmup: 2 },
  {
    name: 'dtql-step', title: 'DTQL step', batch: 256, steps: { full: 10, quick: 2 }, warmup: 1,
    note:
      'algorithms/dtql.ts trainStep: IQL critic (twin Q 3 x (256, LayerNorm, Mish), V 3 x (256, Mish), V to the online ' +
      'min Q, one gradient of vLoss + qLoss, Adam 3e-4 each, Polyak 0.005), EDM behaviour step (denoiser 4 x 256 Mish, ' +
      'Adam 1e-4), one-step Gaussian-tanh actor (3 x 256 ReLU) on 5 L_TR - mean min Q with the behaviour net and Q ' +
      'frozen (Adam 1e-4). tfjs: the min Q that V regresses to is held constant by a zero-gradient identity (customGrad).',
  },
  {
    name: 'edp-step', title: 'EDP (TD3) step', batch: 256, steps: { full: 10, quick: 2 }, warmup: 1,
    note:
      'algorithms/edp.ts trainStep, TD3 backbone, T = 100: critic targets from the target policy by DPM-Solver++ (15 ' +
      'network calls, singlestep order 3), twin Q 3 x (256, Mish) step, Polyak; policy on L_diff + 2 (-Q_j(s, a0Hat) / ' +
      '|Q_j|) through one noise-net call (3 x 256 Mish); Adam 3e-4, gradient norm clipped to 9 (both). The target ' +
      "policy's update (every 5th step) is not in the timed step on any side. Peers draw the Q head on the host, the " +
      'engine on the GPU.',
  },
  {
    name: 'dql-step', title: 'Diffusion-QL step T 5', batch: 256, steps: { full: 10, quick: 2 }, warmup: 1,
    note:
      'algorithms/dql.ts trainStep, T = 5: critic targets from the EMA policy\'s 5-step DDPM chain, twin Q step, ' +
      'Polyak; policy on L_bc + Q term through the whole 5-step chain with gradient; Adam 3e-4, gradient norm clipped ' +
      "to 9. The EMA update (every 5th step) is not in the timed step on any side. Peers draw the Q head on the host.",
  },
  { name: 'matmul-1024', title: 'matmul 1024^3', batch: 1024, steps: { full: 10, quick: 3 }, warmup: 1, flops: 2 * 1024 ** 3 },
];

/** The diffusion-policy steps, whose losses --check compares across the implementations. */
const DIFFUSION_CASES: readonly PeerCaseName[] = ['dtql-step', 'edp-step', 'dql-step'];

const PEERS = ['tfjs-webgpu', 'tfjs-wasm', 'torch'] as const;

const OPTIONS = {
  quick: { type: 'boolean', description: 'fewer timed steps (a few minutes on a software adapter)' },
  check: {
    type: 'boolean',
    description:
      'no timing: for each diffusion-policy case (dtql-step, edp-step, dql-step, or those in --only), its networks on ' +
      'formula weights and inputs in every implementation, compared with the engine to float32 tolerance, and the ' +
      'losses of one step from a fresh initialisation side by side (magnitudes); exit code 1 on a failure',
  },
  steps: { type: 'integer', positive: true, placeholder: 'n', description: 'timed steps of every case (default: per case, fewer with --quick)' },
  only: { type: 'string', placeholder: 'case,...', description: `cases to run: ${CASES.map((c) => c.name).join(', ')} (default: all)` },
  peers: { type: 'string', default: PEERS.join(','), placeholder: 'list', description: `peers to run beside the engine, or 'none'` },
  python: { type: 'string', placeholder: 'exe', description: "interpreter with torch for the PyTorch peer (default: the first of python3 and the system's /usr/bin/python3 that imports torch)" },
  'torch-threads': { type: 'integer', nonNegative: true, default: 0, description: 'CPU threads for PyTorch (0: all cores)' },
  profile: {
    type: 'boolean',
    description:
      "after each case's replayed timing, profile its recorded step: GPU time per kernel family from timestamp queries " +
      'around every dispatch (median of 5 steps, 2 with --quick), printed under the table and kept in the JSON',
  },
  ...HOPPER_SIZE_OPTIONS,
} as const;

const CLI: CliSpec<typeof OPTIONS> = {
  usage: 'node bench/peers.ts [--quick] [--steps N] [--only case,...] [--peers list] [--profile] [--out DIR]',
  description:
    'Times the same training steps in this engine and in its peers, one after another in one process on one machine: ' +
    'the IQL critic step ([256, 256] ReLU twin Q and V, batch 256: V expectile step, Q step, Polyak target), the SRPO ' +
    'behaviour step (ScoreNet_IDQL, VP-SDE eps loss, AdamW; batch 2048 and 256), the SRPO actor step (actor MLP, ' +
    'frozen behaviour eps at a noised action, target twin-Q action gradient, surrogate loss, Adam; batch 256), one ' +
    'training iteration of DTQL (IQL critic, EDM behaviour model, one-step actor), EDP-TD3 (critic on DPM-Solver ' +
    'targets, policy through the action approximation, T = 100) and Diffusion-QL (critic on EMA-chain targets, ' +
    'policy through the 5-step chain) at their hopper-medium-v2 settings, batch 256, and a ' +
    '1024^3 matmul. Every minibatch is drawn from 100k random transitions held by the backend. Each case runs ' +
    'untimed warm-up steps, then the timed steps with one sync at the end.\n\n' +
    'Engine rows give ms/step, dispatches and submits per step (runtime stats) and host ms/step (the JS thread\'s CPU time to ' +
    'encode and submit, without waiting for the GPU), eagerly and, when engine/record.ts exists, replayed from a ' +
    'recorded step. Peers: tfjs-webgpu (TensorFlow.js WebGPU backend on the same adapter), tfjs-wasm ' +
    '(TensorFlow.js wasm backend, XNNPACK), torch (python3 bench/peers_torch.py: PyTorch eager, CUDA when ' +
    'available). Every row gives ms/step and the process CPU ms/step (all threads), each also as a ratio to the ' +
    'engine\'s eager step. Peers that cannot load ' +
    'are reported as skipped. --check checks the peers of the diffusion-policy steps against the engine instead of ' +
    'timing.',
  options: OPTIONS,
  examples: [
    'node bench/peers.ts --quick',
    'node bench/peers.ts --only iql-critic,matmul-1024 --peers torch --steps 20',
    'node bench/peers.ts --quick --only dtql-step,edp-step,dql-step',
    'node bench/peers.ts --check',
    'node bench/peers.ts --only iql-critic,edp-step --peers none --profile',
  ],
};

/** One measured (or skipped) row. */
interface Row {
  backend: string;
  mode?: 'eager' | 'replay';
  msPerStep?: number;
  /** msPerStep / the engine's eager msPerStep. */
  ratioToEngine?: number;
  /** cpuMsPerStep / the engine's eager cpuMsPerStep. */
  cpuRatioToEngine?: number;
  gflops?: number;
  dispatchesPerStep?: number;
  submitsPerStep?: number;
  bindGroupsPerStep?: number;
  /** CPU time of the JS thread per step spent encoding and submitting it (engine rows). */
  hostMsPerStep?: number;
  /**
   * CPU time of the process (all its threads: with a software adapter the GPU work too) per step, from
   * start to sync. Less sensitive than wall time to other work on a shared machine.
   */
  cpuMsPerStep?: number;
  steps?: number;
  skipped?: string;
  /** --profile: where a replayed step's GPU time goes. */
  profile?: StepProfile | string;
}

interface CaseResult {
  spec: CaseSpec;
  rows: Row[];
}

/** CPU ms of this process (user + system, all threads) since `from`. */
function cpuMs(from: NodeJS.CpuUsage): number {
  const d = process.cpuUsage(from);
  return (d.user + d.system) / 1000;
}

/** CPU ms of the JS thread so far, or wall ms where Node cannot tell. */
function threadMs(): number {
  if (typeof process.threadCpuUsage !== 'function') return performance.now();
  const u = process.threadCpuUsage();
  return (u.user + u.system) / 1000;
}

function message(err: unknown): string {
  return err instanceof Error ? err.message.split('\n')[0]! : String(err);
}

// ---------------------------------------------------------------------------------------------------------
// Engine

/** engine/record.ts's recordStep (typed here, loaded at run time: the file may not exist in this checkout). */
interface RecordedStep {
  replay(): void;
  readonly dispatchCount: number;
  readonly canProfile: boolean;
  profile(steps?: number): Promise<{ kernel: string; ms: number }[]>;
  dispose(): void;
}
type RecordStep = (fn: () => unknown) => RecordedStep;

async function loadRecorder(): Promise<RecordStep | string> {
  const url = new URL('../engine/record.ts', import.meta.url);
  if (!existsSync(fileURLToPath(url))) return 'engine/record.ts is not in this checkout';
  try {
    const mod = (await import(url.href)) as { recordStep?: RecordStep };
    return typeof mod.recordStep === 'function' ? mod.recordStep : 'engine/record.ts exports no recordStep';
  } catch (err) {
    return `engine/record.ts failed to load: ${message(err)}`;
  }
}

interface EngineCases {
  /** One training step of a case, creating its tensors (so: inside tidy, or recorded); returns its outputs. */
  step(name: PeerCaseName): () => unknown;
  dispose(): void;
}

function engineCases(obsDim: number, actDim: number): EngineCases {
  const bench = srpoBench(obsDim, actDim);
  const steps = srpoSteps(bench);
  const gen = new Generator(7);
  let mm: [Tensor, Tensor] | null = null;
  // the diffusion-policy models at hopper-medium-v2 settings, made when first timed
  const task = 'hopper-medium-v2';
  let dtqlModels: dtql.DtqlModels | null = null;
  let edpModels: edp.EdpModels | null = null;
  let dqlModels: dql.DqlModels | null = null;
  const sample = (batch: number) => bench.store.sample(batch, bench.gen);
  return {
    step(name) {
      switch (name) {
        case 'iql-critic':
          return () => steps.critic();
        case 'srpo-behavior-2048':
          return () => steps.behavior(2048);
        case 'srpo-behavior-256':
          return () => steps.behavior(256);
        case 'srpo-actor':
          return () => steps.actor();
        case 'dtql-step': {
          const m = (dtqlModels ??= dtql.makeModels(obsDim, actDim, dtql.taskConfig(task)));
          return () => {
            const l = dtql.trainStep(m, sample(m.cfg.batch), bench.gen);
            return { qLoss: l['qLoss'] as Tensor, vLoss: l['vLoss'] as Tensor, bcLoss: l['bcLoss'] as Tensor, actorLoss: l['actorLoss'] as Tensor };
          };
        }
        case 'edp-step': {
          const m = (edpModels ??= edp.makeModels(obsDim, actDim, edp.taskConfig(task, 'td3')));
          // step variant 0: no target-policy update (it runs every 5th step)
          return () => {
            const l = m.step(sample(m.cfg.batch), bench.gen, 0);
            return { qLoss: l['qLoss'] as Tensor, actorLoss: l['actorLoss'] as Tensor, terms: (l['terms'] as [Tensor, string[]])[0] };
          };
        }
        case 'dql-step': {
          const m = (dqlModels ??= dql.makeModels(obsDim, actDim, dql.taskConfig(task)));
          return () => {
            const l = m.step(sample(m.cfg.batch), bench.gen, 0);
            return { qLoss: l['qLoss'] as Tensor, actorLoss: l['actorLoss'] as Tensor, terms: (l['terms'] as [Tensor, string[]])[0] };
          };
        }
        case 'matmul-1024': {
          const [a, b] = (mm ??= [gen.normal([1024, 1024]), gen.normal([1024, 1024])]);
          return () => ({ out: matmul(a, b) });
        }
      }
    },
    dispose() {
      mm?.forEach((t) => t.dispose());
      if (dtqlModels) dtql.disposeModels(dtqlModels);
      edpModels?.dispose();
      dqlModels?.dispose();
      bench.dispose();
    },
  };
}

/**
 * Times `once` (one step, encoded and submitted). Host time is the CPU time of the JS thread inside it (wall
 * time where Node lacks process.threadCpuUsage): the cost of encoding and submitting, without the GPU's work
 * and without time the thread spent descheduled on a busy machine.
 */
async function timeEngine(rt: Runtime, once: () => void, warmup: number, steps: number): Promise<Omit<Row, 'backend'>> {
  for (let i = 0; i < warmup; i++) once();
  await rt.sync();
  const before = { ...rt.stats };
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  // the loop does nothing but encode and submit steps, so two readings around it give the host time with the
  // counter's granularity (about 1 ms) paid once rather than per step
  const h0 = threadMs();
  for (let i = 0; i < steps; i++) once();
  const host = threadMs() - h0;
  await rt.sync();
  const ms = (performance.now() - t0) / steps;
  const per = (k: keyof Runtime['stats']) => (rt.stats[k] - before[k]) / steps;
  return {
    msPerStep: ms, cpuMsPerStep: cpuMs(cpu0) / steps, hostMsPerStep: host / steps,
    dispatchesPerStep: per('dispatches'), submitsPerStep: per('submits'), bindGroupsPerStep: per('bindGroupsCreated'), steps,
  };
}

async function runEngine(rt: Runtime, cases: EngineCases, spec: CaseSpec, steps: number, recorder: RecordStep | string, profileSteps: number): Promise<Row[]> {
  const fn = cases.step(spec.name);
  const rows: Row[] = [];
  try {
    rows.push({ backend: 'engine', mode: 'eager', ...(await timeEngine(rt, () => (tidy(() => void fn()), rt.flush()), spec.warmup, steps)) });
  } catch (err) {
    rows.push({ backend: 'engine', mode: 'eager', skipped: `failed: ${message(err)}` });
  }
  if (typeof recorder === 'string') {
    rows.push({ backend: 'engine', mode: 'replay', skipped: recorder });
    return rows;
  }
  let rec: RecordedStep | null = null;
  try {
    rec = recorder(fn);
    const r = rec;
    const t = await timeEngine(rt, () => r.replay(), spec.warmup, steps);
    // replays encode recorded dispatches directly, so the runtime's counter may not see them
    const row: Row = { backend: 'engine', mode: 'replay', ...t, dispatchesPerStep: r.dispatchCount };
    if (profileSteps > 0) {
      try {
        row.profile = (await profileStep(r, profileSteps)) ?? "the device lacks 'timestamp-query'";
      } catch (err) {
        row.profile = `failed: ${message(err)}`;
      }
    }
    rows.push(row);
  } catch (err) {
    rows.push({ backend: 'engine', mode: 'replay', skipped: `failed: ${message(err)}` });
  } finally {
    rec?.dispose();
  }
  return rows;
}

// ---------------------------------------------------------------------------------------------------------
// Peers

/** One peer, loaded once and run case by case (so each case's rows are measured close together in time). */
interface PeerRunner {
  label: string;
  /** Versions and settings for the report, or why the peer is skipped. */
  info: Record<string, unknown>;
  run(spec: CaseSpec, steps: number): Promise<Row>;
  /** --check of a diffusion-policy case (see CheckResult), or why there is none. */
  check(name: PeerCaseName): Promise<CheckResult | string>;
}

/**
 * --check of one implementation: its networks on the formula weights and inputs of bench/peers_plan.ts (each
 * output flattened), and the losses of one training step from a fresh initialisation.
 */
interface CheckResult {
  forwards: Record<string, number[]>;
  losses: Record<string, number>;
}

/** Problem sizes and the diffusion constants every implementation shares. */
interface Sizes {
  obsDim: number;
  actDim: number;
  tables: PeerTables;
}

async function tfjsRunner(backend: TfjsBackend, sizes: Sizes): Promise<PeerRunner> {
  const label = `tfjs-${backend}`;
  const loaded = await loadTfjs(backend);
  if ('skipped' in loaded) {
    return { label, info: { skipped: loaded.skipped }, run: async () => ({ backend: label, skipped: loaded.skipped }), check: async () => `skipped: ${loaded.skipped}` };
  }
  const { tf } = loaded;
  return {
    label,
    info: { version: loaded.version, detail: loaded.detail },
    async check(name) {
      let c: ReturnType<typeof tfjsCase> | null = null;
      try {
        await tf.setBackend(backend);
        const forwards = await tfjsForwards(tf, name, sizes.obsDim, sizes.actDim);
        c = tfjsCase(tf, name, { ...sizes, transitions: 100_000 });
        return c.check ? { forwards, losses: await c.check() } : 'no check for this case';
      } catch (err) {
        return `failed: ${message(err)}`;
      } finally {
        c?.dispose();
      }
    },
    async run(spec, steps) {
      let c: ReturnType<typeof tfjsCase> | null = null;
      try {
        await tf.setBackend(backend);
        c = tfjsCase(tf, spec.name, { ...sizes, transitions: 100_000 });
        for (let i = 0; i < spec.warmup; i++) c.step();
        await c.sync();
        const cpu0 = process.cpuUsage();
        const t0 = performance.now();
        for (let i = 0; i < steps; i++) c.step();
        await c.sync();
        return { backend: label, msPerStep: (performance.now() - t0) / steps, cpuMsPerStep: cpuMs(cpu0) / steps, steps };
      } catch (err) {
        return { backend: label, skipped: `failed: ${message(err)}` };
      } finally {
        c?.dispose();
      }
    },
  };
}

function execJson(cmd: string, args: string[], timeoutMs: number, env?: NodeJS.ProcessEnv): Promise<{ json: Record<string, unknown> | null; error: string | null }> {
  return new Promise((resolve) => {
    const child = execFile(cmd, args, { timeout: timeoutMs, maxBuffer: 16 << 20, env: env ?? process.env }, (err, stdout) => {
      const line = stdout.trim().split('\n').pop() ?? '';
      let json: Record<string, unknown> | null = null;
      try {
        json = line ? (JSON.parse(line) as Record<string, unknown>) : null;
      } catch {
        json = null;
      }
      if (json) resolve({ json, error: null });
      else resolve({ json: null, error: err ? (err.killed ? `timed out after ${timeoutMs / 1000} s` : message(err)) : 'no JSON on stdout' });
    });
    // the peer's progress lines go straight through
    child.stderr?.on('data', (d: Buffer) => process.stderr.write(d));
  });
}

/** Debian's OpenBLAS (libopenblas0-pthread): its libblas.so.3, for the PyTorch child alone. */
const OPENBLAS_DIRS = ['/usr/lib/x86_64-linux-gnu/openblas-pthread', '/usr/lib/aarch64-linux-gnu/openblas-pthread'];

/**
 * How a user who cares about speed runs PyTorch on a CPU: an optimised BLAS loaded for its process (the system's
 * BLAS alternatives stay as they are), one BLAS thread under torch's own intra-op threads (one per core), OpenMP
 * threads that sleep when idle. Without OpenBLAS the child runs on whatever BLAS the system has, and says so.
 */
function tunedTorchEnv(): { env: NodeJS.ProcessEnv; openblas: string | null } {
  const dir = OPENBLAS_DIRS.find((d) => existsSync(join(d, 'libblas.so.3'))) ?? null;
  const env: NodeJS.ProcessEnv = { ...process.env, OPENBLAS_NUM_THREADS: '1', OMP_WAIT_POLICY: 'PASSIVE' };
  if (dir) env['LD_LIBRARY_PATH'] = [dir, process.env['LD_LIBRARY_PATH']].filter(Boolean).join(':');
  return { env, openblas: dir };
}

/** True when the BLAS a peer reported is an optimised one (OpenBLAS, MKL, BLIS, Accelerate). */
export function optimisedBlas(blas: unknown): boolean {
  return typeof blas === 'string' && /openblas|mkl|blis|accelerate|veclib/i.test(blas);
}

/**
 * PyTorch through bench/peers_torch.py, one process per case (its start-up and torch import are not timed). The
 * interpreter is the first candidate that imports torch: --python, else python3 on PATH, then the system's
 * python3, where distributions install python3-torch, for when a pyenv or virtualenv python3 shadows it.
 */
async function torchRunner(sizes: Sizes, python: string | undefined, threads: number): Promise<PeerRunner> {
  const script = fileURLToPath(new URL('./peers_torch.py', import.meta.url));
  const common = ['--obs', String(sizes.obsDim), '--act', String(sizes.actDim), '--threads', String(threads), '--tables', JSON.stringify(sizes.tables)];
  const runner: PeerRunner = { label: 'torch', info: {}, run: async () => ({ backend: 'torch', skipped: 'not started' }), check: async () => 'not started' };
  const reasons: string[] = [];
  const { env, openblas } = tunedTorchEnv();
  for (const exe of python ? [python] : ['python3', '/usr/bin/python3']) {
    // a zero-step matmul checks the interpreter and reports the versions and the BLAS it runs on
    const { json, error } = await execJson(exe, [script, '--cases', 'matmul-1024', '--steps', '0', '--warmup', '0', ...common], 120_000, env);
    if (!json || typeof json.error === 'string') {
      reasons.push(`${exe}: ${error ?? String(json?.error)}`);
      continue;
    }
    const { results: _, ...info } = json;
    const cuda = String(json.device ?? 'cpu').startsWith('cuda');
    const tuned = cuda || optimisedBlas(json.blas);
    const label = `torch ${String(json.device ?? 'cpu').split(' ')[0]}${tuned ? '' : ' (ref BLAS)'}`;
    if (!tuned) {
      progress(`torch runs on an unoptimised BLAS (${String(json.blas)})${openblas ? '' : ": install Debian's libopenblas0-pthread for a fair peer"}; its ratios are marked`);
    }
    return {
      label,
      info: { ...info, python: exe, env: { OPENBLAS_NUM_THREADS: env['OPENBLAS_NUM_THREADS'], OMP_WAIT_POLICY: env['OMP_WAIT_POLICY'], LD_LIBRARY_PATH: openblas }, tunedBlas: tuned },
      async run(spec, steps) {
        const plan = JSON.stringify({ [spec.name]: [spec.warmup, steps] });
        const out = await execJson(exe, [script, '--cases', spec.name, '--plan', plan, ...common], 20 * 60_000, env);
        const r = (out.json?.results as Record<string, { msPerStep?: number; cpuMsPerStep?: number; steps?: number; error?: string }> | undefined)?.[spec.name];
        if (r?.msPerStep !== undefined) return { backend: label, msPerStep: r.msPerStep, cpuMsPerStep: r.cpuMsPerStep, steps: r.steps };
        return { backend: label, skipped: `failed: ${r?.error ?? out.error ?? String(out.json?.error ?? 'no result')}` };
      },
      async check(name) {
        const out = await execJson(exe, [script, '--cases', name, '--check', ...common], 10 * 60_000, env);
        const r = (out.json?.results as Record<string, Partial<CheckResult> & { error?: string }> | undefined)?.[name];
        if (r?.losses && r.forwards) return { losses: r.losses, forwards: r.forwards };
        return `failed: ${r?.error ?? out.error ?? String(out.json?.error ?? 'no result')}`;
      },
    };
  }
  const reason = reasons.join('; ');
  return { ...runner, info: { skipped: reason }, run: async () => ({ backend: 'torch', skipped: reason }), check: async () => `skipped: ${reason}` };
}

// ---------------------------------------------------------------------------------------------------------
// Output

function progress(what: string): void {
  process.stderr.write(`[peers] ${what}\n`);
}

const ratio = (v: number | undefined) => (v === undefined ? '' : v.toFixed(2));
const fmt = (v: number | undefined, digits = 1) => (v === undefined ? '' : v >= 1000 ? v.toFixed(0) : v.toFixed(digits));

/** One line of what a peer ran on: versions, device, BLAS, threads and the environment it was given. */
function describePeer(info: Record<string, unknown>): string {
  if (typeof info['skipped'] === 'string') return `skipped (${info['skipped']})`;
  const parts = Object.entries(info)
    .filter(([k]) => k !== 'results')
    .map(([k, v]) => `${k} ${typeof v === 'object' ? JSON.stringify(v) : String(v)}`);
  return parts.join(', ');
}

function printTable(results: CaseResult[]): void {
  const head = `${'case'.padEnd(30)} ${'backend'.padEnd(16)} ${'ms/step'.padStart(9)} ${'x engine'.padStart(8)} ${'cpu ms'.padStart(9)} ${'x eng cpu'.padStart(9)} ${'disp/step'.padStart(9)} ${'host ms'.padStart(8)}  note`;
  console.log(head);
  console.log('-'.repeat(head.length + 10));
  for (const { spec, rows } of results) {
    let first = true;
    for (const r of rows) {
      const name = first ? `${spec.title} (${spec.name === 'matmul-1024' ? 'f32' : `B ${spec.batch}`})` : '';
      first = false;
      const backend = r.mode ? `${r.backend} ${r.mode}` : r.backend;
      const untuned = r.backend.endsWith('(ref BLAS)') && !r.skipped ? 'unoptimised BLAS: not the peer a user would run; ' : '';
      const note = untuned + (r.skipped ? `skipped: ${r.skipped}` : r.gflops !== undefined ? `${r.gflops.toFixed(1)} GFLOP/s` : '');
      console.log(
        `${name.padEnd(30)} ${backend.padEnd(16)} ${fmt(r.msPerStep, 2).padStart(9)} ${ratio(r.ratioToEngine).padStart(8)} ${fmt(r.cpuMsPerStep, 1).padStart(9)} ${ratio(r.cpuRatioToEngine).padStart(9)} ` +
          `${fmt(r.dispatchesPerStep, 0).padStart(9)} ${fmt(r.hostMsPerStep, 2).padStart(8)}  ${note}`,
      );
    }
  }
}

function printProfiles(results: CaseResult[]): void {
  console.log('\nprofile of the replayed steps (a compute pass per dispatch; families slowest first):');
  for (const { spec, rows } of results) {
    const r = rows.find((x) => x.backend === 'engine' && x.mode === 'replay');
    const title = `${spec.title} (${spec.name})`;
    if (!r?.profile) console.log(`${title}: no replayed step`);
    else if (typeof r.profile === 'string') console.log(`${title}: not profiled: ${r.profile}`);
    else console.log(formatProfile(title, r.profile, r.msPerStep, r.hostMsPerStep));
  }
}

// ---------------------------------------------------------------------------------------------------------

/** Sets every Linear and LayerNorm under m to the formula weights of bench/peers_plan.ts. */
function formulaWeights(m: Module): void {
  for (const [, child] of m.namedChildren()) formulaWeights(child);
  if (m instanceof Linear) {
    const [o, n] = m.weight.shape as [number, number];
    m.weight.set(Float32Array.from({ length: o * n }, (_, k) => checkWeight(o, n, Math.floor(k / n), k % n)));
    m.bias?.set(Float32Array.from({ length: o }, (_, j) => checkBias(o, j)));
  } else if (m instanceof LayerNorm) {
    m.weight?.set(Float32Array.from({ length: m.dim }, (_, j) => checkGamma(j)));
    m.bias?.set(Float32Array.from({ length: m.dim }, (_, j) => checkBeta(j)));
  }
}

/** The engine's networks of a diffusion-policy step (from the module's own makeModels) on the formula weights and inputs. */
async function engineForwards(name: PeerCaseName, obsDim: number, actDim: number): Promise<Record<string, number[]>> {
  const task = 'hopper-medium-v2';
  const kind = name === 'dtql-step' ? 'dtql' : name === 'edp-step' ? 'edp' : 'dql';
  const inp = checkInputs(obsDim, actDim, kind);
  const s = tensor(Float32Array.from(inp.s), [CHECK_ROWS, obsDim]);
  const a = tensor(Float32Array.from(inp.a), [CHECK_ROWS, actDim]);
  const t = tensor(Float32Array.from(inp.t), [CHECK_ROWS]);
  let outs: Record<string, Tensor>;
  let dispose: () => void;
  if (kind === 'dtql') {
    const m = dtql.makeModels(obsDim, actDim, dtql.taskConfig(task));
    const behavior = m.behavior.net as unknown as Module & { forward(x: Tensor, t: Tensor, s: Tensor): Tensor };
    for (const mod of [m.critic.q, m.critic.v, behavior, m.actor]) formulaWeights(mod);
    outs = tidy(() =>
      noGrad(() => {
        const [q1, q2] = m.critic.q.forward(s, a);
        return { q1, q2, v: m.critic.v.forward(s), denoiser: behavior.forward(a, t, s), actor: m.actor.net.forward(s) };
      }),
    );
    dispose = () => dtql.disposeModels(m);
  } else {
    const m = kind === 'edp' ? edp.makeModels(obsDim, actDim, edp.taskConfig(task, 'td3')) : dql.makeModels(obsDim, actDim, dql.taskConfig(task));
    const net = m.actor.model.net as unknown as Module & { forward(x: Tensor, t: Tensor, s: Tensor): Tensor };
    formulaWeights(net);
    formulaWeights(m.critic.qTarget);
    outs = tidy(() =>
      noGrad((): Record<string, Tensor> => {
        const eps = net.forward(a, t, s);
        if (kind === 'dql') return { eps };
        const [q1, q2] = m.critic.qTarget.forward(s, a);
        return { eps, q1, q2 };
      }),
    );
    dispose = () => m.dispose();
  }
  const result: Record<string, number[]> = {};
  for (const [k, x] of Object.entries(outs)) result[k] = Array.from(await x.read());
  for (const x of [s, a, t, ...Object.values(outs)]) x.dispose();
  dispose();
  return result;
}

/** Largest |x - ref| over the largest |ref|: the forward check's error measure. */
function relError(x: number[], ref: number[]): number {
  if (x.length !== ref.length) return Infinity;
  let err = 0;
  let scale = 0;
  ref.forEach((r, i) => {
    err = Math.max(err, Math.abs(x[i]! - r));
    scale = Math.max(scale, Math.abs(r));
  });
  return err / Math.max(scale, 1e-12);
}

/** Forward outputs must agree with the engine's to this relative error (float32 sums over 256 products). */
const FORWARD_TOLERANCE = 1e-4;

/**
 * --check, per diffusion-policy case and implementation:
 *   1. the step's networks on the formula weights and inputs of bench/peers_plan.ts (no weight transfer), each
 *      output compared with the engine's to float32 tolerance: the architectures are the same;
 *   2. one training step from a fresh initialisation, its losses beside the engine's. Initialisations and random
 *      draws (noise, diffusion times, sigmas, minibatches) differ between implementations, so these agree in
 *      magnitude only: a wrong term or scale shows as a ratio far from 1. The policy losses of EDP and
 *      Diffusion-QL hold -Q/|Q| terms whose sign at initialisation is arbitrary, so only their bound is checked.
 * Prints both and writes them as JSON.
 */
async function runCheck(rt: Runtime, cases: EngineCases, names: PeerCaseName[], runners: PeerRunner[], sizes: Sizes, outDir: string): Promise<boolean> {
  const report: Record<string, Record<string, CheckResult | string>> = {};
  for (const name of names) {
    progress(`${name}: engine (check)`);
    const per: Record<string, CheckResult | string> = {};
    try {
      const forwards = await engineForwards(name, sizes.obsDim, sizes.actDim);
      const fn = cases.step(name);
      const losses = tidy(() => fn()) as Record<string, Tensor>;
      const read: Record<string, ArrayLike<number>> = {};
      for (const [k, t] of Object.entries(losses)) read[k] = await t.read();
      Object.values(losses).forEach((t) => t.dispose());
      // the names the peers report: DTQL's critic loss is vLoss + qLoss (one gradient); the policy's diffusion
      // loss is the first of EDP's and Diffusion-QL's terms
      const values: Record<string, number> = {};
      if (read.vLoss) values.criticLoss = read.qLoss![0]! + read.vLoss[0]!;
      else values.qLoss = read.qLoss![0]!;
      if (read.bcLoss) values.bcLoss = read.bcLoss[0]!;
      values.actorLoss = read.actorLoss![0]!;
      if (read.terms) values.diffLoss = read.terms[0]!;
      per.engine = { forwards, losses: values };
    } catch (err) {
      per.engine = `failed: ${message(err)}`;
    }
    for (const r of runners) {
      progress(`${name}: ${r.label} (check)`);
      per[r.label] = await r.check(name);
    }
    report[name] = per;
  }
  cases.dispose();
  await rt.sync();
  // the policy loss minus its diffusion term is alpha (-Q_j / |Q_k|): within +-alpha (EDP 2, Diffusion-QL 1)
  const guideBound: Partial<Record<PeerCaseName, number>> = { 'edp-step': 2, 'dql-step': 1 };
  let failures = 0;
  console.log(`\n1. networks on formula weights and inputs: largest |x - engine| / largest |engine| per output (tolerance ${FORWARD_TOLERANCE})`);
  for (const [name, per] of Object.entries(report)) {
    const engine = typeof per.engine === 'object' ? per.engine : null;
    for (const [impl, v] of Object.entries(per)) {
      if (impl === 'engine') continue;
      if (typeof v === 'string' || !engine) {
        console.log(`  ${name.padEnd(10)} ${impl.padEnd(14)} ${typeof v === 'string' ? v : 'no engine result'}`);
        continue;
      }
      const cells = Object.entries(engine.forwards).map(([k, ref]) => {
        const e = v.forwards[k] ? relError(v.forwards[k]!, ref) : Infinity;
        if (!(e <= FORWARD_TOLERANCE)) failures++;
        return `${k} ${e.toExponential(1)}${e <= FORWARD_TOLERANCE ? '' : ' FAIL'}`;
      });
      console.log(`  ${name.padEnd(10)} ${impl.padEnd(14)} ${cells.join(', ')}`);
    }
  }
  console.log('\n2. first-step losses from fresh initialisations and independent random draws (ratio to the engine in brackets, 0.33-3 expected)');
  for (const [name, per] of Object.entries(report)) {
    const engine = typeof per.engine === 'object' ? per.engine.losses : null;
    console.log(`  ${name}`);
    for (const [impl, v] of Object.entries(per)) {
      if (typeof v === 'string') {
        console.log(`    ${impl.padEnd(14)} ${v}`);
        continue;
      }
      const cells = Object.entries(v.losses).map(([k, x]) => {
        const bound = guideBound[name as PeerCaseName];
        if (k === 'actorLoss' && bound !== undefined) {
          // actorLoss = diffusion loss + guide; only the guide's bound is meaningful at initialisation
          const diff = v.losses.diffLoss;
          const ok = diff === undefined || Math.abs(x - diff) <= bound + 1e-4;
          if (!ok) failures++;
          return `${k} ${x.toPrecision(4)}${diff === undefined ? '' : ` [guide ${(x - diff).toFixed(2)}${ok ? '' : ' FAIL'}]`}`;
        }
        const ref = engine?.[k];
        const q = impl !== 'engine' && ref !== undefined && ref !== 0 ? x / ref : null;
        const ok = q === null || (q >= 1 / 3 && q <= 3);
        if (!ok) failures++;
        return `${k} ${x.toPrecision(4)}${q === null ? '' : ` [${q.toFixed(2)}${ok ? '' : ' FAIL'}]`}`;
      });
      console.log(`    ${impl.padEnd(14)} ${cells.join(', ')}`);
    }
  }
  console.log(failures === 0 ? '\ncheck passed' : `\ncheck: ${failures} failure(s) (marked FAIL)`);
  mkdirSync(outDir, { recursive: true });
  const file = `${outDir}/peers-check.json`;
  writeFileSync(file, `${JSON.stringify({ date: new Date().toISOString(), adapter: rt.info.description, results: report }, null, 2)}\n`);
  console.log(`wrote ${file}`);
  return failures === 0;
}

function parseList<T extends string>(what: string, text: string, known: readonly T[]): T[] {
  const items = text.split(',').map((s) => s.trim()).filter((s) => s.length > 0);
  for (const i of items) if (!known.includes(i as T)) throw new CliError(`${what}: unknown '${i}'; known: ${known.join(', ')}`);
  return items as T[];
}

async function main(): Promise<void> {
  const args = parseCli(CLI);
  if (!args) return;
  const quick = args.quick === true;
  const specs = args.only ? parseList('--only', args.only, CASES.map((c) => c.name)).map((n) => CASES.find((c) => c.name === n)!) : [...CASES];
  if (specs.length === 0) throw new CliError('--only names no case');
  const peers = args.peers.trim() === 'none' ? [] : parseList('--peers', args.peers, PEERS);
  const stepsOf = (s: CaseSpec) => args.steps ?? (quick ? s.steps.quick : s.steps.full);
  const sizes: Sizes = { obsDim: args.obs, actDim: args.act, tables: peerTables() };
  const checkNames = (args.only ? specs.map((c) => c.name) : DIFFUSION_CASES).filter((n) => DIFFUSION_CASES.includes(n));
  if (args.check && checkNames.length === 0) throw new CliError(`--check covers ${DIFFUSION_CASES.join(', ')}; --only names none of them`);

  // tfjs's WebGPU backend needs navigator.gpu before it loads; the engine then takes the same GPU object
  if (peers.includes('tfjs-webgpu')) await exposeNavigatorGpu().catch(() => undefined);
  // Dawn rounds timestamps to 2^16 ns unless told otherwise: too coarse for dispatches of a few microseconds
  const rt = await init(args.profile ? { dawnFlags: ['disable-dawn-features=timestamp_quantization'] } : {});
  const adapter = `${rt.info.description || rt.info.vendor} (${rt.info.adapterClass})`;
  console.log(`host ${hostname()} (${cpus().length} CPUs), node ${process.version}, adapter ${adapter}; obs ${sizes.obsDim}, act ${sizes.actDim}${quick ? ', quick' : ''}`);

  const recorder = await loadRecorder();
  const load0 = loadavg()[0]!;
  const t0 = performance.now();
  const runners: PeerRunner[] = [];
  for (const peer of peers) {
    progress(`loading ${peer}`);
    runners.push(peer === 'torch' ? await torchRunner(sizes, args.python, args['torch-threads']) : await tfjsRunner(peer === 'tfjs-webgpu' ? 'webgpu' : 'wasm', sizes));
  }
  if (args.check) {
    const passed = await runCheck(rt, engineCases(sizes.obsDim, sizes.actDim), checkNames, runners, sizes, args.out);
    if (!passed) process.exitCode = 1;
    return;
  }
  // case by case, every backend in turn: the rows of a case are measured minutes apart at most, which matters
  // on a machine shared with other work
  const results: CaseResult[] = [];
  const cases = engineCases(sizes.obsDim, sizes.actDim);
  for (const spec of specs) {
    const steps = stepsOf(spec);
    progress(`${spec.name}: engine`);
    const rows = await runEngine(rt, cases, spec, steps, recorder, args.profile ? (quick ? 2 : 5) : 0);
    for (const p of runners) {
      progress(`${spec.name}: ${p.label}`);
      rows.push(await p.run(spec, steps));
    }
    results.push({ spec, rows });
  }
  cases.dispose();
  const peerInfo = Object.fromEntries(peers.map((p, i) => [p, runners[i]!.info]));

  for (const { spec, rows } of results) {
    const eager = rows.find((r) => r.backend === 'engine' && r.mode === 'eager');
    for (const r of rows) {
      if (r.msPerStep === undefined) continue;
      if (eager?.msPerStep !== undefined) r.ratioToEngine = r.msPerStep / eager.msPerStep;
      if (eager?.cpuMsPerStep !== undefined && r.cpuMsPerStep !== undefined) r.cpuRatioToEngine = r.cpuMsPerStep / eager.cpuMsPerStep;
      if (spec.flops) r.gflops = spec.flops / (r.msPerStep * 1e6);
    }
  }
  console.log('');
  for (const [peer, info] of Object.entries(peerInfo)) console.log(`${peer}: ${describePeer(info)}`);
  console.log('');
  printTable(results);
  console.log(
    "\nx engine: ms/step over the engine's eager ms/step (above 1: slower than the engine). cpu ms: the process's CPU time per step " +
      '(all threads; with a software adapter that includes the GPU work), and x eng cpu its ratio to the engine\'s: on a machine busy ' +
      'with other work it tracks the cost of a step better than wall time. host ms: CPU time of the JS thread per step to encode and submit.',
  );
  console.log(`load average (1 min) ${load0.toFixed(1)} at the start, ${loadavg()[0]!.toFixed(1)} at the end, on ${cpus().length} CPUs`);
  if (args.profile) printProfiles(results);
  const notes = results.filter((r) => r.spec.note);
  if (notes.length > 0) console.log(`\nwhat the diffusion-policy steps hold (every column the same):\n${notes.map((r) => `  ${r.spec.name}: ${r.spec.note}`).join('\n')}`);
  console.log(`total ${((performance.now() - t0) / 1000).toFixed(0)} s`);

  const tag = (rt.info.adapterClass === 'software' ? 'software' : rt.info.vendor || 'gpu').replace(/[^a-z0-9-]/gi, '_');
  mkdirSync(args.out, { recursive: true });
  const file = `${args.out}/peers-${tag}.json`;
  const report = {
    host: hostname(),
    cpus: cpus().length,
    loadAverage: { start: load0, end: loadavg()[0] },
    node: process.version,
    adapter: rt.info.description,
    adapterClass: rt.info.adapterClass,
    date: new Date().toISOString(),
    command: `node bench/peers.ts ${process.argv.slice(2).join(' ')}`.trim(),
    quick,
    obsDim: sizes.obsDim,
    actDim: sizes.actDim,
    replay: typeof recorder === 'string' ? { available: false, reason: recorder } : { available: true },
    peers: peerInfo,
    cases: results.map(({ spec, rows }) => ({ name: spec.name, title: spec.title, batch: spec.batch, warmup: spec.warmup, rows })),
    notes: Object.fromEntries(results.filter((r) => r.spec.note).map((r) => [r.spec.name, r.spec.note])),
  };
  writeFileSync(file, `${JSON.stringify(report, null, 2)}\n`);
  console.log(`wrote ${file}`);
}

await runMain('bench/peers', main);

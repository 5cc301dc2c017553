// Does a diffusion policy have to pay for its reverse chain? One run, one engine, the papers' networks at Hopper
// sizes (obs 11, act 3; noise net concat(s, a_k, t_emb) -> 3 x (256, Mish) -> act; twin Q 3 x 256 Mish):
//   1. the policy update at batch 256: Diffusion-QL's Q term backpropagated through the whole T-step reverse
//      chain (algorithms/dql.ts actorLoss) against EDP's action approximation (one noised action, one network
//      call, a0Hat to the critic: the TD3 backbone's policy term), on the same actor at each T;
//   2. a full training iteration (critic, policy, targets) of Diffusion-QL, EDP (TD3), DTQL and SRPO's actor
//      phase at their hopper-medium-v2 settings, through each module's own step function;
//   3. action selection at evaluation settings (candidates scored by the target critic, or SRPO's one actor
//      call) for 1 and 256 states, including the read-back of the actions.
// Training steps are timed eagerly and as recorded steps replayed (engine/record.ts). Prints tables and writes
// the numbers as JSON.
import { spawnSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { freemem, hostname, loadavg } from 'node:os';
import { backward, detach } from '../engine/autograd.ts';
import { add, scale } from '../engine/ops/elementwise.ts';
import { concat, slice } from '../engine/ops/shape.ts';
import { Generator } from '../engine/random.ts';
import { recordStep } from '../engine/record.ts';
import type { Runtime } from '../engine/runtime.ts';
import { keep, tensor, tidy, type Tensor } from '../engine/tensor.ts';
import type { ReplayBatch } from '../datasets/replay.ts';
import { CliError, parseCli, runMain, type CliSpec } from '../algorithms/common/cli.ts';
import { openDevice } from '../algorithms/common/command.ts';
import { randomHeadQLoss, selectAction } from '../algorithms/common/diffusion-policy.ts';
import type { TwinQCritic } from '../algorithms/common/twin-q-critic.ts';
import { frozen } from '../engine/nn.ts';
import { clippedStep } from '../engine/optim.ts';
import * as dql from '../algorithms/dql.ts';
import * as edp from '../algorithms/edp.ts';
import * as dtql from '../algorithms/dtql.ts';
import { HOPPER_SIZE_OPTIONS, randomStore, srpoBench, srpoSteps, timeItWithCpu } from './common.ts';

const OPTIONS = {
  quick: { type: 'boolean', description: 'T in {5, 20, 100} and fewer repetitions (about 5 minutes on a software adapter)' },
  T: { type: 'string', placeholder: 'list', description: 'chain lengths of part 1, comma-separated (default 5,20,100,1000; --quick 5,20,100)' },
  parts: { type: 'string', default: '1,2,3', placeholder: 'list', description: 'which parts to run: 1 policy update, 2 training iteration, 3 action selection' },
  'no-replay': { type: 'boolean', description: 'time eager steps only (no recorded steps)' },
  device: { type: 'string', default: 'auto', placeholder: 'auto|name', description: 'WebGPU adapter: auto, or part of an adapter name' },
  ...HOPPER_SIZE_OPTIONS,
} as const;

const CLI: CliSpec<typeof OPTIONS> = {
  usage: 'node bench/edp-vs-chain.ts [--quick] [--T 5,20,100,1000] [--parts 1,2,3] [--no-replay] [--out DIR]',
  description:
    "Measures whether diffusion policies must pay for the reverse chain. Part 1 times one policy update at batch 256 " +
    "with the Diffusion-QL / EDP noise network (3 x 256 Mish) and twin Q (3 x 256 Mish): Diffusion-QL's Q loss " +
    'backpropagated through the whole T-step chain against EDP\'s action approximation (one network call), on the ' +
    'same actor, for each T; the ratio chain / EDP stands next to the network evaluations saved. Part 2 times one ' +
    'full training iteration of Diffusion-QL (T = 5), EDP with the TD3 backbone (T = 100, DPM-Solver targets), ' +
    "DTQL and SRPO's actor phase at their hopper-medium-v2 settings. Part 3 times action selection at evaluation " +
    'settings (Diffusion-QL and EDP: 50 candidates; DTQL: its candidates; SRPO: the deterministic actor) for 1 and ' +
    '256 states, including the read-back. Training steps run eagerly and as recorded steps replayed. Random data; ' +
    'each case runs untimed warm-ups first. Writes <out>/edp-vs-chain-<adapter>.json.',
  options: OPTIONS,
};

interface Timing {
  /** Wall-clock ms per call, up to the GPU finishing. */
  ms: number | null;
  /** Process CPU ms per call (all threads: on a software adapter, the GPU work too). */
  cpuMs: number | null;
  reps: number;
  note?: string;
}

interface StepTiming {
  eager: Timing;
  replay: Timing;
  dispatches: number | null;
}

interface PolicyRow {
  T: number;
  chain: StepTiming;
  edp: StepTiming;
  /** Network calls per update: the chain's T (with gradient) plus Diffusion-QL's behaviour-cloning call; EDP's one. */
  chainNetworkEvals: number;
  edpNetworkEvals: number;
  /** chain / EDP, of wall time and of CPU time. */
  ratioEager: { wall: number | null; cpu: number | null };
  ratioReplay: { wall: number | null; cpu: number | null };
  /** Resident memory after the case (lavapipe's buffers live in the process). */
  rssMB: number;
}

interface IterationRow {
  method: string;
  settings: string;
  batch: number;
  timing: StepTiming;
}

interface SampleRow {
  method: string;
  settings: string;
  states: number;
  candidates: number;
  networkEvals: number;
  eager: Timing;
  replay: Timing;
  actionsPerSecond: number | null;
}

const mb = () => Math.round(process.memoryUsage().rss / 2 ** 20);
const fmt = (v: number | null, digits = 1) => (v === null ? '-' : v.toFixed(digits));
/** "wall/cpu" ms of a timing. */
const cell = (t: Timing, digits = 0) => (t.ms === null ? '-' : `${t.ms.toFixed(digits)}/${fmt(t.cpuMs, digits)}`);
const none = (note: string): Timing => ({ ms: null, cpuMs: null, reps: 0, note });
const ratio = (a: Timing, b: Timing) => ({
  wall: a.ms !== null && b.ms !== null ? a.ms / b.ms : null,
  cpu: a.cpuMs !== null && b.cpuMs !== null && b.cpuMs > 0 ? a.cpuMs / b.cpuMs : null,
});
const ratioCell = (r: { wall: number | null; cpu: number | null }) => (r.wall === null ? '-' : `${r.wall.toFixed(1)}x/${fmt(r.cpu)}x`);
const message = (e: unknown) => (e instanceof Error ? e.message : String(e));

/**
 * Times a training step eagerly, then records it and times its replays. The recorded loss is read after the
 * timed replays (no extra step), so a broken step shows up as a note on a non-finite value.
 */
async function timeStep(
  step: () => { loss: Tensor },
  reps: { eager: number; replay: number; warmup: number },
  replay: boolean,
  onEager?: (t: StepTiming) => void,
): Promise<StepTiming> {
  const eager = await timeItWithCpu(reps.eager, reps.warmup, () => tidy(() => void step()));
  const out: StepTiming = { eager: { ...eager, reps: reps.eager }, replay: none('not run (--no-replay)'), dispatches: null };
  onEager?.(out);
  if (!replay) return out;
  let rec;
  try {
    rec = recordStep(() => ({ loss: step().loss }));
  } catch (e) {
    out.replay = none(`not recordable: ${message(e)}`);
    return out;
  }
  try {
    out.dispatches = rec.dispatchCount;
    const t = await timeItWithCpu(reps.replay, Math.min(1, reps.warmup), () => rec.replay());
    const loss = (await rec.outputs.loss.read())[0]!;
    out.replay = { ...t, reps: reps.replay, ...(Number.isFinite(loss) ? {} : { note: `loss ${loss} after replays` }) };
  } finally {
    rec.dispose();
  }
  return out;
}

/** Diffusion-QL's policy update: L_bc + eta q_loss with the Q term through the whole reverse chain, Adam. */
function chainUpdate(m: dql.DqlModels, batch: ReplayBatch, gen: Generator): { loss: Tensor } {
  const { loss } = dql.actorLoss(m.actor, m.critic, m.cfg, batch, gen);
  m.actor.optimizer.group.zeroGrad();
  backward(loss);
  clippedStep(m.actor.optimizer, m.cfg.gradClip);
  return { loss: detach(loss) };
}

/**
 * EDP's policy update with the TD3 backbone on the same actor: one noised action and one network call give the
 * diffusion loss and a0Hat; alpha times the random head's normalised -Q at a0Hat (critic frozen); Adam. The
 * same composition as algorithms/edp.ts's td3Guide and policyStep, which that module does not export.
 */
function edpUpdate(m: dql.DqlModels, cfg: edp.EdpConfig, batch: ReplayBatch, gen: Generator): { loss: Tensor } {
  const { actor, critic } = m;
  const { loss: diff, a0Hat } = actor.diffusion.actionApproximation(batch.actions, batch.obs, gen);
  const guide = frozen([critic.q], () => {
    const [q1, q2] = critic.q.forward(batch.obs, a0Hat);
    return scale(randomHeadQLoss(q1, q2, gen, 'same'), cfg.alpha);
  });
  const loss = add(scale(diff, cfg.diffCoef), scale(guide, cfg.guideCoef));
  actor.optimizer.group.zeroGrad();
  backward(loss);
  clippedStep(actor.optimizer, cfg.gradClip);
  return { loss: detach(loss) };
}

// A chain of 1000 steps can take the whole process down on a software adapter (it crashed lavapipe/Dawn with a
// segmentation fault here), so long chains run in a child process of this script: the child times the chain
// step alone and prints its result on one marked line; a crash becomes a note in the table.
const CHILD_ENV = 'EDP_VS_CHAIN_CHILD_TAPE_BYTES_PER_STEP';
const CHILD_MARK = 'CHAIN-RESULT ';
const CHILD_EAGER_MARK = 'CHAIN-EAGER ';

function chainInChild(T: number, tapeBytesPerStep: number, argv: { device: string; quick: boolean; replay: boolean; obs: number; act: number }): StepTiming {
  const args = [fileURLToPath(import.meta.url), '--T', String(T), '--parts', '1', '--device', argv.device, '--obs', String(argv.obs), '--act', String(argv.act)];
  if (argv.quick) args.push('--quick');
  if (!argv.replay) args.push('--no-replay');
  const r = spawnSync(process.execPath, args, { env: { ...process.env, [CHILD_ENV]: String(tapeBytesPerStep) }, stdio: ['ignore', 'pipe', 'inherit'], encoding: 'utf8', maxBuffer: 1 << 24 });
  const lines = (r.stdout ?? '').split('\n');
  const line = lines.find((l) => l.startsWith(CHILD_MARK));
  if (line) return JSON.parse(line.slice(CHILD_MARK.length)) as StepTiming;
  const how = r.signal ? `signal ${r.signal}` : r.error ? r.error.message : `exit code ${r.status}`;
  const note = `the chain step crashed its process (${how}; run in a child process of this benchmark)`;
  // the eager timing is printed before the recording starts, so a crash while recording keeps it
  const eagerLine = lines.find((l) => l.startsWith(CHILD_EAGER_MARK));
  if (eagerLine) {
    const eager = JSON.parse(eagerLine.slice(CHILD_EAGER_MARK.length)) as StepTiming;
    return { ...eager, replay: none(`recording ${note.replace('the chain step ', '')}`) };
  }
  return { eager: none(note), replay: none(note), dispatches: null };
}

function parseList(name: string, text: string, allowed?: readonly number[]): number[] {
  const list = text.split(',').map((s) => s.trim()).filter((s) => s.length > 0).map(Number);
  if (list.length === 0 || list.some((v) => !Number.isInteger(v) || v < 1 || (allowed && !allowed.includes(v)))) {
    throw new CliError(`--${name} must be a comma-separated list of ${allowed ? allowed.join(', ') : 'positive integers'}, got '${text}'`);
  }
  return list;
}

async function main(): Promise<void> {
  const args = parseCli(CLI);
  if (!args) return;
  const quick = args.quick === true;
  const Ts = parseList('T', args.T ?? (quick ? '5,20,100' : '5,20,100,1000'));
  const parts = new Set(parseList('parts', args.parts, [1, 2, 3]));
  const replay = args['no-replay'] !== true;
  const { obs: obsDim, act: actDim } = args;
  const rt: Runtime = await openDevice(args.device);
  const tStart = performance.now();
  const load = loadavg()[0]!;
  console.log(
    `host ${hostname()}, node ${process.version}, adapter ${rt.info.description || rt.info.vendor} (${rt.info.adapterClass}); ` +
      `load average ${load.toFixed(1)}; obs ${obsDim}, act ${actDim}${quick ? ', quick' : ''}`,
  );
  const gen = new Generator(7);
  const store = randomStore(obsDim, actDim);
  const task = 'hopper-medium-v2';
  const edpCfg = edp.taskConfig(task, 'td3');

  // ---- 1. the policy update: the chain against the action approximation
  const policyRows: PolicyRow[] = [];
  if (parts.has(1)) {
    console.log(`\n1. policy update, batch ${edpCfg.batch}: Diffusion-QL chain backprop vs EDP action approximation, same actor per T`);
    console.log('   (ms/step as wall/CPU; ratio chain/EDP as wall/CPU; NFE: network calls per update, EDP saves T of them)');
    console.log(
      `${'T'.padStart(5)} ${'NFE'.padStart(5)} ${'chain eager'.padStart(13)} ${'EDP eager'.padStart(10)} ${'ratio'.padStart(12)} ` +
        `${'chain replay'.padStart(13)} ${'EDP replay'.padStart(10)} ${'ratio'.padStart(12)} ${'dispatches'.padStart(11)} ${'RSS MB'.padStart(7)}`,
    );
    // a fixed minibatch: the update alone is timed, not the sampling of the batch
    const batch = tidy(() => {
      const b = store.sample(edpCfg.batch, gen);
      return { obs: keep(b.obs), actions: keep(b.actions), rewards: keep(b.rewards), nextObs: keep(b.nextObs), notDone: keep(b.notDone) } as ReplayBatch;
    });
    const childMode = process.env[CHILD_ENV] !== undefined;
    let rssPerChainStep = childMode ? Number(process.env[CHILD_ENV]) || 0 : 0;
    const rssBase = mb();
    const rssPoints: { T: number; mb: number }[] = [];
    for (const T of Ts) {
      const cfg = dql.taskConfig(task);
      cfg.T = T;
      const m = dql.makeModels(obsDim, actDim, cfg);
      const heavy = T >= 1000;
      const reps = (full: number, q: number) => (quick ? q : full);
      const chainReps = T <= 5 ? { eager: reps(10, 3), replay: reps(20, 5), warmup: 1 } : T <= 20 ? { eager: reps(5, 2), replay: reps(10, 3), warmup: 1 } : T <= 100 ? { eager: reps(2, 1), replay: reps(3, 1), warmup: 1 } : { eager: 1, replay: 1, warmup: 0 };
      let chain: StepTiming;
      // The chain's tape grows with T (lavapipe's buffers are process memory): a long chain runs when the growth
      // per chain step measured on the shorter ones, times T, fits in 80% of free memory; the recording after the
      // eager step takes its buffers from the pool the eager step's tape went back to, so one tape's worth suffices
      const fits = (copies: number) => rssPerChainStep === 0 || rssPerChainStep * T * copies <= freemem() * 0.8;
      const needMB = Math.round((rssPerChainStep * T) / 2 ** 20);
      if (heavy && !fits(1)) {
        chain = { eager: none(`skipped: the tape needs about ${needMB} MB (from the shorter chains), ${Math.round(freemem() / 2 ** 20)} MB free`), replay: none('skipped'), dispatches: null };
      } else if (heavy && !childMode) {
        process.stderr.write(`T = ${T}: the chain step runs in a child process...\n`);
        chain = chainInChild(T, rssPerChainStep, { device: args.device, quick, replay, obs: obsDim, act: actDim });
      } else {
        const recordIt = replay && (!heavy || (!quick && fits(1)));
        if (heavy) process.stderr.write(`T = ${T}: one eager chain step${recordIt ? ', one recorded, one replayed' : ''} (about ${needMB || '?'} MB of tape; slow on a software adapter)...\n`);
        const printEager = childMode ? (t: StepTiming) => console.log(`${CHILD_EAGER_MARK}${JSON.stringify(t)}`) : undefined;
        chain = await timeStep(() => chainUpdate(m, batch, gen), chainReps, recordIt, printEager);
        if (replay && !recordIt) chain.replay = none(quick ? 'not recorded with --quick' : `not recorded: ${needMB} MB does not fit in free memory`);
      }
      if (childMode && heavy) {
        console.log(`${CHILD_MARK}${JSON.stringify(chain)}`);
        process.exit(0);
      }
      if (!heavy) {
        // the growth per chain step: the slope between the two longest chains run so far (the process's fixed
        // costs cancel), or from the start of this part when only one has run (an overestimate)
        rssPoints.push({ T, mb: mb() });
        const last = rssPoints[rssPoints.length - 1]!;
        const prev = rssPoints[rssPoints.length - 2];
        const perStepMB = prev && last.T > prev.T ? (last.mb - prev.mb) / (last.T - prev.T) : (last.mb - rssBase) / last.T;
        if (T >= 20) rssPerChainStep = Math.max(perStepMB, 0.1) * 2 ** 20;
      }
      const edpTiming = await timeStep(() => edpUpdate(m, edpCfg, batch, gen), { eager: reps(20, 5), replay: reps(50, 10), warmup: 2 }, replay);
      const row: PolicyRow = {
        T,
        chain,
        edp: edpTiming,
        chainNetworkEvals: T + 1,
        edpNetworkEvals: 1,
        ratioEager: ratio(chain.eager, edpTiming.eager),
        ratioReplay: ratio(chain.replay, edpTiming.replay),
        rssMB: mb(),
      };
      policyRows.push(row);
      console.log(
        `${String(T).padStart(5)} ${`${T + 1}:1`.padStart(5)} ${cell(chain.eager).padStart(13)} ${cell(edpTiming.eager).padStart(10)} ${ratioCell(row.ratioEager).padStart(12)} ` +
          `${cell(chain.replay).padStart(13)} ${cell(edpTiming.replay).padStart(10)} ${ratioCell(row.ratioReplay).padStart(12)} ` +
          `${`${chain.dispatches ?? '-'}/${edpTiming.dispatches ?? '-'}`.padStart(11)} ${String(row.rssMB).padStart(7)}`,
      );
      for (const [what, t] of [['chain eager', chain.eager], ['chain replay', chain.replay], ['EDP eager', edpTiming.eager], ['EDP replay', edpTiming.replay]] as const) {
        if (t.note && t.note !== 'not run (--no-replay)') console.log(`      ${what}: ${t.note}`);
      }
      m.dispose();
    }
    for (const t of Object.values(batch)) (t as Tensor).dispose();
  }

  // ---- 2. full training iterations
  const iterationRows: IterationRow[] = [];
  const srpo = parts.has(2) || parts.has(3) ? srpoBench(obsDim, actDim) : null;
  const dqlCfg = dql.taskConfig(task);
  const dtqlCfg = dtql.taskConfig(task);
  const dqlModels = parts.has(2) || parts.has(3) ? dql.makeModels(obsDim, actDim, dqlCfg) : null;
  const edpModels = parts.has(2) || parts.has(3) ? edp.makeModels(obsDim, actDim, edpCfg) : null;
  const dtqlModels = parts.has(2) || parts.has(3) ? dtql.makeModels(obsDim, actDim, dtqlCfg) : null;
  if (parts.has(2) && srpo && dqlModels && edpModels && dtqlModels) {
    console.log(`\n2. one training iteration (critic + policy + targets), ${task} settings (ms/step as wall/CPU)`);
    console.log(`${'method'.padEnd(13)} ${'settings'.padEnd(58)} ${'batch'.padStart(5)} ${'eager'.padStart(11)} ${'replay'.padStart(11)} ${'dispatches'.padStart(10)}`);
    const srpoStep = srpoSteps(srpo);
    const cases: { method: string; settings: string; batch: number; step: () => { loss: Tensor }; reps: { eager: number; replay: number; warmup: number } }[] = [
      {
        method: 'Diffusion-QL',
        settings: `T ${dqlCfg.T}, chain backprop, targets by the EMA chain`,
        batch: dqlCfg.batch,
        step: () => ({ loss: dqlModels.step(store.sample(dqlCfg.batch, gen), gen, 0)['actorLoss'] as Tensor }),
        reps: { eager: quick ? 3 : 10, replay: quick ? 5 : 20, warmup: 1 },
      },
      {
        method: 'EDP (TD3)',
        settings: `T ${edpCfg.T}, action approx., targets by DPM-Solver ${edpCfg.targetSamplerSteps}`,
        batch: edpCfg.batch,
        step: () => ({ loss: edpModels.step(store.sample(edpCfg.batch, gen), gen, 0)['actorLoss'] as Tensor }),
        reps: { eager: quick ? 3 : 10, replay: quick ? 5 : 20, warmup: 1 },
      },
      {
        method: 'DTQL',
        settings: 'IQL critic, EDM behaviour step, one-step actor with L_TR',
        batch: dtqlCfg.batch,
        step: () => ({ loss: dtql.trainStep(dtqlModels, store.sample(dtqlCfg.batch, gen), gen)['actorLoss'] as Tensor }),
        reps: { eager: quick ? 3 : 10, replay: quick ? 5 : 20, warmup: 1 },
      },
      {
        method: 'SRPO actor',
        settings: 'phase 3: behaviour score at a noised action, target-Q grad',
        batch: srpo.cfg.actorBatch,
        step: () => ({ loss: srpoStep.actor().loss }),
        reps: { eager: quick ? 5 : 20, replay: quick ? 10 : 50, warmup: 2 },
      },
    ];
    for (const c of cases) {
      const timing = await timeStep(c.step, c.reps, replay);
      iterationRows.push({ method: c.method, settings: c.settings, batch: c.batch, timing });
      console.log(
        `${c.method.padEnd(13)} ${c.settings.padEnd(58)} ${String(c.batch).padStart(5)} ${cell(timing.eager).padStart(11)} ${cell(timing.replay).padStart(11)} ${String(timing.dispatches ?? '-').padStart(10)}`,
      );
      if (timing.replay.note && replay) console.log(`      replay: ${timing.replay.note}`);
    }
  }

  // ---- 3. action selection at evaluation settings, read back to the host
  const sampleRows: SampleRow[] = [];
  if (parts.has(3) && srpo && dqlModels && edpModels && dtqlModels) {
    console.log('\n3. action selection at evaluation settings, including read-back (ms/call as wall/CPU)');
    console.log(`${'method'.padEnd(13)} ${'settings'.padEnd(44)} ${'states'.padStart(6)} ${'NFE'.padStart(4)} ${'eager'.padStart(13)} ${'replay'.padStart(13)} ${'actions/s'.padStart(10)}`);
    srpo.actor.eval();
    // The engine binds a whole tensor per dispatch, so no activation may exceed the adapter's storage binding
    // limit: DTQL's 1024 candidates x 256 states x 256 features does on lavapipe (256 MiB > 128 MiB). Such a
    // selection runs over groups of states, one group after another.
    const maxBinding = rt.device.limits.maxStorageBufferBindingSize;
    const widest = Math.max(dtqlCfg.actorHidden, ...dtqlCfg.criticHidden, dtqlCfg.behaviorHidden);
    const inGroups = (candidates: number, select: (obs: Tensor) => Tensor) => (obs: Tensor): Tensor => {
      const group = Math.max(1, Math.floor(maxBinding / (candidates * widest * 4)));
      const S = obs.shape[0]!;
      if (S <= group) return select(obs);
      const parts: Tensor[] = [];
      for (let s = 0; s < S; s += group) parts.push(select(slice(obs, s, Math.min(S, s + group), 0)));
      return concat(parts, 0);
    };
    const selectors: { method: string; settings: string; candidates: number; networkEvals: number; act: (obs: Tensor) => Tensor }[] = [
      {
        method: 'Diffusion-QL',
        settings: `${dqlCfg.candidates} cand., DDPM ${dqlCfg.T} steps, softmax(Q')`,
        candidates: dqlCfg.candidates,
        networkEvals: dqlCfg.T,
        act: (obs) => selectAction(dqlModels.actor.model, dqlModels.critic, obs, gen, { candidates: dqlCfg.candidates, sampler: dqlCfg.evalSampler, steps: dqlCfg.evalSamplerSteps }),
      },
      {
        method: 'EDP (TD3)',
        settings: `${edpCfg.candidates} cand., DPM-Solver++ ${edpCfg.evalSamplerSteps}+1, softmax(Q')`,
        candidates: edpCfg.candidates,
        networkEvals: edpCfg.evalSamplerSteps + 1,
        act: (obs) =>
          selectAction(edpModels.actor.model, edpModels.critic as TwinQCritic, obs, gen, { candidates: edpCfg.candidates, sampler: edpCfg.evalSampler, steps: edpCfg.evalSamplerSteps }),
      },
      {
        method: 'DTQL',
        settings: `${dtqlCfg.candidates} cand., one-step actor, softmax(Q')`,
        candidates: dtqlCfg.candidates,
        networkEvals: 1,
        act: inGroups(dtqlCfg.candidates, (obs) => dtql.selectAction(dtqlModels, obs, gen)),
      },
      { method: 'SRPO actor', settings: 'deterministic actor', candidates: 1, networkEvals: 1, act: (obs) => srpo.actor.forward(obs) },
    ];
    for (const states of [1, 256]) {
      const obs = tensor(Float32Array.from({ length: states * obsDim }, (_, k) => Math.sin(k)), [states, obsDim]);
      for (const s of selectors) {
        const work = states * s.candidates * s.networkEvals;
        // large selections take seconds to a minute per call on a software adapter: one timed call, after the
        // smaller ones have built every pipeline; --quick replays them only when small
        const large = work >= 10_000;
        const reps = large ? 1 : quick ? 5 : 20;
        const warmup = large ? (quick ? 0 : 1) : 2;
        const call = async () => {
          const a = tidy(() => s.act(obs));
          await a.read();
          a.dispose();
        };
        if (quick && states * s.candidates >= 100_000) {
          const note = `skipped with --quick: ${states * s.candidates} candidate rows (about a minute of CPU on a software adapter); run without --quick`;
          sampleRows.push({ method: s.method, settings: s.settings, states, candidates: s.candidates, networkEvals: s.networkEvals, eager: none(note), replay: none(note), actionsPerSecond: null });
          console.log(`${s.method.padEnd(13)} ${s.settings.padEnd(44)} ${String(states).padStart(6)} ${String(s.networkEvals).padStart(4)}  ${note}`);
          continue;
        }
        const eager: Timing = { ...(await timeItWithCpu(reps, warmup, call)), reps };
        let replayT = none('not run (--no-replay)');
        if (replay && large && quick) replayT = none('not run (--quick: large selections are timed eagerly only)');
        else if (replay) {
          try {
            const rec = recordStep(() => ({ a: s.act(obs) }));
            try {
              replayT = { ...(await timeItWithCpu(reps, 0, async () => void (await rec.replayAndRead()))), reps };
            } finally {
              rec.dispose();
            }
          } catch (e) {
            replayT = none(`not recordable: ${message(e)}`);
          }
        }
        const best = Math.min(eager.ms!, replayT.ms ?? Infinity);
        const row: SampleRow = {
          method: s.method,
          settings: s.settings,
          states,
          candidates: s.candidates,
          networkEvals: s.networkEvals,
          eager,
          replay: replayT,
          actionsPerSecond: (1000 * states) / best,
        };
        sampleRows.push(row);
        console.log(
          `${s.method.padEnd(13)} ${s.settings.padEnd(44)} ${String(states).padStart(6)} ${String(s.networkEvals).padStart(4)} ${cell(eager, 1).padStart(13)} ${cell(replayT, 1).padStart(13)} ${fmt(row.actionsPerSecond).padStart(10)}`,
        );
        if (replayT.note && replay && !(large && quick)) console.log(`      replay: ${replayT.note}`);
      }
      obs.dispose();
    }
    console.log('(actions/s from the faster of eager and replayed, wall time)');
  }
  srpo?.dispose();
  dqlModels?.dispose();
  edpModels?.dispose();
  if (dtqlModels) dtql.disposeModels(dtqlModels);
  store.dispose();

  const tag = (rt.info.adapterClass === 'software' ? 'software' : rt.info.vendor || 'gpu').replace(/[^a-z0-9-]/gi, '_');
  mkdirSync(args.out, { recursive: true });
  // runs of a subset (--T, --parts) get their own file instead of replacing the complete one
  const subset = `${args.T !== undefined ? `-T${Ts.join('_')}` : ''}${parts.size < 3 ? `-parts${[...parts].sort().join('')}` : ''}`;
  const file = `${args.out}/edp-vs-chain-${tag}${quick ? '-quick' : ''}${subset}.json`;
  const seconds = (performance.now() - tStart) / 1000;
  writeFileSync(
    file,
    `${JSON.stringify(
      {
        host: hostname(), node: process.version, adapter: rt.info.description, adapterClass: rt.info.adapterClass, loadAverage: load, quick, obsDim, actDim,
        command: `node bench/edp-vs-chain.ts ${process.argv.slice(2).join(' ')}`.trim(), date: new Date().toISOString(), seconds,
        policyUpdate: policyRows, trainingIteration: iterationRows, actionSelection: sampleRows,
      },
      null,
      2,
    )}\n`,
  );
  console.log(`\n${seconds.toFixed(0)} s; wrote ${file}`);
}

await runMain('bench/edp-vs-chain', main);

// SAC: the squashed Gaussian's log-density (tanh Jacobian included) against float64 with its analytic
// gradient, the temperature loss and its gradient, the command line, and a CI-sized Pendulum run that must
// clearly beat uniform random actions.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { backward, noGrad } from '../engine/autograd.ts';
import { HostRng } from '../engine/host-rng.ts';
import { sum } from '../engine/ops/reduce.ts';
import { AdamW } from '../engine/optim.ts';
import { Generator } from '../engine/random.ts';
import { tensor, tidy } from '../engine/tensor.ts';
import { GaussianTanhActor } from '../algorithms/common/gaussian-actor.ts';
import { onlineCliSpec, onlineConfigFromArgs, referenceReturns, runOnline, type OnlineCliValues } from '../algorithms/common/online-command.ts';
import { parseCli } from '../algorithms/common/cli.ts';
import { SacAgent, Temperature, temperatureLoss } from '../algorithms/sac/agent.ts';
import { ReplayStore } from '../datasets/replay.ts';
import { recordStep } from '../engine/record.ts';
import { SAC_COMMAND, sacPreset } from '../algorithms/sac.ts';
import { JsonlLog } from '../algorithms/common/monitor.ts';
import { PhaseInterrupted } from '../algorithms/common/phase.ts';
import { freshSeed, gpu, randn, rng } from './helpers.ts';

const t = suite('sac');
t.before(gpu);
const scratch = mkdtempSync(join(tmpdir(), 'sac-test-'));
t.after(() => rmSync(scratch, { recursive: true, force: true }));

t('squashed Gaussian log-density of its own samples matches float64, tanh Jacobian and maxAction included', async () => {
  for (const [B, obsDim, actDim, maxAction] of [[1, 3, 1, 1], [17, 5, 3, 1], [33, 4, 6, 2]] as const) {
    const seed = freshSeed();
    const actor = new GaussianTanhActor(obsDim, actDim, { hidden: 16, layers: 2, maxAction, rng: new HostRng(seed) });
    const obs = tensor(randn(B * obsDim, rng(seed), 2), [B, obsDim]);
    const got = tidy(() => noGrad(() => actor.sampleWithLogProb(obs, new Generator(seed))));
    const dist = tidy(() => noGrad(() => actor.distribution(obs)));
    const noise = tidy(() => new Generator(seed).normal([B, actDim]));
    const [mu, logStd, n, a, lp] = await Promise.all([dist.mu.read(), dist.logStd.read(), noise.read(), got.action.read(), got.logProb.read()]);
    for (let i = 0; i < B; i++) {
      let ref = 0;
      for (let d = 0; d < actDim; d++) {
        const k = i * actDim + d;
        const u = mu[k]! + Math.exp(logStd[k]!) * n[k]!;
        const z = (u - mu[k]!) / Math.exp(logStd[k]!);
        ref += -0.5 * z * z - logStd[k]! - 0.5 * Math.log(2 * Math.PI) - Math.log(1 - Math.tanh(u) ** 2) - Math.log(maxAction);
        assert.ok(Math.abs(a[k]! - maxAction * Math.tanh(u)) < 1e-5, `action ${k}`);
      }
      assert.ok(Math.abs(lp[i]! - ref) < 1e-4 * Math.max(1, Math.abs(ref)), `B=${B} D=${actDim}: log-density ${lp[i]} vs ${ref}`);
    }
    for (const x of [obs, got.action, got.logProb, dist.mu, dist.logStd, noise]) x.dispose();
  }
});

t('gradient of the log-density in the output layer: 2 tanh(u) for mu, 2 tanh(u) sigma n - 1 for log sigma', async () => {
  const seed = freshSeed();
  const B = 9, obsDim = 4, actDim = 2;
  const actor = new GaussianTanhActor(obsDim, actDim, { hidden: 8, layers: 1, rng: new HostRng(seed) });
  const group = actor.paramGroup();
  const obs = tensor(randn(B * obsDim, rng(seed), 0.5), [B, obsDim]);
  const dist = tidy(() => noGrad(() => actor.distribution(obs)));
  const noise = tidy(() => new Generator(seed).normal([B, actDim]));
  group.zeroGrad();
  tidy(() => backward(sum(actor.sampleWithLogProb(obs, new Generator(seed)).logProb)));
  const layers = actor.net.layers.layers;
  const bias = (layers[layers.length - 1] as unknown as { bias: { gradSlot: { read(): Promise<Float32Array> } } }).bias;
  const [mu, logStd, n, g] = await Promise.all([dist.mu.read(), dist.logStd.read(), noise.read(), bias.gradSlot.read()]);
  const ref = new Float64Array(2 * actDim);
  for (let i = 0; i < B; i++) {
    for (let d = 0; d < actDim; d++) {
      const k = i * actDim + d;
      const sigma = Math.exp(logStd[k]!);
      const u = mu[k]! + sigma * n[k]!;
      ref[d] = ref[d]! + 2 * Math.tanh(u);
      // log sigma inside the clamp here (small init); its gradient through u and the -log sigma term
      ref[actDim + d] = ref[actDim + d]! + 2 * Math.tanh(u) * sigma * n[k]! - 1;
    }
  }
  for (let j = 0; j < 2 * actDim; j++) assert.ok(Math.abs(g[j]! - ref[j]!) < 1e-4 * Math.max(1, Math.abs(ref[j]!)), `bias grad ${j}: ${g[j]} vs ${ref[j]}`);
  for (const x of [obs, dist.mu, dist.logStd, noise]) x.dispose();
});

t('temperature loss: gradient -mean(log pi + target entropy) in log alpha; alpha rises while the entropy is below target', async () => {
  const temp = new Temperature(0.3);
  const opt = new AdamW(temp.paramGroup(), { lr: 0.01 });
  const lp = [0.5, -1.25, 2, 0.75];
  const target = -1;
  const logProb = tensor(lp, [4, 1]);
  opt.group.zeroGrad();
  const loss = tidy(() => {
    const l = temperatureLoss(temp.logAlpha, logProb, target);
    backward(l);
    return l;
  });
  const meanShifted = lp.reduce((s, x) => s + x + target, 0) / lp.length;
  assert.ok(Math.abs((await loss.item()) + Math.log(0.3) * meanShifted) < 1e-6, 'loss value');
  assert.ok(Math.abs((await temp.logAlpha.gradSlot!.item()) + meanShifted) < 1e-6, 'gradient');
  // mean log pi = 0.5: the entropy estimate -0.5 is above the target -1, so alpha must fall
  opt.step();
  const after = Math.exp(await temp.logAlpha.item());
  assert.ok(meanShifted < 0 && after < 0.3, `alpha fell (${after})`);
  const alpha = tidy(() => temp.alpha());
  assert.ok(Math.abs((await alpha.item()) - after) < 1e-6);
  for (const x of [loss, logProb, alpha]) x.dispose();
  opt.dispose();
});

t('an SAC update recorded and replayed gives the parameters of eager updates, bitwise', async () => {
  const cfg = { ...sacPreset('pendulum', 'ci'), hidden: 16, batch: 8 };
  const fill = (store: ReplayStore) => {
    const r = rng(5);
    const n = 50;
    store.add({ observations: randn(n * 3, r), actions: randn(n, r, 0.5).map((a) => Math.tanh(a)), rewards: randn(n, r), nextObservations: randn(n * 3, r), dones: Array.from({ length: n }, (_, i) => (i % 7 === 0 ? 1 : 0)) });
  };
  const params = async (a: SacAgent) => Promise.all([a.actor, a.critic, a.criticTarget, a.temperature].map((m) => m.paramGroup().values.read()));
  const run = async (replayed: boolean) => {
    const agent = new SacAgent(3, 1, cfg);
    const store = ReplayStore.empty(100, 3, 1);
    fill(store);
    tidy(() => agent.update(store, 0));
    if (replayed) {
      const step = recordStep(() => agent.update(store, 0));
      step.replay(2);
      step.dispose();
    } else {
      for (let i = 0; i < 3; i++) tidy(() => agent.update(store, 0));
    }
    const out = await params(agent);
    assert.is(agent.actorOpt.stepCount, 4);
    store.dispose();
    agent.dispose();
    return out;
  };
  const eager = await run(false);
  const replayed = await run(true);
  eager.forEach((e, i) => assert.equal(replayed[i], e, `module ${i}`));
});

t('command line: presets per environment, options applied, --help lists every option', () => {
  const spec = onlineCliSpec(SAC_COMMAND);
  let help = '';
  assert.is(parseCli(spec, ['--help'], (s) => (help = s)), null);
  for (const k of Object.keys(spec.options)) assert.ok(help.includes(`--${k}`), k);
  const hopper = sacPreset('Hopper-v4', 'default');
  assert.equal([hopper.hidden, hopper.layers, hopper.batch, hopper.warmupSteps, hopper.replayCapacity, hopper.actorLr, hopper.tau, hopper.gamma], [256, 2, 256, 10_000, 1_000_000, 3e-4, 0.005, 0.99]);
  const args = parseCli(spec, ['--env', 'hopper', '--steps', '500', '--lr', '1e-3', '--fixed-alpha', '--alpha', '0.1', '--num-envs', '2'])!;
  const cfg = onlineConfigFromArgs(SAC_COMMAND, args as OnlineCliValues & typeof args);
  assert.equal([cfg.env, cfg.envSteps, cfg.actorLr, cfg.criticLr, cfg.alphaLr, cfg.autoAlpha, cfg.initAlpha, cfg.numEnvs], ['hopper', 500, 1e-3, 1e-3, 1e-3, false, 0.1, 2]);
  assert.throws(() => parseCli(spec, ['--preset', 'nope']), /preset/);
  assert.ok(sacPreset('pendulum', 'default').envSteps <= 10_000, "Pendulum's default budget is short");
});

t('an interrupted run, resumed: the summary counts the time, env steps and rate of every session', async () => {
  const cfg = { ...sacPreset('pendulum', 'quick'), envSteps: 240, warmupSteps: 80, numEnvs: 4, evalEvery: 0, evalEpisodes: 2, logEvery: 40, checkpointEvery: 40 };
  const dir = join(scratch, 'sessions');
  const quiet = { quiet: true, stream: { write: () => true } };
  let polls = 0;
  await runOnline(SAC_COMMAND, cfg, { dir, ...quiet, stopRequested: () => ++polls >= 30 }).then(
    () => assert.unreachable('the run was not interrupted'),
    (e: unknown) => assert.instance(e, PhaseInterrupted),
  );
  const s = await runOnline(SAC_COMMAND, cfg, { dir, resume: true, ...quiet });
  const sessions = JsonlLog.read(join(dir, 'log.jsonl')).filter((r) => r['phase'] === 'session') as { envSteps: number; seconds: { training: number } }[];
  assert.is(sessions.length, 2);
  assert.ok(sessions[0]!.envSteps > 0 && sessions[1]!.envSteps > 0, 'both sessions stepped');
  assert.is(sessions[0]!.envSteps + sessions[1]!.envSteps, s.envSteps);
  const training = sessions[0]!.seconds.training + sessions[1]!.seconds.training;
  assert.ok(Math.abs(s.seconds.training - training) < 1e-9, 'training time of both sessions');
  assert.ok(Math.abs(s.envStepsPerSecond - s.envSteps / training) < 1e-6 * s.envStepsPerSecond, 'the rate over the whole run');
});

t('CI-sized Pendulum run: SAC gets near the scripted controller (and far above uniform random) within 2400 env steps, and stays there', async () => {
  const cfg = sacPreset('pendulum', 'ci');
  const dir = join(scratch, 'pendulum');
  // the bar, on the same evaluation episodes: within 150 of the swing-up controller's return
  const refs = await referenceReturns(cfg.env, cfg.evalEpisodes);
  const bar = refs['scripted swing-up']! - 150;
  // the whole budget, not stopped at the first good evaluation: a policy that reaches the bar must keep it
  const s = await runOnline(SAC_COMMAND, cfg, { dir, quiet: true, stream: { write: () => true } });
  const random = s.references['uniform random']!;
  console.log(`  SAC ci preset: ${s.envSteps} env steps, ${s.updates} updates: return ${s.final!.mean.toFixed(1)} +- ${s.final!.std.toFixed(1)} ` +
    `(bar ${bar.toFixed(1)}, random ${random.toFixed(1)}); curve ${s.evals.map((e) => `${e.envSteps}:${e.mean.toFixed(0)}`).join(' ')}`);
  const reached = s.evals.findIndex((e) => e.mean >= bar);
  assert.ok(reached >= 0, `SAC never reached ${bar} in ${s.envSteps} env steps`);
  for (const e of s.evals.slice(reached)) assert.ok(e.mean >= bar, `SAC fell to ${e.mean} at ${e.envSteps} env steps after reaching the bar ${bar}`);
  assert.is(s.envSteps, cfg.envSteps);
  assert.ok(s.final!.mean > random + 500, `SAC return ${s.final!.mean} against random ${random}`);
  for (const f of ['log.jsonl', 'curves.svg', 'summary.json', 'checkpoint.safetensors']) assert.ok(existsSync(join(dir, f)), f);
  assert.ok(readFileSync(join(dir, 'curves.svg'), 'utf8').includes('SAC (evaluation)'));
});

t.run();

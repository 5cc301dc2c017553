// The offline harness on a tiny SRPO run over the shipped Pendulum data: one run writes every output the
// commands promise, and resuming the finished run trains nothing again and keeps its baselines and score.
// Also the command line every offline method gets from its description.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { appendFileSync, existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gpu } from './helpers.ts';
import { CliError } from '../algorithms/common/cli.ts';
import { JsonlLog } from '../algorithms/common/monitor.ts';
import { PhaseInterrupted } from '../algorithms/common/phase.ts';
import { offlineCommand, offlineConfig, runOffline, type OfflineSummary } from '../algorithms/common/offline-method.ts';
import { SRPO } from '../algorithms/srpo.ts';
import { DQL } from '../algorithms/dql.ts';
import { EDP, type EdpConfig } from '../algorithms/edp.ts';
import { taskConfig, type SrpoConfig } from '../algorithms/srpo/presets.ts';

const t = suite('offline-method');
let scratch = '';
t.before(async () => {
  await gpu();
  scratch = mkdtempSync(join(tmpdir(), 'wd-offline-'));
});
t.after(() => rmSync(scratch, { recursive: true, force: true }));

function tinyConfig(): SrpoConfig {
  return {
    ...taskConfig('pendulum-quick'),
    behaviorHidden: 16,
    behaviorBlocks: 1,
    behaviorSteps: 6,
    behaviorBatch: 32,
    criticHidden: [16, 16],
    criticSteps: 6,
    criticBatch: 32,
    actorHidden: 16,
    actorSteps: 6,
    actorBatch: 32,
    bcSolverSteps: 2,
    evalEpisodes: 2,
    evalEvery: 3,
    logEvery: 3,
    checkpointEvery: 3,
  };
}

const quiet = { quiet: true, stream: { write: () => true } };

t('one run writes the summary, log, checkpoints and curves; a resumed finished run trains nothing again', async () => {
  const dir = join(scratch, 'srpo');
  const cfg = tinyConfig();
  const first: OfflineSummary = await runOffline(SRPO, cfg, { dir, ...quiet });
  for (const f of ['summary.json', 'log.jsonl', 'curves.svg', 'curves.png', 'behavior.safetensors', 'critic.safetensors', 'actor.safetensors', 'obs_stats.json']) {
    assert.ok(existsSync(join(dir, f)), `${f} written`);
  }
  const png = readFileSync(join(dir, 'curves.png'));
  assert.equal([...png.subarray(0, 8)], [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a], 'a PNG');
  assert.ok(png.readUInt32BE(16) >= 1280, 'rendered at twice the SVG width');
  assert.is(first.method, 'SRPO');
  assert.equal(Object.keys(first.phaseSeconds), ['setup', 'behavior', 'critic', 'actor', 'evaluation']);
  assert.ok(first.bcScore && Number.isFinite(first.bcScore.mean), 'diffusion baseline scored');
  assert.ok(first.bcMlpScore && Number.isFinite(first.bcMlpScore.mean), 'MLP baseline scored');
  assert.equal(first.evals.map((e) => e.step), [3, 6]);
  assert.is(first.score.mean, first.evals[1]!.mean, 'the final score is the last evaluation');
  assert.is(first.score.episodes, 2);

  const resumed = await runOffline(SRPO, cfg, { dir, resume: true, ...quiet });
  assert.is(resumed.score.mean, first.score.mean, 'the same policy scores the same on the same episodes');
  assert.equal(resumed.bcScore, first.bcScore);
  assert.equal(resumed.bcMlpScore, first.bcMlpScore);
  assert.equal(resumed.evals, first.evals, 'the evaluations of the whole run');
  for (const p of ['behavior', 'critic', 'actor']) assert.is(resumed.phaseSeconds[p], first.phaseSeconds[p], `${p}: its time over both sessions`);
  const records = JsonlLog.read(join(dir, 'log.jsonl'));
  assert.is(records.filter((r) => r['bcEval']).length, 1, 'the diffusion baseline ran once');
  assert.is(records.filter((r) => r['bcMlpEval']).length, 1, 'the MLP baseline ran once');
  assert.is(records.filter((r) => r['phase'] === 'actor' && typeof r['step'] === 'number' && !r['eval']).length, 2, 'no step trained again');
});

t('a run interrupted mid-phase resumes without doubled records, even after a crash left extra records and a torn line', async () => {
  const dir = join(scratch, 'srpo-interrupted');
  const cfg = tinyConfig();
  let polls = 0;
  // polled after every step but a phase's last: behaviour 5 + critic 5, then actor step 4
  await runOffline(SRPO, cfg, { dir, stopRequested: () => ++polls >= 14, ...quiet }).then(
    () => assert.unreachable('the run was not interrupted'),
    (e: unknown) => assert.instance(e, PhaseInterrupted),
  );
  // as if a crashed session had logged past the checkpoint at step 4 and died mid-line
  appendFileSync(join(dir, 'log.jsonl'), `${JSON.stringify({ phase: 'actor', step: 5, eval: { mean: 999, std: 0 } })}\n{"phase": "actor", "st`);
  const resumed = await runOffline(SRPO, cfg, { dir, resume: true, ...quiet });
  assert.equal(resumed.evals.map((e) => e.step), [3, 6], 'each evaluation once; the crashed session\'s step-5 record dropped');
  const records = JsonlLog.read(join(dir, 'log.jsonl'));
  assert.is(records.filter((r) => r['phase'] === 'session').length, 2, 'both sessions logged, the record after the torn line intact');
  assert.is(records.filter((r) => r['resumedAt'] === 4).length, 1);

  const whole = await runOffline(SRPO, cfg, { dir: join(scratch, 'srpo-whole'), ...quiet });
  assert.equal(resumed.evals, whole.evals, 'the interrupted run ends where the uninterrupted one does');
  assert.equal(resumed.score, whole.score);
});

t('a phase loaded from a checkpoint is skipped and its networks are the file\'s', async () => {
  const source = join(scratch, 'srpo');
  const dir = join(scratch, 'srpo-loaded');
  const cfg = { ...tinyConfig(), bcEval: false };
  const s = await runOffline(SRPO, cfg, { dir, load: { behavior: join(source, 'behavior.safetensors'), critic: join(source, 'critic.safetensors') }, ...quiet });
  assert.is(s.phaseSeconds['behavior'], 0);
  assert.is(s.phaseSeconds['critic'], 0);
  assert.ok(s.phaseSeconds['actor']! > 0);
  assert.is(s.bcScore, null);
  const loaded = JsonlLog.read(join(dir, 'log.jsonl')).filter((r) => r['loaded']);
  assert.equal(loaded.map((r) => r['phase']), ['behavior', 'critic']);
});

t('every method gets the shared options, its own and its load options; its flags are checked', () => {
  const options = (m: Parameters<typeof offlineCommand>[0]) => Object.keys(offlineCommand(m).spec.options);
  const srpo = options(SRPO);
  for (const o of ['task', 'dataset', 'env', 'seed', 'behavior', 'critic', 'actor-steps', 'beta', 'eval-every', 'no-bc-eval', 'out', 'resume', 'device', 'quiet', 'eager', 'tune']) {
    assert.ok(srpo.includes(o), `srpo --${o}`);
  }
  const dql = options(DQL as never);
  for (const o of ['eta', 'train-steps', 'T', 'select-temperature', 'resume']) assert.ok(dql.includes(o), `dql --${o}`);
  assert.not.ok(dql.includes('behavior'), 'Diffusion-QL has no phase to load');
  const edp = { task: 'pendulum-quick', backbone: 'crr' };
  assert.is((offlineConfig(EDP as never, edp) as EdpConfig).backbone, 'crr');
  assert.throws(() => offlineConfig(EDP as never, { ...edp, T: 10 }), (e: unknown) => e instanceof CliError && /at least 21/.test(e.message));
  assert.throws(() => offlineConfig(EDP as never, { task: 'pendulum-quick', backbone: 'sac' }), /--backbone must be one of/);
  assert.is(offlineCommand(EDP as never).config({ task: 'pendulum-quick', backbone: 'iql' } as never).name, 'edp-iql-pendulum-quick');
});

t("SRPO's paper presets take observations as the files hold them, as the paper's code does; the quick presets z-score", () => {
  for (const task of ['hopper-medium-v2', 'walker2d-medium-expert-v2', 'antmaze-umaze-v2']) assert.is(taskConfig(task).normalizeObs, false, task);
  for (const task of ['pendulum-quick', 'hopper-quick']) assert.is(taskConfig(task).normalizeObs, true, task);
});

t.run();

// The behaviour-cloning baselines every offline command scores beside its policy: a deterministic MLP fitted to
// the data's actions by mean squared error, and a method's diffusion behaviour model sampled by itself.
import { backward } from '../../engine/autograd.ts';
import { HostRng } from '../../engine/host-rng.ts';
import { square, sub } from '../../engine/ops/elementwise.ts';
import { mean } from '../../engine/ops/reduce.ts';
import { AdamW } from '../../engine/optim.ts';
import { Generator } from '../../engine/random.ts';
import { runtime } from '../../engine/runtime.ts';
import { tidy } from '../../engine/tensor.ts';
import type { ReplayStore } from '../../datasets/replay.ts';
import type { BehaviorModel, SampleOptions } from '../diffusion/behavior.ts';
import { DeterministicActor } from './deterministic-actor.ts';
import { envPolicy } from './evaluation.ts';
import type { Baseline } from './offline-method.ts';

export interface BcMlpSettings {
  hidden: number;
  layers: number;
  lr: number;
  steps: number;
  batch: number;
  seed: number;
}

/**
 * An MLP fitted to the data's actions by mean squared error (Adam). It regresses to the mean action per state,
 * so on data with zero-mean action noise it recovers a denoised behaviour policy.
 */
export function trainBcMlp(store: ReplayStore, obsDim: number, actDim: number, s: BcMlpSettings): DeterministicActor {
  const net = new DeterministicActor(obsDim, actDim, { hidden: s.hidden, layers: s.layers, rng: new HostRng(s.seed * 16 + 9) });
  const opt = new AdamW(net.paramGroup(), { lr: s.lr });
  const gen = new Generator(s.seed * 16 + 9);
  for (let i = 0; i < s.steps; i++) {
    tidy(() => {
      const b = store.sample(s.batch, gen);
      opt.group.zeroGrad();
      backward(mean(square(sub(net.forward(b.obs), b.actions))));
      opt.step();
    });
    runtime().flush();
  }
  opt.dispose();
  return net;
}

/** The MSE-fitted MLP as a baseline, trained when it is scored. */
export function mlpBaseline<M>(after: string | null, s: BcMlpSettings): Baseline<M> {
  return {
    key: 'bcMlpScore',
    logKey: 'bcMlpEval',
    label: 'behaviour cloning (MLP)',
    curve: 'BC (MLP)',
    describe: `behaviour cloning (MLP, mean squared error, ${s.steps} steps)`,
    after,
    policy: (_m, data, box) => {
      const { obsDim, actDim } = data.transitions;
      const mlp = trainBcMlp(data.store, obsDim, actDim, s);
      return envPolicy((obs) => mlp.forward(obs), data.obsStats, box);
    },
  };
}

/** A diffusion behaviour model sampled by itself, one action per state, as a baseline. */
export function diffusionBaseline<M>(after: string, model: (m: M) => BehaviorModel, sampler: SampleOptions, samplerName: string, seed: number): Baseline<M> {
  return {
    key: 'bcScore',
    logKey: 'bcEval',
    label: 'behaviour cloning (diffusion)',
    curve: 'BC (diffusion)',
    describe: `behaviour cloning (diffusion samples, ${samplerName})`,
    after,
    policy: (m, data, box) => {
      const gen = new Generator(seed * 16 + 7);
      return envPolicy((obs) => model(m).sample(obs, 1, gen, sampler), data.obsStats, box);
    },
  };
}

// Environments by Gymnasium id (and short aliases): a table of async factories, since the simulators load
// asynchronously while reset/step are synchronous.

import { VecEnv } from './core.ts';
import type { Env } from './core.ts';
import { LOCOMOTION, LocomotionEnv } from './locomotion.ts';
import { MountainCarContinuousEnv } from './mountain_car.ts';
import { PendulumEnv } from './pendulum.ts';

export interface EnvOptions {
  /** Seeds the environment's generator (reset noise); without one it is seeded from Math.random. */
  seed?: number;
}

export type EnvFactory = (opts: EnvOptions) => Promise<Env>;

const factories: Record<string, EnvFactory> = {
  'Hopper-v4': (opts) => LocomotionEnv.create(LOCOMOTION['Hopper-v4'], opts),
  'HalfCheetah-v4': (opts) => LocomotionEnv.create(LOCOMOTION['HalfCheetah-v4'], opts),
  'Walker2d-v4': (opts) => LocomotionEnv.create(LOCOMOTION['Walker2d-v4'], opts),
  'Pendulum-v1': async (opts) => new PendulumEnv(opts),
  'MountainCarContinuous-v0': async (opts) => new MountainCarContinuousEnv(opts),
};

const aliases: Record<string, string> = {
  hopper: 'Hopper-v4',
  halfcheetah: 'HalfCheetah-v4',
  walker2d: 'Walker2d-v4',
  pendulum: 'Pendulum-v1',
  mountaincar: 'MountainCarContinuous-v0',
};

/** Every id makeEnv accepts (Gymnasium ids, then aliases). */
export function envIds(): string[] {
  return [...Object.keys(factories), ...Object.keys(aliases)];
}

function factoryFor(id: string): EnvFactory {
  const factory = factories[aliases[id] ?? id];
  if (factory === undefined) throw new Error(`makeEnv: unknown environment '${id}'; known: ${envIds().join(', ')}`);
  return factory;
}

export async function makeEnv(id: string, opts: EnvOptions = {}): Promise<Env> {
  return factoryFor(id)(opts);
}

/** `num` copies; with a seed, copy i is seeded with seed + i (the convention of VecEnv.reset). */
export async function makeVecEnv(id: string, num: number, opts: EnvOptions = {}): Promise<VecEnv> {
  if (!Number.isInteger(num) || num < 1) throw new Error(`makeVecEnv: num must be a positive integer, got ${num}`);
  const factory = factoryFor(id);
  const envs: Env[] = [];
  try {
    for (let i = 0; i < num; i++) envs.push(await factory({ seed: opts.seed === undefined ? undefined : opts.seed + i }));
  } catch (err) {
    for (const env of envs) env.close();
    throw err;
  }
  return new VecEnv(envs);
}

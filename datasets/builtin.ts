// The datasets that ship with the repository, found by name, and the environment a dataset's name implies.
import { existsSync } from 'node:fs';

/** A file of this repository, found from this module's location so commands work from any directory. */
function repoFile(relative: string): string {
  return decodeURIComponent(new URL(`../${relative}`, import.meta.url).pathname);
}

export const BUILTIN_DATASETS: Readonly<Record<string, { path: string; env: string }>> = Object.freeze({
  'pendulum-medium-v1': { path: repoFile('datasets/data/pendulum-medium-v1.hdf5'), env: 'Pendulum-v1' },
  'hopper-expert-v4': { path: repoFile('test/fixtures/hopper-expert-v4.hdf5'), env: 'Hopper-v4' },
});

/** The project's environment for a D4RL task family. */
export const TASK_ENVS: Readonly<Record<string, string>> = Object.freeze({
  halfcheetah: 'HalfCheetah-v4',
  hopper: 'Hopper-v4',
  walker2d: 'Walker2d-v4',
  pendulum: 'Pendulum-v1',
});

/** The environment a dataset name or path implies (by family), or null. */
export function envForDataset(nameOrPath: string): string | null {
  const builtin = BUILTIN_DATASETS[nameOrPath];
  if (builtin) return builtin.env;
  const base = nameOrPath.toLowerCase().split(/[\\/]/).pop() ?? '';
  for (const [family, env] of Object.entries(TASK_ENVS)) if (base.startsWith(family)) return env;
  return null;
}

/** Resolves a built-in dataset name or a path to a file path; the error is meant for the person running a command. */
export function datasetPath(nameOrPath: string): string {
  const builtin = BUILTIN_DATASETS[nameOrPath];
  if (builtin) return builtin.path;
  if (!existsSync(nameOrPath)) {
    const err = new Error(`dataset '${nameOrPath}' is neither a built-in name (${Object.keys(BUILTIN_DATASETS).join(', ')}) nor an existing file`);
    (err as { userFacing?: boolean }).userFacing = true;
    throw err;
  }
  return nameOrPath;
}

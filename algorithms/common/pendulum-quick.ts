// The run settings every method's quick Pendulum preset shares.
/**
 * What every method's quick preset shares: the shipped Pendulum data with 'minmax' rewards and z-scored
 * observations, 20 evaluation episodes from seed 1001 with the MSE-fitted MLP scored beside the method, a log
 * line every 100 steps and a checkpoint every 1000.
 */
export const PENDULUM_QUICK_RUN = Object.freeze({
  task: 'pendulum-quick',
  dataset: 'pendulum-medium-v1',
  env: 'Pendulum-v1',
  rewardPreset: 'minmax',
  normalizeObs: true,
  evalEpisodes: 20,
  evalSeed: 1001,
  bcEval: true,
  logEvery: 100,
  checkpointEvery: 1000,
} as const);

// DTQL's one-step policy is the shared tanh-squashed Gaussian actor.
export { ATANH_MARGIN, GaussianTanhActor, LOG_STD_MAX, LOG_STD_MIN, type GaussianTanhActorOptions } from '../common/gaussian-actor.ts';

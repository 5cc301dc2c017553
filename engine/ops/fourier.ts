// Fourier features of a scalar input (diffusion time embeddings): each row's scalar t times every frequency,
// through sin and cos. Differentiable in t; the frequencies are constants.
import { needsGrad, record } from '../autograd.ts';
import { kernel } from '../kernel.ts';
import { runtime } from '../runtime.ts';
import { empty, type Tensor } from '../tensor.ts';
import { fourierBackwardSource, fourierForwardSource, type FourierOrder } from '../../kernels/fourier.ts';
import { flatGrid } from '../../kernels/common.ts';

export type { FourierOrder };

/**
 * t: [B] or [B, 1]; freqs: [H]. Returns [B, 2H]: sin(t*f*s) then cos(t*f*s) for 'sin-cos' (cos first for
 * 'cos-sin'), with the argument computed as (t * f) * s in f32.
 */
export function fourierFeatures(t: Tensor, freqs: Tensor, opts: { order?: FourierOrder; freqScale?: number } = {}): Tensor {
  const order = opts.order ?? 'sin-cos';
  const freqScale = opts.freqScale ?? 1;
  if (!(t.rank === 1 || (t.rank === 2 && t.shape[1] === 1))) {
    throw new Error(`fourierFeatures: t must be [B] or [B, 1], got [${t.shape}]`);
  }
  if (freqs.rank !== 1) throw new Error(`fourierFeatures: freqs must be [H], got [${freqs.shape}]`);
  if (t.dtype !== 'f32' || freqs.dtype !== 'f32') throw new Error('fourierFeatures: t and freqs must be f32');
  const rows = t.shape[0]!;
  const half = freqs.shape[0]!;
  const out = empty([rows, 2 * half]);
  const uniforms = { rows, half, freq_scale: freqScale };
  const fwd = kernel(`fourier_fwd_${order}`, () => fourierForwardSource(order));
  runtime().dispatch(fwd, { t, freqs, out }, uniforms, flatGrid(rows * 2 * half));
  if (needsGrad(t)) {
    record('fourierFeatures', [t], [out], ([g]) => {
      if (!g) return [null];
      const gt = empty(t.shape);
      const bwd = kernel(`fourier_bwd_${order}`, () => fourierBackwardSource(order));
      runtime().dispatch(bwd, { t, freqs, gout: g, gt }, uniforms, flatGrid(rows));
      return [gt];
    });
  }
  return out;
}

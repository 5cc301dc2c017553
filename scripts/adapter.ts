// Prints the WebGPU adapter the engine gets, or the engine's no-adapter error; exits 1 when there is none.
import { init, dispose } from '../engine/runtime.ts';

try {
  const rt = await init();
  const i = rt.info;
  console.log(`adapter: ${i.description || i.vendor || 'unknown'} (${i.architecture || 'unknown architecture'}, ${i.adapterClass}); features: ${i.features.join(', ')}`);
  dispose();
} catch (err) {
  console.error((err as Error).message);
  process.exit(1);
}

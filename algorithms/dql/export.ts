// Diffusion-QL's networks in the layout of the paper's PyTorch code: the policy's noise network (MLP, loaded
// into Diffusion_QL.model: the names already match; the Diffusion wrapper's schedule buffers are the paper
// code's own) and the critic (Critic: q1_model and q2_model, nn.Sequentials of Linear and Mish, inputs joined
// [state, action] there as here).
import { sequential, tensorsOf, torchFile, under, type ExportContext } from '../common/torch-layout.ts';
import type { TwinQCritic } from '../common/twin-q-critic.ts';
import type { DqlModels } from '../dql.ts';

export async function exportDqlToTorch(m: DqlModels, context: ExportContext): Promise<Record<string, Uint8Array>> {
  const q = await tensorsOf((m.critic as TwinQCritic).q);
  return {
    actor: torchFile([...(await tensorsOf(m.actor.model.net)).values()], 'Diffusion-QL', 'MLP', context),
    critic: torchFile([...sequential(under(q, 'q1'), 'q1_model', { stride: 2 }), ...sequential(under(q, 'q2'), 'q2_model', { stride: 2 })], 'Diffusion-QL', 'Critic', context, { input_order: 'state,action' }),
  };
}

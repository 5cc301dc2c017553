// DTQL's networks in the layout of the paper's PyTorch code: the behaviour network (ScoreNetwork: the names
// already match), the critic (Critic: q1_model and q2_model, nn.Sequentials of Linear, LayerNorm and Mish, and
// v_model, of Linear and Mish; the target critic in a second file, holding the online v_model as the paper's
// deep copy does) and the one-step actor (DiagGaussianActorTanhAction: net, Linear and ReLU, mean and log-std
// out). Inputs are joined [state, action] there as here.
import { sequential, tensorsOf, torchFile, under, type ExportContext } from '../common/torch-layout.ts';
import type { DtqlModels } from '../dtql.ts';

export async function exportDtqlToTorch(m: DtqlModels, context: ExportContext): Promise<Record<string, Uint8Array>> {
  const v = sequential(under(await tensorsOf(m.critic.v), 'net'), 'v_model', { stride: 2 });
  const heads = async (twin: Parameters<typeof tensorsOf>[0]) => {
    const t = await tensorsOf(twin);
    return [...sequential(under(t, 'q1'), 'q1_model', { stride: 3 }), ...sequential(under(t, 'q2'), 'q2_model', { stride: 3 })];
  };
  return {
    behavior: torchFile([...(await tensorsOf(m.behavior.net)).values()], 'DTQL', 'ScoreNetwork', context),
    critic: torchFile([...(await heads(m.critic.q)), ...v], 'DTQL', 'Critic', context, { input_order: 'state,action' }),
    critic_target: torchFile([...(await heads(m.critic.qTarget)), ...v], 'DTQL', 'Critic', context, { input_order: 'state,action' }),
    actor: torchFile(sequential(under(await tensorsOf(m.actor), 'net'), 'net', { stride: 2 }), 'DTQL', 'DiagGaussianActorTanhAction', context),
  };
}

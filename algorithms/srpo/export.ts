// SRPO's networks in the layout of the paper's PyTorch code, so a model trained here loads there with
// strict=True: the behaviour model (ScoreNet_IDQL, whose blocks also hold a `residual` Linear that is never
// used when widths match: written as zeros), the critic (Critic: q0, q0_target and vf, nn.Sequentials of Linear
// and ReLU) and the actor (Dirac_Policy: net). The paper's TwinQ joins [action, state]: the first layer's input
// columns are reordered.
import type { IQLCritic } from '../common/iql.ts';
import { sequential, tensorsOf, torchFile, under, type ExportContext, type TorchEntry } from '../common/torch-layout.ts';
import type { SrpoModels } from '../srpo.ts';

export async function exportSrpoToTorch(m: SrpoModels, dims: { stateDim: number; actionDim: number }, context: ExportContext): Promise<Record<string, Uint8Array>> {
  const behavior: TorchEntry[] = [...(await tensorsOf(m.behavior.net)).values()];
  const blocks = new Set(behavior.map((e) => /^main\.blocks\.(\d+)\./.exec(e.name)?.[1]).filter((b): b is string => b !== undefined));
  const hidden = behavior.find((e) => e.name === 'main.fc.weight')!.shape[0]!;
  for (const b of blocks) {
    behavior.push({ name: `main.blocks.${b}.residual.weight`, shape: [hidden, hidden], data: new Float32Array(hidden * hidden) });
    behavior.push({ name: `main.blocks.${b}.residual.bias`, shape: [hidden], data: new Float32Array(hidden) });
  }
  const critic = m.critic as IQLCritic;
  const q = await tensorsOf(critic.q);
  const qTarget = await tensorsOf(critic.qTarget);
  const twin = { stride: 2, actionFirst: dims };
  const criticEntries = [
    ...sequential(under(q, 'q1'), 'q0.q1', twin), ...sequential(under(q, 'q2'), 'q0.q2', twin),
    ...sequential(under(qTarget, 'q1'), 'q0_target.q1', twin), ...sequential(under(qTarget, 'q2'), 'q0_target.q2', twin),
    ...sequential(under(await tensorsOf(critic.v), 'net'), 'vf.v', { stride: 2 }),
  ];
  return {
    behavior: torchFile(behavior, 'SRPO', 'ScoreNet_IDQL', context),
    critic: torchFile(criticEntries, 'SRPO', 'Critic', context, { input_order: 'action,state' }),
    actor: torchFile(sequential(under(await tensorsOf(m.actor), 'net'), 'net', { stride: 2 }), 'SRPO', 'Dirac_Policy', context),
  };
}

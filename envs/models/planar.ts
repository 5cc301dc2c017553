// Pieces of the planar MuJoCo models: the three root joints that free a torso in the x-z plane, and chains of
// hinged capsule segments (a leg is a body nested in a body nested in a body), written as MJCF text.

/** rootx, rootz, rooty at `anchor` below the torso (rootz's reference is the torso height there), no limits. */
export function rootJoints(indent: string, anchor: number): string {
  const pos = `pos="0 0 ${anchor === 0 ? 0 : -anchor}"`;
  const free = 'armature="0" damping="0" stiffness="0" limited="false"';
  return [
    `${indent}<joint name="rootx" type="slide" ${pos} axis="1 0 0" ${free}/>`,
    `${indent}<joint name="rootz" type="slide" ${pos} axis="0 0 1" ${free}${anchor === 0 ? '' : ` ref="${anchor}"`}/>`,
    `${indent}<joint name="rooty" type="hinge" pos="0 0 0" axis="0 1 0" ${free}/>`,
  ].join('\n');
}

/** One segment of a chain: a body at `pos` in its parent, its hinge's and its capsule's attributes. */
export interface Segment {
  body: string;
  pos: string;
  joint: string;
  geom: string;
}

/** The segments nested in order, each a child of the one before. */
export function chain(segments: readonly Segment[], indent: string): string {
  const [s, ...rest] = segments;
  if (!s) return '';
  const inner = `${indent}  `;
  return [
    `${indent}<body name="${s.body}" pos="${s.pos}">`,
    `${inner}<joint ${s.joint}/>`,
    `${inner}<geom ${s.geom}/>`,
    ...(rest.length ? [chain(rest, inner)] : []),
    `${indent}</body>`,
  ].join('\n');
}

/**
 * The thigh-leg-foot chain of Hopper and Walker2d (Walker2d has two, the second named with `_left`): the same
 * thigh and shank; the foot's offset, half-length and friction differ.
 */
export function hopperLeg(suffix: string, foot: { x: string; halfX: string; halfLength: string; friction: string }, indent: string): string {
  return chain(
    [
      {
        body: `thigh${suffix}`,
        pos: '0 0 -0.2',
        joint: `name="thigh${suffix}_joint" type="hinge" pos="0 0 0" axis="0 -1 0" range="-150 0"`,
        geom: `name="thigh${suffix}_geom" type="capsule" size="0.05 0.225" pos="0 0 -0.225" friction="0.9"`,
      },
      {
        body: `leg${suffix}`,
        pos: '0 0 -0.7',
        joint: `name="leg${suffix}_joint" type="hinge" pos="0 0 0.25" axis="0 -1 0" range="-150 0"`,
        geom: `name="leg${suffix}_geom" type="capsule" size="0.04 0.25" friction="0.9"`,
      },
      {
        body: `foot${suffix}`,
        pos: `${foot.x} 0 -0.35`,
        joint: `name="foot${suffix}_joint" type="hinge" pos="-${foot.x} 0 0.1" axis="0 -1 0" range="-45 45"`,
        geom: `name="foot${suffix}_geom" type="capsule" size="0.06 ${foot.halfLength}" pos="-${foot.halfX} 0 0.1" quat="0.7071068 0 -0.7071068 0" friction="${foot.friction}"`,
      },
    ],
    indent,
  );
}

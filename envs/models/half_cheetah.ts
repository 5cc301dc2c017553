// HalfCheetah (Gymnasium HalfCheetah-v4 physics): a planar quadruped-like body with a back and a front leg of three
// segments each, in local coordinates with angles in radians. Masses come from the geoms and are then rescaled so
// the robot weighs 14 kg (settotalmass). The leg joints are springs (stiffness) around zero with per-joint damping;
// Euler integration at 0.01 s. Robot geoms have conaffinity 0, so only robot-floor contacts occur.
// `size memory` keeps each MjData's arena at 512 KiB so hundreds of copies fit in the 2 GiB wasm heap.
// Peak arena use over long random rollouts was under 20 KB.

import { chain, rootJoints } from './planar.ts';

/** Per segment: body position, joint range, stiffness, damping, capsule position, tilt about y, half-length. */
type SpringSegment = [name: string, pos: string, range: string, stiffness: string, damping: string, geomPos: string, tilt: string, halfLength: string];

/** A back ('b') or front ('f') leg: thigh, shin and foot on spring hinges, each part named by prefix + segment. */
function springLeg(prefix: string, segments: SpringSegment[]): string {
  return chain(
    segments.map(([segment, pos, range, stiffness, damping, geomPos, tilt, halfLength]) => {
      const name = `${prefix}${segment}`;
      return {
        body: name,
        pos,
        joint: `name="${name}" type="hinge" pos="0 0 0" axis="0 1 0" range="${range}" stiffness="${stiffness}" damping="${damping}"`,
        geom: `name="${name}" type="capsule" pos="${geomPos}" axisangle="0 1 0 ${tilt}" size="0.046 ${halfLength}"`,
      };
    }),
    '      ',
  );
}

export const HALF_CHEETAH_XML = `
<mujoco model="half_cheetah">
  <compiler angle="radian" inertiafromgeom="true" settotalmass="14"/>
  <option gravity="0 0 -9.81" timestep="0.01"/>
  <size memory="512K"/>
  <default>
    <joint armature="0.1" damping="0.01" stiffness="8" limited="true" solimplimit="0 0.8 0.03" solreflimit="0.02 1"/>
    <geom contype="1" conaffinity="0" condim="3" friction="0.4 0.1 0.1" solimp="0.0 0.8 0.01" solref="0.02 1"/>
    <motor ctrllimited="true" ctrlrange="-1 1"/>
  </default>
  <worldbody>
    <geom name="floor" type="plane" size="40 40 40" condim="3" conaffinity="1"/>
    <body name="torso" pos="0 0 0.7">
${rootJoints('      ', 0)}
      <geom name="torso" type="capsule" fromto="-0.5 0 0 0.5 0 0" size="0.046"/>
      <geom name="head" type="capsule" pos="0.6 0 0.1" axisangle="0 1 0 0.87" size="0.046 0.15"/>
${springLeg('b', [
  ['thigh', '-0.5 0 0', '-0.52 1.05', '240', '6', '0.1 0 -0.13', '-3.8', '0.145'],
  ['shin', '0.16 0 -0.25', '-0.785 0.785', '180', '4.5', '-0.14 0 -0.07', '-2.03', '0.15'],
  ['foot', '-0.28 0 -0.14', '-0.4 0.785', '120', '3', '0.03 0 -0.097', '-0.27', '0.094'],
])}
${springLeg('f', [
  ['thigh', '0.5 0 0', '-1 0.7', '180', '4.5', '-0.07 0 -0.12', '0.52', '0.133'],
  ['shin', '-0.14 0 -0.24', '-1.2 0.87', '120', '3', '0.065 0 -0.09', '-0.6', '0.106'],
  ['foot', '0.13 0 -0.18', '-0.5 0.5', '60', '1.5', '0.045 0 -0.07', '-0.6', '0.07'],
])}
    </body>
  </worldbody>
  <actuator>
    <motor name="bthigh" joint="bthigh" gear="120"/>
    <motor name="bshin" joint="bshin" gear="90"/>
    <motor name="bfoot" joint="bfoot" gear="60"/>
    <motor name="fthigh" joint="fthigh" gear="120"/>
    <motor name="fshin" joint="fshin" gear="60"/>
    <motor name="ffoot" joint="ffoot" gear="30"/>
  </actuator>
</mujoco>
`;

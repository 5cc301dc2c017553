// Walker2d (Gymnasium Walker2d-v4 physics): a planar biped, two three-segment legs under one torso, in local
// coordinates with angles in degrees. Robot geoms have conaffinity 0, so only robot-floor contacts occur.
// The feet differ on purpose: the v2-v4 model gives the right foot friction 0.9 and the left 1.9.
// `size memory` keeps each MjData's arena at 512 KiB so hundreds of copies fit in the 2 GiB wasm heap.
// Peak arena use over long random rollouts was under 20 KB.

import { hopperLeg, rootJoints } from './planar.ts';

export const WALKER2D_XML = `
<mujoco model="walker2d">
  <compiler angle="degree" inertiafromgeom="true"/>
  <option integrator="RK4" timestep="0.002"/>
  <size memory="512K"/>
  <default>
    <joint armature="0.01" damping="0.1" limited="true"/>
    <geom contype="1" conaffinity="0" condim="3" density="1000" friction="0.7 0.1 0.1"/>
  </default>
  <worldbody>
    <geom name="floor" type="plane" size="40 40 40" condim="3" conaffinity="1"/>
    <body name="torso" pos="0 0 1.25">
${rootJoints('      ', 1.25)}
      <geom name="torso_geom" type="capsule" size="0.05 0.2" friction="0.9"/>
${hopperLeg('', { x: '0.2', halfX: '0.1', halfLength: '0.1', friction: '0.9' }, '      ')}
${hopperLeg('_left', { x: '0.2', halfX: '0.1', halfLength: '0.1', friction: '1.9' }, '      ')}
    </body>
  </worldbody>
  <actuator>
    <motor name="thigh_motor" joint="thigh_joint" gear="100" ctrllimited="true" ctrlrange="-1 1"/>
    <motor name="leg_motor" joint="leg_joint" gear="100" ctrllimited="true" ctrlrange="-1 1"/>
    <motor name="foot_motor" joint="foot_joint" gear="100" ctrllimited="true" ctrlrange="-1 1"/>
    <motor name="thigh_left_motor" joint="thigh_left_joint" gear="100" ctrllimited="true" ctrlrange="-1 1"/>
    <motor name="leg_left_motor" joint="leg_left_joint" gear="100" ctrllimited="true" ctrlrange="-1 1"/>
    <motor name="foot_left_motor" joint="foot_left_joint" gear="100" ctrllimited="true" ctrlrange="-1 1"/>
  </actuator>
</mujoco>
`;

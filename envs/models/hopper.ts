// Hopper (Gymnasium Hopper-v4 physics): a one-legged planar robot of four capsules, written in local coordinates.
// Angles are in degrees. Joint defaults (armature 1, damping 1) model the original's stiff actuated joints; the
// three root joints that free the torso in the x-z plane carry neither. Robot geoms collide with each other and
// the floor (contype = conaffinity = 1) with condim 1, and the floor's condim 3 decides the contact type.
// `size memory` keeps each MjData's arena at 512 KiB so hundreds of copies fit in the 2 GiB wasm heap.
// Peak arena use over long random rollouts was under 20 KB.

import { hopperLeg, rootJoints } from './planar.ts';

export const HOPPER_XML = `
<mujoco model="hopper">
  <compiler angle="degree" inertiafromgeom="true"/>
  <option integrator="RK4" timestep="0.002"/>
  <size memory="512K"/>
  <default>
    <joint armature="1" damping="1" limited="true"/>
    <geom contype="1" conaffinity="1" condim="1" margin="0.001" solimp="0.8 0.8 0.01" solref="0.02 1"/>
    <motor ctrllimited="true" ctrlrange="-0.4 0.4"/>
  </default>
  <worldbody>
    <geom name="floor" type="plane" pos="0 0 0" size="20 20 0.125" condim="3" conaffinity="1"/>
    <body name="torso" pos="0 0 1.25">
${rootJoints('      ', 1.25)}
      <geom name="torso_geom" type="capsule" size="0.05 0.2" friction="0.9"/>
${hopperLeg('', { x: '0.13', halfX: '0.065', halfLength: '0.195', friction: '2.0' }, '      ')}
    </body>
  </worldbody>
  <actuator>
    <motor name="thigh_motor" joint="thigh_joint" gear="200" ctrlrange="-1 1"/>
    <motor name="leg_motor" joint="leg_joint" gear="200" ctrlrange="-1 1"/>
    <motor name="foot_motor" joint="foot_joint" gear="200" ctrlrange="-1 1"/>
  </actuator>
</mujoco>
`;

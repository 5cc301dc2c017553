// Walker2d (Gymnasium Walker2d-v4 physics): a planar biped, two three-segment legs under one torso, in local
// coordinates with angles in degrees. Robot geoms have conaffinity 0, so only robot-floor contacts occur.
// The feet differ on purpose: the v2-v4 model gives the right foot friction 0.9 and the left 1.9.
// `size memory` keeps each MjData's arena at 512 KiB so hundreds of copies fit in the 2 GiB wasm heap.
// Peak arena use over long random rollouts was under 20 KB.

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
      <joint name="rootx" type="slide" pos="0 0 -1.25" axis="1 0 0" armature="0" damping="0" stiffness="0" limited="false"/>
      <joint name="rootz" type="slide" pos="0 0 -1.25" axis="0 0 1" armature="0" damping="0" stiffness="0" limited="false" ref="1.25"/>
      <joint name="rooty" type="hinge" pos="0 0 0" axis="0 1 0" armature="0" damping="0" stiffness="0" limited="false"/>
      <geom name="torso_geom" type="capsule" size="0.05 0.2" friction="0.9"/>
      <body name="thigh" pos="0 0 -0.2">
        <joint name="thigh_joint" type="hinge" pos="0 0 0" axis="0 -1 0" range="-150 0"/>
        <geom name="thigh_geom" type="capsule" size="0.05 0.225" pos="0 0 -0.225" friction="0.9"/>
        <body name="leg" pos="0 0 -0.7">
          <joint name="leg_joint" type="hinge" pos="0 0 0.25" axis="0 -1 0" range="-150 0"/>
          <geom name="leg_geom" type="capsule" size="0.04 0.25" friction="0.9"/>
          <body name="foot" pos="0.2 0 -0.35">
            <joint name="foot_joint" type="hinge" pos="-0.2 0 0.1" axis="0 -1 0" range="-45 45"/>
            <geom name="foot_geom" type="capsule" size="0.06 0.1" pos="-0.1 0 0.1" quat="0.7071068 0 -0.7071068 0" friction="0.9"/>
          </body>
        </body>
      </body>
      <body name="thigh_left" pos="0 0 -0.2">
        <joint name="thigh_left_joint" type="hinge" pos="0 0 0" axis="0 -1 0" range="-150 0"/>
        <geom name="thigh_left_geom" type="capsule" size="0.05 0.225" pos="0 0 -0.225" friction="0.9"/>
        <body name="leg_left" pos="0 0 -0.7">
          <joint name="leg_left_joint" type="hinge" pos="0 0 0.25" axis="0 -1 0" range="-150 0"/>
          <geom name="leg_left_geom" type="capsule" size="0.04 0.25" friction="0.9"/>
          <body name="foot_left" pos="0.2 0 -0.35">
            <joint name="foot_left_joint" type="hinge" pos="-0.2 0 0.1" axis="0 -1 0" range="-45 45"/>
            <geom name="foot_left_geom" type="capsule" size="0.06 0.1" pos="-0.1 0 0.1" quat="0.7071068 0 -0.7071068 0" friction="1.9"/>
          </body>
        </body>
      </body>
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

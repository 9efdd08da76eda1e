"""The bakers that train nothing: each candidate is the base with one bias changed, written as a plain checkpoint
(`base.PlainBaker`). `steer.SteerBaker` adds the profile's persona vector to the residual stream (the attention
output bias); `router.RouterBaker` (MoE) biases the router toward the personality experts."""

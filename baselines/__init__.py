"""Reference methods of wmbench (installed as `wmbench_baselines`); each registers in `wmbench.methods`."""

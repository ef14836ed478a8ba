"""Development tooling, apart from the runtimes: the local Triton launcher and stack, model
preparation, synthetic scenes, the fuzzer and the benchmarks. No image carries it."""

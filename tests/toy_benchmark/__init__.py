"""A third benchmark, defined entirely in this folder, to show that a plug-in
needs no edit anywhere else: registered through MLPERF_HPC_BENCHMARKS
(``toy=tests.toy_benchmark.facts:FACTS``), it is synthesised, trained,
checked and reported through the real command line. It regresses the mean
of a 16-value vector stored one sample per .npy file."""

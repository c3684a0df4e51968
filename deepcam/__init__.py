"""DeepCAM (climate segmentation): not implemented yet; it will plug into the
shared driver through mlperf_hpc.benchmark.Benchmark like cosmoflow/."""

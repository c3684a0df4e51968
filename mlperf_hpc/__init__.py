"""mlperf-hpc: MLPerf HPC benchmark harness (CosmoFlow, DeepCAM) with data,
spatial and hybrid parallelism.

Package map:
  mlperf_hpc/  CLI, config, MLPerf logging, the shared training driver,
               compliance checking and reports
  cosmoflow/   CosmoFlow data, model, configs (a Benchmark plug-in)
  deepcam/     DeepCAM (a Benchmark plug-in)
  parallel/    process topology and parallel layouts
  launch/      systems, schedulers, job templates, submission
"""

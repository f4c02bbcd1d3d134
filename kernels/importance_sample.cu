// CUDA kernels of importance sampling and the streamed log-sum-exp (math: importance_sample.cuh).
#include "for_each_cuda.cuh"
#include "importance_sample.cuh"

VAE_INSTANTIATE_FOR_EACH(vae::ops::LatentImportanceSample<float>);
VAE_INSTANTIATE_FOR_EACH(vae::ops::LogSumExpAccumulate<float>);

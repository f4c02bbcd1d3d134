// CUDA kernels of the standard normal prior's general path (math: standard_normal_prior.cuh).
#include "for_each_cuda.cuh"
#include "standard_normal_prior.cuh"

VAE_INSTANTIATE_FOR_EACH(vae::ops::StandardNormalLogProb<float>);
VAE_INSTANTIATE_FOR_EACH(vae::ops::StandardNormalGradZ<float>);

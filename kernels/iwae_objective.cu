// CUDA kernels of the importance-weighted training objective (math: iwae_objective.cuh).
#include "for_each_cuda.cuh"
#include "iwae_objective.cuh"

VAE_INSTANTIATE_FOR_EACH(vae::ops::IwaeWeights<float>);
VAE_INSTANTIATE_FOR_EACH(vae::ops::IwaeLoss<float>);

// CUDA kernel of the ELBO's batch-dependent KL regularisers (math: elbo_objective.cuh).
#include "elbo_objective.cuh"
#include "for_each_cuda.cuh"

VAE_INSTANTIATE_FOR_EACH(vae::ops::ElboRegularised<float>);

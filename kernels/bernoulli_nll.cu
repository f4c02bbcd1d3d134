// CUDA kernel of the Bernoulli likelihood (math: bernoulli_nll.cuh).
#include "bernoulli_nll.cuh"
#include "for_each_cuda.cuh"

VAE_INSTANTIATE_FOR_ROWS(vae::ops::BernoulliNll<float>);

// CUDA kernels of the Bernoulli likelihood (math: bernoulli_nll.cuh), with and without the gradient.
#include "bernoulli_nll.cuh"
#include "for_each_cuda.cuh"

VAE_INSTANTIATE_FOR_ROWS(vae::ops::BernoulliNll<float, true>);
VAE_INSTANTIATE_FOR_ROWS(vae::ops::BernoulliNll<float, false>);

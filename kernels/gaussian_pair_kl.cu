// CUDA kernels of the KL between two diagonal Gaussian heads (math: gaussian_pair_kl.cuh).
#include "for_each_cuda.cuh"
#include "gaussian_pair_kl.cuh"

VAE_INSTANTIATE_FOR_EACH(vae::ops::GaussianPairKlRows<float>);
VAE_INSTANTIATE_FOR_EACH(vae::ops::GaussianPairKlDims<float>);
VAE_INSTANTIATE_FOR_EACH(vae::ops::GaussianPairKlBackward<float>);

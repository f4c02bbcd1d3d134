// CUDA kernels of the analytic per-dimension KL (math: gaussian_kl.cuh).
#include "for_each_cuda.cuh"
#include "gaussian_kl.cuh"

VAE_INSTANTIATE_FOR_EACH(vae::ops::GaussianKlRows<float>);
VAE_INSTANTIATE_FOR_EACH(vae::ops::GaussianKlDims<float>);
VAE_INSTANTIATE_FOR_EACH(vae::ops::GaussianKlBackward<float>);

// CUDA kernels of the Gaussian likelihood (math: gaussian_nll.cuh).
#include "for_each_cuda.cuh"
#include "gaussian_nll.cuh"

VAE_INSTANTIATE_FOR_ROWS(vae::ops::GaussianNll<float>);
VAE_INSTANTIATE_FOR_EACH(vae::ops::GaussianLogSigmaGrad<float>);

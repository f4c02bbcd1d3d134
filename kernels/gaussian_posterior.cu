// CUDA kernels of the diagonal Gaussian posterior's general path (math: gaussian_posterior.cuh).
#include "for_each_cuda.cuh"
#include "gaussian_posterior.cuh"

VAE_INSTANTIATE_FOR_EACH(vae::ops::GaussianPosteriorSample<float>);
VAE_INSTANTIATE_FOR_EACH(vae::ops::GaussianPosteriorBackward<float>);
VAE_INSTANTIATE_FOR_EACH(vae::ops::GaussianLogDensity<float>);
VAE_INSTANTIATE_FOR_EACH(vae::ops::GaussianLogDensityBackward<float>);
VAE_INSTANTIATE_FOR_EACH(vae::ops::GaussianPosteriorMoments<float>);
